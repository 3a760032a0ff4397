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
Users' trial arrays become such files in `datasets/trial_arrays.py`.
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

from ..core.atomic import atomic_path
from ..core.errors import NlbSuiteError

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
        _label_electrodes_as_dynamic_table(str(temporary))
    return path
