"""Ridge regression with its penalty chosen by k-fold cross-validation, in closed form.

Gives the answer of scikit-learn's `GridSearchCV(Ridge(), {"alpha": np.logspace(-4, 0, 9)})`
with its defaults, which nlb_tools 0.0.4 uses to decode velocity: `KFold(5)` without shuffling
(contiguous folds, the first `n % 5` one row longer), Ridge with an intercept (design and
targets centred on the training rows), each fold scored by R2 averaged uniformly over outputs,
folds averaged, the first of the best-scoring alphas kept, and a refit on all rows.

scikit-learn copies and re-centres the design and runs a Cholesky solve 45 times (9 alphas x 5
folds). Here the design is read once: each fold's Gram block is computed on rows centred on the
mean of all rows (so the per-fold re-centring is a small, well-conditioned correction), a
fold's training Gram matrix is the total minus its own block, and one eigendecomposition per
fold solves all alphas at once.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import numpy as np

from .r2 import explained_fraction

DEFAULT_ALPHAS = np.logspace(-4, 0, 9)
DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class RidgeFit:
    """A fitted decoder: `predict(x) = x @ coef + intercept`."""

    alpha: float
    coef: np.ndarray  # (features, outputs)
    intercept: np.ndarray  # (outputs,)
    cv_r2: np.ndarray  # (alphas,) mean validation R2 of each candidate alpha

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.coef + self.intercept


@dataclass(frozen=True)
class _RowSums:
    """Sums over a set of rows of the design `x` and targets `y`, both centred on all rows' mean."""

    n_rows: int
    x_sum: np.ndarray  # (features,)
    y_sum: np.ndarray  # (outputs,)
    xx: np.ndarray  # (features, features)
    xy: np.ndarray  # (features, outputs)

    def __add__(self, other: _RowSums) -> _RowSums:
        return _RowSums(self.n_rows + other.n_rows, self.x_sum + other.x_sum, self.y_sum + other.y_sum,
                        self.xx + other.xx, self.xy + other.xy)

    def __sub__(self, other: _RowSums) -> _RowSums:
        return _RowSums(self.n_rows - other.n_rows, self.x_sum - other.x_sum, self.y_sum - other.y_sum,
                        self.xx - other.xx, self.xy - other.xy)


def kfold_bounds(n_rows: int, n_folds: int = DEFAULT_FOLDS) -> list[tuple[int, int]]:
    """(start, stop) of each fold, as scikit-learn's `KFold(n_folds)` without shuffling splits."""
    if n_rows < n_folds:
        raise ValueError(f"cannot split {n_rows} rows into {n_folds} folds")
    sizes = np.full(n_folds, n_rows // n_folds)
    sizes[: n_rows % n_folds] += 1
    stops = np.cumsum(sizes)
    return [(int(stop - size), int(stop)) for size, stop in zip(sizes, stops)]


def _row_sums(x_centred: np.ndarray, y_centred: np.ndarray) -> _RowSums:
    return _RowSums(len(x_centred), x_centred.sum(axis=0), y_centred.sum(axis=0),
                    x_centred.T @ x_centred, x_centred.T @ y_centred)


def _solve(sums: _RowSums, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge with intercept on the rows behind `sums`, for every alpha: coefficients
    (alphas, features, outputs) and intercepts (alphas, outputs), in the centred coordinates."""
    x_mean = sums.x_sum / sums.n_rows
    y_mean = sums.y_sum / sums.n_rows
    gram = sums.xx - sums.n_rows * np.outer(x_mean, x_mean)
    cross = sums.xy - sums.n_rows * np.outer(x_mean, y_mean)
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    projected = eigenvectors.T @ cross
    coefs = eigenvectors @ (projected[None] / (eigenvalues[None, :, None] + alphas[:, None, None]))
    intercepts = y_mean - np.einsum("f,afo->ao", x_mean, coefs)
    return coefs, intercepts


def _best_alpha_index(mean_r2: np.ndarray) -> int:
    # GridSearchCV ranks failed (NaN) candidates last and keeps the first of tied best ones.
    if np.isnan(mean_r2).all():
        return 0
    return int(np.argmax(np.where(np.isnan(mean_r2), -np.inf, mean_r2)))


def fit_ridge_cv(x: np.ndarray, y: np.ndarray, alphas: np.ndarray = DEFAULT_ALPHAS,
                 n_folds: int = DEFAULT_FOLDS) -> RidgeFit:
    """Choose alpha by k-fold CV (mean R2 over folds) and refit on all rows; `x` is
    (rows, features) and `y` (rows, outputs), both free of NaN."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    alphas = np.asarray(alphas, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"need 2-d x and y with the same rows, got {x.shape} and {y.shape}")
    bounds = kfold_bounds(len(x), n_folds)
    x_mean = x.mean(axis=0)
    y_mean = y.mean(axis=0)
    fold_sums = [_row_sums(x[start:stop] - x_mean, y[start:stop] - y_mean) for start, stop in bounds]
    total = functools.reduce(operator.add, fold_sums)

    fold_r2 = np.empty((n_folds, len(alphas)))
    for fold, ((start, stop), sums) in enumerate(zip(bounds, fold_sums)):
        if stop - start < 2:
            fold_r2[fold] = np.nan  # R2 is undefined on one row; scikit-learn scores it NaN
            continue
        coefs, intercepts = _solve(total - sums, alphas)
        n_alphas, n_features, n_outputs = coefs.shape
        # All alphas in one matrix product, on the uncentred rows (the shift goes into the intercept).
        stacked = coefs.transpose(1, 0, 2).reshape(n_features, n_alphas * n_outputs)
        shift = (intercepts - np.einsum("f,afo->ao", x_mean, coefs)).reshape(-1)
        predictions = (x[start:stop] @ stacked + shift).reshape(stop - start, n_alphas, n_outputs)
        y_val = y[start:stop] - y_mean
        ss_res = ((y_val[:, None, :] - predictions) ** 2).sum(axis=0)
        ss_tot = ((y_val - y_val.mean(axis=0)) ** 2).sum(axis=0)
        fold_r2[fold] = explained_fraction(ss_res, ss_tot[None]).mean(axis=1)

    mean_r2 = fold_r2.mean(axis=0)
    best = _best_alpha_index(mean_r2)
    coefs, intercepts = _solve(total, alphas[best : best + 1])
    coef = coefs[0]
    # Back from coordinates centred on all rows' mean to the original ones.
    intercept = intercepts[0] + y_mean - x_mean @ coef
    return RidgeFit(alpha=float(alphas[best]), coef=coef, intercept=intercept, cv_r2=mean_r2)
