"""GPFA the plain way: the posterior of one sequence's latents by dense Gaussian conditioning on
its observed entries. It is what `em.py` computes with every trick of `linalg.py` removed, and
the reference the tests compare those with; read it first to see what the model is."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .em import GpfaParameters, gp_covariances


@dataclass(frozen=True)
class DensePosterior:
    """Posterior of one sequence's latents, latent-major: entry i * T + t is latent i in bin t."""

    mean: np.ndarray  # (latents * bins,)
    covariance: np.ndarray  # (latents * bins, latents * bins)
    log_likelihood: float  # of the sequence's observed entries


def dense_prior(parameters: GpfaParameters, n_bins: int) -> np.ndarray:
    """The GP prior over all latents and bins, block-diagonal by latent."""
    n_latents = parameters.latent_dim
    prior = np.zeros((n_latents * n_bins, n_latents * n_bins))
    blocks = gp_covariances(parameters.gamma, parameters.gp_noise_variance, n_bins)
    for i, block in enumerate(blocks):
        prior[i * n_bins:(i + 1) * n_bins, i * n_bins:(i + 1) * n_bins] = block
    return prior


def dense_posterior(parameters: GpfaParameters, sequence: np.ndarray) -> DensePosterior:
    """Condition the prior on the observed (non-NaN) entries of `sequence` (bins, units):
    y = D x + d + noise, with D the loading rows of the observed (bin, unit) pairs."""
    n_bins = sequence.shape[0]
    n_latents = parameters.latent_dim
    prior = dense_prior(parameters, n_bins)
    observed = np.argwhere(~np.isnan(sequence))  # rows of (bin, unit)
    design = np.zeros((len(observed), n_latents * n_bins))
    for row, (t, n) in enumerate(observed):
        design[row, np.arange(n_latents) * n_bins + t] = parameters.loading[n]
    residual = sequence[~np.isnan(sequence)] - parameters.offset[observed[:, 1]]
    data_covariance = design @ prior @ design.T + np.diag(parameters.private_variance[observed[:, 1]])
    gain = prior @ design.T @ np.linalg.inv(data_covariance)
    log_likelihood = -0.5 * (len(residual) * math.log(2 * math.pi) + np.linalg.slogdet(data_covariance)[1]
                             + residual @ np.linalg.solve(data_covariance, residual))
    return DensePosterior(gain @ residual, prior - gain @ design @ prior, float(log_likelihood))
