"""Spike times on the session's bin grid, the way nlb_tools 0.0.4 puts them there.

nlb_tools counts spikes into a 1 ms frame of the whole session and resamples it, so every bin
of every trial lies on one global grid starting at time 0, and a trial window starts at the
first bin boundary at or after `align + start`. We keep that grid but never build the frame:
each unit's spikes are counted straight into the bins that the windows need.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from ..data.nwb import Recording

NS_PER_MS = 1_000_000
ONE_US_NS = 1_000


def seconds_to_ns(seconds: np.ndarray) -> np.ndarray:
    """Float seconds to integer ns as pandas' to_timedelta(unit='s') converts them (whole
    seconds, plus the fraction rounded to 9 decimals and truncated), so window edges fall on
    the same side of a bin boundary as in nlb_tools. NaN becomes the minimum int64."""
    s = np.asarray(seconds, dtype=float)
    finite = np.isfinite(s)
    safe = np.where(finite, s, 0.0)
    base = np.trunc(safe)
    frac = np.round(safe - base, 9)
    ns = base.astype(np.int64) * 1_000_000_000 + (frac * 1e9).astype(np.int64)
    return np.where(finite, ns, np.iinfo(np.int64).min)


def ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -((-np.asarray(a)) // b)


def window_start_bins(align_ns: np.ndarray, offset_ms: int, bin_ms: int) -> np.ndarray:
    """Index of the first bin whose start is at or after align + offset."""
    return ceil_div(align_ns + offset_ms * NS_PER_MS, bin_ms * NS_PER_MS)


def observed_ms(intervals: np.ndarray, end_ms: int) -> np.ndarray:
    """Boolean (end_ms,): ms k is observed when ceil(start) <= k < floor(end) for an interval
    (times in ms, decimal-rounded first, as nlb_tools masks unobserved time)."""
    edges = np.zeros(end_ms + 1, dtype=np.int32)
    if len(intervals):
        stop = np.where(np.isfinite(intervals[:, 1]), intervals[:, 1], end_ms / 1000.0)
        first = np.clip(np.ceil(np.round(intervals[:, 0] * 1000.0, 6)).astype(np.int64), 0, end_ms)
        last = np.clip(np.floor(np.round(stop * 1000.0, 6)).astype(np.int64), 0, end_ms)
        keep = last > first
        np.add.at(edges, first[keep], 1)
        np.add.at(edges, last[keep], -1)
    return np.cumsum(edges[:-1], dtype=np.int32) > 0


@dataclass(frozen=True)
class UnitSpikes:
    """One unit on the 1 ms grid: the ms index of each observed spike, and the observed mask."""

    ms: np.ndarray
    observed: np.ndarray


# What is derived from a recording once and shared by every tensor and target built from it
# (the spikes on the 1 ms grid, the behaviour's windows), kept while the recording lives.
_DERIVED: dict[int, dict[object, object]] = {}


def derived(rec: Recording) -> dict[object, object]:
    """The memo of values derived from `rec`; dropped when `rec` is collected."""
    key = id(rec)
    memo = _DERIVED.get(key)
    if memo is None:
        memo = _DERIVED[key] = {}
        weakref.finalize(rec, _DERIVED.pop, key, None)
    return memo


@dataclass(frozen=True)
class SessionSpikes:
    """Every unit of a recording on the 1 ms grid: `units[row]`, and which of the distinct
    observed masks each row has (`mask_of[row]` indexes `masks`)."""

    units: tuple[UnitSpikes, ...]
    masks: tuple[np.ndarray, ...]
    mask_of: np.ndarray


def session_spikes(rec: Recording) -> SessionSpikes:
    """The observed spikes of every unit as 1 ms indices (nlb_tools' decimal-rounded truncation
    of t * 1000), computed once per recording. Spikes in unobserved time are dropped, as the
    benchmark drops them. Indices are int32 (sessions are at most MAX_SESSION_S, 86.4 M ms), half
    the memory of int64 at the full MC_Maze size (18 M spikes)."""
    memo = derived(rec)
    found = memo.get("spikes")
    if isinstance(found, SessionSpikes):
        return found
    end_ms = rec.end_ms
    index_type = np.int32 if end_ms < np.iinfo(np.int32).max else np.int64
    masks: dict[bytes, int] = {}
    mask_arrays: list[np.ndarray] = []
    mask_of = np.empty(len(rec.units), dtype=np.int64)
    units = []
    for row, (times, intervals) in enumerate(zip(rec.units.spike_times, rec.units.obs_intervals)):
        key = intervals.tobytes()
        if key not in masks:
            masks[key] = len(mask_arrays)
            mask_arrays.append(observed_ms(intervals, end_ms))
        mask_of[row] = masks[key]
        observed = mask_arrays[mask_of[row]]
        scaled = times * 1000.0
        np.round(scaled, 6, out=scaled)
        # Spike times are sorted (the reader sorts them), so their ms are too: the session's
        # are one slice. (Times are checked to lie within MAX_SESSION_S, so int32 holds them.)
        ms = scaled.astype(index_type)
        first, last = np.searchsorted(ms, np.array([0, end_ms], dtype=index_type))
        ms = ms[first:last]
        units.append(UnitSpikes(ms=ms[observed[ms]], observed=observed))
    spikes = SessionSpikes(tuple(units), tuple(mask_arrays), mask_of)
    memo["spikes"] = spikes
    return spikes


def unit_spikes(rec: Recording, rows: np.ndarray) -> list[UnitSpikes]:
    """Observed spikes of the units at `rows` on the 1 ms grid (see `session_spikes`)."""
    units = session_spikes(rec).units
    return [units[row] for row in rows]


@dataclass(frozen=True)
class Windows:
    """Trial windows on the bin grid: the first bin of each trial, and how many bins."""

    starts: np.ndarray
    n_bins: int


def spikes_in_spans(ms: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For spans [lo, hi) (may overlap): the span index and ms (int64) of every spike of the
    sorted `ms` inside, span by span, in time order within each."""
    first = np.searchsorted(ms, lo.astype(ms.dtype, copy=False))  # cast: else all of `ms` is converted
    counts = np.maximum(np.searchsorted(ms, hi.astype(ms.dtype, copy=False)) - first, 0)
    owner = np.repeat(np.arange(len(lo)), counts)
    # Spike i of the result is ms[first[owner] + (i - where owner's spikes begin in the result)].
    where = np.arange(len(owner)) + (first - (np.cumsum(counts) - counts))[owner]
    return owner, ms[where].astype(np.int64)


def spike_tensors(rec: Recording, rows: np.ndarray, bin_ms: int, windows: dict[str, Windows]) -> dict[str, np.ndarray]:
    """(trials, bins, units) spike counts of the units at `rows` for each named set of windows:
    NaN where a bin's first ms is unobserved or the bin lies outside the session.

    Only the spikes inside the windows are touched: each unit's are found by two searches of its
    sorted spikes and counted into the zeroed tensor. Measured at the full MC_Maze size (2,364
    trials, 182 units, 5 ms, val phase, a shared 2-core machine): all five spike tensors took
    3.3 s when every unit was counted over the whole session's bins (np.bincount) and the windows
    gathered from it; they take 0.4-0.9 s this way, most of it the first touch of the tensors'
    270 MB of fresh memory (the largest, 132 MB, takes 0.14 s where its memory is reused).
    np.add.at in place of the run-length count took 0.9 s more."""
    session = session_spikes(rec)
    n_session_bins = -(-rec.end_ms // bin_ms)
    out = {}
    for name, w in windows.items():
        tensor = np.zeros((len(w.starts), w.n_bins, len(rows)), dtype=np.float32)
        flat = tensor.reshape(-1)
        # A spike in bin b of window t goes to flat entry ((t * n_bins + b - start_t) * units + column).
        base = (np.arange(len(w.starts)) * w.n_bins - w.starts) * len(rows)
        for column, row in enumerate(rows):
            owner, picked = spikes_in_spans(session.units[row].ms, w.starts * bin_ms, (w.starts + w.n_bins) * bin_ms)
            # Ordered by window, then by time: equal entries (spikes of one bin) are adjacent, so a
            # run-length count does what np.add.at would, without its cost.
            where = base[owner] + (picked // bin_ms) * len(rows) + column
            if len(where):
                first = np.flatnonzero(np.concatenate([[True], where[1:] != where[:-1]]))
                flat[where[first]] = np.diff(np.append(first, len(where)))
        idx = w.starts[:, None] + np.arange(w.n_bins)[None, :]
        inside = (idx >= 0) & (idx < n_session_bins)
        first_ms = np.where(inside, idx, 0) * bin_ms
        mask_of = session.mask_of[rows]
        for mask in np.unique(mask_of):
            unobserved = ~(inside & session.masks[mask][first_ms])
            if not unobserved.any():
                continue
            if (mask_of == mask).all():
                tensor[unobserved] = np.nan
            else:
                columns = np.flatnonzero(mask_of == mask)
                part = tensor[:, :, columns]
                part[unobserved] = np.nan
                tensor[:, :, columns] = part
        out[name] = tensor
    return out


def ordered_units(rec: Recording, heldout: bool) -> np.ndarray:
    """Rows of held-in (or held-out) units sorted by unit id: the benchmark's column order."""
    rows = np.flatnonzero(rec.units.heldout == heldout)
    return rows[np.argsort(rec.units.ids[rows], kind="stable")]
