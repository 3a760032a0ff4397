"""Behaviour on the bin grid, as nlb_tools 0.0.4 resamples it.

nlb_tools fills NaN gaps by linear interpolation, low-pass filters and decimates each 1 kHz
channel over the whole session (scipy's FIR decimate, n=500), then puts NaN back wherever the
bin's first 1 ms sample was missing. The filter reaches 250 ms either side, so the result near a
window depends on the session around it: we filter the whole series too, never a trial's piece.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from ..data.nwb import NWBFormatError, Recording

_DECIMATE_ORDER = 500
# nlb_tools loads the test file first and the train file after it on one clock, so the train
# session's behaviour is preceded by a long constant (interpolated) stretch rather than by the
# filter's zero padding. A constant prefix longer than the filter's reach reproduces that.
_PREFIX_MS = 500


def decimated_behavior(rec: Recording, field: str, bin_ms: int) -> np.ndarray:
    """(session bins, channels) behaviour on the global bin grid, in the series' dtype."""
    if field not in rec.behavior:
        raise NWBFormatError(f"{rec.path}: no behaviour series {field!r} in processing/behavior")
    series = rec.behavior[field]
    end_ms = rec.end_ms
    times_ms = series.times() * 1000.0
    ms = np.round(times_ms).astype(np.int64)
    if len(ms) == 0 or ms.min() < 0 or ms.max() >= end_ms or np.abs(times_ms - ms).max() > 1e-3:
        raise NWBFormatError(
            f"{rec.path}: behaviour series {field!r} does not lie on the session's 1 ms grid [0, {end_ms}) ms"
        )
    grid = np.full((end_ms, series.data.shape[1]), np.nan)
    grid[ms] = series.data
    missing_first = np.isnan(grid[::bin_ms])
    positions = np.arange(end_ms)
    for channel in range(grid.shape[1]):
        valid = ~np.isnan(grid[:, channel])
        if not valid.any():
            grid[:, channel] = 0.0
        elif not valid.all():
            grid[:, channel] = np.interp(positions, positions[valid], grid[valid, channel])
    prefixed = np.vstack([np.repeat(grid[:1], _PREFIX_MS, axis=0), grid])
    decimated = signal.decimate(prefixed, bin_ms, n=_DECIMATE_ORDER, ftype="fir", axis=0)[_PREFIX_MS // bin_ms :]
    decimated[missing_first] = np.nan
    return decimated.astype(series.data.dtype)
