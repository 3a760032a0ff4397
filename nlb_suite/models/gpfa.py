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
once per pattern (in two halves, see `_group_posterior`) and gets the posterior means of all those
sequences from one solve. Without NaN there is a single pattern. Training sequences longer than
`segment_bins` are cut into overlapping segments of that length (as Yu 2009's code does) because
the cost grows as (q T)^3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg
from sklearn.decomposition import FactorAnalysis

from ..tensors import Tensors
from .base import ModelError, Rates, check_range, register_model
from .readout import PoissonReadout, split_rates


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
    """Sequences that share one pattern of observed entries, hence one posterior covariance."""

    observed: np.ndarray  # (bins, units) bool
    members: np.ndarray  # indices into the sequence axis
    values: np.ndarray  # (members, bins, units), 0 where unobserved

    @cached_property
    def value_sum(self) -> np.ndarray:
        return self.values.sum(axis=(0, 1))

    @cached_property
    def square_sum(self) -> np.ndarray:
        return (self.values ** 2).sum(axis=(0, 1))

    @cached_property
    def time_invariant(self) -> bool:
        """Every unit is observed in all bins or in none (always so without NaN)."""
        return bool((self.observed == self.observed[0]).all())


def _group_by_pattern(sequences: np.ndarray) -> list[_PatternGroup]:
    observed = ~np.isnan(sequences)
    # Bit-packed rows make finding the distinct patterns several times faster.
    packed = np.packbits(observed.reshape(len(sequences), -1), axis=1)
    _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    values = np.where(observed, sequences, 0.0)
    return [_PatternGroup(observed[sequence], np.flatnonzero(inverse == index), values[inverse == index])
            for index, sequence in enumerate(first)]


def _parity_bases(n_bins: int) -> list[np.ndarray]:
    """Orthonormal bases (rows) of the time-symmetric and time-antisymmetric sequences."""
    half = n_bins // 2
    first, mirror = np.arange(half), n_bins - 1 - np.arange(half)
    symmetric, antisymmetric = np.zeros((n_bins - half, n_bins)), np.zeros((half, n_bins))
    symmetric[first, first] = symmetric[first, mirror] = math.sqrt(0.5)
    antisymmetric[first, first], antisymmetric[first, mirror] = math.sqrt(0.5), -math.sqrt(0.5)
    if n_bins % 2:
        symmetric[half, half] = 1.0
    return [basis for basis in (symmetric, antisymmetric) if len(basis)]


@dataclass(frozen=True)
class _GroupPosterior:
    means: np.ndarray  # (members, latents, bins)
    # For the M-step, per sequence: sum over the bins in which a unit is observed of the latents'
    # posterior covariance in that bin, (units, latents, latents); and each latent's posterior
    # covariance over time, (latents, bins, bins).
    unit_covariance: np.ndarray | None
    latent_covariance: np.ndarray | None


def _group_posterior(parameters: GpfaParameters, prior_precision: np.ndarray,
                     prior_logdet: float, group: _PatternGroup,
                     with_covariance: bool) -> tuple[_GroupPosterior, float]:
    """Posterior of the latents of one group and the group's data log-likelihood.

    The posterior precision is K^-1 + (C' R^-1 C in each bin), (latent, bin)-ordered. The
    log-likelihood uses the matrix determinant lemma and Woodbury's identity, so that only this
    (q T)-sized matrix is factorised, never the (units T)-sized data covariance.

    When the observed units are the same in every bin, the precision commutes with time reversal
    (the prior is stationary), so in a basis of symmetric and antisymmetric sequences it splits
    into two independent halves: factorising those costs a quarter of the whole."""
    loading, variance = parameters.loading, parameters.private_variance
    n_latents, n_bins = parameters.latent_dim, group.observed.shape[0]
    n_members = len(group.members)
    weight = group.observed / variance  # R^-1 on observed entries, 0 elsewhere
    if group.time_invariant:
        bases = _parity_bases(n_bins)
        observation_precision = ((loading.T * weight[0]) @ loading)[None]
    else:
        bases = [np.eye(n_bins)]
        observation_precision = (loading.T * weight[:, None, :]) @ loading

    # C' R^-1 (y - d) per sequence and bin, (members, bins, latents), with unobserved entries out
    weighted_loading = weight[:, :, None] * loading
    projected = (group.values.transpose(1, 0, 2) @ weighted_loading).transpose(1, 0, 2) \
        - (weight * parameters.offset) @ loading
    means = np.zeros((n_members, n_latents, n_bins))
    posterior_logdet = 0.0
    bin_covariance = []  # per basis: (basis size, latents, latents)
    latent_covariance = np.zeros((n_latents, n_bins, n_bins))
    latent_index = np.arange(n_latents)
    for basis in bases:
        size = n_latents * len(basis)
        basis_index = np.arange(len(basis))
        precision = np.zeros((n_latents, len(basis), n_latents, len(basis)))
        precision[latent_index, :, latent_index, :] = basis @ prior_precision @ basis.T
        precision[:, basis_index, :, basis_index] += observation_precision
        factor = scipy.linalg.cholesky(precision.reshape(size, size), lower=True,
                                       overwrite_a=True, check_finite=False)
        posterior_logdet += 2.0 * np.log(np.diag(factor)).sum()
        right_side = (basis @ projected).transpose(0, 2, 1).reshape(n_members, size)
        solution = scipy.linalg.cho_solve((factor, True), right_side.T, check_finite=False)
        means += solution.T.reshape(n_members, n_latents, len(basis)) @ basis
        if with_covariance:
            # The M-step needs only two sets of blocks of the covariance L^-T L^-1, so they are
            # formed from the columns of L^-1 instead of inverting the whole precision.
            factor_inverse, info = scipy.linalg.lapack.dtrtri(factor, lower=1)
            if info != 0:
                raise np.linalg.LinAlgError(f"GPFA posterior precision is singular (info {info})")
            columns = factor_inverse.reshape(size, n_latents, len(basis))
            bin_covariance.append(columns.transpose(2, 1, 0) @ columns.transpose(2, 0, 1))
            within_latents = columns.transpose(1, 2, 0) @ columns.transpose(1, 0, 2)
            latent_covariance += basis.T @ within_latents @ basis

    if not with_covariance:
        unit_covariance = latent_covariance = None
    elif group.time_invariant:
        # Summed over time, the cross terms between the two halves cancel.
        total = sum(blocks.sum(axis=0) for blocks in bin_covariance)
        unit_covariance = np.multiply.outer(group.observed[0], total)
    else:
        unit_covariance = np.einsum("tn,tij->nij", group.observed, bin_covariance[0])

    per_sequence_constant = (group.observed.sum() * math.log(2 * math.pi)
                             + (group.observed * np.log(variance)).sum()
                             + prior_logdet + posterior_logdet)
    # sum over observed entries of (y - d)^2 / R, from per-unit sums of y and y^2
    offset = parameters.offset
    squared_residual = ((group.square_sum - 2 * offset * group.value_sum
                         + n_members * group.observed.sum(axis=0) * offset ** 2) / variance).sum()
    log_likelihood = -0.5 * (n_members * per_sequence_constant + squared_residual
                             - (projected.transpose(0, 2, 1) * means).sum())
    return _GroupPosterior(means, unit_covariance, latent_covariance), log_likelihood


def _posterior(parameters: GpfaParameters, groups: list[_PatternGroup],
               with_covariance: bool) -> tuple[list[_GroupPosterior], float]:
    n_bins = groups[0].observed.shape[0]
    prior = gp_covariances(parameters.gamma, parameters.gp_noise_variance, n_bins)
    prior_logdet = np.linalg.slogdet(prior)[1].sum()
    prior_precision = np.linalg.inv(prior)
    results = [_group_posterior(parameters, prior_precision, prior_logdet, group, with_covariance)
               for group in groups]
    return [posterior for posterior, _ in results], float(sum(ll for _, ll in results))


def posterior_means(parameters: GpfaParameters, sequences: np.ndarray) -> tuple[np.ndarray, float]:
    """Latent posterior means (trials, bins, latents) of `sequences` (trials, bins, units; NaN =
    unobserved) and their data log-likelihood."""
    groups = _group_by_pattern(sequences)
    posteriors, log_likelihood = _posterior(parameters, groups, with_covariance=False)
    means = np.empty((len(sequences), sequences.shape[1], parameters.latent_dim))
    for group, posterior in zip(groups, posteriors):
        means[group.members] = posterior.means.transpose(0, 2, 1)
    return means, log_likelihood


def extrapolate_latents(parameters: GpfaParameters, means: np.ndarray, n_forward: int) -> np.ndarray:
    """Posterior means of the latents in the `n_forward` bins after the observed ones, given the
    observed bins' posterior means (trials, bins, latents). Given x over the observed bins, the
    forward latents are independent of the data, so their mean is K_fo K_oo^-1 E[x_o | y]."""
    n_bins = means.shape[1]
    prior = gp_covariances(parameters.gamma, parameters.gp_noise_variance, n_bins + n_forward)
    weights = np.linalg.solve(prior[:, :n_bins, :n_bins], prior[:, :n_bins, n_bins:])
    return np.einsum("ibf,kbi->kfi", weights, means)


def _update_observation_model(groups: list[_PatternGroup], posteriors: list[_GroupPosterior],
                              sum_squares: np.ndarray, n_observed: np.ndarray,
                              variance_floor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form M-step for C, d and R, one regression per unit over its observed bins."""
    n_latents = posteriors[0].means.shape[1]
    n_units = len(sum_squares)
    gram = np.zeros((n_units, n_latents + 1, n_latents + 1))  # per unit: sum E[[x;1][x;1]']
    cross = np.zeros((n_units, n_latents + 1))  # per unit: sum y [x;1]
    for group, posterior in zip(groups, posteriors):
        n_members, _, n_bins = posterior.means.shape
        augmented = np.concatenate(
            [posterior.means.transpose(0, 2, 1), np.ones((n_members, n_bins, 1))], axis=2)
        moments = augmented.transpose(1, 2, 0) @ augmented.transpose(1, 0, 2)
        gram += (group.observed.T.astype(float) @ moments.reshape(n_bins, -1)).reshape(gram.shape)
        gram[:, :n_latents, :n_latents] += n_members * posterior.unit_covariance
        cross += group.values.reshape(-1, n_units).T @ augmented.reshape(-1, n_latents + 1)
    coefficients = np.linalg.solve(gram, cross[:, :, None])[:, :, 0]
    variance = (sum_squares - (coefficients * cross).sum(axis=1)) / n_observed
    return coefficients[:, :n_latents], coefficients[:, n_latents], np.maximum(variance, variance_floor)


@dataclass(frozen=True)
class _TimescaleTerms:
    """Per latent: the negative expected log prior of the latents and its first two derivatives
    with respect to log gamma."""

    value: np.ndarray
    slope: np.ndarray
    curvature: np.ndarray

    def where(self, mask: np.ndarray, other: _TimescaleTerms) -> _TimescaleTerms:
        return _TimescaleTerms(*(np.where(mask, mine, theirs) for mine, theirs in
                                 ((self.value, other.value), (self.slope, other.slope),
                                  (self.curvature, other.curvature))))


def _timescale_terms(log_gamma: np.ndarray, gp_noise_variance: float, second_moment: np.ndarray,
                     n_sequences: int) -> _TimescaleTerms:
    """f = (n log|K| + tr(K^-1 A)) / 2 per latent, A = sum over sequences of E[x x'], and its
    derivatives f' = tr(G K') / 2, f'' = (tr(G K'') - n tr(W K' W K') + 2 tr(W K' B K')) / 2
    with W = K^-1, B = W A W, G = n W - B, and ' = d / d log gamma."""
    n_bins = second_moment.shape[1]
    lag_squared = np.subtract.outer(np.arange(n_bins), np.arange(n_bins)) ** 2.0
    decay = -0.5 * np.exp(log_gamma)[:, None, None] * lag_squared
    smooth = (1.0 - gp_noise_variance) * np.exp(decay)
    first = decay * smooth
    second = first * (1.0 + decay)
    covariance = smooth + gp_noise_variance * np.eye(n_bins)
    precision = np.linalg.inv(covariance)
    weighted = precision @ second_moment @ precision
    gradient = n_sequences * precision - weighted
    precision_first, weighted_first = precision @ first, weighted @ first
    return _TimescaleTerms(
        value=0.5 * (n_sequences * np.linalg.slogdet(covariance)[1]
                     + (precision * second_moment).sum(axis=(1, 2))),
        slope=0.5 * (gradient * first).sum(axis=(1, 2)),
        curvature=0.5 * ((gradient * second).sum(axis=(1, 2))
                         - n_sequences * np.einsum("lij,lji->l", precision_first, precision_first)
                         + 2 * np.einsum("lij,lji->l", precision_first, weighted_first)),
    )


# Newton on log gamma: the largest step (one e-fold of gamma), the step below which a latent has
# converged, the relative rounding error of the objective (near the optimum a step changes it
# by less, and must not count as an increase), and the limits on iterations and step halvings.
_MAX_LOG_GAMMA_STEP = 1.0
_LOG_GAMMA_TOLERANCE = 1e-5
_VALUE_ROUNDING = 1e-12
_MAX_NEWTON_STEPS = 50
_MAX_HALVINGS = 30


def _update_timescales(gamma: np.ndarray, gp_noise_variance: float, groups: list[_PatternGroup],
                       posteriors: list[_GroupPosterior]) -> np.ndarray:
    """M-step for the GP precisions gamma: maximise each latent's expected log prior over
    log gamma. The latents' problems are independent one-dimensional ones, so all take damped
    Newton steps at once (Yu 2009 uses a gradient method); a latent's step is halved until its
    objective does not increase, so EM's likelihood still never decreases."""
    n_sequences = sum(len(group.members) for group in groups)
    second_moment = sum(len(group.members) * posterior.latent_covariance
                        + posterior.means.transpose(1, 2, 0) @ posterior.means.transpose(1, 0, 2)
                        for group, posterior in zip(groups, posteriors))
    log_gamma = np.log(gamma)
    current = _timescale_terms(log_gamma, gp_noise_variance, second_moment, n_sequences)
    for _ in range(_MAX_NEWTON_STEPS):
        # Where the objective is not convex, a full step downhill instead of Newton's.
        downhill = -np.sign(current.slope) * _MAX_LOG_GAMMA_STEP
        step = np.divide(-current.slope, current.curvature, out=downhill, where=current.curvature > 0)
        step = np.clip(step, -_MAX_LOG_GAMMA_STEP, _MAX_LOG_GAMMA_STEP)
        if np.abs(step).max() < _LOG_GAMMA_TOLERANCE:
            return np.exp(log_gamma + step)
        for _ in range(_MAX_HALVINGS):
            trial = _timescale_terms(log_gamma + step, gp_noise_variance, second_moment, n_sequences)
            worse = trial.value > current.value + _VALUE_ROUNDING * np.abs(current.value)
            if not worse.any():
                break
            step = np.where(worse, step / 2, step)
        better = ~worse
        log_gamma = np.where(better, log_gamma + step, log_gamma)
        current = trial.where(better, current)
    return np.exp(log_gamma)


def fit_gpfa(sequences: np.ndarray, initial: GpfaParameters, n_iter: int, tolerance: float,
             min_var_frac: float) -> GpfaFit:
    """EM for GPFA on `sequences` (trials, bins, units; all of equal length; NaN = unobserved).

    Stops after `n_iter` M-steps, or earlier once an iteration gains less than `tolerance` times
    the log-likelihood gained since the start. Private variances stay at or above `min_var_frac`
    times each unit's variance (this prevents Heywood cases with zero private variance)."""
    groups = _group_by_pattern(sequences)
    observed = ~np.isnan(sequences)
    n_observed = observed.sum(axis=(0, 1))
    sum_squares = np.nansum(sequences ** 2, axis=(0, 1))
    variance_floor = min_var_frac * np.nanvar(sequences, axis=(0, 1))

    parameters = initial
    posteriors, log_likelihood = _posterior(parameters, groups, with_covariance=True)
    log_likelihoods = [log_likelihood]
    for _ in range(n_iter):
        loading, offset, private_variance = _update_observation_model(
            groups, posteriors, sum_squares, n_observed, variance_floor)
        gamma = _update_timescales(parameters.gamma, parameters.gp_noise_variance, groups, posteriors)
        parameters = GpfaParameters(loading, offset, private_variance, gamma,
                                    parameters.gp_noise_variance)
        posteriors, log_likelihood = _posterior(parameters, groups, with_covariance=True)
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
        return split_rates(
            _rates(self.readout_, train_latents), _rates(self.readout_, eval_latents), forward_rates,
            n_heldin=tensors.n_heldin,
            latents={"train_latents": train_latents.astype(np.float32),
                     "eval_latents": eval_latents.astype(np.float32)})


def _rates(readout: PoissonReadout, latents: np.ndarray) -> np.ndarray:
    n_trials, n_bins, n_latents = latents.shape
    return readout.predict(latents.reshape(-1, n_latents)).reshape(n_trials, n_bins, -1)
