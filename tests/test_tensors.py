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
