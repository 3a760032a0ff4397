"""What an NLB dataset is: where its two NWB files come from, and how trials become tensors.

One frozen `DatasetSpec` per dataset. The built-in specs live in `datasets/registry.py`; users
describe their own datasets in a small TOML file with the same fields (`datasets/toml_spec.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .errors import NlbSuiteError

Source = Literal["dandi", "synthetic", "user"]
Role = Literal["train", "test"]


class SpecError(NlbSuiteError, ValueError):
    """A dataset specification is incomplete or inconsistent."""


# Dataset names become file and folder names (submissions, checkpoints, results): letters,
# digits, '_' and '-', starting with a letter or digit, so that no name can leave its folder.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def check_name(name: object) -> str:
    """`name` if it is a safe dataset name, else a SpecError saying what a name may hold."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError(f"dataset name {name!r} is not allowed: use letters, digits, '_' and '-' "
                        "(starting with a letter or digit, at most 128 characters)")
    return name


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
    # Whether the model-input windows (train and eval) may run into the next trial (mc_rtt and
    # dmfc_rsg; nlb_tools' allow_overlap in make_params). Otherwise overlapping windows are an error.
    allow_overlap: bool = False
    # Behaviour per trial from these trials-table columns instead of a TimeSeries (dmfc_rsg:
    # is_eye, theta, is_short, ts, tp); then behavior_field is None.
    behavior_columns: tuple[str, ...] = ()
    # A trials column marking trials (value not 0) whose behaviour is masked (NaN) and that no PSTH
    # uses (dmfc_rsg: is_outlier).
    outlier_field: str | None = None
    # Evaluation targets cover only [start_field, end_field) of each window, front-padded with NaN
    # (dmfc_rsg: set_time .. go_time); the PSTHs are over that segment, aligned at its end.
    eval_segment: tuple[str, str] | None = None
    # nlb_tools' jitter: every train/val window is shifted later by a random whole number of bins,
    # up to clip(window length - <jitter_field>, 0, jitter_max_ms) ms (dmfc_rsg: tp, 300 ms),
    # drawn with numpy's legacy generator seeded 0 as nlb_tools draws it.
    jitter_field: str | None = None
    jitter_max_ms: int = 0
    # Results of the three scaled mazes are reported together under this key, e.g. "[500]".
    scaling_key: str | None = None
    expected: ExpectedCounts = field(default_factory=ExpectedCounts)
    # Synthetic datasets: generator name and its arguments (seed, sizes).
    generator: str | None = None
    generator_args: tuple[tuple[str, int | float | str], ...] = ()
    # Folder under the data directory holding `train` and `test` (None: paths are used as given).
    folder: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        start, stop = self.window_ms
        if stop <= start:
            raise SpecError(f"{self.name}: window_ms {self.window_ms} must have stop > start")
        if self.behavior_columns and self.behavior_field is not None:
            raise SpecError(f"{self.name}: give behavior_field (a TimeSeries) or behavior_columns (trial "
                            "columns), not both")
        if self.eval_segment is not None and len(self.eval_segment) != 2:
            raise SpecError(f"{self.name}: eval_segment names a start and an end column, got {self.eval_segment}")
        if self.forward_ms < 0:
            raise SpecError(f"{self.name}: forward_ms must be >= 0, got {self.forward_ms}")
        for bin_ms in self.bin_sizes:
            if bin_ms <= 0:
                raise SpecError(f"{self.name}: bin sizes must be positive, got {self.bin_sizes}")
            # A partial bin would silently change the window the benchmark defines.
            for what, length in (("window_ms", stop - start), ("forward_ms", self.forward_ms)):
                if length % bin_ms:
                    raise SpecError(f"{self.name}: the {bin_ms} ms bin size does not divide {what} "
                                    f"({length} ms); use bin sizes that divide both windows")

    @property
    def window_len_ms(self) -> int:
        return self.window_ms[1] - self.window_ms[0]

    def n_bins(self, bin_ms: int) -> int:
        """Bins in the trial window at `bin_ms`."""
        return self.window_len_ms // bin_ms

    def n_forward_bins(self, bin_ms: int) -> int:
        return self.forward_ms // bin_ms

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


def spec_to_dict(spec: DatasetSpec) -> dict[str, object]:
    """A JSON-ready form of `spec` (results records keep it for datasets that are not built in)."""
    return asdict(spec)


def spec_from_dict(data: Mapping[str, Any]) -> DatasetSpec:
    """The spec `spec_to_dict` wrote; SpecError when it is not one."""
    try:
        values = dict(data)
        values["train"] = Asset(**values["train"])
        values["test"] = Asset(**values["test"])
        values["expected"] = ExpectedCounts(**values.get("expected", {}))
        for key in ("window_ms", "psth_conditions", "bin_sizes", "behavior_columns"):
            if key in values:
                values[key] = tuple(values[key])
        if values.get("eval_segment") is not None:
            values["eval_segment"] = tuple(values["eval_segment"])
        values["generator_args"] = tuple(tuple(pair) for pair in values.get("generator_args", ()))
        return DatasetSpec(**values)
    except (KeyError, TypeError, ValueError) as err:
        raise SpecError(f"not a dataset spec ({err})") from None
