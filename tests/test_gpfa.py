"""GPFA: posterior and likelihood against dense Gaussian algebra, EM against elephant, the model."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from simulated_tensors import simulate

from nlb_suite.datasets.registry import BUILTIN
from nlb_suite.models import gpfa
from nlb_suite.models.base import ModelError, make_model
from nlb_suite.models.config import configured_model
from nlb_suite.models.gpfa import em, linalg
from nlb_suite.models.gpfa.dense import dense_posterior
from nlb_suite.scoring.metrics import bits_per_spike

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpfa.py"


def _random_parameters(rng, n_units=5, n_latents=2) -> em.GpfaParameters:
    return em.GpfaParameters(
        loading=rng.normal(size=(n_units, n_latents)), offset=rng.normal(size=n_units),
        private_variance=rng.uniform(0.3, 1.0, n_units), gamma=rng.uniform(0.05, 0.5, n_latents),
        gp_noise_variance=1e-3)


def _sequences_with_gaps(rng, parameters, n_sequences=6, n_bins=7) -> np.ndarray:
    """Sequences with no gaps, a unit missing for a whole sequence (the pattern is the same in
    every bin) and scattered missing entries (it is not)."""
    sequences = rng.normal(size=(n_sequences, n_bins, len(parameters.offset))) + parameters.offset
    sequences[2, :, 1] = np.nan
    sequences[3, :, 1] = np.nan
    sequences[4, [0, 3], 2] = np.nan
    sequences[5, 5:, :] = np.nan
    return sequences


def _dense_posterior(parameters, sequence):
    posterior = dense_posterior(parameters, sequence)
    return posterior.mean, posterior.covariance, posterior.log_likelihood


def test_posterior_and_likelihood_match_dense_gaussian_conditioning():
    rng = np.random.default_rng(0)
    parameters = _random_parameters(rng)
    sequences = _sequences_with_gaps(rng, parameters)
    means, log_likelihood = em.posterior_means(parameters, sequences)
    dense = [_dense_posterior(parameters, sequence) for sequence in sequences]
    n_latents, n_bins = parameters.latent_dim, sequences.shape[1]
    for k, (mean, _, _) in enumerate(dense):
        np.testing.assert_allclose(means[k], mean.reshape(n_latents, n_bins).T, rtol=1e-10, atol=1e-12)
    assert log_likelihood == pytest.approx(sum(ll for _, _, ll in dense), rel=1e-12)


def test_posterior_covariance_blocks_for_the_m_step_match_dense_conditioning():
    """Both ways of factorising (split by time parity, or whole) give the covariance blocks and
    moments that the M-step uses."""
    rng = np.random.default_rng(1)
    parameters = _random_parameters(rng)
    sequences = _sequences_with_gaps(rng, parameters)
    groups = em._group_by_pattern(sequences)
    assert {group.time_invariant for group in groups} == {True, False}
    prior = em._GpPrior.of(parameters, sequences.shape[1])
    posteriors, _ = em._posterior(parameters, groups, prior, with_covariance=True)
    n_latents, n_bins = parameters.latent_dim, sequences.shape[1]
    for group, posterior in zip(groups, posteriors):
        bin_blocks, moments = 0.0, 0.0
        for member in group.members:
            mean, covariance, _ = _dense_posterior(parameters, sequences[member])
            blocks = covariance.reshape(n_latents, n_bins, n_latents, n_bins)
            bin_blocks = np.einsum("itjt->tij", blocks)
            mean = mean.reshape(n_latents, n_bins)
            moments = moments + np.stack([blocks[i, :, i, :] + np.outer(mean[i], mean[i])
                                          for i in range(n_latents)])
        if group.time_invariant:  # the M-step needs only the sum over bins
            bin_blocks = bin_blocks.sum(axis=0, keepdims=True)
        np.testing.assert_allclose(posterior.bin_covariance, bin_blocks, atol=1e-12)
        np.testing.assert_allclose(posterior.latent_moments, linalg.time_parity(n_bins).split(moments),
                                   atol=1e-11)


def test_observation_update_is_each_units_regression_on_its_observed_bins():
    """C, d and R from the M-step equal a per-unit least-squares fit on expected moments, with
    units missing in different places (several Gram matrices)."""
    rng = np.random.default_rng(7)
    parameters = _random_parameters(rng)
    sequences = _sequences_with_gaps(rng, parameters)
    groups = em._group_by_pattern(sequences)
    prior = em._GpPrior.of(parameters, sequences.shape[1])
    posteriors, _ = em._posterior(parameters, groups, prior, with_covariance=True)
    statistics = em._UnitStatistics.of(sequences, groups, min_var_frac=0.0)
    assert len(statistics.representatives) > 1
    loading, offset, variance = em._update_observation_model(groups, posteriors, statistics)
    n_latents, n_bins = parameters.latent_dim, sequences.shape[1]
    for unit in range(sequences.shape[2]):
        gram, cross, squares, count = np.zeros((n_latents + 1, n_latents + 1)), 0.0, 0.0, 0
        for sequence in sequences:
            mean, covariance, _ = _dense_posterior(parameters, sequence)
            mean = mean.reshape(n_latents, n_bins)
            blocks = covariance.reshape(n_latents, n_bins, n_latents, n_bins)
            for t in np.flatnonzero(~np.isnan(sequence[:, unit])):
                augmented = np.append(mean[:, t], 1.0)
                gram += np.outer(augmented, augmented)
                gram[:n_latents, :n_latents] += blocks[:, t, :, t]
                cross = cross + sequence[t, unit] * augmented
                squares, count = squares + sequence[t, unit] ** 2, count + 1
        coefficients = np.linalg.solve(gram, cross)
        np.testing.assert_allclose(loading[unit], coefficients[:n_latents], rtol=1e-9, atol=1e-12)
        assert offset[unit] == pytest.approx(coefficients[n_latents], rel=1e-9, abs=1e-12)
        assert variance[unit] == pytest.approx((squares - coefficients @ cross) / count, rel=1e-9)


@pytest.mark.parametrize("size", [5, 257, 600])
def test_lower_triangular_inverse_by_halves(size):
    """Sizes below and above the recursion threshold, odd and even halves."""
    rng = np.random.default_rng(size)
    matrix = rng.normal(size=(size, size))
    factor = np.linalg.cholesky(matrix @ matrix.T + size * np.eye(size))
    inverse = linalg.lower_triangular_inverse(np.asfortranarray(factor))
    np.testing.assert_allclose(inverse, np.linalg.inv(factor), rtol=0, atol=1e-13)
    assert not np.triu(inverse, 1).any()


def test_forward_extrapolation_is_the_posterior_mean_of_unobserved_future_bins():
    rng = np.random.default_rng(2)
    parameters = _random_parameters(rng)
    sequences = _sequences_with_gaps(rng, parameters)
    n_forward = 4
    extended = np.concatenate([sequences, np.full((len(sequences), n_forward, 5), np.nan)], axis=1)
    joint, _ = em.posterior_means(parameters, extended)
    observed, _ = em.posterior_means(parameters, sequences)
    np.testing.assert_allclose(em.extrapolate_latents(parameters, observed, n_forward),
                               joint[:, -n_forward:], atol=1e-10)


def test_timescale_objective_matches_dense_algebra_and_finite_differences():
    """The objective, computed in the two time-parity halves (odd and even lengths), equals
    (n log|K| + tr(K^-1 A)) / 2 on the whole matrices; its derivatives match finite differences."""
    rng = np.random.default_rng(3)
    for n_bins in (9, 10):
        draws = rng.normal(size=(3, n_bins, 40))
        second_moment = draws @ draws.transpose(0, 2, 1)
        objective = linalg.TimescaleObjective(n_bins, 40, 1e-3)
        log_gamma, step = np.log([0.02, 0.3, 2.0]), 1e-4
        halves = linalg.time_parity(n_bins).split(second_moment)
        at, above, below = (objective.kernel_terms(log_gamma + shift).terms(halves)
                            for shift in (0, step, -step))
        covariance = em.gp_covariances(np.exp(log_gamma), 1e-3, n_bins)
        dense = 0.5 * (40 * np.linalg.slogdet(covariance)[1]
                       + np.trace(np.linalg.solve(covariance, second_moment), axis1=1, axis2=2))
        np.testing.assert_allclose(at.value, dense, rtol=1e-11)
        np.testing.assert_allclose(at.slope, (above.value - below.value) / (2 * step), rtol=1e-6)
        np.testing.assert_allclose(at.curvature, (above.slope - below.slope) / (2 * step), rtol=1e-6)


def test_em_never_lowers_the_likelihood_with_missing_data():
    rng = np.random.default_rng(4)
    truth = _random_parameters(rng, n_units=8, n_latents=2)
    prior = em.gp_covariances(truth.gamma, truth.gp_noise_variance, 12)
    latents = np.einsum("ibc,kic->kbi", np.linalg.cholesky(prior), rng.normal(size=(20, 2, 12)))
    sequences = latents @ truth.loading.T + truth.offset + rng.normal(size=(20, 12, 8)) * 0.5
    sequences[::3, :, 0] = np.nan
    sequences[rng.random(sequences.shape) < 0.05] = np.nan
    initial = em.factor_analysis_init(sequences, 2, timescale_bins=3.0, gp_noise_variance=1e-3)
    result = em.fit_gpfa(sequences, initial, n_iter=25, tolerance=0.0, min_var_frac=0.01)
    gains = np.diff(result.log_likelihoods)
    assert (gains >= -1e-9 * abs(result.log_likelihoods[-1])).all()
    assert result.log_likelihoods[-1] > result.log_likelihoods[0]


@pytest.fixture(scope="module")
def benchmark():
    pytest.importorskip("elephant")
    spec = importlib.util.spec_from_file_location("bench_gpfa", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass needs to find its own module
    spec.loader.exec_module(module)
    return module


def test_matches_elephant_likelihood_and_co_bps(benchmark):
    """Same data, start and iterations as elephant's EM: log-likelihood no worse than elephant's
    within 0.1%, co-bps (same readout on each method's latents) within 0.005."""
    data = benchmark.simulate_gp_poisson(n_train=40, n_eval=20, n_bins=20, n_forward=5, n_heldin=30,
                                         n_heldout=10, latent_dim=4, seed=1)
    n_iter = 15
    parameters, elephant_iters, _ = benchmark.elephant_fit(
        benchmark._elephant_sequences(data.tensors.train_spikes_heldin), 4, n_iter)
    elephant_ll, elephant_cobps = benchmark.elephant_scores(parameters, data)
    ours, _ = benchmark.our_fit(data, 4, n_iter)
    assert len(ours.log_likelihoods_) - 1 == elephant_iters == n_iter
    assert ours.log_likelihoods_[-1] >= elephant_ll - 1e-3 * abs(elephant_ll)
    rates = ours.predict(data.tensors)
    assert bits_per_spike(rates.eval_rates_heldout, data.eval_spikes_heldout) == pytest.approx(
        elephant_cobps, abs=0.005)


def test_model_predicts_every_array_beats_the_null_and_repeats_exactly():
    data = simulate(seed=5)
    tensors = data.tensors
    first = make_model("gpfa", latent_dim=4, n_iter=30).fit(tensors)
    rates = first.predict(tensors)
    rates.check_shapes(tensors.sizes)
    assert rates.latents["train_latents"].shape == (tensors.n_train, tensors.n_bins, 4)
    assert rates.latents["eval_latents"].shape == (tensors.n_eval, tensors.n_bins, 4)
    for array in rates.arrays().values():
        assert np.isfinite(array).all() and (array > 0).all()
    assert bits_per_spike(rates.eval_rates_heldout, data.targets.eval_spikes_heldout) > 0.1
    forward_rates = np.concatenate([rates.eval_rates_heldin_forward, rates.eval_rates_heldout_forward],
                                   axis=2)
    forward_spikes = np.concatenate([data.targets.eval_spikes_heldin_forward,
                                     data.targets.eval_spikes_heldout_forward], axis=2)
    assert bits_per_spike(forward_rates, forward_spikes) > -0.05
    assert first.timescales_ms_.shape == (4,) and (first.timescales_ms_ > 0).all()
    again = make_model("gpfa", latent_dim=4, n_iter=30).fit(tensors).predict(tensors)
    for name, array in rates.arrays().items():
        np.testing.assert_array_equal(array, again.arrays()[name])


def test_units_that_never_vary_in_training_are_left_to_the_readout():
    data = simulate(seed=6)
    tensors = data.tensors
    tensors.train_spikes_heldin[:, :, 0] = 0.0
    tensors.train_spikes_heldin[1:, :, 1] = np.nan  # observed in one trial only, and constant there
    tensors.train_spikes_heldin[0, :, 1] = 2.0
    tensors.train_spikes_heldin[:5, :3, 2] = np.nan
    model = make_model("gpfa", latent_dim=3, n_iter=10).fit(tensors)
    assert not model.fitted_units_[:2].any() and model.fitted_units_[2:].all()
    rates = model.predict(tensors)
    assert np.isfinite(rates.eval_rates_heldin[:, :, 2:]).all()
    assert (rates.train_rates_heldin[:, :, 0] == 0).all()
    assert np.isfinite(rates.train_rates_heldin[:, :, 1]).all()


def test_cut_segments_cover_every_bin_with_equal_lengths():
    sequences = np.arange(2 * 11).reshape(2, 11, 1).astype(float)
    segments = em.cut_segments(sequences, 4)
    assert segments.shape == (6, 4, 1)
    assert set(segments[:, :, 0].ravel()) == set(sequences.ravel())
    assert em.cut_segments(sequences, 11) is sequences


@pytest.mark.parametrize("name, value", [
    ("latent_dim", 0), ("latent_dim", 2.5), ("latent_dim", True), ("n_iter", -1), ("tolerance", -1e-3),
    ("min_var_frac", 1.0), ("timescale_ms", 0.0), ("gp_noise_variance", 1.0), ("segment_bins", 1),
    ("readout_alpha", -0.1),
])
def test_out_of_range_hyperparameters_are_rejected_by_name(name, value):
    with pytest.raises(ModelError, match=name):
        make_model("gpfa", **{name: value})


def test_bad_fits_fail_before_any_work():
    data = simulate(n_heldin=6)
    with pytest.raises(ModelError, match="latent_dim=7"):
        make_model("gpfa", latent_dim=7).fit(data.tensors)
    with pytest.raises(ModelError, match="before fit"):
        make_model("gpfa").predict(data.tensors)


@pytest.mark.parametrize("dataset", sorted(BUILTIN))
@pytest.mark.parametrize("bin_ms", [5, 20])
def test_config_gives_a_valid_model_for_every_builtin_dataset(dataset, bin_ms):
    model = configured_model("gpfa", dataset, bin_ms)
    assert isinstance(model, gpfa.Gpfa)
    if dataset == "mc_maze":
        assert model.config.latent_dim == 52
