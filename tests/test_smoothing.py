"""The smoothing baseline on a small simulated dataset: shapes, beating the null, NaN, sweep."""

import dataclasses

import numpy as np
import pytest
from scipy.signal import windows
from simulated_tensors import simulate

from nlb_suite.core.arrays import RATE_ARRAYS
from nlb_suite.models.base import ModelError, make_model
from nlb_suite.models.smoothing import smooth_spikes
from nlb_suite.scoring.metrics import bits_per_spike


@pytest.fixture(scope="module")
def dataset():
    return simulate()


def test_rates_have_the_submission_shapes_and_are_positive(dataset):
    rates = make_model("smoothing", kern_sd_ms=40.0).fit(dataset.tensors).predict(dataset.tensors)
    rates.check_shapes(dataset.tensors.sizes)
    for name, array in rates.arrays().items():
        assert array.dtype == np.float32, name
        assert np.all(np.isfinite(array)) and np.all(array > 0), name


def test_beats_the_mean_rate_null_on_held_out_units(dataset):
    rates = make_model("smoothing", kern_sd_ms=40.0).fit(dataset.tensors).predict(dataset.tensors)
    co_bps = bits_per_spike(rates.eval_rates_heldout, dataset.targets.eval_spikes_heldout)
    assert co_bps > 0.02
    fp_bps = bits_per_spike(rates.eval_rates_heldout_forward, dataset.targets.eval_spikes_heldout_forward)
    assert np.isfinite(fp_bps)


def test_same_inputs_give_identical_rates(dataset):
    first = make_model("smoothing").fit(dataset.tensors).predict(dataset.tensors)
    second = make_model("smoothing").fit(dataset.tensors).predict(dataset.tensors)
    for name in RATE_ARRAYS:
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


def test_smoothing_kernel_matches_the_benchmark_window_in_the_interior():
    sd_bins = 4.0
    spikes = np.zeros((1, 80, 1))
    spikes[0, 40, 0] = 1.0
    smoothed = smooth_spikes(spikes, sd_bins)[0, :, 0]
    reference = windows.gaussian(2 * 12 + 1, sd_bins)
    np.testing.assert_allclose(smoothed[28:53], reference / reference.sum(), rtol=1e-12)


def test_unobserved_bins_are_not_read_as_silence():
    spikes = np.full((1, 20, 1), 2.0)
    spikes[0, 5:8, 0] = np.nan
    smoothed = smooth_spikes(spikes, 2.0)
    np.testing.assert_allclose(smoothed, 2.0)
    spikes[0, :, 0] = np.nan
    assert np.isnan(smooth_spikes(spikes, 2.0)).all()


def test_nan_in_held_in_spikes_still_gives_finite_rates(dataset):
    heldin = dataset.tensors.train_spikes_heldin.copy()
    heldin[:5, :, 0] = np.nan  # a unit unobserved for whole trials
    tensors = dataclasses.replace(dataset.tensors, train_spikes_heldin=heldin)
    rates = make_model("smoothing").fit(tensors).predict(tensors)
    assert all(np.isfinite(array).all() for array in rates.arrays().values())


def test_sweep_picks_from_the_grids_and_scores_every_pair(dataset):
    model = make_model("smoothing", sweep=True, kern_sd_grid_ms=[20, 60], alpha_grid=[0.01, 1.0])
    model.fit(dataset.tensors)
    assert model.kern_sd_ms_ in (20.0, 60.0) and model.alpha_ in (0.01, 1.0)
    assert len(model.sweep_scores_) == 4
    best = max(model.sweep_scores_, key=model.sweep_scores_.get)
    assert best == f"kern_sd_ms={model.kern_sd_ms_:g},alpha={model.alpha_:g}"


@pytest.mark.parametrize("kwargs, named", [
    ({"kern_sd_ms": 0}, "kern_sd_ms"), ({"alpha": -1}, "alpha"), ({"log_offset": 0}, "log_offset"),
    ({"kern_sd_grid_ms": []}, "kern_sd_grid_ms"), ({"alpha_grid": [-0.1]}, "alpha_grid"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
])
def test_out_of_range_hyperparameters(kwargs, named):
    with pytest.raises(ModelError, match=named):
        make_model("smoothing", **kwargs)


def test_predict_before_fit(dataset):
    with pytest.raises(ModelError, match="before fit"):
        make_model("smoothing").predict(dataset.tensors)
