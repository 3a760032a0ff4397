"""What the suite's PyTorch models (LFADS, NDT, STNDT) share: the device rule, checkpoint files
(written atomically, read with `weights_only`), the list of settings a checkpoint was made with
that differ from a run's, training curves from per-epoch records, and shuffled batches. Only
these models import it, so the classical models never load torch."""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, Generic

import numpy as np
import torch
from torch import Tensor

from ..core.arrays import Tensors
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
        self.epoch_callback: Callable[[int], None] | None = None

    def use_checkpoints(self, folder: Path, resume: bool) -> None:
        self.checkpoint_dir, self.resume = Path(folder), resume

    def on_epoch(self, callback: Callable[[int], None] | None) -> None:
        """Call `callback(epoch)` after each training epoch (the `EpochProgress` protocol)."""
        self.epoch_callback = callback

    def training_curves(self) -> dict[str, np.ndarray]:
        rows = getattr(self, "history_", [])
        if not rows:
            return {}
        return {item.name: np.array([getattr(row, item.name) for row in rows], dtype=np.float64)
                for item in fields(rows[0])}

    def _split(self, n_trials: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Validation and training trial indices (validation: `valid_fraction` of the training
        trials, at least one, drawn with `seed`)."""
        cfg: Any = self.config
        order = np.random.default_rng(cfg.seed).permutation(n_trials)
        n_valid = min(n_trials - 1, max(1, round(cfg.valid_fraction * n_trials)))
        valid, train = np.sort(order[:n_valid]), np.sort(order[n_valid:])
        return torch.from_numpy(valid).to(device), torch.from_numpy(train).to(device)

    @contextlib.contextmanager
    def _session(self, device: torch.device, seed: int | None = None) -> Iterator[None]:
        """Seed torch (`seed`, else the `seed` hyperparameter) and set its CPU threads (`threads`)
        for this run, restoring the caller's random state and thread count afterwards."""
        cfg: Any = self.config
        cuda_devices = []
        if device.type == "cuda":
            cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()]
        threads_before = torch.get_num_threads()
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(cfg.seed if seed is None else seed)
            if cfg.threads > 0:
                torch.set_num_threads(cfg.threads)
            try:
                yield
            finally:
                torch.set_num_threads(threads_before)

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


def training_targets(tensors: Tensors) -> tuple[Tensor, Tensor]:
    """Every training trial's spikes as one (trials, bins + forward bins, held-in + held-out units)
    tensor, assembled in place (mc_maze is 60 MB a copy), with NaN (unobserved) set to 0, and the
    mask of observed entries."""
    bins, heldin = tensors.n_bins, tensors.train_spikes_heldin.shape[2]
    target = torch.empty(tensors.n_train, bins + tensors.n_forward, heldin + tensors.n_heldout)
    target[:, :bins, :heldin] = torch.from_numpy(tensors.train_spikes_heldin)
    target[:, :bins, heldin:] = torch.from_numpy(tensors.train_spikes_heldout)
    target[:, bins:, :heldin] = torch.from_numpy(tensors.train_spikes_heldin_forward)
    target[:, bins:, heldin:] = torch.from_numpy(tensors.train_spikes_heldout_forward)
    observed = ~torch.isnan(target)
    target.nan_to_num_(nan=0.0)
    return target, observed


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


def resumable_checkpoint(path: Path, owner: str, checkpoint_format: int, saved_part: Any = None,
                         now: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint at `path`, refused (naming what differs) when another version wrote it or
    when its identity (or the part of it `saved_part` picks) differs from `now`."""
    payload = load_checkpoint(path, owner)
    if payload.get("format") != checkpoint_format or "identity" not in payload:
        raise ModelError(f"{path}: written by another version of nlb_suite (format "
                         f"{payload.get('format')!r}); remove the folder to start afresh")
    saved = payload["identity"] if saved_part is None else saved_part(payload["identity"])
    differences = setting_differences(saved, now or {})
    if differences:
        raise ModelError(f"{path}: cannot resume, the checkpoint was made with other settings "
                         f"({'; '.join(differences)}); rerun with those settings, or without --resume")
    return payload


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
