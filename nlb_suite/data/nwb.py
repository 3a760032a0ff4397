"""Read what the NLB NWB files hold, unbinned, straight from HDF5.

The NLB files follow one layout (see the reference doc): a `units` table with ragged
`spike_times` and `obs_intervals`, a boolean `heldout` column; a `trials` table; behaviour
TimeSeries in `processing/behavior`. Reading the arrays with h5py is one read per column,
which keeps a 700 MB session under a second; pynwb is used by the writer and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..core.errors import NlbSuiteError
from .paths import MissingDataError


class NWBFormatError(NlbSuiteError, ValueError):
    """An NWB file is unreadable or lacks what the NLB layout requires."""


@dataclass(frozen=True)
class Units:
    """Sorted units. Times in seconds; `obs_intervals[i]` is (k, 2): time outside it is unobserved."""

    ids: np.ndarray
    spike_times: tuple[np.ndarray, ...]
    obs_intervals: tuple[np.ndarray, ...]
    heldout: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Behavior:
    """One behaviour TimeSeries: `data` is (samples, channels), sampled at `rate` Hz from
    `starting_time`, or at explicit `timestamps` (seconds)."""

    name: str
    data: np.ndarray
    columns: tuple[str, ...]
    rate: float | None
    starting_time: float
    timestamps: np.ndarray | None = None
    unit: str = ""

    def times(self) -> np.ndarray:
        if self.timestamps is not None:
            return self.timestamps
        return np.arange(self.data.shape[0]) / self.rate + self.starting_time


@dataclass(frozen=True)
class Recording:
    """The contents of one NLB NWB file."""

    path: Path
    units: Units
    trials: pd.DataFrame
    behavior: dict[str, Behavior] = field(default_factory=dict)

    @property
    def end_ms(self) -> int:
        """Length of the session's 1 ms grid, by the benchmark's rule: the last observed time of
        any unit, or the last trial's stop time if that is later."""
        last_obs = max(
            (iv[-1, 1] for iv in self.units.obs_intervals if len(iv) and np.isfinite(iv[-1, 1])), default=0.0
        )
        end = round(last_obs * 1000.0)
        last_stop = float(self.trials["stop_time"].iloc[-1]) if len(self.trials) else 0.0
        if end < last_stop:
            end = round(last_stop * 1000.0)
        return int(end)


REQUIRED_UNIT_COLUMNS = ("spike_times", "spike_times_index", "id")
REQUIRED_TRIAL_COLUMNS = ("start_time", "stop_time", "split")


def _ragged(group: h5py.Group, name: str) -> tuple[np.ndarray, ...]:
    data = group[name][()]
    ends = group[f"{name}_index"][()].astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    return tuple(data[s:e] for s, e in zip(starts, ends))


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in ("O", "S"):
        return np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)
    return values


def _read_trials(f: h5py.File, path: Path) -> pd.DataFrame:
    if "intervals/trials" not in f:
        raise NWBFormatError(f"{path}: no trials table (intervals/trials)")
    group = f["intervals/trials"]
    missing = [c for c in REQUIRED_TRIAL_COLUMNS if c not in group]
    if missing:
        raise NWBFormatError(f"{path}: trials table lacks column(s) {missing}")
    columns: dict[str, object] = {"trial_id": group["id"][()] if "id" in group else None}
    names = [str(c) for c in group.attrs.get("colnames", [])] or [
        k for k in group if k != "id" and not k.endswith("_index")
    ]
    n = len(group["start_time"])
    for name in names:
        if name not in group:
            raise NWBFormatError(f"{path}: trials column {name!r} is listed but absent")
        if f"{name}_index" in group:
            columns[name] = list(_ragged(group, name))
        else:
            values = group[name][()]
            columns[name] = list(values) if values.ndim > 1 else _decode(values)
    if columns["trial_id"] is None:
        columns["trial_id"] = np.arange(n)
    trials = pd.DataFrame(columns)
    trials["split"] = trials["split"].astype(str)
    return trials


def _read_behavior(f: h5py.File, path: Path, fields: tuple[str, ...] | None) -> dict[str, Behavior]:
    out: dict[str, Behavior] = {}
    if "processing/behavior" not in f:
        return out
    module = f["processing/behavior"]
    for name in module:
        if fields is not None and name not in fields:
            continue
        series = module[name]
        if not isinstance(series, h5py.Group) or "data" not in series:
            continue
        comments = str(series.attrs.get("comments", ""))
        columns: tuple[str, ...] = ()
        if "columns=" in comments:
            columns = tuple(comments.split("[")[-1].split("]")[0].split(","))
        data = series["data"][()]
        if data.ndim == 1:
            data = data[:, None]
        rate = None
        start = 0.0
        stamps = None
        if "timestamps" in series:
            stamps = series["timestamps"][()]
        elif "starting_time" in series:
            start = float(series["starting_time"][()])
            rate = float(series["starting_time"].attrs["rate"])
        else:
            raise NWBFormatError(f"{path}: behaviour series {name!r} has neither timestamps nor a rate")
        unit = series["data"].attrs.get("unit", "")
        out[name] = Behavior(name, data, columns, rate, start, stamps, unit if isinstance(unit, str) else unit.decode())
    return out


def read_recording(path: str | Path, behavior_fields: tuple[str, ...] | None = None) -> Recording:
    """Read units, trials and (the named, or all) behaviour series of one NLB NWB file."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"NWB file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise NWBFormatError(f"{path}: not a readable HDF5/NWB file ({err}); it may be truncated") from None
    with f:
        try:
            if "units" not in f:
                raise NWBFormatError(f"{path}: no units table")
            group = f["units"]
            missing = [c for c in REQUIRED_UNIT_COLUMNS if c not in group]
            if missing:
                raise NWBFormatError(f"{path}: units table lacks column(s) {missing}")
            ids = group["id"][()]
            spike_times = _ragged(group, "spike_times")
            if "obs_intervals" in group:
                obs = tuple(np.asarray(iv, dtype=float).reshape(-1, 2) for iv in _ragged(group, "obs_intervals"))
            else:  # no observation intervals recorded: observed throughout
                obs = tuple(np.array([[0.0, np.inf]]) for _ in ids)
            heldout = group["heldout"][()].astype(bool) if "heldout" in group else np.zeros(len(ids), bool)
            units = Units(ids, spike_times, obs, heldout)
            trials = _read_trials(f, path)
            behavior = _read_behavior(f, path, behavior_fields)
        except (OSError, KeyError, RuntimeError) as err:
            raise NWBFormatError(f"{path}: damaged or incomplete NWB file ({err})") from None
    return Recording(path=path, units=units, trials=trials, behavior=behavior)
