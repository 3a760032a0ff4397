"""The NLB'21 metrics, as nlb_tools 0.0.4's `evaluation.py` defines them, on numpy arrays.

- Bits per spike (co-bps, fp-bps): defined in `core/poisson.py`, which models' validation
  monitors use too.
- Velocity R2: ridge decoders from all units' rates to behaviour, one per decode mask (all
  trials when there is none), penalty by 5-fold CV (`ridge.py`), R2 on the eval rows averaged
  over masks. Rows whose first behaviour channel is NaN are dropped (nlb_tools looks only at
  that channel).
- PSTH R2: per condition, the eval rates averaged over its eval trials (optionally shifted by a
  per-trial jitter) against the target PSTH over the bins where the PSTH of the first unit is
  not NaN; the condition rows stacked, R2 per unit, averaged over units.
- tp correlation (dmfc_rsg only): Pearson r between neural speed and produced interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import pearsonr

from ..core.errors import ScoringError
from ..core.poisson import ZERO_RATE_FLOOR, PoissonStats, bits_per_spike, poisson_stats

__all__ = ["ZERO_RATE_FLOOR", "PoissonStats", "ScoringError", "bits_per_spike", "decode_velocity", "jittered",
           "neural_speeds", "poisson_stats", "psth_r2", "speed_tp_correlation", "velocity_r2"]
from .r2 import r2_score
from .ridge import DEFAULT_FOLDS, fit_ridge_cv


def _require_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise ScoringError(f"{name}: shape {array.shape}, expected {shape}")


@dataclass(frozen=True)
class DecoderResult:
    """One velocity decoder (one decode mask) and what it predicts on its eval rows."""

    alpha: float
    eval_trial: np.ndarray  # (rows,) index of each eval row's trial among all eval trials
    eval_behavior: np.ndarray  # (rows, channels)
    eval_prediction: np.ndarray  # (rows, channels)
    r2: float


def _decoder_rows(rates: np.ndarray, behavior: np.ndarray, trials: np.ndarray,
                  role: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rates and behaviour of `trials` flattened to rows, minus rows without behaviour."""
    all_trials = len(trials) == len(rates)  # then no copy of the (large) rate array is needed
    x = (rates if all_trials else rates[trials]).reshape(-1, rates.shape[2])
    y = (behavior if all_trials else behavior[trials]).reshape(-1, behavior.shape[2])
    row_trial = np.repeat(trials, rates.shape[1])
    keep = ~np.isnan(y[:, 0])
    if not keep.all():
        x, y, row_trial = x[keep], y[keep], row_trial[keep]
    if np.isnan(x).any():
        raise ScoringError(f"NaN {role} rate predictions in bins that have behaviour")
    if np.isnan(y).any():
        raise ScoringError(f"{role}_behavior: NaN in a channel other than the first where the first has a value")
    return x, y, row_trial


def _check_decode_masks(train_mask: np.ndarray | None, eval_mask: np.ndarray | None, n_train: int,
                        n_eval: int) -> tuple[np.ndarray, np.ndarray]:
    if (train_mask is None) != (eval_mask is None):
        raise ScoringError("train_decode_mask and eval_decode_mask must be given together")
    if train_mask is None or eval_mask is None:
        return np.ones((n_train, 1), dtype=bool), np.ones((n_eval, 1), dtype=bool)
    train_mask = np.asarray(train_mask, dtype=bool)
    eval_mask = np.asarray(eval_mask, dtype=bool)
    if train_mask.ndim != 2 or eval_mask.ndim != 2 or train_mask.shape[1] != eval_mask.shape[1]:
        raise ScoringError(f"decode masks must be (trials, masks) with the same number of masks, got "
                           f"train {train_mask.shape} and eval {eval_mask.shape}")
    _require_shape("train_decode_mask", train_mask, (n_train, train_mask.shape[1]))
    _require_shape("eval_decode_mask", eval_mask, (n_eval, eval_mask.shape[1]))
    return train_mask, eval_mask


def decode_velocity(train_rates: np.ndarray, train_behavior: np.ndarray, eval_rates: np.ndarray,
                    eval_behavior: np.ndarray, train_decode_mask: np.ndarray | None = None,
                    eval_decode_mask: np.ndarray | None = None) -> list[DecoderResult]:
    """Fit one ridge decoder per decode mask on the train trials and predict the eval trials.
    Rates are (trials, bins, all units), behaviour (trials, bins, channels)."""
    train_rates = np.asarray(train_rates, dtype=np.float64)
    eval_rates = np.asarray(eval_rates, dtype=np.float64)
    train_behavior = np.asarray(train_behavior, dtype=np.float64)
    eval_behavior = np.asarray(eval_behavior, dtype=np.float64)
    for name, array in (("train rates", train_rates), ("eval rates", eval_rates),
                        ("train_behavior", train_behavior), ("eval_behavior", eval_behavior)):
        if array.ndim != 3:
            raise ScoringError(f"{name} must be (trials, bins, channels), got shape {array.shape}")
    _require_shape("train_behavior", train_behavior, train_rates.shape[:2] + train_behavior.shape[2:])
    _require_shape("eval_behavior", eval_behavior, eval_rates.shape[:2] + train_behavior.shape[2:])
    if eval_rates.shape[2] != train_rates.shape[2]:
        raise ScoringError(f"train rates have {train_rates.shape[2]} units, eval rates {eval_rates.shape[2]}")
    train_mask, eval_mask = _check_decode_masks(train_decode_mask, eval_decode_mask,
                                                len(train_rates), len(eval_rates))
    results = []
    for mask in range(train_mask.shape[1]):
        x_train, y_train, _ = _decoder_rows(train_rates, train_behavior, np.flatnonzero(train_mask[:, mask]), "train")
        x_eval, y_eval, eval_trial = _decoder_rows(eval_rates, eval_behavior, np.flatnonzero(eval_mask[:, mask]),
                                                   "eval")
        if len(x_train) < DEFAULT_FOLDS:
            raise ScoringError(f"decode mask {mask}: {len(x_train)} training rows with behaviour, "
                               f"fewer than the {DEFAULT_FOLDS} cross-validation folds")
        if len(x_eval) == 0:
            raise ScoringError(f"decode mask {mask}: no eval rows with behaviour")
        decoder = fit_ridge_cv(x_train, y_train)
        prediction = decoder.predict(x_eval)
        results.append(DecoderResult(alpha=decoder.alpha, eval_trial=eval_trial, eval_behavior=y_eval,
                                     eval_prediction=prediction, r2=r2_score(y_eval, prediction)))
    return results


def velocity_r2(train_rates: np.ndarray, train_behavior: np.ndarray, eval_rates: np.ndarray,
                eval_behavior: np.ndarray, train_decode_mask: np.ndarray | None = None,
                eval_decode_mask: np.ndarray | None = None) -> float:
    """Velocity decoding R2 on the eval trials, averaged over decode masks."""
    decoders = decode_velocity(train_rates, train_behavior, eval_rates, eval_behavior,
                               train_decode_mask, eval_decode_mask)
    return float(np.mean([decoder.r2 for decoder in decoders]))


@dataclass(frozen=True)
class PsthCondition:
    """The eval trials of one PSTH condition and the bins it is scored on."""

    index: int  # row of the PSTH array
    eval_trials: np.ndarray
    scored_bins: np.ndarray  # boolean, over the PSTH's bins


def psth_conditions(psth: np.ndarray, eval_cond_idx: list[np.ndarray]) -> list[PsthCondition]:
    """Conditions that have eval trials, each with the bins where its PSTH is defined."""
    if psth.ndim != 3:
        raise ScoringError(f"psth must be (conditions, bins, units), got shape {psth.shape}")
    if len(eval_cond_idx) > len(psth):
        raise ScoringError(f"eval_cond_idx lists {len(eval_cond_idx)} conditions, psth has {len(psth)}")
    return [
        PsthCondition(index=i, eval_trials=np.asarray(trials, dtype=np.intp).reshape(-1),
                      scored_bins=~np.isnan(psth[i, :, 0]))
        for i, trials in enumerate(eval_cond_idx)
        if np.size(trials) > 0
    ]


def _shift_bins(trial: np.ndarray, shift: int) -> np.ndarray:
    """Move a (bins, units) trial later by `shift` bins (earlier when negative), NaN-filled."""
    if shift == 0:
        return trial
    shifted = np.full_like(trial, np.nan)
    if shift > 0:
        shifted[shift:] = trial[:-shift]
    else:
        shifted[:shift] = trial[-shift:]
    return shifted


def jittered(eval_rates: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """Each eval trial's rates moved later by its jitter (bins), as `psth_r2` moves them: the
    rates the PSTH comparison sees (dmfc_rsg)."""
    return np.stack([_shift_bins(trial, int(shift)) for trial, shift in zip(eval_rates, jitter)])


def psth_r2(psth: np.ndarray, eval_rates: np.ndarray, eval_cond_idx: list[np.ndarray],
            jitter: np.ndarray | None = None) -> float:
    """R2 of the condition-averaged eval rates (all units) against the target PSTHs."""
    psth = np.asarray(psth, dtype=np.float64)
    eval_rates = np.asarray(eval_rates, dtype=np.float64)
    if eval_rates.ndim != 3 or eval_rates.shape[1:] != psth.shape[1:]:
        raise ScoringError(f"eval rates of shape {eval_rates.shape} do not match psth of shape {psth.shape} "
                           "in bins and units")
    true_rows, predicted_rows = [], []
    for condition in psth_conditions(psth, eval_cond_idx):
        trials = eval_rates[condition.eval_trials]
        if jitter is not None:
            trials = np.stack([_shift_bins(trial, int(jitter[i])) for trial, i in zip(trials, condition.eval_trials)])
        predicted = trials.mean(axis=0)[condition.scored_bins]
        if np.isnan(predicted).any():
            raise ScoringError(f"NaN rate predictions in the bins of PSTH condition {condition.index}")
        true_rows.append(psth[condition.index][condition.scored_bins])
        predicted_rows.append(predicted)
    if not true_rows:
        raise ScoringError("no PSTH condition has eval trials")
    true_psth = np.concatenate(true_rows)
    if np.isnan(true_psth).any():
        raise ScoringError("psth: NaN in scored bins of units other than the first")
    return r2_score(true_psth, np.concatenate(predicted_rows))


def neural_speeds(eval_spikes_heldout: np.ndarray, eval_rates: np.ndarray) -> np.ndarray:
    """Per eval trial, the mean norm of the rates' change per bin over the bins where held-out
    spikes are observed (dmfc_rsg: set to go)."""
    observed = ~np.isnan(eval_spikes_heldout[..., 0])
    return np.array([np.linalg.norm(np.diff(trial[mask], axis=0), axis=1).mean()
                     for trial, mask in zip(eval_rates, observed)])


def tp_conditions(eval_behavior: np.ndarray) -> list[np.ndarray]:
    """The eval trials of each tp-corr condition (first three behaviour columns; NaN rows none)."""
    condition_columns = eval_behavior[:, :3]
    conditions = np.unique(condition_columns, axis=0)
    conditions = conditions[~np.isnan(conditions).all(axis=1)]
    return [np.flatnonzero((condition_columns == condition).all(axis=1)) for condition in conditions]


def speed_tp_correlation(eval_spikes_heldout: np.ndarray, eval_rates: np.ndarray,
                         eval_behavior: np.ndarray) -> float:
    """dmfc_rsg: per condition (first three behaviour columns), Pearson r between each trial's
    neural speed (mean norm of the rate change per bin over the bins where held-out spikes are
    observed) and its produced interval (last column); averaged over conditions."""
    speeds = neural_speeds(eval_spikes_heldout, eval_rates)
    condition_columns = eval_behavior[:, :3]
    conditions = np.unique(condition_columns, axis=0)
    conditions = conditions[~np.isnan(conditions).all(axis=1)]
    correlations = []
    for condition in conditions:
        in_condition = (condition_columns == condition).all(axis=1)
        correlations.append(pearsonr(speeds[in_condition], eval_behavior[in_condition, -1])[0])
    return float(np.mean(correlations))


def rate_r2(predicted: np.ndarray, true: np.ndarray) -> float:
    """R2 of predicted against true rates, (trials, bins, units): per unit over all trials and
    bins pooled, averaged over units."""
    predicted = np.asarray(predicted, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    _require_shape("predicted rates", predicted, true.shape)
    return r2_score(true.reshape(-1, true.shape[-1]), predicted.reshape(-1, predicted.shape[-1]))
