"""What the suite's PyTorch models (LFADS, NDT, STNDT) share: the device rule, checkpoint files
(written atomically, read with `weights_only`), the list of settings a checkpoint was made with
that differ from a run's, training curves from per-epoch records, and shuffled batches. Only
these models import it, so the classical models never load torch."""

from __future__ import annotations

import pickle
from dataclasses import fields
from pathlib import Path
from typing import Any, Generic

import numpy as np
import torch
from torch import Tensor

from ..core.atomic import atomic_path
from .base import Estimator, H, ModelError


class TorchEstimator(Estimator[H], Generic[H]):
    """An `Estimator` that trains with PyTorch: the `device` hyperparameter ('auto', 'cpu',
    'cuda[:N]'), checkpoints through `use_checkpoints` (the `Checkpointing` protocol), and
    `training_curves` from the `history_` of per-epoch dataclass records."""

    def __init__(self, **hyperparameters: Any) -> None:
        super().__init__(**hyperparameters)
        self._device()  # a device that is not here fails now, not after the data are loaded
        self.checkpoint_dir: Path | None = None
        self.resume = False

    def use_checkpoints(self, folder: Path, resume: bool) -> None:
        self.checkpoint_dir, self.resume = Path(folder), resume

    def training_curves(self) -> dict[str, np.ndarray]:
        rows = getattr(self, "history_", [])
        if not rows:
            return {}
        return {item.name: np.array([getattr(row, item.name) for row in rows], dtype=np.float64)
                for item in fields(rows[0])}

    def _device(self) -> torch.device:
        device, owner = getattr(self.config, "device"), self.Config.OWNER
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            chosen = torch.device(device)
        except (RuntimeError, TypeError):
            raise ModelError(f"{owner}: device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(f"{owner}: device {device!r} asked for, but CUDA is not available here")
        return chosen


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save of plain tensors and containers, written atomically: an interrupted write
    never leaves a broken checkpoint."""
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def load_checkpoint(path: Path, owner: str) -> dict[str, Any]:
    """A checkpoint loaded onto the CPU, whatever device wrote it, without unpickling objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ModelError(f"{path}: not a readable {owner} checkpoint ({err})") from None


def setting_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'key: A there, B now' for every setting (by section: hyperparameters, data sizes, ...)
    that a checkpoint's identity and a run's differ in."""
    out = []
    for section in sorted(set(saved) | set(now)):
        before, after = saved.get(section, {}), now.get(section, {})
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                out.append(f"{key}: {before.get(key)!r} there, {after.get(key)!r} now")
    return out


def shuffled_batches(index: Tensor, batch_size: int) -> list[Tensor]:
    """A shuffled split of `index` into round(n / batch_size) batches of nearly equal size:
    no straggler batch of a few trials costing a full pass through the network."""
    order = torch.randperm(len(index)).to(index.device)
    return list(index[order].tensor_split(batch_count(len(index), batch_size)))


def batch_count(n_trials: int, batch_size: int) -> int:
    return max(1, round(n_trials / batch_size))
