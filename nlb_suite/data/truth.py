"""The ground-truth file of a synthetic dataset, `truth.h5` beside its NWB files: written here by
the generators and read here for the tensors, so its format lives in one module.

All values lie on the 5 ms grid of the NWB file's clock (bin k covers [5k, 5k + 5) ms):

- `train/rates` float32 (trials, bins, units): expected spike counts per 5 ms bin for every trial
  of the train file in trials-table order; `train/first_bin` int64 (trials,): global bin index of
  `rates[:, 0]`; `train/unit_ids` (units-table order); `train/latents` float32
  (trials, bins, latent_dim) on the same grid.
- `test/rates`, `test/first_bin`, `test/unit_ids`: the same for the test file (held-in units);
  `test/rates_all` and `test/unit_ids_all` for all units, and `test/spikes_all` uint16: the spike
  counts of all units per 5 ms bin (the test file's spikes inside the windows, and the held-out
  units and forward windows it does not hold), so test-phase scores can be computed here.
- Each trial is covered from `MARGIN_MS` before its evaluation window to `MARGIN_MS` after the
  forward window, so either bin size's grid can be cut from it. Test-file first bins may be
  negative: its first segment starts at time 0.
- Attributes: `dataset`, `generator`, `generator_args` (JSON), `bin_ms`, `margin_ms`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from ..core.atomic import atomic_path
from ..core.errors import NlbSuiteError

TRUTH_BIN_MS = 5
MARGIN_MS = 50

Part = Literal["train", "test"]
Values = Literal["rates", "rates_all", "spikes_all"]


class TruthFileError(NlbSuiteError, ValueError):
    """A truth file that cannot give what is asked of it."""


@dataclass
class TruthBlock:
    """Ground truth of one NWB file (see the module docstring)."""

    rates: np.ndarray
    first_bin: np.ndarray
    unit_ids: np.ndarray
    latents: np.ndarray | None = None
    rates_all: np.ndarray | None = None
    unit_ids_all: np.ndarray | None = None
    spikes_all: np.ndarray | None = None


def write_truth(path: Path, *, dataset: str, generator: str, generator_args: dict[str, object],
                train: TruthBlock, test: TruthBlock) -> Path:
    """Write a truth file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as f:
        f.attrs["dataset"] = dataset
        f.attrs["generator"] = generator
        f.attrs["generator_args"] = json.dumps(generator_args, sort_keys=True)
        f.attrs["bin_ms"] = TRUTH_BIN_MS
        f.attrs["margin_ms"] = MARGIN_MS
        for name, block in (("train", train), ("test", test)):
            group = f.create_group(name)
            for item in fields(block):
                value = getattr(block, item.name)
                if value is not None:
                    group.create_dataset(item.name, data=value)
    return path


def read_windows(path: Path, part: Part, values: Values, rows: np.ndarray, starts: np.ndarray, n_bins: int,
                 bin_ms: int, unit_ids: np.ndarray) -> np.ndarray:
    """The truth's `values` of `part` summed into windows of `n_bins` bins of `bin_ms` ms, for the
    trials at `rows` of the file's trials table, window i starting at global bin `starts[i]` (of
    `bin_ms`), for the units `unit_ids` in that order: (trials, n_bins, units) float32."""
    if bin_ms % TRUTH_BIN_MS:
        raise TruthFileError(f"{path}: the truth exists at multiples of {TRUTH_BIN_MS} ms only, not {bin_ms} ms")
    factor = bin_ms // TRUTH_BIN_MS
    ids_key = "unit_ids_all" if values.endswith("_all") else "unit_ids"
    try:
        with h5py.File(path, "r") as f:
            group = f[part]
            table = np.asarray(group[values][()])[rows]
            first = np.asarray(group["first_bin"][()])[rows]
            stored_ids = np.asarray(group[ids_key][()])
        if table.ndim != 3 or first.shape != (len(rows),) or stored_ids.ndim != 1:
            raise ValueError(f"{part}/{values} has shape {table.shape}, {part}/first_bin {first.shape}")
    except (OSError, KeyError, ValueError, IndexError, TypeError) as err:
        # A damaged or foreign truth file would otherwise end a finished run in a traceback.
        raise TruthFileError(
            f"{path}: not a readable truth file ({err}); the synthetic dataset is damaged: regenerate it "
            f"with `nlb-suite synth {path.parent.name} --overwrite`") from None
    offsets = np.asarray(starts) * factor - first
    index = offsets[:, None] + np.arange(n_bins * factor)[None, :]
    if len(index) and (index.min() < 0 or index.max() >= table.shape[1]):
        raise TruthFileError(f"{path}: the truth does not cover these windows")
    picked = np.take_along_axis(table, index[:, :, None], axis=1).astype(np.float64)
    summed = picked.reshape(len(rows), n_bins, factor, -1).sum(axis=2).astype(np.float32)
    where = {int(u): i for i, u in enumerate(stored_ids)}
    missing = [int(u) for u in unit_ids if int(u) not in where]
    if missing:
        raise TruthFileError(f"{path}: no truth for unit(s) {missing[:10]}")
    return summed[..., [where[int(u)] for u in unit_ids]]
