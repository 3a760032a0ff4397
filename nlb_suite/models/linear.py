"""Building blocks the linear-Gaussian models (GPFA, Kalman) share: trials grouped by their
pattern of missing entries, and factor analysis to start EM from.

Missing-data patterns: sequences that have the same observed entries share every posterior
covariance of a linear-Gaussian model, so both models factorise once per pattern and propagate
only the means per trial.

Factor analysis: the maximum-likelihood loadings for given private variances are the leading
eigenvectors of the noise-whitened covariance (Barber 2012), iterated with the variances they
leave; this is scikit-learn's `FactorAnalysis` algorithm with an exact eigendecomposition in place
of its default randomised SVD (so the start does not depend on a random seed) and with its
stopping rule (the log-likelihood gains less than `tol`). Starting from all variance as private
noise avoids the degenerate optima where a few high-variance units take all the latents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# scikit-learn's floor on private variances and its default tolerance and iteration limit.
_SMALLEST_VARIANCE = 1e-12
FA_TOLERANCE = 1e-2
FA_MAX_ITER = 1000


@dataclass(frozen=True)
class MissingPattern:
    """The sequences (indices into the first axis) that share one pattern of observed entries."""

    observed: np.ndarray  # (bins, units) bool
    members: np.ndarray


def group_by_pattern(observed: np.ndarray) -> list[MissingPattern]:
    """Sequences (first axis of the (sequences, bins, units) bool array `observed`) grouped by
    their observed entries, in order of first appearance."""
    # Bit-packed rows make finding the distinct patterns several times faster.
    packed = np.packbits(observed.reshape(len(observed), -1), axis=1)
    _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(first, kind="stable")
    return [MissingPattern(observed[first[g]], np.flatnonzero(inverse == g)) for g in order]


@dataclass(frozen=True)
class FactorModel:
    """x = loadings z + noise, z ~ N(0, I), noise ~ N(0, diag(noise)) (centred data)."""

    loadings: np.ndarray  # (outputs, latents)
    noise: np.ndarray  # (outputs,)
    n_iter: int

    def posterior_gain(self) -> np.ndarray:
        """(latents, outputs): E[z | x] = gain @ x."""
        covariance = self.loadings @ self.loadings.T + np.diag(self.noise)
        return np.linalg.solve(covariance, self.loadings).T


def factor_analysis(covariance: np.ndarray, n_samples: int, latent_dim: int, noise_floor: float = 0.0,
                    tol: float = FA_TOLERANCE, max_iter: int = FA_MAX_ITER) -> FactorModel:
    """Factor analysis of a sample covariance (of `n_samples` rows), private variances kept at or
    above `noise_floor`. Same result as scikit-learn's FactorAnalysis(svd_method='lapack') on the
    data the covariance comes from (tested)."""
    floor = max(noise_floor, _SMALLEST_VARIANCE)
    variances = np.diag(covariance).copy()
    noise = np.maximum(variances, floor)
    log_likelihood = -math.inf
    loadings = np.zeros((len(covariance), latent_dim))
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        scale = np.sqrt(noise) + _SMALLEST_VARIANCE
        eigenvalues, eigenvectors = np.linalg.eigh(covariance / np.outer(scale, scale))
        top = slice(None, -latent_dim - 1, -1)
        leading, rest = eigenvalues[top], eigenvalues[:-latent_dim]
        loadings = scale[:, None] * eigenvectors[:, top] * np.sqrt(np.maximum(leading - 1.0, 0.0))
        # scikit-learn's log-likelihood of the current noise, from the eigenvalues it left out;
        # like it, the loop ends with the noise these loadings were computed for.
        previous = log_likelihood
        log_likelihood = -0.5 * n_samples * (len(noise) * math.log(2 * math.pi) + np.log(leading).sum()
                                             + rest.sum() + latent_dim + np.log(noise).sum())
        if log_likelihood - previous < tol:
            break
        noise = np.maximum(variances - (loadings ** 2).sum(axis=1), floor)
    return FactorModel(loadings=loadings, noise=noise, n_iter=n_iter)
