"""One tuning study end to end: plan (from `[search]`) -> data -> study on Ray Tune -> best
configuration (`best.toml`) -> the best member as a normal run (submission, score, results record)
-> with `ensemble`, the mean of the K best members' rates as a second run.

Everything that can be checked before Ray starts is checked first (the plan, the address, the
ensemble size). The best member's run goes through `run_eval` with `best.toml`'s contents, so
`nlb-suite eval --config best.toml` reruns it exactly: for PBT it predicts from the best member's
saved state (the hyperparameters changed during training, so no fixed set retrains it), for a
random search it refits the best configuration.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.arrays import RATE_ARRAYS, Phase, Rates, Tensors, average_rates, check_phase
from ..core.atomic import write_text_atomic
from ..core.errors import NlbSuiteError
from ..datasets import get_spec
from ..models.base import Checkpointing, EpochProgress, make_model, model_class
from ..outputs.locations import SUBMISSIONS
from ..outputs.results import git_commit
from ..outputs.studies import BEST_FILE
from ..tensors import make_tensors
from ..tuning.cluster import check_address, ray_session
from ..tuning.space import SearchSpaceError, StudyPlan, read_plan
from ..tuning.study import StudyResult, TrialSummary, run_study
from .eval import EvalRun, configure, ensure_dataset, publish, run_eval, run_name

STUDIES = Path("runs/tune")
BEST_CHECKPOINT = "best"


class BestConfigError(NlbSuiteError, ValueError):
    """A best-configuration file that cannot be read back."""


@dataclass
class BestConfig:
    """What `best.toml` holds: the run to repeat, and for PBT the folder of the member's state."""

    model: str
    dataset: str
    phase: Phase
    bin_ms: int
    hyperparameters: dict[str, Any]
    checkpoint: Path | None = None
    study: str = ""


@dataclass
class TuneRun:
    folder: Path
    study: StudyResult
    best: EvalRun
    best_config: Path
    ensemble: EvalRun | None = None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else "nan"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def write_best_config(path: Path, best: BestConfig, comment: str) -> Path:
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"model = {_toml_value(best.model)}", f"dataset = {_toml_value(best.dataset)}",
              f"phase = {_toml_value(best.phase)}", f"bin_ms = {best.bin_ms}", f"study = {_toml_value(best.study)}"]
    if best.checkpoint is not None:
        lines.append(f"checkpoint = {_toml_value(str(best.checkpoint.relative_to(path.parent)))}")
    lines += ["", "[hyperparameters]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in best.hyperparameters.items() if value is not None]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def read_best_config(path: Path) -> BestConfig:
    """A `best.toml` written by a study; a checkpoint is found relative to the file."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise BestConfigError(f"{path}: cannot read the configuration ({err})") from None
    missing = sorted({"model", "dataset", "phase", "bin_ms", "hyperparameters"} - set(document))
    if missing:
        raise BestConfigError(f"{path}: missing {missing}; a configuration written by `nlb-suite tune` has them")
    if not isinstance(document["hyperparameters"], dict):
        raise BestConfigError(f"{path}: [hyperparameters] must be a table")
    checkpoint = document.get("checkpoint")
    folder = (Path(path).parent / checkpoint) if checkpoint else None
    if folder is not None and not folder.is_dir():
        raise BestConfigError(f"{path}: its checkpoint folder {folder} is missing; rerun the study or copy the "
                              "whole study folder")
    return BestConfig(str(document["model"]), str(document["dataset"]), check_phase(document["phase"]),
                      int(document["bin_ms"]), dict(document["hyperparameters"]), folder,
                      str(document.get("study", "")))


def eval_best(config: BestConfig, **options: Any) -> EvalRun:
    """The run a `best.toml` describes: its hyperparameters exactly (no tables), from its
    checkpoint when it has one."""
    return run_eval(config.dataset, config.model, phase=config.phase, bin_ms=config.bin_ms,
                    overrides=config.hyperparameters, use_tables=False, resume=config.checkpoint is not None,
                    checkpoint=config.checkpoint, **options)


def check_study_model(plan: StudyPlan) -> None:
    """PBT perturbs hyperparameters while training, which only LFADS's members support; ASHA
    watches a trial epoch by epoch, which only models trained in epochs allow."""
    if plan.settings.scheduler == "asha" and not issubclass(model_class(plan.model), EpochProgress):
        raise SearchSpaceError(f"{plan.source}: scheduler 'asha' stops trials between epochs, and model "
                               f"{plan.model!r} does not train in epochs; drop scheduler = \"asha\"")
    if plan.settings.method != "pbt":
        return
    if plan.model != "lfads":
        raise SearchSpaceError(f"{plan.source}: method 'pbt' trains LFADS members; model {plan.model!r} is tuned "
                               "with method = \"random\"")
    from ..models.lfads.member import MUTABLE

    fixed = sorted(dim.name for dim in plan.space if dim.name not in MUTABLE)
    if fixed:
        raise SearchSpaceError(f"{plan.source} [search.space]: {fixed} cannot change while LFADS trains, so PBT "
                               f"cannot search them; PBT searches {sorted(MUTABLE)}")


def run_tune(dataset: str, model: str, *, phase: Phase = "val", bin_ms: int = 5,
             overrides: list[str] | dict[str, Any] | None = None, use_tables: bool = True,
             settings: dict[str, Any] | None = None, root: str | Path | None = None, fetch: bool = True,
             submissions_dir: Path = SUBMISSIONS, results: str | Path | None = None, n_boot: int = 1000,
             address: str | None = None, cpus: int | None = None, resume: bool = False, ensemble: int = 0,
             studies_dir: Path = STUDIES) -> TuneRun:
    """Tune `model` on `dataset` (see the module's docstring); the study folder is
    `studies_dir/<dataset>_<phase>_<bin>ms_<model>/`."""
    git_commit()  # the code as the study starts (read once per process)
    spec = get_spec(dataset)
    check_phase(phase)
    spec.check_bin(bin_ms)
    plan = read_plan(model, spec.name, bin_ms, overrides, use_tables, settings)
    check_study_model(plan)
    check_address(address)
    members = plan.settings.population if plan.settings.method == "pbt" else plan.settings.samples
    if ensemble < 0 or ensemble > members or ensemble == 1:
        raise SearchSpaceError(f"--ensemble {ensemble}: must be 0 (none) or between 2 and the study's "
                               f"{members} trials")
    folder = studies_dir / run_name(spec, phase, bin_ms, model)
    # How best.toml and the ensemble find the dataset again: a built-in by its name, a user's by
    # its TOML file (absolute, so that the rerun works from any folder).
    reference = str(Path(dataset).resolve()) if spec.source == "user" else spec.name
    ensure_dataset(spec, root, fetch)
    tensors = make_tensors(spec, phase, bin_ms, root)
    with ray_session(address, cpus) as cluster:
        study = run_study(plan, tensors, folder, cluster, resume)
    tuning = {"study": str(folder), "method": plan.settings.method, "trials": len(study.trials),
              "wall_seconds": study.wall_seconds, "objective": study.best.score,
              "searched": {dim.name: study.best.config.get(dim.name) for dim in plan.space}}

    best_config = _best_config(plan, reference, phase, bin_ms, study.best, folder, BEST_CHECKPOINT)
    best_path = write_best_config(folder / BEST_FILE, best_config, (
        f"Best configuration of the study in {folder} ({plan.settings.method}, {len(study.trials)} trials,\n"
        f"objective {study.best.score:.6g}). Rerun exactly: nlb-suite eval --config {folder / BEST_FILE}"))
    options = dict(root=root, fetch=False, submissions_dir=submissions_dir, results=results, n_boot=n_boot)
    best = eval_best(read_best_config(best_path), extra={"tuning": tuning}, **options)

    ensemble_run = None
    if ensemble:
        ensemble_run = _ensemble(plan, reference, phase, bin_ms, study, folder, ensemble, tuning, **options)
    return TuneRun(folder, study, best, best_path, ensemble_run)


def _best_config(plan: StudyPlan, dataset: str, phase: Phase, bin_ms: int, trial: TrialSummary, folder: Path,
                 name: str) -> BestConfig:
    hyperparameters = plan.base | trial.config
    checkpoint = None
    if plan.settings.method == "pbt":
        from ..models.lfads.member import export_checkpoint

        if trial.checkpoint is None:
            raise SearchSpaceError(f"{folder}: trial {trial.trial_id} left no checkpoint to predict from")
        checkpoint = folder / name
        hyperparameters = export_checkpoint(Path(trial.checkpoint), checkpoint, hyperparameters)
    return BestConfig(plan.model, dataset, phase, bin_ms, hyperparameters, checkpoint, str(folder))


@dataclass
class StudyEnsemble:
    """The mean rates of a study's best distinct trials, and which trials they are."""

    rates: Rates
    members: list[TrialSummary]


def ensemble_rates(plan: StudyPlan, study: StudyResult, folder: Path, k: int, tensors: Tensors) -> StudyEnsemble:
    """The mean of the K best trials' rates, each predicted as its own best.toml would (PBT: from
    the member's saved state, exported to `folder/member<i>`; else refitted). Trials whose rates
    equal a better trial's are passed over for the next one: after PBT's last exploit, and
    wherever a loser never beat the best weights it copied, several members hold the same
    weights (a synth_maze study's 3 best were one model three times), and an ensemble of copies
    is that one model."""
    members: list[Rates] = []
    chosen: list[TrialSummary] = []
    for index, trial in enumerate(study.trials):
        if len(members) == k:
            break
        config = _best_config(plan, plan.dataset, tensors.phase, plan.bin_ms, trial, folder, f"member{index}")
        estimator = make_model(plan.model, **config.hyperparameters)
        if config.checkpoint is not None and isinstance(estimator, Checkpointing):
            estimator.use_checkpoints(config.checkpoint, resume=True)
        estimator.fit(tensors)
        rates = estimator.predict(tensors)
        if any(_same_rates(rates, other) for other in members):
            continue
        members.append(rates)
        chosen.append(trial)
    return StudyEnsemble(average_rates(members), chosen)


def _same_rates(first: Rates, second: Rates) -> bool:
    return all(np.array_equal(getattr(first, name), getattr(second, name), equal_nan=True) for name in RATE_ARRAYS)


def _ensemble(plan: StudyPlan, dataset: str, phase: Phase, bin_ms: int, study: StudyResult, folder: Path, k: int,
              tuning: dict[str, Any], **options: Any) -> EvalRun:
    """The K best trials' ensemble as a run of its own, `<model>-ensemble<K>`."""
    spec = get_spec(dataset)
    tensors = make_tensors(spec, phase, bin_ms, options.get("root"))
    ensemble = ensemble_rates(plan, study, folder, k, tensors)
    asked, rates, k = k, ensemble.rates, len(ensemble.members)  # the label says how many differed
    label = f"{plan.model}-ensemble{k}"
    settings = configure(plan.model, spec, bin_ms, plan.base | study.best.config, use_tables=False)
    hyperparameters = dict(settings.hyperparameters, ensemble=k)
    published = publish(rates, tensors, spec, phase, bin_ms, plan.model,
                        type(settings)(settings.model, hyperparameters, settings.runtime), label=label,
                        extra={"tuning": tuning | {"ensemble": k, "ensemble_asked": asked,
                                                   "members": [t.trial_id for t in ensemble.members]}},
                        root=options.get("root"), submissions_dir=options["submissions_dir"],
                        results=options.get("results"), n_boot=options.get("n_boot", 1000))
    return EvalRun(spec=spec, phase=phase, bin_ms=bin_ms, model=label, hyperparameters=hyperparameters,
                   runtime=settings.runtime, submission=published.submission, latents=published.latents,
                   checkpoints=None, scores=published.scores, record=published.record)
