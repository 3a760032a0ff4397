"""Closed-form ridge CV against scikit-learn's GridSearchCV(Ridge()), the decoder nlb_tools uses."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold

from nlb_suite.scoring.ridge import DEFAULT_ALPHAS, fit_ridge_cv, kfold_bounds


@pytest.mark.parametrize("n_rows", [5, 9, 10, 11, 23, 1004])
def test_folds_are_sklearn_kfold(n_rows: int) -> None:
    expected = [(int(test[0]), int(test[-1]) + 1) for _, test in KFold(5).split(np.zeros(n_rows))]
    assert kfold_bounds(n_rows) == expected


def test_fewer_rows_than_folds_is_refused() -> None:
    with pytest.raises(ValueError, match="4 rows into 5 folds"):
        kfold_bounds(4)


def design(rng: np.random.Generator, n_rows: int, n_features: int, scale: float, noise: float,
           n_outputs: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Rates-like collinear positive features and a noisy linear target."""
    latent = rng.standard_normal((n_rows, 3))
    x = scale * np.exp(0.4 * latent @ rng.standard_normal((3, n_features)) + 0.1 * rng.standard_normal((n_rows, n_features)))
    y = latent[:, :n_outputs] * 5 + noise * rng.standard_normal((n_rows, n_outputs)) + 3.0
    return x, y


CASES = [  # rows, features, feature scale, target noise, outputs
    (203, 12, 0.05, 2.0, 2), (311, 30, 0.02, 5.0, 2), (57, 8, 1.0, 0.5, 1), (12, 20, 0.3, 1.0, 2),
    (480, 40, 0.01, 8.0, 2), (96, 15, 0.1, 3.0, 3),
]


def test_same_alpha_scores_and_predictions_as_gridsearchcv() -> None:
    rng = np.random.default_rng(0)
    chosen = set()
    for n_rows, n_features, scale, noise, n_outputs in CASES:
        x, y = design(rng, n_rows, n_features, scale, noise, n_outputs)
        if n_rows == 57:
            x[:, 3] = 0.25  # a constant unit
        reference = GridSearchCV(Ridge(), {"alpha": DEFAULT_ALPHAS}).fit(x, y)
        fit = fit_ridge_cv(x, y)
        assert fit.alpha == reference.best_params_["alpha"]
        np.testing.assert_allclose(fit.cv_r2, reference.cv_results_["mean_test_score"], rtol=0, atol=1e-9)
        x_new = x[::2] * 1.1
        np.testing.assert_allclose(fit.predict(x_new), reference.predict(x_new).reshape(len(x_new), -1),
                                   rtol=0, atol=1e-8 * np.abs(y).max())
        chosen.add(fit.alpha)
    assert len(chosen) >= 3, f"the cases should exercise several alphas, got {sorted(chosen)}"
