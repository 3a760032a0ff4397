"""Ensembles: the mean of several runs' rates (same dataset, phase and bin size; any models) as a
new submission, scored and recorded like any run, its hyperparameters listing its members.

A member is named by its submission file, or by its run name (the file's stem, e.g.
`synth_maze_val_5ms_ndt_seed1`) in the submissions folder. Its dataset, phase, bin size, model
and hyperparameters come from its latest record in the results store; a member without one (a
test-phase run on real data is never scored here) needs them from the caller.

`run_seeds` is `nlb-suite eval --seeds N`: the same model at N seeds, then their ensemble.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.arrays import RATE_ARRAYS, Phase, Rates, average_rates, check_phase
from ..core.errors import NlbSuiteError
from ..core.spec import DatasetSpec
from ..datasets import get_spec, recorded_spec
from ..models.base import SEED
from ..models.config import load_hyperparameters
from ..outputs.artifacts import latents_path
from ..outputs.results import (
    ENSEMBLE_MEMBERS,
    ResultsStoreError,
    RunRecord,
    append_record,
    ensemble_model_name,
    hyperparameter_hash,
    read_records,
)
from ..outputs.submission import read_submission, write_submission
from ..scoring import Scores, score
from ..tensors import make_targets, make_tensors, make_true_rates
from .eval import DEFAULT_SUBMISSIONS, EvalRun, ensure_dataset, record_spec, run_eval, run_name


class EnsembleError(NlbSuiteError, ValueError):
    """Members that cannot be averaged: missing, unrecorded, or of different data."""


@dataclass(frozen=True)
class Member:
    """One run going into an ensemble."""

    submission: Path
    dataset: str
    phase: Phase
    bin_ms: int
    model: str
    hyperparameter_hash: str | None
    seed: int | None
    fit_seconds: float | None
    spec: dict[str, Any] | None = None  # the record's spec of a dataset that is not built in

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "hyperparameter_hash": self.hyperparameter_hash, "seed": self.seed,
                "submission": str(self.submission)}


@dataclass
class EnsembleRun:
    """What an ensemble produced."""

    name: str
    members: list[Member]
    submission: Path
    scores: Scores | None
    record: RunRecord | None


def member_path(run: str | Path, submissions_dir: Path = DEFAULT_SUBMISSIONS) -> Path:
    """A run's submission file: `run` itself when it is a file, else `<submissions_dir>/<run>.h5`."""
    path = Path(run)
    if path.is_file():
        return path
    named = Path(submissions_dir) / f"{run}.h5"
    if named.is_file():
        return named
    raise EnsembleError(f"ensemble member {str(run)!r}: no such submission file, nor {named}; name a run by "
                        f"its submission file or by its run name, the stem of a file in {submissions_dir}")


def _latest_records(results: str | Path | None) -> dict[Path, RunRecord]:
    """Latest record per submission file (resolved), from the store; empty without a store."""
    try:
        records = read_records(results)
    except ResultsStoreError:
        return {}
    latest: dict[Path, RunRecord] = {}
    for record in records:
        if record.submission:
            latest[Path(record.submission).resolve()] = record
    return latest


def find_members(runs: list[str | Path], *, submissions_dir: Path = DEFAULT_SUBMISSIONS,
                 results: str | Path | None = None, dataset: str | None = None, phase: Phase | None = None,
                 bin_ms: int | None = None) -> list[Member]:
    """The members named by `runs`, from their records (or `dataset`/`phase`/`bin_ms` for those
    without one), checked to be of one dataset, phase and bin size."""
    if len(runs) < 2:
        raise EnsembleError(f"an ensemble needs at least 2 runs, got {len(runs)}")
    records = _latest_records(results)
    members = []
    for run in runs:
        path = member_path(run, submissions_dir)
        record = records.get(path.resolve())
        if record is not None:
            members.append(Member(path, record.dataset, record.phase, record.bin_ms, record.model,
                                  record.hyperparameter_hash, record.seed, record.fit_seconds, record.spec))
        elif dataset is not None and phase is not None and bin_ms is not None:
            members.append(Member(path, dataset, phase, bin_ms, "unrecorded", None, None, None))
        else:
            raise EnsembleError(f"ensemble member {path}: no record of it in the results store "
                                f"({results or 'the default store'}); pass --dataset, --phase and --bin "
                                "to say what it is, or --results naming the store that has it")
    kinds = {(m.dataset, m.phase, m.bin_ms) for m in members}
    if len(kinds) > 1:
        listing = "; ".join(f"{m.submission}: {m.dataset} {m.phase} {m.bin_ms} ms" for m in members)
        raise EnsembleError(f"ensemble members must share dataset, phase and bin size: {listing}")
    if len({m.submission.resolve() for m in members}) < len(members):
        raise EnsembleError("an ensemble member is named twice: " + ", ".join(str(m.submission) for m in members))
    return members


def member_rates(member: Member, spec: DatasetSpec) -> Rates:
    """A member's six rate arrays, read from its submission."""
    group = spec.result_name(member.bin_ms)
    arrays = read_submission(member.submission)
    if group not in arrays:
        raise EnsembleError(f"{member.submission}: no group {group!r} (it holds {sorted(arrays)})")
    missing = [name for name in RATE_ARRAYS if name not in arrays[group]]
    if missing:
        raise EnsembleError(f"{member.submission}: group {group!r} lacks {missing}; an ensemble needs every "
                            "rate array, the forward ones included")
    blocks: dict[str, Any] = {name: arrays[group][name] for name in RATE_ARRAYS}
    return Rates(**blocks)


def ensemble_name(spec: DatasetSpec, phase: Phase, bin_ms: int, members: list[Member]) -> str:
    """`<dataset>_<phase>_<bin>ms_ensemble_<hash of the members>`."""
    digest = hyperparameter_hash({ENSEMBLE_MEMBERS: [m.describe() for m in members]})
    return f"{run_name(spec, phase, bin_ms, 'ensemble')}_{digest}"


def run_ensemble(runs: list[str | Path], *, submissions_dir: Path = DEFAULT_SUBMISSIONS,
                 results: str | Path | None = None, root: str | Path | None = None, n_boot: int = 1000,
                 record: bool = True, dataset: str | None = None, phase: Phase | None = None,
                 bin_ms: int | None = None, out_dir: Path | None = None) -> EnsembleRun:
    """Average the members' rates into `<out_dir>/<ensemble name>.h5` (out_dir: the submissions
    folder), score it where targets exist (val phase, or synthetic data) and record it with model
    `ensemble(...)` and hyperparameters {"members": [...]}."""
    if phase is not None:
        check_phase(phase)
    members = find_members(runs, submissions_dir=submissions_dir, results=results, dataset=dataset,
                           phase=phase, bin_ms=bin_ms)
    first = members[0]
    spec = recorded_spec(first.dataset, first.spec)
    started = time.perf_counter()
    rates = average_rates([member_rates(member, spec) for member in members])
    name = ensemble_name(spec, first.phase, first.bin_ms, members)
    path = Path(out_dir or submissions_dir) / f"{name}.h5"
    write_submission(path, {spec.result_name(first.bin_ms): rates})
    # An ensemble has no latents of its own: remove a stale file of an earlier ensemble of this name.
    latents_path(path).unlink(missing_ok=True)
    average_seconds = time.perf_counter() - started

    scores = None
    if first.phase == "val" or spec.source == "synthetic":
        ensure_dataset(spec, root, fetch=False)
        targets = make_targets(spec, first.phase, first.bin_ms, root)
        tensors = make_tensors(spec, first.phase, first.bin_ms, root)
        seed = next((m.seed for m in members if m.seed is not None), 0)
        scores = score(rates, targets, true_rates=make_true_rates(spec, tensors, root), n_boot=n_boot, seed=seed)
    run_record = None
    if record and scores is not None:
        fits = [m.fit_seconds for m in members]
        run_record = RunRecord.from_scores(
            scores, dataset=spec.name, phase=first.phase, bin_ms=first.bin_ms,
            model=ensemble_model_name([m.model for m in members]),
            hyperparameters={ENSEMBLE_MEMBERS: [m.describe() for m in members]},
            fit_seconds=sum(f for f in fits if f is not None) if all(f is not None for f in fits) else None,
            predict_seconds=average_seconds, submission=path, spec=record_spec(spec),
        )
        append_record(run_record, results)
    return EnsembleRun(name=name, members=members, submission=path, scores=scores, record=run_record)


def run_seeds(dataset: str, model: str, n_seeds: int, *, overrides: list[str] | dict[str, Any] | None = None,
              phase: Phase = "val", bin_ms: int = 5, submissions_dir: Path = DEFAULT_SUBMISSIONS,
              results: str | Path | None = None, **eval_options: Any) -> tuple[list[EvalRun], EnsembleRun]:
    """`model` at seeds s, s + 1, ..., s + n_seeds - 1 (s: its configured seed), each a run of
    its own (`<run name>_seed<k>`), then the ensemble of them all."""
    if n_seeds < 2:
        raise EnsembleError(f"--seeds must be at least 2 for an ensemble, got {n_seeds}")
    spec = get_spec(dataset)
    configured = load_hyperparameters(model, spec.name, bin_ms, overrides, eval_options.get("use_tables", True))
    if SEED not in configured:
        raise EnsembleError(f"--seeds: model {model!r} has no {SEED!r} hyperparameter, so its runs would all be "
                            "the same; ensemble different models with `nlb-suite ensemble RUN...` instead")
    base = int(configured[SEED])
    runs = []
    for seed in range(base, base + n_seeds):
        if isinstance(overrides, dict):
            seeded: list[str] | dict[str, Any] = {**overrides, SEED: seed}
        else:
            seeded = [*(overrides or []), f"{SEED}={seed}"]
        runs.append(run_eval(dataset, model, phase=phase, bin_ms=bin_ms, overrides=seeded,
                             submissions_dir=submissions_dir, results=results, name_suffix=f"_seed{seed}",
                             **eval_options))
    ensemble = run_ensemble([run.submission for run in runs], submissions_dir=submissions_dir, results=results,
                            root=eval_options.get("root"), n_boot=eval_options.get("n_boot", 1000),
                            record=eval_options.get("record", True), dataset=spec.name, phase=phase,
                            bin_ms=bin_ms)
    return runs, ensemble
