"""What an NLB dataset is: where its two NWB files come from, and how trials become tensors.

One frozen `DatasetSpec` per dataset. The built-in specs live in `registry.py`; users describe
their own datasets in a small TOML file with the same fields (`load_spec_toml`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from ..atomic import write_text_atomic
from ..errors import NlbSuiteError

Source = Literal["dandi", "synthetic", "user"]
Role = Literal["train", "test"]


class SpecError(NlbSuiteError, ValueError):
    """A dataset specification is incomplete or inconsistent."""


@dataclass(frozen=True)
class Asset:
    """One NWB file of a dataset. `path` is relative to the dataset's folder in the data directory
    (for DANDI datasets: the asset path inside the dandiset, e.g. `sub-Jenkins/..._ecephys.nwb`)."""

    path: str
    size: int | None = None
    sha256: str | None = None
    asset_id: str | None = None


@dataclass(frozen=True)
class ExpectedCounts:
    """Unit and trial counts a loaded dataset must show (None: not checked)."""

    heldin_units: int | None = None
    heldout_units: int | None = None
    val_train_trials: int | None = None
    val_eval_trials: int | None = None
    test_train_trials: int | None = None
    test_eval_trials: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the suite needs to know about one dataset.

    Times are in ms relative to the alignment event. The behaviour window is the trial window
    shifted by `behavior_lag_ms` (positive: behaviour later than the spikes).
    """

    name: str
    description: str
    source: Source
    train: Asset
    test: Asset
    align_field: str
    window_ms: tuple[int, int]
    dandiset: str | None = None
    version: str | None = None
    behavior_field: str | None = "hand_vel"
    behavior_lag_ms: int = 0
    psth_conditions: tuple[str, ...] = ()
    psth_kern_sd_ms: int = 50
    # One velocity decoder per distinct value of this boolean trial column (area2: ctr_hold_bump).
    decode_mask_field: str | None = None
    forward_ms: int = 200
    bin_sizes: tuple[int, ...] = (5, 20)
    # Whether an evaluation window may run into the next trial's window (area2: a continuous session).
    eval_allow_overlap: bool = False
    # Results of the three scaled mazes are reported together under this key, e.g. "[500]".
    scaling_key: str | None = None
    expected: ExpectedCounts = field(default_factory=ExpectedCounts)
    # Synthetic datasets: generator name and its arguments (seed, sizes).
    generator: str | None = None
    generator_args: tuple[tuple[str, int | float | str], ...] = ()
    # Folder under the data directory holding `train` and `test` (None: paths are used as given).
    folder: str | None = None

    def __post_init__(self) -> None:
        start, stop = self.window_ms
        if stop <= start:
            raise SpecError(f"{self.name}: window_ms {self.window_ms} must have stop > start")
        for bin_ms in self.bin_sizes:
            if bin_ms <= 0:
                raise SpecError(f"{self.name}: bin sizes must be positive, got {self.bin_sizes}")

    @property
    def window_len_ms(self) -> int:
        return self.window_ms[1] - self.window_ms[0]

    def n_bins(self, bin_ms: int) -> int:
        """Bins in the trial window at `bin_ms` (the window is rounded to whole bins)."""
        return int(round(self.window_len_ms / bin_ms))

    def n_forward_bins(self, bin_ms: int) -> int:
        return int(round(self.forward_ms / bin_ms))

    def result_name(self, bin_ms: int) -> str:
        """Group name in submission and target files: `mc_maze`, `mc_maze_20`, ..."""
        return self.name if bin_ms == 5 else f"{self.name}_{bin_ms}"

    def check_bin(self, bin_ms: int) -> None:
        if bin_ms not in self.bin_sizes:
            raise SpecError(
                f"dataset {self.name!r} supports bin sizes {list(self.bin_sizes)} ms, not {bin_ms} ms"
            )

    def with_paths(self, train: str | Path, test: str | Path) -> DatasetSpec:
        return replace(self, train=replace(self.train, path=str(train)), test=replace(self.test, path=str(test)))


_TOML_SCALARS = {
    "name", "description", "align_field", "behavior_field", "behavior_lag_ms", "psth_kern_sd_ms",
    "decode_mask_field", "forward_ms", "eval_allow_overlap", "scaling_key",
}


def load_spec_toml(path: str | Path) -> DatasetSpec:
    """Read a user's dataset description.

    Example (paths relative to the TOML file)::

        name = "my_reach"
        description = "PMd during delayed reaches"
        train = "data/my_reach_train.nwb"
        test = "data/my_reach_test.nwb"
        align_field = "move_onset_time"
        window_ms = [-250, 450]
        bin_sizes = [5, 20]
        behavior_field = "hand_vel"
        behavior_lag_ms = 100
        psth_conditions = ["trial_type", "trial_version"]
        psth_kern_sd_ms = 50
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"dataset spec file not found: {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML ({err})") from None
    known = {f.name for f in fields(DatasetSpec)} | {"expected"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SpecError(f"{path}: unknown keys {unknown}; known keys are {sorted(known)}")
    missing = [key for key in ("name", "train", "test", "align_field", "window_ms") if key not in raw]
    if missing:
        raise SpecError(f"{path}: missing required keys {missing}")
    base = path.parent

    def asset(value: object, role: Role) -> Asset:
        if isinstance(value, str):
            value = {"path": value}
        if not isinstance(value, dict) or "path" not in value:
            raise SpecError(f"{path}: `{role}` must be a path or a table with a `path` key")
        file_path = Path(value["path"]).expanduser()
        if not file_path.is_absolute():
            file_path = (base / file_path).resolve()
        return Asset(path=str(file_path), size=value.get("size"), sha256=value.get("sha256"))

    kwargs: dict[str, object] = {k: raw[k] for k in _TOML_SCALARS if k in raw}
    # TOML has no null: an empty string says "this dataset has no behaviour / no decode masks".
    for key in ("behavior_field", "decode_mask_field", "scaling_key"):
        if kwargs.get(key) == "":
            kwargs[key] = None
    kwargs.setdefault("description", f"user dataset from {path.name}")
    try:
        kwargs["window_ms"] = (int(raw["window_ms"][0]), int(raw["window_ms"][1]))
        if "bin_sizes" in raw:
            kwargs["bin_sizes"] = tuple(int(b) for b in raw["bin_sizes"])
        if "psth_conditions" in raw:
            kwargs["psth_conditions"] = tuple(str(c) for c in raw["psth_conditions"])
        if "expected" in raw:
            kwargs["expected"] = ExpectedCounts(**raw["expected"])
        return DatasetSpec(
            source="user", train=asset(raw["train"], "train"), test=asset(raw["test"], "test"), **kwargs
        )
    except (TypeError, IndexError, ValueError) as err:
        if isinstance(err, SpecError):
            raise
        raise SpecError(f"{path}: {err}") from None


def spec_to_toml(spec: DatasetSpec) -> str:
    """The TOML text that `load_spec_toml` reads back into `spec` (a user dataset: absolute paths)."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (tuple, list)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        f"name = {value(spec.name)}",
        f"description = {value(spec.description)}",
        f"train = {value(spec.train.path)}",
        f"test = {value(spec.test.path)}",
        f"align_field = {value(spec.align_field)}",
        f"window_ms = {value(list(spec.window_ms))}",
        f"forward_ms = {spec.forward_ms}",
        f"bin_sizes = {value(list(spec.bin_sizes))}",
        f"behavior_field = {value(spec.behavior_field or '')}",
        f"behavior_lag_ms = {spec.behavior_lag_ms}",
        f"psth_conditions = {value(list(spec.psth_conditions))}",
        f"psth_kern_sd_ms = {spec.psth_kern_sd_ms}",
        f"decode_mask_field = {value(spec.decode_mask_field or '')}",
        f"eval_allow_overlap = {value(spec.eval_allow_overlap)}",
    ]
    counts = {f.name: getattr(spec.expected, f.name) for f in fields(ExpectedCounts)}
    lines += ["", "[expected]"] + [f"{k} = {v}" for k, v in counts.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_spec_toml(spec: DatasetSpec, path: str | Path) -> Path:
    """Write `spec` as a dataset TOML file (atomically), usable as `--dataset path`."""
    return write_text_atomic(path, spec_to_toml(spec))
