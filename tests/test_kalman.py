"""Kalman filter / RTS smoother against pykalman and exact Gaussian conditioning; LDS EM; the model."""

import dataclasses

import numpy as np
import pytest
from simulated_tensors import simulate

from nlb_suite.models.base import ModelError, make_model
from nlb_suite.models.kalman import (
    LinearGaussianSSM,
    fit_lds_em,
    kalman_filter,
    kalman_smoother,
)
from nlb_suite.report.analysis import KalmanVelocityDecoder, kalman_decoded
from nlb_suite.scoring.metrics import bits_per_spike


def _random_ssm(rng, k=3, p=5, diagonal_noise=False) -> LinearGaussianSSM:
    rotation = np.linalg.qr(rng.normal(size=(k, k)))[0]
    q_root = rng.normal(scale=0.3, size=(k, k))
    if diagonal_noise:
        noise = np.diag(rng.uniform(0.2, 1.0, size=p))
    else:
        r_root = rng.normal(scale=0.5, size=(p, p))
        noise = r_root @ r_root.T + 0.3 * np.eye(p)
    v_root = rng.normal(size=(k, k))
    return LinearGaussianSSM(
        transition=0.95 * rotation, transition_cov=q_root @ q_root.T + 0.05 * np.eye(k),
        observation=rng.normal(size=(p, k)), observation_offset=rng.normal(size=p),
        observation_cov=noise, initial_mean=rng.normal(size=k),
        initial_cov=v_root @ v_root.T + 0.1 * np.eye(k))


def _simulate(ssm: LinearGaussianSSM, n_trials, n_bins, rng) -> np.ndarray:
    k, p = ssm.latent_dim, ssm.observation.shape[0]
    x = rng.multivariate_normal(ssm.initial_mean, ssm.initial_cov, size=n_trials)
    y = np.empty((n_trials, n_bins, p))
    for t in range(n_bins):
        if t > 0:
            x = x @ ssm.transition.T + rng.multivariate_normal(np.zeros(k), ssm.transition_cov, n_trials)
        y[:, t] = (x @ ssm.observation.T + ssm.observation_offset
                   + rng.multivariate_normal(np.zeros(p), ssm.observation_cov, n_trials))
    return y


def _pykalman_filter(ssm: LinearGaussianSSM):
    # Only the comparisons need pykalman: without it they skip, the model tests still run.
    pykalman = pytest.importorskip("pykalman")
    return pykalman.KalmanFilter(
        transition_matrices=ssm.transition, transition_covariance=ssm.transition_cov,
        observation_matrices=ssm.observation, observation_offsets=ssm.observation_offset,
        observation_covariance=ssm.observation_cov, transition_offsets=np.zeros(ssm.latent_dim),
        initial_state_mean=ssm.initial_mean, initial_state_covariance=ssm.initial_cov)


@pytest.mark.parametrize("seed", [0, 1])
def test_filter_and_smoother_match_pykalman(seed):
    rng = np.random.default_rng(seed)
    ssm = _random_ssm(rng)
    y = _simulate(ssm, 1, 30, rng)
    reference = _pykalman_filter(ssm)
    filtered_means, filtered_covs = reference.filter(y[0])
    smoothed_means, smoothed_covs = reference.smooth(y[0])
    smoothed = kalman_smoother(ssm, y)
    np.testing.assert_allclose(smoothed.filtered.means[0], filtered_means, atol=1e-8)
    np.testing.assert_allclose(smoothed.filtered.covs[0], filtered_covs, atol=1e-8)
    np.testing.assert_allclose(smoothed.means[0], smoothed_means, atol=1e-8)
    np.testing.assert_allclose(smoothed.covs[0], smoothed_covs, atol=1e-8)
    assert smoothed.filtered.log_likelihood[0] == pytest.approx(reference.loglikelihood(y[0]),
                                                                abs=1e-8)


def test_missing_bins_match_pykalman_masked_observations():
    rng = np.random.default_rng(2)
    ssm = _random_ssm(rng)
    y = _simulate(ssm, 1, 25, rng)
    y[0, [3, 4, 10, 24]] = np.nan
    reference = _pykalman_filter(ssm)
    masked = np.ma.masked_invalid(y[0])
    smoothed_means, smoothed_covs = reference.smooth(masked)
    smoothed = kalman_smoother(ssm, y)
    np.testing.assert_allclose(smoothed.means[0], smoothed_means, atol=1e-8)
    np.testing.assert_allclose(smoothed.covs[0], smoothed_covs, atol=1e-8)
    assert smoothed.filtered.log_likelihood[0] == pytest.approx(reference.loglikelihood(masked),
                                                                abs=1e-8)


def _exact_posterior(ssm: LinearGaussianSSM, y: np.ndarray):
    """Joint Gaussian of all latents and observed outputs of one short sequence, conditioned
    directly: the smoothed means and covariances, lag-one covariances and log-likelihood."""
    n_bins, p = y.shape
    k = ssm.latent_dim
    A, Q = ssm.transition, ssm.transition_cov
    state_mean = [ssm.initial_mean]
    for _ in range(1, n_bins):
        state_mean.append(A @ state_mean[-1])
    propagated = [ssm.initial_cov]
    for _ in range(1, n_bins):
        propagated.append(A @ propagated[-1] @ A.T + Q)
    state_cov = np.zeros((n_bins * k, n_bins * k))
    for s in range(n_bins):
        for t in range(s, n_bins):
            block = np.linalg.matrix_power(A, t - s) @ propagated[s]
            state_cov[t * k:(t + 1) * k, s * k:(s + 1) * k] = block
            state_cov[s * k:(s + 1) * k, t * k:(t + 1) * k] = block.T
    emission = np.kron(np.eye(n_bins), ssm.observation)
    obs_mean = emission @ np.concatenate(state_mean) + np.tile(ssm.observation_offset, n_bins)
    obs_cov = emission @ state_cov @ emission.T + np.kron(np.eye(n_bins), ssm.observation_cov)
    seen = ~np.isnan(y.ravel())
    cross = state_cov @ emission.T[:, seen]
    gain = np.linalg.solve(obs_cov[np.ix_(seen, seen)], cross.T).T
    residual = y.ravel()[seen] - obs_mean[seen]
    mean = np.concatenate(state_mean) + gain @ residual
    cov = state_cov - gain @ cross.T
    sign, logdet = np.linalg.slogdet(obs_cov[np.ix_(seen, seen)])
    loglik = -0.5 * (seen.sum() * np.log(2 * np.pi) + logdet
                     + residual @ np.linalg.solve(obs_cov[np.ix_(seen, seen)], residual))
    return mean.reshape(n_bins, k), cov, loglik


def test_partially_missing_outputs_match_exact_conditioning_and_batch_by_pattern():
    rng = np.random.default_rng(3)
    ssm = _random_ssm(rng, k=2, p=4, diagonal_noise=True)
    y = _simulate(ssm, 4, 6, rng)
    y[1, 2, [0, 3]] = np.nan
    y[2, 0, :] = np.nan
    y[3, 5, 1] = np.nan
    smoothed = kalman_smoother(ssm, y)
    k = 2
    for trial in range(4):
        mean, cov, loglik = _exact_posterior(ssm, y[trial])
        group = smoothed.filtered.trial_group[trial]
        np.testing.assert_allclose(smoothed.means[trial], mean, atol=1e-8)
        for t in range(6):
            np.testing.assert_allclose(smoothed.covs[group, t], cov[t*k:(t+1)*k, t*k:(t+1)*k], atol=1e-8)
        for t in range(5):
            np.testing.assert_allclose(smoothed.lag_one_covs[group, t],
                                       cov[(t+1)*k:(t+2)*k, t*k:(t+1)*k], atol=1e-8)
        assert smoothed.filtered.log_likelihood[trial] == pytest.approx(loglik, abs=1e-8)
    # Complete trial 0 and the three distinct missing patterns: four covariance groups.
    assert smoothed.covs.shape[0] == 4


def test_filter_alone_matches_smoother_filtered_pass():
    rng = np.random.default_rng(4)
    ssm = _random_ssm(rng)
    y = _simulate(ssm, 3, 10, rng)
    filtered = kalman_filter(ssm, y)
    np.testing.assert_array_equal(filtered.means, kalman_smoother(ssm, y).filtered.means)


def test_em_log_likelihood_never_decreases_and_improves_on_the_start():
    rng = np.random.default_rng(5)
    ssm = _random_ssm(rng, k=2, p=6, diagonal_noise=True)
    y = _simulate(ssm, 20, 30, rng)
    y[:3, 5:8, 2] = np.nan
    fit = fit_lds_em(y, latent_dim=2, n_iter=25, tolerance=0.0)
    steps = np.diff(fit.log_likelihoods)
    assert len(fit.log_likelihoods) == 25
    assert np.all(steps >= -1e-8 * np.abs(fit.log_likelihoods[1:]))
    assert fit.log_likelihoods[-1] > fit.log_likelihoods[0]
    # EM approaches the likelihood of the generating parameters (they are within its reach).
    true_loglik = kalman_filter(ssm, y).log_likelihood.sum()
    assert fit.log_likelihoods[-1] > true_loglik - 0.01 * abs(true_loglik)


def test_em_stops_at_tolerance():
    rng = np.random.default_rng(6)
    ssm = _random_ssm(rng, k=2, p=5, diagonal_noise=True)
    y = _simulate(ssm, 10, 20, rng)
    fit = fit_lds_em(y, latent_dim=2, n_iter=500, tolerance=1e-4)
    assert len(fit.log_likelihoods) < 500
    gains = np.diff(fit.log_likelihoods)
    assert gains[-1] < 1e-4 * abs(fit.log_likelihoods[-2])


@pytest.mark.parametrize("kwargs", [{"latent_dim": 2.5}, {"transform": "log"}])
def test_out_of_range_hyperparameters(kwargs):
    with pytest.raises(ModelError, match=next(iter(kwargs))):
        make_model("kalman", **kwargs)


# The model and the Wu decoder on a small simulated dataset.


@pytest.fixture(scope="module")
def dataset():
    return simulate()


@pytest.fixture(scope="module")
def kalman_rates(dataset):
    model = make_model("kalman", latent_dim=4, n_iter=30).fit(dataset.tensors)
    return model, model.predict(dataset.tensors)


def test_model_rates_shapes_latents_and_monotone_em(dataset, kalman_rates):
    model, rates = kalman_rates
    rates.check_shapes(dataset.tensors.sizes)
    assert all(np.isfinite(a).all() and (a >= 0).all() for a in rates.arrays().values())
    assert rates.latents["eval_latents"].shape == (dataset.tensors.n_eval, dataset.tensors.n_bins, 4)
    assert np.all(np.diff(model.log_likelihoods_) >= -1e-8 * np.abs(model.log_likelihoods_[1:]))


def test_model_beats_the_mean_rate_null_and_smoothing(dataset, kalman_rates):
    _, rates = kalman_rates
    co_bps = bits_per_spike(rates.eval_rates_heldout, dataset.targets.eval_spikes_heldout)
    smoothing = make_model("smoothing", kern_sd_ms=40.0).fit(dataset.tensors).predict(dataset.tensors)
    assert co_bps > 0.08
    assert co_bps > bits_per_spike(smoothing.eval_rates_heldout, dataset.targets.eval_spikes_heldout)


def test_model_rejects_more_latents_than_held_in_units(dataset):
    with pytest.raises(ModelError, match="exceeds"):
        make_model("kalman", latent_dim=dataset.tensors.n_heldin + 1).fit(dataset.tensors)


def test_wu_decoder_recovers_velocity(dataset):
    r2 = kalman_decoded(dataset.tensors, dataset.targets).r2
    assert r2 > 0.5
    decoder = KalmanVelocityDecoder().fit(dataset.tensors.train_spikes_heldin,
                                          dataset.tensors.train_behavior)
    assert decoder.predict(dataset.tensors.eval_spikes_heldin).shape == dataset.targets.eval_behavior.shape


def test_wu_decoder_with_decode_masks_averages_one_decoder_per_mask(dataset):
    tensors, targets = dataset.tensors, dataset.targets
    train_mask = np.zeros((tensors.n_train, 2), bool)
    train_mask[np.arange(tensors.n_train) % 2 == 0, 0] = True
    train_mask[:, 1] = ~train_mask[:, 0]
    eval_mask = np.zeros((tensors.n_eval, 2), bool)
    eval_mask[np.arange(tensors.n_eval) % 2 == 0, 0] = True
    eval_mask[:, 1] = ~eval_mask[:, 0]
    masked_tensors = dataclasses.replace(tensors, train_decode_mask=train_mask)
    masked_targets = dataclasses.replace(targets, eval_decode_mask=eval_mask)
    per_mask = []
    for train_rows, eval_rows in zip(train_mask.T, eval_mask.T):
        one = dataclasses.replace(tensors, train_spikes_heldin=tensors.train_spikes_heldin[train_rows],
                                  train_behavior=tensors.train_behavior[train_rows],
                                  eval_spikes_heldin=tensors.eval_spikes_heldin[eval_rows])
        one_targets = dataclasses.replace(targets, eval_behavior=targets.eval_behavior[eval_rows])
        per_mask.append(kalman_decoded(one, one_targets).r2)
    assert kalman_decoded(masked_tensors, masked_targets).r2 == pytest.approx(np.mean(per_mask), abs=1e-12)
    with pytest.raises(ModelError, match="decode masks"):
        kalman_decoded(masked_tensors, targets).r2


def test_wu_decoder_bad_input(dataset):
    with pytest.raises(ModelError, match="must be"):
        KalmanVelocityDecoder().fit(dataset.tensors.train_spikes_heldin, dataset.tensors.train_behavior[:-1])
    with pytest.raises(ModelError, match="noise_floor"):
        KalmanVelocityDecoder(noise_floor=0.0)
    with pytest.raises(ModelError, match="before fit"):
        KalmanVelocityDecoder().predict(dataset.tensors.eval_spikes_heldin)
