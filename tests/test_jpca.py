"""jPCA against systems whose rotation is known, and its skew-symmetric fit against a dense
least-squares reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm, subspace_angles

from nlb_suite.report.jpca import JpcaError, fit_skew, fit_unconstrained, jpca


def embedded(states: np.ndarray, n_dims: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """States (conditions, bins, k) placed in n_dims dimensions by a random orthonormal map."""
    basis, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n_dims, states.shape[-1])))
    return states @ basis.T, basis


def flow(matrix: np.ndarray, starts: np.ndarray, n_bins: int) -> np.ndarray:
    """Trajectories (conditions, bins, k) of dx/dt = x @ matrix from the rows of `starts`."""
    steps = [np.linalg.matrix_power(expm(matrix), t) for t in range(n_bins)]
    return np.stack([starts @ step for step in steps], axis=1)


def rotation(omega: float) -> np.ndarray:
    return np.array([[0.0, omega], [-omega, 0.0]])


def test_a_pure_rotation_is_all_skew() -> None:
    """Two planes rotating at 0.15 and 0.05 rad per bin: both fits explain everything, and the top
    jPC plane is the faster plane, turning counter-clockwise at its speed."""
    rng = np.random.default_rng(1)
    generator = np.zeros((4, 4))
    generator[:2, :2], generator[2:, 2:] = rotation(0.15), rotation(0.05)
    states = flow(generator, rng.normal(size=(12, 4)), 40)
    latents, basis = embedded(states, 10)
    result = jpca(latents, n_components=4)
    assert result.r2_skew > 0.9999 and result.r2_unconstrained > 0.9999
    assert result.skew_fraction == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(result.m_skew, -result.m_skew.T, atol=1e-12)
    assert result.rotation_per_bin == pytest.approx(0.15, abs=1e-3)
    assert np.max(subspace_angles(result.plane_dims, basis[:, :2])) < 1e-4
    # Counter-clockwise in the plane: successive positions turn by +0.15 rad.
    p = result.projected
    turn = np.arctan2(p[:, :-1, 0] * p[:, 1:, 1] - p[:, :-1, 1] * p[:, 1:, 0],
                      (p[:, :-1] * p[:, 1:]).sum(axis=2))
    np.testing.assert_allclose(turn, 0.15, atol=0.02)
    # jPC1 carries the spread of the first-bin states.
    first = p[:, 0] - p[:, 0].mean(axis=0)
    assert first[:, 0].var() >= first[:, 1].var()


def test_a_decay_without_rotation_has_no_skew_part() -> None:
    """A decay at one rate leaves nothing for a rotation to explain; decays at several rates
    leave little (with a finite set of conditions a skew-symmetric M can absorb a bit of the
    anisotropy: 5 % here)."""
    rng = np.random.default_rng(2)
    starts = rng.normal(size=(10, 6))
    latents, _ = embedded(flow(-0.05 * np.eye(6), starts, 30), 12)
    result = jpca(latents)
    assert result.r2_unconstrained > 0.9999 and abs(result.r2_skew) < 1e-6
    latents, _ = embedded(flow(-np.diag([0.02, 0.05, 0.08, 0.12, 0.03, 0.07]), starts, 30), 12)
    result = jpca(latents)
    assert result.r2_unconstrained > 0.999 and abs(result.r2_skew) < 0.1 and result.skew_fraction < 0.1


def test_a_spiral_is_as_rotational_as_its_eigenvalues_say() -> None:
    """dx/dt = x (w J - l I): the rotation explains w^2 / (w^2 + l^2) of dx's variance."""
    rng = np.random.default_rng(3)
    for omega, decay in ((0.1, 0.1), (0.12, 0.04)):
        latents, _ = embedded(flow(rotation(omega) - decay * np.eye(2), rng.normal(size=(8, 2)), 25), 5)
        result = jpca(latents, n_components=2)
        assert result.r2_skew == pytest.approx(omega**2 / (omega**2 + decay**2), abs=0.01)
        assert result.r2_unconstrained > 0.999


def dense_skew_fit(x: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """The skew-symmetric least-squares fit the plain way: one design column per free entry."""
    k = x.shape[1]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    columns = []
    for i, j in pairs:
        basis = np.zeros((k, k))
        basis[i, j], basis[j, i] = 1.0, -1.0
        columns.append((x @ basis).ravel())
    coefficients = np.linalg.lstsq(np.stack(columns, axis=1), dx.ravel(), rcond=None)[0]
    m = np.zeros((k, k))
    for (i, j), c in zip(pairs, coefficients):
        m[i, j], m[j, i] = c, -c
    return m


def test_skew_fit_matches_a_dense_reference() -> None:
    rng = np.random.default_rng(4)
    for k in (2, 3, 6, 8):
        x = rng.normal(size=(300, k)) @ rng.normal(size=(k, k))
        dx = x @ rng.normal(size=(k, k)) + rng.normal(size=(300, k))
        ours, reference = fit_skew(x, dx), dense_skew_fit(x, dx)
        np.testing.assert_allclose(ours, reference, atol=1e-9)
        np.testing.assert_allclose(fit_unconstrained(x, dx), np.linalg.lstsq(x, dx, rcond=None)[0])
        # No skew-symmetric neighbour fits better.
        best = ((dx - x @ ours) ** 2).sum()
        for _ in range(5):
            nudge = rng.normal(size=(k, k)) * 1e-3
            assert ((dx - x @ (ours + nudge - nudge.T)) ** 2).sum() > best


@pytest.mark.parametrize(("latents", "kwargs", "message"), [
    (np.zeros((4, 10)), {}, "conditions, bins, dims"),
    (np.ones((4, 10, 3)), {"n_components": 6}, "between 2 and the latents' 3"),
    (np.ones((1, 10, 6)), {}, "at least 2 conditions"),
    (np.full((3, 10, 6), np.nan), {}, "NaN"),
])
def test_bad_latents_are_refused(latents: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(JpcaError, match=message):
        jpca(latents, **kwargs)
