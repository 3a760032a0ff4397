"""The linear algebra that makes GPFA's EM fast; `em.py` reads first, and `dense.py` holds the
plain dense version every trick here is tested against.

- Time parity (`TimeParity`): a stationary covariance over T bins commutes with time reversal,
  so in an orthonormal basis of time-symmetric and time-antisymmetric sequences it is
  block-diagonal, with two halves of about T / 2: inverting or factorising them costs a quarter
  of the whole.
- `lower_triangular_inverse`: LAPACK's triangular inversion is slow at the sizes GPFA meets
  (n = 300 or so, OpenBLAS), so large factors are inverted by halves, where most of the work is
  matrix products.
- `KernelTerms` / `TimescaleObjective`: the GP timescales' M-step objective, its slope and
  curvature in log gamma, computed in the parity halves; the prior-only parts are kept so that
  the next E-step reuses them instead of inverting K again.

Tried and left out: torch/MKL batched Cholesky inverses (each call faster, the EM as a whole
slower next to OpenBLAS); running the two halves on two Python threads (scipy's LAPACK wrappers
hold the GIL); a recursive Cholesky combined with the inverse (2-3% faster, not worth the code).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg


def spd_inverse_and_logdet(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverses and log-determinants of a stack of symmetric positive-definite matrices."""
    factors = np.linalg.cholesky(matrices)  # raises LinAlgError unless positive definite
    log_determinant = 2.0 * np.log(np.diagonal(factors, axis1=-2, axis2=-1)).sum(axis=-1)
    return np.linalg.inv(matrices), log_determinant


def se_kernel_by_lag(gamma: np.ndarray, gp_noise_variance: float, n_bins: int) -> np.ndarray:
    """Each latent's prior covariance at lags 0 .. n_bins - 1 bins: (latents, n_bins)."""
    kernel = (1.0 - gp_noise_variance) * np.exp(-0.5 * gamma[:, None] * np.arange(n_bins) ** 2.0)
    kernel[:, 0] += gp_noise_variance
    return kernel


@dataclass(frozen=True)
class TimeParity:
    """The split of sequences of n_bins bins into time-symmetric and time-antisymmetric parts.

    A stationary covariance (its (t, s) entry a function of |t - s|) commutes with time reversal,
    so in an orthonormal basis of symmetric and antisymmetric sequences it is block-diagonal, with
    two halves of about n_bins / 2: inverting or factorising them costs a quarter of the whole.
    For batching, both halves have the symmetric half's size; when n_bins is odd the
    antisymmetric basis gets a zero row and `halves` puts 1 on the diagonal there, which adds
    nothing to log-determinants or traces."""

    bases: np.ndarray  # (2, size, n_bins), rows are basis sequences
    sizes: tuple[int, int]  # rows of each half that are real
    lag_operators: np.ndarray  # (n_bins, 2 * size * size): B_h [|t - s| == lag] B_h' per lag
    padding: np.ndarray  # (2, size, size): 1 on the diagonal of the padding rows

    def halves(self, by_lag: np.ndarray, padding: float = 0.0) -> np.ndarray:
        """Both halves (..., 2, size, size) of the stationary matrices whose (t, s) entry is
        by_lag[..., |t - s|], with `padding` on the padding rows' diagonal."""
        size = self.bases.shape[1]
        halves = (by_lag @ self.lag_operators).reshape(*by_lag.shape[:-1], 2, size, size)
        return halves + padding * self.padding if padding else halves

    @cached_property
    def basis(self) -> np.ndarray:
        """(n_bins, n_bins): the real rows of both halves, symmetric first."""
        return np.concatenate([self.bases[half, :size] for half, size in enumerate(self.sizes)])

    @property
    def rows(self) -> list[slice]:
        """The rows of each non-empty half in `basis`."""
        return [slice(start, start + size) for start, size in
                zip((0, self.sizes[0]), self.sizes) if size]

    def split(self, matrices: np.ndarray) -> np.ndarray:
        """The diagonal blocks (..., 2, size, size) in the two halves' bases of any matrices
        (..., n_bins, n_bins): for a stationary K, tr(K X) is the sum over both halves of
        tr(K_h X_h)."""
        return self.bases @ matrices[..., None, :, :] @ self.bases.swapaxes(-1, -2)


@functools.lru_cache(maxsize=16)
def time_parity(n_bins: int) -> TimeParity:
    size, n_antisymmetric = n_bins - n_bins // 2, n_bins // 2
    first = np.arange(n_antisymmetric)
    mirror = n_bins - 1 - first
    bases = np.zeros((2, size, n_bins))
    bases[0, first, first] = bases[0, first, mirror] = math.sqrt(0.5)
    bases[1, first, first], bases[1, first, mirror] = math.sqrt(0.5), -math.sqrt(0.5)
    if n_bins % 2:
        bases[0, size - 1, size - 1] = 1.0
    lags = np.abs(np.subtract.outer(np.arange(n_bins), np.arange(n_bins)))
    at_lag = (lags == np.arange(n_bins)[:, None, None]).astype(float)  # (lag, t, s)
    operators = bases @ at_lag[:, None] @ bases.swapaxes(-1, -2)  # (lag, 2, size, size)
    padding = np.zeros((2, size, size))
    padding[1, n_antisymmetric:, n_antisymmetric:] = np.eye(size - n_antisymmetric)
    return TimeParity(bases, (size, n_antisymmetric), operators.reshape(n_bins, -1), padding)


# Below this size LAPACK's triangular inversion is used as is; above it, the recursion in
# `lower_triangular_inverse` is faster, as most of its work is matrix products.
DIRECT_INVERSION_SIZE = 128


def lower_triangular_inverse(lower: np.ndarray) -> np.ndarray:
    """Inverse of the lower-triangular `lower` (zeros above the diagonal, as LAPACK's Cholesky
    leaves them), by halves: [[A, 0], [B, C]]^-1 = [[A^-1, 0], [-C^-1 B A^-1, C^-1]]."""
    n = len(lower)
    if n <= DIRECT_INVERSION_SIZE:
        inverse, info = scipy.linalg.lapack.dtrtri(lower, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"singular triangular factor (info {info})")
        return inverse
    half = n // 2
    inverse = np.zeros((n, n), order="F")
    first = inverse[:half, :half] = lower_triangular_inverse(lower[:half, :half])
    second = inverse[half:, half:] = lower_triangular_inverse(lower[half:, half:])
    inverse[half:, :half] = -scipy.linalg.blas.dtrmm(
        1.0, second, scipy.linalg.blas.dtrmm(1.0, first, lower[half:, :half], side=1, lower=1),
        lower=1)
    return inverse


@dataclass(frozen=True)
class TimescaleTerms:
    """Per latent: the negative expected log prior of the latents and its first two derivatives
    with respect to log gamma."""

    value: np.ndarray
    slope: np.ndarray
    curvature: np.ndarray


@dataclass(frozen=True)
class KernelTerms:
    """What the timescale objective needs of the prior covariance K at one log gamma, for any
    second moment A: per latent, f = (n log|K| + <W, A>) / 2,
    f' = (n tr(W K') - <W K' W, A>) / 2 and
    f'' = (n tr(W K'') - n tr(W K' W K') + <2 W K' W K' W - W K'' W, A>) / 2, with W = K^-1,
    ' = d / d log gamma and <X, A> = tr(X A). Every array has the latents first, so the terms of
    different latents can be mixed (`where`)."""

    log_gamma: np.ndarray  # (latents,)
    parity: TimeParity
    log_determinant: np.ndarray  # (latents,) of K
    constants: np.ndarray  # (3, latents): the parts of f, f', f'' without A
    weights: np.ndarray  # (3, latents, 2, size, size): the matrices that A is contracted with

    def terms(self, second_moment: np.ndarray) -> TimescaleTerms:
        """`second_moment`: the halves (latents, 2, size, size) of A."""
        value, slope, curvature = 0.5 * (
            self.constants + (self.weights * second_moment).sum(axis=(2, 3, 4)))
        return TimescaleTerms(value, slope, curvature)

    def where(self, mask: np.ndarray, other: KernelTerms) -> KernelTerms:
        return KernelTerms(np.where(mask, self.log_gamma, other.log_gamma), self.parity,
                            np.where(mask, self.log_determinant, other.log_determinant),
                            np.where(mask, self.constants, other.constants),
                            np.where(mask[:, None, None, None], self.weights, other.weights))


class TimescaleObjective:
    """The M-step objective for the GP timescales of sequences of `n_bins` bins: per latent, the
    negative expected log prior f = (n log|K| + tr(K^-1 A)) / 2 as a function of log gamma, where
    A is the sum over the n sequences of E[x x'] (see `KernelTerms`). K and its derivatives are
    stationary, so every trace splits into the two halves of `TimeParity`, and of A only the
    blocks in those halves matter."""

    def __init__(self, n_bins: int, n_sequences: int, gp_noise_variance: float):
        self._parity = time_parity(n_bins)
        self._n_sequences = n_sequences
        self._gp_noise_variance = gp_noise_variance
        self._lag_squared = np.arange(n_bins) ** 2.0

    def kernel_terms(self, log_gamma: np.ndarray) -> KernelTerms:
        decay = -0.5 * np.exp(log_gamma)[:, None] * self._lag_squared
        smooth = (1.0 - self._gp_noise_variance) * np.exp(decay)
        first = decay * smooth
        second = first * (1.0 + decay)
        kernel = smooth.copy()
        kernel[:, 0] += self._gp_noise_variance
        covariance, first, second = self._parity.halves(np.stack([kernel, first, second]))
        precision, log_determinant = spd_inverse_and_logdet(covariance + self._parity.padding)
        precision_first, precision_second = precision @ first, precision @ second
        slope_weight = precision_first @ precision
        n = self._n_sequences
        constants = n * np.stack([
            log_determinant.sum(axis=1),
            np.einsum("lhii->l", precision_first),
            np.einsum("lhii->l", precision_second)
            - np.einsum("lhij,lhji->l", precision_first, precision_first)])
        weights = np.stack([precision, -slope_weight,
                            2.0 * precision_first @ slope_weight - precision_second @ precision])
        return KernelTerms(log_gamma, self._parity, log_determinant.sum(axis=1), constants,
                            weights)
