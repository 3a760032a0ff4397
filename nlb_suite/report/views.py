"""What each figure draws: the functions below cut a leaderboard's `View` (`loading.py`) into the
small named arrays of one figure, using the analyses of `analysis.py`. A piece that cannot be had
raises `PieceMissing`, shown on the page in place of the figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.arrays import LatentKind, Tensors, latent_key
from .analysis import aligned_segments, decode_masks, kalman_decoded, principal_components, ridge_decoded
from .jpca import DEFAULT_COMPONENTS, JpcaError, JpcaResult, jpca
from .loading import PieceMissing, RunOutputs, TrainingHistory, View

# Latent arrays drawn as trajectories, most informative first: LFADS factors, then the latent
# states of GPFA and the Kalman-filter model.
TRAJECTORY_SOURCES = (latent_key("eval", LatentKind.FACTORS), latent_key("eval", LatentKind.STATES))
INPUTS_KEY = latent_key("eval", LatentKind.INPUTS)
# Trial columns that time an input nothing before it predicts: the bump of synth_area2 (and
# Area2_Bump), the pulse of synth_chaotic_rnn_inputs. The first one a dataset's trials have is used.
INPUT_EVENT_FIELDS = ("bump_time", "pulse_time")
# Window around the event for the inferred-input figure: the input should be silent before it.
EVENT_WINDOW_MS = (-100, 300)
VELOCITY_CHANNELS = ("x", "y")


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
        scores, explained = principal_components(run.latents[source], n_components)
        means = np.stack([scores[condition.eval_trials].mean(axis=0) for condition in conditions])
        trajectories.append(Trajectories(run.label, source, means, explained))
    return LatentTrajectories(
        condition_names=[condition.name for condition in conditions], runs=trajectories,
        without_latents=[run.label for run in runs if run not in with_latents],
    )


def _shown_velocity_trials(eval_masks: np.ndarray, n_trials: int) -> np.ndarray:
    """Eval trials taken in turn from each decode mask (area2: active and passive trials)."""
    per_mask = [list(np.flatnonzero(mask)) for mask in eval_masks.T]
    chosen: list[int] = []
    while len(chosen) < n_trials and any(per_mask):
        for trials in per_mask:
            if trials and len(chosen) < n_trials:
                chosen.append(int(trials.pop(0)))
    return np.array(sorted(chosen), dtype=np.intp)


def velocity_comparison(view: View, n_trials: int = 3) -> VelocityComparison:
    """Recorded hand velocity of a few eval trials, decoded from each run's rates by the vel-R2
    ridge decoders, and by a Kalman filter on the held-in spikes."""
    tensors = view.require_tensors()
    targets = view.require_targets()
    runs = view.require_runs()
    if targets.train_behavior is None or targets.eval_behavior is None:
        raise PieceMissing("the dataset has no behaviour to decode")
    if np.ndim(targets.eval_behavior) != 3:  # per-trial behaviour (dmfc_rsg): scored by tp corr
        raise PieceMissing("the dataset's behaviour is one row per trial, not a velocity to decode")
    _, eval_masks = decode_masks(tensors, targets)
    shown = _shown_velocity_trials(eval_masks, n_trials)
    decoded = []
    for run in runs:
        ridge = ridge_decoded(run.train_rates_all(), run.eval_rates_all(), targets)
        decoded.append(DecodedVelocity(run.label, ridge.velocity[shown], ridge.r2))
    kalman = kalman_decoded(tensors, targets)
    kalman_velocity, kalman_r2 = kalman.velocity, kalman.r2
    n_channels = targets.eval_behavior.shape[2]
    channels = list(VELOCITY_CHANNELS) if n_channels == len(VELOCITY_CHANNELS) else [str(c) for c in range(n_channels)]
    return VelocityComparison(
        trial_names=_trial_names(tensors, shown), channel_names=channels, recorded=targets.eval_behavior[shown],
        decoded=decoded,
        kalman=DecodedVelocity("Kalman filter on held-in spikes (Wu et al. 2006)", kalman_velocity[shown], kalman_r2),
    )


@dataclass(frozen=True)
class InputEvent:
    """The eval trials' unpredictable input event: its name ("bump", "pulse"), which trials have it
    inside their window and in which bin, and which trials have none (the event time is NaN)."""

    name: str
    with_event: np.ndarray  # bool over eval trials
    event_bins: np.ndarray  # (with_event.sum(),) bin of the event in the trial window
    without: np.ndarray  # bool over eval trials
    runs: list[RunOutputs]  # the runs that saved inferred inputs


def input_event(view: View) -> InputEvent:
    """Where the unpredictable input (`INPUT_EVENT_FIELDS`) falls in each eval trial, and the runs
    with inferred inputs to compare with it."""
    tensors = view.require_tensors()
    runs = view.require_runs()
    assert view.spec is not None
    trials = tensors.eval_trials
    field = next((name for name in INPUT_EVENT_FIELDS if name in trials.columns), None)
    if field is None:
        raise PieceMissing(f"the trials have none of {', '.join(INPUT_EVENT_FIELDS)} (only datasets with "
                           "unpredictable inputs, such as synth_area2 and synth_chaotic_rnn_inputs, do)")
    name = field.removesuffix("_time")
    with_inputs = [run for run in runs if INPUTS_KEY in run.latents]
    if not with_inputs:
        raise PieceMissing(f"no run saved inferred inputs ({INPUTS_KEY}; LFADS with a controller does)")
    axis = time_axis(view)
    window_start_s = trials[view.spec.align_field].to_numpy(float) + axis.start_ms / 1000
    event_ms = (trials[field].to_numpy(float) - window_start_s) * 1000
    with_event = np.isfinite(event_ms) & (event_ms >= 0) & (event_ms < tensors.n_bins * axis.bin_ms)
    if not with_event.any():
        raise PieceMissing(f"no eval trial has a {name} inside its window")
    event_bins = np.floor(event_ms[with_event] / axis.bin_ms).astype(np.intp)
    return InputEvent(name, with_event, event_bins, np.isnan(event_ms), with_inputs)


def inputs_around_event(view: View) -> InputsAroundEvent:
    """LFADS inferred inputs around each unpredictable input event (a bump or a pulse), and on the
    trials without one around the alignment event, for comparison."""
    event = input_event(view)
    axis = time_axis(view)
    lags = np.arange(EVENT_WINDOW_MS[0] // axis.bin_ms, EVENT_WINDOW_MS[1] // axis.bin_ms + 1)
    alignment_bins = np.full(int(event.without.sum()), axis.event_bin, dtype=np.intp)
    aligned = [
        EventAligned(run.label, aligned_segments(run.latents[INPUTS_KEY][event.with_event], event.event_bins, lags),
                     aligned_segments(run.latents[INPUTS_KEY][event.without], alignment_bins, lags))
        for run in event.runs
    ]
    return InputsAroundEvent(event=event.name, alignment=axis.event, lags_ms=lags * axis.bin_ms, runs=aligned)


def training_histories(view: View) -> dict[str, TrainingHistory]:
    histories = {run.label: run.history for run in view.require_runs() if run.history is not None}
    if not histories:
        raise PieceMissing("no run saved training curves (LFADS does)")
    return histories


# jPCA looks at the condition-averaged latents from 50 ms before the alignment event (movement
# onset in the reaching datasets) to 250 ms after it, where Churchland et al. 2012 found rotations.
JPCA_WINDOW_MS = (-50, 250)
JPCA_LATENT_KINDS = (LatentKind.FACTORS, LatentKind.STATES)


def paired_latents(run: RunOutputs) -> tuple[str, np.ndarray, np.ndarray] | None:
    """The run's (name, train, eval) latents of the first kind it saved for both sets of trials:
    LFADS factors, else latent states."""
    for kind in JPCA_LATENT_KINDS:
        train, evaluation = latent_key("train", kind), latent_key("eval", kind)
        if train in run.latents and evaluation in run.latents:
            return kind.value, run.latents[train], run.latents[evaluation]
    return None


@dataclass(frozen=True)
class JpcaInputs:
    """What jPCA is run on: the eval trials of each condition and the bins of the window."""

    condition_names: list[str]
    members: list[np.ndarray]
    window: np.ndarray  # bool over the trial window's bins


def jpca_inputs(view: View) -> JpcaInputs:
    conditions = [condition for condition in eval_conditions(view) if len(condition.eval_trials)]
    if len(conditions) < 3:
        raise PieceMissing("fewer than 3 conditions with eval trials for jPCA")
    centres = time_axis(view).centres(view.require_tensors().n_bins)
    window = (centres >= JPCA_WINDOW_MS[0]) & (centres <= JPCA_WINDOW_MS[1])
    return JpcaInputs([c.name for c in conditions], [c.eval_trials for c in conditions], window)


def condition_jpca(means: np.ndarray) -> JpcaResult:
    """jPCA of condition means with Churchland et al.'s 6 components, or fewer (an even number)
    when the latents have fewer dimensions."""
    dims = means.shape[2]
    return jpca(means, n_components=min(DEFAULT_COMPONENTS, dims - dims % 2))


def condition_means(latents: np.ndarray, members: list[np.ndarray],
                    weights: list[np.ndarray] | None = None) -> np.ndarray:
    """(conditions, bins, dims): each condition's mean over its trials (weighted, for resamples)."""
    if weights is None:
        return np.stack([latents[m].mean(axis=0) for m in members])
    return np.stack([np.tensordot(w, latents[m], axes=1) / w.sum() for m, w in zip(members, weights)])


@dataclass(frozen=True)
class RunRotation:
    label: str
    source: str
    result: JpcaResult


@dataclass(frozen=True)
class Rotations:
    condition_names: list[str]
    runs: list[RunRotation]
    window_ms: tuple[int, int]


def rotations(view: View) -> Rotations:
    """jPCA of each run's condition-averaged eval latents in the window (runs without latents,
    or whose latents jPCA cannot analyse, are left out with a note)."""
    runs = view.require_runs()
    inputs = jpca_inputs(view)
    found = []
    for run in runs:
        latents = paired_latents(run)
        if latents is None:
            continue
        name, _, evaluation = latents
        try:
            result = condition_jpca(condition_means(evaluation[:, inputs.window].astype(np.float64), inputs.members))
        except JpcaError as err:
            view.run_notes.append(f"{run.label}: jPCA not possible ({err})")
            continue
        found.append(RunRotation(run.label, name, result))
    if not found:
        raise PieceMissing("no run saved latents for jPCA (LFADS factors, GPFA / Kalman states)")
    return Rotations(inputs.condition_names, found, JPCA_WINDOW_MS)
