"""The benchmark's own baseline: Gaussian-smoothed held-in spikes, log rates -> Poisson GLM.

Held-in spikes are smoothed along time within each trial by a Gaussian kernel (sd `kern_sd_ms`,
truncated at 3 sd). The benchmark smooths the continuous session before cutting trials; within a
trial window the kernel is renormalised by the weight that falls on observed bins, so trial edges
and unobserved (NaN) bins are averages of what was seen rather than zero-padded. The features are
log(smoothed rate + `log_offset`) of all held-in units; one `PoissonReadout` (L2 penalty `alpha`)
maps them to every held-in and held-out unit.

Forward window: a smoothing model has no dynamics to extrapolate with, so its readout there has
no features (`LatentReadout`) and every eval trial gets each unit's mean count per bin over the
forward windows of the training trials. Measured on
synth_maze (val, 5 ms, fp-bps): this -0.008; the readout of the last bin's features held
constant -0.135; a GLM from the last bin's features to each forward bin -2.0 (overfits); the
mean per forward bin -0.096 (a unit silent in one training bin gets rate 0 there).

With `sweep=True`, kernel width and alpha are chosen from the grids by the held-out-unit Poisson
log-likelihood on a random `validation_fraction` of the training trials (split by `seed`), then
refitted on all training trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.ndimage import convolve1d

from ..core.arrays import Rates, Tensors
from .base import Estimator, Hyperparameters, ModelError, not_fitted, param
from .readout import LatentReadout, PoissonReadout


@dataclass(frozen=True)
class SmoothingConfig(Hyperparameters):
    """Kernel sd `kern_sd_ms`, GLM penalty `alpha`, `log_offset` added before the log; with
    `sweep`, the kernel and alpha are chosen from `kern_sd_grid_ms` x `alpha_grid` on
    `validation_fraction` of the training trials (drawn with `seed`)."""

    OWNER: ClassVar[str] = "smoothing"

    kern_sd_ms: float = param(50.0, low=0, low_inclusive=False)
    alpha: float = param(0.01, low=0)
    log_offset: float = param(1e-4, low=0, low_inclusive=False)
    sweep: bool = param(False)
    kern_sd_grid_ms: tuple[float, ...] = param((20.0, 40.0, 60.0, 80.0, 100.0), low=0, low_inclusive=False)
    alpha_grid: tuple[float, ...] = param((0.01, 0.1, 1.0), low=0)
    validation_fraction: float = param(0.2, low=0, high=1, low_inclusive=False, high_inclusive=False)
    seed: int = param(0, low=0)


class SmoothingModel(Estimator[SmoothingConfig]):
    """Spike smoothing + Poisson GLM (the NLB'21 smoothing baseline)."""

    Config = SmoothingConfig

    def fit(self, tensors: Tensors) -> SmoothingModel:
        """Fit the readout on training trials (choosing kernel and alpha first if `sweep`)."""
        cfg = self.config
        if tensors.n_train < 2:
            raise ModelError(f"smoothing: {tensors.dataset} has {tensors.n_train} training trials; need 2")
        self.fill_rates_ = _observed_mean(_rows(tensors.train_spikes_heldin))
        if cfg.sweep:
            sweep = self._sweep(tensors)
            self.kern_sd_ms_, self.alpha_, self.sweep_scores_ = sweep.kern_sd_ms, sweep.alpha, sweep.scores
        else:
            self.kern_sd_ms_, self.alpha_ = cfg.kern_sd_ms, cfg.alpha
        features = self._features(tensors.train_spikes_heldin, tensors.bin_ms, self.kern_sd_ms_)
        self.readout_ = LatentReadout(self.alpha_).fit(features, _no_features(tensors.n_train, tensors.n_forward),
                                                       tensors)
        return self

    def predict(self, tensors: Tensors) -> Rates:
        """Rates for train and eval trials and the eval forward window, in spikes/bin."""
        if not hasattr(self, "readout_"):
            raise not_fitted("smoothing")
        return self.readout_.rates(
            self._features(tensors.train_spikes_heldin, tensors.bin_ms, self.kern_sd_ms_),
            self._features(tensors.eval_spikes_heldin, tensors.bin_ms, self.kern_sd_ms_),
            _no_features(tensors.n_eval, tensors.n_forward))

    def _features(self, spikes: np.ndarray, bin_ms: int, kern_sd_ms: float) -> np.ndarray:
        smoothed = smooth_spikes(spikes, kern_sd_ms / bin_ms)
        # A bin with no observed neighbour within the kernel gets the unit's mean training rate.
        smoothed = np.where(np.isnan(smoothed), self.fill_rates_, smoothed)
        return np.log(smoothed + self.config.log_offset)

    def _sweep(self, tensors: Tensors) -> _SweepResult:
        """Grid search scored by held-out-unit Poisson log-likelihood on held-back train trials."""
        cfg = self.config
        order = np.random.default_rng(cfg.seed).permutation(tensors.n_train)
        n_validation = max(1, round(cfg.validation_fraction * tensors.n_train))
        validation, fitting = order[:n_validation], order[n_validation:]
        heldout = tensors.train_spikes_heldout
        best = _SweepResult(kern_sd_ms=cfg.kern_sd_ms, alpha=cfg.alpha, scores={})
        best_score = -np.inf
        for kern_sd_ms in cfg.kern_sd_grid_ms:
            features = self._features(tensors.train_spikes_heldin, tensors.bin_ms, kern_sd_ms)
            for alpha in cfg.alpha_grid:
                readout = PoissonReadout(alpha=alpha).fit(_rows(features[fitting]), _rows(heldout[fitting]))
                score = _poisson_log_likelihood(readout.predict(_rows(features[validation])),
                                                _rows(heldout[validation]))
                best.scores[f"kern_sd_ms={kern_sd_ms:g},alpha={alpha:g}"] = score
                if score > best_score:
                    best_score, best.kern_sd_ms, best.alpha = score, kern_sd_ms, alpha
        return best


def _no_features(n_trials: int, n_forward: int) -> np.ndarray:
    """The forward window's features of a model without dynamics: none, so its readout there is
    each unit's mean forward rate over the training trials."""
    return np.empty((n_trials, n_forward, 0))


@dataclass
class _SweepResult:
    kern_sd_ms: float
    alpha: float
    scores: dict[str, float]  # held-out log-likelihood of every grid point


def smooth_spikes(spikes: np.ndarray, sd_bins: float) -> np.ndarray:
    """Gaussian smoothing along axis 1 (time) of (trials, bins, units) spikes, NaN-aware.

    The kernel (sd `sd_bins`, truncated at 3 sd, odd length so it is centred) is renormalised at
    every bin by its weight on observed bins; bins whose kernel covers no observed bin are NaN.
    """
    half_width = max(1, int(np.ceil(3 * sd_bins)))
    offsets = np.arange(-half_width, half_width + 1)
    kernel = np.exp(-0.5 * (offsets / sd_bins) ** 2)
    observed = ~np.isnan(spikes)
    weighted = convolve1d(np.where(observed, spikes, 0.0).astype(np.float64), kernel, axis=1,
                          mode="constant")
    weight = convolve1d(observed.astype(np.float64), kernel, axis=1, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, weighted / weight, np.nan)


def _observed_mean(spikes: np.ndarray) -> np.ndarray:
    """Mean over the first axis of the observed (non-NaN) entries; 0 where none is observed."""
    values = np.asarray(spikes, dtype=np.float64)
    observed = ~np.isnan(values)
    totals = np.where(observed, values, 0.0).sum(axis=0)
    n_observed = observed.sum(axis=0)
    return np.divide(totals, n_observed, out=np.zeros_like(totals), where=n_observed > 0)


def _poisson_log_likelihood(rates: np.ndarray, counts: np.ndarray) -> float:
    """Sum of n log r - r over observed entries (the count-only lgamma term is omitted)."""
    observed = ~np.isnan(counts)
    safe_rates = np.maximum(rates[observed], 1e-9)
    return float(np.sum(counts[observed] * np.log(safe_rates) - safe_rates))


def _rows(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1, array.shape[-1])

