"""jPCA (Churchland et al. 2012): how much of a population's condition-averaged dynamics around an
event is rotation.

The latents (conditions, bins, dims) have the mean over conditions at each bin removed (what is
common to all conditions is not the rotation), are projected onto their first `n_components`
principal components, and their change from bin to bin, dX, is fitted as dX = X M by least
squares, once with M unconstrained and once with M skew-symmetric (pure rotation: a
skew-symmetric M has imaginary eigenvalues and conserves |X|). X is the midpoint of the two bins
a difference spans: with it a pure rotation is fitted exactly by a skew-symmetric M (the Cayley
transform of the rotation), where X at the first bin would leave a symmetric part of order
(angle per bin)^2. The skew-symmetric fit is in closed form: M minimising |dX - X M| among
skew-symmetric matrices solves the Sylvester equation C M + M C = D - D^T, with C = X^T X and
D = X^T dX (the gradient's skew-symmetric part vanishes there). R2 is the fraction of dX's
variance (about its mean) that X M explains.

The top jPC plane is spanned by the eigenvectors of M_skew's eigenvalue pair of largest
magnitude (the fastest rotation), oriented so that the rotation runs counter-clockwise and
turned within the plane so that the conditions' states at the first bin spread most along
jPC1, as in the paper's figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_sylvester

from ..core.errors import NlbSuiteError

DEFAULT_COMPONENTS = 6


class JpcaError(NlbSuiteError, ValueError):
    """Latents that jPCA cannot analyse."""


@dataclass(frozen=True)
class JpcaResult:
    """jPCA of condition-averaged latents (see the module).

    `components` (dims, k) and `mean` (bins, dims) take latents into the PC space (x - mean) @
    components; `plane` (k, 2) is the top jPC plane in that space and `plane_dims` (dims, 2) the
    same plane in the latents' own coordinates; `projected` (conditions, bins, 2) are the
    trajectories in the plane. `rotation_per_bin` is the angle (radians) the plane's rotation
    turns per bin (the eigenvalue's imaginary part)."""

    r2_unconstrained: float
    r2_skew: float
    m_unconstrained: np.ndarray
    m_skew: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    plane: np.ndarray
    plane_dims: np.ndarray
    projected: np.ndarray
    rotation_per_bin: float

    @property
    def skew_fraction(self) -> float:
        """R2 of the rotational fit over R2 of the unconstrained fit."""
        return self.r2_skew / self.r2_unconstrained if self.r2_unconstrained > 0 else float("nan")


def _r2(target: np.ndarray, fitted: np.ndarray) -> float:
    total = float(((target - target.mean(axis=0)) ** 2).sum())
    return 1.0 - float(((target - fitted) ** 2).sum()) / total if total > 0 else float("nan")


def fit_unconstrained(x: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """M minimising |dx - x M| (least squares)."""
    return np.linalg.lstsq(x, dx, rcond=None)[0]


def fit_skew(x: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """The skew-symmetric M minimising |dx - x M|: the solution of C M + M C = D - D^T."""
    c = x.T @ x
    d = x.T @ dx
    m = solve_sylvester(c, c, d - d.T)
    return (m - m.T) / 2  # exactly skew-symmetric (the solution is, up to rounding)


def _top_plane(m_skew: np.ndarray, first_states: np.ndarray) -> tuple[np.ndarray, float]:
    # Rows are states (dX = X M), so as columns the states follow A = M^T.
    values, vectors = np.linalg.eig(m_skew.T)
    top = int(np.argmax(values.imag))  # the pair's member with positive imaginary part
    omega = float(values.imag[top])
    v = vectors[:, top]
    # For A v = i w v with v = a + i b: A a = -w b and A b = w a, so a state's coordinates along
    # (b, a) turn counter-clockwise at angular speed w. Orthonormalise the pair.
    basis, _ = np.linalg.qr(np.stack([v.imag, v.real], axis=1))
    if np.linalg.det(basis.T @ np.stack([v.imag, v.real], axis=1)) < 0:
        basis[:, 1] *= -1
    # Turn within the plane so that the first-bin states spread most along jPC1 (keeps orientation).
    spread = first_states @ basis
    spread = spread - spread.mean(axis=0)
    _, _, vt = np.linalg.svd(spread, full_matrices=False)
    angle = np.arctan2(vt[0, 1], vt[0, 0])
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return basis @ turn, omega


def jpca(latents: np.ndarray, n_components: int = DEFAULT_COMPONENTS) -> JpcaResult:
    """jPCA of condition-averaged latents (conditions, bins, dims) (see the module)."""
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 3:
        raise JpcaError(f"jPCA needs condition-averaged latents (conditions, bins, dims), got shape {latents.shape}")
    n_conditions, n_bins, n_dims = latents.shape
    if not 2 <= n_components <= n_dims:
        raise JpcaError(f"jPCA: n_components must be between 2 and the latents' {n_dims} dimensions, "
                        f"got {n_components}")
    if n_conditions < 2 or n_bins < 3:
        raise JpcaError(f"jPCA needs at least 2 conditions and 3 bins, got {n_conditions} and {n_bins}")
    if not np.isfinite(latents).all():
        raise JpcaError("jPCA: the latents hold NaN or infinite values")
    mean = latents.mean(axis=0)
    centred = latents - mean
    _, _, vt = np.linalg.svd(centred.reshape(-1, n_dims), full_matrices=False)
    components = vt[:n_components].T
    states = centred @ components  # (conditions, bins, k)
    x = ((states[:, 1:] + states[:, :-1]) / 2).reshape(-1, n_components)
    dx = np.diff(states, axis=1).reshape(-1, n_components)
    m_unconstrained = fit_unconstrained(x, dx)
    m_skew = fit_skew(x, dx)
    plane, omega = _top_plane(m_skew, states[:, 0])
    return JpcaResult(
        r2_unconstrained=_r2(dx, x @ m_unconstrained), r2_skew=_r2(dx, x @ m_skew),
        m_unconstrained=m_unconstrained, m_skew=m_skew, components=components, mean=mean, plane=plane,
        plane_dims=components @ plane, projected=states @ plane, rotation_per_bin=omega,
    )
