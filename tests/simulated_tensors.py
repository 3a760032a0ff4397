"""A small NLB-shaped dataset with known rates, built directly as `Tensors` for model tests.

Latents rotate and decay from a condition-dependent start; rates are exp(C x + b) spikes/bin;
velocity is a linear read of the latents. Nothing here reads files, so tests stay fast."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nlb_suite.core.arrays import EvalTargets, Tensors


@dataclass
class SimulatedDataset:
    tensors: Tensors
    targets: EvalTargets
    true_eval_rates: np.ndarray  # (eval trials, bins, held-in + held-out units)


def split_trials(spikes: np.ndarray, n_train: int, n_bins: int, n_heldin: int, dataset: str,
                 bin_ms: int, **extra: np.ndarray) -> Tensors:
    """The model inputs of whole trials `spikes` (trials, window + forward bins, units): the first
    `n_train` trials train, the first `n_bins` bins are the window, the first `n_heldin` units
    are held in. `extra` are further `Tensors` fields (behaviour, masks)."""
    train, evaluation = slice(0, n_train), slice(n_train, None)
    window, forward = slice(0, n_bins), slice(n_bins, None)
    heldin, heldout = slice(0, n_heldin), slice(n_heldin, None)
    return Tensors(
        dataset=dataset, phase="val", bin_ms=bin_ms,
        train_spikes_heldin=spikes[train, window, heldin],
        train_spikes_heldout=spikes[train, window, heldout],
        train_spikes_heldin_forward=spikes[train, forward, heldin],
        train_spikes_heldout_forward=spikes[train, forward, heldout],
        eval_spikes_heldin=spikes[evaluation, window, heldin],
        **extra,
    )


def simulate(n_train: int = 60, n_eval: int = 20, n_bins: int = 30, n_forward: int = 8,
             n_heldin: int = 25, n_heldout: int = 8, seed: int = 0) -> SimulatedDataset:
    rng = np.random.default_rng(seed)
    n_trials, n_units, n_total = n_train + n_eval, n_heldin + n_heldout, n_bins + n_forward
    angle = 2 * np.pi / 25
    rotation = 0.97 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dynamics = np.zeros((4, 4))
    dynamics[:2, :2] = rotation
    dynamics[2:, 2:] = 0.9 * rotation.T
    condition = rng.integers(0, 8, size=n_trials)
    directions = np.stack([np.cos(condition * np.pi / 4), np.sin(condition * np.pi / 4)], axis=1)
    state = 1.5 * np.concatenate([directions, directions[:, ::-1]], axis=1)
    latents = np.empty((n_trials, n_total, 4))
    for t in range(n_total):
        latents[:, t] = state
        state = state @ dynamics.T + rng.normal(scale=0.05, size=state.shape)
    loadings = rng.normal(scale=0.5, size=(4, n_units))
    baseline = np.log(rng.uniform(0.1, 0.4, size=n_units))
    rates = np.exp(latents @ loadings + baseline)
    spikes = rng.poisson(rates).astype(np.float32)
    velocity = latents[:, :n_bins, :2] @ np.array([[30.0, -10.0], [5.0, 25.0]])
    velocity += rng.normal(scale=1.0, size=velocity.shape)

    train, evaluation = slice(0, n_train), slice(n_train, n_trials)
    window, forward = slice(0, n_bins), slice(n_bins, n_total)
    heldin, heldout = slice(0, n_heldin), slice(n_heldin, n_units)
    tensors = split_trials(spikes, n_train, n_bins, n_heldin, dataset="simulated", bin_ms=20,
                           train_behavior=velocity[train].astype(np.float32))
    targets = EvalTargets(
        dataset="simulated", bin_ms=20,
        eval_spikes_heldout=spikes[evaluation, window, heldout],
        eval_spikes_heldin_forward=spikes[evaluation, forward, heldin],
        eval_spikes_heldout_forward=spikes[evaluation, forward, heldout],
        train_behavior=velocity[train].astype(np.float32),
        eval_behavior=velocity[evaluation].astype(np.float32),
    )
    return SimulatedDataset(tensors=tensors, targets=targets, true_eval_rates=rates[evaluation, window])
