"""The analyses behind the report's figures and claims, on plain arrays: principal components of
latents, velocity decoding (the vel-R2 ridge decoders on any features, and the classic
Kalman-filter decoder of Wu et al. 2006 on binned spikes), and event-aligned segments.

The Wu decoder: state hand velocity, x_{t+1} = A x_t + w (W); observation binned held-in spike
counts, z_t = H x_t + b + q (Q, full covariance). A, W, H, b, Q and the initial state's mean and
covariance are least-squares / sample estimates from the training trials (no EM: the state is
observed in training), and eval trials are decoded causally by the Kalman filter, as in an online
decoder. NaN spike entries are skipped by the filter; rows with NaN velocity are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.arrays import EvalTargets, Tensors
from ..models.base import ModelError
from ..models.kalman import LinearGaussianSSM, kalman_filter
from ..scoring.metrics import DecoderResult, decode_velocity
from ..scoring.r2 import r2_score


@dataclass(frozen=True)
class Decoded:
    """Decoded velocity of every eval trial (trials, bins, channels; NaN where none was recorded),
    its R2, and each decode mask's decoder rows (what the bootstrap of the R2 resamples)."""

    velocity: np.ndarray
    r2: float
    decoders: list[DecoderResult]


def principal_components(latents: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores on the first principal components of (trials, bins, dims) latents, over all trials
    and bins, and the fraction of variance each explains."""
    rows = latents.reshape(-1, latents.shape[2]).astype(np.float64)
    centred = rows - rows.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    n_components = min(n_components, len(singular))
    variance = singular ** 2
    scores = centred @ axes[:n_components].T
    return scores.reshape(*latents.shape[:2], n_components), variance[:n_components] / variance.sum()


def decode_masks(tensors: Tensors, targets: EvalTargets) -> tuple[np.ndarray, np.ndarray]:
    """(train, eval) decode masks (trials, masks); one mask of all trials when there are none."""
    if tensors.train_decode_mask is None or targets.eval_decode_mask is None:
        return np.ones((tensors.n_train, 1), dtype=bool), np.ones((tensors.n_eval, 1), dtype=bool)
    return np.asarray(tensors.train_decode_mask, dtype=bool), np.asarray(targets.eval_decode_mask, dtype=bool)


def ridge_decoded(train_rates: np.ndarray, eval_rates: np.ndarray, targets: EvalTargets) -> Decoded:
    """The vel-R2 metric's decoders applied to rates of all units (or any features per bin):
    velocity for every eval trial (NaN where there is no recorded behaviour) and the R2 averaged
    over decode masks, exactly the metric's value when the features are a model's rates."""
    assert targets.train_behavior is not None and targets.eval_behavior is not None
    decoders = decode_velocity(train_rates, targets.train_behavior, eval_rates,
                               targets.eval_behavior, targets.train_decode_mask, targets.eval_decode_mask)
    decoded = np.full(targets.eval_behavior.shape, np.nan)
    has_behavior = ~np.isnan(targets.eval_behavior[:, :, 0])
    for decoder in decoders:
        # Decoder rows are the eval trials' bins with behaviour, trial by trial, in order.
        for trial in np.unique(decoder.eval_trial):
            decoded[trial, has_behavior[trial]] = decoder.eval_prediction[decoder.eval_trial == trial]
    return Decoded(decoded, float(np.mean([decoder.r2 for decoder in decoders])), decoders)


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


def kalman_decoded(tensors: Tensors, targets: EvalTargets, noise_floor: float = 1e-3) -> Decoded:
    """Wu et al.'s Kalman filter from held-in spikes, one decoder per decode mask: velocity for
    every eval trial and the R2 with the vel-R2 conventions (trials x bins flattened, rows with
    NaN behaviour dropped, R2 averaged uniformly over dimensions, then over masks)."""
    if tensors.train_behavior is None or targets.train_behavior is None or targets.eval_behavior is None:
        raise ModelError(f"{tensors.dataset}: no behaviour to decode (train or eval behaviour missing)")
    if (tensors.train_decode_mask is None) != (targets.eval_decode_mask is None):
        raise ModelError(f"{tensors.dataset}: decode masks must be given for both train and eval "
                         "trials or for neither")
    train_masks, eval_masks = decode_masks(tensors, targets)
    n_channels = targets.eval_behavior.shape[2]
    decoded = np.full(targets.eval_behavior.shape, np.nan)
    results = []
    n_bins = targets.eval_behavior.shape[1]
    for train_trials, eval_trials in zip(train_masks.T, eval_masks.T, strict=True):
        decoder = KalmanVelocityDecoder(noise_floor).fit(tensors.train_spikes_heldin[train_trials],
                                                         tensors.train_behavior[train_trials])
        decoded[eval_trials] = decoder.predict(tensors.eval_spikes_heldin[eval_trials])
        truth = targets.eval_behavior[eval_trials].reshape(-1, n_channels)
        known = ~np.isnan(truth).any(axis=1)
        predicted = decoded[eval_trials].reshape(-1, n_channels)[known]
        row_trial = np.repeat(np.flatnonzero(eval_trials), n_bins)[known]
        results.append(DecoderResult(alpha=float("nan"), eval_trial=row_trial, eval_behavior=truth[known],
                                     eval_prediction=predicted, r2=r2_score(truth[known], predicted)))
    decoded[np.isnan(targets.eval_behavior)] = np.nan
    return Decoded(decoded, float(np.mean([result.r2 for result in results])), results)


def aligned_segments(values: np.ndarray, event_bins: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """values[trial, event_bin + lag] for each trial and lag; NaN outside the window."""
    index = event_bins[:, None] + lags[None, :]
    inside = (index >= 0) & (index < values.shape[1])
    picked = values[np.arange(len(values))[:, None], np.clip(index, 0, values.shape[1] - 1)]
    return np.where(inside[..., None], picked, np.nan)


def _check_pair(spikes: np.ndarray, velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    spikes = np.asarray(spikes, dtype=np.float64)
    velocity = np.asarray(velocity, dtype=np.float64)
    if spikes.ndim != 3 or velocity.ndim != 3 or spikes.shape[:2] != velocity.shape[:2]:
        raise ModelError(f"KalmanVelocityDecoder: spikes {spikes.shape} and velocity "
                         f"{velocity.shape} must be (trials, bins, units) and (trials, bins, dims)")
    if spikes.shape[1] < 2:
        raise ModelError("KalmanVelocityDecoder: trials need at least 2 bins")
    return spikes, velocity


def input_response(inputs: np.ndarray, event_bins: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Per trial, the mean square of the inferred inputs (trials, bins, input dims) over the bins
    `event_bin + lags` that lie in the window: how strongly the inputs move at the event."""
    segments = aligned_segments(inputs, event_bins, lags)
    with np.errstate(invalid="ignore"):
        return np.asarray(np.nanmean(segments**2, axis=(1, 2)), dtype=np.float64)


def detection_auc(with_event: np.ndarray, without: np.ndarray, weights_with: np.ndarray | None = None,
                  weights_without: np.ndarray | None = None) -> np.ndarray:
    """Area under the ROC curve of telling trials with an event from trials without by a score:
    the chance that a trial with it scores higher than one without (ties count half), the
    Mann-Whitney statistic. Weights (resamples, trials) give one AUC per resample (a bootstrap
    that draws trial i w_i times); without weights, one AUC (shape ())."""
    higher = (with_event[:, None] > without[None, :]) + 0.5 * (with_event[:, None] == without[None, :])
    if weights_with is None or weights_without is None:
        return np.asarray(higher.mean())
    pairs = np.einsum("bi,ij,bj->b", weights_with, higher, weights_without)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(pairs / (weights_with.sum(axis=1) * weights_without.sum(axis=1)))
