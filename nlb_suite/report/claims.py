"""The LFADS paper's headline claims (Pandarinath et al. 2018), measured on each leaderboard's runs
with bootstrap 95% intervals over the evaluation trials, and whether each holds there.

1. Single-trial rates: a model's eval rates explain the true rates better than smoothed spikes
   (the paper: rate R2 0.85 for LFADS against about 0.4 for smoothing). Measured per model as the
   difference of rate R2 from the smoothing run's, over the same resampled trials (paired);
   holds where the interval lies above 0. Needs the true rates (synthetic data) and a smoothing run.
2. Decoding: hand velocity decoded from a model (the benchmark's ridge decoder on its rates, and
   on its latents, e.g. LFADS's factors) against the Kalman-filter decoder of Wu et al. 2006 on
   the binned held-in spikes (the paper: 20-50% higher R2). Measured as the ratio of the R2s over
   the same resampled trials; holds where the ratio is at least 1.2 and its interval lies above 1.
3. Rotational dynamics: jPCA (Churchland et al. 2012, `jpca.py`) on a model's condition-averaged
   eval latents from `JPCA_WINDOW_MS` around the alignment event: the variance of the latents'
   change explained by the best skew-symmetric (purely rotational) linear dynamics as a fraction of
   that explained by the best unconstrained ones; eval trials are resampled within conditions.
   Holds where the fraction is at least 0.5 (rotation is most of the dynamics) and its interval's
   lower end is above 0.25.
4. Inferred inputs (the paper's test on the chaotic RNN with input pulses): on a dataset whose
   trials time an input nothing before it predicts (`views.INPUT_EVENT_FIELDS`: the pulse of
   synth_chaotic_rnn_inputs, the bump of synth_area2), a model's inferred inputs move at the event:
   the mean square of the inputs over the `INPUT_RESPONSE_MS` after it tells trials with the event
   from trials without (scored at the same bins, those of the trials with one, in turn), measured
   as the area under the ROC curve; eval trials are resampled within each group. Holds where the
   AUC is at least 0.75 and its interval's lower end is above 0.5 (chance).

Rows 2, 3 and 4 apply to real datasets too (they need no truth).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..outputs.results import RunRecord
from ..scoring.bootstrap import Interval, bias_corrected_interval, rate_r2_samples, trial_resamples, velocity_r2_samples
from ..scoring.metrics import rate_r2
from .analysis import detection_auc, input_response, kalman_decoded, ridge_decoded
from .jpca import JpcaError
from .loading import PieceMissing, View, gather_view
from .tables import TableKey
from .views import (
    INPUTS_KEY,
    condition_jpca,
    condition_means,
    input_event,
    jpca_inputs,
    paired_latents,
    rotations,
    time_axis,
)

CLAIMS = {
    1: "single-trial rates closer to the true rates than smoothing's (paper: rate R2 0.85 vs ~0.4)",
    2: "velocity decoded from the model beats the Kalman-filter decoder on spikes by 20-50% (Wu et al. 2006)",
    3: "condition-averaged latents rotate: skew-symmetric dynamics explain most of their change (jPCA)",
    4: "inferred inputs mark the unpredictable input: trials with it told from trials without (ROC AUC)",
}
SMOOTHING = "smoothing"
DECODING_RATIO_HOLDS = 1.2
ROTATION_FRACTION_HOLDS = 0.5
ROTATION_FRACTION_FLOOR = 0.25
N_BOOT = 200
# The inputs after an event: the chaotic RNN's pulse lasts 10 ms and moves the state for about
# its time constant (25 ms); the bump's force lasts 125 ms. 100 ms covers the pulse's effect and
# most of the bump's onset, and the controller's lag of a bin or two.
INPUT_RESPONSE_MS = (0, 100)
DETECTION_AUC_HOLDS = 0.75


@dataclass(frozen=True)
class ClaimRow:
    """One measurement of one claim on one run."""

    claim: int
    model: str
    measured: str  # what the value is, in words, with the compared figures
    value: float
    interval: Interval
    holds: bool


@dataclass(frozen=True)
class Claims:
    """The claims table of one leaderboard, and why rows could not be measured."""

    rows: list[ClaimRow]
    notes: list[str]


def _interval(samples: np.ndarray, estimate: float) -> Interval:
    return bias_corrected_interval(samples, estimate)


def _rates_rows(view: View, counts: np.ndarray) -> list[ClaimRow]:
    truth = view.true_rates
    if truth is None:
        raise PieceMissing("no true rates (not a synthetic dataset)")
    smoothing = next((run for run in view.runs if run.record.model == SMOOTHING), None)
    if smoothing is None:
        raise PieceMissing("no smoothing run to compare with")
    true_eval = truth.all_units("eval")
    base = rate_r2(smoothing.eval_rates_all(), true_eval)
    base_samples = rate_r2_samples(smoothing.eval_rates_all(), true_eval, counts)
    rows = []
    for run in view.runs:
        if run is smoothing:
            continue
        value = rate_r2(run.eval_rates_all(), true_eval)
        difference = value - base
        samples = rate_r2_samples(run.eval_rates_all(), true_eval, counts) - base_samples
        interval = _interval(samples, difference)
        rows.append(ClaimRow(1, run.label, f"rate R2 {value:.3f} against smoothing's {base:.3f}: difference",
                             difference, interval, bool(interval.low > 0)))
    return rows


def _decoding_rows(view: View, counts: np.ndarray) -> list[ClaimRow]:
    tensors, targets = view.require_tensors(), view.require_targets()
    if targets.train_behavior is None or targets.eval_behavior is None:
        raise PieceMissing("the dataset has no behaviour to decode")
    if np.ndim(targets.eval_behavior) != 3:  # per-trial behaviour (dmfc_rsg): scored by tp corr
        raise PieceMissing("the dataset's behaviour is one row per trial, not a velocity to decode")
    wu = kalman_decoded(tensors, targets)
    wu_samples = velocity_r2_samples(wu.decoders, counts)
    rows = []
    for run in view.runs:
        features = [("rates", run.train_rates_all(), run.eval_rates_all())]
        latents = paired_latents(run)
        if latents is not None:
            features.append(latents)
        for name, train, evaluation in features:
            decoded = ridge_decoded(train.astype(np.float64), evaluation.astype(np.float64), targets)
            ratio = decoded.r2 / wu.r2
            with np.errstate(divide="ignore", invalid="ignore"):
                samples = velocity_r2_samples(decoded.decoders, counts) / wu_samples
            interval = _interval(samples, ratio)
            rows.append(ClaimRow(2, run.label, f"vel R2 from its {name} {decoded.r2:.3f} against the Kalman-filter "
                                                f"decoder's {wu.r2:.3f}: ratio", ratio, interval,
                                 bool(ratio >= DECODING_RATIO_HOLDS and interval.low > 1)))
    return rows


def _rotation_rows(view: View, rng: np.random.Generator) -> list[ClaimRow]:
    inputs = jpca_inputs(view)
    rows = []
    for rotation in rotations(view).runs:
        run = next(run for run in view.runs if run.label == rotation.label)
        latents = paired_latents(run)
        assert latents is not None
        cut = latents[2][:, inputs.window].astype(np.float64)
        result = rotation.result
        fraction = result.r2_skew / result.r2_unconstrained
        samples = []
        for _ in range(N_BOOT):
            weights = [trial_resamples(len(m), 1, rng)[0] for m in inputs.members]
            try:
                again = condition_jpca(condition_means(cut, inputs.members, weights))
            except JpcaError:
                continue
            samples.append(again.r2_skew / again.r2_unconstrained)
        interval = _interval(np.asarray(samples), fraction)
        rows.append(ClaimRow(3, run.label, f"jPCA of its {rotation.source}: skew-symmetric R2 {result.r2_skew:.3f} "
                                           f"of the unconstrained {result.r2_unconstrained:.3f}: fraction", fraction,
                             interval, bool(fraction >= ROTATION_FRACTION_HOLDS
                                            and interval.low > ROTATION_FRACTION_FLOOR)))
    return rows


def _input_rows(view: View, rng: np.random.Generator) -> list[ClaimRow]:
    event = input_event(view)
    if not event.without.any():
        raise PieceMissing(f"every eval trial has a {event.name}: none to tell them from")
    bin_ms = time_axis(view).bin_ms
    lags = np.arange(INPUT_RESPONSE_MS[0] // bin_ms, -(-INPUT_RESPONSE_MS[1] // bin_ms))
    # Trials without the event are scored at the event bins of the trials with one, in turn.
    pseudo_bins = np.resize(event.event_bins, int(event.without.sum()))
    n_with, n_without = len(event.event_bins), len(pseudo_bins)
    weights_with, weights_without = trial_resamples(n_with, N_BOOT, rng), trial_resamples(n_without, N_BOOT, rng)
    rows = []
    for run in event.runs:
        inputs = run.latents[INPUTS_KEY].astype(np.float64)
        at_event = input_response(inputs[event.with_event], event.event_bins, lags)
        at_pseudo = input_response(inputs[event.without], pseudo_bins, lags)
        auc = float(detection_auc(at_event, at_pseudo))
        interval = _interval(detection_auc(at_event, at_pseudo, weights_with, weights_without), auc)
        rows.append(ClaimRow(4, run.label, f"mean square inferred input {INPUT_RESPONSE_MS[0]}-{INPUT_RESPONSE_MS[1]} "
                                           f"ms after the {event.name} ({n_with} trials) against the same bins of "
                                           f"{n_without} trials without: ROC AUC", auc, interval,
                             bool(auc >= DETECTION_AUC_HOLDS and interval.low > 0.5)))
    return rows


def measure_claims(view: View, seed: int = 0) -> Claims:
    """The claims table of one leaderboard's runs (see the module docstring)."""
    view.require_runs()
    n_eval = view.require_tensors().n_eval
    rng = np.random.default_rng(seed)
    counts = trial_resamples(n_eval, N_BOOT, rng)
    rows: list[ClaimRow] = []
    notes: list[str] = []
    measures: list[tuple[int, Callable[[], list[ClaimRow]]]] = [
        (1, lambda: _rates_rows(view, counts)), (2, lambda: _decoding_rows(view, counts)),
        (3, lambda: _rotation_rows(view, rng)), (4, lambda: _input_rows(view, rng))]
    for number, measure in measures:
        try:
            rows += measure()
        except PieceMissing as missing:
            notes.append(f"claim {number} not measured: {missing}")
    return Claims(rows, notes)


def _cell(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.3f}"


def claims_markdown(claims: Claims) -> str:
    """The claims table in Markdown, with its notes."""
    lines = ["| claim | model | measured | value [95% CI] | holds |", "|---|---|---|---|---|"]
    for row in claims.rows:
        lines.append(f"| {row.claim}: {CLAIMS[row.claim]} | {row.model} | {row.measured} | {_cell(row.value)} "
                     f"[{_cell(row.interval.low)}, {_cell(row.interval.high)}] | {'yes' if row.holds else 'no'} |")
    return "\n".join(lines + [""] + [f"- {note}" for note in claims.notes]) + "\n"


def claims_by_table(records: Sequence[RunRecord], root: str | Path | None = None) -> dict[TableKey, Claims]:
    """The claims of every leaderboard with runs here whose data can be loaded."""
    out = {}
    for key in sorted({TableKey(r.dataset, r.phase, r.bin_ms) for r in records},
                      key=lambda k: (k.dataset, k.phase, k.bin_ms)):
        view = gather_view(records, key, root)
        if view.tensors is None or not view.runs:
            continue
        out[key] = measure_claims(view)
    return out
