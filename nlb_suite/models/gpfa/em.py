"""GPFA's EM (Yu et al. 2009), batched over trials.

Model, per trial of T bins: latents x_i(t), i = 1..q, are independent Gaussian processes with a
squared-exponential covariance (1 - eps) exp(-gamma_i (t - s)^2 / 2) + eps [t == s], where
gamma_i = 1 / timescale_i^2 in bins and eps is a small fixed GP noise variance; the observations
are y(t) = C x(t) + d + noise, noise ~ N(0, diag(R)). EM learns C, d, R in closed form and each
gamma_i by Newton steps on the expected complete-data log-likelihood, starting from factor
analysis.

Speed: all sequences have the same length, so every sequence with the same pattern of observed
entries shares one posterior covariance (a (q T) x (q T) matrix). Each EM iteration factorises
it once per pattern and gets the posterior means of all those sequences from matrix products.
Without NaN there is a single pattern, and it is time-invariant: then the GP prior's symmetry
under time reversal splits the covariance into two halves (`linalg.TimeParity`), each a quarter
of the work, and E-step and M-steps work in that basis throughout. The timescales' M-step takes
Newton steps whose prior-only terms are reused by the next E-step. `dense.py` computes the same
posterior by plain Gaussian conditioning, as the tests' reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg

from ..linear import factor_analysis, group_by_pattern
from .linalg import (
    KernelTerms,
    TimeParity,
    TimescaleObjective,
    lower_triangular_inverse,
    se_kernel_by_lag,
    spd_inverse_and_logdet,
    time_parity,
)


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
                         gp_noise_variance: float) -> GpfaParameters:
    """Starting point of EM: factor analysis of all bins of `sequences` (trials, bins, units), the
    same timescale for every latent. NaN entries are replaced by the unit's mean for this step."""
    samples = sequences.reshape(-1, sequences.shape[-1])
    unit_mean = np.nanmean(samples, axis=0)
    centred = np.where(np.isnan(samples), 0.0, samples - unit_mean)
    factors = factor_analysis(centred.T @ centred / len(centred), len(centred), latent_dim)
    return GpfaParameters(
        loading=factors.loadings, offset=unit_mean, private_variance=factors.noise,
        gamma=np.full(latent_dim, timescale_bins ** -2.0), gp_noise_variance=gp_noise_variance,
    )


@dataclass(frozen=True)
class _PatternGroup:
    """Sequences that share one pattern of observed entries, hence one posterior covariance.

    Their values are kept in the group's coordinates over time: when the group is time-invariant
    (every unit observed in all bins or in none: always so without NaN), the bases of the two
    halves of `TimeParity`, symmetric first, in which its posterior precision is block-diagonal;
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
    values = np.where(observed, sequences, 0.0)
    groups = []
    for pattern in group_by_pattern(observed):
        in_time = values[pattern.members].transpose(1, 0, 2)  # (bins, members, units)
        time_invariant = bool((pattern.observed == pattern.observed[0]).all())
        coordinates = time_parity(n_bins).basis if time_invariant else np.eye(n_bins)
        groups.append(_PatternGroup(
            pattern.observed, pattern.members, time_invariant, coordinates,
            values=(coordinates @ in_time.reshape(n_bins, -1)).reshape(in_time.shape),
            value_sum=in_time.sum(axis=(0, 1)), square_sum=(in_time ** 2).sum(axis=(0, 1))))
    return groups


@dataclass(frozen=True)
class _GpPrior:
    """The latents' GP prior over sequences of one length, as precisions."""

    parity: TimeParity
    precision_halves: np.ndarray  # (latents, 2, size, size)
    log_determinant: float  # of the prior covariance of all latents over all bins

    @classmethod
    def of(cls, parameters: GpfaParameters, n_bins: int) -> _GpPrior:
        parity = time_parity(n_bins)
        covariance = parity.halves(
            se_kernel_by_lag(parameters.gamma, parameters.gp_noise_variance, n_bins), padding=1.0)
        precision, log_determinant = spd_inverse_and_logdet(covariance)
        return cls(parity, precision, float(log_determinant.sum()))

    @classmethod
    def from_kernel(cls, kernel: KernelTerms) -> _GpPrior:
        """The prior at the timescales of `kernel`, which has computed it already."""
        return cls(kernel.parity, kernel.weights[0], float(kernel.log_determinant.sum()))

    @cached_property
    def precision(self) -> np.ndarray:
        """(latents, bins, bins) in the time basis."""
        bases = self.parity.bases
        return (bases.swapaxes(-1, -2) @ self.precision_halves @ bases).sum(axis=1)


@dataclass(frozen=True)
class _GroupPosterior:
    means: np.ndarray  # (bins, members, latents), in the group's coordinates
    # For the M-step: per sequence, the latents' posterior covariance in each bin, (bins, latents,
    # latents), or its sum over bins, (1, latents, latents), when the group is time-invariant
    # (then that sum is all the M-step needs); and summed over the group's sequences, each
    # latent's second moment over time E[x x'] in the halves of `TimeParity`, (latents, 2, size,
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
    as the prior does, so it splits into two independent halves (see `TimeParity`)."""
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
            inverse_factor = lower_triangular_inverse(factor)
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


def _update_timescales(objective: TimescaleObjective, kernel: KernelTerms,
                       posteriors: list[_GroupPosterior]) -> KernelTerms:
    """M-step for the GP precisions gamma, from the current ones (`kernel`, which also holds
    what the objective needs of them): maximise each latent's expected log prior over log gamma.
    The latents' problems are independent one-dimensional ones, so all take damped Newton steps
    at once (Yu 2009 uses a gradient method); a latent's step is halved until its objective does
    not increase, so EM's likelihood never decreases. Returns the kernel terms at the new gamma,
    which the next M-step starts from."""
    moments = [posterior.latent_moments for posterior in posteriors if posterior.latent_moments is not None]
    assert len(moments) == len(posteriors), "the M-step needs the posteriors' moments"
    second_moment: np.ndarray = np.sum(moments, axis=0)
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
    timescale_objective = TimescaleObjective(sequences.shape[1], len(sequences),
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
