"""The classic Kalman-filter velocity decoder (Wu et al. 2006), the decoding reference for reports.

State: hand velocity, x_{t+1} = A x_t + w (W). Observation: binned held-in spike counts,
z_t = H x_t + b + q (Q, full covariance). A, W, H, b, Q and the initial state's mean and covariance
are least-squares / sample estimates from the training trials (no EM: the state is observed in
training), and eval trials are decoded causally by the Kalman filter, as in an online decoder.
NaN spike entries are skipped by the filter; rows with NaN velocity are left out of the fits.
"""

from __future__ import annotations

import numpy as np

from ..core.arrays import EvalTargets, Tensors
from ..models.base import ModelError
from ..models.kalman import LinearGaussianSSM, kalman_filter
from ..scoring.r2 import r2_score


class KalmanVelocityDecoder:
    """Wu et al. (2006) Kalman filter from spike counts to velocity.

    Parameters
    ----------
    noise_floor : added to the diagonal of the spike-noise covariance Q, as a fraction of its
        mean diagonal, so that silent or collinear units do not make Q singular.
    """

    def __init__(self, noise_floor: float = 1e-3) -> None:
        if not (np.isfinite(noise_floor) and noise_floor > 0):
            raise ModelError(f"KalmanVelocityDecoder: noise_floor must be a finite number > 0, "
                             f"got {noise_floor!r}")
        self.noise_floor = float(noise_floor)

    def fit(self, spikes: np.ndarray, velocity: np.ndarray) -> "KalmanVelocityDecoder":
        """Estimate the model from (trials, bins, units) counts and (trials, bins, dims) velocity."""
        spikes, velocity = _check_pair(spikes, velocity)
        n_dims = velocity.shape[2]
        before, after = velocity[:, :-1].reshape(-1, n_dims), velocity[:, 1:].reshape(-1, n_dims)
        pairs = ~(np.isnan(before).any(axis=1) | np.isnan(after).any(axis=1))
        if pairs.sum() <= n_dims:
            raise ModelError("KalmanVelocityDecoder: too few consecutive bins with known velocity")
        before, after = before[pairs], after[pairs]
        transition = np.linalg.lstsq(before, after, rcond=None)[0].T
        transition_residual = after - before @ transition.T

        states = velocity.reshape(-1, n_dims)
        counts = spikes.reshape(-1, spikes.shape[2])
        rows = ~(np.isnan(states).any(axis=1) | np.isnan(counts).any(axis=1))
        design = np.hstack([states[rows], np.ones((int(rows.sum()), 1))])
        tuning = np.linalg.lstsq(design, counts[rows], rcond=None)[0].T  # (units, dims + 1)
        spike_residual = counts[rows] - design @ tuning.T
        spike_cov = spike_residual.T @ spike_residual / rows.sum()
        spike_cov += self.noise_floor * max(float(np.trace(spike_cov)) / spike_cov.shape[0], 1e-12) \
            * np.eye(spike_cov.shape[0])

        initial = velocity[:, 0][~np.isnan(velocity[:, 0]).any(axis=1)]
        if len(initial) < 2:
            raise ModelError("KalmanVelocityDecoder: need at least 2 training trials with a known "
                             "velocity in their first bin")
        initial_cov = np.cov(initial.T, bias=True).reshape(n_dims, n_dims)
        self.model_ = LinearGaussianSSM(
            transition=transition,
            transition_cov=transition_residual.T @ transition_residual / len(transition_residual),
            observation=tuning[:, :n_dims], observation_offset=tuning[:, n_dims],
            observation_cov=spike_cov, initial_mean=initial.mean(axis=0),
            initial_cov=initial_cov + 1e-9 * np.eye(n_dims))
        return self

    def predict(self, spikes: np.ndarray) -> np.ndarray:
        """Filtered velocity (trials, bins, dims) from (trials, bins, units) counts."""
        if not hasattr(self, "model_"):
            raise ModelError("KalmanVelocityDecoder.predict called before fit")
        spikes = np.asarray(spikes, dtype=np.float64)
        return kalman_filter(self.model_, spikes).means


def kalman_decoder_r2(tensors: Tensors, targets: EvalTargets, noise_floor: float = 1e-3) -> float:
    """Velocity R2 of the Wu decoder on eval trials, with the NLB vel-R2 conventions: trials x
    bins flattened, rows with NaN behaviour dropped, R2 averaged uniformly over dimensions; with
    decode masks (area2), one decoder per mask column and the R2 values averaged."""
    if tensors.train_behavior is None or targets.eval_behavior is None:
        raise ModelError(f"{tensors.dataset}: no behaviour to decode (train or eval behaviour missing)")
    if (tensors.train_decode_mask is None) != (targets.eval_decode_mask is None):
        raise ModelError(f"{tensors.dataset}: decode masks must be given for both train and eval "
                         "trials or for neither")
    if tensors.train_decode_mask is None:
        train_masks = np.ones((tensors.n_train, 1), dtype=bool)
        eval_masks = np.ones((tensors.n_eval, 1), dtype=bool)
    else:
        train_masks = np.asarray(tensors.train_decode_mask, dtype=bool)
        eval_masks = np.asarray(targets.eval_decode_mask, dtype=bool)
    scores = []
    for train_trials, eval_trials in zip(train_masks.T, eval_masks.T):
        decoder = KalmanVelocityDecoder(noise_floor).fit(
            tensors.train_spikes_heldin[train_trials], tensors.train_behavior[train_trials])
        predicted = decoder.predict(tensors.eval_spikes_heldin[eval_trials])
        truth = np.asarray(targets.eval_behavior[eval_trials], dtype=np.float64)
        truth, predicted = truth.reshape(-1, truth.shape[2]), predicted.reshape(-1, truth.shape[2])
        known = ~np.isnan(truth).any(axis=1)
        scores.append(r2_score(truth[known], predicted[known]))
    return float(np.mean(scores))


def _check_pair(spikes: np.ndarray, velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    spikes = np.asarray(spikes, dtype=np.float64)
    velocity = np.asarray(velocity, dtype=np.float64)
    if spikes.ndim != 3 or velocity.ndim != 3 or spikes.shape[:2] != velocity.shape[:2]:
        raise ModelError(f"KalmanVelocityDecoder: spikes {spikes.shape} and velocity "
                         f"{velocity.shape} must be (trials, bins, units) and (trials, bins, dims)")
    if spikes.shape[1] < 2:
        raise ModelError("KalmanVelocityDecoder: trials need at least 2 bins")
    return spikes, velocity
