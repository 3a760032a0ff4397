"""The objects a phase and bin size produce: model inputs, evaluation targets, true rates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

Phase = Literal["val", "test"]


@dataclass
class Tensors:
    """What a model sees: spikes of training trials (held-in, held-out, forward window), held-in
    spikes of evaluation trials, and training behaviour. Arrays are (trials, bins, units) in
    spikes/bin, float32, NaN where unobserved."""

    dataset: str
    phase: Phase
    bin_ms: int
    train_spikes_heldin: np.ndarray
    train_spikes_heldout: np.ndarray
    train_spikes_heldin_forward: np.ndarray
    train_spikes_heldout_forward: np.ndarray
    eval_spikes_heldin: np.ndarray
    train_behavior: np.ndarray | None = None
    train_decode_mask: np.ndarray | None = None
    train_trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    eval_trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    heldin_ids: np.ndarray = field(default_factory=lambda: np.empty(0, int))
    heldout_ids: np.ndarray = field(default_factory=lambda: np.empty(0, int))

    @property
    def n_train(self) -> int:
        return self.train_spikes_heldin.shape[0]

    @property
    def n_eval(self) -> int:
        return self.eval_spikes_heldin.shape[0]

    @property
    def n_bins(self) -> int:
        return self.train_spikes_heldin.shape[1]

    @property
    def n_forward(self) -> int:
        return self.train_spikes_heldin_forward.shape[1]

    @property
    def n_heldin(self) -> int:
        return self.train_spikes_heldin.shape[2]

    @property
    def n_heldout(self) -> int:
        return self.train_spikes_heldout.shape[2]


@dataclass
class EvalTargets:
    """What a model is scored against, named as in the benchmark's eval-target files."""

    dataset: str
    bin_ms: int
    eval_spikes_heldout: np.ndarray
    eval_spikes_heldin_forward: np.ndarray
    eval_spikes_heldout_forward: np.ndarray
    train_behavior: np.ndarray | None = None
    eval_behavior: np.ndarray | None = None
    train_decode_mask: np.ndarray | None = None
    eval_decode_mask: np.ndarray | None = None
    psth: np.ndarray | None = None
    train_cond_idx: list[np.ndarray] | None = None
    eval_cond_idx: list[np.ndarray] | None = None


@dataclass
class TrueRates:
    """Ground-truth rates (spikes/bin) of a synthetic dataset, aligned with `Tensors`."""

    train_heldin: np.ndarray
    train_heldout: np.ndarray
    eval_heldin: np.ndarray
    eval_heldout: np.ndarray
    eval_heldin_forward: np.ndarray
    eval_heldout_forward: np.ndarray
