"""What a non-PBT trial is scored on: a part of the TRAINING trials held back, their held-in
spikes given to the model as if they were evaluation trials and their held-out spikes kept as
the targets. The evaluation trials' held-out spikes are never part of a study (they are not in
`Tensors` at all), so no study can fit the benchmark's targets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..core.arrays import Rates, Tensors
from ..core.errors import NlbSuiteError
from ..core.poisson import bits_per_spike


class ValidationError(NlbSuiteError, ValueError):
    """Too few training trials to hold some back for validation."""


@dataclass
class ValidationSplit:
    """`tensors`: the remaining training trials as training trials, the held-back ones as
    evaluation trials; `heldout` and `heldout_forward`: the held-back trials' held-out spikes and
    forward-window spikes of all units (what a trial is scored on)."""

    tensors: Tensors
    heldout: np.ndarray
    forward: np.ndarray
    valid_index: np.ndarray


def validation_split(tensors: Tensors, fraction: float, seed: int) -> ValidationSplit:
    """Hold back `fraction` of the training trials (chosen by `seed`) for validation."""
    n = tensors.n_train
    n_valid = round(fraction * n)
    if n_valid < 1 or n - n_valid < 2:
        raise ValidationError(f"{tensors.dataset}: {n} training trials are too few to hold back "
                              f"{fraction:.0%} for validation; use a larger validation_fraction or more trials")
    order = np.random.default_rng(seed).permutation(n)
    valid, train = np.sort(order[:n_valid]), np.sort(order[n_valid:])

    def rows(array: np.ndarray | None, index: np.ndarray) -> np.ndarray | None:
        return None if array is None else array[index]

    inner = replace(
        tensors,
        train_spikes_heldin=tensors.train_spikes_heldin[train],
        train_spikes_heldout=tensors.train_spikes_heldout[train],
        train_spikes_heldin_forward=tensors.train_spikes_heldin_forward[train],
        train_spikes_heldout_forward=tensors.train_spikes_heldout_forward[train],
        eval_spikes_heldin=tensors.train_spikes_heldin[valid],
        train_behavior=rows(tensors.train_behavior, train),
        train_decode_mask=rows(tensors.train_decode_mask, train),
        train_trials=tensors.train_trials.iloc[train].reset_index(drop=True) if len(tensors.train_trials) else
        tensors.train_trials,
        eval_trials=tensors.train_trials.iloc[valid].reset_index(drop=True) if len(tensors.train_trials) else
        tensors.eval_trials,
    )
    forward = np.concatenate([tensors.train_spikes_heldin_forward[valid],
                              tensors.train_spikes_heldout_forward[valid]], axis=2)
    return ValidationSplit(inner, tensors.train_spikes_heldout[valid], forward, valid)


def validation_scores(rates: Rates, split: ValidationSplit) -> dict[str, float]:
    """co-bps on the held-back trials' held-out units and fp-bps on their forward window."""
    forward = np.concatenate([rates.eval_rates_heldin_forward, rates.eval_rates_heldout_forward], axis=2)
    return {"co_bps": bits_per_spike(rates.eval_rates_heldout, split.heldout),
            "fp_bps": bits_per_spike(forward, split.forward)}
