"""Bits per spike, as nlb_tools 0.0.4's `evaluation.py` defines it: the one formula behind co-bps
and fp-bps, and behind the validation monitors of the models that train iteratively.

Poisson log likelihood of the predicted rates minus that of each unit's mean count, over all
units and observed entries, per spike, in bits. NaN spike entries are unobserved and skipped
(whatever is predicted there); a NaN, infinite or negative rate at an observed entry is an error;
a zero rate becomes 1e-9 with a warning. The log(n!) term of the likelihood cancels and is left
out. It is computed from per-trial, per-unit sums (`PoissonStats`), so that the same numbers,
reweighted, give the bootstrap distribution (`scoring/bootstrap.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import ScoringError

logger = logging.getLogger(__name__)

ZERO_RATE_FLOOR = 1e-9


@dataclass(frozen=True)
class PoissonStats:
    """Sums over each trial's observed bins, per unit, from which bits per spike over any
    reweighting of the trials follows. Each array is (trials, units)."""

    spikes: np.ndarray
    observed_bins: np.ndarray
    model_nll: np.ndarray  # sum of rate - count * log(rate)

    def _totals(self, trial_weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if trial_weights is None:
            return self.spikes.sum(axis=0), self.observed_bins.sum(axis=0), self.model_nll.sum(axis=0)
        return trial_weights @ self.spikes, trial_weights @ self.observed_bins, trial_weights @ self.model_nll

    def nll_gain(self, trial_weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per unit: null-model NLL minus model NLL, and the spike count. With `trial_weights`
        (resamples, trials) both get a leading resample axis."""
        spikes, bins, model_nll = self._totals(trial_weights)
        # The null model predicts each unit's mean count over the observed entries (a silent
        # unit: 1e-9); its NLL over those entries is bins * mean - spikes * log(mean).
        with np.errstate(divide="ignore", invalid="ignore"):
            null_rate = np.where(bins > 0, spikes / bins, 1.0)
        null_rate = np.where(null_rate == 0, ZERO_RATE_FLOOR, null_rate)
        null_nll = np.where(bins > 0, bins * null_rate - spikes * np.log(null_rate), 0.0)
        return null_nll - model_nll, spikes

    def bits_per_spike(self, trial_weights: np.ndarray | None = None) -> np.ndarray:
        """Pooled over units: a 0-d array, or one value per row of `trial_weights`."""
        gain, spikes = self.nll_gain(trial_weights)
        with np.errstate(divide="ignore", invalid="ignore"):
            return gain.sum(axis=-1) / spikes.sum(axis=-1) / np.log(2)

    def bits_per_spike_per_unit(self) -> np.ndarray:
        """One value per unit; the pooled value is their mean weighted by each unit's spike
        count. A unit without spikes has no value (NaN), though its predicted rates still
        lower the pooled value."""
        gain, spikes = self.nll_gain()
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(spikes > 0, gain / spikes / np.log(2), np.nan)


def poisson_stats(rates: np.ndarray, spikes: np.ndarray, *, warn_zero: bool = True) -> PoissonStats:
    """Per-trial sums of (trials, bins, units) `rates` against `spikes` (NaN: unobserved)."""
    rates = np.asarray(rates, dtype=np.float64)
    spikes = np.asarray(spikes, dtype=np.float64)
    if spikes.ndim != 3:
        raise ScoringError(f"spikes must be (trials, bins, units), got shape {spikes.shape}")
    if rates.shape != spikes.shape:
        raise ScoringError(f"rates: shape {rates.shape}, expected {spikes.shape}")
    observed = ~np.isnan(spikes)
    rates = np.where(observed, rates, 1.0)
    if np.isnan(rates).any():
        raise ScoringError("NaN rate predictions where spikes were observed")
    if np.isinf(rates).any():
        raise ScoringError("infinite rate predictions")
    if (rates < 0).any():
        raise ScoringError("negative rate predictions")
    zero = rates == 0
    if zero.any():
        if warn_zero:
            logger.warning("zero rate predictions found; replacing them with %g", ZERO_RATE_FLOOR)
        rates = np.where(zero, ZERO_RATE_FLOOR, rates)
    counts = np.where(observed, spikes, 0.0)
    model_nll = np.where(observed, rates - counts * np.log(rates), 0.0)
    return PoissonStats(spikes=counts.sum(axis=1), observed_bins=observed.sum(axis=1, dtype=np.float64),
                        model_nll=model_nll.sum(axis=1))


def bits_per_spike(rates: np.ndarray, spikes: np.ndarray) -> float:
    """Bits per spike of `rates` over the mean-rate null model (co-bps, fp-bps)."""
    return float(poisson_stats(rates, spikes).bits_per_spike())


