"""Write NWB files in the layout of the NLB'21 DANDI files, and turn users' trial arrays into them.

The layout (checked against the real MC_Maze_Small test file):

- `general/devices/electrode_array_<area>` and `general/extracellular_ephys/electrode_group_<area>`
  per recording array, and an `electrodes` table (x, y, z, imp, location, filtering, group,
  group_name) with one row per electrode;
- a `units` table with columns `heldout` (bool), `spike_times` (ragged, seconds),
  `obs_intervals` (ragged (k, 2), seconds) and `electrodes` (a region of the electrodes table);
- a `trials` table: start_time, stop_time, the task's columns (ragged ones such as target_pos
  allowed), and `split` as strings;
- behaviour as TimeSeries directly inside the processing module `behavior`, sampled at a fixed
  rate from `starting_time`, with channel names in `comments` as `columns=[x,y]`.

A test file holds held-in units only, the test trials (start_time, stop_time, alignment time,
split) re-timed as back-to-back window segments, and no behaviour. Files are written to a
temporary file in the target folder and moved into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
from hdmf.common import DynamicTableRegion, VectorData, VectorIndex
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.epoch import TimeIntervals
from pynwb.file import Subject
from pynwb.misc import Units

from ..atomic import atomic_path
from ..datasets.spec import Asset, DatasetSpec, ExpectedCounts
from ..errors import NlbSuiteError

SPIKE_SAMPLE_RATE = 30_000  # Hz; the real files store spike times on the 30 kHz acquisition clock
_TIME_DECIMALS = 6  # the real files round spike times to the microsecond


class NWBWriteError(NlbSuiteError, ValueError):
    """Arrays handed to the NWB writer are inconsistent, or the file cannot be written."""


@dataclass(frozen=True)
class Ragged:
    """A ragged column as NWB stores it: all rows concatenated in `values`, row i ending at
    `ends[i]` (exclusive)."""

    values: np.ndarray
    ends: np.ndarray

    @classmethod
    def from_rows(cls, rows: Sequence[np.ndarray]) -> Ragged:
        values = np.concatenate([np.asarray(r) for r in rows]) if len(rows) else np.empty(0)
        return cls(values, np.cumsum([len(r) for r in rows], dtype=np.int64))

    def __len__(self) -> int:
        return len(self.ends)

    def row(self, i: int) -> np.ndarray:
        start = self.ends[i - 1] if i > 0 else 0
        return self.values[start:self.ends[i]]


@dataclass(frozen=True)
class ElectrodeArray:
    """One implanted array: a device, an electrode group and `n_electrodes` rows of the
    electrodes table, all named after `area` (e.g. `electrode_group_PMd`)."""

    area: str
    n_electrodes: int
    description: str
    location: str


@dataclass(frozen=True)
class UnitsTable:
    """Sorted units. `electrodes[i]` is unit i's row in the electrodes table, whose rows are the
    arrays' electrodes in order. All times are seconds on the file's clock."""

    ids: np.ndarray
    spike_times: Ragged
    obs_intervals: Ragged
    heldout: np.ndarray
    electrodes: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class TrialColumn:
    """One task column of the trials table; `values` is an array with one entry per trial, or a
    `Ragged` column (e.g. target_pos: (k, 2) per trial)."""

    name: str
    description: str
    values: np.ndarray | Ragged


@dataclass(frozen=True)
class TrialsTable:
    """The trials table: times in seconds, `split` one of train / val / test / none."""

    start_time: np.ndarray
    stop_time: np.ndarray
    split: np.ndarray
    columns: tuple[TrialColumn, ...] = ()

    def __len__(self) -> int:
        return len(self.start_time)


@dataclass(frozen=True)
class BehaviorSeries:
    """A regularly sampled behaviour signal, `data` (samples, channels)."""

    name: str
    data: np.ndarray
    columns: tuple[str, ...]
    unit: str
    description: str
    rate: float = 1000.0
    starting_time: float = 0.0


@dataclass(frozen=True)
class SessionInfo:
    """File-level metadata of one session."""

    session_id: str
    session_description: str
    subject_id: str
    species: str = "Macaca mulatta"
    experiment_description: str = ""
    keywords: tuple[str, ...] = ("Neural Latents Benchmark",)
    session_start_time: datetime = field(default_factory=lambda: datetime(2000, 1, 1, tzinfo=timezone.utc))


_SPLITS = ("train", "val", "test", "none")


def spike_times_from_samples(samples: np.ndarray) -> np.ndarray:
    """Seconds of 30 kHz sample indices, rounded like the real files (so that flooring the time in
    ms, as the benchmark does, gives the ms that holds the sample)."""
    return np.round(np.asarray(samples, dtype=np.float64) / SPIKE_SAMPLE_RATE, _TIME_DECIMALS)


def _check_tables(path: Path, arrays: Sequence[ElectrodeArray], units: UnitsTable, trials: TrialsTable,
                  behavior: Sequence[BehaviorSeries]) -> None:
    n_units = len(units)
    if not (len(units.spike_times) == len(units.obs_intervals) == len(units.heldout) == len(units.electrodes)
            == n_units):
        raise NWBWriteError(f"{path}: units table columns have different lengths")
    if len(np.unique(units.ids)) != n_units:
        raise NWBWriteError(f"{path}: unit ids are not unique")
    n_electrodes = sum(a.n_electrodes for a in arrays)
    if n_units and (units.electrodes.min() < 0 or units.electrodes.max() >= n_electrodes):
        raise NWBWriteError(f"{path}: a unit refers to an electrode outside 0..{n_electrodes - 1}")
    n_trials = len(trials)
    if len(trials.stop_time) != n_trials or len(trials.split) != n_trials:
        raise NWBWriteError(f"{path}: trials table columns have different lengths")
    if np.any(trials.stop_time <= trials.start_time):
        raise NWBWriteError(f"{path}: a trial stops before it starts")
    bad_splits = sorted(set(map(str, trials.split)) - set(_SPLITS))
    if bad_splits:
        raise NWBWriteError(f"{path}: unknown trial split(s) {bad_splits}; allowed: {list(_SPLITS)}")
    for column in trials.columns:
        if len(column.values) != n_trials:
            raise NWBWriteError(f"{path}: trials column {column.name!r} has {len(column.values)} rows, "
                                f"not {n_trials}")
    for series in behavior:
        if series.data.ndim != 2 or series.data.shape[1] != len(series.columns):
            raise NWBWriteError(f"{path}: behaviour {series.name!r} must be (samples, {len(series.columns)})")


def _electrodes(nwbfile: NWBFile, arrays: Sequence[ElectrodeArray]) -> None:
    for array in arrays:
        device = nwbfile.create_device(
            name=f"electrode_array_{array.area}", description=array.description
        )
        group = nwbfile.create_electrode_group(
            name=f"electrode_group_{array.area}", description=f"electrodes of {array.description}",
            location=array.location, device=device,
        )
        for _ in range(array.n_electrodes):
            # Electrode ids count from 1, as in the real files.
            nwbfile.add_electrode(id=len(nwbfile.electrodes or ()) + 1, x=np.nan, y=np.nan, z=np.nan, imp=np.nan,
                                  location=array.area, filtering="unknown", group=group)


def _units(nwbfile: NWBFile, units: UnitsTable) -> Units:
    # Built from whole columns: appending unit by unit would turn millions of spike times into
    # Python floats.
    spike_times = VectorData(name="spike_times", description="the spike times for each unit",
                             data=units.spike_times.values.astype(np.float64))
    obs = VectorData(name="obs_intervals", description="the observation intervals for each unit",
                     data=units.obs_intervals.values.astype(np.float64).reshape(-1, 2))
    electrodes = DynamicTableRegion(name="electrodes", description="the electrodes that each spike unit came from",
                                    data=units.electrodes.astype(np.int64), table=nwbfile.electrodes)
    columns = [
        VectorData(name="heldout", data=units.heldout.astype(bool),
                   description="Whether the unit is held out in the test data (True) or not (False) "
                               "in the Neural Latents Benchmark"),
        spike_times,
        VectorIndex(name="spike_times_index", data=units.spike_times.ends, target=spike_times),
        obs,
        VectorIndex(name="obs_intervals_index", data=units.obs_intervals.ends, target=obs),
        electrodes,
        VectorIndex(name="electrodes_index", data=np.arange(1, len(units) + 1), target=electrodes),
    ]
    return Units(name="units", description="data on spiking units", id=units.ids.astype(np.int64),
                 columns=columns, colnames=["heldout", "spike_times", "obs_intervals", "electrodes"])


def _trials(trials: TrialsTable) -> TimeIntervals:
    columns: list[VectorData | VectorIndex] = [
        VectorData(name="start_time", description="Start time of epoch, in seconds",
                   data=np.asarray(trials.start_time, dtype=np.float64)),
        VectorData(name="stop_time", description="Stop time of epoch, in seconds",
                   data=np.asarray(trials.stop_time, dtype=np.float64)),
    ]
    names = ["start_time", "stop_time"]
    for column in trials.columns:
        if isinstance(column.values, Ragged):
            data = VectorData(name=column.name, description=column.description, data=column.values.values)
            columns += [data, VectorIndex(name=f"{column.name}_index", data=column.values.ends, target=data)]
        else:
            values = np.asarray(column.values)
            if values.dtype.kind in "OU":
                values = values.astype(str).tolist()
            columns.append(VectorData(name=column.name, description=column.description, data=values))
        names.append(column.name)
    columns.append(VectorData(
        name="split", data=[str(s) for s in trials.split],
        description='Trial split that the trial belongs to for the Neural Latents Benchmark. Can be "train", '
                    '"val", "test", or "none"'))
    names.append("split")
    return TimeIntervals(name="trials", description="experimental trials",
                         id=np.arange(len(trials), dtype=np.int64), columns=columns, colnames=names)


def _label_electrodes_as_dynamic_table(path: str) -> None:
    """NWB 2.9 made the electrodes table a type of its own (`ElectrodesTable`), which the pynwb
    that nlb_tools 0.0.4 runs on (2.8) cannot read. Labelled as the plain `DynamicTable` of the
    real (NWB 2.4) files, the file reads with both, and the layout matches the real files."""
    with h5py.File(path, "r+") as f:
        table = f.get("general/extracellular_ephys/electrodes")
        if table is not None and table.attrs.get("neurodata_type") == "ElectrodesTable":
            table.attrs["neurodata_type"] = "DynamicTable"
            table.attrs["namespace"] = "hdmf-common"


def write_nlb_nwb(path: str | Path, *, session: SessionInfo, arrays: Sequence[ElectrodeArray], units: UnitsTable,
                  trials: TrialsTable, behavior: Sequence[BehaviorSeries] = ()) -> Path:
    """Write one NWB file in the NLB layout, atomically. Returns the path written."""
    path = Path(path)
    _check_tables(path, arrays, units, trials, behavior)
    nwbfile = NWBFile(
        session_description=session.session_description,
        # Deterministic from the file's name, so regenerating a dataset gives the same identifier.
        identifier=str(uuid.uuid5(uuid.NAMESPACE_URL,
                                  f"nlb_suite/{session.subject_id}/{session.session_id}/{path.name}")),
        session_start_time=session.session_start_time,
        file_create_date=session.session_start_time,
        session_id=session.session_id,
        experiment_description=session.experiment_description,
        keywords=list(session.keywords),
        subject=Subject(subject_id=session.subject_id, species=session.species),
    )
    _electrodes(nwbfile, arrays)
    nwbfile.units = _units(nwbfile, units)
    nwbfile.trials = _trials(trials)
    if behavior:
        module = nwbfile.create_processing_module(name="behavior", description="behavioural signals")
        for series in behavior:
            module.add(TimeSeries(
                name=series.name, data=series.data, unit=series.unit, rate=float(series.rate),
                starting_time=float(series.starting_time), description=series.description,
                comments=f"columns=[{','.join(series.columns)}]",
            ))
    # pynwb warns about file names that do not end in .nwb.
    with atomic_path(path, suffix=".tmp.nwb") as temporary:
        with NWBHDF5IO(temporary, "w") as io:
            io.write(nwbfile)
        _label_electrodes_as_dynamic_table(temporary)
    return path


# ---------------------------------------------------------------------------------------------
# Users' trial arrays -> NLB files.

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
    out_dir = Path(out_dir).expanduser().resolve()
    train_path = out_dir / f"{name}_train.nwb"
    test_path = out_dir / f"{name}_test.nwb"
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
