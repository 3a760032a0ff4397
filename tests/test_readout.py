"""PoissonReadout against scikit-learn's PoissonRegressor, NaN handling and bad input."""

import numpy as np
import pytest
from sklearn.linear_model import PoissonRegressor

from nlb_suite.models.base import ModelError
from nlb_suite.models.readout import PoissonReadout


def _simulated(n_rows: int = 1500, n_features: int = 6, n_units: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n_rows, n_features))
    weights = rng.normal(scale=0.3, size=(n_features, n_units))
    counts = rng.poisson(np.exp(features @ weights - 1.0)).astype(float)
    return features, counts


def _sklearn_fit(features, counts, alpha):
    # newton-cholesky with a tight tol reaches the exact optimum, unlike lbfgs' default tol.
    fits = [PoissonRegressor(alpha=alpha, solver="newton-cholesky", tol=1e-12, max_iter=1000)
            .fit(features, column) for column in counts.T]
    return np.stack([fit.coef_ for fit in fits], axis=1), np.array([fit.intercept_ for fit in fits])


@pytest.mark.parametrize("alpha", [0.0, 0.01, 1.0])
def test_matches_sklearn_poisson_regressor(alpha):
    features, counts = _simulated()
    readout = PoissonReadout(alpha=alpha).fit(features, counts)
    coef, intercept = _sklearn_fit(features, counts, alpha)
    assert readout.converged_
    np.testing.assert_allclose(readout.coef_, coef, atol=1e-6)
    np.testing.assert_allclose(readout.intercept_, intercept, atol=1e-6)
    np.testing.assert_allclose(readout.predict(features), np.exp(features @ coef + intercept),
                               rtol=1e-6)


def test_nan_counts_drop_rows_per_unit_and_nan_features_drop_rows_for_all():
    features, counts = _simulated(seed=1)
    counts[:300, 0] = np.nan
    features[-200:, 2] = np.nan
    readout = PoissonReadout(alpha=0.1).fit(features, counts)
    usable = slice(0, len(features) - 200)
    coef0, intercept0 = _sklearn_fit(features[300:-200], counts[300:-200, :1], 0.1)
    coef1, intercept1 = _sklearn_fit(features[usable], counts[usable, 1:2], 0.1)
    np.testing.assert_allclose(readout.coef_[:, :1], coef0, atol=1e-6)
    np.testing.assert_allclose(readout.intercept_[:1], intercept0, atol=1e-6)
    np.testing.assert_allclose(readout.coef_[:, 1:2], coef1, atol=1e-6)
    np.testing.assert_allclose(readout.intercept_[1:2], intercept1, atol=1e-6)
    assert np.isnan(readout.predict(features[-3:])).all()


def test_silent_unit_predicts_zero_and_does_not_disturb_others():
    features, counts = _simulated(seed=2)
    counts[:, 3] = 0.0
    readout = PoissonReadout(alpha=0.01).fit(features, counts)
    rates = readout.predict(features)
    assert np.all(rates[:, 3] == 0.0)
    assert np.all(np.isfinite(rates)) and np.all(rates[:, [0, 1, 2, 4]] > 0)
    assert readout.converged_


@pytest.mark.parametrize("kwargs", [{"alpha": -1.0}, {"alpha": np.nan}, {"max_iter": 0},
                                    {"tol": 0.0}])
def test_bad_hyperparameters(kwargs):
    with pytest.raises(ModelError):
        PoissonReadout(**kwargs)


def test_bad_arrays():
    features, counts = _simulated(n_rows=50)
    with pytest.raises(ModelError, match="same rows"):
        PoissonReadout().fit(features, counts[:-1])
    with pytest.raises(ModelError, match=">= 0"):
        PoissonReadout().fit(features, -counts)
    with pytest.raises(ModelError, match="before fit"):
        PoissonReadout().predict(features)
    readout = PoissonReadout().fit(features, counts)
    with pytest.raises(ModelError, match="expected"):
        readout.predict(features[:, :2])
