"""One contract for every registered model, in the spirit of scikit-learn's `check_estimator`:
what fit and predict must do whatever the model is. A model added to the registry (an entry
point, or @register_model) is checked here too; give it fast settings in FAST below."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from lfads_testing import one_torch_thread  # noqa: F401  (autouse fixture)
from simulated_tensors import simulate

from nlb_suite.core.arrays import RATE_ARRAYS, Tensors
from nlb_suite.core.poisson import bits_per_spike
from nlb_suite.models.base import (
    Estimator,
    Hyperparameters,
    ModelError,
    hyperparameter_defaults,
    make_model,
    model_class,
    model_names,
)

# Settings that make each model fit the small simulated dataset in a second or two. Only the
# budget shrinks: sizes and methods are the models' own.
FAST: dict[str, dict[str, Any]] = {
    "smoothing": {},
    "gpfa": {"latent_dim": 4, "n_iter": 20},
    "kalman": {"latent_dim": 4, "n_iter": 15},
    "lfads": {"ic_enc_dim": 16, "ci_enc_dim": 8, "con_dim": 8, "co_dim": 2, "ic_dim": 8, "gen_dim": 16,
              "fac_dim": 4, "batch_size": 16, "max_epochs": 30, "patience": 30, "kl_increase_epoch": 5,
              "l2_increase_epoch": 5, "lr": 0.01, "n_samples": 4},
    "ndt": {"n_layers": 1, "ff_dim": 32, "batch_size": 16, "max_epochs": 60, "patience": 60, "lr": 5e-3,
            "dropout": 0.1, "dropout_attention": 0.1, "dropout_embedding": 0.1, "dropout_rates": 0.1,
            "warmup_fraction": 0.05},
    "stndt": {"n_layers": 1, "ff_dim": 32, "batch_size": 16, "max_epochs": 60, "patience": 60, "lr": 5e-3,
              "dropout": 0.1, "dropout_attention": 0.1, "dropout_embedding": 0.1, "dropout_rates": 0.1,
              "warmup_fraction": 0.05},
}
# Each model must beat the mean-rate null (co-bps 0 by construction) on the held-out units.
MODELS = [name for name in model_names() if name in FAST or model_class(name).__module__.startswith("nlb_suite")]


def _model(name: str, **extra: Any) -> Any:
    if name not in FAST:
        pytest.fail(f"model {name!r} is registered but has no fast settings in tests/test_model_contract.py FAST")
    return make_model(name, **FAST[name], **extra)


@pytest.fixture(scope="module")
def data() -> Any:
    return simulate(seed=11)


@pytest.fixture(scope="module")
def fitted(data: Any) -> dict[str, tuple[Any, Any]]:
    return {}


def _fit_predict(name: str, tensors: Tensors, cache: dict[str, tuple[Any, Any]]) -> tuple[Any, Any]:
    if name not in cache:
        model = _model(name).fit(tensors)
        cache[name] = (model, model.predict(tensors))
    return cache[name]


@pytest.mark.parametrize("name", MODELS)
def test_rates_have_every_array_in_its_shape_finite_and_non_negative(name: str, data: Any, fitted: dict) -> None:
    _, rates = _fit_predict(name, data.tensors, fitted)
    rates.check_shapes(data.tensors.sizes)
    for array_name in RATE_ARRAYS:
        array = getattr(rates, array_name)
        assert np.isfinite(array).all() and (array >= 0).all(), array_name
    for key, latents in rates.latents.items():
        assert latents.shape[0] in (data.tensors.n_train, data.tensors.n_eval) and latents.ndim == 3, key


@pytest.mark.parametrize("name", MODELS)
def test_beats_the_mean_rate_null_on_held_out_units(name: str, data: Any, fitted: dict) -> None:
    _, rates = _fit_predict(name, data.tensors, fitted)
    assert bits_per_spike(rates.eval_rates_heldout, data.targets.eval_spikes_heldout) > 0.05


@pytest.mark.parametrize("name", MODELS)
def test_same_hyperparameters_same_rates(name: str, data: Any, fitted: dict) -> None:
    _, rates = _fit_predict(name, data.tensors, fitted)
    again = _model(name).fit(data.tensors).predict(data.tensors)
    for array_name in RATE_ARRAYS:
        np.testing.assert_array_equal(getattr(again, array_name), getattr(rates, array_name), err_msg=array_name)


@pytest.mark.parametrize("name", MODELS)
def test_unobserved_entries_are_masked_not_fatal(name: str) -> None:
    data = simulate(seed=12)
    tensors = data.tensors
    tensors.train_spikes_heldin[:6, 5:9, :4] = np.nan
    tensors.train_spikes_heldout[2:8, :, 0] = np.nan
    tensors.eval_spikes_heldin[:3, 10:14, 2:5] = np.nan
    tensors.train_spikes_heldin_forward[:4, :, 1] = np.nan
    rates = _model(name).fit(tensors).predict(tensors)
    rates.check_shapes(tensors.sizes)
    assert all(np.isfinite(array).all() for array in rates.arrays().values())


@pytest.mark.parametrize("name", MODELS)
def test_fit_then_predict_on_new_trials(name: str, data: Any, fitted: dict) -> None:
    """A fitted model predicts other evaluation trials of the same units and bins."""
    model, _ = _fit_predict(name, data.tensors, fitted)
    other = simulate(n_eval=7, seed=13).tensors
    new = dataclasses.replace(data.tensors, eval_spikes_heldin=other.eval_spikes_heldin)
    rates = model.predict(new)
    rates.check_shapes(new.sizes)
    assert rates.eval_rates_heldout.shape[0] == 7


@pytest.mark.parametrize("name", MODELS)
def test_predict_before_fit_is_one_clear_error(name: str, data: Any) -> None:
    with pytest.raises(ModelError, match="before fit"):
        _model(name).predict(data.tensors)


@pytest.mark.parametrize("name", MODELS)
def test_bad_hyperparameters_fail_at_construction_naming_the_key(name: str) -> None:
    with pytest.raises(ModelError, match="no_such_key"):
        make_model(name, no_such_key=1)
    cls = model_class(name)
    assert issubclass(cls, Estimator) and issubclass(cls.Config, Hyperparameters)
    for item in dataclasses.fields(cls.Config):
        bounds = item.metadata["range"]
        if isinstance(item.default, bool) or not isinstance(item.default, (int, float)) or item.metadata["runtime"]:
            continue
        # Just outside the range, or the wrong type where the range is unbounded.
        bad: object = bounds.low - 1 if bounds.low > -math.inf else "wide"
        with pytest.raises(ModelError, match=item.name):
            make_model(name, **{item.name: bad})


@pytest.mark.parametrize("name", MODELS)
def test_hyperparameters_round_trip_through_get_params(name: str) -> None:
    model = _model(name)
    assert model.get_params() == {**hyperparameter_defaults(type(model)), **FAST[name]}
    assert type(model)(**model.get_params()).get_params() == model.get_params()
