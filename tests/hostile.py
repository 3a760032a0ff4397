"""Shared helpers of the hostile-input tests: a tiny synthetic dataset, user-dataset copies of it
to alter, file-tree snapshots (nothing outside the intended folders, nothing earlier changed) and
a CLI runner that refuses tracebacks."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from nlb_suite.cli import main
from nlb_suite.core.arrays import Rates
from nlb_suite.core.spec import DatasetSpec, ExpectedCounts
from nlb_suite.data.paths import DatasetFiles
from nlb_suite.datasets import get_spec
from nlb_suite.datasets.synthetic import generate
from nlb_suite.datasets.toml_spec import write_spec_toml
from nlb_suite.tensors import make_tensors

# 6 + 3 units; 8 train, 4 val and 4 test trials: a 3 MB train file made in under a second.
TINY_COUNTS = ExpectedCounts(heldin_units=6, heldout_units=3, val_train_trials=8, val_eval_trials=4,
                             test_train_trials=12, test_eval_trials=4)


@dataclass(frozen=True)
class Tiny:
    """The tiny synthetic dataset (made once per module) that the tests copy and alter."""

    spec: DatasetSpec
    files: DatasetFiles


def make_tiny(root: Path) -> Tiny:
    spec = dataclasses.replace(get_spec("synth_maze"), expected=TINY_COUNTS)
    return Tiny(spec=spec, files=generate(spec, root))


@dataclass(frozen=True)
class UserDataset:
    """A copy of the tiny dataset as a user dataset: `toml` names `train` and `test`."""

    toml: Path
    train: Path
    test: Path
    spec: DatasetSpec


def user_dataset(tiny: Tiny, folder: Path, name: str = "hostile") -> UserDataset:
    """Copy the tiny dataset's files into `folder` and describe them in `folder/<name>.toml`."""
    folder.mkdir(parents=True, exist_ok=True)
    train, test = folder / "train.nwb", folder / "test.nwb"
    shutil.copyfile(tiny.files.train, train)
    shutil.copyfile(tiny.files.test, test)
    spec = dataclasses.replace(tiny.spec, name=name, source="user", folder=None, generator=None,
                               generator_args=()).with_paths(train, test)
    return UserDataset(toml=write_spec_toml(spec, folder / f"{name}.toml"), train=train, test=test, spec=spec)


def rewrite(path: Path, name: str, values: object) -> None:
    """Replace the dataset `name` in the HDF5 file at `path` with `values`."""
    values = np.asarray(values)
    with h5py.File(path, "r+") as f:
        del f[name]
        if values.dtype == object:  # strings read back from the file
            f.create_dataset(name, data=values, dtype=h5py.string_dtype())
        else:
            f[name] = values


def ragged_rows(path: Path, column: str) -> list[np.ndarray]:
    """The rows of a ragged column ('units/spike_times', 'intervals/trials/target_pos')."""
    with h5py.File(path, "r") as f:
        data, ends = f[column][()], f[f"{column}_index"][()].astype(np.int64)
    return [data[start:end] for start, end in zip(np.concatenate([[0], ends[:-1]]), ends)]


def write_ragged(path: Path, column: str, rows: list[np.ndarray]) -> None:
    """Replace a ragged column and its index with `rows`."""
    ends = np.cumsum([len(row) for row in rows]).astype(np.int64)
    data = np.concatenate(rows) if rows else np.zeros(0)
    rewrite(path, column, data)
    rewrite(path, f"{column}_index", ends)


def duplicate_trial(path: Path, row: int, new_id: int | None = None) -> None:
    """Append a copy of trial `row` to the trials table (with `new_id` as its id, if given)."""
    with h5py.File(path, "r") as f:
        group = f["intervals/trials"]
        names = [name for name in group if not name.endswith("_index")]
        ragged = {name for name in names if f"{name}_index" in group}
        plain = {name: group[name][()] for name in names if name not in ragged}
    for name in ragged:
        rows = ragged_rows(path, f"intervals/trials/{name}")
        write_ragged(path, f"intervals/trials/{name}", [*rows, rows[row]])
    for name, values in plain.items():
        copy = values[row:row + 1].copy()
        if name == "id" and new_id is not None:
            copy[0] = new_id
        rewrite(path, f"intervals/trials/{name}", np.concatenate([values, copy]))


def valid_rates(spec: DatasetSpec, bin_ms: int = 5) -> Rates:
    """Plausible rates for `spec`'s val phase: each unit's mean count per bin in training."""
    tensors = make_tensors(spec, "val", bin_ms)
    heldin = np.nanmean(tensors.train_spikes_heldin, axis=(0, 1)) + 0.01
    heldout = np.nanmean(tensors.train_spikes_heldout, axis=(0, 1)) + 0.01
    n_train, n_bins, _ = tensors.train_spikes_heldin.shape
    n_eval = tensors.eval_spikes_heldin.shape[0]
    n_forward = tensors.train_spikes_heldin_forward.shape[1]

    def fill(n: int, bins: int, mean: np.ndarray) -> np.ndarray:
        return np.broadcast_to(mean, (n, bins, len(mean))).astype(np.float32)

    return Rates(
        train_rates_heldin=fill(n_train, n_bins, heldin), train_rates_heldout=fill(n_train, n_bins, heldout),
        eval_rates_heldin=fill(n_eval, n_bins, heldin), eval_rates_heldout=fill(n_eval, n_bins, heldout),
        eval_rates_heldin_forward=fill(n_eval, n_forward, heldin),
        eval_rates_heldout_forward=fill(n_eval, n_forward, heldout),
    )


# --- what a command left behind ----------------------------------------------------------------

Snapshot = dict[str, str]


def snapshot(root: Path) -> Snapshot:
    """Every file and folder under `root`: relative path -> sha256 of the bytes ('' for folders)."""
    out: Snapshot = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        out[relative + ("/" if path.is_dir() else "")] = (
            "" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def check_tree(before: Snapshot, root: Path, allowed: Iterable[str] = ()) -> list[str]:
    """The paths that appeared under `root` since `before`, asserting that nothing already there
    changed or vanished and that every new path lies under one of the `allowed` prefixes."""
    after = snapshot(root)
    changed = sorted(p for p in before if p not in after or after[p] != before[p])
    assert not changed, f"changed or removed: {changed}"
    new = sorted(set(after) - set(before))
    prefixes = tuple(allowed)
    outside = [p for p in new if not (prefixes and p.startswith(prefixes))]
    assert not outside, f"written outside {list(prefixes)}: {outside}"
    return new


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> Outcome:
    """`nlb-suite argv...` in this process. An exception escaping the CLI fails the test on its
    own; a printed traceback fails it here."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return Outcome(code, captured.out, captured.err)
