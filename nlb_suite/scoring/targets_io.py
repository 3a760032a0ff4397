"""Eval-target files in the layout of nlb_tools' `make_eval_target_tensors` + `save_to_h5`.

One HDF5 group per dataset and bin size (`mc_maze`, `mc_maze_20`, `synth_maze`, ...; the name
is `DatasetSpec.result_name(bin_ms)`), holding `eval_spikes_heldout`, `train_behavior`,
`eval_behavior`, `eval_spikes_heldin_forward`, `eval_spikes_heldout_forward`, and where the
dataset has them `train_decode_mask` / `eval_decode_mask` (trials x masks, bool), `psth`
(conditions x bins x all units), `eval_cond_idx` / `train_cond_idx` (one array of trial
indices per PSTH condition, stored as a variable-length int32 dataset). As `save_to_h5` does,
floats are stored as float32 and integers as int32, gzip-compressed; NaN marks unobserved
entries. Such files are what `evaluate()` reads and what the benchmark's own target files
(e.g. the public `eval_data_test.h5`) look like.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..core.arrays import EvalTargets
from ..core.atomic import atomic_path
from ..core.errors import NlbSuiteError

REQUIRED_ARRAYS = ("eval_spikes_heldout", "eval_spikes_heldin_forward", "eval_spikes_heldout_forward")
OPTIONAL_ARRAYS = ("train_behavior", "eval_behavior", "train_decode_mask", "eval_decode_mask", "psth",
                   "eval_cond_idx", "train_cond_idx",
                   "eval_jitter")  # dmfc_rsg: each eval trial's shift (bins) before the PSTH comparison


class TargetsFileError(NlbSuiteError, ValueError):
    """A file that is not a readable eval-target file, or targets that cannot be written."""


def _index_array(index_lists: list[np.ndarray]) -> np.ndarray:
    """A 1-d object array of int arrays, the form nlb_tools saves and h5py reads back."""
    out = np.empty(len(index_lists), dtype=object)
    for i, trials in enumerate(index_lists):
        out[i] = np.asarray(trials, dtype=np.int64).reshape(-1)
    return out


def targets_to_dict(targets: EvalTargets) -> dict[str, np.ndarray]:
    """The arrays of one target group under their NLB names (absent ones left out), as
    `evaluate()` takes them in memory: `evaluate({name: targets_to_dict(t)}, submission)`."""
    arrays: dict[str, np.ndarray] = {}
    for name in REQUIRED_ARRAYS + OPTIONAL_ARRAYS:
        value = getattr(targets, name)
        if value is None:
            continue
        arrays[name] = _index_array(value) if name.endswith("_cond_idx") else np.asarray(value)
    return arrays


def targets_from_dict(arrays: Mapping[str, Any], dataset: str, bin_ms: int) -> EvalTargets:
    """`EvalTargets` from one group's arrays (as `read_targets` returns them)."""
    missing = [name for name in REQUIRED_ARRAYS if name not in arrays]
    if missing:
        raise TargetsFileError(f"targets of {dataset!r} lack {missing}")
    optional: dict[str, Any] = {}
    for name in OPTIONAL_ARRAYS:
        if name in arrays:
            value = arrays[name]
            optional[name] = ([np.asarray(trials, dtype=np.intp) for trials in value]
                              if name.endswith("_cond_idx") else np.asarray(value))
    required: dict[str, Any] = {name: np.asarray(arrays[name]) for name in REQUIRED_ARRAYS}
    return EvalTargets(dataset=dataset, bin_ms=bin_ms, **required, **optional)


def _stored_dtype(array: np.ndarray) -> Any:
    # nlb_tools' save_to_h5 (dlen=32): 32-bit floats and integers, bools as they are.
    if array.dtype == object:
        return h5py.vlen_dtype(np.dtype("int32"))
    if np.issubdtype(array.dtype, np.floating):
        return np.dtype("float32")
    if np.issubdtype(array.dtype, np.integer):
        return np.dtype("int32")
    return array.dtype


def write_targets(path: str | Path, groups: Mapping[str, EvalTargets]) -> Path:
    """Write one group per entry of `groups` (key: `spec.result_name(bin_ms)`), atomically."""
    path = Path(path)
    if not groups:
        raise TargetsFileError(f"{path}: no target groups to write")
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as file:
        for group_name, targets in groups.items():
            group = file.create_group(group_name)
            for name, array in targets_to_dict(targets).items():
                # HDF5 cannot chunk (hence compress) an empty dataset.
                group.create_dataset(name, data=array, dtype=_stored_dtype(array),
                                     compression="gzip" if array.size else None)
    return path


def read_targets(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """All groups of an eval-target file as {group: {array name: array}}."""
    path = Path(path)
    if not path.is_file():
        raise TargetsFileError(f"eval-target file not found: {path}")
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise TargetsFileError(f"{path}: not an HDF5 file ({err})") from None
    with file:
        if not len(file):
            raise TargetsFileError(f"{path}: not an eval-target file: it holds no groups")
        groups: dict[str, dict[str, np.ndarray]] = {}
        for group_name, group in file.items():
            if not isinstance(group, h5py.Group):
                raise TargetsFileError(f"{path}: not an eval-target file: {group_name!r} is a dataset, "
                                       "expected one group per dataset")
            if "eval_spikes_heldout" not in group:
                raise TargetsFileError(f"{path}: not an eval-target file: group {group_name!r} has no "
                                       f"'eval_spikes_heldout' (it holds {sorted(group)})")
            groups[group_name] = {name: array[()] for name, array in group.items()
                                  if isinstance(array, h5py.Dataset)}
    return groups
