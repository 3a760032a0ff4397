"""Behaviour on the bin grid, as nlb_tools 0.0.4 resamples it.

nlb_tools fills NaN gaps by linear interpolation, low-pass filters and decimates each 1 kHz
channel over the whole session (scipy's FIR decimate, n=500), then puts NaN back wherever the
bin's first 1 ms sample was missing. The filter reaches 250 ms either side, so the result near a
window depends on the session around it: a window's values are filtered from the session's
samples around it (as far as the filter reaches), never from the window's piece alone.

Only the bins of the windows are computed, and without scipy. scipy's decimate
(`scipy.signal.decimate(x, q, n=500, ftype="fir")`, a polyphase `upfirdn`) sums each output's
501 products one after the other in a fixed order, without fused multiply-adds; `_decimate`
makes the same products and sums in the same order, one tap at a time over many outputs, with
taps computed as `scipy.signal.firwin` computes them, so every value is bit for bit scipy's
(`tests/test_tensors.py` checks taps and outputs against scipy). Measured at the full MC_Maze
size (7.2 M samples, 2,364 trials, 5 ms, a shared 2-core machine): scipy's decimate of the
whole session took 0.8 s per call (three calls: train windows for the tensors, train and eval
windows for the targets; now the train windows are kept for the second) and the 1 ms grid and
its prefixed copy 0.23 GB; scipy's decimate of the windows' stretches alone 0.4 s in all, plus
0.5 s to import scipy.signal; `_decimate` on the stretches takes 0.2 s (0.7 s with the
stretches laid out by time rather than by phase).
"""

from __future__ import annotations

import numpy as np

from ..data.nwb import NWBFormatError, Recording
from .grid import derived

_DECIMATE_ORDER = 500
_REACH_MS = _DECIMATE_ORDER // 2
# nlb_tools loads the test file first and the train file after it on one clock, so the train
# session's behaviour is preceded by a long constant (interpolated) stretch rather than by the
# filter's zero padding. A constant prefix longer than the filter's reach reproduces that.
_PREFIX_MS = 500
# Windows filtered in one call (bounds the stacked stretches' memory: 512 windows of 1.2 s, 2
# channels, are 10 MB).
_WINDOWS_PER_CALL = 512
# Samples whose times are checked at once.
_SAMPLES_PER_CHECK = 1 << 20


class _Filled:
    """A series on the session's 1 ms grid with its gaps filled, as nlb_tools fills them: rows
    [first_ms, first_ms + len(values)) are `values`; before them the first row repeats and after
    them the last (np.interp's ends); `missing` marks the ms without a sample (None: none but
    those outside `values`)."""

    def __init__(self, values: np.ndarray, first_ms: int, end_ms: int, missing: np.ndarray | None):
        self.values, self.first_ms, self.end_ms, self.missing = values, first_ms, end_ms, missing

    def missing_at(self, ms: np.ndarray) -> np.ndarray:
        if self.missing is not None:
            return self.missing[ms]
        return (ms < self.first_ms) | (ms >= self.first_ms + len(self.values))

    def prefixed(self, positions: np.ndarray) -> np.ndarray:
        """Rows of the series behind a `_PREFIX_MS` constant prefix, zero before and after it (the
        filter's padding), at `positions` (ms from the prefix's start)."""
        rows = np.clip(positions - _PREFIX_MS - self.first_ms, 0, len(self.values) - 1)
        out = self.values[rows].astype(float, copy=False)
        outside = (positions < 0) | (positions >= _PREFIX_MS + self.end_ms)
        if outside.any():
            out[outside] = 0.0
        return out


def _filled(rec: Recording, field: str) -> _Filled:
    memo = derived(rec)
    key = ("behavior", field)
    found = memo.get(key)
    if isinstance(found, _Filled):
        return found
    if field not in rec.behavior:
        raise NWBFormatError(f"{rec.path}: no behaviour series {field!r} in processing/behavior")
    series = rec.behavior[field]
    end_ms = rec.end_ms
    data = series.data
    on_grid, consecutive = len(data) > 0, True
    previous = None
    # In pieces: the whole series' times, their ms and its errors would be four 58 MB arrays at the
    # full MC_Maze size (7.2 M samples).
    for start in range(0, len(data), _SAMPLES_PER_CHECK):
        stop = min(start + _SAMPLES_PER_CHECK, len(data))
        times_ms = series.times(start, stop) * 1000.0
        ms = np.round(times_ms).astype(np.int64)
        on_grid = on_grid and bool(ms.min() >= 0 and ms.max() < end_ms and np.abs(times_ms - ms).max() <= 1e-3)
        if not on_grid:
            break
        steps = np.diff(ms) if previous is None else np.diff(ms, prepend=previous)
        consecutive = consecutive and bool((steps == 1).all())
        previous = ms[-1]
        if start == 0:
            first_ms = int(ms[0])
    if not on_grid:
        raise NWBFormatError(
            f"{rec.path}: behaviour series {field!r} does not lie on the session's 1 ms grid [0, {end_ms}) ms"
        )
    if consecutive and not np.isnan(data).any():
        # The usual file: one sample per ms, no gaps: the series itself, no copy.
        filled = _Filled(data, first_ms, end_ms, None)
    else:
        ms = np.round(series.times() * 1000.0).astype(np.int64)
        grid = np.full((end_ms, data.shape[1]), np.nan)
        grid[ms] = data
        missing = np.isnan(grid)
        positions = np.arange(end_ms)
        for channel in range(grid.shape[1]):
            valid = ~missing[:, channel]
            if not valid.any():
                grid[:, channel] = 0.0
            elif not valid.all():
                grid[:, channel] = np.interp(positions, positions[valid], grid[valid, channel])
        filled = _Filled(grid, 0, end_ms, missing)
    memo[key] = filled
    return filled


_TAPS = _DECIMATE_ORDER + 1
# Windows whose outputs are summed together, tap by tap (their outputs stay in the CPU's cache:
# 64 windows of 140 bins and 2 channels; 16, 32 and 128 were 10-30% slower).
_WINDOWS_PER_BLOCK = 64


def fir_taps(q: int) -> np.ndarray:
    """The taps of scipy.signal.decimate's FIR filter for factor q, n=500:
    scipy.signal.firwin(501, 1 / q, window="hamming"), computed as scipy computes it (a sinc
    lowpass times a Hamming window, scaled to unit gain at 0 Hz)."""
    cutoff = 1.0 / q
    m = np.arange(0, _TAPS, dtype=np.float64) - 0.5 * (_TAPS - 1)

    def sinc(x: np.ndarray) -> np.ndarray:  # scipy's: eps in place of 0
        y = np.pi * np.where(x.astype(bool), x, np.finfo(np.float64).eps)
        return np.sin(y) / y

    h = cutoff * sinc(cutoff * m)
    h -= 0.0 * sinc(0.0 * m)  # the band's lower edge, 0 Hz (kept: scipy subtracts it)
    fac = np.linspace(-np.pi, np.pi, _TAPS, dtype=np.float64)
    alpha = np.asarray([0.54, 1.0 - 0.54], dtype=np.float64)
    window = np.zeros(_TAPS, dtype=np.float64)
    for k in range(2):
        window += alpha[k] * np.cos(k * fac)
    h *= window
    h /= np.sum(h * np.cos(np.pi * m * 0.0))
    return h


def _decimate(polyphase: np.ndarray, taps: np.ndarray, first_row: int, n_out: int) -> np.ndarray:
    """scipy's FIR decimation outputs, bit for bit. `polyphase[w, r, p]` is sample p * q + r of
    window w's stretch (q = polyphase.shape[1]); output k of a window is centred on sample
    (first_row + k) * q and is the sum, in order of rising sample, of taps[j] times sample
    (first_row + k) * q + 250 - j, j from 500 down to 0 (each product rounded, then each sum)."""
    q = polyphase.shape[1]
    reach = (_TAPS - 1) // 2
    out = np.empty((polyphase.shape[0], n_out) + polyphase.shape[3:])
    for block in range(0, len(polyphase), _WINDOWS_PER_BLOCK):
        part = polyphase[block: block + _WINDOWS_PER_BLOCK]
        total = np.zeros((len(part), n_out) + polyphase.shape[3:])
        term = np.empty_like(total)
        for j in range(_TAPS - 1, -1, -1):
            row, phase = divmod(first_row * q + reach - j, q)
            np.multiply(part[:, phase, row: row + n_out], taps[j], out=term)
            total += term
        out[block: block + len(part)] = total
    return out


def behavior_windows(rec: Recording, field: str, bin_ms: int, start_bins: np.ndarray, n_bins: int) -> np.ndarray:
    """(windows, n_bins, channels) of the decimated behaviour at bins start + k of the global
    grid, in the series' dtype (float for integer series); NaN outside the session and where the
    bin's first 1 ms sample was missing."""
    series_dtype = rec.behavior[field].data.dtype if field in rec.behavior else np.dtype(float)
    memo = derived(rec)
    key = ("behavior windows", field, bin_ms, start_bins.tobytes(), n_bins)
    found = memo.get(key)
    if isinstance(found, np.ndarray):
        return found
    filled = _filled(rec, field)
    channels = filled.values.shape[1]
    out_dtype = series_dtype if series_dtype.kind == "f" else np.dtype(float)
    out = np.full((len(start_bins), n_bins, channels), np.nan, dtype=out_dtype)
    n_session_bins = -(-filled.end_ms // bin_ms)
    # The filter's output for bin m is centred on its first ms, m * bin_ms, which is sample
    # m * bin_ms + _PREFIX_MS of the prefixed series; `margin` (whole bins) covers the filter's
    # reach on either side, so each stretch is filtered as the whole series would be.
    margin = -(-_REACH_MS // bin_ms)
    rows = 2 * margin + n_bins
    taps = fir_taps(bin_ms)
    # Sample p * bin_ms + r of each stretch, at [window, r, p] (the polyphase layout, in which each
    # tap reads contiguous memory).
    offsets = (np.arange(rows)[None, :] * bin_ms + np.arange(bin_ms)[:, None])[None]
    for chunk in range(0, len(start_bins), _WINDOWS_PER_CALL):
        starts = start_bins[chunk: chunk + _WINDOWS_PER_CALL]
        first = (starts - margin) * bin_ms + _PREFIX_MS
        polyphase = filled.prefixed(first[:, None, None] + offsets)
        values = _decimate(polyphase, taps, margin, n_bins).astype(out_dtype, copy=False)
        bins = starts[:, None] + np.arange(n_bins)[None, :]
        inside = (bins >= 0) & (bins < n_session_bins)
        first_ms = np.clip(bins, 0, max(n_session_bins - 1, 0)) * bin_ms
        missing = filled.missing_at(first_ms)
        keep = inside[..., None] & ~(missing if missing.ndim == 3 else missing[..., None])
        out[chunk: chunk + len(starts)] = np.where(keep, values, np.nan)
    memo[key] = out
    return out
