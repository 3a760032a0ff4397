"""Spike times on the session's bin grid, the way nlb_tools 0.0.4 puts them there.

nlb_tools counts spikes into a 1 ms frame of the whole session and resamples it, so every bin
of every trial lies on one global grid starting at time 0, and a trial window starts at the
first bin boundary at or after `align + start`. We keep that grid but never build the frame:
each unit's spikes are counted straight into the bins that the windows need.
"""

from __future__ import annotations

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
    return np.cumsum(edges[:-1]) > 0


@dataclass(frozen=True)
class UnitSpikes:
    """One unit on the 1 ms grid: the ms index of each observed spike, and the observed mask."""

    ms: np.ndarray
    observed: np.ndarray


def unit_spikes(rec: Recording, rows: np.ndarray) -> list[UnitSpikes]:
    """Observed spikes of the units at `rows`, as 1 ms indices (nlb_tools' decimal-rounded
    truncation of t * 1000). Spikes in unobserved time are dropped, as the benchmark drops them."""
    end_ms = rec.end_ms
    masks: dict[bytes, np.ndarray] = {}
    out = []
    for row in rows:
        intervals = rec.units.obs_intervals[row]
        key = intervals.tobytes()
        if key not in masks:
            masks[key] = observed_ms(intervals, end_ms)
        observed = masks[key]
        ms = np.round(rec.units.spike_times[row] * 1000.0, 6).astype(np.int64)
        ms = ms[(ms >= 0) & (ms < end_ms)]
        out.append(UnitSpikes(ms=ms[observed[ms]], observed=observed))
    return out


def binned_counts(spikes: UnitSpikes, bin_ms: int) -> np.ndarray:
    """Counts per bin of the global grid (float32), NaN where the bin's first ms is unobserved."""
    end_ms = len(spikes.observed)
    n_bins = -(-end_ms // bin_ms)
    counts = np.bincount(spikes.ms // bin_ms, minlength=n_bins).astype(np.float32)
    counts[~spikes.observed[::bin_ms]] = np.nan
    return counts


def gather_windows(values: np.ndarray, start_bins: np.ndarray, n_bins: int) -> np.ndarray:
    """values[start + k] for every window start and k < n_bins; NaN outside the session.
    `values` may carry trailing dimensions (channels)."""
    idx = start_bins[:, None] + np.arange(n_bins)[None, :]
    inside = (idx >= 0) & (idx < len(values))
    out = np.full(idx.shape + values.shape[1:], np.nan, dtype=values.dtype)
    out[inside] = values[idx[inside]]
    return out


@dataclass(frozen=True)
class Windows:
    """Trial windows on the bin grid: the first bin of each trial, and how many bins."""

    starts: np.ndarray
    n_bins: int


def spike_tensors(rec: Recording, rows: np.ndarray, bin_ms: int, windows: dict[str, Windows]) -> dict[str, np.ndarray]:
    """(trials, bins, units) spike counts of the units at `rows` for each named set of windows."""
    out = {name: np.empty((len(w.starts), w.n_bins, len(rows)), dtype=np.float32) for name, w in windows.items()}
    for column, spikes in enumerate(unit_spikes(rec, rows)):
        binned = binned_counts(spikes, bin_ms)
        for name, w in windows.items():
            out[name][:, :, column] = gather_windows(binned, w.starts, w.n_bins)
    return out


def ordered_units(rec: Recording, heldout: bool) -> np.ndarray:
    """Rows of held-in (or held-out) units sorted by unit id: the benchmark's column order."""
    rows = np.flatnonzero(rec.units.heldout == heldout)
    return rows[np.argsort(rec.units.ids[rows], kind="stable")]
