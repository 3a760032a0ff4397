"""Read what the NLB NWB files hold, unbinned, straight from HDF5.

The NLB files follow one layout (see the reference doc): a `units` table with ragged
`spike_times` and `obs_intervals`, a boolean `heldout` column; a `trials` table; behaviour
TimeSeries in `processing/behavior`. Reading the arrays with h5py is one read per column,
which keeps a 700 MB session under a second; pynwb is used by the writer and the tests.
"""

from __future__ import annotations

import logging
import os
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

    def times(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The times of samples [start, stop) (all by default)."""
        stop = self.data.shape[0] if stop is None else stop
        if self.timestamps is not None:
            return self.timestamps[start:stop]
        assert self.rate is not None, "a series without timestamps has a rate"
        return np.arange(start, stop) / self.rate + self.starting_time

    def span(self) -> tuple[float, float]:
        """The first and last sample's time (without building every sample's)."""
        n = self.data.shape[0]
        return float(self.times(0, 1)[0]), float(self.times(n - 1, n)[0])


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
# The benchmark's split values ('none': a trial the benchmark leaves out, as in the DANDI files).
SPLITS = ("train", "val", "test", "none")
# Times are seconds from the session's start. NLB sessions last hours; a time beyond a day is a
# damaged file or another unit, and refused before a 1 ms grid of that length is allocated.
MAX_SESSION_S = 86_400.0
# NLB files store their columns uncompressed; a dataset is allowed to expand this much beyond
# the file's size (compression) before its declared shape is taken for damage.
MAX_EXPANSION = 64
# Units or trials named in one message before the rest is summarised as a count.
MAX_LISTED = 10

log = logging.getLogger(__name__)


def _listing(ids: np.ndarray) -> str:
    """'[3, 8, 12]' for up to MAX_LISTED ids, then '... and N more'."""
    values = [int(i) if isinstance(i, (int, np.integer)) else i for i in np.asarray(ids).tolist()[:MAX_LISTED]]
    more = f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else ""
    return f"{values}{more}"


def _values(group: h5py.Group, name: str) -> np.ndarray:
    """The values of the dataset `name` in `group`, refused when its declared size exceeds what
    the file could hold (a damaged shape would otherwise ask for gigabytes before failing)."""
    item = group[name]
    if not isinstance(item, h5py.Dataset):
        raise NWBFormatError(f"{item.file.filename}: {item.name} is not a dataset")
    limit = MAX_EXPANSION * os.path.getsize(item.file.filename) + (1 << 20)
    if item.dtype.itemsize * float(np.prod(item.shape or ())) > limit:
        raise NWBFormatError(f"{item.file.filename}: {item.name} declares shape {item.shape} of {item.dtype}, more "
                             "than the file could hold; the file is damaged")
    return np.asarray(item[()])


def _ragged(group: h5py.Group, name: str, path: Path, n_rows: int) -> tuple[np.ndarray, ...]:
    """The rows of a ragged column, with its index checked: one end per row, never decreasing,
    never past the data."""
    data, ends = _ragged_parts(group, name, path, n_rows)
    starts = np.concatenate([[0], ends[:-1]])
    return tuple(data[s:e] for s, e in zip(starts, ends))


def _ragged_parts(group: h5py.Group, name: str, path: Path, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """A ragged column's values and each row's end (int64), the index checked as in `_ragged`."""
    data = _values(group, name)
    index = _values(group, f"{name}_index")
    where = f"{path}: {group.name}/{name}_index"
    if index.ndim != 1 or index.dtype.kind not in "iu":
        raise NWBFormatError(f"{where} is not a 1-d integer index (shape {index.shape}, dtype {index.dtype})")
    if len(index) != n_rows:
        raise NWBFormatError(f"{where} has {len(index)} entries for {n_rows} rows")
    ends = index.astype(np.int64)
    if data.ndim == 0 or (len(ends) and (ends[0] < 0 or np.any(np.diff(ends) < 0) or ends[-1] > len(data))):
        raise NWBFormatError(f"{where} does not index {name} ({len(data) if data.ndim else 0} values): "
                             "its ends must rise from 0 to at most the number of values")
    return data, ends


def _decode(values: np.ndarray, where: str) -> np.ndarray:
    if values.dtype.kind in ("O", "S"):
        try:
            return np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)
        except UnicodeDecodeError as err:
            raise NWBFormatError(f"{where} holds text that is not UTF-8 ({err.reason})") from None
    return values


def _numeric_1d(values: np.ndarray, where: str, what: str, kinds: str = "fiu") -> np.ndarray:
    if values.ndim != 1 or values.dtype.kind not in kinds:
        raise NWBFormatError(f"{where} must be a 1-d column of {what} (found shape {values.shape}, "
                             f"dtype {values.dtype})")
    return values


def _check_times(values: np.ndarray, where: str) -> None:
    """Seconds from the session's start: NaN allowed (a missing event), infinity and times beyond
    MAX_SESSION_S refused."""
    finite = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    if np.isinf(finite).any():
        raise NWBFormatError(f"{where} holds infinite times")
    if len(finite) and np.abs(finite).max() > MAX_SESSION_S:
        raise NWBFormatError(f"{where} holds times up to {float(np.abs(finite).max()):.6g} s, beyond a day: "
                             "times must be seconds from the session's start")


def _read_trials(f: h5py.File, path: Path) -> pd.DataFrame:
    if "intervals/trials" not in f:
        raise NWBFormatError(f"{path}: no trials table (intervals/trials)")
    group = f["intervals/trials"]
    missing = [c for c in REQUIRED_TRIAL_COLUMNS if c not in group]
    if missing:
        raise NWBFormatError(f"{path}: trials table lacks column(s) {missing}")
    n = len(group["start_time"])
    columns: dict[str, object] = {"trial_id": _values(group, "id") if "id" in group else None}
    names = [_decode(np.array([c]), f"{path}: trials table colnames")[0] for c in group.attrs.get("colnames", [])]
    names = [str(c) for c in names] or [k for k in group if k != "id" and not k.endswith("_index")]
    names += [c for c in REQUIRED_TRIAL_COLUMNS if c not in names]
    for name in names:
        if name not in group:
            raise NWBFormatError(f"{path}: trials column {name!r} is listed but absent")
        where = f"{path}: trials column {name!r}"
        if f"{name}_index" in group:
            columns[name] = list(_ragged(group, name, path, n))
            continue
        values = _values(group, name)
        if values.ndim == 0 or len(values) != n:
            raise NWBFormatError(f"{where} has {values.size} values for {n} trials")
        if name.endswith("_time"):
            _check_times(_numeric_1d(values, where, "times in seconds"), where)
        columns[name] = list(values) if values.ndim > 1 else _decode(values, where)
    if columns["trial_id"] is None:
        columns["trial_id"] = np.arange(n)
    ids = _numeric_1d(np.asarray(columns["trial_id"]), f"{path}: trials table id", "integer trial ids", "iu")
    if len(ids) != n:
        raise NWBFormatError(f"{path}: trials table id has {len(ids)} values for {n} trials")
    trials = pd.DataFrame(columns)
    trials["split"] = trials["split"].astype(str)
    _check_trial_rows(trials, path)
    return trials


def _check_trial_rows(trials: pd.DataFrame, path: Path) -> None:
    """Refuse duplicated trials (they would count twice); warn about trials without start or stop."""
    ids = trials["trial_id"].to_numpy()
    start, stop = trials["start_time"].to_numpy(float), trials["stop_time"].to_numpy(float)
    same_id = pd.Series(ids).duplicated(keep=False).to_numpy()
    timed = ~np.isnan(start) & ~np.isnan(stop)
    same_times = pd.DataFrame({"start": start, "stop": stop}).duplicated(keep=False).to_numpy() & timed
    for mask, what in ((same_id, "the same id"), (same_times, "the same start_time and stop_time")):
        if mask.any():
            raise NWBFormatError(
                f"{path}: trials {_listing(np.flatnonzero(mask))} (rows of the trials table) have {what}: a "
                "duplicated trial would be counted twice; remove the copies"
            )
    untimed = ~timed
    if untimed.any():
        log.warning("%s: trial(s) %s have no start_time or stop_time (NaN); their windows are placed by the "
                    "alignment event alone, and the rule that keeps a window from running into the next "
                    "trial cannot use them", path, _listing(ids[untimed]))
    backwards = timed & (stop < start)
    if backwards.any():
        log.warning("%s: trial(s) %s stop before they start (stop_time < start_time)", path,
                    _listing(ids[backwards]))
    unknown = ~trials["split"].isin(SPLITS).to_numpy()
    if unknown.any():
        values = sorted(set(trials["split"][unknown]))
        log.warning("%s: trial(s) %s have split value(s) %s, not one of %s; they belong to no split and are "
                    "left out", path, _listing(ids[unknown]), values, list(SPLITS))


def _read_units(f: h5py.File, path: Path) -> Units:
    if "units" not in f:
        raise NWBFormatError(f"{path}: no units table")
    group = f["units"]
    missing = [c for c in REQUIRED_UNIT_COLUMNS if c not in group]
    if missing:
        raise NWBFormatError(f"{path}: units table lacks column(s) {missing}")
    ids = _values(group, "id")
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise NWBFormatError(f"{path}: units table id must be a 1-d integer column (dtype {ids.dtype})")
    if len(np.unique(ids)) != len(ids):
        repeated = pd.Series(ids)[pd.Series(ids).duplicated()].unique()
        raise NWBFormatError(f"{path}: units table has duplicated unit ids {_listing(repeated)}")
    n = len(ids)
    stored = group["spike_times"]
    if not isinstance(stored, h5py.Dataset) or stored.ndim != 1 or stored.dtype.kind not in "fiu":
        raise NWBFormatError(f"{path}: units column 'spike_times' must be a 1-d column of times in seconds")
    data, ends = _ragged_parts(group, "spike_times", path, n)
    starts = np.concatenate([[0], ends[:-1]])
    spike_times = [data[s:e] for s, e in zip(starts, ends)]
    # The checks run over the one array all rows are views of (at the full MC_Maze size, 18 M
    # spikes: 0.03 s, against 0.15 s unit by unit); a failing check names the units.
    rows = data[: ends[-1]] if n else data[:0]
    lowest, highest = (float(rows.min()), float(rows.max())) if len(rows) else (0.0, 0.0)
    if not (np.isfinite(lowest) and np.isfinite(highest)):  # NaN and infinity reach the min or max
        bad = np.unique(np.searchsorted(ends, np.flatnonzero(~np.isfinite(rows)), side="right"))
        raise NWBFormatError(f"{path}: spike_times of unit(s) {_listing(ids[bad])} hold NaN or infinite times")
    if max(-lowest, highest) > MAX_SESSION_S:
        for times in spike_times:  # the message names the first unit's largest time
            _check_times(times, f"{path}: units column 'spike_times'")
    falls = np.flatnonzero(rows[1:] < rows[:-1])  # between spike p and p + 1
    unit_of_fall = np.searchsorted(ends, falls, side="right")
    unsorted = np.unique(unit_of_fall[falls + 1 < ends[unit_of_fall]]).tolist()
    if unsorted:
        # The counts do not depend on the order, but the PSTH targets search sorted times.
        log.warning("%s: spike_times of unit(s) %s are not in increasing order; sorted them", path,
                    _listing(ids[unsorted]))
        for i in unsorted:
            spike_times[i] = np.sort(spike_times[i], kind="stable")
    if "obs_intervals" in group:
        obs = tuple(_intervals(iv, path, unit) for iv, unit in zip(_ragged(group, "obs_intervals", path, n), ids))
    else:  # no observation intervals recorded: observed throughout
        obs = tuple(np.array([[0.0, np.inf]]) for _ in ids)
    return Units(ids, tuple(spike_times), obs, _heldout(group, path, n))


def _intervals(values: np.ndarray, path: Path, unit: object) -> np.ndarray:
    where = f"{path}: obs_intervals of unit {unit}"
    if values.dtype.kind not in "fiu" or (values.ndim == 2 and values.shape[1] != 2) or values.ndim not in (1, 2) \
            or values.size % 2:
        raise NWBFormatError(f"{where} must be (start, stop) pairs in seconds (shape {values.shape})")
    intervals = np.asarray(values, dtype=float).reshape(-1, 2)
    start, stop = intervals[:, 0], intervals[:, 1]
    if not np.isfinite(start).all() or np.isnan(stop).any() or np.isneginf(stop).any() or (stop < start).any():
        raise NWBFormatError(f"{where}: every interval needs a finite start and a stop at or after it")
    _check_times(np.concatenate([start, stop[np.isfinite(stop)]]), where)
    return intervals


def _heldout(group: h5py.Group, path: Path, n: int) -> np.ndarray:
    """The boolean `heldout` column; integers are accepted when every value is 0 or 1."""
    if "heldout" not in group:
        return np.zeros(n, bool)
    values = _values(group, "heldout")
    where = f"{path}: units column 'heldout'"
    if values.ndim != 1 or len(values) != n:
        raise NWBFormatError(f"{where} has shape {values.shape} for {n} units")
    if values.dtype.kind == "b":
        return values
    if values.dtype.kind in "iu" and np.isin(values, (0, 1)).all():
        return values.astype(bool)
    shown = ", ".join(repr(v) for v in np.unique(values)[:5].tolist())
    raise NWBFormatError(f"{where} must be boolean (True for the held-out units), not {values.dtype} "
                         f"with values {shown}")


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
        where = f"{path}: behaviour series {name!r}"
        comments = _text(series.attrs.get("comments", ""))
        columns: tuple[str, ...] = ()
        if "columns=" in comments:
            columns = tuple(comments.split("[")[-1].split("]")[0].split(","))
        data = _values(series, "data")
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2 or data.dtype.kind not in "fiu":
            raise NWBFormatError(f"{where}: data must be (samples, channels) numbers (shape {data.shape}, "
                                 f"dtype {data.dtype})")
        rate = None
        start = 0.0
        stamps = None
        if "timestamps" in series:
            stamps = _numeric_1d(_values(series, "timestamps"), f"{where}: timestamps", "times in seconds")
            if len(stamps) != len(data):
                raise NWBFormatError(f"{where}: {len(stamps)} timestamps for {len(data)} samples")
            _check_times(stamps, f"{where}: timestamps")
        elif "starting_time" in series:
            start = float(_values(series, "starting_time"))
            rate = float(series["starting_time"].attrs["rate"])
            if not (np.isfinite(start) and abs(start) <= MAX_SESSION_S and np.isfinite(rate) and rate > 0):
                raise NWBFormatError(f"{where}: starting_time {start} s at rate {rate} Hz is not a sampling clock")
        else:
            raise NWBFormatError(f"{where} has neither timestamps nor a rate")
        unit = _text(series["data"].attrs.get("unit", ""))
        out[name] = Behavior(name, data, columns, rate, start, stamps, unit)
    return out


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _observed_blocks(intervals: np.ndarray, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The union of the half-open intervals [start, stop), cut to the session [0, end_s), as
    disjoint (starts, stops)."""
    order = np.argsort(intervals[:, 0], kind="stable")
    starts, reach = intervals[order, 0], np.maximum.accumulate(intervals[order, 1])
    new_block = np.concatenate([[True], starts[1:] > reach[:-1]]) if len(starts) else np.zeros(0, bool)
    block_starts = starts[new_block]
    block_stops = reach[np.append(np.flatnonzero(new_block)[1:] - 1, len(starts) - 1)] if len(starts) else reach
    return np.clip(block_starts, 0.0, end_s), np.clip(block_stops, 0.0, end_s)


def _check_spike_locations(rec: Recording) -> None:
    """Warn about spikes the benchmark ignores: outside the session, or outside the unit's
    observation intervals (unobserved time is NaN, never counted)."""
    end_s = rec.end_ms / 1000.0
    outside_session: dict[int, int] = {}
    unobserved: dict[int, int] = {}
    blocks: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    for row, (times, intervals) in enumerate(zip(rec.units.spike_times, rec.units.obs_intervals)):
        # Spike times are sorted (see _read_units): spikes in a span are counted by two searches,
        # not tested one by one (at the full MC_Maze size 0.02 s against 0.23 s).
        first, last = np.searchsorted(times, [0.0, end_s])
        if last - first < len(times):
            outside_session[row] = int(len(times) - (last - first))
        key = intervals.tobytes()
        if key not in blocks:
            blocks[key] = _observed_blocks(intervals, end_s)
        block_starts, block_stops = blocks[key]
        observed = int((np.searchsorted(times, block_stops) - np.searchsorted(times, block_starts)).sum())
        if observed < last - first:
            unobserved[row] = int(last - first - observed)
    ids = rec.units.ids
    if outside_session:
        log.warning("%s: %d spike time(s) of unit(s) %s lie outside the session (0 to %g s); they are ignored",
                    rec.path, sum(outside_session.values()), _listing(ids[list(outside_session)]), end_s)
    if unobserved:
        log.warning("%s: %d spike time(s) of unit(s) %s lie outside the unit's obs_intervals; they are ignored, "
                    "as the benchmark ignores unobserved time", rec.path, sum(unobserved.values()),
                    _listing(ids[list(unobserved)]))


def read_recording(path: str | Path, behavior_fields: tuple[str, ...] | None = None) -> Recording:
    """Read units, trials and (the named, or all) behaviour series of one NLB NWB file.

    Everything read is checked first: a file that breaks the NLB layout (a ragged index that
    does not fit its data, a `heldout` column that is not boolean, duplicated trials, times that
    are not seconds of a session) is an NWBFormatError naming the file and the column. What the
    benchmark tolerates is kept with a warning naming the units or trials: unsorted spike times
    (sorted here), trials without start or stop time, spikes outside the session or outside the
    unit's observation intervals (which no tensor counts)."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"NWB file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise NWBFormatError(f"{path}: not a readable HDF5/NWB file ({err}); it may be truncated") from None
    try:
        with f:
            units = _read_units(f, path)
            trials = _read_trials(f, path)
            behavior = _read_behavior(f, path, behavior_fields)
    except NWBFormatError:
        raise
    # h5py reports a damaged file in all of these, depending on which structure the damage hit.
    except (OSError, KeyError, RuntimeError, ValueError, TypeError, IndexError) as err:
        raise NWBFormatError(f"{path}: damaged or incomplete NWB file ({type(err).__name__}: {err})") from None
    rec = Recording(path=path, units=units, trials=trials, behavior=behavior)
    _check_spike_locations(rec)
    return rec
