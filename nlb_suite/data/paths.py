"""Where dataset files live: the data directory in DANDI layout, `<dandiset>/<asset path>`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import NlbSuiteError
from ..core.spec import Asset, DatasetSpec

ENV_VAR = "NLB_SUITE_DATA"
# A synthetic dataset's ground truth, beside its NWB files (its format: `truth.py`).
TRUTH_FILE = "truth.h5"


class MissingDataError(NlbSuiteError, FileNotFoundError):
    """A dataset file is not where the suite expects it."""


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
    return files
