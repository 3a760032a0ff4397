"""The eval run end to end with a model written as the README shows, and its bad-input errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from nlb_suite.cli import main
from nlb_suite.core.arrays import Rates, Tensors
from nlb_suite.datasets import SpecError
from nlb_suite.models.base import ModelError, register_model
from nlb_suite.outputs.results import read_records
from nlb_suite.outputs.submission import read_submission
from nlb_suite.pipeline import run_eval


@register_model("mean_rate")
class MeanRate:
    """Each unit's mean training rate in every bin (the README's example model)."""

    def __init__(self, floor: float = 1e-4) -> None:
        if floor <= 0:
            raise ModelError(f"floor must be > 0, got {floor}")
        self.floor = floor

    def fit(self, tensors: Tensors) -> "MeanRate":
        self.heldin_ = np.nanmean(tensors.train_spikes_heldin, axis=(0, 1)) + self.floor
        self.heldout_ = np.nanmean(tensors.train_spikes_heldout, axis=(0, 1)) + self.floor
        return self

    def predict(self, tensors: Tensors) -> Rates:
        def fill(n: int, bins: int, rates: np.ndarray) -> np.ndarray:
            return np.broadcast_to(rates, (n, bins, rates.size)).copy()

        return Rates(
            train_rates_heldin=fill(tensors.n_train, tensors.n_bins, self.heldin_),
            train_rates_heldout=fill(tensors.n_train, tensors.n_bins, self.heldout_),
            eval_rates_heldin=fill(tensors.n_eval, tensors.n_bins, self.heldin_),
            eval_rates_heldout=fill(tensors.n_eval, tensors.n_bins, self.heldout_),
            eval_rates_heldin_forward=fill(tensors.n_eval, tensors.n_forward, self.heldin_),
            eval_rates_heldout_forward=fill(tensors.n_eval, tensors.n_forward, self.heldout_),
        )


def test_eval_run_writes_submission_and_record(synthetic_root: Path, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    run = run_eval("synth_maze_small", "mean_rate", bin_ms=20, root=synthetic_root,
                   submissions_dir=tmp_path, results=results, n_boot=50)
    arrays = read_submission(run.submission)["synth_maze_small_20"]
    assert arrays["eval_rates_heldout"].shape == (25, 35, 35)
    assert arrays["eval_rates_heldout"].dtype == np.float32
    (record,) = read_records(results)
    assert record.model == "mean_rate" and record.dataset == "synth_maze_small" and record.bin_ms == 20
    # The mean rate is the null model of co-bps: it scores about zero, far below the truth.
    assert abs(record.metrics["co-bps"]) < 0.05
    assert record.extra["co-bps ceiling"] > 0.1
    again = run_eval("synth_maze_small", "mean_rate", bin_ms=20, root=synthetic_root,
                     submissions_dir=tmp_path, results=results, n_boot=50)
    assert again.scores.to_dict() == run.scores.to_dict()


def test_latents_and_history_beside_the_submission(synthetic_root: Path, tmp_path: Path) -> None:
    run = run_eval("synth_area2", "kalman", bin_ms=20, root=synthetic_root, submissions_dir=tmp_path,
                   results=tmp_path / "r.jsonl", n_boot=20, overrides=["n_iter=3"])
    assert run.latents is not None
    with h5py.File(run.latents, "r") as f:
        assert f["eval_latents"].shape[:2] == (92, 30)


def test_bad_input_fails_before_any_work(synthetic_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model 'lfadz'"):
        run_eval("synth_maze_small", "lfadz", root=synthetic_root, submissions_dir=tmp_path)
    with pytest.raises(ModelError, match="no such hyperparameter"):
        run_eval("synth_maze_small", "mean_rate", overrides=["flor=1"], root=synthetic_root, submissions_dir=tmp_path)
    with pytest.raises(ModelError, match="floor must be > 0"):
        run_eval("synth_maze_small", "mean_rate", overrides=["floor=-1"], root=synthetic_root, submissions_dir=tmp_path)
    with pytest.raises(SpecError, match="unknown dataset"):
        run_eval("mc_mazzze", "mean_rate", root=synthetic_root, submissions_dir=tmp_path)
    with pytest.raises(SpecError, match="not 7 ms"):
        run_eval("synth_maze_small", "mean_rate", bin_ms=7, root=synthetic_root, submissions_dir=tmp_path)
    assert not list(tmp_path.glob("*.h5"))


TINY_LFADS = dict(ic_enc_dim=8, ci_enc_dim=4, con_dim=4, co_dim=1, ic_dim=4, gen_dim=8, fac_dim=3,
                  batch_size=32, max_epochs=1, log_every=0, n_samples=2)


def test_record_keeps_what_scale_to_data_chose(synthetic_root: Path, tmp_path: Path) -> None:
    run = run_eval("synth_maze_small", "lfads", bin_ms=20, overrides=TINY_LFADS, use_tables=False,
                   root=synthetic_root, submissions_dir=tmp_path, checkpoints_dir=tmp_path / "ckpt", n_boot=10,
                   results=tmp_path / "results.jsonl")
    assert run.record is not None and run.record.hyperparameters["lr"] == 4e-3  # the constructor's
    chosen = run.record.extra["fitted hyperparameters"]  # what it trained with: few batches, higher rate
    assert chosen["lr"] == 1e-2 and "gen_dim" not in chosen  # set by the overrides: kept


def test_lfads_checkpoints_by_default_and_resume_reaches_them(synthetic_root: Path, tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    run = run_eval("synth_maze_small", "lfads", bin_ms=20, overrides=TINY_LFADS, root=synthetic_root,
                   submissions_dir=tmp_path, checkpoints_dir=checkpoints, n_boot=10)
    assert run.checkpoints is not None and run.checkpoints.parent == checkpoints
    assert run.checkpoints.name == f"synth_maze_small_val_20ms_lfads_{run.record.hyperparameter_hash}"
    assert "checkpoint_dir" not in run.hyperparameters and run.runtime["threads"] == 1
    assert (run.checkpoints / "last.pt").exists()
    (run.checkpoints / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="last.pt: not a readable LFADS checkpoint"):
        run_eval("synth_maze_small", "lfads", bin_ms=20, overrides=TINY_LFADS, root=synthetic_root,
                 submissions_dir=tmp_path, checkpoints_dir=checkpoints, resume=True)
    with pytest.raises(ModelError, match="'gpfa' does not checkpoint its training; models that do: lfads"):
        run_eval("synth_maze_small", "gpfa", bin_ms=20, root=synthetic_root, submissions_dir=tmp_path,
                 resume=True)


def test_resume_with_changed_settings_is_refused_before_any_work(synthetic_root: Path, tmp_path: Path) -> None:
    """The bug where `--resume --set lr=0.05` continued with the old optimiser state: other
    hyperparameters belong to another checkpoint folder, so there is nothing to resume."""
    checkpoints = tmp_path / "checkpoints"
    run_eval("synth_maze_small", "lfads", bin_ms=20, overrides=TINY_LFADS, root=synthetic_root,
             submissions_dir=tmp_path, checkpoints_dir=checkpoints, n_boot=10, record=False)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ModelError, match="no checkpoint of this run with these hyperparameters.*other settings: "
                                         "synth_maze_small_val_20ms_lfads_"):
        run_eval("synth_maze_small", "lfads", bin_ms=20, overrides={**TINY_LFADS, "lr": 0.05, "cd_rate": 0.5},
                 root=synthetic_root, submissions_dir=tmp_path, checkpoints_dir=checkpoints, resume=True)
    assert sorted(tmp_path.rglob("*")) == before
    # Runtime settings are not hyperparameters: a resume with more threads is the same run.
    again = run_eval("synth_maze_small", "lfads", bin_ms=20, overrides={**TINY_LFADS, "threads": 2},
                     root=synthetic_root, submissions_dir=tmp_path, checkpoints_dir=checkpoints, resume=True,
                     n_boot=10, record=False)
    assert again.runtime["threads"] == 2


def test_cli_reports_errors_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--model", "mean_rate", "--dataset", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'nope'" in err and "Traceback" not in err
