"""Where dataset files live: the data directory in DANDI layout, `<dandiset>/<asset path>`."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.atomic import file_sha256
from ..core.errors import NlbSuiteError
from ..core.spec import Asset, DatasetSpec

ENV_VAR = "NLB_SUITE_DATA"
# A synthetic dataset's ground truth, beside its NWB files (its format: `truth.py`).
TRUTH_FILE = "truth.h5"


class MissingDataError(NlbSuiteError, FileNotFoundError):
    """A dataset file is not where the suite expects it."""


class DeclaredFileError(NlbSuiteError, ValueError):
    """A user dataset's file is not the one its TOML declares (by `size` or `sha256`)."""


def data_dir(override: str | Path | None = None) -> Path:
    """`override`, else $NLB_SUITE_DATA, else ~/.cache/nlb_suite."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nlb_suite"


def asset_path(spec: DatasetSpec, asset: Asset, root: str | Path | None = None) -> Path:
    """Where one file of `spec` lives. User datasets carry absolute paths; DANDI and synthetic
    datasets live under the data directory, so a plain `dandi download` tree works as it is."""
    path = Path(asset.path)
    if path.is_absolute() or spec.folder is None:
        return path
    return data_dir(root) / spec.folder / path


@dataclass(frozen=True)
class DatasetFiles:
    train: Path
    test: Path


def dataset_files(spec: DatasetSpec, root: str | Path | None = None) -> DatasetFiles:
    return DatasetFiles(asset_path(spec, spec.train, root), asset_path(spec, spec.test, root))


def truth_path(spec: DatasetSpec, root: str | Path | None = None) -> Path | None:
    """Where a synthetic dataset's truth file lives (None for a dataset that has no truth)."""
    if spec.source != "synthetic" or spec.folder is None:
        return None
    return data_dir(root) / spec.folder / TRUTH_FILE


def require_files(spec: DatasetSpec, root: str | Path | None = None) -> DatasetFiles:
    """The dataset's files, or an error naming each missing path and how to get it."""
    files = dataset_files(spec, root)
    missing = [p for p in (files.train, files.test) if not p.is_file()]
    if missing:
        listing = "\n  ".join(str(p) for p in missing)
        if spec.source == "dandi":
            hint = f"fetch them with `nlb-suite fetch {spec.name}` or place them there"
        elif spec.source == "synthetic":
            hint = f"generate them with `nlb-suite synth {spec.name}`"
        else:
            hint = "check the paths in the dataset's TOML file"
        raise MissingDataError(f"dataset {spec.name!r}: missing file(s):\n  {listing}\n{hint}")
    if spec.source == "user":
        # DANDI files are verified by `fetch`; a user's TOML may pin its files the same way, and
        # a pinned value that nothing checked would be a promise silently broken.
        for path, asset in ((files.train, spec.train), (files.test, spec.test)):
            _check_declared(spec, path, asset)
    return files


def _check_declared(spec: DatasetSpec, path: Path, asset: Asset) -> None:
    if asset.size is None and asset.sha256 is None:
        return
    stat = path.stat()
    found = None
    if asset.size is not None and stat.st_size != asset.size:
        found = f"{stat.st_size:,} bytes, but the dataset's TOML declares size = {asset.size}"
    elif asset.sha256 is not None:
        digest = _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if digest != asset.sha256:
            found = f"sha256 {digest}, but the dataset's TOML declares sha256 = \"{asset.sha256}\""
    if found:
        raise DeclaredFileError(f"{path}: {found} (dataset {spec.name!r}): this is not the file the dataset "
                                "describes; point the TOML at the right file, or update or remove the pinned value")


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """The file's sha256, computed once per process for each (path, size, mtime): a run reads a
    dataset's files several times (tensors, targets, true rates)."""
    return file_sha256(path)
