"""What the report's figures are drawn from, gathered per leaderboard (dataset, phase, bin size).

A `View` holds the dataset's tensors and evaluation targets (rebuilt from the NWB files, so
the figures show exactly what the runs were scored on) and, per run, the rates of its submission
file and the latents and training curves of the `_latents.h5` file the pipeline writes beside it.
The functions below cut those into the small named arrays each figure draws.

Anything that cannot be had (a dataset whose files are not here, test-phase targets, a model
without latents) raises `PieceMissing`; its message is shown on the page in place of the figure.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.arrays import EvalTargets, Tensors, TrueRates
from ..core.errors import NlbSuiteError
from ..datasets import DatasetSpec, SpecError, get_spec
from ..outputs.artifacts import latents_path, read_artifacts
from ..outputs.results import RunRecord
from ..outputs.submission import SubmissionError, read_submission
from ..scoring.metrics import decode_velocity
from ..scoring.r2 import r2_score
from ..tensors import make_targets, make_tensors, make_true_rates
from .decoding import KalmanVelocityDecoder
from .tables import TableKey, latest_runs

# Latent arrays drawn as trajectories, most informative first: LFADS factors, then the latent
# states of GPFA and the Kalman-filter model.
TRAJECTORY_SOURCES = ("eval_factors", "eval_latents")
INPUTS_KEY = "eval_inputs"
HISTORY_GROUP = "history"
HISTORY_FIELDS = ("epoch", "train_loss", "valid_loss", "valid_co_bps")
BUMP_FIELD = "bump_time"
# Window around the bump for the inferred-input figure: the input should be silent before it.
BUMP_WINDOW_MS = (-100, 300)
VELOCITY_CHANNELS = ("x", "y")


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


@dataclass(frozen=True)
class TimeAxis:
    """Bin times of the trial window, in ms relative to the alignment event."""

    start_ms: int
    bin_ms: int
    event: str  # the alignment event in words, e.g. "move onset"

    def centres(self, n_bins: int) -> np.ndarray:
        return self.start_ms + (np.arange(n_bins) + 0.5) * self.bin_ms

    @property
    def per_second(self) -> float:
        """Factor from spikes/bin to spikes/s."""
        return 1000.0 / self.bin_ms

    @property
    def event_bin(self) -> int:
        """The bin holding the alignment event."""
        return int(math.floor(-self.start_ms / self.bin_ms))


@dataclass(frozen=True)
class Condition:
    name: str
    eval_trials: np.ndarray  # positions among the eval trials


@dataclass(frozen=True)
class SingleTrials:
    """Held-out spikes of a few eval trials and units, with each run's (and the true) rates."""

    trial_names: list[str]
    unit_names: list[str]
    spikes: np.ndarray  # (trials, bins, units), counts per bin
    predicted: dict[str, np.ndarray]  # run label -> (trials, bins, units), spikes/bin
    true_rates: np.ndarray | None


@dataclass(frozen=True)
class PsthComparison:
    """Target PSTHs of a few conditions and units against each run's condition-averaged rates."""

    condition_names: list[str]
    unit_names: list[str]
    target: np.ndarray  # (conditions, bins, units), spikes/bin
    predicted: dict[str, np.ndarray]  # run label -> (conditions, bins, units)


@dataclass(frozen=True)
class Trajectories:
    """One run's latents projected on their first principal components, averaged per condition."""

    label: str
    source: str  # name of the latent array, e.g. "eval_factors"
    condition_means: np.ndarray  # (conditions, bins, components)
    explained: np.ndarray  # (components,) fraction of the latents' variance


@dataclass(frozen=True)
class LatentTrajectories:
    condition_names: list[str]
    runs: list[Trajectories]
    without_latents: list[str]  # labels of runs that saved no latents


@dataclass(frozen=True)
class DecodedVelocity:
    label: str
    velocity: np.ndarray  # (trials, bins, channels); NaN where the recording has no behaviour
    r2: float  # over all eval trials, averaged over decode masks


@dataclass(frozen=True)
class VelocityComparison:
    trial_names: list[str]
    channel_names: list[str]
    recorded: np.ndarray  # (trials, bins, channels)
    decoded: list[DecodedVelocity]  # ridge from each run's rates, as in the vel-R2 metric
    kalman: DecodedVelocity  # Wu et al. (2006) Kalman filter on the held-in spikes


@dataclass(frozen=True)
class EventAligned:
    """One run's inferred inputs around an event, and on trials without it around the alignment
    event, both (trials, lags, input dims), NaN where a lag falls outside the trial window."""

    label: str
    at_event: np.ndarray
    at_alignment: np.ndarray


@dataclass(frozen=True)
class InputsAroundEvent:
    event: str
    alignment: str
    lags_ms: np.ndarray
    runs: list[EventAligned]


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
    try:
        view.spec = get_spec(key.dataset)
    except SpecError:
        view.data_missing = f"dataset {key.dataset!r} is not a built-in dataset, so its files cannot be found"
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


def time_axis(view: View) -> TimeAxis:
    spec = view.spec
    assert spec is not None, "a view with tensors has a spec"
    event = spec.align_field.removesuffix("_time").replace("_", " ")
    return TimeAxis(start_ms=spec.window_ms[0], bin_ms=view.key.bin_ms, event=event)


def _level(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _condition_name(fields: Sequence[str], row: pd.Series) -> str:
    return ", ".join(f"{name}={_level(row[name])}" for name in fields)


def eval_conditions(view: View) -> list[Condition]:
    """The eval trials grouped by the dataset's PSTH condition fields, conditions sorted."""
    tensors = view.require_tensors()
    assert view.spec is not None
    fields = list(view.spec.psth_conditions)
    trials = tensors.eval_trials
    if not fields or any(name not in trials.columns for name in fields):
        raise PieceMissing(f"the eval trials carry no condition fields ({', '.join(fields) or 'none defined'})")
    complete = trials[fields].notna().all(axis=1).to_numpy()
    keys = [tuple(values) for values in trials[fields].itertuples(index=False)]
    conditions = []
    for level in sorted({key for key, ok in zip(keys, complete, strict=True) if ok}):
        members = np.flatnonzero([key == level and ok for key, ok in zip(keys, complete, strict=True)])
        conditions.append(Condition(_condition_name(fields, trials.iloc[members[0]]), members))
    return conditions


def _trial_names(tensors: Tensors, positions: Sequence[int] | np.ndarray) -> list[str]:
    ids = tensors.eval_trials["trial_id"].to_numpy() if "trial_id" in tensors.eval_trials else np.arange(tensors.n_eval)
    return [f"trial {ids[p]}" for p in positions]


def single_trials(view: View, n_trials: int = 3, n_units: int = 3) -> SingleTrials:
    """The first `n_trials` eval trials and the `n_units` held-out units with the most eval spikes."""
    tensors = view.require_tensors()
    targets = view.require_targets()
    runs = view.require_runs()
    spikes = targets.eval_spikes_heldout
    units = np.argsort(-np.nansum(spikes, axis=(0, 1)), kind="stable")[:n_units]
    trials = np.arange(min(n_trials, tensors.n_eval))
    truth = view.true_rates.eval_rates_heldout[trials][:, :, units] if view.true_rates else None
    return SingleTrials(
        trial_names=_trial_names(tensors, trials),
        unit_names=[f"held-out unit {tensors.heldout_ids[u]}" for u in units],
        spikes=spikes[trials][:, :, units],
        predicted={run.label: run.rates["eval_rates_heldout"][trials][:, :, units] for run in runs},
        true_rates=truth,
    )


def psth_comparison(view: View, n_conditions: int = 4, n_units: int = 3) -> PsthComparison:
    """The first `n_conditions` conditions with eval trials and the `n_units` held-out units whose
    target PSTHs vary most across conditions and time."""
    tensors = view.require_tensors()
    targets = view.require_targets()
    runs = view.require_runs()
    if targets.psth is None or targets.eval_cond_idx is None:
        raise PieceMissing("the dataset defines no PSTH conditions")
    assert view.spec is not None
    shown = [c for c, trials in enumerate(targets.eval_cond_idx) if len(trials) > 0][:n_conditions]
    heldout_psth = targets.psth[:, :, tensors.n_heldin:]
    units = tensors.n_heldin + np.argsort(-np.nanvar(heldout_psth, axis=(0, 1)), kind="stable")[:n_units]
    names = [_condition_name(view.spec.psth_conditions, tensors.eval_trials.iloc[targets.eval_cond_idx[c][0]])
             for c in shown]
    predicted = {}
    for run in runs:
        rates = run.eval_rates_all()
        predicted[run.label] = np.stack([rates[targets.eval_cond_idx[c]].mean(axis=0)[:, units] for c in shown])
    return PsthComparison(
        condition_names=names,
        unit_names=[f"held-out unit {tensors.heldout_ids[u - tensors.n_heldin]}" for u in units],
        target=targets.psth[shown][:, :, units], predicted=predicted,
    )


def _principal_components(latents: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores on the first principal components of (trials, bins, dims) latents, over all trials
    and bins, and the fraction of variance each explains."""
    rows = latents.reshape(-1, latents.shape[2]).astype(np.float64)
    centred = rows - rows.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    n_components = min(n_components, len(singular))
    variance = singular ** 2
    scores = centred @ axes[:n_components].T
    return scores.reshape(*latents.shape[:2], n_components), variance[:n_components] / variance.sum()


def _trajectory_source(run: RunOutputs) -> str | None:
    """The run's first latent array of TRAJECTORY_SOURCES with at least two dimensions."""
    for source in TRAJECTORY_SOURCES:
        if source in run.latents and run.latents[source].shape[2] >= 2:
            return source
    return None


def latent_trajectories(view: View, n_components: int = 3) -> LatentTrajectories:
    """Each run's eval latents (LFADS factors, else GPFA / Kalman latents) on their first
    principal components, averaged over the eval trials of each condition."""
    runs = view.require_runs()
    sources = {run.label: _trajectory_source(run) for run in runs}
    with_latents = [run for run in runs if sources[run.label] is not None]
    if not with_latents:
        raise PieceMissing(f"no run saved latents with two or more dimensions ({' or '.join(TRAJECTORY_SOURCES)})")
    conditions = eval_conditions(view)
    trajectories = []
    for run in with_latents:
        source = sources[run.label]
        assert source is not None
        scores, explained = _principal_components(run.latents[source], n_components)
        means = np.stack([scores[condition.eval_trials].mean(axis=0) for condition in conditions])
        trajectories.append(Trajectories(run.label, source, means, explained))
    return LatentTrajectories(
        condition_names=[condition.name for condition in conditions], runs=trajectories,
        without_latents=[run.label for run in runs if run not in with_latents],
    )


def _decode_masks(tensors: Tensors, targets: EvalTargets) -> tuple[np.ndarray, np.ndarray]:
    if targets.train_decode_mask is None or targets.eval_decode_mask is None:
        return np.ones((tensors.n_train, 1), dtype=bool), np.ones((tensors.n_eval, 1), dtype=bool)
    return np.asarray(targets.train_decode_mask, dtype=bool), np.asarray(targets.eval_decode_mask, dtype=bool)


def _shown_velocity_trials(eval_masks: np.ndarray, n_trials: int) -> np.ndarray:
    """Eval trials taken in turn from each decode mask (area2: active and passive trials)."""
    per_mask = [list(np.flatnonzero(mask)) for mask in eval_masks.T]
    chosen: list[int] = []
    while len(chosen) < n_trials and any(per_mask):
        for trials in per_mask:
            if trials and len(chosen) < n_trials:
                chosen.append(int(trials.pop(0)))
    return np.array(sorted(chosen), dtype=np.intp)


def _ridge_decoded(run: RunOutputs, tensors: Tensors, targets: EvalTargets) -> tuple[np.ndarray, float]:
    """The vel-R2 metric's decoders applied to the run's rates: velocity for every eval trial
    (NaN where there is no recorded behaviour) and the R2 averaged over decode masks."""
    assert targets.train_behavior is not None and targets.eval_behavior is not None
    decoders = decode_velocity(run.train_rates_all(), targets.train_behavior, run.eval_rates_all(),
                               targets.eval_behavior, targets.train_decode_mask, targets.eval_decode_mask)
    decoded = np.full(targets.eval_behavior.shape, np.nan)
    has_behavior = ~np.isnan(targets.eval_behavior[:, :, 0])
    for decoder in decoders:
        # Decoder rows are the eval trials' bins with behaviour, trial by trial, in order.
        for trial in np.unique(decoder.eval_trial):
            decoded[trial, has_behavior[trial]] = decoder.eval_prediction[decoder.eval_trial == trial]
    return decoded, float(np.mean([decoder.r2 for decoder in decoders]))


def _kalman_decoded(tensors: Tensors, targets: EvalTargets) -> tuple[np.ndarray, float]:
    """Wu et al.'s Kalman filter from held-in spikes, one decoder per decode mask."""
    assert targets.train_behavior is not None and targets.eval_behavior is not None
    train_masks, eval_masks = _decode_masks(tensors, targets)
    n_channels = targets.eval_behavior.shape[2]
    decoded = np.full(targets.eval_behavior.shape, np.nan)
    scores = []
    for train_trials, eval_trials in zip(train_masks.T, eval_masks.T, strict=True):
        decoder = KalmanVelocityDecoder().fit(tensors.train_spikes_heldin[train_trials],
                                              targets.train_behavior[train_trials])
        decoded[eval_trials] = decoder.predict(tensors.eval_spikes_heldin[eval_trials])
        truth = targets.eval_behavior[eval_trials].reshape(-1, n_channels)
        known = ~np.isnan(truth).any(axis=1)
        scores.append(r2_score(truth[known], decoded[eval_trials].reshape(-1, n_channels)[known]))
    decoded[np.isnan(targets.eval_behavior)] = np.nan
    return decoded, float(np.mean(scores))


def velocity_comparison(view: View, n_trials: int = 3) -> VelocityComparison:
    """Recorded hand velocity of a few eval trials, decoded from each run's rates by the vel-R2
    ridge decoders, and by a Kalman filter on the held-in spikes."""
    tensors = view.require_tensors()
    targets = view.require_targets()
    runs = view.require_runs()
    if targets.train_behavior is None or targets.eval_behavior is None:
        raise PieceMissing("the dataset has no behaviour to decode")
    _, eval_masks = _decode_masks(tensors, targets)
    shown = _shown_velocity_trials(eval_masks, n_trials)
    decoded = []
    for run in runs:
        velocity, r2 = _ridge_decoded(run, tensors, targets)
        decoded.append(DecodedVelocity(run.label, velocity[shown], r2))
    kalman_velocity, kalman_r2 = _kalman_decoded(tensors, targets)
    n_channels = targets.eval_behavior.shape[2]
    channels = list(VELOCITY_CHANNELS) if n_channels == len(VELOCITY_CHANNELS) else [str(c) for c in range(n_channels)]
    return VelocityComparison(
        trial_names=_trial_names(tensors, shown), channel_names=channels, recorded=targets.eval_behavior[shown],
        decoded=decoded,
        kalman=DecodedVelocity("Kalman filter on held-in spikes (Wu et al. 2006)", kalman_velocity[shown], kalman_r2),
    )


def _aligned_segments(values: np.ndarray, event_bins: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """values[trial, event_bin + lag] for each trial and lag; NaN outside the window."""
    index = event_bins[:, None] + lags[None, :]
    inside = (index >= 0) & (index < values.shape[1])
    picked = values[np.arange(len(values))[:, None], np.clip(index, 0, values.shape[1] - 1)]
    return np.where(inside[..., None], picked, np.nan)


def inputs_around_bump(view: View) -> InputsAroundEvent:
    """LFADS inferred inputs around each bump (trials with a `bump_time`), and on the trials
    without a bump around the alignment event, for comparison."""
    tensors = view.require_tensors()
    runs = view.require_runs()
    assert view.spec is not None
    trials = tensors.eval_trials
    if BUMP_FIELD not in trials.columns:
        raise PieceMissing(f"the trials have no {BUMP_FIELD} (only bump datasets such as synth_area2 do)")
    with_inputs = [run for run in runs if INPUTS_KEY in run.latents]
    if not with_inputs:
        raise PieceMissing(f"no run saved inferred inputs ({INPUTS_KEY}; LFADS with a controller does)")
    axis = time_axis(view)
    window_start_s = trials[view.spec.align_field].to_numpy(float) + axis.start_ms / 1000
    bump_ms = (trials[BUMP_FIELD].to_numpy(float) - window_start_s) * 1000
    bumped = np.isfinite(bump_ms) & (bump_ms >= 0) & (bump_ms < tensors.n_bins * axis.bin_ms)
    unbumped = np.isnan(bump_ms)
    if not bumped.any():
        raise PieceMissing("no eval trial has a bump inside its window")
    lags = np.arange(BUMP_WINDOW_MS[0] // axis.bin_ms, BUMP_WINDOW_MS[1] // axis.bin_ms + 1)
    bump_bins = np.floor(bump_ms[bumped] / axis.bin_ms).astype(np.intp)
    alignment_bins = np.full(int(unbumped.sum()), axis.event_bin, dtype=np.intp)
    aligned = [
        EventAligned(run.label, _aligned_segments(run.latents[INPUTS_KEY][bumped], bump_bins, lags),
                     _aligned_segments(run.latents[INPUTS_KEY][unbumped], alignment_bins, lags))
        for run in with_inputs
    ]
    return InputsAroundEvent(event="bump", alignment=axis.event, lags_ms=lags * axis.bin_ms, runs=aligned)


def training_histories(view: View) -> dict[str, TrainingHistory]:
    histories = {run.label: run.history for run in view.require_runs() if run.history is not None}
    if not histories:
        raise PieceMissing("no run saved training curves (LFADS does)")
    return histories
