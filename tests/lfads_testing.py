"""Shared pieces of the LFADS tests: a single-thread fixture and small Poisson datasets from a
known latent system (per trial a 2-D rotation with a random initial phase and amplitude, read out
through a random log-linear map to held-in and held-out units, continued over the forward bins)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from simulated_tensors import split_trials

from nlb_suite.core.arrays import Tensors


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from a second thread, and on shared cores OpenMP threads waiting
    for each other make these tests many times slower. Autouse in every module importing it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class SyntheticTrials:
    tensors: Tensors
    train_rates: np.ndarray  # (trials, bins + forward, units) true rates of the training trials
    eval_rates: np.ndarray
    eval_spikes: np.ndarray  # (trials, bins + forward, units), all units of the evaluation trials


def rotation_dataset(n_train: int = 48, n_eval: int = 16, n_bins: int = 20, n_forward: int = 5,
                     n_heldin: int = 12, n_heldout: int = 4, seed: int = 0) -> SyntheticTrials:
    rng = np.random.default_rng(seed)
    n_trials, steps, n_units = n_train + n_eval, n_bins + n_forward, n_heldin + n_heldout
    phase = rng.uniform(0, 2 * np.pi, n_trials)[:, None]
    amplitude = rng.uniform(0.5, 1.5, n_trials)[:, None]
    angle = phase + 2 * np.pi * np.arange(steps)[None, :] / 16.0
    latents = amplitude[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=2)
    loading = rng.normal(0, 1.0, (2, n_units))
    rates = np.exp(np.log(0.3) + latents @ loading).astype(np.float32)
    spikes = rng.poisson(rates).astype(np.float32)
    tensors = split_trials(spikes, n_train, n_bins, n_heldin, dataset="rotation", bin_ms=5)
    return SyntheticTrials(tensors, rates[:n_train], rates[n_train:], spikes[n_train:])
