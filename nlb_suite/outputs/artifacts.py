"""What a run keeps beside its submission file: the model's latent arrays (LFADS factors and
inferred inputs, GPFA / Kalman latent states, ...) and its training curves, in one HDF5 file
`<submission stem>_latents.h5`: one dataset per `Rates.latents` key (see `core.arrays.latent_key`),
and one per curve in the group `history` (epoch, train_loss, valid_loss, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..core.atomic import atomic_path
from ..core.paths import inside

HISTORY_GROUP = "history"


@dataclass
class RunArtifacts:
    """A run's latent arrays, (trials, bins, dims) each, and its per-epoch training curves."""

    latents: dict[str, np.ndarray] = field(default_factory=dict)
    history: dict[str, np.ndarray] = field(default_factory=dict)


def latents_path(submission: Path) -> Path:
    """Where a run's latents and training curves go: beside its submission."""
    return inside(submission.parent, submission.stem + "_latents.h5")


def write_artifacts(path: Path, latents: Mapping[str, np.ndarray],
                    history: Mapping[str, np.ndarray] | None = None) -> Path | None:
    """Write the latents and curves atomically; nothing (None) when there are neither."""
    if not latents and not history:
        return None
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as f:
        for name, values in latents.items():
            f.create_dataset(name, data=np.asarray(values, dtype=np.float32), compression="gzip")
        for name, values in (history or {}).items():
            f.create_dataset(f"{HISTORY_GROUP}/{name}", data=np.asarray(values, dtype=np.float64))
    return path


def read_artifacts(path: Path) -> RunArtifacts:
    """The file's latents and curves; empty when there is no such file."""
    if not path.is_file():
        return RunArtifacts()
    with h5py.File(path, "r") as file:
        latents = {name: item[()] for name, item in file.items() if isinstance(item, h5py.Dataset)}
        group = file.get(HISTORY_GROUP)
        history = ({name: item[()] for name, item in group.items() if isinstance(item, h5py.Dataset)}
                   if isinstance(group, h5py.Group) else {})
    return RunArtifacts(latents=latents, history=history)
