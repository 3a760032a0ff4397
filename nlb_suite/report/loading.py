"""Reading a leaderboard's runs back for the report: each run's submission rates, latents and
training curves, and the dataset's tensors, targets and true rates rebuilt from its files (so the
figures show exactly what the runs were scored on).

Anything that cannot be had (a dataset whose files are not here, test-phase targets, a model
without latents) raises `PieceMissing`; its message is shown on the page in place of the figure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.arrays import EvalTargets, Tensors, TrueRates
from ..core.atomic import file_sha256
from ..core.errors import NlbSuiteError
from ..core.spec import DatasetSpec, SpecError
from ..datasets import recorded_spec
from ..outputs.artifacts import latents_path, read_artifacts
from ..outputs.results import RunRecord
from ..outputs.submission import SubmissionError, read_submission
from ..tensors import make_targets, make_tensors, make_true_rates
from .tables import TableKey, latest_runs

HISTORY_FIELDS = ("epoch", "train_loss", "valid_loss", "valid_co_bps")


class PieceMissing(Exception):
    """A figure's input is not available here; the message says why, in words for the page."""


@dataclass(frozen=True)
class TrainingHistory:
    """Per-epoch training curves of an iteratively trained model (LFADS)."""

    epoch: np.ndarray
    train_loss: np.ndarray
    valid_loss: np.ndarray
    valid_co_bps: np.ndarray


@dataclass
class RunOutputs:
    """One run's record and what it wrote: submission rates (one group's arrays), latents, curves."""

    label: str
    record: RunRecord
    rates: dict[str, np.ndarray]
    latents: dict[str, np.ndarray] = field(default_factory=dict)
    history: TrainingHistory | None = None

    def eval_rates_all(self) -> np.ndarray:
        """Eval-trial rates of all units, held-in first (the unit order of PSTH targets)."""
        return np.concatenate([self.rates["eval_rates_heldin"], self.rates["eval_rates_heldout"]], axis=2)

    def train_rates_all(self) -> np.ndarray:
        return np.concatenate([self.rates["train_rates_heldin"], self.rates["train_rates_heldout"]], axis=2)


@dataclass
class View:
    """Everything one leaderboard's figures need. `data_missing` / `targets_missing` say why the
    dataset or its targets are absent; `run_notes` list runs left out of the figures."""

    key: TableKey
    records: list[RunRecord]
    runs: list[RunOutputs]
    spec: DatasetSpec | None = None
    tensors: Tensors | None = None
    targets: EvalTargets | None = None
    true_rates: TrueRates | None = None
    data_missing: str | None = None
    targets_missing: str | None = None
    run_notes: list[str] = field(default_factory=list)

    def require_tensors(self) -> Tensors:
        if self.tensors is None:
            raise PieceMissing(self.data_missing or "the dataset's tensors are not available")
        return self.tensors

    def require_targets(self) -> EvalTargets:
        self.require_tensors()
        if self.targets is None:
            raise PieceMissing(self.targets_missing or "the evaluation targets are not available")
        return self.targets

    def require_runs(self) -> list[RunOutputs]:
        if not self.runs:
            raise PieceMissing("no run of this leaderboard has a readable submission file")
        return self.runs

def run_label(model: str, hyperparameter_hash: str, repeated_models: Collection[str]) -> str:
    """The name of a run on the page: its model, plus its hyperparameter hash when the same model
    has more than one run in the leaderboard."""
    return f"{model} [{hyperparameter_hash}]" if model in repeated_models else model


def repeated_models(models: Sequence[str]) -> set[str]:
    return {model for model, count in Counter(models).items() if count > 1}


def _read_latents(path: Path) -> tuple[dict[str, np.ndarray], TrainingHistory | None]:
    artifacts = read_artifacts(path)
    history = None
    if all(name in artifacts.history for name in HISTORY_FIELDS):
        history = TrainingHistory(**{name: artifacts.history[name] for name in HISTORY_FIELDS})
    return artifacts.latents, history


def _run_outputs(record: RunRecord, label: str, group: str) -> RunOutputs | str:
    """The run's files read back, or why they cannot be."""
    if not record.submission:
        return f"{label}: the record names no submission file"
    path = Path(record.submission)
    if record.submission_sha256 is not None and path.is_file() and file_sha256(path) != record.submission_sha256:
        # Same run name, other hyperparameters: a later run rewrote the file. Its scores stay in
        # the tables (they are in the record); its arrays are gone, so no figure or claim for it.
        return (f"{label}: {path} now holds a later run's rates (same name, rewritten since); its scores are "
                "in the table, its figures and claims need that run again")
    try:
        arrays = read_submission(path)
    except SubmissionError as err:
        return f"{label}: {err}"
    if group not in arrays:
        return f"{label}: {path} has no group {group!r}"
    try:
        latents, history = _read_latents(latents_path(path))
    except OSError as err:
        return f"{label}: cannot read {latents_path(path)} ({err})"
    return RunOutputs(label=label, record=record, rates=arrays[group], latents=latents, history=history)


def gather_view(records: Sequence[RunRecord], key: TableKey, root: str | Path | None = None) -> View:
    """The latest run per model and hyperparameter set of one leaderboard, with their outputs and
    the dataset's tensors, targets and (synthetic data) true rates."""
    chosen = latest_runs(r for r in records if (r.dataset, r.phase, r.bin_ms) == (key.dataset, key.phase, key.bin_ms))
    repeated = repeated_models([record.model for record in chosen])
    view = View(key=key, records=chosen, runs=[])
    stored = next((record.spec for record in reversed(chosen) if record.spec is not None), None)
    try:
        view.spec = recorded_spec(key.dataset, stored)
    except SpecError as err:
        view.data_missing = f"dataset {key.dataset!r}: {err}"
        return view
    group = view.spec.result_name(key.bin_ms)
    for record in chosen:
        outputs = _run_outputs(record, run_label(record.model, record.hyperparameter_hash, repeated), group)
        if isinstance(outputs, str):
            view.run_notes.append(outputs)
        else:
            view.runs.append(outputs)
    try:
        view.tensors = make_tensors(view.spec, key.phase, key.bin_ms, root)
        view.true_rates = make_true_rates(view.spec, view.tensors, root)
    except NlbSuiteError as err:
        view.data_missing = str(err)
        return view
    try:
        view.targets = make_targets(view.spec, key.phase, key.bin_ms, root)
    except NlbSuiteError as err:
        view.targets_missing = str(err)
    return view
