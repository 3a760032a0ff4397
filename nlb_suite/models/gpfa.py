"""Gaussian-process factor analysis (Yu et al. 2009) on numpy/scipy, batched over trials.

Model, per trial of T bins: latents x_i(t), i = 1..q, are independent Gaussian processes with a
squared-exponential covariance (1 - eps) exp(-gamma_i (t - s)^2 / 2) + eps [t == s], where
gamma_i = 1 / timescale_i^2 in bins and eps is a small fixed GP noise variance; the observations are
y(t) = C x(t) + d + noise, noise ~ N(0, diag(R)). EM learns C, d, R in closed form and each gamma_i
by Newton steps on the expected complete-data log-likelihood, starting from factor analysis.

Spike counts enter square-rooted, as in Yu 2009: the square root roughly stabilises the Poisson
variance, which suits the Gaussian observation model. Rates come from a Poisson GLM on the latent
posterior means (`PoissonReadout`), so they are in spikes/bin whatever the transform. The forward
window's latents are the GP's prediction given the observed bins; a second readout, fitted on the
training trials' forward spikes, turns them into rates.

Speed: all sequences have the same length, so every sequence with the same pattern of observed
entries shares one posterior covariance (a (q T) x (q T) matrix). Each EM iteration factorises it
once per pattern and gets the posterior means of all those sequences from matrix products.
Without NaN there is a single pattern, and it is time-invariant: then the GP prior's symmetry
under time reversal splits the covariance into two halves (`_TimeParity`), each a quarter of the
work, and E-step and M-steps work in that basis throughout. The timescales' M-step takes Newton
steps whose prior-only terms are reused by the next E-step. Training sequences longer than
`segment_bins` are cut into overlapping segments of that length (as Yu 2009's code does) because
the cost grows as (q T)^3.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg
from sklearn.decomposition import FactorAnalysis

from ..core.arrays import Rates, Tensors
from .base import ModelError, check_range, register_model
from .readout import PoissonReadout


@dataclass(frozen=True)
class GpfaParameters:
    """GPFA parameters for `units` observed dimensions and `latents` Gaussian processes.

    `gamma` is in bins^-2: a latent's timescale is 1 / sqrt(gamma) bins."""

    loading: np.ndarray  # C, (units, latents)
    offset: np.ndarray  # d, (units,)
    private_variance: np.ndarray  # diagonal of R, (units,)
    gamma: np.ndarray  # (latents,)
    gp_noise_variance: float

    @property
    def latent_dim(self) -> int:
        return self.loading.shape[1]

    @property
    def timescales_bins(self) -> np.ndarray:
        return 1.0 / np.sqrt(self.gamma)


@dataclass(frozen=True)
class GpfaFit:
    """EM result: final parameters and the data log-likelihood before the first M-step and after
    each one (the last entry belongs to `parameters`)."""

    parameters: GpfaParameters
    log_likelihoods: np.ndarray


def gp_covariances(gamma: np.ndarray, gp_noise_variance: float, n_bins: int) -> np.ndarray:
    """Prior covariance over `n_bins` bins of each latent: (latents, n_bins, n_bins)."""
    lag_squared = np.subtract.outer(np.arange(n_bins), np.arange(n_bins)) ** 2.0
    smooth = (1.0 - gp_noise_variance) * np.exp(-0.5 * gamma[:, None, None] * lag_squared)
    return smooth + gp_noise_variance * np.eye(n_bins)


def factor_analysis_init(sequences: np.ndarray, latent_dim: int, timescale_bins: float,
                         gp_noise_variance: float, seed: int) -> GpfaParameters:
    """Starting point of EM: factor analysis of all bins of `sequences` (trials, bins, units), the
    same timescale for every latent. NaN entries are replaced by the unit's mean for this step."""
    samples = sequences.reshape(-1, sequences.shape[-1])
    unit_mean = np.nanmean(samples, axis=0)
    samples = np.where(np.isnan(samples), unit_mean, samples)
    analysis = FactorAnalysis(n_components=latent_dim, noise_variance_init=samples.var(axis=0),
                              random_state=seed)
    analysis.fit(samples)
    return GpfaParameters(
        loading=analysis.components_.T.copy(), offset=unit_mean,
        private_variance=analysis.noise_variance_.copy(),
        gamma=np.full(latent_dim, timescale_bins ** -2.0), gp_noise_variance=gp_noise_variance,
    )


@dataclass(frozen=True)
class _PatternGroup:
    """Sequences that share one pattern of observed entries, hence one posterior covariance.

    Their values are kept in the group's coordinates over time: when the group is time-invariant
    (every unit observed in all bins or in none: always so without NaN), the bases of the two
    halves of `_TimeParity`, symmetric first, in which its posterior precision is block-diagonal;
    otherwise the bins themselves. The E-step and M-step work in these coordinates throughout,
    as every sum over time they need is the same in any orthonormal basis."""

    observed: np.ndarray  # (bins, units) bool
    members: np.ndarray  # indices into the sequence axis
    time_invariant: bool
    coordinates: np.ndarray  # (bins, bins): rows are the basis sequences
    values: np.ndarray  # (bins, members, units) in these coordinates, 0 where unobserved
    value_sum: np.ndarray  # (units,): sums over bins and sequences
    square_sum: np.ndarray

    @cached_property
    def constant(self) -> np.ndarray:
        """The sequence of ones in these coordinates, (bins,)."""
        return self.coordinates.sum(axis=1)


def _group_by_pattern(sequences: np.ndarray) -> list[_PatternGroup]:
    n_bins = sequences.shape[1]
    observed = ~np.isnan(sequences)
    # Bit-packed rows make finding the distinct patterns several times faster.
    packed = np.packbits(observed.reshape(len(sequences), -1), axis=1)
    _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    values = np.where(observed, sequences, 0.0)
    groups = []
    for index, sequence in enumerate(first):
        pattern = observed[sequence]
        members = np.flatnonzero(inverse == index)
        in_time = values[members].transpose(1, 0, 2)  # (bins, members, units)
        time_invariant = bool((pattern == pattern[0]).all())
        coordinates = _time_parity(n_bins).basis if time_invariant else np.eye(n_bins)
        groups.append(_PatternGroup(
            pattern, members, time_invariant, coordinates,
            values=(coordinates @ in_time.reshape(n_bins, -1)).reshape(in_time.shape),
            value_sum=in_time.sum(axis=(0, 1)), square_sum=(in_time ** 2).sum(axis=(0, 1))))
    return groups


def _spd_inverse_and_logdet(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverses and log-determinants of a stack of symmetric positive-definite matrices."""
    factors = np.linalg.cholesky(matrices)  # raises LinAlgError unless positive definite
    log_determinant = 2.0 * np.log(np.diagonal(factors, axis1=-2, axis2=-1)).sum(axis=-1)
    return np.linalg.inv(matrices), log_determinant


def _se_kernel_by_lag(gamma: np.ndarray, gp_noise_variance: float, n_bins: int) -> np.ndarray:
    """Each latent's prior covariance at lags 0 .. n_bins - 1 bins: (latents, n_bins)."""
    kernel = (1.0 - gp_noise_variance) * np.exp(-0.5 * gamma[:, None] * np.arange(n_bins) ** 2.0)
    kernel[:, 0] += gp_noise_variance
    return kernel


@dataclass(frozen=True)
class _TimeParity:
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
def _time_parity(n_bins: int) -> _TimeParity:
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
    return _TimeParity(bases, (size, n_antisymmetric), operators.reshape(n_bins, -1), padding)


@dataclass(frozen=True)
class _GpPrior:
    """The latents' GP prior over sequences of one length, as precisions."""

    parity: _TimeParity
    precision_halves: np.ndarray  # (latents, 2, size, size)
    log_determinant: float  # of the prior covariance of all latents over all bins

    @classmethod
    def of(cls, parameters: GpfaParameters, n_bins: int) -> _GpPrior:
        parity = _time_parity(n_bins)
        covariance = parity.halves(
            _se_kernel_by_lag(parameters.gamma, parameters.gp_noise_variance, n_bins), padding=1.0)
        precision, log_determinant = _spd_inverse_and_logdet(covariance)
        return cls(parity, precision, float(log_determinant.sum()))

    @classmethod
    def from_kernel(cls, kernel: _KernelTerms) -> _GpPrior:
        """The prior at the timescales of `kernel`, which has computed it already."""
        return cls(kernel.parity, kernel.weights[0], float(kernel.log_determinant.sum()))

    @cached_property
    def precision(self) -> np.ndarray:
        """(latents, bins, bins) in the time basis."""
        bases = self.parity.bases
        return (bases.swapaxes(-1, -2) @ self.precision_halves @ bases).sum(axis=1)


# Below this size LAPACK's triangular inversion is used as is; above it, the recursion in
# `_lower_triangular_inverse` is faster, as most of its work is matrix products.
_DIRECT_INVERSION_SIZE = 128


def _lower_triangular_inverse(lower: np.ndarray) -> np.ndarray:
    """Inverse of the lower-triangular `lower` (zeros above the diagonal, as LAPACK's Cholesky
    leaves them), by halves: [[A, 0], [B, C]]^-1 = [[A^-1, 0], [-C^-1 B A^-1, C^-1]]."""
    n = len(lower)
    if n <= _DIRECT_INVERSION_SIZE:
        inverse, info = scipy.linalg.lapack.dtrtri(lower, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"singular triangular factor (info {info})")
        return inverse
    half = n // 2
    inverse = np.zeros((n, n), order="F")
    first = inverse[:half, :half] = _lower_triangular_inverse(lower[:half, :half])
    second = inverse[half:, half:] = _lower_triangular_inverse(lower[half:, half:])
    inverse[half:, :half] = -scipy.linalg.blas.dtrmm(
        1.0, second, scipy.linalg.blas.dtrmm(1.0, first, lower[half:, :half], side=1, lower=1),
        lower=1)
    return inverse


@dataclass(frozen=True)
class _GroupPosterior:
    means: np.ndarray  # (bins, members, latents), in the group's coordinates
    # For the M-step: per sequence, the latents' posterior covariance in each bin, (bins, latents,
    # latents), or its sum over bins, (1, latents, latents), when the group is time-invariant
    # (then that sum is all the M-step needs); and summed over the group's sequences, each
    # latent's second moment over time E[x x'] in the halves of `_TimeParity`, (latents, 2, size,
    # size), all that the timescales' M-step needs.
    bin_covariance: np.ndarray | None
    latent_moments: np.ndarray | None


def _group_posterior(parameters: GpfaParameters, prior: _GpPrior, group: _PatternGroup,
                     with_covariance: bool) -> tuple[_GroupPosterior, float]:
    """Posterior of the latents of one group, in the group's coordinates, and the group's data
    log-likelihood.

    The posterior precision is K^-1 + (C' R^-1 C in each bin), (latent, bin)-ordered. The
    log-likelihood uses the matrix determinant lemma and Woodbury's identity, so that only this
    (q T)-sized matrix is factorised, never the (units T)-sized data covariance.

    When the observed units are the same in every bin, the precision commutes with time reversal
    as the prior does, so it splits into two independent halves (see `_TimeParity`)."""
    loading, variance = parameters.loading, parameters.private_variance
    n_latents, n_bins = parameters.latent_dim, group.observed.shape[0]
    n_members = len(group.members)
    parity = prior.parity
    weight = group.observed / variance  # R^-1 on observed entries, 0 elsewhere
    # C' R^-1 (y - d) per coordinate and sequence, (bins, members, latents), unobserved entries out
    if group.time_invariant:
        halves = [(rows, prior.precision_halves[:, half, :size, :size]) for half, (rows, size)
                  in enumerate(zip(parity.rows, parity.sizes))]
        weighted_loading = weight[0, :, None] * loading
        observation_precision = (loading.T @ weighted_loading)[None]
        # (a product per coordinate is faster here than one over all of them)
        projected = group.values @ weighted_loading
    else:  # the coordinates are the bins
        weighted_loading = weight[:, :, None] * loading  # (bins, units, latents)
        halves = [(slice(0, n_bins), prior.precision)]
        observation_precision = loading.T @ weighted_loading
        projected = group.values @ weighted_loading
    projected -= (group.coordinates @ ((weight * parameters.offset) @ loading))[:, None, :]

    means = np.empty((n_bins, n_members, n_latents))
    posterior_logdet = 0.0
    bin_covariance = np.zeros((len(observation_precision), n_latents, n_latents))
    latent_moments = np.zeros((n_latents, 2, parity.bases.shape[1], parity.bases.shape[1]))
    latent_index = np.arange(n_latents)
    for half, (rows, prior_precision) in enumerate(halves):
        n_rows = len(prior_precision[0])
        size = n_latents * n_rows
        row_index = np.arange(n_rows)
        precision = np.zeros((n_latents, n_rows, n_latents, n_rows))
        precision[latent_index, :, latent_index, :] = prior_precision
        precision[:, row_index, :, row_index] += observation_precision
        factor, info = scipy.linalg.lapack.dpotrf(precision.reshape(size, size), lower=1,
                                                  overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"GPFA posterior precision is not positive definite "
                                        f"(info {info})")
        posterior_logdet += 2.0 * np.log(np.diag(factor)).sum()
        # (latent, coordinate)-ordered rows, a column per sequence
        right_side = projected[rows].transpose(2, 0, 1).reshape(size, n_members)
        if with_covariance:
            # The M-step needs blocks of the covariance L^-T L^-1: from the columns of L^-1 they
            # are two matrix products, and the means two triangular ones.
            inverse_factor = _lower_triangular_inverse(factor)
            whitened = scipy.linalg.blas.dtrmm(1.0, inverse_factor, right_side, lower=1)
            solution = scipy.linalg.blas.dtrmm(1.0, inverse_factor, whitened, lower=1, trans_a=1)
            columns = inverse_factor.T.reshape(n_latents, n_rows, size)  # (latent, row, .)
            if group.time_invariant:  # summed over time, the halves' cross terms cancel
                flat = columns.reshape(n_latents, -1)
                bin_covariance += (flat @ flat.T)[None]
            else:
                bin_covariance += columns.transpose(1, 0, 2) @ columns.transpose(1, 2, 0)
            # each latent's posterior covariance over these coordinates
            latent_covariance = columns @ columns.transpose(0, 2, 1)
        else:
            solution = scipy.linalg.cho_solve((factor, True), right_side, check_finite=False)
        solution = solution.reshape(n_latents, n_rows, n_members)
        means[rows] = solution.transpose(1, 2, 0)
        if with_covariance:
            moments = n_members * latent_covariance + solution @ solution.transpose(0, 2, 1)
            if group.time_invariant:
                latent_moments[:, half, :n_rows, :n_rows] = moments
            else:
                latent_moments = parity.split(moments)

    per_sequence_constant = (group.observed.sum() * math.log(2 * math.pi)
                             + (group.observed * np.log(variance)).sum()
                             + prior.log_determinant + posterior_logdet)
    # sum over observed entries of (y - d)^2 / R, from per-unit sums of y and y^2
    offset = parameters.offset
    squared_residual = ((group.square_sum - 2 * offset * group.value_sum
                         + n_members * group.observed.sum(axis=0) * offset ** 2) / variance).sum()
    log_likelihood = -0.5 * (n_members * per_sequence_constant + squared_residual
                             - (projected * means).sum())
    if not with_covariance:
        return _GroupPosterior(means, None, None), log_likelihood
    return _GroupPosterior(means, bin_covariance, latent_moments), log_likelihood


def _posterior(parameters: GpfaParameters, groups: list[_PatternGroup], prior: _GpPrior,
               with_covariance: bool) -> tuple[list[_GroupPosterior], float]:
    results = [_group_posterior(parameters, prior, group, with_covariance) for group in groups]
    return [posterior for posterior, _ in results], float(sum(ll for _, ll in results))


def posterior_means(parameters: GpfaParameters, sequences: np.ndarray) -> tuple[np.ndarray, float]:
    """Latent posterior means (trials, bins, latents) of `sequences` (trials, bins, units; NaN =
    unobserved) and their data log-likelihood."""
    groups = _group_by_pattern(sequences)
    posteriors, log_likelihood = _posterior(
        parameters, groups, _GpPrior.of(parameters, sequences.shape[1]), with_covariance=False)
    means = np.empty((len(sequences), sequences.shape[1], parameters.latent_dim))
    for group, posterior in zip(groups, posteriors):
        in_time = (group.coordinates.T @ posterior.means.reshape(len(group.coordinates), -1))
        means[group.members] = in_time.reshape(posterior.means.shape).transpose(1, 0, 2)
    return means, log_likelihood


def extrapolate_latents(parameters: GpfaParameters, means: np.ndarray, n_forward: int) -> np.ndarray:
    """Posterior means of the latents in the `n_forward` bins after the observed ones, given the
    observed bins' posterior means (trials, bins, latents). Given x over the observed bins, the
    forward latents are independent of the data, so their mean is K_fo K_oo^-1 E[x_o | y]."""
    n_bins = means.shape[1]
    prior = gp_covariances(parameters.gamma, parameters.gp_noise_variance, n_bins + n_forward)
    weights = np.linalg.solve(prior[:, :n_bins, :n_bins], prior[:, :n_bins, n_bins:])
    return np.einsum("ibf,kbi->kfi", weights, means)


@dataclass(frozen=True)
class _UnitStatistics:
    """What the M-step of C, d and R needs from the data besides the posteriors; fixed during EM.

    Units observed in the same entries of every group share one Gram matrix of latent moments:
    `representatives` holds one unit per such pattern, `pattern_of_unit` each unit's pattern
    (without NaN there is one pattern)."""

    sum_squares: np.ndarray
    n_observed: np.ndarray
    variance_floor: np.ndarray
    representatives: np.ndarray
    pattern_of_unit: np.ndarray

    @classmethod
    def of(cls, sequences: np.ndarray, groups: list[_PatternGroup],
           min_var_frac: float) -> _UnitStatistics:
        observed = np.concatenate([group.observed for group in groups])  # (groups x bins, units)
        _, representatives, pattern_of_unit = np.unique(
            np.packbits(observed.T, axis=1), axis=0, return_index=True, return_inverse=True)
        return cls(sum_squares=np.nansum(sequences ** 2, axis=(0, 1)),
                   n_observed=(~np.isnan(sequences)).sum(axis=(0, 1)),
                   variance_floor=min_var_frac * np.nanvar(sequences, axis=(0, 1)),
                   representatives=representatives, pattern_of_unit=pattern_of_unit.reshape(-1))


def _update_observation_model(groups: list[_PatternGroup], posteriors: list[_GroupPosterior],
                              statistics: _UnitStatistics
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form M-step for C, d and R, one regression per unit over its observed bins.

    Works in each group's coordinates: sums over all bins of products of two sequences are the
    same in any orthonormal basis of time, and where sums over some bins are needed (a group that
    is not time-invariant) the coordinates are the bins."""
    n_latents = posteriors[0].means.shape[2]
    n_units = len(statistics.sum_squares)
    representatives = statistics.representatives
    gram = np.zeros((len(representatives), n_latents + 1, n_latents + 1))  # sum E[[x;1][x;1]']
    cross = np.zeros((n_latents + 1, n_units))  # per unit: sum y [x;1]
    for group, posterior in zip(groups, posteriors):
        n_bins, n_members, _ = posterior.means.shape
        constant = np.broadcast_to(group.constant[:, None, None], (n_bins, n_members, 1))
        augmented = np.concatenate([posterior.means, constant], axis=2)
        flat = augmented.reshape(-1, n_latents + 1)
        if group.time_invariant:  # the same units in every bin: moments summed over bins suffice
            moments, observed = (flat.T @ flat)[None], group.observed[:1, representatives]
        else:
            moments = augmented.transpose(0, 2, 1) @ augmented
            observed = group.observed[:, representatives]
        moments[:, :n_latents, :n_latents] += n_members * posterior.bin_covariance
        gram += (observed.T.astype(float) @ moments.reshape(len(moments), -1)).reshape(gram.shape)
        cross += (augmented.transpose(0, 2, 1) @ group.values).sum(axis=0)
    coefficients = np.empty((n_units, n_latents + 1))
    for pattern, pattern_gram in enumerate(gram):
        units = statistics.pattern_of_unit == pattern
        coefficients[units] = np.linalg.solve(pattern_gram, cross[:, units]).T
    variance = (statistics.sum_squares - np.einsum("ui,iu->u", coefficients, cross)) \
        / statistics.n_observed
    return (coefficients[:, :n_latents], coefficients[:, n_latents],
            np.maximum(variance, statistics.variance_floor))


@dataclass(frozen=True)
class _TimescaleTerms:
    """Per latent: the negative expected log prior of the latents and its first two derivatives
    with respect to log gamma."""

    value: np.ndarray
    slope: np.ndarray
    curvature: np.ndarray


@dataclass(frozen=True)
class _KernelTerms:
    """What the timescale objective needs of the prior covariance K at one log gamma, for any
    second moment A: per latent, f = (n log|K| + <W, A>) / 2,
    f' = (n tr(W K') - <W K' W, A>) / 2 and
    f'' = (n tr(W K'') - n tr(W K' W K') + <2 W K' W K' W - W K'' W, A>) / 2, with W = K^-1,
    ' = d / d log gamma and <X, A> = tr(X A). Every array has the latents first, so the terms of
    different latents can be mixed (`where`)."""

    log_gamma: np.ndarray  # (latents,)
    parity: _TimeParity
    log_determinant: np.ndarray  # (latents,) of K
    constants: np.ndarray  # (3, latents): the parts of f, f', f'' without A
    weights: np.ndarray  # (3, latents, 2, size, size): the matrices that A is contracted with

    def terms(self, second_moment: np.ndarray) -> _TimescaleTerms:
        """`second_moment`: the halves (latents, 2, size, size) of A."""
        value, slope, curvature = 0.5 * (
            self.constants + (self.weights * second_moment).sum(axis=(2, 3, 4)))
        return _TimescaleTerms(value, slope, curvature)

    def where(self, mask: np.ndarray, other: _KernelTerms) -> _KernelTerms:
        return _KernelTerms(np.where(mask, self.log_gamma, other.log_gamma), self.parity,
                            np.where(mask, self.log_determinant, other.log_determinant),
                            np.where(mask, self.constants, other.constants),
                            np.where(mask[:, None, None, None], self.weights, other.weights))


class _TimescaleObjective:
    """The M-step objective for the GP timescales of sequences of `n_bins` bins: per latent, the
    negative expected log prior f = (n log|K| + tr(K^-1 A)) / 2 as a function of log gamma, where
    A is the sum over the n sequences of E[x x'] (see `_KernelTerms`). K and its derivatives are
    stationary, so every trace splits into the two halves of `_TimeParity`, and of A only the
    blocks in those halves matter."""

    def __init__(self, n_bins: int, n_sequences: int, gp_noise_variance: float):
        self._parity = _time_parity(n_bins)
        self._n_sequences = n_sequences
        self._gp_noise_variance = gp_noise_variance
        self._lag_squared = np.arange(n_bins) ** 2.0

    def kernel_terms(self, log_gamma: np.ndarray) -> _KernelTerms:
        decay = -0.5 * np.exp(log_gamma)[:, None] * self._lag_squared
        smooth = (1.0 - self._gp_noise_variance) * np.exp(decay)
        first = decay * smooth
        second = first * (1.0 + decay)
        kernel = smooth.copy()
        kernel[:, 0] += self._gp_noise_variance
        covariance, first, second = self._parity.halves(np.stack([kernel, first, second]))
        precision, log_determinant = _spd_inverse_and_logdet(covariance + self._parity.padding)
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
        return _KernelTerms(log_gamma, self._parity, log_determinant.sum(axis=1), constants,
                            weights)


# Newton on log gamma: the largest step (one e-fold of gamma), the step below which a latent has
# converged (it then stays at the last point evaluated: the objective there is within about
# curvature x step^2 of the optimum, nothing next to the likelihood), the relative rounding error
# of the objective (near the optimum a step changes it by less, and must not count as an
# increase), and the limits on iterations and step halvings.
_MAX_LOG_GAMMA_STEP = 1.0
_LOG_GAMMA_TOLERANCE = 1e-4
_VALUE_ROUNDING = 1e-12
_MAX_NEWTON_STEPS = 50
_MAX_HALVINGS = 30


def _update_timescales(objective: _TimescaleObjective, kernel: _KernelTerms,
                       posteriors: list[_GroupPosterior]) -> _KernelTerms:
    """M-step for the GP precisions gamma, from the current ones (`kernel`, which also holds
    what the objective needs of them): maximise each latent's expected log prior over log gamma.
    The latents' problems are independent one-dimensional ones, so all take damped Newton steps
    at once (Yu 2009 uses a gradient method); a latent's step is halved until its objective does
    not increase, so EM's likelihood never decreases. Returns the kernel terms at the new gamma,
    which the next M-step starts from."""
    second_moment = sum(posterior.latent_moments for posterior in posteriors)
    current = kernel.terms(second_moment)
    for _ in range(_MAX_NEWTON_STEPS):
        # Where the objective is not convex, a full step downhill instead of Newton's.
        downhill = -np.sign(current.slope) * _MAX_LOG_GAMMA_STEP
        step = np.divide(-current.slope, current.curvature, out=downhill,
                         where=current.curvature > 0)
        step = np.clip(step, -_MAX_LOG_GAMMA_STEP, _MAX_LOG_GAMMA_STEP)
        step[np.abs(step) < _LOG_GAMMA_TOLERANCE] = 0.0
        if not step.any():
            break
        for _ in range(_MAX_HALVINGS):
            trial_kernel = objective.kernel_terms(kernel.log_gamma + step)
            trial = trial_kernel.terms(second_moment)
            worse = trial.value > current.value + _VALUE_ROUNDING * np.abs(current.value)
            if not worse.any():
                break
            step = np.where(worse, step / 2, step)
        better = ~worse
        kernel = trial_kernel.where(better, kernel)
        current = kernel.terms(second_moment)
    return kernel


def fit_gpfa(sequences: np.ndarray, initial: GpfaParameters, n_iter: int, tolerance: float,
             min_var_frac: float) -> GpfaFit:
    """EM for GPFA on `sequences` (trials, bins, units; all of equal length; NaN = unobserved).

    Stops after `n_iter` M-steps, or earlier once an iteration gains less than `tolerance` times
    the log-likelihood gained since the start. Private variances stay at or above `min_var_frac`
    times each unit's variance (this prevents Heywood cases with zero private variance)."""
    groups = _group_by_pattern(sequences)
    statistics = _UnitStatistics.of(sequences, groups, min_var_frac)
    timescale_objective = _TimescaleObjective(sequences.shape[1], len(sequences),
                                              initial.gp_noise_variance)
    kernel = timescale_objective.kernel_terms(np.log(initial.gamma))

    parameters = initial
    posteriors, log_likelihood = _posterior(parameters, groups, _GpPrior.from_kernel(kernel),
                                            with_covariance=True)
    log_likelihoods = [log_likelihood]
    for _ in range(n_iter):
        # (The observation model is updated last so that the data are still in cache for the
        # E-step that follows.)
        kernel = _update_timescales(timescale_objective, kernel, posteriors)
        loading, offset, private_variance = _update_observation_model(
            groups, posteriors, statistics)
        parameters = GpfaParameters(loading, offset, private_variance, np.exp(kernel.log_gamma),
                                    parameters.gp_noise_variance)
        posteriors, log_likelihood = _posterior(parameters, groups, _GpPrior.from_kernel(kernel),
                                                with_covariance=True)
        log_likelihoods.append(log_likelihood)
        gain = log_likelihoods[-1] - log_likelihoods[-2]
        if gain < tolerance * (log_likelihoods[-2] - log_likelihoods[0]):
            break
    return GpfaFit(parameters, np.array(log_likelihoods))


def cut_segments(sequences: np.ndarray, segment_bins: int) -> np.ndarray:
    """Cut (trials, bins, units) into segments of `segment_bins` bins that cover every bin, evenly
    overlapping where the length is not a multiple; sequences no longer than that stay whole."""
    n_bins = sequences.shape[1]
    if n_bins <= segment_bins:
        return sequences
    starts = np.round(np.linspace(0, n_bins - segment_bins, math.ceil(n_bins / segment_bins)))
    return np.concatenate([sequences[:, start:start + segment_bins] for start in starts.astype(int)])


@register_model("gpfa")
class Gpfa:
    """GPFA latents from square-rooted held-in counts, rates of all units by a Poisson GLM.

    Hyperparameters: `latent_dim` latents; at most `n_iter` EM iterations, stopping early by
    `tolerance` (see `fit_gpfa`); private-variance floor `min_var_frac`; initial GP timescale
    `timescale_ms`; fixed GP noise variance `gp_noise_variance`; training segment length
    `segment_bins`; L2 penalty `readout_alpha` of the Poisson readout; `seed` of the randomised SVD
    in the factor-analysis initialisation (the only random step).

    After `fit`: `parameters_` (GpfaParameters over the held-in units in `fitted_units_`),
    `log_likelihoods_` (see `GpfaFit`), `timescales_ms_`, `readout_` (latents to all units) and
    `forward_readout_` (extrapolated latents to all units in the forward window).
    """

    def __init__(self, latent_dim: int = 8, n_iter: int = 500, tolerance: float = 1e-8,
                 min_var_frac: float = 0.01, timescale_ms: float = 100.0,
                 gp_noise_variance: float = 1e-3, segment_bins: int = 40,
                 readout_alpha: float = 0.01, seed: int = 0) -> None:
        check_range("gpfa", "latent_dim", latent_dim, 1, integer=True)
        check_range("gpfa", "n_iter", n_iter, 0, integer=True)
        check_range("gpfa", "tolerance", tolerance, 0)
        check_range("gpfa", "min_var_frac", min_var_frac, 0, 1, high_inclusive=False)
        check_range("gpfa", "timescale_ms", timescale_ms, 0, low_inclusive=False)
        check_range("gpfa", "gp_noise_variance", gp_noise_variance, 0, 1, low_inclusive=False,
                     high_inclusive=False)
        check_range("gpfa", "segment_bins", segment_bins, 2, integer=True)
        check_range("gpfa", "readout_alpha", readout_alpha, 0)
        check_range("gpfa", "seed", seed, 0, 2 ** 32 - 1, integer=True)
        self.latent_dim = latent_dim
        self.n_iter = n_iter
        self.tolerance = tolerance
        self.min_var_frac = min_var_frac
        self.timescale_ms = timescale_ms
        self.gp_noise_variance = gp_noise_variance
        self.segment_bins = segment_bins
        self.readout_alpha = readout_alpha
        self.seed = seed

    def fit(self, tensors: Tensors) -> Gpfa:
        """Learn GPFA on the training trials' held-in spikes, then the readout from their latents
        to the training trials' held-in and held-out spikes."""
        sequences = np.sqrt(tensors.train_spikes_heldin.astype(np.float64))
        # A unit that never varies in training says nothing about the latents and would get zero
        # private variance; GPFA leaves it out, the readout still predicts it. (fmax and fmin
        # skip NaN, so a unit that is never observed counts as not varying, without warnings.)
        highest, lowest = np.fmax.reduce(sequences, axis=(0, 1)), np.fmin.reduce(sequences, axis=(0, 1))
        self.fitted_units_ = highest > lowest
        if self.fitted_units_.sum() < self.latent_dim:
            raise ModelError(
                f"gpfa: latent_dim={self.latent_dim} needs at least that many held-in units that "
                f"vary over the training trials of {tensors.dataset!r}; there are "
                f"{int(self.fitted_units_.sum())}")
        sequences = sequences[:, :, self.fitted_units_]
        segments = cut_segments(sequences, self.segment_bins)
        initial = factor_analysis_init(segments, self.latent_dim, self.timescale_ms / tensors.bin_ms,
                                       self.gp_noise_variance, self.seed)
        result = fit_gpfa(segments, initial, self.n_iter, self.tolerance, self.min_var_frac)
        self.parameters_ = result.parameters
        self.log_likelihoods_ = result.log_likelihoods
        self.timescales_ms_ = result.parameters.timescales_bins * tensors.bin_ms
        latents, _ = posterior_means(self.parameters_, sequences)
        self.readout_ = self._fit_readout(
            latents, tensors.train_spikes_heldin, tensors.train_spikes_heldout)
        # Extrapolated latents shrink towards the prior mean, so the readout fitted in the window
        # would predict rates that are too low there; a second one learns the forward window
        # from the training trials' forward spikes.
        self.forward_readout_ = self._fit_readout(
            extrapolate_latents(self.parameters_, latents, tensors.n_forward),
            tensors.train_spikes_heldin_forward, tensors.train_spikes_heldout_forward
        ) if tensors.n_forward else None
        return self

    def _fit_readout(self, latents: np.ndarray, heldin: np.ndarray,
                     heldout: np.ndarray) -> PoissonReadout:
        counts = np.concatenate([heldin, heldout], axis=2)
        return PoissonReadout(alpha=self.readout_alpha).fit(
            latents.reshape(-1, self.latent_dim), counts.reshape(-1, counts.shape[2]))

    def predict(self, tensors: Tensors) -> Rates:
        """Rates of all units for training and evaluation trials, and for the forward window
        after the evaluation trials (GP extrapolation of their latents)."""
        if not hasattr(self, "parameters_"):
            raise ModelError("gpfa: predict called before fit")
        if tensors.n_heldin != len(self.fitted_units_):
            raise ModelError(f"gpfa: fitted on {len(self.fitted_units_)} held-in units, "
                             f"{tensors.dataset!r} has {tensors.n_heldin}")
        # Training and evaluation trials go through one posterior: trials with the same pattern of
        # observed entries share its factorisation.
        spikes = np.concatenate([tensors.train_spikes_heldin, tensors.eval_spikes_heldin])
        latents, _ = posterior_means(
            self.parameters_, np.sqrt(spikes[:, :, self.fitted_units_].astype(np.float64)))
        train_latents, eval_latents = latents[:tensors.n_train], latents[tensors.n_train:]
        if not tensors.n_forward:
            forward_rates = np.empty((tensors.n_eval, 0, tensors.n_heldin + tensors.n_heldout))
        elif self.forward_readout_ is None:
            raise ModelError(f"gpfa: fitted without a forward window, {tensors.dataset!r} has "
                             f"{tensors.n_forward} forward bins")
        else:
            forward_rates = _rates(self.forward_readout_, extrapolate_latents(
                self.parameters_, eval_latents, tensors.n_forward))
        return Rates.from_all_units(
            _rates(self.readout_, train_latents), _rates(self.readout_, eval_latents), forward_rates,
            n_heldin=tensors.n_heldin,
            latents={"train_latents": train_latents.astype(np.float32),
                     "eval_latents": eval_latents.astype(np.float32)})


def _rates(readout: PoissonReadout, latents: np.ndarray) -> np.ndarray:
    n_trials, n_bins, n_latents = latents.shape
    return readout.predict(latents.reshape(-1, n_latents)).reshape(n_trials, n_bins, -1)
