"""The NLB-layout NWB writer: layout against the real DANDI test file, round trips through the
reader, atomic writes, and users' trial arrays (including the Yu et al. 2009 PMd recording)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
from pynwb import NWBHDF5IO

from nlb_suite.core.spec import ExpectedCounts
from nlb_suite.data import nwb_write
from nlb_suite.data.nwb import read_recording
from nlb_suite.data.nwb_write import (
    BehaviorSeries,
    ElectrodeArray,
    NWBWriteError,
    Ragged,
    SessionInfo,
    TrialColumn,
    TrialsTable,
    UnitsTable,
    write_nlb_nwb,
)
from nlb_suite.datasets import get_spec
from nlb_suite.datasets.synthetic import generate
from nlb_suite.datasets.trial_arrays import write_trial_arrays

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_TEST_FILE = SHARED / "data/dandi/000140/sub-Jenkins/sub-Jenkins_ses-small_desc-test_ecephys.nwb"
YU_2009 = SHARED / "data/real/yu2009_pmd_delayed_reach_spikecounts.mat"


def _small_tables(rng: np.random.Generator) -> dict:
    spike_rows = [np.sort(rng.uniform(0.0, 3.0, n)).round(6) for n in (5, 0, 12)]
    obs = np.array([[0.0, 1.2], [1.5, 3.0]])
    units = UnitsTable(
        ids=np.array([1011, 1012, 2051]), spike_times=Ragged.from_rows(spike_rows),
        obs_intervals=Ragged.from_rows([obs, obs, obs]), heldout=np.array([False, True, False]),
        electrodes=np.array([0, 0, 100]),
    )
    trials = TrialsTable(
        start_time=np.array([0.0, 1.5]), stop_time=np.array([1.2, 3.0]), split=np.array(["train", "val"]),
        columns=(
            TrialColumn("trial_type", "type", np.array([3, 7])),
            TrialColumn("success", "rewarded", np.array([True, False])),
            TrialColumn("result", "outcome", np.array(["R", "F"])),
            TrialColumn("target_pos", "targets", Ragged.from_rows([np.array([[1.0, 2.0]]), np.zeros((3, 2))])),
        ),
    )
    behavior = (BehaviorSeries("hand_vel", rng.normal(size=(3000, 2)), ("x", "y"), "mm/s", "velocity"),)
    return dict(
        session=SessionInfo("s1", "test session", "Tester"),
        arrays=(ElectrodeArray("PMd", 96, "array", "Dorsal premotor cortex"),
                ElectrodeArray("M1", 96, "array", "Primary motor cortex")),
        units=units, trials=trials, behavior=behavior,
    )


def test_round_trip_through_read_recording(tmp_path: Path) -> None:
    tables = _small_tables(np.random.default_rng(0))
    path = write_nlb_nwb(tmp_path / "session.nwb", **tables)
    rec = read_recording(path)
    units = tables["units"]
    assert rec.units.ids.tolist() == [1011, 1012, 2051]
    for i in range(3):
        np.testing.assert_array_equal(rec.units.spike_times[i], units.spike_times.row(i))
        np.testing.assert_array_equal(rec.units.obs_intervals[i], units.obs_intervals.row(i).reshape(-1, 2))
    assert rec.units.heldout.tolist() == [False, True, False]
    assert rec.trials["split"].tolist() == ["train", "val"]
    assert rec.trials["trial_type"].tolist() == [3, 7]
    assert rec.trials["success"].tolist() == [True, False]
    assert rec.trials["result"].tolist() == ["R", "F"]
    assert rec.trials["target_pos"][1].shape == (3, 2)
    velocity = rec.behavior["hand_vel"]
    np.testing.assert_array_equal(velocity.data, tables["behavior"][0].data)
    assert (velocity.rate, velocity.starting_time, velocity.columns, velocity.unit) == (1000.0, 0.0, ("x", "y"), "mm/s")
    assert rec.end_ms == 3000
    # pynwb reads it too, with each unit's electrode in its group.
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        frame = nwbfile.units.to_dataframe()
        assert frame.loc[2051, "electrodes"]["group_name"].iloc[0] == "electrode_group_M1"
        assert len(nwbfile.electrodes) == 192


def test_file_matches_the_real_test_file_layout(tmp_path: Path) -> None:
    if not REAL_TEST_FILE.is_file():
        pytest.skip(f"real test file absent: {REAL_TEST_FILE}")
    spec = dataclasses.replace(get_spec("synth_maze_small"), expected=ExpectedCounts(8, 3, 6, 2, 8, 4))
    files = generate(spec, tmp_path)

    def layout(path: Path) -> dict[str, object]:
        with h5py.File(path, "r") as f:
            def columns(group: str) -> dict[str, tuple]:
                g = f[group]
                return {k: (g[k].dtype.kind, g[k].ndim, str(g[k].attrs.get("neurodata_type")))
                        for k in g if isinstance(g[k], h5py.Dataset)}
            return {
                "top": sorted(k for k in f if k != "specifications"),
                "units": columns("units"),
                "units_colnames": list(f["units"].attrs["colnames"]),
                "units_type": f["units"].attrs["neurodata_type"],
                "trials": columns("intervals/trials"),
                "trials_colnames": list(f["intervals/trials"].attrs["colnames"]),
                "electrodes": sorted(columns("general/extracellular_ephys/electrodes")),
                "electrodes_type": f["general/extracellular_ephys/electrodes"].attrs["neurodata_type"],
                "groups": sorted(k for k in f["general/extracellular_ephys"] if k != "electrodes"),
                "devices": sorted(f["general/devices"]),
                "region_target": f[f["units/electrodes"].attrs["table"]].name,
                "behavior": "processing/behavior" in f,
            }

    real, ours = layout(REAL_TEST_FILE), layout(files.test)
    # Dataset kinds: our index columns may pick another integer width, which the format allows.
    for key in ("units", "trials"):
        assert {k: v[1:] for k, v in ours[key].items()} == {k: v[1:] for k, v in real[key].items()}
        assert {k: v[0] for k, v in ours[key].items() if not k.endswith("_index")} == \
            {k: v[0] for k, v in real[key].items() if not k.endswith("_index")}
    for key in ("top", "units_colnames", "units_type", "trials_colnames", "electrodes", "electrodes_type",
                "groups", "devices", "region_target", "behavior"):
        assert ours[key] == real[key], key
    # The train file adds held-out units, task columns and behaviour in the same layout.
    with h5py.File(files.train, "r") as f:
        assert sorted(f["processing/behavior"]) == ["cursor_pos", "eye_pos", "hand_pos", "hand_vel"]
        assert f["processing/behavior/hand_vel"].attrs["comments"] == "columns=[x,y]"
        assert f["processing/behavior/hand_vel/starting_time"].attrs["rate"] == 1000.0
        assert f["units/heldout"][()].sum() == 3


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = _small_tables(np.random.default_rng(1))
    path = write_nlb_nwb(tmp_path / "session.nwb", **tables)
    before = path.read_bytes()

    def broken_write(self, container) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(nwb_write.NWBHDF5IO, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_nlb_nwb(path, **tables)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.nwb"]


def test_inconsistent_tables_are_refused_before_writing(tmp_path: Path) -> None:
    tables = _small_tables(np.random.default_rng(2))
    bad_units = dataclasses.replace(tables["units"], electrodes=np.array([0, 0, 500]))
    with pytest.raises(NWBWriteError, match="electrode outside"):
        write_nlb_nwb(tmp_path / "a.nwb", **{**tables, "units": bad_units})
    bad_trials = dataclasses.replace(tables["trials"], split=np.array(["train", "holdout"]))
    with pytest.raises(NWBWriteError, match=r"a\.nwb: unknown trial split"):
        write_nlb_nwb(tmp_path / "a.nwb", **{**tables, "trials": bad_trials})
    assert not any(tmp_path.iterdir())


def _ms_counts(spike_times: np.ndarray, start_ms: int, n_ms: int) -> np.ndarray:
    """Counts per ms, binned the benchmark's way (decimal-rounded truncation of t * 1000)."""
    ms = np.round(spike_times * 1000.0, 6).astype(np.int64) - start_ms
    return np.bincount(ms[(ms >= 0) & (ms < n_ms)], minlength=n_ms)


def test_trial_arrays_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n_trials, n_units, n_ms = 12, 6, 400
    spikes = rng.poisson(0.03, (n_trials, n_units, n_ms)).astype(np.uint8)
    split = np.array(["train", "val", "test"] * 4)
    behavior = rng.normal(size=(n_trials, n_ms, 2))
    spec = write_trial_arrays(tmp_path, "mine", spikes, np.arange(n_trials) % 3, heldout_units=[1, 4], align_ms=150,
                              window_ms=(-100, 200), forward_ms=40, split=split, behavior=behavior, seed=5)
    assert spec.source == "user" and Path(spec.train.path).is_absolute() and spec.folder is None
    assert spec.psth_conditions == ("condition",) and spec.behavior_field == "hand_vel"
    assert spec.bin_sizes == (5, 20) and spec.window_ms == (-100, 200) and spec.forward_ms == 40
    assert spec.expected == ExpectedCounts(4, 2, 4, 4, 8, 4)

    train = read_recording(spec.train.path)
    kept = np.flatnonzero(split != "test")
    assert train.trials["split"].tolist() == split[kept].tolist()
    assert train.trials["condition"].tolist() == (kept % 3).tolist()
    assert train.units.heldout.tolist() == [False, True, False, False, True, False]
    velocity = train.behavior["hand_vel"]
    for row, k in enumerate(kept):
        trial = train.trials.iloc[row]
        start_ms = int(round(trial.start_time * 1000))
        assert start_ms >= 1000 and round(trial.stop_time * 1000) - start_ms == n_ms
        # Windows start on the 20 ms grid, so both bin sizes line up with the data.
        assert round(trial.move_onset_time * 1000) == start_ms + 150 and (start_ms + 50) % 20 == 0
        for u in range(n_units):
            np.testing.assert_array_equal(_ms_counts(train.units.spike_times[u], start_ms, n_ms), spikes[k, u])
        np.testing.assert_array_equal(velocity.data[start_ms:start_ms + n_ms], behavior[k])
    assert np.isnan(velocity.data[:1000]).all() and velocity.data.shape[0] == train.end_ms

    test = read_recording(spec.test.path)
    assert test.units.ids.tolist() == [0, 2, 3, 5] and not test.units.heldout.any()
    assert not test.behavior
    assert list(test.trials.columns) == ["trial_id", "start_time", "stop_time", "move_onset_time", "split"]
    np.testing.assert_allclose(test.trials.start_time, np.arange(4) * 0.4)
    np.testing.assert_allclose(test.trials.move_onset_time - test.trials.start_time, 0.1)
    segments = np.stack([test.trials.start_time, test.trials.stop_time], axis=1)
    np.testing.assert_allclose(test.units.obs_intervals[0], segments)
    for row, k in enumerate(np.flatnonzero(split == "test")):
        start_ms = row * 400
        for column, u in enumerate([0, 2, 3, 5]):
            window = _ms_counts(test.units.spike_times[column], start_ms, 300)
            np.testing.assert_array_equal(window, spikes[k, u, 50:350])


def test_trial_arrays_split_every_condition_alike(tmp_path: Path) -> None:
    spikes = np.random.default_rng(4).poisson(0.02, (40, 3, 100)).astype(np.uint8)
    conditions = np.array(["left", "right"] * 20)
    spec = write_trial_arrays(tmp_path, "split", spikes, conditions, heldout_units=[0], align_ms=20,
                              window_ms=(0, 60), val_fraction=0.25, test_fraction=0.25)
    assert spec.bin_sizes == (5, 20) and spec.behavior_field is None
    counts = spec.expected
    assert (counts.val_train_trials, counts.val_eval_trials, counts.test_eval_trials) == (20, 10, 10)
    trials = read_recording(spec.train.path).trials
    for split, n in (("train", 20), ("val", 10)):
        assert trials[trials.split == split].condition.value_counts().tolist() == [n // 2, n // 2]


@pytest.mark.parametrize(("change", "message"), [
    (dict(spikes=np.zeros((4, 3))), "trials, units, ms"),
    (dict(spikes=-np.ones((4, 3, 100), dtype=int)), "negative"),
    (dict(spikes=np.full((4, 3, 100), 0.5)), "whole spike counts"),
    (dict(conditions=np.arange(3)), "one condition label per trial"),
    (dict(heldout_units=[0, 1, 2]), "proper subset"),
    (dict(heldout_units=[7]), "indices"),
    (dict(window_ms=(-60, 40)), "inside the 100 ms trials"),
    (dict(forward_ms=7), "multiples of 5 ms"),
    (dict(split=["train", "val", "train", "train"]), "every split"),
    (dict(split=["train", "val", "test", "later"]), "split must give"),
    (dict(behavior=np.zeros((4, 99, 2))), "behavior must be"),
])
def test_trial_arrays_bad_input(tmp_path: Path, change: dict, message: str) -> None:
    arguments = dict(spikes=np.zeros((4, 3, 100), dtype=np.uint8), conditions=np.array([0, 1, 0, 1]),
                     heldout_units=[2], align_ms=50, window_ms=(-20, 30), forward_ms=10,
                     split=["train", "val", "test", "train"])
    arguments.update(change)
    with pytest.raises(NWBWriteError, match=message) as caught:
        write_trial_arrays(tmp_path, "bad", **arguments)
    assert str(tmp_path / "bad") in str(caught.value)
    assert not any(tmp_path.iterdir())


def _trial_counts(rec, n_ms: int) -> np.ndarray:
    """(trials, units, ms) spike counts of a recording's trials."""
    starts = np.round(rec.trials.start_time.to_numpy() * 1000).astype(np.int64)
    counts = np.zeros((len(starts), len(rec.units), n_ms), dtype=np.int64)
    for u, times in enumerate(rec.units.spike_times):
        ms = np.round(times * 1000.0, 6).astype(np.int64)
        trial = np.searchsorted(starts, ms, side="right") - 1
        np.add.at(counts, (trial, u, ms - starts[trial]), 1)
    return counts


def test_yu_2009_pmd_recording(tmp_path: Path) -> None:
    if not YU_2009.is_file():
        pytest.skip(f"Yu et al. 2009 file absent: {YU_2009}")
    from scipy.io import loadmat

    trials = loadmat(YU_2009)["D"][0]
    spikes = np.stack([t["data"] for t in trials])
    conditions = np.array([str(np.squeeze(t["condition"])) for t in trials])
    assert spikes.shape == (210, 61, 400)
    heldout = np.arange(0, 61, 4)
    heldin = np.setdiff1d(np.arange(61), heldout)
    split = np.array(["test", "val", "train", "train", "train"] * 42)
    spec = write_trial_arrays(tmp_path, "yu2009", spikes, conditions, heldout_units=heldout, align_ms=100,
                              window_ms=(-100, 200), forward_ms=100, split=split, area="PMd")
    assert spec.expected == ExpectedCounts(45, 16, 126, 42, 168, 42)
    train, test = read_recording(spec.train.path), read_recording(spec.test.path)
    assert train.trials.condition.tolist() == conditions[split != "test"].tolist()
    np.testing.assert_array_equal(_trial_counts(train, 400), spikes[split != "test"])
    np.testing.assert_array_equal(_trial_counts(test, 300), spikes[split == "test"][:, heldin, :300])
