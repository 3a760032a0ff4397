"""`Gpfa`, the estimator behind `--model gpfa`: GPFA (Yu et al. 2009) latents from square-rooted
held-in counts, rates of every unit by a Poisson GLM on the latent posterior means.

Spike counts enter square-rooted, as in Yu 2009: the square root roughly stabilises the Poisson
variance, which suits the Gaussian observation model. Rates come from a `LatentReadout`, so they
are in spikes/bin whatever the transform; the forward window's latents are the GP's prediction
given the observed bins. Training sequences longer than `segment_bins` are cut into overlapping
segments of that length (as Yu 2009's code does) because the cost grows as (q T)^3. The EM is in
`em.py`, its linear algebra in `linalg.py`, and a dense reference in `dense.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...core.arrays import LatentKind, Rates, Tensors, latent_key
from ..base import Estimator, Hyperparameters, ModelError, not_fitted, param
from ..readout import LatentReadout
from .em import GpfaParameters, cut_segments, extrapolate_latents, factor_analysis_init, fit_gpfa, posterior_means


@dataclass(frozen=True)
class GpfaConfig(Hyperparameters):
    """`latent_dim` latents; at most `n_iter` EM iterations, stopping early by `tolerance` (see
    `fit_gpfa`); private-variance floor `min_var_frac`; initial GP timescale `timescale_ms`; fixed
    GP noise variance `gp_noise_variance`; training segment length `segment_bins`; L2 penalty
    `readout_alpha` of the Poisson readout. The fit is deterministic (factor analysis by an
    exact eigendecomposition starts EM; nothing is sampled)."""

    OWNER: ClassVar[str] = "gpfa"

    latent_dim: int = param(8, low=1)
    n_iter: int = param(500, low=0)
    tolerance: float = param(1e-8, low=0)
    min_var_frac: float = param(0.01, low=0, high=1, high_inclusive=False)
    timescale_ms: float = param(100.0, low=0, low_inclusive=False)
    gp_noise_variance: float = param(1e-3, low=0, high=1, low_inclusive=False, high_inclusive=False)
    segment_bins: int = param(40, low=2)
    readout_alpha: float = param(0.01, low=0)


class Gpfa(Estimator[GpfaConfig]):
    """GPFA latents, Poisson readout to all units. After `fit`: `parameters_` (GpfaParameters over
    the held-in units in `fitted_units_`), `log_likelihoods_` (see `GpfaFit`), `timescales_ms_`
    and `readout_`."""

    Config = GpfaConfig

    def fit(self, tensors: Tensors) -> Gpfa:
        """Learn GPFA on the training trials' held-in spikes, then the readout from their latents
        to the training trials' spikes."""
        cfg = self.config
        sequences = np.sqrt(tensors.train_spikes_heldin.astype(np.float64))
        # A unit that never varies in training says nothing about the latents and would get zero
        # private variance; GPFA leaves it out, the readout still predicts it. (fmax and fmin
        # skip NaN, so a unit that is never observed counts as not varying, without warnings.)
        highest, lowest = np.fmax.reduce(sequences, axis=(0, 1)), np.fmin.reduce(sequences, axis=(0, 1))
        self.fitted_units_ = highest > lowest
        if self.fitted_units_.sum() < cfg.latent_dim:
            raise ModelError(
                f"gpfa: latent_dim={cfg.latent_dim} needs at least that many held-in units that "
                f"vary over the training trials of {tensors.dataset!r}; there are "
                f"{int(self.fitted_units_.sum())}")
        sequences = sequences[:, :, self.fitted_units_]
        segments = cut_segments(sequences, cfg.segment_bins)
        initial = factor_analysis_init(segments, cfg.latent_dim, cfg.timescale_ms / tensors.bin_ms,
                                       cfg.gp_noise_variance)
        result = fit_gpfa(segments, initial, cfg.n_iter, cfg.tolerance, cfg.min_var_frac)
        self.parameters_: GpfaParameters = result.parameters
        self.log_likelihoods_ = result.log_likelihoods
        self.timescales_ms_ = result.parameters.timescales_bins * tensors.bin_ms
        latents, _ = posterior_means(self.parameters_, sequences)
        forward = extrapolate_latents(self.parameters_, latents, tensors.n_forward)
        self.readout_ = LatentReadout(cfg.readout_alpha).fit(latents, forward, tensors)
        return self

    def predict(self, tensors: Tensors) -> Rates:
        """Rates of all units for training and evaluation trials, and for the forward window
        after the evaluation trials (GP extrapolation of their latents)."""
        if not hasattr(self, "parameters_"):
            raise not_fitted("gpfa")
        if tensors.n_heldin != len(self.fitted_units_):
            raise ModelError(f"gpfa: fitted on {len(self.fitted_units_)} held-in units, "
                             f"{tensors.dataset!r} has {tensors.n_heldin}")
        # Training and evaluation trials go through one posterior: trials with the same pattern of
        # observed entries share its factorisation.
        spikes = np.concatenate([tensors.train_spikes_heldin, tensors.eval_spikes_heldin])
        latents, _ = posterior_means(
            self.parameters_, np.sqrt(spikes[:, :, self.fitted_units_].astype(np.float64)))
        train_latents, eval_latents = latents[:tensors.n_train], latents[tensors.n_train:]
        forward = extrapolate_latents(self.parameters_, eval_latents, tensors.n_forward)
        return self.readout_.rates(train_latents, eval_latents, forward, latents={
            latent_key("train", LatentKind.STATES): train_latents.astype(np.float32),
            latent_key("eval", LatentKind.STATES): eval_latents.astype(np.float32)})
