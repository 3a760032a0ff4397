"""One evaluation run: data -> tensors -> fit -> predict -> submission -> score -> results record.

This is what `nlb-suite eval` and `make eval` run. Everything that can be checked before the
model trains (dataset name, bin size, hyperparameters, files) is checked first.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .core.arrays import Phase, Tensors
from .data.paths import DatasetFiles, require_files
from .datasets import DatasetSpec, get_spec
from .models.base import Model, ModelError, hyperparameter_names, model_class, model_names
from .models.config import configured_model, load_hyperparameters
from .outputs.artifacts import latents_path, write_artifacts
from .outputs.results import RunRecord, append_record
from .outputs.submission import write_submission
from .scoring import Scores, score
from .tensors import make_targets, make_tensors, make_true_rates

DEFAULT_SUBMISSIONS = Path("submissions")
# Models that checkpoint their training (a `checkpoint_dir` hyperparameter) do so here, one folder
# per run name, unless the hyperparameters name another folder.
DEFAULT_CHECKPOINTS = Path("runs/checkpoints")


def ensure_dataset(spec: DatasetSpec, root: str | Path | None = None, fetch: bool = True) -> DatasetFiles:
    """The dataset's files, made (synthetic) or fetched and verified (DANDI) when needed."""
    if spec.source == "synthetic":
        from .datasets.synthetic import ensure_generated

        return ensure_generated(spec, root)
    if spec.source == "dandi" and fetch:
        from .data.fetch import fetch_dataset

        return fetch_dataset(spec, root)
    return require_files(spec, root)


@dataclass
class EvalRun:
    """What one run produced."""

    spec: DatasetSpec
    phase: Phase
    bin_ms: int
    model: str
    hyperparameters: dict[str, Any]
    submission: Path
    latents: Path | None
    scores: Scores | None
    record: RunRecord | None


def submission_path(out_dir: Path, spec: DatasetSpec, phase: Phase, bin_ms: int, model: str) -> Path:
    return out_dir / f"{spec.name}_{phase}_{bin_ms}ms_{model}.h5"


def training_history(model: Model) -> dict[str, np.ndarray] | None:
    """Per-epoch curves of an iteratively trained model, if it keeps them: `history_`, a list of
    dataclass rows (one per epoch: epoch, train_loss, valid_loss, valid_co_bps, ...)."""
    rows = getattr(model, "history_", None)
    if not rows or not dataclasses.is_dataclass(rows[0]):
        return None
    names = [f.name for f in dataclasses.fields(rows[0])]
    return {name: np.array([getattr(row, name) for row in rows], dtype=np.float64) for name in names}


def _with_checkpoints(model: str, dataset: str, bin_ms: int,
                      overrides: list[str] | dict[str, Any] | None, resume: bool,
                      default_dir: Path) -> list[str] | dict[str, Any] | None:
    """`overrides` plus a checkpoint folder (where the model takes one and none is set) and
    resume=true when asked; resuming a model that cannot is an error."""
    if "checkpoint_dir" not in hyperparameter_names(model_class(model)):
        if resume:
            raise ModelError(f"--resume: model {model!r} does not checkpoint its training; "
                             f"models that do: {', '.join(_checkpointing_models())}")
        return overrides
    extra: dict[str, Any] = {}
    if not load_hyperparameters(model, dataset, bin_ms, overrides)["checkpoint_dir"]:
        extra["checkpoint_dir"] = str(default_dir)
    if resume:
        extra["resume"] = True
    if isinstance(overrides, dict):
        return {**overrides, **extra}
    return [*(overrides or []), *(f"{key}={value}" for key, value in extra.items())]


def _checkpointing_models() -> list[str]:
    return [name for name in model_names()
            if "checkpoint_dir" in hyperparameter_names(model_class(name))]


def run_eval(dataset: str, model: str, *, phase: Phase = "val", bin_ms: int = 5,
             overrides: list[str] | dict[str, Any] | None = None, root: str | Path | None = None,
             fetch: bool = True, submissions_dir: Path = DEFAULT_SUBMISSIONS, results: str | Path | None = None,
             n_boot: int = 1000, record: bool = True, resume: bool = False,
             checkpoints_dir: Path = DEFAULT_CHECKPOINTS) -> EvalRun:
    """Fit `model` on `dataset` and, in the val phase, score it and append a results record.

    A model that checkpoints its training does so under `checkpoints_dir` (unless its
    hyperparameters name a folder); `resume` continues an interrupted run from there."""
    spec = get_spec(dataset)
    spec.check_bin(bin_ms)
    overrides = _with_checkpoints(
        model, spec.name, bin_ms, overrides, resume,
        checkpoints_dir / submission_path(Path(), spec, phase, bin_ms, model).stem)
    hyperparameters = load_hyperparameters(model, spec.name, bin_ms, overrides)
    estimator: Model = configured_model(model, spec.name, bin_ms, overrides)
    ensure_dataset(spec, root, fetch)
    tensors: Tensors = make_tensors(spec, phase, bin_ms, root)

    started = time.perf_counter()
    estimator.fit(tensors)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    rates = estimator.predict(tensors)
    predict_seconds = time.perf_counter() - started
    rates.check_shapes(tensors.sizes)

    path = submission_path(Path(submissions_dir), spec, phase, bin_ms, model)
    write_submission(path, {spec.result_name(bin_ms): rates})
    latents = write_artifacts(latents_path(path), rates.latents, training_history(estimator))

    scores = None
    if phase == "val" or spec.source == "synthetic":
        targets = make_targets(spec, phase, bin_ms, root)
        scores = score(rates, targets, true_rates=make_true_rates(spec, tensors, root), n_boot=n_boot,
                       seed=int(hyperparameters.get("seed", 0) or 0))
    run_record = None
    if record and scores is not None:
        run_record = RunRecord.from_scores(
            scores, dataset=spec.name, phase=phase, bin_ms=bin_ms, model=model, hyperparameters=hyperparameters,
            seed=hyperparameters.get("seed"), fit_seconds=fit_seconds, predict_seconds=predict_seconds,
            submission=path,
        )
        append_record(run_record, results)
    return EvalRun(spec=spec, phase=phase, bin_ms=bin_ms, model=model, hyperparameters=hyperparameters,
                   submission=path, latents=latents, scores=scores, record=run_record)
