"""Synthetic datasets: the benchmark's file layout and timing rules, ground truth that matches
the spikes, realistic rates, determinism, and clear errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from nlb_suite.cli import main
from nlb_suite.core.arrays import Rates, Tensors
from nlb_suite.core.spec import DatasetSpec, ExpectedCounts
from nlb_suite.data.nwb import Recording, read_recording
from nlb_suite.data.paths import DatasetFiles, truth_path
from nlb_suite.datasets import get_spec
from nlb_suite.datasets.synthetic import SyntheticDataError, ensure_generated, generate
from nlb_suite.scoring import score
from nlb_suite.tensors import make_targets, make_tensors, make_true_rates

MAZE_COLUMNS = ["trial_id", "start_time", "stop_time", "trial_type", "trial_version", "maze_id", "success",
                "target_on_time", "go_cue_time", "move_onset_time", "rt", "delay", "num_targets", "target_pos",
                "num_barriers", "barrier_pos", "active_target", "split"]
AREA2_COLUMNS = ["trial_id", "start_time", "stop_time", "result", "ctr_hold", "ctr_hold_bump", "bump_dir",
                 "target_on_time", "target_dir", "go_cue_time", "bump_time", "move_onset_time", "cond_dir", "split"]


def tiny(name: str, **generator_args: int) -> DatasetSpec:
    """A built-in synthetic spec shrunk to a few trials and units, so tests run in seconds."""
    spec = get_spec(name)
    args = {**dict(spec.generator_args), **generator_args}
    return dataclasses.replace(spec, expected=ExpectedCounts(14, 5, 16, 6, 22, 8),
                               generator_args=tuple(args.items()))


@pytest.fixture(scope="module")
def maze(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetSpec, Path, DatasetFiles]:
    spec, root = tiny("synth_maze"), tmp_path_factory.mktemp("maze")
    return spec, root, generate(spec, root)


@pytest.fixture(scope="module")
def area2(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetSpec, Path, DatasetFiles]:
    spec, root = tiny("synth_area2"), tmp_path_factory.mktemp("area2")
    return spec, root, generate(spec, root)


def ms(seconds: object) -> np.ndarray:
    return np.round(np.asarray(seconds, dtype=float) * 1000.0).astype(np.int64)


def check_test_file(spec: DatasetSpec, train: Recording, test: Recording) -> None:
    """Held-in units only, no behaviour, the test trials' windows re-timed like the real files."""
    assert test.units.ids.tolist() == train.units.ids[~train.units.heldout].tolist()
    assert not test.units.heldout.any() and not test.behavior
    assert list(test.trials.columns) == ["trial_id", "start_time", "stop_time", spec.align_field, "split"]
    assert (test.trials.split == "test").all() and len(test.trials) == spec.expected.test_eval_trials
    period = spec.window_len_ms + 100
    np.testing.assert_array_equal(ms(test.trials.start_time), np.arange(len(test.trials)) * period)
    np.testing.assert_array_equal(ms(test.trials.stop_time - test.trials.start_time), spec.window_len_ms)
    np.testing.assert_array_equal(ms(test.trials[spec.align_field] - test.trials.start_time), -spec.window_ms[0])
    for intervals in test.units.obs_intervals:
        np.testing.assert_allclose(intervals, test.trials[["start_time", "stop_time"]].to_numpy())


def check_windows_observed(spec: DatasetSpec, rec: Recording) -> None:
    """Every trial's window, forward window and lagged behaviour window lie in observed time."""
    intervals = ms(rec.units.obs_intervals[0])
    align = ms(rec.trials[spec.align_field])
    first = align + min(spec.window_ms[0], spec.window_ms[0] + spec.behavior_lag_ms)
    last = align + max(spec.window_ms[1] + spec.forward_ms, spec.window_ms[1] + spec.behavior_lag_ms)
    inside = (intervals[None, :, 0] <= first[:, None]) & (last[:, None] <= intervals[None, :, 1])
    assert inside.any(axis=1).all()
    assert ms(rec.trials.start_time.iloc[0]) >= 1000
    for intervals in rec.units.obs_intervals[1:]:
        np.testing.assert_array_equal(intervals, rec.units.obs_intervals[0])


def test_maze_layout_and_timing(maze) -> None:
    spec, _, files = maze
    train, test = read_recording(files.train), read_recording(files.test)
    counts = spec.expected
    assert list(train.trials.columns) == MAZE_COLUMNS
    splits = train.trials.split.value_counts()
    assert (splits["train"], splits["val"]) == (counts.val_train_trials, counts.val_eval_trials)
    assert splits["none"] >= 1 and not train.trials.success[train.trials.split == "none"].any()
    assert (len(train.units), int(train.units.heldout.sum())) == (19, 5)
    assert set(train.units.ids // 1000) <= {1, 2} and list(train.units.ids) == sorted(train.units.ids)
    assert set(train.trials.trial_type) <= set(range(1, 10)) and set(train.trials.trial_version) <= {0, 1, 2}
    assert sorted(train.behavior) == ["cursor_pos", "eye_pos", "hand_pos", "hand_vel"]
    assert train.behavior["hand_vel"].unit == "mm/s" and train.behavior["hand_vel"].data.shape == (train.end_ms, 2)
    # Each trial is its own observation interval, with gaps between trials.
    np.testing.assert_allclose(train.units.obs_intervals[0], train.trials[["start_time", "stop_time"]].to_numpy())
    assert (ms(train.trials.start_time[1:].to_numpy()) - ms(train.trials.stop_time[:-1].to_numpy()) >= 200).all()
    lengths = ms(train.trials.stop_time - train.trials.start_time)
    assert lengths.min() >= 2000 and lengths.max() <= 3600
    trials = train.trials
    assert (ms(trials.go_cue_time - trials.target_on_time) == trials.delay).all()
    assert (ms(trials.move_onset_time - trials.go_cue_time) == trials.rt).all()
    assert trials.rt.between(150, 600).all()
    assert all(len(p) == n for p, n in zip(trials.target_pos, trials.num_targets))
    assert all(b.shape == (n, 4) for b, n in zip(trials.barrier_pos, trials.num_barriers))
    # The hand rests before move onset and moves after it.
    velocity = train.behavior["hand_vel"].data
    speed = np.hypot(velocity[:, 0], velocity[:, 1])
    onsets = ms(trials.move_onset_time)
    before = np.array([speed[m - 250:m - 50].max() for m in onsets])
    after = np.array([speed[m:m + 400].max() for m in onsets])
    assert (after > 200).all() and (before < 0.25 * after).all()
    check_windows_observed(spec, train)
    check_test_file(spec, train, test)


def test_area2_layout_and_timing(area2) -> None:
    spec, _, files = area2
    train, test = read_recording(files.train), read_recording(files.test)
    trials = train.trials
    assert list(trials.columns) == AREA2_COLUMNS
    assert (trials.result[trials.split != "none"] == "R").all() and set(trials.result) <= {"R", "A", "I", "F"}
    bump = trials.ctr_hold_bump.astype(bool)
    assert bump.any() and (~bump).any()
    np.testing.assert_array_equal(trials.cond_dir[bump], trials.bump_dir[bump])
    np.testing.assert_array_equal(trials.cond_dir[~bump], trials.target_dir[~bump])
    assert trials.bump_time[~bump].isna().all() and trials.target_on_time[bump].isna().all()
    assert set(trials.cond_dir) <= set(np.arange(8) * 45.0)
    # A continuous session: a few long observation chunks, not one per trial.
    assert 1 < len(train.units.obs_intervals[0]) <= 4 < len(trials)
    align = ms(trials.move_onset_time)
    assert (align[1:] + spec.window_ms[0] >= align[:-1] + spec.window_ms[1]).all()
    assert sorted(train.behavior) == ["force", "hand_pos", "hand_vel"]
    assert train.behavior["hand_vel"].unit == "cm/s" and train.behavior["force"].data.shape[1] == 6
    check_windows_observed(spec, train)
    check_test_file(spec, train, test)


def modulation_correlation(counts: np.ndarray, rates: np.ndarray, block: int = 10) -> float:
    """Correlation of spike counts with true rates (trials, bins, units) in blocks of `block`
    bins, each unit's mean removed: how closely each unit's counts rise and fall with its own
    rate from trial to trial and block to block (a shift by a trial, a block or a unit leaves
    next to no correlation)."""
    n = counts.shape[1] // block
    summed = [x[:, :n * block].reshape(len(x), n, block, -1).sum(axis=2) for x in (counts, rates)]
    modulation = [x - x.mean(axis=(0, 1)) for x in summed]
    return float(np.corrcoef(modulation[0].ravel(), modulation[1].ravel())[0, 1])


def check_truth_matches_the_files(spec: DatasetSpec, root: Path, files: DatasetFiles) -> None:
    """The truth file's layout, and that the train and test files' spikes follow its rates."""
    train, test = read_recording(files.train), read_recording(files.test)
    n_bins = (spec.window_len_ms + spec.forward_ms + 100) // 5 + 1
    with h5py.File(truth_path(spec, root), "r") as f:
        assert json.loads(f.attrs["generator_args"]) == dict(spec.generator_args)
        assert (f.attrs["bin_ms"], f.attrs["margin_ms"]) == (5, 50)
        rates, first_bin = f["train/rates"][()], f["train/first_bin"][()]
        assert rates.shape == (len(train.trials), n_bins, len(train.units)) and rates.dtype == np.float32
        assert f["train/latents"].shape[:2] == rates.shape[:2]
        np.testing.assert_array_equal(f["train/unit_ids"][()], train.units.ids)
        np.testing.assert_array_equal(first_bin, (ms(train.trials[spec.align_field]) + spec.window_ms[0] - 50) // 5)
        test_rates, test_all = f["test/rates"][()], f["test/rates_all"][()]
        np.testing.assert_array_equal(f["test/unit_ids"][()], test.units.ids)
        np.testing.assert_array_equal(f["test/unit_ids_all"][()], train.units.ids)
        np.testing.assert_array_equal(test_rates, test_all[..., ~train.units.heldout])
        spikes_all, test_first = f["test/spikes_all"][()], f["test/first_bin"][()]
    # The file's spikes, counted on the same 5 ms grid, follow the true rates.
    counts = np.zeros(rates.shape)
    for u, times in enumerate(train.units.spike_times):
        bins = np.round(times * 1000.0, 6).astype(np.int64) // 5
        row = np.searchsorted(first_bin, bins, side="right") - 1
        keep = (row >= 0) & (bins - first_bin[np.maximum(row, 0)] < n_bins)
        np.add.at(counts, (row[keep], bins[keep] - first_bin[row[keep]], u), 1)
    expected, observed = rates.sum(), counts.sum()
    assert abs(observed - expected) < 5 * np.sqrt(expected)
    assert modulation_correlation(counts, rates) > 0.3
    # The truth's test spikes are the test file's spikes inside each window.
    window_bins = slice(10, 10 + spec.window_len_ms // 5)
    heldin = spikes_all[..., ~train.units.heldout]
    for u, times in enumerate(test.units.spike_times):
        bins = np.round(times * 1000.0, 6).astype(np.int64) // 5
        row = np.searchsorted(test_first + 10, bins, side="right") - 1
        file_counts = np.zeros(heldin.shape[:2], dtype=np.int64)
        np.add.at(file_counts, (row, bins - test_first[row]), 1)
        np.testing.assert_array_equal(file_counts[:, window_bins], heldin[:, window_bins, u])
        assert file_counts[:, :10].sum() == 0 and file_counts[:, window_bins.stop:].sum() == 0


@pytest.mark.parametrize("dataset", ["maze", "area2"])
def test_truth_matches_the_files(dataset: str, request: pytest.FixtureRequest) -> None:
    check_truth_matches_the_files(*request.getfixturevalue(dataset))


def check_rates_and_counts(spec: DatasetSpec, root: Path) -> None:
    """Unit mean rates in the 5-40 Hz of the real datasets' typical units, modulated, no absurd
    peaks; spike counts per 5 ms bin as sparse as the real ones."""
    with h5py.File(truth_path(spec, root), "r") as f:
        rates = f["train/rates"][()]
    hz = rates / 0.005
    unit_means = hz.mean(axis=(0, 1))
    assert 8.0 < unit_means.mean() < 30.0
    assert unit_means.min() > 2.0 and unit_means.max() < 60.0
    assert hz.max() < 500.0 and hz.min() >= 0.0
    # Rates are modulated, not flat: the typical unit varies by more than half its mean.
    assert np.median(hz.std(axis=(0, 1)) / unit_means) > 0.5
    # Counts: Poisson at these rates puts at most a few spikes in a 5 ms bin and most bins empty.
    counts = np.random.default_rng(0).poisson(rates)
    assert 0.02 < counts.mean() < 0.2 and counts.max() <= 8 and (counts == 0).mean() > 0.8


@pytest.mark.parametrize("dataset", ["maze", "area2"])
def test_rates_are_in_the_range_of_the_real_datasets(dataset: str, request: pytest.FixtureRequest) -> None:
    spec, root, _ = request.getfixturevalue(dataset)
    check_rates_and_counts(spec, root)


def check_forward_window(spec: DatasetSpec, root: Path, min_fp_bps: float) -> None:
    """The true rates still differ across trials in the forward window (their sd across eval
    trials at least a quarter of that inside the window), so that they score a clearly positive
    fp-bps; the mean-rate null scores none of the metrics."""
    tensors = make_tensors(spec, "val", 5, root)
    targets = make_targets(spec, "val", 5, root)
    truth = make_true_rates(spec, tensors, root)
    assert truth is not None
    inside = np.concatenate([truth.eval_rates_heldin, truth.eval_rates_heldout], axis=2).std(axis=0).mean()
    forward = np.concatenate([truth.eval_rates_heldin_forward, truth.eval_rates_heldout_forward], axis=2)
    assert forward.std(axis=0).mean() > 0.25 * inside
    true_scores, null_scores = score(truth, targets, n_boot=0), score(mean_rates(tensors), targets, n_boot=0)
    assert true_scores.fp_bps > min_fp_bps and null_scores.fp_bps < 0.01
    assert true_scores.co_bps > 0.2 and null_scores.co_bps < 0.01
    assert true_scores.vel_r2 > 0.5 > null_scores.vel_r2
    assert true_scores.psth_r2 is not None and null_scores.psth_r2 is not None
    assert true_scores.psth_r2 > 0.3 > null_scores.psth_r2


def mean_rates(tensors: Tensors) -> Rates:
    """The null: each unit's mean training rate in every bin."""
    heldin = np.nanmean(tensors.train_spikes_heldin, axis=(0, 1))
    heldout = np.nanmean(tensors.train_spikes_heldout, axis=(0, 1))

    def fill(n: int, bins: int, rates: np.ndarray) -> np.ndarray:
        return np.broadcast_to(rates, (n, bins, rates.size)).astype(np.float32)

    return Rates(
        train_rates_heldin=fill(tensors.n_train, tensors.n_bins, heldin),
        train_rates_heldout=fill(tensors.n_train, tensors.n_bins, heldout),
        eval_rates_heldin=fill(tensors.n_eval, tensors.n_bins, heldin),
        eval_rates_heldout=fill(tensors.n_eval, tensors.n_bins, heldout),
        eval_rates_heldin_forward=fill(tensors.n_eval, tensors.n_forward, heldin),
        eval_rates_heldout_forward=fill(tensors.n_eval, tensors.n_forward, heldout),
    )


@pytest.mark.parametrize("dataset", ["maze", "area2"])
def test_forward_window_carries_trial_activity(dataset: str, request: pytest.FixtureRequest) -> None:
    spec, root, _ = request.getfixturevalue(dataset)
    check_forward_window(spec, root, min_fp_bps=0.08)


def generated_arrays(spec: DatasetSpec, root: Path) -> dict[str, np.ndarray]:
    """Generate `spec` into `root`; every array of its truth, NWB spikes, trial times and behaviour."""
    files = generate(spec, root)
    out = {}
    with h5py.File(truth_path(spec, root), "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    for role, path in (("train", files.train), ("test", files.test)):
        rec = read_recording(path)
        out[f"{role}/spikes"] = np.concatenate(rec.units.spike_times)
        for column in ("start_time", spec.align_field):
            out[f"{role}/{column}"] = rec.trials[column].to_numpy()
        for name, series in rec.behavior.items():
            out[f"{role}/{name}"] = series.data
    return out


def check_same_seed_same_dataset(spec: DatasetSpec, root: Path) -> None:
    first, second = generated_arrays(spec, root / "first"), generated_arrays(spec, root / "second")
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    other_seed = dataclasses.replace(spec, generator_args=(*(a for a in spec.generator_args if a[0] != "seed"),
                                                           ("seed", 1)))
    other = generated_arrays(other_seed, root / "other")
    assert not np.array_equal(other["train/rates"], first["train/rates"])


def test_same_seed_same_dataset(tmp_path: Path) -> None:
    check_same_seed_same_dataset(tiny("synth_maze"), tmp_path)


def test_ensure_generated_only_when_missing(tmp_path: Path) -> None:
    spec = tiny("synth_area2")
    files = ensure_generated(spec, tmp_path)
    stamp = files.train.stat().st_mtime_ns
    assert ensure_generated(spec, tmp_path) == files and files.train.stat().st_mtime_ns == stamp
    truth_path(spec, tmp_path).unlink()
    ensure_generated(spec, tmp_path)
    assert truth_path(spec, tmp_path).is_file() and files.train.stat().st_mtime_ns != stamp
    with pytest.raises(SyntheticDataError, match="already exists.*--overwrite"):
        generate(spec, tmp_path)


@pytest.mark.parametrize(("change", "message"), [
    (dict(generator="spiral"), "unknown generator 'spiral'"),
    (dict(generator_args=(("seed", 0), ("speed", 3))), r"takes no argument\(s\) \['speed'\]"),
    (dict(generator_args=(("seed", -1),)), "seed must be a non-negative integer"),
    (dict(expected=ExpectedCounts(10, None, 5, 5, 10, 5)), "counts must all be positive"),
])
def test_bad_specs_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    spec = dataclasses.replace(tiny("synth_area2"), **change)
    with pytest.raises(SyntheticDataError, match=message):
        generate(spec, tmp_path)
    assert not any(tmp_path.iterdir())


def test_real_datasets_are_not_generated(tmp_path: Path) -> None:
    with pytest.raises(SyntheticDataError, match="'mc_maze' is not synthetic"):
        generate(get_spec("mc_maze"), tmp_path)


def test_synth_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr("nlb_suite.commands.synth.get_spec", lambda name: tiny(name))
    assert main(["synth", "synth_area2", "--data-dir", str(tmp_path), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    spec = tiny("synth_area2")
    assert str(truth_path(spec, tmp_path)) in out and "MB" in out
    assert "true-rate ceilings (val phase, 5 ms): co-bps" in out
    assert (truth_path(spec, tmp_path).parent / "ceilings.json").is_file()
    with h5py.File(truth_path(spec, tmp_path), "r") as f:
        assert json.loads(f.attrs["generator_args"]) == {"seed": 3}
    assert main(["synth", "synth_area2", "--data-dir", str(tmp_path)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["synth", "synth_area2", "--data-dir", str(tmp_path), "--seed", "-4"]) == 2
    monkeypatch.undo()
    assert main(["synth", "no_such_dataset", "--data-dir", str(tmp_path)]) == 2
    assert "unknown dataset 'no_such_dataset'" in capsys.readouterr().err


def test_datasets_command_shows_the_ceilings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    spec = tiny("synth_area2")
    monkeypatch.setattr("nlb_suite.commands.datasets.BUILTIN", {spec.name: spec, "mc_maze": get_spec("mc_maze")})
    generate(spec, tmp_path)
    stored = truth_path(spec, tmp_path).parent / "ceilings.json"
    assert not stored.exists()
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "computing the true-rate ceilings of synth_area2" in captured.err
    rows = {line.split()[0]: line.split() for line in captured.out.splitlines() if line.split()}
    # The stored figures are the suite's own scores of the true rates.
    tensors = make_tensors(spec, "val", 5, tmp_path)
    truth = make_true_rates(spec, tensors, tmp_path)
    assert truth is not None
    direct = score(truth, make_targets(spec, "val", 5, tmp_path), n_boot=0)
    assert rows["synth_area2"][-3:] == ["yes", f"{direct.co_bps:.4f}", f"{direct.fp_bps:.4f}"]
    assert rows["mc_maze"][-3:] == ["no", "-", "-"]
    saved = json.loads(stored.read_text())
    assert (saved["co_bps"], saved["fp_bps"], saved["psth_r2"]) == (direct.co_bps, direct.fp_bps, direct.psth_r2)
    # Read back, not recomputed, while the truth file is unchanged; recomputed once it changes.
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    assert "computing" not in capsys.readouterr().err
    generate(spec, tmp_path, overwrite=True)
    assert not stored.exists()
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    assert "computing" in capsys.readouterr().err and stored.is_file()
    saved["truth_mtime_ns"] -= 1
    stored.write_text(json.dumps(saved))
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    assert "computing" in capsys.readouterr().err
