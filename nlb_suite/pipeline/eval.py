"""One evaluation run: data -> tensors -> fit -> predict -> score -> submission -> results record.

This is what `nlb-suite eval` and `make eval` run. Everything that can be checked before the
model trains (dataset, phase, bin size, hyperparameters, resume, files, and that every output
location can be written) is checked first, and nothing is written before the model has
predicted and been scored.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.arrays import Phase, Rates, Tensors, check_phase
from ..core.paths import inside
from ..core.spec import DatasetSpec, spec_to_dict
from ..core.writable import check_file, check_folder
from ..data.paths import DatasetFiles, require_files
from ..datasets import BUILTIN, get_spec
from ..models.base import (
    SEED,
    Checkpointing,
    FittedHyperparameters,
    Model,
    ModelError,
    TrainingCurves,
    model_class,
    model_names,
    runtime_names,
)
from ..models.config import configured_model, load_hyperparameters
from ..outputs import locations
from ..outputs.artifacts import latents_path, write_artifacts
from ..outputs.results import RunRecord, append_record, git_commit, hyperparameter_hash, results_path
from ..outputs.submission import check_writable, write_submission
from ..scoring import Scores, score
from ..tensors import make_targets, make_tensors, make_true_rates

DEFAULT_SUBMISSIONS = locations.SUBMISSIONS
DEFAULT_CHECKPOINTS = locations.CHECKPOINTS


def ensure_dataset(spec: DatasetSpec, root: str | Path | None = None, fetch: bool = True) -> DatasetFiles:
    """The dataset's files, made (synthetic) or fetched and verified (DANDI) when needed."""
    if spec.source == "synthetic":
        from ..datasets.synthetic import ensure_generated

        return ensure_generated(spec, root)
    if spec.source == "dandi" and fetch:
        from ..data.fetch import fetch_dataset

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
    runtime: dict[str, Any]
    submission: Path
    latents: Path | None
    checkpoints: Path | None
    scores: Scores | None
    record: RunRecord | None


def run_name(spec: DatasetSpec, phase: Phase, bin_ms: int, model: str) -> str:
    """`<dataset>_<phase>_<bin>ms_<model>`: the stem of a run's submission, study and folders."""
    return f"{spec.name}_{phase}_{bin_ms}ms_{model}"


def submission_path(out_dir: Path, spec: DatasetSpec, phase: Phase, bin_ms: int, model: str, suffix: str = "") -> Path:
    """Where a run's submission goes: `<run name><suffix>.h5` inside `out_dir`, never outside it."""
    return inside(out_dir, f"{run_name(spec, phase, bin_ms, model)}{suffix}.h5")


def record_spec(spec: DatasetSpec) -> dict[str, Any] | None:
    """What a results record keeps of the dataset: nothing for a built-in dataset (its name
    finds it), the whole spec for any other."""
    return None if BUILTIN.get(spec.name) == spec else spec_to_dict(spec)


@dataclass(frozen=True)
class ModelSettings:
    """A configured model and its settings, split into what it computes and how it runs."""

    model: Model
    hyperparameters: dict[str, Any]
    runtime: dict[str, Any]


def configure(model: str, spec: DatasetSpec, bin_ms: int, overrides: list[str] | dict[str, Any] | None = None,
              use_tables: bool = True) -> ModelSettings:
    """The model as `baselines/<model>.toml` and the overrides configure it for `spec`."""
    values = load_hyperparameters(model, spec.name, bin_ms, overrides, use_tables)
    estimator = configured_model(model, spec.name, bin_ms, overrides, use_tables)
    runtime_keys = runtime_names(model_class(model))
    return ModelSettings(estimator, {k: v for k, v in values.items() if k not in runtime_keys},
                         {k: v for k, v in values.items() if k in runtime_keys})


def checkpoint_folder(checkpoints_dir: Path, name: str, hyperparameters: dict[str, Any]) -> Path:
    """One folder per run name and hyperparameter set: other settings never meet this checkpoint."""
    return inside(checkpoints_dir, f"{name}_{hyperparameter_hash(hyperparameters)}")


def _prepare_checkpoints(settings: ModelSettings, model: str, folder: Path, resume: bool) -> Path | None:
    if not isinstance(settings.model, Checkpointing):
        if resume:
            raise ModelError(f"--resume: model {model!r} does not checkpoint its training; "
                             f"models that do: {', '.join(_checkpointing_models()) or 'none'}")
        return None
    if resume and not (folder.is_dir() and any(folder.iterdir())):
        others = sorted(p.name for p in folder.parent.glob(f"{folder.name.rsplit('_', 1)[0]}_*") if p != folder)
        hint = f"; checkpoints of this run with other settings: {', '.join(others)}" if others else ""
        raise ModelError(f"--resume: no checkpoint of this run with these hyperparameters at {folder}{hint}")
    settings.model.use_checkpoints(folder, resume)
    return folder


def _checkpointing_models() -> list[str]:
    names = []
    for name in model_names():
        try:
            if issubclass(model_class(name), Checkpointing):
                names.append(name)
        except (ModelError, TypeError):
            continue
    return names


def run_eval(dataset: str, model: str, *, phase: Phase = "val", bin_ms: int = 5,
             overrides: list[str] | dict[str, Any] | None = None, root: str | Path | None = None,
             fetch: bool = True, submissions_dir: Path = DEFAULT_SUBMISSIONS, results: str | Path | None = None,
             n_boot: int = 1000, record: bool = True, resume: bool = False,
             checkpoints_dir: Path = DEFAULT_CHECKPOINTS, use_tables: bool = True, name_suffix: str = "",
             checkpoint: Path | None = None, extra: dict[str, Any] | None = None) -> EvalRun:
    """Fit `model` on `dataset` and, in the val phase (or on synthetic data), score it and append
    a results record. `use_tables=False` ignores the dataset's own tables in the model's TOML.

    A model that checkpoints its training does so under `checkpoints_dir`, in a folder of this
    run name and hyperparameters (or in `checkpoint`, a folder of its own: a tuning study's best
    member); `resume` continues an interrupted run from there. `name_suffix` is added to the run
    name of its submission and checkpoints (one seed of several: `_seed1`). `extra` goes into the
    record's `extra` (a tuned run's study)."""
    git_commit()  # the code as the run starts (read once per process)
    spec = get_spec(dataset)
    check_phase(phase)
    spec.check_bin(bin_ms)
    settings = configure(model, spec, bin_ms, overrides, use_tables)
    name = run_name(spec, phase, bin_ms, model) + name_suffix
    path = submission_path(Path(submissions_dir), spec, phase, bin_ms, model, name_suffix)
    # Every output location is checked before the fit, so that an hour of training never ends
    # in a folder that is a file, and no submission is left without its record.
    check_writable(path, [spec.result_name(bin_ms)])
    check_file(latents_path(path), "the run's latents")
    if record:
        check_file(results_path(results), "the results store", append=True)
    if isinstance(settings.model, Checkpointing) and checkpoint is None:
        check_folder(checkpoints_dir, "the checkpoints folder")
    folder = checkpoint or checkpoint_folder(checkpoints_dir, name, settings.hyperparameters)
    checkpoints = _prepare_checkpoints(settings, model, folder, resume)
    ensure_dataset(spec, root, fetch)
    tensors: Tensors = make_tensors(spec, phase, bin_ms, root)
    estimator = settings.model

    started = time.perf_counter()
    estimator.fit(tensors)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    rates = estimator.predict(tensors)
    predict_seconds = time.perf_counter() - started
    curves = estimator.training_curves() if isinstance(estimator, TrainingCurves) else None
    if isinstance(estimator, FittedHyperparameters):
        # What the data chose (LFADS's scaled sizes, budget, rate), kept where it differs from
        # the constructor's values so that a record never shows a rate it did not train at.
        chosen = {key: value for key, value in estimator.fitted_params().items()
                  if settings.hyperparameters.get(key) != value}
        if chosen:
            extra = (extra or {}) | {"fitted hyperparameters": chosen}
    published = publish(rates, tensors, spec, phase, bin_ms, model, settings, root=root,
                        submissions_dir=submissions_dir, results=results, n_boot=n_boot, record=record,
                        curves=curves, fit_seconds=fit_seconds, predict_seconds=predict_seconds, extra=extra,
                        name_suffix=name_suffix)
    return EvalRun(spec=spec, phase=phase, bin_ms=bin_ms, model=model, hyperparameters=settings.hyperparameters,
                   runtime=settings.runtime, submission=published.submission, latents=published.latents,
                   checkpoints=checkpoints, scores=published.scores, record=published.record)


@dataclass
class Published:
    submission: Path
    latents: Path | None
    scores: Scores | None
    record: RunRecord | None


def publish(rates: Rates, tensors: Tensors, spec: DatasetSpec, phase: Phase, bin_ms: int, model: str,
            settings: ModelSettings, *, root: str | Path | None = None, submissions_dir: Path = DEFAULT_SUBMISSIONS,
            results: str | Path | None = None, n_boot: int = 1000, record: bool = True,
            curves: dict[str, Any] | None = None, fit_seconds: float | None = None,
            predict_seconds: float | None = None, extra: dict[str, Any] | None = None,
            label: str | None = None, name_suffix: str = "") -> Published:
    """A model's rates as a submission (`<run name><name_suffix>.h5`, or `label` in place of the
    model's name) and, where targets exist, scores and a results record under that name. Scored
    before anything is written."""
    label = label or model
    rates.check_shapes(tensors.sizes, where=f"model {label!r}")
    targets = make_targets(spec, phase, bin_ms, root) if phase == "val" or spec.source == "synthetic" else None
    seed = settings.hyperparameters.get(SEED)
    path = submission_path(Path(submissions_dir), spec, phase, bin_ms, label, name_suffix)
    # Scored before anything is written: a scoring failure (a damaged truth file, say) leaves no
    # submission without its record.
    scores = None
    if targets is not None:
        scores = score(rates, targets, true_rates=make_true_rates(spec, tensors, root), n_boot=n_boot,
                       seed=int(seed or 0))
    write_submission(path, {spec.result_name(bin_ms): rates})
    latents = write_artifacts(latents_path(path), rates.latents, curves)

    run_record = None
    if record and scores is not None:
        run_record = RunRecord.from_scores(
            scores, dataset=spec.name, phase=phase, bin_ms=bin_ms, model=label,
            hyperparameters=settings.hyperparameters, seed=seed, fit_seconds=fit_seconds,
            predict_seconds=predict_seconds, submission=path, runtime=settings.runtime, spec=record_spec(spec),
        )
        if extra:
            run_record = dataclasses.replace(run_record, extra=run_record.extra | extra)
        append_record(run_record, results)
    return Published(path, latents, scores, run_record)
