"""Bootstrap distributions of the metrics over evaluation trials, without refitting anything.

A resample draws the eval trials with replacement; it is represented by how many times each
trial was drawn (a row of counts), and every metric is rewritten as sums over trials, so a
thousand resamples cost a few matrix products:

- bits per spike (co-bps, fp-bps, the true-rate ceiling): per-trial sums of spikes, observed
  bins and model NLL (`metrics.PoissonStats`); the null model's mean rate is re-estimated on
  each resample, as the metric defines it.
- velocity R2: the decoders stay as fitted on all train trials (the benchmark's decoder is part
  of the metric, not of the eval sample); each eval trial contributes its rows' sums of y, y^2
  and squared error, per channel, so the resampled R2 is recomputed from weighted sums.
- PSTH R2: trials are resampled within each condition (a condition keeps its trial count, so
  the condition means stay defined); with D_i = trial i's rates minus the target PSTH on the
  scored bins, a resampled condition mean misses the target by sum_i w_i D_i / n, whose squared
  norm per unit is the quadratic form w' (D D') w / n^2 of the trial-by-trial products D_i . D_j.
- rate R2: per-trial sums of the true rates, their squares and the squared error, per unit.

Intervals are bias-corrected percentile intervals: the resampled values are shifted so that
their mean equals the point estimate, then their 2.5th and 97.5th percentiles are taken. The
shift matters for PSTH R2: with the few eval trials per condition of the NLB datasets (about 5
in MC_Maze), drawing them with replacement makes each resampled condition mean noisier than the
original, so the raw resampled R2 values sit well below the estimate (often the whole raw
interval does). The other metrics barely move. Resamples where a metric is undefined (e.g. a
decode mask left without trials) are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import DecoderResult, PsthCondition
from .r2 import explained_fraction

# Largest temporary (in float64 entries) the PSTH resampling builds at once.
_PSTH_CHUNK_ENTRIES = 1 << 22


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval."""

    low: float
    high: float


def bias_corrected_interval(samples: np.ndarray, estimate: float, level: float = 0.95,
                            upper: float = np.inf) -> Interval:
    """Central `level` interval of the finite bootstrap samples after shifting them so that
    their mean is the point `estimate` (NaN when there are none). The shift can carry a bound
    past what the metric can reach, so the interval is clipped at `upper` (1 for an R2)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0 or not np.isfinite(estimate):
        return Interval(float("nan"), float("nan"))
    tail = (1.0 - level) / 2 * 100
    low, high = np.minimum(np.percentile(finite, [tail, 100 - tail]) - (finite.mean() - estimate), upper)
    return Interval(float(low), float(high))


def trial_resamples(n_trials: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_trials) counts: how often each trial is drawn in each resample of n_trials."""
    return rng.multinomial(n_trials, np.full(n_trials, 1.0 / n_trials), size=n_boot).astype(np.float64)


def _r2_from_sums(n_rows: np.ndarray, y_sum: np.ndarray, y_sq_sum: np.ndarray, ss_res: np.ndarray) -> np.ndarray:
    """Uniform-average R2 per resample from weighted sums (resamples, outputs); y must be centred
    near its mean beforehand so that y_sq_sum - y_sum^2 / n does not cancel catastrophically."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ss_tot = y_sq_sum - y_sum**2 / n_rows[:, None]
    r2 = explained_fraction(ss_res, ss_tot).mean(axis=-1)
    return np.where(n_rows >= 2, r2, np.nan)


def _per_trial_sums(row_trial: np.ndarray, values: np.ndarray, n_trials: int) -> np.ndarray:
    """Sum the rows of `values` (rows, k) by trial -> (n_trials, k)."""
    sums = np.zeros((n_trials, values.shape[1]))
    np.add.at(sums, row_trial, values)
    return sums


def velocity_r2_samples(decoders: list[DecoderResult], counts: np.ndarray) -> np.ndarray:
    """Velocity R2 (mean over decoders) for each resample row of `counts` over the eval trials."""
    n_trials = counts.shape[1]
    per_decoder = []
    for decoder in decoders:
        y = decoder.eval_behavior - decoder.eval_behavior.mean(axis=0)
        squared_error = (decoder.eval_behavior - decoder.eval_prediction) ** 2
        rows = np.ones((len(y), 1))
        sums = [_per_trial_sums(decoder.eval_trial, values, n_trials) for values in (rows, y, y**2, squared_error)]
        n_rows, y_sum, y_sq_sum, ss_res = (counts @ trial_sums for trial_sums in sums)
        per_decoder.append(_r2_from_sums(n_rows[:, 0], y_sum, y_sq_sum, ss_res))
    return np.mean(per_decoder, axis=0)


def rate_r2_samples(predicted: np.ndarray, true: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Rate R2 (`metrics.rate_r2`) for each resample row of `counts`; arrays (trials, bins, units)."""
    centred = true - true.mean(axis=(0, 1))
    n_bins = np.full((true.shape[0], 1), float(true.shape[1]))
    per_trial = (centred.sum(axis=1), (centred**2).sum(axis=1), ((predicted - true) ** 2).sum(axis=1))
    y_sum, y_sq_sum, ss_res = (counts @ sums for sums in per_trial)
    return _r2_from_sums((counts @ n_bins)[:, 0], y_sum, y_sq_sum, ss_res)


def psth_r2_samples(psth: np.ndarray, eval_rates: np.ndarray, conditions: list[PsthCondition], n_boot: int,
                    rng: np.random.Generator) -> np.ndarray:
    """PSTH R2 (`metrics.psth_r2`, without jitter) with eval trials resampled within conditions."""
    n_units = psth.shape[2]
    true_rows = np.concatenate([psth[c.index][c.scored_bins] for c in conditions])
    ss_tot = ((true_rows - true_rows.mean(axis=0)) ** 2).sum(axis=0)
    ss_res = np.zeros((n_boot, n_units))
    for condition in conditions:
        n = len(condition.eval_trials)
        deviations = eval_rates[condition.eval_trials][:, condition.scored_bins] - psth[condition.index][condition.scored_bins]
        by_unit = deviations.transpose(2, 0, 1)
        products = by_unit @ by_unit.transpose(0, 2, 1)  # (units, n, n): D_i . D_j per unit
        weights = trial_resamples(n, n_boot, rng)
        chunk = max(1, _PSTH_CHUNK_ENTRIES // (n * n_units))
        for start in range(0, n_boot, chunk):
            w = weights[start : start + chunk]
            quadratic = ((w @ products) * w).sum(axis=-1)  # (units, resamples)
            ss_res[start : start + chunk] += quadratic.T / n**2
    return explained_fraction(ss_res, ss_tot[None]).mean(axis=1)


def tp_corr_samples(speeds: np.ndarray, eval_behavior: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """tp corr (`metrics.speed_tp_correlation`) under each resample of the eval trials (`counts`,
    (resamples, trials)): per condition the count-weighted Pearson r of speed and tp, averaged."""
    from .metrics import tp_conditions

    tp = eval_behavior[:, -1]
    correlations = []
    for trials in tp_conditions(eval_behavior):
        w = counts[:, trials]
        total = w.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_x = (w * speeds[trials]).sum(axis=1) / total
            mean_y = (w * tp[trials]).sum(axis=1) / total
            dx = speeds[trials][None, :] - mean_x[:, None]
            dy = tp[trials][None, :] - mean_y[:, None]
            r = (w * dx * dy).sum(axis=1) / np.sqrt((w * dx**2).sum(axis=1) * (w * dy**2).sum(axis=1))
        correlations.append(r)
    return np.mean(correlations, axis=0)
