"""Trial windows to NLB tensors: model inputs (`Tensors`) and evaluation targets (`EvalTargets`).

Spike times are binned straight into each trial's window with numpy, on the session's global
bin grid, exactly as nlb_tools 0.0.4 bins them (it resamples a 1 ms frame of the whole session,
so a window starts at the first bin boundary at or after `align + start`). Time outside a unit's
`obs_intervals` is NaN. Behaviour is low-pass filtered and decimated from 1 kHz over the whole
session (the benchmark's FIR, n=500). PSTHs are condition means of Gaussian-smoothed 1 ms spikes,
summed per bin. Every array's trial order is the order of the trials table.
"""

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
