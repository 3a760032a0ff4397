"""The linear-Gaussian building blocks: factor analysis against scikit-learn, missing patterns."""

import numpy as np
from sklearn.decomposition import FactorAnalysis

from nlb_suite.models.linear import factor_analysis, group_by_pattern


def test_factor_analysis_equals_scikit_learns_exact_one() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)) @ rng.normal(size=(3, 15)) + rng.normal(size=(400, 15)) * rng.uniform(0.2, 2, 15)
    reference = FactorAnalysis(3, svd_method="lapack", noise_variance_init=x.var(axis=0)).fit(x)
    centred = x - x.mean(axis=0)
    ours = factor_analysis(centred.T @ centred / len(x), len(x), 3)
    # Loadings are defined up to a rotation of the latents: compare what they imply.
    np.testing.assert_allclose(ours.loadings @ ours.loadings.T, reference.components_.T @ reference.components_,
                               atol=1e-10)
    np.testing.assert_allclose(ours.noise, reference.noise_variance_, rtol=1e-10)
    assert ours.n_iter == reference.n_iter_


def test_noise_floor_holds() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 6))  # rank 4: some noise would reach 0
    centred = x - x.mean(axis=0)
    model = factor_analysis(centred.T @ centred / len(x), len(x), 4, noise_floor=1e-3)
    assert (model.noise >= 1e-3).all()


def test_patterns_in_order_of_first_appearance() -> None:
    observed = np.ones((5, 3, 2), dtype=bool)
    observed[1, 0, 0] = observed[3, 0, 0] = False
    observed[4, :, 1] = False
    patterns = group_by_pattern(observed)
    assert [p.members.tolist() for p in patterns] == [[0, 2], [1, 3], [4]]
    assert all((observed[p.members] == p.observed).all() for p in patterns)
