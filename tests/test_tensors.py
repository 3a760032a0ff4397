"""Trial windows to tensors: the real DANDI test file, synthetic datasets, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from nlb_suite.data.nwb import NWBFormatError, read_recording
from nlb_suite.data.paths import MissingDataError, dataset_files
from nlb_suite.datasets import SpecError, get_spec
from nlb_suite.tensors import TensorError, make_targets, make_tensors
from nlb_suite.tensors.build import read_dataset_file
from nlb_suite.tensors.grid import Windows, observed_ms, ordered_units, seconds_to_ns, spike_tensors, window_start_bins


def real_windows(path: Path, bin_ms: int) -> dict[str, np.ndarray]:
    spec = get_spec("mc_maze_small")
    rec = read_dataset_file(path)
    align = seconds_to_ns(rec.trials[spec.align_field].to_numpy(float))
    windows = {
        "main": Windows(window_start_bins(align, spec.window_ms[0], bin_ms), spec.n_bins(bin_ms)),
        "forward": Windows(window_start_bins(align, spec.window_ms[1], bin_ms), spec.n_forward_bins(bin_ms)),
    }
    return spike_tensors(rec, ordered_units(rec, False), bin_ms, windows)


@pytest.mark.parametrize("bin_ms, n_bins, n_forward", [(5, 140, 40), (20, 35, 10)])
def test_real_test_file_loads(real_test_file: Path, bin_ms: int, n_bins: int, n_forward: int) -> None:
    rec = read_recording(real_test_file)
    assert len(rec.trials) == 100 and len(rec.units) == 107 and not rec.units.heldout.any()
    assert set(rec.trials["split"]) == {"test"}
    np.testing.assert_allclose(rec.trials["move_onset_time"] - rec.trials["start_time"], 0.25)
    tensors = real_windows(real_test_file, bin_ms)
    assert tensors["main"].shape == (100, n_bins, 107)
    assert tensors["forward"].shape == (100, n_forward, 107)
    # Test trials are 0.7 s windows, observed throughout; every spike lands in one of them.
    assert not np.isnan(tensors["main"]).any()
    assert tensors["main"].sum() == sum(len(t) for t in rec.units.spike_times)
    # The forward window runs past each trial's end into unobserved time, which is NaN, not 0.
    gap = tensors["forward"][:, : 100 // bin_ms]
    assert np.isnan(gap).all()


def test_observed_mask_follows_benchmark_rounding() -> None:
    mask = observed_ms(np.array([[0.0004, 0.0031], [0.0050, 0.0070]]), end_ms=10)
    assert mask.tolist() == [False, True, True, False, False, True, True, False, False, False]


def test_seconds_to_ns_matches_pandas() -> None:
    import pandas as pd

    values = np.array([0.25, 1.2345, 77.85, 1e-9, 3.0000000001, 12345.678901234])
    expected = pd.to_timedelta(values, unit="s").to_numpy().astype(np.int64)
    assert np.array_equal(seconds_to_ns(values), expected)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="synth_maze.*sub-Synth_ses-medium_desc-train"):
        make_tensors(get_spec("synth_maze"), "val", 5, tmp_path)


def test_unknown_dataset_and_bin() -> None:
    with pytest.raises(SpecError, match="unknown dataset 'mc_mazee'"):
        get_spec("mc_mazee")
    with pytest.raises(SpecError, match="bin sizes \\[5, 20\\] ms, not 10 ms"):
        make_tensors(get_spec("synth_maze_small"), "val", 10)


def test_truncated_and_non_hdf5_files(tmp_path: Path, real_test_file: Path) -> None:
    truncated = tmp_path / "truncated.nwb"
    truncated.write_bytes(real_test_file.read_bytes()[:200_000])
    with pytest.raises(NWBFormatError, match="truncated.nwb"):
        read_recording(truncated)
    text = tmp_path / "notes.nwb"
    text.write_text("not an NWB file")
    with pytest.raises(NWBFormatError, match="notes.nwb"):
        read_recording(text)


def test_missing_table_and_column(tmp_path: Path, real_test_file: Path) -> None:
    no_units = tmp_path / "no_units.nwb"
    shutil.copy(real_test_file, no_units)
    with h5py.File(no_units, "r+") as f:
        del f["units"]
    with pytest.raises(NWBFormatError, match="no units table"):
        read_recording(no_units)
    no_split = tmp_path / "no_split.nwb"
    shutil.copy(real_test_file, no_split)
    with h5py.File(no_split, "r+") as f:
        del f["intervals/trials/split"]
    with pytest.raises(NWBFormatError, match="split"):
        read_recording(no_split)


def test_synthetic_tensor_shapes(synthetic_root: Path) -> None:
    spec = get_spec("synth_maze_small")
    tensors = make_tensors(spec, "val", 5, synthetic_root)
    counts = spec.expected
    assert tensors.train_spikes_heldin.shape == (counts.val_train_trials, 140, counts.heldin_units)
    assert tensors.train_spikes_heldout.shape == (counts.val_train_trials, 140, counts.heldout_units)
    assert tensors.train_spikes_heldin_forward.shape == (counts.val_train_trials, 40, counts.heldin_units)
    assert tensors.eval_spikes_heldin.shape == (counts.val_eval_trials, 140, counts.heldin_units)
    assert tensors.train_behavior.shape == (counts.val_train_trials, 140, 2)
    test = make_tensors(spec, "test", 20, synthetic_root)
    assert test.train_spikes_heldin.shape == (counts.test_train_trials, 35, counts.heldin_units)
    assert test.eval_spikes_heldin.shape == (counts.test_eval_trials, 35, counts.heldin_units)
    targets = make_targets(spec, "val", 5, synthetic_root)
    assert targets.eval_spikes_heldout.shape == (counts.val_eval_trials, 140, counts.heldout_units)
    assert targets.psth.shape[1:] == (140, counts.heldin_units + counts.heldout_units)
    assert len(targets.eval_cond_idx) == targets.psth.shape[0]
    with pytest.raises(TensorError, match="eval_data_test.h5"):
        make_targets(get_spec("mc_maze_small"), "test", 5, synthetic_root)


def test_files_are_found_in_the_data_directory(synthetic_root: Path) -> None:
    files = dataset_files(get_spec("synth_area2"), synthetic_root)
    assert files.train.is_file() and files.test.is_file()
    assert str(files.train).startswith(str(synthetic_root / "synthetic" / "synth_area2"))


def test_synthetic_truth_agrees_with_the_files(synthetic_root: Path) -> None:
    """The truth file's test spikes are the test file's spikes where the file holds them, and
    the true rates average to the observed counts."""
    from nlb_suite.data.paths import truth_path
    from nlb_suite.tensors import make_true_rates
    from nlb_suite.tensors.build import _phase_trials, _truth_windows

    spec = get_spec("synth_maze_small")
    tensors = make_tensors(spec, "test", 20, synthetic_root)
    chosen = _phase_trials(spec, "test", dataset_files(spec, synthetic_root))
    path = truth_path(spec, synthetic_root)
    assert path is not None
    spikes = _truth_windows(path, "test", "spikes_all", chosen.eval_rec, chosen.eval, spec, 20, tensors.heldin_ids)
    assert np.array_equal(spikes["main"], tensors.eval_spikes_heldin)
    truth = make_true_rates(spec, tensors, synthetic_root)
    assert truth is not None
    observed = np.nanmean(tensors.train_spikes_heldin)
    assert abs(truth.train_rates_heldin.mean() - observed) < 0.02 * observed
    targets = make_targets(spec, "test", 20, synthetic_root)
    assert targets.eval_spikes_heldout.shape == (100, 35, spec.expected.heldout_units)
    assert targets.psth is None and targets.eval_behavior is None


# The fast paths (spikes counted only inside the windows, behaviour filtered only around them,
# the PSTH kernel and the FIR taps written without scipy) against the plain computations they
# replace, bit for bit, on random recordings with gaps, overlapping windows and windows that run
# off the session.

def _random_recording(seed: int, n_units: int = 6, end_s: float = 20.0, gaps: bool = True,
                      behavior_nans: bool = False, late_behavior_ms: int = 0):
    import pandas as pd

    from nlb_suite.data.nwb import Behavior, Recording, Units

    rng = np.random.default_rng(seed)
    spike_times, intervals = [], []
    shared = np.array([[0.0, 6.2005], [6.5, 13.0], [13.4, end_s]]) if gaps else np.array([[0.0, np.inf]])
    for unit in range(n_units):
        times = np.sort(rng.uniform(-0.5, end_s + 0.5, rng.integers(50, 400)))
        spike_times.append(times)
        # Every other unit has its own intervals (masks are shared only when equal).
        intervals.append(shared if unit % 2 == 0 else np.array([[0.3, 9.87654], [10.0, end_s - 1.0]]))
    units = Units(np.arange(n_units) * 3 + 1, tuple(spike_times), tuple(intervals),
                  np.array([i % 3 == 2 for i in range(n_units)]))
    starts = np.arange(0.2, end_s - 1.0, 0.9)
    trials = pd.DataFrame({"trial_id": np.arange(len(starts)), "start_time": starts, "stop_time": starts + 0.8,
                           "split": "train"})
    n_samples = int(end_s * 1000) - late_behavior_ms - 7
    data = rng.standard_normal((n_samples, 2)).cumsum(axis=0)
    if behavior_nans:
        data[1000:1400, 0] = np.nan
        data[5000:5003] = np.nan
    behavior = {"vel": Behavior("vel", data, ("x", "y"), 1000.0, late_behavior_ms / 1000.0)}
    return Recording(Path("random.nwb"), units, trials, behavior)


def _plain_spike_windows(rec, rows: np.ndarray, bin_ms: int, window) -> np.ndarray:
    """Every unit's spikes binned over the whole session, then the windows gathered."""
    from nlb_suite.tensors.grid import observed_ms

    end_ms = rec.end_ms
    n_bins = -(-end_ms // bin_ms)
    idx = window.starts[:, None] + np.arange(window.n_bins)[None, :]
    inside = (idx >= 0) & (idx < n_bins)
    out = np.full(idx.shape + (len(rows),), np.nan, dtype=np.float32)
    for column, row in enumerate(rows):
        observed = observed_ms(rec.units.obs_intervals[row], end_ms)
        ms = np.round(rec.units.spike_times[row] * 1000.0, 6).astype(np.int64)
        ms = ms[(ms >= 0) & (ms < end_ms)]
        counts = np.bincount(ms[observed[ms]] // bin_ms, minlength=n_bins).astype(np.float32)
        counts[~observed[::bin_ms]] = np.nan
        out[..., column][inside] = counts[idx[inside]]
    return out


@pytest.mark.parametrize("seed, bin_ms", [(0, 5), (1, 20), (2, 1), (3, 7)])
def test_spike_windows_equal_binning_the_whole_session(seed: int, bin_ms: int) -> None:
    rec = _random_recording(seed)
    rng = np.random.default_rng(seed)
    n = 700 // bin_ms
    # Overlapping, unsorted windows, some before the session's start or past its end.
    starts = rng.integers(-n, rec.end_ms // bin_ms + 5, 60)
    rows = np.arange(len(rec.units))
    ours = spike_tensors(rec, rows, bin_ms, {"main": Windows(starts, n)})["main"]
    assert np.array_equal(ours, _plain_spike_windows(rec, rows, bin_ms, Windows(starts, n)), equal_nan=True)
    assert np.isnan(ours).any() and np.nansum(ours) > 0


def _plain_behavior_windows(rec, field: str, bin_ms: int, starts: np.ndarray, n: int) -> np.ndarray:
    """The session's behaviour filled, prefixed and decimated whole by scipy, then windowed."""
    from scipy import signal

    series = rec.behavior[field]
    end_ms = rec.end_ms
    ms = np.round(series.times() * 1000.0).astype(np.int64)
    grid = np.full((end_ms, series.data.shape[1]), np.nan)
    grid[ms] = series.data
    missing_first = np.isnan(grid[::bin_ms])
    positions = np.arange(end_ms)
    for channel in range(grid.shape[1]):
        valid = ~np.isnan(grid[:, channel])
        grid[:, channel] = np.interp(positions, positions[valid], grid[valid, channel])
    prefixed = np.vstack([np.repeat(grid[:1], 500, axis=0), grid])
    decimated = signal.decimate(prefixed, bin_ms, n=500, ftype="fir", axis=0)[500 // bin_ms:]
    decimated[missing_first] = np.nan
    idx = starts[:, None] + np.arange(n)[None, :]
    inside = (idx >= 0) & (idx < len(decimated))
    out = np.full(idx.shape + (grid.shape[1],), np.nan)
    out[inside] = decimated[idx[inside]]
    return out


@pytest.mark.parametrize("bin_ms", [5, 20, 4, 10])
@pytest.mark.parametrize("nans, late_ms", [(False, 0), (True, 0), (False, 333)])
def test_behavior_windows_equal_scipy_decimating_the_whole_session(bin_ms: int, nans: bool, late_ms: int) -> None:
    from nlb_suite.tensors.behavior import behavior_windows

    rec = _random_recording(bin_ms, behavior_nans=nans, late_behavior_ms=late_ms)
    n = 600 // bin_ms
    starts = np.random.default_rng(bin_ms).integers(-n, rec.end_ms // bin_ms + 3, 700)  # > one call's windows
    ours = behavior_windows(rec, "vel", bin_ms, starts, n)
    assert np.array_equal(ours, _plain_behavior_windows(rec, "vel", bin_ms, starts, n), equal_nan=True)


@pytest.mark.parametrize("q", [2, 4, 5, 10, 20, 25, 50])
def test_fir_taps_are_scipys(q: int) -> None:
    from scipy import signal

    from nlb_suite.tensors.behavior import fir_taps

    assert fir_taps(q).tobytes() == signal.firwin(501, 1.0 / q, window="hamming").tobytes()


@pytest.mark.parametrize("sd_ms", [1, 5, 20, 40, 50, 70])
def test_psth_kernel_is_scipys_gaussian(sd_ms: int) -> None:
    from scipy.signal import windows

    from nlb_suite.tensors.psth import gaussian_kernel

    expected = windows.gaussian(6 * sd_ms, sd_ms, sym=True)
    assert gaussian_kernel(sd_ms).tobytes() == (expected / expected.sum()).tobytes()


def test_tensors_do_not_import_scipy_signal(synthetic_root: Path) -> None:
    """scipy.signal takes 0.5 s to import; the tensor path (behaviour and PSTHs) needs none of it."""
    import subprocess
    import sys

    code = ("import sys; from nlb_suite.datasets import get_spec; from nlb_suite.tensors import make_tensors, "
            "make_targets; spec = get_spec('synth_maze_small'); make_tensors(spec, 'val', 5, sys.argv[1]); "
            "make_targets(spec, 'val', 5, sys.argv[1]); print(sorted(m for m in sys.modules if m.startswith('scipy.signal')))")
    done = subprocess.run([sys.executable, "-c", code, str(synthetic_root)], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("seed", range(4))
def test_spike_location_counts_equal_testing_each_spike(seed: int, caplog: pytest.LogCaptureFixture) -> None:
    from nlb_suite.data.nwb import _check_spike_locations

    rec = _random_recording(seed, gaps=seed % 2 == 0)
    end_s = rec.end_ms / 1000.0
    outside = unobserved = 0
    for times, intervals in zip(rec.units.spike_times, rec.units.obs_intervals):
        in_session = (times >= 0) & (times < end_s)
        observed = ((times[:, None] >= intervals[None, :, 0]) & (times[:, None] < intervals[None, :, 1])).any(axis=1)
        outside += int((~in_session).sum())
        unobserved += int((in_session & ~observed).sum())
    with caplog.at_level("WARNING"):
        _check_spike_locations(rec)
    assert f"{outside} spike time(s)" in caplog.text
    assert (f"{unobserved} spike time(s)" in caplog.text) == (unobserved > 0)
