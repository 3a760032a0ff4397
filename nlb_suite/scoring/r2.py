"""The coefficient of determination exactly as scikit-learn's `r2_score` computes it.

nlb_tools scores velocity decoding and PSTHs with `r2_score` (outputs averaged uniformly), and
the ridge grid search ranks alphas with it, so every R2 in the suite follows its rules: fewer
than two rows give NaN, and a constant target (zero total sum of squares) scores 1 when it is
predicted exactly and 0 otherwise, instead of NaN or -inf.
"""

from __future__ import annotations

import numpy as np


def explained_fraction(ss_res: np.ndarray, ss_tot: np.ndarray) -> np.ndarray:
    """Elementwise 1 - ss_res / ss_tot with scikit-learn's `force_finite` rule."""
    ss_res = np.asarray(ss_res, dtype=np.float64)
    ss_tot = np.asarray(ss_tot, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = 1.0 - ss_res / ss_tot
    return np.where(ss_res == 0, 1.0, np.where(ss_tot == 0, 0.0, ratio))


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """R2 of (rows, outputs) arrays, averaged uniformly over outputs."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    if y_true.shape[0] < 2:
        return float("nan")
    ss_res = ((y_true - y_pred) ** 2).sum(axis=0)
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    return float(explained_fraction(ss_res, ss_tot).mean())
