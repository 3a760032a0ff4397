"""Users' trial arrays (spike counts at 1 ms, trials x units x ms, optionally behaviour at 1 ms,
trials x ms x channels) -> NLB-layout NWB files and the `DatasetSpec` that describes them.

`read_trial_arrays` reads them from a MATLAB struct array (one element per trial: a units x ms
matrix, a condition label and optionally a ms x channels behaviour matrix, e.g. the Yu et al.
2009 PMd recordings) or from an .npz file (`spikes`, `conditions` and optionally `behavior`);
`write_trial_arrays` writes the files."""

from __future__ import annotations

import multiprocessing
import zipfile
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import NlbSuiteError
from ..core.paths import inside
from ..core.spec import Asset, DatasetSpec, ExpectedCounts, check_name
from ..core.writable import check_folder
from ..data.nwb_write import (
    SPIKE_SAMPLE_RATE,
    BehaviorSeries,
    ElectrodeArray,
    NWBWriteError,
    Ragged,
    SessionInfo,
    TrialColumn,
    TrialsTable,
    UnitsTable,
    spike_times_from_samples,
    write_nlb_nwb,
)


class TrialArraysError(NlbSuiteError, ValueError):
    """A file of trial arrays that cannot be read as such."""


@dataclass(frozen=True)
class TrialArrays:
    """Trials of one recording at 1 ms: `spikes` (trials, units, ms) counts, `conditions`
    (trials,) labels, `behavior` (trials, ms, channels) or None."""

    spikes: np.ndarray
    conditions: np.ndarray
    behavior: np.ndarray | None = None


def read_trial_arrays(path: Path, struct: str = "D", spikes_field: str = "data", condition_field: str = "condition",
                      behavior_field: str | None = None) -> TrialArrays:
    """Trial arrays from a .mat struct array or an .npz (see the module docstring); the behaviour
    is read when `behavior_field` names it (an .npz array or a struct field)."""
    if not path.is_file():
        raise TrialArraysError(f"trial arrays not found: {path}")
    if path.suffix == ".npz":
        # A damaged .npz (a zip archive) fails on opening or only when an array is read, with
        # the zip, zlib or format error of whichever step met the damage.
        damaged = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
        try:
            saved = np.load(path, allow_pickle=False)
        except damaged as err:
            raise TrialArraysError(f"{path}: not a readable .npz file ({err})") from None
        with saved:
            wanted = ["spikes", "conditions"] + ([behavior_field] if behavior_field else [])
            missing = [k for k in wanted if k not in saved]
            if missing:
                raise TrialArraysError(f"{path}: lacks array(s) {missing}; it holds {sorted(saved.files)}")
            try:
                return TrialArrays(saved["spikes"], saved["conditions"],
                                   saved[behavior_field] if behavior_field else None)
            except damaged as err:
                raise TrialArraysError(f"{path}: not a readable .npz file ({err})") from None
    from scipy.io.matlab import MatReadError

    try:
        contents = _read_mat(path)
    except TrialArraysError:
        raise
    except (MatReadError, ValueError, OSError, NotImplementedError, EOFError, KeyError, IndexError, TypeError,
            zlib.error) as err:
        raise TrialArraysError(f"{path}: not a readable MATLAB file ({err})") from None
    if struct not in contents:
        raise TrialArraysError(f"{path}: no variable {struct!r}; it holds "
                               f"{[k for k in contents if not k.startswith('__')]}")
    trials = np.atleast_1d(contents[struct])
    names = trials.dtype.names or ()
    wanted = [spikes_field, condition_field] + ([behavior_field] if behavior_field else [])
    missing = [f for f in wanted if f not in names]
    if missing:
        raise TrialArraysError(f"{path}: struct {struct!r} lacks field(s) {missing}; it has {list(names)}")
    try:
        spikes = np.stack([np.asarray(t[spikes_field]) for t in trials])
        behavior = None
        if behavior_field:
            behavior = np.stack([np.asarray(t[behavior_field], dtype=float).reshape(spikes.shape[2], -1)
                                 for t in trials])
    except ValueError as err:
        raise TrialArraysError(f"{path}: trials of different shapes in {struct!r} ({err})") from None
    return TrialArrays(spikes, np.array([t[condition_field] for t in trials]), behavior)


def _loadmat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    return loadmat(path, squeeze_me=True)


def _read_mat(path: Path) -> dict[str, Any]:
    """The MATLAB file's variables. scipy's compiled reader can crash the interpreter outright
    (a segmentation fault, found by flipping 4 bytes of a struct array file) on some damaged
    files, so it runs in a child process: such a file becomes an error that names it. Its own
    exceptions come back from the child as they were raised."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return _loadmat(path)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        try:
            return pool.submit(_loadmat, path).result()
        except BrokenProcessPool:
            raise TrialArraysError(f"{path}: not a readable MATLAB file (scipy's MATLAB reader crashed on it); "
                                   "the file is damaged: export it again") from None


_BIN_CANDIDATES_MS = (5, 20)
_FIRST_TRIAL_MS = 1000
_GRID_MS = 20  # windows start on this grid, so 5 and 20 ms bins both line up with the data


def _back_to_back(n_trials: int, n_ms: int, gap_ms: int, window_offset_ms: int) -> np.ndarray:
    """Start (ms) of trials laid out from 1 s on, at least `gap_ms` apart, each placed so that
    its window (starting `window_offset_ms` into the trial) begins on the 20 ms grid."""
    starts = np.empty(n_trials, dtype=np.int64)
    earliest = _FIRST_TRIAL_MS
    for i in range(n_trials):
        starts[i] = earliest + (-(earliest + window_offset_ms)) % _GRID_MS
        earliest = int(starts[i]) + n_ms + gap_ms
    return starts


def _assign_splits(conditions: np.ndarray, val_fraction: float, test_fraction: float,
                   rng: np.random.Generator) -> np.ndarray:
    """train / val / test per trial, the same fractions within every condition."""
    split = np.full(len(conditions), "train", dtype=object)
    for condition in np.unique(conditions):
        trials = rng.permutation(np.flatnonzero(conditions == condition))
        n_test = int(round(len(trials) * test_fraction))
        n_val = int(round(len(trials) * val_fraction))
        split[trials[:n_test]] = "test"
        split[trials[n_test:n_test + n_val]] = "val"
    return split.astype(str)


def _counts_to_samples(counts: np.ndarray, start_ms: np.ndarray, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Unit index and 30 kHz sample of every spike in `counts` (trials, units, ms): each spike
    at a uniformly drawn sample inside its ms."""
    trial, unit, ms = np.nonzero(counts)
    repeats = counts[trial, unit, ms].astype(np.int64)
    trial, unit, ms = (np.repeat(a, repeats) for a in (trial, unit, ms))
    per_ms = SPIKE_SAMPLE_RATE // 1000
    sample = (start_ms[trial] + ms) * per_ms + rng.integers(0, per_ms, len(ms))
    return unit, sample


def _ragged_spikes(unit: np.ndarray, sample: np.ndarray, n_units: int) -> Ragged:
    order = np.lexsort((sample, unit))
    ends = np.searchsorted(unit[order], np.arange(n_units), side="right")
    return Ragged(spike_times_from_samples(sample[order]), ends.astype(np.int64))


def write_trial_arrays(
    out_dir: str | Path,
    name: str,
    spikes: np.ndarray,
    conditions: Sequence | np.ndarray,
    *,
    heldout_units: Sequence[int] | np.ndarray,
    align_ms: int,
    window_ms: tuple[int, int],
    forward_ms: int = 0,
    split: Sequence[str] | np.ndarray | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    behavior: np.ndarray | None = None,
    behavior_name: str = "hand_vel",
    behavior_columns: Sequence[str] | None = None,
    behavior_unit: str = "unknown",
    behavior_lag_ms: int = 0,
    align_field: str = "move_onset_time",
    area: str = "unknown",
    gap_ms: int = 200,
    psth_kern_sd_ms: int = 50,
    seed: int = 0,
) -> DatasetSpec:
    """Write trial arrays as an NLB train file and test file in `out_dir` and describe them.

    `spikes` is (trials, units, ms) spike counts in 1 ms bins; `conditions` one label per trial
    (the PSTH condition). The alignment event sits `align_ms` into every trial; the evaluation
    window is `window_ms` around it and `forward_ms` follow it (all inside the trials). Trials are
    split by `split` (train / val / test per trial) or at random within each condition by the
    fractions. Trials are laid back to back, `gap_ms` apart, each window starting on the 20 ms
    grid; each spike gets a random 30 kHz sample inside its ms. The train file holds the train
    and val trials whole, with all units and the optional `behavior` (trials, ms, channels) at
    1 kHz (NaN between trials); the test file holds the test trials' windows, re-timed as in the
    real test files, with the held-in units only. Returns a `DatasetSpec` (source "user") whose
    paths are absolute and whose PSTH condition is the trials column `condition`.
    """
    check_name(name)  # it becomes part of file names
    out_dir = check_folder(Path(out_dir).expanduser().resolve(), "the output folder")
    train_path = inside(out_dir, f"{name}_train.nwb")
    test_path = inside(out_dir, f"{name}_test.nwb")
    where = out_dir / name

    def fail(problem: str) -> NWBWriteError:
        return NWBWriteError(f"{where}: {problem}")

    spikes = np.asarray(spikes)
    if spikes.ndim != 3:
        raise fail(f"spikes must be (trials, units, ms), got shape {spikes.shape}")
    if spikes.dtype.kind not in "iub" and not np.array_equal(spikes, np.round(spikes)):
        raise fail("spikes must be whole spike counts per 1 ms bin")
    if spikes.size and spikes.min() < 0:
        raise fail("spikes must not be negative")
    spikes = spikes.astype(np.int64)
    n_trials, n_units, n_ms = spikes.shape
    conditions = np.asarray(conditions)
    if conditions.shape != (n_trials,):
        raise fail(f"need one condition label per trial ({n_trials}), got shape {conditions.shape}")
    conditions = conditions.astype(np.int64) if conditions.dtype.kind in "iub" else conditions.astype(str)
    heldout = np.zeros(n_units, dtype=bool)
    heldout_index = np.asarray(heldout_units, dtype=np.int64).ravel()
    if heldout_index.size and (heldout_index.min() < 0 or heldout_index.max() >= n_units):
        raise fail(f"held-out unit indices must lie in 0..{n_units - 1}")
    heldout[heldout_index] = True
    if heldout.all() or not heldout.any():
        raise fail("held-out units must be a non-empty proper subset of the units")
    start, stop = window_ms
    if not (0 <= align_ms + start < align_ms + stop and align_ms + stop + forward_ms <= n_ms):
        raise fail(f"window {window_ms} ms around {align_ms} ms plus {forward_ms} ms forward must lie "
                   f"inside the {n_ms} ms trials")
    bin_sizes = tuple(b for b in _BIN_CANDIDATES_MS if (stop - start) % b == 0 and forward_ms % b == 0)
    if not bin_sizes:
        raise fail(f"window length {stop - start} ms and forward {forward_ms} ms must be multiples of 5 ms")
    if behavior is not None:
        behavior = np.asarray(behavior, dtype=np.float64)
        if behavior.ndim != 3 or behavior.shape[:2] != (n_trials, n_ms):
            raise fail(f"behavior must be (trials, ms, channels) = ({n_trials}, {n_ms}, k), got {behavior.shape}")
        columns = tuple(behavior_columns) if behavior_columns is not None else (
            ("x", "y") if behavior.shape[2] == 2 else tuple(f"ch{i}" for i in range(behavior.shape[2])))
        if len(columns) != behavior.shape[2]:
            raise fail(f"{len(columns)} behaviour column names for {behavior.shape[2]} channels")
    rng = np.random.default_rng(seed)
    if split is None:
        if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise fail("val_fraction and test_fraction must be fractions that leave training trials")
        split = _assign_splits(conditions, val_fraction, test_fraction, rng)
    split = np.asarray(split).astype(str)
    if split.shape != (n_trials,) or not set(split) <= {"train", "val", "test"}:
        raise fail("split must give train, val or test for every trial")
    if not all((split == s).any() for s in ("train", "val", "test")):
        raise fail("every split (train, val, test) needs at least one trial")

    # Train file: train and val trials whole, back to back, windows on the 20 ms grid.
    kept = np.flatnonzero(split != "test")
    starts = _back_to_back(len(kept), n_ms, gap_ms, window_offset_ms=align_ms + start)
    stops = starts + n_ms
    unit, sample = _counts_to_samples(spikes[kept], starts, rng)
    obs = np.stack([starts, stops], axis=1) / 1000.0
    arrays = (ElectrodeArray(area, n_units, f"electrodes of {name}", area),)
    units = UnitsTable(
        ids=np.arange(n_units), spike_times=_ragged_spikes(unit, sample, n_units),
        obs_intervals=Ragged.from_rows([obs] * n_units), heldout=heldout, electrodes=np.arange(n_units),
    )
    align_column = TrialColumn(align_field, "Time of the alignment event", (starts + align_ms) / 1000.0)
    condition_column = TrialColumn("condition", "Condition label of the trial", conditions[kept])
    trials = TrialsTable(starts / 1000.0, stops / 1000.0, split[kept], (align_column, condition_column))
    series: tuple[BehaviorSeries, ...] = ()
    if behavior is not None:
        session = np.full((int(stops[-1]), behavior.shape[2]), np.nan)
        for i, trial in enumerate(kept):
            session[starts[i]:stops[i]] = behavior[trial]
        series = (BehaviorSeries(behavior_name, session, columns, behavior_unit, f"{behavior_name} of {name}"),)
    info = SessionInfo(session_id=name, session_description=f"trial arrays of {name} in the NLB layout",
                       subject_id="unknown", species="unknown")
    write_nlb_nwb(train_path, session=info, arrays=arrays, units=units, trials=trials, behavior=series)

    # Test file: each test trial's window, re-timed to start every (window + 100 ms), held-in only.
    test = np.flatnonzero(split == "test")
    period = -(-(stop - start + 100) // _GRID_MS) * _GRID_MS
    segment_starts = np.arange(len(test), dtype=np.int64) * period
    windows = spikes[test][:, ~heldout, align_ms + start:align_ms + stop]
    unit, sample = _counts_to_samples(windows, segment_starts, rng)
    segments = np.stack([segment_starts, segment_starts + stop - start], axis=1) / 1000.0
    n_heldin = int((~heldout).sum())
    test_units = UnitsTable(
        ids=np.flatnonzero(~heldout), spike_times=_ragged_spikes(unit, sample, n_heldin),
        obs_intervals=Ragged.from_rows([segments] * n_heldin), heldout=np.zeros(n_heldin, dtype=bool),
        electrodes=np.flatnonzero(~heldout),
    )
    test_trials = TrialsTable(
        segments[:, 0], segments[:, 1], np.full(len(test), "test"),
        (TrialColumn(align_field, "Time of the alignment event", (segment_starts - start) / 1000.0),),
    )
    write_nlb_nwb(test_path, session=info, arrays=arrays, units=test_units, trials=test_trials)

    n_train, n_val, n_test = (int((split == s).sum()) for s in ("train", "val", "test"))
    return DatasetSpec(
        name=name, description=f"user dataset {name}: {n_trials} trials of {n_units} units", source="user",
        train=Asset(str(train_path)), test=Asset(str(test_path)), align_field=align_field,
        window_ms=(start, stop), behavior_field=behavior_name if behavior is not None else None,
        behavior_lag_ms=behavior_lag_ms, psth_conditions=("condition",), psth_kern_sd_ms=psth_kern_sd_ms,
        forward_ms=forward_ms, bin_sizes=bin_sizes,
        expected=ExpectedCounts(int((~heldout).sum()), int(heldout.sum()), n_train, n_val, n_train + n_val, n_test),
    )
