"""MC_RTT and DMFC_RSG: their specs, the look-alikes synth_rtt and synth_rsg, their tensors
(overlapping windows, trial-table behaviour, set..go segments, jitter), their metrics, every model
on their shapes, and their failure modes. The comparison with nlb_tools itself is in
test_oracle.py."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from lfads_testing import one_torch_thread  # noqa: F401  (autouse fixture)
from test_model_contract import FAST

from nlb_suite.core.errors import NlbSuiteError
from nlb_suite.data.nwb import NWBFormatError
from nlb_suite.data.paths import dataset_files
from nlb_suite.datasets import BUILTIN, get_spec
from nlb_suite.models.base import make_model
from nlb_suite.scoring import evaluate, score, targets_to_dict
from nlb_suite.tensors import TensorError, make_targets, make_tensors, make_true_rates
from nlb_suite.tensors.build import jitter_bins


def test_all_seven_nlb_datasets_are_built_in_and_fetchable() -> None:
    nlb = ["mc_maze", "mc_rtt", "area2_bump", "dmfc_rsg", "mc_maze_large", "mc_maze_medium", "mc_maze_small"]
    assert all(BUILTIN[name].source == "dandi" and BUILTIN[name].train.sha256 for name in nlb)
    assert BUILTIN["mc_rtt"].dandiset == "000129" and BUILTIN["dmfc_rsg"].dandiset == "000130"
    rtt, rsg = BUILTIN["mc_rtt"], BUILTIN["dmfc_rsg"]
    assert (rtt.align_field, rtt.window_ms, rtt.behavior_field, rtt.behavior_lag_ms, rtt.psth_conditions) == \
        ("start_time", (0, 600), "finger_vel", 140, ())
    assert (rsg.align_field, rsg.window_ms, rsg.eval_segment, rsg.psth_kern_sd_ms) == \
        ("go_time", (-1500, 0), ("set_time", "go_time"), 70)
    assert rsg.behavior_columns == ("is_eye", "theta", "is_short", "ts", "tp")
    for name in ("synth_rtt", "synth_rtt_small", "synth_rsg", "synth_rsg_small"):
        assert BUILTIN[name].source == "synthetic"


def test_jitter_follows_nlb_tools_rule() -> None:
    spec = get_spec("dmfc_rsg")
    import pandas as pd

    trials = pd.DataFrame({"tp": [1400.0, 1000.0, 1490.0, 1600.0, 900.0], "split": ["train", "val", "val", "train",
                                                                                    "test"]})
    for bin_ms in (5, 20):
        jitter = jitter_bins(spec, trials, bin_ms)
        high = np.floor(np.round(np.clip(1500 - trials["tp"].to_numpy(), 0, 300) / bin_ms, 4))
        assert np.all((jitter >= 0) & (jitter <= high))
        assert jitter[3] == 0 and jitter[4] == 0  # no room after tp; test trials never move
        expected = np.round(np.random.RandomState(0).random_sample(5) * np.where(trials["split"] == "test", 0, high))
        assert np.array_equal(jitter, expected)


@pytest.mark.parametrize("bin_ms", [5, 20])
def test_rsg_tensors_segments_and_jitter(synthetic_root: Path, bin_ms: int) -> None:
    spec = get_spec("synth_rsg_small")
    tensors = make_tensors(spec, "val", bin_ms, synthetic_root)
    targets = make_targets(spec, "val", bin_ms, synthetic_root)
    n = spec.n_bins(bin_ms)
    assert tensors.train_spikes_heldin.shape[1] == n and not np.isnan(tensors.eval_spikes_heldin).any()
    assert tensors.train_behavior is not None and tensors.train_behavior.shape == (tensors.n_train, 5)
    outliers = tensors.train_trials["is_outlier"].to_numpy(bool)
    assert outliers.any() and np.isnan(tensors.train_behavior[outliers]).all()
    assert not np.isnan(tensors.train_behavior[~outliers]).any()
    # Held-out targets: observed from set (rounded up to a bin) to go, shifted by the jitter.
    assert targets.eval_jitter is not None and targets.eval_jitter.max() > 0
    trials = tensors.eval_trials
    observed = ~np.isnan(targets.eval_spikes_heldout[..., 0])
    length = observed.sum(axis=1)
    tp_bins = trials["tp"].to_numpy() / bin_ms
    assert np.all(np.abs(length - tp_bins) <= 1)
    last = n - 1 - np.argmax(observed[:, ::-1], axis=1)
    assert np.array_equal(last, n - 1 - targets.eval_jitter)
    assert targets.psth is not None and targets.psth.shape[1:] == (n, tensors.n_heldin + tensors.n_heldout)
    true = make_true_rates(spec, tensors, synthetic_root)
    assert true is not None and true.eval_rates_heldout.shape == targets.eval_spikes_heldout.shape


def test_true_rates_score_tp_corr_as_evaluate_does(synthetic_root: Path) -> None:
    spec = get_spec("synth_rsg_small")
    tensors = make_tensors(spec, "val", 20, synthetic_root)
    targets = make_targets(spec, "val", 20, synthetic_root)
    true = make_true_rates(spec, tensors, synthetic_root)
    assert true is not None
    scores = score(true, targets, n_boot=50)
    official = evaluate({"synth_rsg_small_20": targets_to_dict(targets)}, {"synth_rsg_small_20": true.arrays()})
    metrics = official[0]["synth_rsg_small_20_split"]
    assert list(metrics) == ["co-bps", "tp corr", "psth R2", "fp-bps"]
    assert scores.vel_r2 is None and scores.tp_corr is not None
    assert abs(scores.tp_corr - metrics["tp corr"]) < 1e-12 and abs(scores.psth_r2 - metrics["psth R2"]) < 1e-12
    # The ramp's speed sets tp: the true rates change faster on trials that go sooner.
    assert scores.tp_corr < -0.3 and scores.ci["tp_corr"].low <= scores.tp_corr <= scores.ci["tp_corr"].high


def test_rtt_tensors_overlap_and_velocity(synthetic_root: Path) -> None:
    spec = get_spec("synth_rtt_small")
    tensors = make_tensors(spec, "val", 20, synthetic_root)
    targets = make_targets(spec, "val", 20, synthetic_root)
    assert targets.psth is None and targets.eval_behavior is not None and targets.eval_behavior.ndim == 3
    true = make_true_rates(spec, tensors, synthetic_root)
    assert true is not None
    scores = score(true, targets, n_boot=0)
    assert scores.psth_r2 is None and scores.tp_corr is None and scores.vel_r2 is not None and scores.vel_r2 > 0.3
    # Windows are laid end to end: a trial's forward window is the next trial's first bins.
    starts = tensors.train_trials["start_time"].to_numpy()
    assert np.all(np.round(np.diff(np.sort(starts)) * 1000).astype(int) % spec.window_len_ms == 0)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["synth_rtt_small", "synth_rsg_small"])
@pytest.mark.parametrize("model_name", ["smoothing", "gpfa", "kalman", "lfads"])
def test_every_model_runs_on_the_new_shapes(synthetic_root: Path, dataset: str, model_name: str) -> None:
    spec = get_spec(dataset)
    tensors = make_tensors(spec, "val", 20, synthetic_root)
    targets = make_targets(spec, "val", 20, synthetic_root)
    settings: dict[str, Any] = dict(FAST[model_name])
    if model_name == "lfads":
        settings.update(max_epochs=3, patience=3)
    rates = make_model(model_name, **settings).fit(tensors).predict(tensors)
    rates.check_shapes(tensors.sizes)
    scores = score(rates, targets, n_boot=0)
    assert np.isfinite(scores.co_bps) and np.isfinite(scores.fp_bps or np.nan)
    behaviour_metric = scores.tp_corr if dataset == "synth_rsg_small" else scores.vel_r2
    assert behaviour_metric is not None and np.isfinite(behaviour_metric)


def _copy_train_file(synthetic_root: Path, dataset: str, tmp_path: Path) -> tuple[Any, Path]:
    spec = get_spec(dataset)
    files = dataset_files(spec, synthetic_root)
    train, test = tmp_path / "train.nwb", tmp_path / "test.nwb"
    shutil.copy(files.train, train)
    shutil.copy(files.test, test)
    return replace(spec.with_paths(train, test), folder=None, source="user"), train


def _drop_trial_column(path: Path, column: str) -> None:
    with h5py.File(path, "a") as f:
        group = f["intervals/trials"]
        del group[column]
        names = [c.decode() if isinstance(c, bytes) else str(c) for c in group.attrs["colnames"]]
        group.attrs["colnames"] = np.array([c for c in names if c != column], dtype=object)


@pytest.mark.parametrize("column", ["set_time", "tp"])
def test_rsg_file_without_set_time_or_tp_is_refused(synthetic_root: Path, tmp_path: Path, column: str) -> None:
    spec, train = _copy_train_file(synthetic_root, "synth_rsg_small", tmp_path)
    _drop_trial_column(train, column)
    for make in (make_tensors, make_targets):
        with pytest.raises(NWBFormatError, match=rf"{train}.*lacks column\(s\) \['{column}'\]"):
            make(spec, "val", 20)


def test_rtt_behaviour_that_does_not_cover_the_windows_is_refused(synthetic_root: Path, tmp_path: Path) -> None:
    spec, train = _copy_train_file(synthetic_root, "synth_rtt_small", tmp_path)
    with h5py.File(train, "a") as f:
        series = f["processing/behavior/finger_vel"]
        data = series["data"][()]
        attrs = dict(series["data"].attrs)
        del series["data"]
        series.create_dataset("data", data=data[: len(data) // 2])
        series["data"].attrs.update(attrs)
    with pytest.raises(TensorError, match=r"finger_vel.*does not cover the windows of trial\(s\)"):
        make_tensors(spec, "val", 20)


def test_overlapping_windows_where_not_allowed_are_refused(synthetic_root: Path) -> None:
    spec = replace(get_spec("synth_rtt_small"), allow_overlap=False, window_ms=(0, 800))
    with pytest.raises(TensorError, match="run into the next trial.*allow_overlap") as info:
        make_tensors(spec, "val", 20, synthetic_root)
    assert isinstance(info.value, NlbSuiteError)
    make_tensors(replace(spec, allow_overlap=True), "val", 20, synthetic_root)
