"""Kalman baseline: a linear-Gaussian state-space model (LDS) fitted by EM, plus the filter and
Rauch-Tung-Striebel smoother that it and the Wu et al. (2006) velocity decoder share.

Model, per trial:  x_0 ~ N(mu0, V0),  x_{t+1} = A x_t + w,  w ~ N(0, Q),
                   y_t = C x_t + d + v,  v ~ N(0, R),
with y the square-root (or raw) held-in counts. EM (Shumway & Stoffer 1982; Ghahramani & Hinton
1996) runs over all training trials at once. Trials are grouped by their pattern of missing
(NaN) observations: within a group every filter and smoother covariance is the same, so each is
computed once and only the means are propagated per trial, as batched matrix products. A NaN
entry of y removes that observation dimension from the update of that bin of that trial; it is
never read as zero.

Rates: a `LatentReadout` from the smoothed latent means to every held-in and held-out unit.
Forward window: the dynamics run on without input from each trial's last smoothed state,
x_{T-1+j} = A^j x_{T-1}, through the readout's forward part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from ..core.arrays import LatentKind, Rates, Tensors, latent_key
from .base import Estimator, Hyperparameters, ModelError, not_fitted, param
from .linear import factor_analysis, group_by_pattern
from .readout import LatentReadout

_LOG_2PI = np.log(2 * np.pi)
# R is floored at this fraction of the mean observation variance: a unit that never fires would
# otherwise get zero noise variance and an infinitely confident, singular update.
_MIN_OBSERVATION_VARIANCE_FRACTION = 1e-3


@dataclass
class LinearGaussianSSM:
    """Parameters of x_{t+1} = A x_t + w (Q), y_t = C x_t + d + v (R), x_0 ~ N(mu0, V0)."""

    transition: np.ndarray  # A, (latents, latents)
    transition_cov: np.ndarray  # Q, (latents, latents)
    observation: np.ndarray  # C, (outputs, latents)
    observation_offset: np.ndarray  # d, (outputs,)
    observation_cov: np.ndarray  # R, (outputs, outputs)
    initial_mean: np.ndarray  # mu0, (latents,)
    initial_cov: np.ndarray  # V0, (latents, latents)

    @property
    def latent_dim(self) -> int:
        return self.transition.shape[0]


@dataclass
class FilteredStates:
    """Kalman filter output for (trials, bins, outputs) observations. Covariances are stored once
    per missing-data pattern: trial n uses `covs[trial_group[n]]`."""

    means: np.ndarray  # E[x_t | y_0..t], (trials, bins, latents)
    covs: np.ndarray  # Cov[x_t | y_0..t], (patterns, bins, latents, latents)
    predicted_covs: np.ndarray  # Cov[x_t | y_0..t-1], (patterns, bins, latents, latents)
    trial_group: np.ndarray  # pattern index of each trial, (trials,)
    log_likelihood: np.ndarray  # log p(y_0..T-1) per trial, (trials,)


@dataclass
class SmoothedStates:
    """Rauch-Tung-Striebel smoother output; covariances per missing-data pattern as above."""

    means: np.ndarray  # E[x_t | all y], (trials, bins, latents)
    covs: np.ndarray  # Cov[x_t | all y], (patterns, bins, latents, latents)
    lag_one_covs: np.ndarray  # Cov[x_{t+1}, x_t | all y], (patterns, bins - 1, latents, latents)
    filtered: FilteredStates


@dataclass
class _ObservedSubset:
    """Terms of the update for one set of observed output dimensions, shared by every bin and
    trial that observes exactly that set."""

    dims: np.ndarray  # indices of observed outputs
    observation: np.ndarray  # C restricted to them
    offset: np.ndarray  # d restricted to them
    noise_precision: np.ndarray  # inverse of R restricted to them
    information: np.ndarray  # C_o^T R_o^-1 C_o
    noise_logdet: float


def kalman_filter(ssm: LinearGaussianSSM, observations: np.ndarray) -> FilteredStates:
    """Filter (trials, bins, outputs) observations; NaN entries are unobserved."""
    y = _check_observations(ssm, observations)
    n_trials, n_bins, _ = y.shape
    k = ssm.latent_dim
    observed = ~np.isnan(y)
    groups = [pattern.members for pattern in group_by_pattern(observed)]
    trial_group = np.empty(n_trials, dtype=np.intp)
    for g, members in enumerate(groups):
        trial_group[members] = g
    y = np.where(observed, y, 0.0)
    means = np.empty((n_trials, n_bins, k))
    covs = np.empty((len(groups), n_bins, k, k))
    predicted_covs = np.empty_like(covs)
    log_likelihood = np.zeros(n_trials)
    subsets: dict[bytes, _ObservedSubset] = {}
    for g, trials in enumerate(groups):
        mask = observed[trials[0]]
        mean = np.tile(ssm.initial_mean, (trials.size, 1))
        cov = ssm.initial_cov
        for t in range(n_bins):
            if t > 0:
                mean = mean @ ssm.transition.T
                cov = _symmetric(ssm.transition @ cov @ ssm.transition.T + ssm.transition_cov)
            predicted_covs[g, t] = cov
            if mask[t].any():
                key = mask[t].tobytes()
                if key not in subsets:
                    subsets[key] = _observed_subset(ssm, mask[t])
                subset = subsets[key]
                # Information form: only latent-sized matrices are inverted, however many outputs.
                precision = np.linalg.inv(cov) + subset.information
                updated_cov = _symmetric(np.linalg.inv(precision))
                residual = y[trials, t][:, subset.dims] - mean @ subset.observation.T - subset.offset
                weighted = residual @ subset.noise_precision
                projected = weighted @ subset.observation  # C_o^T R_o^-1 e, (trials, latents)
                # log N(e; 0, C P C^T + R) by the determinant lemma and Woodbury identity.
                logdet = (subset.noise_logdet + np.linalg.slogdet(cov)[1]
                          + np.linalg.slogdet(precision)[1])
                correction = projected @ updated_cov
                quadratic = (np.einsum("np,np->n", residual, weighted)
                             - np.einsum("nk,nk->n", correction, projected))
                log_likelihood[trials] -= 0.5 * (subset.dims.size * _LOG_2PI + logdet + quadratic)
                mean = mean + correction
                cov = updated_cov
            means[trials, t] = mean
            covs[g, t] = cov
    return FilteredStates(means=means, covs=covs, predicted_covs=predicted_covs,
                          trial_group=trial_group, log_likelihood=log_likelihood)


def kalman_smoother(ssm: LinearGaussianSSM, observations: np.ndarray) -> SmoothedStates:
    """Filter, then the Rauch-Tung-Striebel backward pass."""
    filtered = kalman_filter(ssm, observations)
    means = filtered.means.copy()
    covs = filtered.covs.copy()
    n_groups, n_bins, k, _ = covs.shape
    lag_one_covs = np.empty((n_groups, max(n_bins - 1, 0), k, k))
    for g in range(n_groups):
        trials = np.flatnonzero(filtered.trial_group == g)
        for t in range(n_bins - 2, -1, -1):
            filtered_cov = filtered.covs[g, t]
            predicted_cov = filtered.predicted_covs[g, t + 1]
            # Smoother gain J_t = P_t|t A^T P_t+1|t^-1, via a solve with the symmetric P_t+1|t.
            gain = np.linalg.solve(predicted_cov, ssm.transition @ filtered_cov).T
            filtered_mean = filtered.means[trials, t]
            means[trials, t] = (filtered_mean + (means[trials, t + 1]
                                - filtered_mean @ ssm.transition.T) @ gain.T)
            lag_one_covs[g, t] = covs[g, t + 1] @ gain.T
            covs[g, t] = _symmetric(filtered_cov + gain @ (covs[g, t + 1] - predicted_cov) @ gain.T)
    return SmoothedStates(means=means, covs=covs, lag_one_covs=lag_one_covs, filtered=filtered)


@dataclass
class EmFit:
    """Result of `fit_lds_em`: the parameters, and the data log-likelihood under the parameters
    at the start of each iteration (non-decreasing, as EM guarantees)."""

    ssm: LinearGaussianSSM
    log_likelihoods: list[float]


def fit_lds_em(observations: np.ndarray, latent_dim: int, n_iter: int, tolerance: float) -> EmFit:
    """EM for the LDS with diagonal R on (trials, bins, outputs) observations (NaN = missing).

    Starts from factor analysis, stops after `n_iter` iterations or when the log-likelihood rises by less
    than `tolerance` times its magnitude.
    """
    y = np.asarray(observations, dtype=np.float64)
    observed = ~np.isnan(y)
    variances = np.array([np.var(column[~np.isnan(column)]) for column in y.reshape(-1, y.shape[2]).T])
    noise_floor = _MIN_OBSERVATION_VARIANCE_FRACTION * max(float(variances.mean()), 1e-12)
    ssm = _factor_analysis_start(y, latent_dim, noise_floor)
    history: list[float] = []
    for _ in range(n_iter):
        smoothed = kalman_smoother(ssm, y)
        history.append(float(smoothed.filtered.log_likelihood.sum()))
        if len(history) > 1 and history[-1] - history[-2] < tolerance * abs(history[-2]):
            break
        ssm = _m_step(smoothed, y, observed, noise_floor)
    return EmFit(ssm=ssm, log_likelihoods=history)


@dataclass(frozen=True)
class KalmanConfig(Hyperparameters):
    """`latent_dim`; EM `n_iter` (most iterations) and `tolerance` (relative log-likelihood gain
    below which EM stops); `transform` of the counts ("sqrt" or "counts"); `readout_alpha`, the
    L2 penalty of the Poisson readout. The fit is deterministic: it starts from factor analysis
    and samples nothing."""

    OWNER: ClassVar[str] = "kalman"

    latent_dim: int = param(16, low=1)
    n_iter: int = param(200, low=1)
    tolerance: float = param(1e-6, low=0)
    transform: Literal["sqrt", "counts"] = param("sqrt")
    readout_alpha: float = param(0.01, low=0)


class KalmanModel(Estimator[KalmanConfig]):
    """LDS on transformed held-in counts, EM fit, RTS-smoothed latents, Poisson GLM readout."""

    Config = KalmanConfig

    def fit(self, tensors: Tensors) -> KalmanModel:
        """EM on the training trials' held-in spikes, then the readout on their smoothed latents."""
        cfg = self.config
        if cfg.latent_dim > tensors.n_heldin:
            raise ModelError(f"kalman: latent_dim {cfg.latent_dim} exceeds the {tensors.n_heldin} "
                             f"held-in units of {tensors.dataset}")
        if tensors.n_bins < 2:
            raise ModelError(f"kalman: {tensors.dataset} has {tensors.n_bins} bin(s) per trial; need 2")
        em = fit_lds_em(self._observations(tensors.train_spikes_heldin), cfg.latent_dim, cfg.n_iter, cfg.tolerance)
        self.ssm_, self.log_likelihoods_ = em.ssm, em.log_likelihoods
        latents = self.latents(tensors.train_spikes_heldin)
        self.readout_ = LatentReadout(cfg.readout_alpha).fit(latents, self._propagate(latents, tensors.n_forward),
                                                             tensors)
        return self

    def latents(self, spikes_heldin: np.ndarray) -> np.ndarray:
        """Smoothed latent means (trials, bins, latent_dim) of held-in spikes."""
        if not hasattr(self, "ssm_"):
            raise not_fitted("kalman", "latents")
        return kalman_smoother(self.ssm_, self._observations(spikes_heldin)).means

    def predict(self, tensors: Tensors) -> Rates:
        """Rates from smoothed latents; forward window by running the dynamics on."""
        if not hasattr(self, "readout_"):
            raise not_fitted("kalman")
        train_latents = self.latents(tensors.train_spikes_heldin)
        eval_latents = self.latents(tensors.eval_spikes_heldin)
        return self.readout_.rates(train_latents, eval_latents, self._propagate(eval_latents, tensors.n_forward),
                                   latents={latent_key("train", LatentKind.STATES): train_latents.astype(np.float32),
                                            latent_key("eval", LatentKind.STATES): eval_latents.astype(np.float32)})

    def _propagate(self, latents: np.ndarray, n_forward: int) -> np.ndarray:
        """The dynamics run on from each trial's last state: (trials, n_forward, latent_dim)."""
        state = latents[:, -1]
        forward = np.empty((len(latents), n_forward, latents.shape[2]))
        for j in range(n_forward):
            state = state @ self.ssm_.transition.T
            forward[:, j] = state
        return forward

    def _observations(self, spikes: np.ndarray) -> np.ndarray:
        counts = np.asarray(spikes, dtype=np.float64)
        return np.sqrt(counts) if self.config.transform == "sqrt" else counts


def _m_step(smoothed: SmoothedStates, y: np.ndarray, observed: np.ndarray,
            noise_floor: float) -> LinearGaussianSSM:
    """Parameters maximising the expected complete-data log-likelihood (R diagonal)."""
    means = smoothed.means
    n_trials, n_bins, k = means.shape
    group_sizes = np.bincount(smoothed.filtered.trial_group, minlength=smoothed.covs.shape[0])
    # Posterior covariances summed over the trials of each pattern: sum_n Cov[x_t], (bins, k, k).
    summed_covs = np.einsum("g,gtij->tij", group_sizes, smoothed.covs)
    summed_lag_covs = np.einsum("g,gtij->ij", group_sizes, smoothed.lag_one_covs)

    initial = means[:, 0]
    initial_mean = initial.mean(axis=0)
    centred = initial - initial_mean
    initial_cov = _symmetric((summed_covs[0] + centred.T @ centred) / n_trials)

    before, after = means[:, :-1].reshape(-1, k), means[:, 1:].reshape(-1, k)
    second_before = summed_covs[:-1].sum(axis=0) + before.T @ before
    second_after = summed_covs[1:].sum(axis=0) + after.T @ after
    cross = summed_lag_covs + after.T @ before  # sum E[x_{t+1} x_t^T]
    transition = np.linalg.solve(second_before, cross.T).T
    transition_cov = _symmetric((second_after - transition @ cross.T) / (n_trials * (n_bins - 1)))

    # Observation rows by least squares on z = [x; 1] over each output's observed bins only.
    y_filled = np.where(observed, y, 0.0)
    augmented = np.concatenate([means, np.ones((n_trials, n_bins, 1))], axis=2)
    gram = np.zeros((y.shape[2], k + 1, k + 1))
    for g, size in enumerate(group_sizes):
        trials = np.flatnonzero(smoothed.filtered.trial_group == g)
        mask = observed[trials[0]].astype(np.float64)  # (bins, outputs), shared by the pattern
        z = augmented[trials].transpose(1, 0, 2)  # (bins, trials, k + 1)
        second = z.transpose(0, 2, 1) @ z
        second[:, :k, :k] += size * smoothed.covs[g]
        gram += (mask.T @ second.reshape(n_bins, -1)).reshape(gram.shape)
    targets = y_filled.reshape(-1, y.shape[2]).T @ augmented.reshape(-1, k + 1)
    rows = np.linalg.solve(gram, targets[:, :, None])[:, :, 0]
    n_observed = observed.sum(axis=(0, 1))
    residual = (np.einsum("ntp,ntp->p", y_filled, y_filled)
                - np.einsum("pi,pi->p", rows, targets)) / n_observed
    return LinearGaussianSSM(
        transition=transition, transition_cov=transition_cov, observation=rows[:, :k],
        observation_offset=rows[:, k], observation_cov=np.diag(np.maximum(residual, noise_floor)),
        initial_mean=initial_mean, initial_cov=initial_cov)


def _factor_analysis_start(y: np.ndarray, latent_dim: int, noise_floor: float) -> LinearGaussianSSM:
    """C and R from factor analysis of all bins, latents as its posterior means, dynamics by
    least squares on them. Factor analysis rather than PCA because spike-count noise differs
    between units: PCA's leading axes chase the noisiest units, and EM then keeps latents that
    model single units' noise (transition eigenvalues near 0) instead of shared dynamics."""
    n_trials, n_bins, n_outputs = y.shape
    rows = y.reshape(-1, n_outputs)
    offset = np.nanmean(rows, axis=0)
    centred = np.where(np.isnan(rows), 0.0, rows - offset)  # missing entries at the mean
    factors = factor_analysis(centred.T @ centred / rows.shape[0], rows.shape[0], latent_dim, noise_floor)
    scores = (centred @ factors.posterior_gain().T).reshape(n_trials, n_bins, latent_dim)
    before, after = scores[:, :-1].reshape(-1, latent_dim), scores[:, 1:].reshape(-1, latent_dim)
    transition = np.linalg.lstsq(before, after, rcond=None)[0].T
    innovations = after - before @ transition.T
    initial = scores[:, 0]
    ridge = 1e-6 * np.eye(latent_dim)  # keeps covariances positive definite for tiny samples
    return LinearGaussianSSM(
        transition=transition, transition_cov=np.cov(innovations.T, bias=True) + ridge,
        observation=factors.loadings, observation_offset=offset, observation_cov=np.diag(factors.noise),
        initial_mean=initial.mean(axis=0),
        initial_cov=np.atleast_2d(np.cov(initial.T, bias=True)) + ridge)


def _observed_subset(ssm: LinearGaussianSSM, mask: np.ndarray) -> _ObservedSubset:
    dims = np.flatnonzero(mask)
    observation = ssm.observation[dims]
    noise_cov = ssm.observation_cov[np.ix_(dims, dims)]
    noise_precision = np.linalg.inv(noise_cov)
    return _ObservedSubset(
        dims=dims, observation=observation, offset=ssm.observation_offset[dims],
        noise_precision=noise_precision, information=observation.T @ noise_precision @ observation,
        noise_logdet=float(np.linalg.slogdet(noise_cov)[1]))


def _check_observations(ssm: LinearGaussianSSM, observations: np.ndarray) -> np.ndarray:
    y = np.asarray(observations, dtype=np.float64)
    if y.ndim != 3 or y.shape[2] != ssm.observation.shape[0]:
        raise ModelError(f"Kalman filter: observations have shape {y.shape}, expected "
                         f"(trials, bins, {ssm.observation.shape[0]})")
    if np.isinf(y).any():
        raise ModelError("Kalman filter: observations contain infinite values")
    return y


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    return 0.5 * (matrix + np.swapaxes(matrix, -1, -2))
