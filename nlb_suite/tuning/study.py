"""One study on Ray Tune: PBT for LFADS (`pbt.py`), a random search (Optuna's TPE when optuna is
installed) for any other model, in a study folder that holds Ray's experiment state, every
trial's hyperparameters and curve (Ray's `params.json` and `progress.csv` in each trial's
folder), `rounds.jsonl` and `trials.json`. An interrupted study continues with `resume`
(Ray Tune's restore), losing at most the current perturbation interval.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..core.arrays import Tensors
from ..core.atomic import write_text_atomic
from ..core.errors import NlbSuiteError
from ..outputs.studies import STUDY_FILE, TRIALS_FILE
from .cluster import Cluster
from .progress import PlateauStopper, PopulationLog
from .space import StudyPlan
from .trainables import OBJECTIVE, lfads_member, model_trial
from .validation import validation_split


class StudyError(NlbSuiteError, RuntimeError):
    """A study that cannot start, resume or finish."""


@dataclass
class TrialSummary:
    """One trial at its end: its searched values, last metrics, score (the objective it is
    ranked by) and, for PBT, the folder of its last checkpoint."""

    trial_id: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    score: float
    checkpoint: str | None
    folder: str


@dataclass
class StudyResult:
    folder: Path
    trials: list[TrialSummary]  # best first
    minimize: bool
    wall_seconds: float

    @property
    def best(self) -> TrialSummary:
        return self.trials[0]


def _score(metrics: dict[str, Any], pbt: bool) -> float:
    """PBT members are ranked by their best smoothed validation loss after the penalty ramps
    (the weights they predict with), else by their last one; other trials by validation co-bps."""
    if pbt:
        best = metrics.get("best_objective")
        if best is not None and math.isfinite(best):
            return float(best)
    value = metrics.get(OBJECTIVE)
    return float(value) if value is not None and math.isfinite(value) else (math.inf if pbt else -math.inf)


def run_study(plan: StudyPlan, tensors: Tensors, folder: Path, cluster: Cluster, resume: bool = False,
              concurrent: int | None = None, on_round: Callable[[str], None] | None = None) -> StudyResult:
    """Run (or with `resume`, continue) the study of `plan` on `tensors` into `folder`, on the
    Ray session `cluster` (see `cluster.ray_session`). Each round's line goes to `on_round`
    (default: stderr). A study interrupted (Ctrl-C: Ray saves its state and returns) is a
    StudyError that says how to continue it."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress lines, not Ray's tables
    from ray import tune

    settings = plan.settings
    pbt = settings.method == "pbt"
    folder = folder.resolve()
    minimize = pbt
    if folder.exists() and any(folder.iterdir()) and not resume:
        raise StudyError(f"{folder}: a study is already there; continue it with --resume, or remove the folder "
                         "to start afresh")
    if resume and not tune.Tuner.can_restore(str(folder)):
        raise StudyError(f"--resume: no study to continue at {folder}; run without --resume to start it")
    if pbt:
        trainable = tune.with_parameters(lfads_member, base=plan.base, tensors=tensors,
                                         interval=settings.perturbation_interval)
    else:
        split = validation_split(tensors, settings.validation_fraction, settings.seed)
        trainable = tune.with_parameters(model_trial, model=plan.model, base=plan.base, split=split,
                                         each_epoch=settings.scheduler == "asha")
    trainable = tune.with_resources(trainable, {"cpu": 1})
    total = settings.epochs // settings.perturbation_interval if pbt else settings.samples
    log = PopulationLog(folder, plan.space, minimize=minimize, per_trial=not pbt, write=on_round, total=total)
    stopper = PlateauStopper(log, settings.patience_rounds, settings.min_improvement) if pbt else None
    previous = _read_json(folder / STUDY_FILE).get("wall_seconds", 0.0) if resume else 0.0
    started = time.perf_counter()
    if resume:
        tuner = tune.Tuner.restore(str(folder), trainable=trainable, resume_unfinished=True, resume_errored=True)
        # Ray restores the callbacks and stopper pickled when the study began; this run's
        # progress log (which reads the rounds already written) and stopper replace them.
        local = tuner._local_tuner
        assert local is not None, "a Tuner restored here runs here"
        run_config = local.get_run_config()
        run_config.callbacks, run_config.stop = [log], stopper
    else:
        tuner = tune.Tuner(trainable, param_space={dim.name: dim.initial() for dim in plan.space},
                           tune_config=_tune_config(plan, minimize, concurrent or cluster.cpus),
                           run_config=tune.RunConfig(
                               name=folder.name, storage_path=str(folder.parent), stop=stopper, callbacks=[log],
                               verbose=0, checkpoint_config=tune.CheckpointConfig(num_to_keep=3),
                               failure_config=tune.FailureConfig(max_failures=0)))
    try:
        grid = tuner.fit()
    finally:
        log.close()
    wall = previous + time.perf_counter() - started
    trials = []
    for index in range(len(grid)):
        result = grid[index]
        if result.error is not None:
            raise StudyError(f"{folder}: a trial failed: {result.error}")
        metrics = dict(result.metrics or {})
        trials.append(TrialSummary(
            trial_id=str(metrics.get("trial_id") or Path(result.path).name),
            config={dim.name: (result.config or {}).get(dim.name) for dim in plan.space},
            metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and k != "config"},
            score=_score(metrics, pbt),
            checkpoint=result.checkpoint.path if result.checkpoint is not None else None,
            folder=str(result.path)))
    expected = settings.population if pbt else settings.samples
    stopped = stopper is not None and stopper.stop_all()
    unfinished = len(trials) < expected or (pbt and not stopped and any(
        t.metrics.get("epoch", 0) < settings.epochs for t in trials))
    if not trials or unfinished:
        raise StudyError(f"{folder}: the study was interrupted before it finished; continue it with --resume")
    trials.sort(key=lambda t: t.score, reverse=not minimize)
    write_text_atomic(folder / TRIALS_FILE, json.dumps([asdict(t) for t in trials], indent=1) + "\n")
    write_text_atomic(folder / STUDY_FILE, json.dumps({"model": plan.model, "dataset": plan.dataset,
                                                      "method": settings.method, "wall_seconds": wall,
                                                      "settings": asdict(settings),
                                                      "space": [asdict(d) for d in plan.space]}, indent=1) + "\n")
    return StudyResult(folder, trials, minimize, wall)


def _tune_config(plan: StudyPlan, minimize: bool, concurrent: int) -> Any:
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    settings = plan.settings
    mode = "min" if minimize else "max"
    # Ray's random sampling, seeded: the same study draws the same first configurations. PBT's
    # members must all exist from the start (a synchronous round waits for every one; with more
    # members than CPUs Ray pauses and resumes them), so only a random search limits how many
    # trials it creates at once.
    search_alg: Any = BasicVariantGenerator(random_state=settings.seed)
    if settings.method == "pbt":
        from .pbt import BinaryTournamentPBT

        scheduler = BinaryTournamentPBT(space=plan.space, explore=settings.explore, seed=settings.seed,
                                        time_attr="epoch", perturbation_interval=settings.perturbation_interval,
                                        burn_in_period=settings.burn_in, last_epoch=settings.epochs)
        return tune.TuneConfig(metric=OBJECTIVE, mode=mode, scheduler=scheduler, search_alg=search_alg,
                               num_samples=settings.population)
    search_alg = BasicVariantGenerator(random_state=settings.seed, max_concurrent=min(concurrent, settings.population))
    try:
        import optuna  # noqa: F401  # Ray's wrapper imports it lazily; check it is there
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        search_alg = ConcurrencyLimiter(OptunaSearch(seed=settings.seed), min(concurrent, settings.population))
    except ImportError:
        pass  # random sampling
    early_stopping: Any = None
    if settings.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # max_t one past the budget: the fitted model's report comes after the last epoch's.
        early_stopping = ASHAScheduler(time_attr="epoch", max_t=int(plan.base.get("max_epochs", 1)) + 1,
                                       grace_period=settings.grace_epochs, reduction_factor=settings.reduction_factor)
    return tune.TuneConfig(metric=OBJECTIVE, mode=mode, search_alg=search_alg, scheduler=early_stopping,
                           num_samples=settings.samples)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
