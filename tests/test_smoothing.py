"""The smoothing baseline: its kernel, NaN handling and sweep (tests/test_model_contract.py covers
what every model must do)."""


import numpy as np
import pytest
from scipy.signal import windows
from simulated_tensors import simulate

from nlb_suite.models.base import ModelError, make_model
from nlb_suite.models.smoothing import smooth_spikes
from nlb_suite.scoring.metrics import bits_per_spike


@pytest.fixture(scope="module")
def dataset():
    return simulate()


def test_beats_the_mean_rate_null_on_held_out_units(dataset):
    rates = make_model("smoothing", kern_sd_ms=40.0).fit(dataset.tensors).predict(dataset.tensors)
    co_bps = bits_per_spike(rates.eval_rates_heldout, dataset.targets.eval_spikes_heldout)
    assert co_bps > 0.02
    fp_bps = bits_per_spike(rates.eval_rates_heldout_forward, dataset.targets.eval_spikes_heldout_forward)
    assert np.isfinite(fp_bps)


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


def test_sweep_picks_from_the_grids_and_scores_every_pair(dataset):
    model = make_model("smoothing", sweep=True, kern_sd_grid_ms=[20, 60], alpha_grid=[0.01, 1.0])
    model.fit(dataset.tensors)
    assert model.kern_sd_ms_ in (20.0, 60.0) and model.alpha_ in (0.01, 1.0)
    assert len(model.sweep_scores_) == 4
    best = max(model.sweep_scores_, key=model.sweep_scores_.get)
    assert best == f"kern_sd_ms={model.kern_sd_ms_:g},alpha={model.alpha_:g}"


@pytest.mark.parametrize("kwargs, named", [  # the grids: the contract test checks the numbers
    ({"kern_sd_grid_ms": []}, "kern_sd_grid_ms"), ({"alpha_grid": [-0.1]}, "alpha_grid"),
    ({"kern_sd_grid_ms": [0.0]}, "kern_sd_grid_ms"), ({"validation_fraction": 1.0}, "validation_fraction"),
])
def test_out_of_range_hyperparameters(kwargs, named):
    with pytest.raises(ModelError, match=named):
        make_model("smoothing", **kwargs)


