"""Ensembles: `nlb-suite ensemble RUN...` and `eval --seeds N` average their members' rates into
a scored, recorded submission whose hyperparameters list the members."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlb_suite.cli import main
from nlb_suite.core.arrays import RATE_ARRAYS, Rates, Tensors
from nlb_suite.models.base import register_model
from nlb_suite.outputs.results import ENSEMBLE_MEMBERS, read_records
from nlb_suite.outputs.submission import read_submission
from nlb_suite.pipeline import run_eval
from nlb_suite.pipeline.ensemble import EnsembleError, run_ensemble
from nlb_suite.report.tables import leaderboard

GROUP = "synth_maze_small_20"


@register_model("jittered_mean")
class JitteredMean:
    """Each unit's mean training rate per bin of the trial, times a seed-dependent jitter per unit:
    different seeds give different rates, so their mean differs from every member."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, tensors: Tensors) -> "JitteredMean":
        jitter = np.random.default_rng(self.seed).uniform(0.7, 1.3, tensors.n_heldin + tensors.n_heldout)
        spikes = np.concatenate([tensors.train_spikes_heldin, tensors.train_spikes_heldout], axis=2)
        forward = np.concatenate([tensors.train_spikes_heldin_forward, tensors.train_spikes_heldout_forward], axis=2)
        self.psth_ = (np.nanmean(spikes, axis=0) + 1e-3) * jitter
        self.forward_ = (np.nanmean(forward, axis=0) + 1e-3) * jitter
        self.n_heldin_ = tensors.n_heldin
        return self

    def predict(self, tensors: Tensors) -> Rates:
        train = np.broadcast_to(self.psth_, (tensors.n_train, *self.psth_.shape))
        evaluation = np.broadcast_to(self.psth_, (tensors.n_eval, *self.psth_.shape))
        forward = np.broadcast_to(self.forward_, (tensors.n_eval, *self.forward_.shape))
        return Rates.from_all_units(train, evaluation, forward, self.n_heldin_)


def _member(root: Path, out: Path, results: Path, seed: int) -> Path:
    run = run_eval("synth_maze_small", "jittered_mean", bin_ms=20, root=root, submissions_dir=out, results=results,
                   n_boot=20, overrides=[f"seed={seed}"], name_suffix=f"_seed{seed}")
    return run.submission


def test_ensemble_is_the_mean_of_its_members_scored_and_recorded(synthetic_root: Path, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    paths = [_member(synthetic_root, tmp_path, results, seed) for seed in (1, 2, 3)]
    ensemble = run_ensemble([paths[0], paths[1].stem, paths[2]], submissions_dir=tmp_path, results=results,
                            root=synthetic_root, n_boot=20)
    got = read_submission(ensemble.submission)[GROUP]
    members = [read_submission(path)[GROUP] for path in paths]
    for name in RATE_ARRAYS:
        expected = np.mean([member[name].astype(np.float64) for member in members], axis=0)
        np.testing.assert_allclose(got[name], expected, rtol=1e-6, err_msg=name)
        assert not np.allclose(got[name], members[0][name])
    record = read_records(results)[-1]
    assert record.model == "ensemble(jittered_mean x3)"
    assert [m["seed"] for m in record.hyperparameters[ENSEMBLE_MEMBERS]] == [1, 2, 3]
    assert record.metrics["co-bps"] == pytest.approx(ensemble.scores.co_bps)
    table = leaderboard(read_records(results), "synth_maze_small", "val", 20, include_published=False)
    assert "ensemble(jittered_mean x3)" in set(table["method"])


def test_ensemble_refuses_members_of_other_data(synthetic_root: Path, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    path = _member(synthetic_root, tmp_path, results, 1)
    other = run_eval("synth_area2", "jittered_mean", bin_ms=20, root=synthetic_root, submissions_dir=tmp_path,
                     results=results, n_boot=20).submission
    with pytest.raises(EnsembleError, match="share dataset"):
        run_ensemble([path, other], submissions_dir=tmp_path, results=results, root=synthetic_root)
    with pytest.raises(EnsembleError, match="at least 2"):
        run_ensemble([path], submissions_dir=tmp_path, results=results, root=synthetic_root)
    with pytest.raises(EnsembleError, match="no such submission"):
        run_ensemble([path, "nothing_here"], submissions_dir=tmp_path, results=results, root=synthetic_root)
    copy = path.with_name("copy.h5")
    copy.write_bytes(path.read_bytes())
    with pytest.raises(EnsembleError, match="no record"):
        run_ensemble([path, copy], submissions_dir=tmp_path, results=results, root=synthetic_root)
    # Unrecorded members are averaged when the caller says what they are.
    assert run_ensemble([path, copy], submissions_dir=tmp_path, results=results, root=synthetic_root,
                        dataset="synth_maze_small", phase="val", bin_ms=20, n_boot=10).scores is not None


def test_cli_seeds_then_ensemble_command(synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results.jsonl"
    common = ["--data-dir", str(synthetic_root), "--results", str(results)]
    assert main(["eval", "--model", "jittered_mean", "--dataset", "synth_maze_small", "--bin", "20", "--seeds", "2",
                 "--n-boot", "20", "--out", str(tmp_path), *common]) == 0
    assert (tmp_path / "synth_maze_small_val_20ms_jittered_mean_seed0.h5").is_file()
    assert (tmp_path / "synth_maze_small_val_20ms_jittered_mean_seed1.h5").is_file()
    assert read_records(results)[-1].model == "ensemble(jittered_mean x2)"
    assert main(["ensemble", "synth_maze_small_val_20ms_jittered_mean_seed0",
                 "synth_maze_small_val_20ms_jittered_mean_seed1", "--submissions", str(tmp_path), "--n-boot", "20",
                 *common]) == 0
    out = capsys.readouterr().out
    assert "ensemble of 2" in out and "co_bps" in out
    assert main(["ensemble", "synth_maze_small_val_20ms_jittered_mean_seed0", "--submissions", str(tmp_path),
                 *common]) == 2


def test_ensemble_of_runs_on_a_users_dataset(tmp_path: Path) -> None:
    """A user's dataset has no name to look up: the ensemble takes its spec from the members'
    records (`nlb-suite ensemble` on two Yu 2009 runs once failed with "unknown dataset")."""
    from nlb_suite.datasets.toml_spec import spec_to_toml
    from nlb_suite.datasets.trial_arrays import write_trial_arrays

    spikes = np.random.default_rng(0).poisson(0.05, (40, 6, 300)).astype(np.uint8)
    spec = write_trial_arrays(tmp_path / "data", "mine", spikes, np.arange(40) % 4, heldout_units=[1, 4],
                              align_ms=50, window_ms=(0, 200), forward_ms=40, seed=1)
    toml = tmp_path / "data" / "mine.toml"
    toml.write_text(spec_to_toml(spec))
    results = tmp_path / "results.jsonl"
    paths = [run_eval(str(toml), "jittered_mean", bin_ms=20, submissions_dir=tmp_path, results=results, n_boot=10,
                      overrides=[f"seed={seed}"], name_suffix=f"_seed{seed}").submission for seed in (1, 2)]
    ensemble = run_ensemble(paths, submissions_dir=tmp_path, results=results, n_boot=10)
    assert ensemble.scores is not None and ensemble.record is not None and ensemble.record.dataset == "mine"
    got = read_submission(ensemble.submission)["mine_20"]
    members = [read_submission(path)["mine_20"] for path in paths]
    np.testing.assert_allclose(got["eval_rates_heldout"],
                               (members[0]["eval_rates_heldout"] + members[1]["eval_rates_heldout"]) / 2, rtol=1e-6)
