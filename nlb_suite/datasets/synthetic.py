"""Synthetic NLB datasets with known firing rates, in the layout of the real DANDI files.

Two generators, chosen by `spec.generator`, deterministic from `seed` in `spec.generator_args`:

- `maze` (MC_Maze look-alike): delayed centre-out reaches, 27 conditions (trial_type 1..9 picks
  the target, trial_version 0..2 the path around a barrier). An 8-dimensional latent state:
  three rotational planes z_i (complex), a condition-invariant movement signal and a preparatory
  signal. After target onset each z_i relaxes to a condition's preparatory value (plus trial
  noise); at a trigger a reaction time after the go cue the planes rotate and decay, with a
  frequency that grows with amplitude (the nonlinearity). Hand velocity is a linear readout of the
  rotating components `behavior_lag_ms` earlier; move onset is where hand speed first passes 15 %
  of its peak. Trials run back to back with 200-400 ms gaps (the hand returns to the centre);
  each trial's [start, stop] is an observation interval.
- `area2` (Area2_Bump look-alike): a continuous session in a few long recording chunks; active
  reaches to 8 directions and passive bumps (a force pulse at a random time of the centre hold).
  A linear latent system (three damped oscillators and a low-passed hand velocity) is driven by
  hand velocity, a motor command leading active reaches, and the bump force itself: an input
  that nothing before it predicts.

In both, the log rate of a unit is a baseline plus a linear readout of the latent state averaged
over each 5 ms bin of the file's clock (each latent dimension softly saturated); readouts are
calibrated so that every unit's mean rate lies in 5-40 Hz and its peak stays near 200 Hz or
below. Spikes are Poisson with that rate, placed uniformly at 30 kHz resolution inside the bin.
Test trials are simulated apart from the train file's session and written like the real test
files: held-in units only, each trial's evaluation window re-timed to start at
k * (window + 100 ms), no behaviour.

Ground truth, `truth.h5` in the dataset's folder (all times on the 5 ms grid of the file's clock:
bin k covers [5k, 5k + 5) ms):

- `train/rates` float32 (trials, bins, units): expected spike counts per 5 ms bin, for every trial
  of the train file in trials-table order; `train/first_bin` int64 (trials,): global bin index of
  `rates[:, 0]`; `train/unit_ids` (units-table order); `train/latents` float32
  (trials, bins, latent_dim) on the same grid.
- `test/rates`, `test/first_bin`, `test/unit_ids`: the same for the test file (held-in units);
  `test/rates_all` and `test/unit_ids_all` for all units, and `test/spikes_all` uint16: the spike
  counts of all units per 5 ms bin (the test file's spikes inside the windows, and the held-out
  units and forward windows it does not hold), so test-phase scores can be computed here.
- Each trial is covered from 50 ms before its evaluation window to 50 ms after the forward
  window (`margin_ms`), so either bin size's grid can be cut from it. Test-file first bins may
  be negative: its first segment starts at time 0.
- Attributes: `dataset`, `generator`, `generator_args` (JSON), `bin_ms`, `margin_ms`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import h5py
import numpy as np
from scipy.signal import lfilter

from ..atomic import atomic_path
from ..data.nwb_write import (
    SPIKE_SAMPLE_RATE,
    BehaviorSeries,
    ElectrodeArray,
    Ragged,
    SessionInfo,
    TrialColumn,
    TrialsTable,
    UnitsTable,
    spike_times_from_samples,
    write_nlb_nwb,
)
from ..data.paths import DatasetFiles, data_dir, dataset_files
from ..errors import NlbSuiteError
from .spec import DatasetSpec

TRUTH_FILE = "truth.h5"
BIN_MS = 5
MARGIN_MS = 50
SAMPLES_PER_MS = SPIKE_SAMPLE_RATE // 1000
# Gap between re-timed test segments, as in the real test files (0.7 s windows every 0.8 s).
TEST_SEGMENT_GAP_MS = 100
# Trials simulated at once; bounds memory to a few hundred MB at the full MC_Maze size.
CHUNK_TRIALS = 256
_SATURATION_SD = 1.5  # latent values saturate at this many standard deviations
_PEAK_HZ = 200.0  # highest rate of a unit on the calibration data


class SyntheticDataError(NlbSuiteError, ValueError):
    """A synthetic dataset cannot be generated as asked."""


# ---------------------------------------------------------------------------------------------
# Shared machinery: latents on a 1 ms grid -> 5 ms rates on a file's clock -> Poisson spikes.


def _saturate(latents: np.ndarray, saturation: np.ndarray) -> np.ndarray:
    return (saturation * np.tanh(latents / saturation)).astype(np.float32)


@dataclass(frozen=True)
class Readout:
    """log rate (spikes/ms) = log_baseline + weights @ features, where each latent dimension x
    enters as the soft-saturated s * tanh(x / s): neurons' tuning saturates, and the brief large
    excursions of the latents around movement would otherwise dominate every unit's range."""

    weights: np.ndarray
    log_baseline: np.ndarray
    saturation: np.ndarray

    def counts_per_bin(self, latents: np.ndarray) -> np.ndarray:
        """Expected spikes per 5 ms bin for bin-averaged latents (..., latent_dim)."""
        flat = _saturate(latents.reshape(-1, latents.shape[-1]), self.saturation)
        log_rate = flat @ self.weights.T.astype(np.float32) + self.log_baseline.astype(np.float32)
        return (np.exp(log_rate) * BIN_MS).reshape(*latents.shape[:-1], -1)


@dataclass(frozen=True)
class PlacedTrials:
    """Trials simulated in their own time and placed on a file's clock: `latents[i, t]` is the
    state at file ms `offset_ms[i] + t`; [span_start_ms, span_stop_ms) is the part to bin and to
    fill with spikes (it must lie inside the simulated part)."""

    latents: np.ndarray
    offset_ms: np.ndarray
    span_start_ms: np.ndarray
    span_stop_ms: np.ndarray


@dataclass(frozen=True)
class SampledTrials:
    """Rates and spikes of `PlacedTrials` on the 5 ms grid: row i covers global bins
    first_bin[i] .. first_bin[i] + n_bins - 1 (bins past a trial's span have rate 0). Spike k
    lies in row spike_trial[k], bin spike_bin[k], at 30 kHz sample spike_sample[k]."""

    first_bin: np.ndarray
    latents: np.ndarray
    rates: np.ndarray
    spike_trial: np.ndarray
    spike_bin: np.ndarray
    spike_unit: np.ndarray
    spike_sample: np.ndarray

    def counts(self) -> np.ndarray:
        """Spike counts (trials, bins, units)."""
        shape = self.rates.shape
        flat = np.ravel_multi_index((self.spike_trial, self.spike_bin, self.spike_unit), shape)
        return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)


def _sorted_uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    """n sorted uniform values in [0, 1), in linear time: normalised partial sums of n + 1
    exponential gaps."""
    partial = np.cumsum(rng.standard_exponential(n + 1))
    return partial[:-1] / partial[-1]


def _sample_placed(placed: PlacedTrials, readout: Readout, rng: np.random.Generator) -> SampledTrials:
    first_bin = placed.span_start_ms // BIN_MS
    last_bin = -(-placed.span_stop_ms // BIN_MS)
    n_bins = int((last_bin - first_bin).max())
    n_trials, n_sim, n_latent = placed.latents.shape
    # ms j of bin b of trial i sits at file ms 5 * (first_bin[i] + b) + j.
    file_ms = (first_bin[:, None, None] + np.arange(n_bins)[None, :, None]) * BIN_MS + np.arange(BIN_MS)
    inside = (file_ms >= placed.span_start_ms[:, None, None]) & (file_ms < placed.span_stop_ms[:, None, None])
    local = np.clip(file_ms - placed.offset_ms[:, None, None], 0, n_sim - 1)
    observed_ms = inside.sum(axis=2)
    gathered = np.take_along_axis(
        placed.latents, local.reshape(n_trials, -1, 1), axis=1
    ).reshape(n_trials, n_bins, BIN_MS, n_latent)
    latents = (gathered * inside[..., None]).sum(axis=2) / np.maximum(observed_ms, 1)[..., None]
    latents = latents.astype(np.float32)
    rates = readout.counts_per_bin(latents) * (observed_ms > 0)[..., None]
    # A Poisson process by time rescaling: lay the expected counts of all (trial, bin, unit) cells
    # end to end, draw the total number of spikes once and spread them uniformly over that axis.
    # This is exact, and costs a cumulative sum plus work per spike rather than a draw per cell.
    expected = (rates * (observed_ms / BIN_MS)[..., None]).ravel()
    cumulative = np.cumsum(expected, dtype=np.float64)
    total = float(cumulative[-1]) if len(cumulative) else 0.0
    position = _sorted_uniform(rng, rng.poisson(total)) * total
    flat = np.searchsorted(cumulative, position, side="right")
    within = np.clip((position - (cumulative[flat] - expected[flat])) / expected[flat], 0.0, np.nextafter(1.0, 0.0))
    trial, bin_index, unit = np.unravel_index(flat, rates.shape)
    # Partly observed bins (at a trial's edges) get spikes only in their observed ms.
    low_ms = np.maximum((first_bin[trial] + bin_index) * BIN_MS, placed.span_start_ms[trial])
    sample = ((low_ms + within * observed_ms[trial, bin_index]) * SAMPLES_PER_MS).astype(np.int64)
    return SampledTrials(first_bin, latents, rates, trial, bin_index, unit, sample)


class SpikeCollector:
    """Spike samples (30 kHz) per unit, gathered over chunks of trials. Chunks come in time
    order and each is time-ordered per unit (as `_sample_placed` makes them), so a unit's
    spikes need no sorting."""

    def __init__(self, n_units: int) -> None:
        self._pieces: list[list[np.ndarray]] = [[] for _ in range(n_units)]

    def add(self, unit: np.ndarray, sample: np.ndarray) -> None:
        # A stable sort keeps each unit's spikes in time order; on 16-bit keys numpy uses radix sort.
        order = np.argsort(unit.astype(np.int16), kind="stable")
        unit, sample = unit[order], sample[order]
        bounds = np.searchsorted(unit, np.arange(len(self._pieces) + 1))
        for u, pieces in enumerate(self._pieces):
            pieces.append(sample[bounds[u]:bounds[u + 1]])

    def spike_times(self, rows: np.ndarray) -> Ragged:
        samples = [np.concatenate(self._pieces[u]) for u in rows]
        if any(np.any(np.diff(s) < 0) for s in samples):
            raise AssertionError("spikes were collected out of time order")
        return Ragged.from_rows([spike_times_from_samples(s) for s in samples])


@dataclass(frozen=True)
class UnitLayout:
    """Who the units are: ids (sorted), recording array, electrode row, held-out flag."""

    ids: np.ndarray
    area_index: np.ndarray
    electrodes: np.ndarray
    heldout: np.ndarray


def _unit_layout(rng: np.random.Generator, n_heldin: int, n_heldout: int, n_arrays: int,
                 electrodes_per_array: int, id_prefix: bool) -> UnitLayout:
    n_units = n_heldin + n_heldout
    area = np.sort(rng.integers(0, n_arrays, n_units))
    channel = rng.integers(0, electrodes_per_array, n_units)
    # A few electrodes carry two or three sorted units, as on a Utah array.
    key = area * electrodes_per_array + channel
    order = np.argsort(key, kind="stable")
    sort_number = np.empty(n_units, dtype=np.int64)
    for rank, i in enumerate(order):
        sort_number[i] = 1 + int(np.sum(key[order[:rank]] == key[i]))
    ids = 10 * (channel + 1) + sort_number + (1000 * (area + 1) if id_prefix else 0)
    by_id = np.argsort(ids)
    heldout = np.zeros(n_units, dtype=bool)
    heldout[rng.choice(n_units, n_heldout, replace=False)] = True
    return UnitLayout(ids[by_id], area[by_id], key[by_id], heldout)


def _peak_hz(drive: np.ndarray, gain: np.ndarray, mean_hz: np.ndarray) -> np.ndarray:
    """Peak rate of units whose log rate is gain * drive (samples, units) plus the baseline that
    gives them `mean_hz`."""
    scaled = drive * gain
    return mean_hz * np.exp(scaled.max(axis=0)) / np.exp(scaled).mean(axis=0)


def _readout(rng: np.random.Generator, feature_scale: np.ndarray, reference: np.ndarray,
             log_rate_sd: tuple[float, float], mean_hz: tuple[float, float]) -> Readout:
    """A random readout calibrated on `reference` latents (samples, features): weights N(0, 1)
    times `feature_scale` (units, features), rescaled so that each unit's log rate varies with a
    standard deviation drawn from `log_rate_sd` and its mean rate, drawn log-uniformly from
    `mean_hz`, is met exactly. Brief large latent excursions (movement) would give some units
    absurd peaks, so a unit's modulation is reduced until its peak rate on the reference stays
    below `_PEAK_HZ`."""
    n_units = len(feature_scale)
    saturation = (_SATURATION_SD * reference.std(axis=0)).astype(np.float32)
    reference = _saturate(reference, saturation)
    weights = rng.normal(size=feature_scale.shape) * feature_scale
    drive = reference @ weights.T
    drive -= drive.mean(axis=0)
    target_hz = np.exp(rng.uniform(np.log(mean_hz[0]), np.log(mean_hz[1]), n_units))

    gain = rng.uniform(*log_rate_sd, n_units) / drive.std(axis=0)
    capped = np.flatnonzero(_peak_hz(drive, gain, target_hz) > _PEAK_HZ)
    low, high = np.zeros(len(capped)), gain[capped]
    for _ in range(16):  # bisection on the gain of the units whose peak is too high
        middle = (low + high) / 2
        over = _peak_hz(drive[:, capped], middle, target_hz[capped]) > _PEAK_HZ
        high = np.where(over, middle, high)
        low = np.where(over, low, middle)
    gain[capped] = low
    weights *= gain[:, None]
    log_baseline = np.log(target_hz / 1000.0) - np.log(np.exp(reference @ weights.T).mean(axis=0))
    return Readout(weights.astype(np.float32), log_baseline.astype(np.float32), saturation)


def _units_table(layout: UnitLayout, spikes: SpikeCollector, rows: np.ndarray,
                 obs_intervals_s: np.ndarray) -> UnitsTable:
    obs = Ragged.from_rows([obs_intervals_s for _ in rows])
    return UnitsTable(ids=layout.ids[rows], spike_times=spikes.spike_times(rows), obs_intervals=obs,
                      heldout=layout.heldout[rows], electrodes=layout.electrodes[rows])


def _balanced(rng: np.random.Generator, n: int, n_values: int) -> np.ndarray:
    """`n` labels 0..n_values-1, as equal in number as possible, in random order."""
    return rng.permutation(np.resize(np.arange(n_values), n))


def _splits(rng: np.random.Generator, n_train: int, n_val: int, n_none: int) -> np.ndarray:
    return rng.permutation(np.array(["train"] * n_train + ["val"] * n_val + ["none"] * n_none))


def _test_segments(spec: DatasetSpec, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Start (ms) of each re-timed test segment, and the segment period (ms)."""
    period = spec.window_len_ms + TEST_SEGMENT_GAP_MS
    return np.arange(n_test, dtype=np.int64) * period, np.int64(period)


def _coverage(spec: DatasetSpec, align_ms: np.ndarray) -> tuple[np.ndarray, int]:
    """First global 5 ms bin of each trial's truth rows, and the number of rows."""
    first = (align_ms + spec.window_ms[0] - MARGIN_MS) // BIN_MS
    n_bins = (spec.window_len_ms + spec.forward_ms + 2 * MARGIN_MS) // BIN_MS + 1
    return first, n_bins


def _rows(sampled: SampledTrials, member: np.ndarray, first_bin: np.ndarray, n_bins: int, values: np.ndarray
          ) -> np.ndarray:
    """Global bins first_bin .. first_bin + n_bins - 1 of `values` (a SampledTrials array) for
    trials that lie in sampled row `member`."""
    offset = first_bin - sampled.first_bin[member]
    if offset.min() < 0 or (offset + n_bins).max() > values.shape[1]:
        raise AssertionError("truth coverage runs outside the simulated trial")
    return values[member[:, None], offset[:, None] + np.arange(n_bins)]


@dataclass
class TruthBlock:
    """Ground truth of one file (see the module docstring)."""

    rates: np.ndarray
    first_bin: np.ndarray
    unit_ids: np.ndarray
    latents: np.ndarray | None = None
    rates_all: np.ndarray | None = None
    unit_ids_all: np.ndarray | None = None
    spikes_all: np.ndarray | None = None


@dataclass
class GeneratedDataset:
    """Everything one generator run produces, before it is written."""

    session: SessionInfo
    arrays: tuple[ElectrodeArray, ...]
    train_units: UnitsTable
    train_trials: TrialsTable
    behavior: tuple[BehaviorSeries, ...]
    test_units: UnitsTable
    test_trials: TrialsTable
    train_truth: TruthBlock
    test_truth: TruthBlock


def _test_tables(spec: DatasetSpec, layout: UnitLayout, collector: SpikeCollector, n_test: int
                 ) -> tuple[UnitsTable, TrialsTable]:
    starts, _ = _test_segments(spec, n_test)
    stops = starts + spec.window_len_ms
    heldin = np.flatnonzero(~layout.heldout)
    units = _units_table(layout, collector, heldin, np.stack([starts, stops], axis=1) / 1000.0)
    trials = TrialsTable(
        start_time=starts / 1000.0, stop_time=stops / 1000.0, split=np.full(n_test, "test"),
        columns=(TrialColumn(spec.align_field, "Time of the alignment event (seconds)",
                             (starts - spec.window_ms[0]) / 1000.0),),
    )
    return units, trials


def _sample_test_trials(spec: DatasetSpec, latents: np.ndarray, align_local_ms: np.ndarray, readout: Readout,
                        layout: UnitLayout, rng: np.random.Generator) -> tuple[SpikeCollector, TruthBlock]:
    """Place simulated test trials (latents in trial time, alignment event at `align_local_ms`) as
    the re-timed segments of a test file, sample their spikes and keep the truth."""
    n_test = len(latents)
    starts, _ = _test_segments(spec, n_test)
    align_file = starts - spec.window_ms[0]
    first_bin, n_bins = _coverage(spec, align_file)
    placed = PlacedTrials(
        latents=latents, offset_ms=align_file - align_local_ms,
        span_start_ms=first_bin * BIN_MS, span_stop_ms=(first_bin + n_bins) * BIN_MS,
    )
    sampled = _sample_placed(placed, readout, rng)
    # The file holds each trial's window of the held-in units; the rest lives in the truth file.
    spike_ms = sampled.spike_sample // SAMPLES_PER_MS
    window_start = starts[sampled.spike_trial]
    keep = (spike_ms >= window_start) & (spike_ms < window_start + spec.window_len_ms)
    keep &= ~layout.heldout[sampled.spike_unit]
    collector = SpikeCollector(len(layout.ids))
    collector.add(sampled.spike_unit[keep], sampled.spike_sample[keep])
    heldin = ~layout.heldout
    truth = TruthBlock(
        rates=sampled.rates[..., heldin], first_bin=first_bin, unit_ids=layout.ids[heldin],
        rates_all=sampled.rates, unit_ids_all=layout.ids, spikes_all=sampled.counts().astype(np.uint16),
    )
    return collector, truth


# ---------------------------------------------------------------------------------------------
# MC_Maze look-alike.

MAZE_TYPES = 9
MAZE_VERSIONS = 3
_MAZE_PLANES = 3
_MAZE_LATENT_DIM = 2 * _MAZE_PLANES + 2
_OMEGA = 2 * np.pi * np.array([1.2, 1.7, 2.3]) / 1000.0  # rad/ms of the three rotational planes
_ROTATION_TAU_MS = np.array([170.0, 150.0, 130.0])
_FREQUENCY_GAIN = 0.12  # relative frequency increase per unit squared amplitude
_PREP_TAU_MS = 120.0
_REST_TAU_MS = 200.0
_VISUAL_LATENCY_MS = 60
_PROCESS_NOISE = 0.0015  # per sqrt(ms)
_PREP_NOISE = 0.25  # trial-to-trial sd of the preparatory state
_SPEED_SD = 0.06  # trial-to-trial sd of the speed of the movement dynamics
_MOTOR_NOISE_MM_S = 15.0  # hand velocity noise that the neurons do not see
_MOTOR_NOISE_TAU_MS = 40.0
_MAZE_LOG_RATE_SD = (0.9, 1.3)
_CALIBRATION_TRIALS = 128
_MAZE_MEAN_HZ = (5.0, 40.0)
_CIS_TAU_MS = 40.0
_CIS_DURATION_MS = 300
_PREP_SIGNAL_TAU_MS = 150.0
_ONSET_THRESHOLD = 0.15  # fraction of peak speed that marks move onset
_PREP_AMPLITUDE = 1.4  # typical |preparatory state|
_REACH_MM = (80.0, 130.0)


@dataclass(frozen=True)
class MazeDynamics:
    """Per-condition preparatory states and the hand's readout of the latent state."""

    prep_states: np.ndarray  # (conditions, planes) real
    directions: np.ndarray  # (planes, 2): hand direction each plane's rotation drives
    velocity_gain: float  # mm/ms per unit of a plane's imaginary part
    lag_ms: int


@dataclass(frozen=True)
class MazeModel:
    """The fixed parts of the maze world: the dynamics, targets and barriers of each condition."""

    dynamics: MazeDynamics
    targets: np.ndarray  # (conditions, 2) mm, where the noise-free reach ends
    barriers: tuple[np.ndarray, ...]  # per condition (k, 4): x, y, half-width, half-height (mm)
    distractors: tuple[np.ndarray, ...]  # per condition (k, 2) other targets on screen


@dataclass(frozen=True)
class MazeTrialPlan:
    """Per-trial timing in ms from trial start, condition index, preparatory noise and the
    speed of the movement dynamics (a factor on the rotation frequencies)."""

    condition: np.ndarray
    target_on: np.ndarray
    go_cue: np.ndarray
    trigger: np.ndarray
    length: np.ndarray
    prep_noise: np.ndarray
    speed: np.ndarray

    def subset(self, rows: np.ndarray) -> MazeTrialPlan:
        return MazeTrialPlan(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


@dataclass(frozen=True)
class MazeSimulation:
    latents: np.ndarray  # (trials, T, 8) float32, trial time
    hand_vel: np.ndarray  # (trials, T, 2) mm/s
    move_onset: np.ndarray  # (trials,) ms from trial start


def _simulate_maze(dynamics: MazeDynamics, plan: MazeTrialPlan, rng: np.random.Generator | None) -> MazeSimulation:
    """Euler steps of 1 ms for a batch of trials; `rng=None` runs without noise."""
    n = len(plan.condition)
    n_time = int(plan.length.max())
    lag_ms = dynamics.lag_ms
    prep = dynamics.prep_states[plan.condition] + plan.prep_noise
    omega = _OMEGA[None, :] * plan.speed[:, None]
    z = np.zeros((n, _MAZE_PLANES), dtype=np.complex128)
    cis = np.zeros(n)
    prep_signal = np.zeros(n)
    latents = np.empty((n, n_time, _MAZE_LATENT_DIM), dtype=np.float32)
    decay = -1.0 / _ROTATION_TAU_MS
    visual = plan.target_on + _VISUAL_LATENCY_MS
    for t in range(n_time):
        moving = (t >= plan.trigger)[:, None]
        preparing = ((t >= visual) & (t < plan.trigger))[:, None]
        rotation = (decay + 1j * omega * (1.0 + _FREQUENCY_GAIN * np.abs(z) ** 2)) * z
        settle = np.where(preparing, (prep - z) / _PREP_TAU_MS, -z / _REST_TAU_MS)
        z = z + np.where(moving, rotation, settle)
        if rng is not None:
            z += _PROCESS_NOISE * (rng.standard_normal((n, _MAZE_PLANES)) + 1j * rng.standard_normal((n, _MAZE_PLANES)))
        cis_drive = (t >= plan.trigger) & (t < plan.trigger + _CIS_DURATION_MS)
        cis += (cis_drive - cis) / _CIS_TAU_MS
        prep_signal += (preparing[:, 0] - prep_signal) / _PREP_SIGNAL_TAU_MS
        latents[:, t, :_MAZE_PLANES] = z.real
        latents[:, t, _MAZE_PLANES:2 * _MAZE_PLANES] = z.imag
        latents[:, t, -2] = cis
        latents[:, t, -1] = prep_signal
    # The hand follows the rotating components `lag_ms` later (before the trial: at rest), plus
    # slow motor noise that the neurons do not see.
    lagged = np.zeros((n, n_time, _MAZE_PLANES), dtype=np.float32)
    lagged[:, lag_ms:] = latents[:, :n_time - lag_ms, _MAZE_PLANES:2 * _MAZE_PLANES]
    hand_vel = (lagged @ dynamics.directions.astype(np.float32)) * (dynamics.velocity_gain * 1000.0)
    if rng is not None:
        pole = np.exp(-1.0 / _MOTOR_NOISE_TAU_MS)
        noise = lfilter([1.0 - pole], [1.0, -pole], rng.standard_normal((n, n_time, 2)), axis=1)
        hand_vel += (noise * (_MOTOR_NOISE_MM_S / noise.std())).astype(np.float32)
    speed = np.hypot(hand_vel[..., 0], hand_vel[..., 1])
    after = np.arange(n_time)[None, :] >= (plan.trigger[:, None] + lag_ms)
    in_trial = np.arange(n_time)[None, :] < plan.length[:, None]
    peak = np.where(after & in_trial, speed, 0.0).max(axis=1)
    move_onset = np.argmax(after & in_trial & (speed >= _ONSET_THRESHOLD * peak[:, None]), axis=1)
    return MazeSimulation(latents, hand_vel, move_onset.astype(np.int64))


def _maze_plan(rng: np.random.Generator, condition: np.ndarray) -> MazeTrialPlan:
    n = len(condition)
    target_on = rng.integers(400, 601, n)
    go_cue = target_on + rng.integers(300, 901, n)
    trigger = go_cue + np.clip(rng.normal(170.0, 35.0, n), 100, 280).astype(np.int64)
    length = trigger + rng.integers(1300, 1701, n)
    # Truncated at two sd: rare extreme preparatory states would give a few absurd peak rates.
    prep_noise = np.clip(rng.normal(0.0, _PREP_NOISE, (n, _MAZE_PLANES)), -2 * _PREP_NOISE, 2 * _PREP_NOISE)
    speed = np.clip(rng.normal(1.0, _SPEED_SD, n), 0.8, 1.2)
    return MazeTrialPlan(condition, target_on, go_cue, trigger, length, prep_noise, speed)


def _maze_model(rng: np.random.Generator, lag_ms: int) -> MazeModel:
    plane_angles = np.deg2rad(np.array([0.0, 120.0, 240.0]) + rng.uniform(-20, 20, _MAZE_PLANES))
    directions = np.stack([np.cos(plane_angles), np.sin(plane_angles)], axis=1)
    # Linear-dynamics estimate of how far a unit of preparatory state moves the hand along each
    # plane's direction (the integral of e^{-t/tau} sin(omega t)); it sets the preparatory states.
    reach_per_unit = _OMEGA / (_OMEGA**2 + 1.0 / _ROTATION_TAU_MS**2)
    mixing = directions.T * reach_per_unit  # (2, planes)
    null = np.linalg.svd(mixing)[2][-1]
    angles = 2 * np.pi * np.arange(MAZE_TYPES) / MAZE_TYPES + rng.uniform(-0.2, 0.2, MAZE_TYPES)
    radius = rng.uniform(*_REACH_MM, MAZE_TYPES)
    aim = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius[:, None]
    base = aim @ np.linalg.pinv(mixing).T  # (types, planes) in mm-units
    scale = _PREP_AMPLITUDE / np.linalg.norm(base, axis=1).mean()
    # Versions reach the same target along different paths: they differ along the null space.
    detour = np.array([0.0, 0.9, -0.9]) * _PREP_AMPLITUDE
    prep_states = (base[:, None, :] * scale + detour[None, :, None] * null).reshape(-1, _MAZE_PLANES)
    dynamics = MazeDynamics(prep_states, directions, 1.0 / scale, lag_ms)
    # Targets sit where the noise-free reach of each condition ends.
    n_conditions = len(prep_states)
    plan = MazeTrialPlan(
        condition=np.arange(n_conditions), target_on=np.full(n_conditions, 400), go_cue=np.full(n_conditions, 1000),
        trigger=np.full(n_conditions, 1170), length=np.full(n_conditions, 2600),
        prep_noise=np.zeros((n_conditions, _MAZE_PLANES)), speed=np.ones(n_conditions),
    )
    reference = _simulate_maze(dynamics, plan, None)
    endpoints = np.round(reference.hand_vel.sum(axis=1) / 1000.0)
    barriers, distractors = [], []
    for condition, end in enumerate(endpoints):
        version = condition % MAZE_VERSIONS
        normal = np.array([-end[1], end[0]]) / np.linalg.norm(end)
        middle = end / 2 + normal * (version - 1) * 10.0
        barriers.append(np.empty((0, 4)) if version == 0 else
                        np.array([[middle[0], middle[1], 4.0, 25.0]]).round())
        others = np.roll(endpoints[::MAZE_VERSIONS], -(condition // MAZE_VERSIONS), axis=0)[1:1 + version]
        distractors.append(others)
    return MazeModel(dynamics, endpoints, tuple(barriers), tuple(distractors))


def _maze_readout(rng: np.random.Generator, model: MazeModel, layout: UnitLayout) -> Readout:
    n_units = len(layout.ids)
    # PMd units (array 0) weigh preparation more, M1 units movement.
    is_pmd = (layout.area_index == 0)[:, None]
    prep_weight = np.where(is_pmd, 1.0, 0.6)
    move_weight = np.where(is_pmd, 0.7, 1.0)
    feature_scale = np.concatenate([
        np.broadcast_to(prep_weight, (n_units, _MAZE_PLANES)), np.broadcast_to(move_weight, (n_units, _MAZE_PLANES)),
        np.broadcast_to(move_weight, (n_units, 1)), np.broadcast_to(prep_weight, (n_units, 1)),
    ], axis=1)
    # Calibrated on trials like the real ones, noise included, so that no unit leans on a
    # direction that only trial-to-trial variability explores.
    # Only the evaluation windows (plus margins) count: that is where rates are scored.
    plan = _maze_plan(rng, _balanced(rng, _CALIBRATION_TRIALS, MAZE_TYPES * MAZE_VERSIONS))
    sim = _simulate_maze(model.dynamics, plan, rng)
    around_onset = sim.move_onset[:, None] + np.arange(-300, 701, BIN_MS)[None, :]
    reference = np.take_along_axis(sim.latents, around_onset[..., None], axis=1).reshape(-1, _MAZE_LATENT_DIM)
    return _readout(rng, feature_scale, reference, _MAZE_LOG_RATE_SD, _MAZE_MEAN_HZ)


def _minimum_jerk(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Position fraction and its derivative (per sample) of a minimum-jerk move over n samples."""
    s = (np.arange(n) + 1) / n
    return 10 * s**3 - 15 * s**4 + 6 * s**5, (30 * s**2 - 60 * s**3 + 30 * s**4) / n


def _maze_trial_columns(model: MazeModel, plan: MazeTrialPlan, start_ms: np.ndarray, move_onset: np.ndarray,
                        success: np.ndarray) -> tuple[TrialColumn, ...]:
    condition = plan.condition

    def seconds(local_ms: np.ndarray) -> np.ndarray:
        return (start_ms + local_ms) / 1000.0

    targets = [np.vstack([model.targets[c][None], model.distractors[c]]) for c in condition]
    barriers = [model.barriers[c] for c in condition]
    return (
        TrialColumn("trial_type", "Maze (target and barrier layout) shown on the trial",
                    condition // MAZE_VERSIONS + 1),
        TrialColumn("trial_version", "Version of the maze: which path around the barrier", condition % MAZE_VERSIONS),
        TrialColumn("maze_id", "Identifier of the maze configuration", 1 + condition),
        TrialColumn("success", "Whether the trial was rewarded", success),
        TrialColumn("target_on_time", "Time of target presentation", seconds(plan.target_on)),
        TrialColumn("go_cue_time", "Time of the go cue", seconds(plan.go_cue)),
        TrialColumn("move_onset_time", "Time of movement onset (hand speed above 15% of its peak)",
                    seconds(move_onset)),
        TrialColumn("rt", "Reaction time: movement onset minus go cue (ms)", (move_onset - plan.go_cue).astype(float)),
        TrialColumn("delay", "Delay between target presentation and go cue (ms)",
                    (plan.go_cue - plan.target_on).astype(float)),
        TrialColumn("num_targets", "Number of targets shown", np.array([len(t) for t in targets])),
        TrialColumn("target_pos", "Positions of the targets shown (mm)", Ragged.from_rows(targets)),
        TrialColumn("num_barriers", "Number of barriers shown", np.array([len(b) for b in barriers])),
        TrialColumn("barrier_pos", "Barriers: x, y, half-width, half-height (mm)",
                    Ragged.from_rows([b.reshape(-1, 4) for b in barriers])),
        TrialColumn("active_target", "Index of the target to reach in target_pos", np.zeros(len(condition), int)),
    )


def _return_to_centre(hand_pos: np.ndarray, hand_vel: np.ndarray, gap_start_ms: np.ndarray,
                      gap_stop_ms: np.ndarray) -> None:
    """Between trials the hand returns to the centre along a minimum-jerk path (in place)."""
    for low, high in zip(gap_start_ms, gap_stop_ms):
        fraction, rate = _minimum_jerk(int(high - low))
        end = hand_pos[low - 1]
        hand_pos[low:high] = end * (1 - fraction)[:, None]
        hand_vel[low:high] = -end * rate[:, None] * 1000.0


def _generate_maze(spec: DatasetSpec, seed: int) -> GeneratedDataset:
    counts = spec.expected
    n_train, n_val, n_test = counts.val_train_trials, counts.val_eval_trials, counts.test_eval_trials
    rng = np.random.default_rng(seed)
    layout = _unit_layout(rng, counts.heldin_units, counts.heldout_units, n_arrays=2, electrodes_per_array=96,
                          id_prefix=True)
    model = _maze_model(rng, spec.behavior_lag_ms)
    readout = _maze_readout(rng, model, layout)
    n_conditions = MAZE_TYPES * MAZE_VERSIONS
    n_none = max(2, round(0.03 * (n_train + n_val)))
    n_trials = n_train + n_val + n_none
    split = _splits(rng, n_train, n_val, n_none)
    plan = _maze_plan(rng, _balanced(rng, n_trials, n_conditions))
    gaps = rng.integers(200, 401, n_trials)
    start_ms = 1000 + np.concatenate([[0], np.cumsum(plan.length + gaps)[:-1]])
    stop_ms = start_ms + plan.length
    session_ms = int(stop_ms[-1])

    hand_vel = np.zeros((session_ms, 2))
    hand_pos = np.zeros((session_ms, 2))
    eye_pos = np.zeros((session_ms, 2))
    collector = SpikeCollector(len(layout.ids))
    move_onset = np.empty(n_trials, dtype=np.int64)
    truth_first = np.empty(n_trials, dtype=np.int64)
    truth_rates, truth_latents = [], []
    for chunk_start in range(0, n_trials, CHUNK_TRIALS):
        rows = np.arange(chunk_start, min(chunk_start + CHUNK_TRIALS, n_trials))
        chunk_plan = plan.subset(rows)
        sim = _simulate_maze(model.dynamics, chunk_plan, rng)
        move_onset[rows] = sim.move_onset
        placed = PlacedTrials(sim.latents, start_ms[rows], start_ms[rows], stop_ms[rows])
        sampled = _sample_placed(placed, readout, rng)
        collector.add(sampled.spike_unit, sampled.spike_sample)
        first, n_bins = _coverage(spec, start_ms[rows] + sim.move_onset)
        truth_first[rows] = first
        member = np.arange(len(rows))
        truth_rates.append(_rows(sampled, member, first, n_bins, sampled.rates))
        truth_latents.append(_rows(sampled, member, first, n_bins, sampled.latents))
        for i, row in enumerate(rows):
            span = slice(start_ms[row], stop_ms[row])
            length = plan.length[row]
            hand_vel[span] = sim.hand_vel[i, :length]
            hand_pos[span] = np.cumsum(sim.hand_vel[i, :length], axis=0) / 1000.0
            saccade = start_ms[row] + plan.target_on[row] + int(rng.integers(150, 250))
            eye_pos[saccade:stop_ms[row]] = model.targets[plan.condition[row]]
    _return_to_centre(hand_pos, hand_vel, stop_ms[:-1], start_ms[1:])
    eye_pos += rng.normal(0.0, 0.5, eye_pos.shape)

    success = split != "none"
    columns = _maze_trial_columns(model, plan, start_ms, move_onset, success)
    obs = np.stack([start_ms, stop_ms], axis=1) / 1000.0
    train_units = _units_table(layout, collector, np.arange(len(layout.ids)), obs)
    train_trials = TrialsTable(start_ms / 1000.0, stop_ms / 1000.0, split, columns)
    behavior = (
        BehaviorSeries("hand_pos", hand_pos, ("x", "y"), "mm", "Hand position"),
        BehaviorSeries("hand_vel", hand_vel, ("x", "y"), "mm/s", "Hand velocity"),
        BehaviorSeries("cursor_pos", hand_pos.copy(), ("x", "y"), "mm", "Cursor position (follows the hand)"),
        BehaviorSeries("eye_pos", eye_pos, ("x", "y"), "mm", "Eye position on the screen"),
    )

    test_plan = _maze_plan(rng, _balanced(rng, n_test, n_conditions))
    test_sim = _simulate_maze(model.dynamics, test_plan, rng)
    test_collector, test_truth = _sample_test_trials(spec, test_sim.latents, test_sim.move_onset, readout,
                                                     layout, rng)
    test_units, test_trials = _test_tables(spec, layout, test_collector, n_test)
    size = dict(spec.generator_args).get("size", "medium")
    session = SessionInfo(
        session_id=str(size), subject_id="Synth",
        session_description=f"Synthetic MC_Maze-like session ({size}) generated by nlb_suite, seed {seed}",
        experiment_description="Center-out delayed reaching task with maze barriers (synthetic)",
        keywords=("motor cortex", "premotor cortex", "reaching", "synthetic", "Neural Latents Benchmark"),
    )
    arrays = (
        ElectrodeArray("PMd", 96, "96-electrode array in PMd (synthetic)", "Dorsal premotor cortex"),
        ElectrodeArray("M1", 96, "96-electrode array in M1 (synthetic)", "Primary motor cortex"),
    )
    train_truth = TruthBlock(np.concatenate(truth_rates), truth_first, layout.ids, np.concatenate(truth_latents))
    return GeneratedDataset(session, arrays, train_units, train_trials, behavior, test_units, test_trials,
                            train_truth, test_truth)


# ---------------------------------------------------------------------------------------------
# Area2_Bump look-alike.

AREA2_DIRECTIONS = 8
_AREA2_MODES_TAU_MS = np.array([40.0, 80.0, 150.0])
_AREA2_MODES_HZ = np.array([4.0, 2.5, 1.0])
_AREA2_VEL_TAU_MS = 20.0
_AREA2_LATENT_DIM = 2 * len(_AREA2_MODES_TAU_MS) + 2
_REACH_CM = 10.0
_TYPICAL_SPEED_CM_S = 30.0  # scales velocity to the size of the other latent inputs
_BUMP_N = 2.0
_BUMP_MS = 125
_BUMP_PEAK_CM = 2.0
_MOTOR_LEAD_MS = 80
_CHUNKS = 4
_AMPLITUDE_SD = 0.12  # trial-to-trial sd of reach length and bump force (relative)
_INPUT_NOISE = 0.05
_INPUT_NOISE_TAU_MS = 100.0
_AREA2_LOG_RATE_SD = (0.7, 1.1)
_AREA2_MEAN_HZ = (5.0, 30.0)
_EVENT_MS = 1500  # length of the kinematic template of one reach or bump


@dataclass(frozen=True)
class Area2Plan:
    """Per-trial events in ms from trial start. Passive trials (bump) have no target; active ones
    no bump. `reach_ms` is the duration of an active reach; `amplitude` scales the reach's
    length or the bump's force."""

    bump: np.ndarray  # bool
    direction: np.ndarray  # degrees
    target_on: np.ndarray
    go_cue: np.ndarray
    event: np.ndarray  # bump onset or reach start
    reach_ms: np.ndarray
    amplitude: np.ndarray
    length: np.ndarray


def _area2_plan(rng: np.random.Generator, n: int, direction: np.ndarray) -> Area2Plan:
    bump = _balanced(rng, n, 2).astype(bool)
    target_on = rng.integers(400, 701, n)
    go_cue = target_on + rng.integers(0, 301, n)
    reach_start = go_cue + np.clip(rng.normal(200.0, 40.0, n), 120, 320).astype(np.int64)
    bump_at = rng.integers(500, 901, n)
    reach_ms = rng.integers(350, 501, n)
    event = np.where(bump, bump_at, reach_start)
    # Active: reach, hold, return to the centre, a short rest. Passive: the hand settles back.
    active_length = reach_start + reach_ms + rng.integers(500, 651, n) + 400 + 100
    passive_length = bump_at + rng.integers(900, 1101, n)
    amplitude = np.clip(rng.normal(1.0, _AMPLITUDE_SD, n), 0.7, 1.3)
    return Area2Plan(bump, 45.0 * direction, target_on, go_cue, event, reach_ms, amplitude,
                     np.where(bump, passive_length, active_length))


def _bump_templates() -> tuple[np.ndarray, np.ndarray]:
    """Force (N, unit direction) and the hand displacement (cm) it causes, per ms: a damped
    limb (2 Hz, damping ratio 0.7) pushed by a raised-cosine pulse."""
    t = np.arange(_EVENT_MS)
    force = np.where(t < _BUMP_MS, np.sin(np.pi * t / _BUMP_MS) ** 2, 0.0)
    omega = 2 * np.pi * 2.0 / 1000.0
    b = [1.0]
    a = [1.0 + 2 * 0.7 * omega + omega**2, -(2 + 2 * 0.7 * omega), 1.0]
    displacement = lfilter(b, a, force)
    return force * _BUMP_N, displacement * (_BUMP_PEAK_CM / displacement.max())


def _area2_kinematics(plan: Area2Plan, start_ms: np.ndarray, session_ms: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hand position (cm), bump force (N) and motor command of a session, and move onset (ms from
    trial start) of each trial: kinematic templates placed at the trials' events."""
    pos = np.zeros((session_ms + _EVENT_MS, 2))
    bump_force = np.zeros_like(pos)
    motor = np.zeros_like(pos)
    force_shape, displacement = _bump_templates()
    unit = np.stack([np.cos(np.deg2rad(plan.direction)), np.sin(np.deg2rad(plan.direction))], axis=1)
    for i in range(len(start_ms)):
        at = int(start_ms[i] + plan.event[i])
        if plan.bump[i]:
            pos[at:at + _EVENT_MS] += displacement[:, None] * (plan.amplitude[i] * unit[i])
            bump_force[at:at + _EVENT_MS] += force_shape[:, None] * (plan.amplitude[i] * unit[i])
            continue
        reach = int(plan.reach_ms[i])
        fraction, rate = _minimum_jerk(reach)
        back_at = int(start_ms[i] + plan.length[i]) - 500
        target = _REACH_CM * plan.amplitude[i] * unit[i]
        pos[at:at + reach] += fraction[:, None] * target
        pos[at + reach:back_at] += target
        pos[back_at:back_at + 400] += (1 - _minimum_jerk(400)[0])[:, None] * target
        lead = at - _MOTOR_LEAD_MS
        motor[lead:lead + reach] += (rate / rate.max())[:, None] * unit[i]
    pos, bump_force, motor = pos[:session_ms], bump_force[:session_ms], motor[:session_ms]
    vel = np.gradient(pos, axis=0) * 1000.0
    speed = np.hypot(vel[:, 0], vel[:, 1])
    onset = np.empty(len(start_ms), dtype=np.int64)
    for i in range(len(start_ms)):
        at = int(start_ms[i] + plan.event[i])
        window = speed[at:at + 600]
        onset[i] = plan.event[i] + int(np.argmax(window >= _ONSET_THRESHOLD * window.max()))
    return pos, bump_force, motor, onset


def _area2_latents(vel: np.ndarray, bump_force: np.ndarray, motor: np.ndarray, input_gain: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Linear latent dynamics driven by [velocity, bump force, motor command] (time, 6), plus
    slow input noise: activity the kinematics do not explain."""
    inputs = np.concatenate([vel / _TYPICAL_SPEED_CM_S, bump_force / _BUMP_N, motor], axis=1)
    pole = np.exp(-1.0 / _INPUT_NOISE_TAU_MS)
    noise = lfilter([1.0 - pole], [1.0, -pole], rng.standard_normal(inputs.shape), axis=0)
    inputs += noise * (_INPUT_NOISE / noise.std())
    modes = []
    for k, (tau, hz) in enumerate(zip(_AREA2_MODES_TAU_MS, _AREA2_MODES_HZ)):
        pole = np.exp(-1.0 / tau + 2j * np.pi * hz / 1000.0)
        drive = inputs @ input_gain[k]
        # Scaled by the decay per ms, so that slow and fast modes respond with similar amplitude.
        modes.append(lfilter([1.0 - abs(pole)], [1.0, -pole], drive))
    modes = np.stack(modes, axis=1)
    pole = np.exp(-1.0 / _AREA2_VEL_TAU_MS)
    smooth_vel = lfilter([1.0 - pole], [1.0, -pole], vel / _TYPICAL_SPEED_CM_S, axis=0)
    return np.concatenate([modes.real, modes.imag, smooth_vel], axis=1).astype(np.float32)


@dataclass(frozen=True)
class Area2Session:
    """A simulated continuous session: trials back to back in recording chunks."""

    start_ms: np.ndarray
    stop_ms: np.ndarray
    chunk: np.ndarray  # chunk index of each trial
    chunk_spans: np.ndarray  # (chunks, 2) observed ms
    move_onset: np.ndarray  # ms from trial start
    latents: np.ndarray  # (session ms, dim)
    hand_pos: np.ndarray
    hand_vel: np.ndarray
    force: np.ndarray  # (session ms, 6)


def _area2_session(rng: np.random.Generator, plan: Area2Plan, n_chunks: int, input_gain: np.ndarray
                   ) -> Area2Session:
    n = len(plan.bump)
    chunk = np.minimum(np.arange(n) * n_chunks // n, n_chunks - 1)
    rests = rng.integers(50, 201, n)
    # A new recording chunk starts after an unobserved break of 10-30 s.
    breaks = np.where(np.diff(chunk, prepend=chunk[0]) > 0, rng.integers(10_000, 30_001, n), 0)
    start_ms = 1000 + np.concatenate([[0], np.cumsum(plan.length + rests)[:-1]]) + np.cumsum(breaks)
    stop_ms = start_ms + plan.length
    spans = np.array([[start_ms[chunk == c].min() - 500, stop_ms[chunk == c].max() + 500] for c in range(n_chunks)])
    session_ms = int(spans[-1, 1])
    pos, bump_force, motor, onset = _area2_kinematics(plan, start_ms, session_ms)
    vel = np.gradient(pos, axis=0) * 1000.0
    latents = np.zeros((session_ms, _AREA2_LATENT_DIM), dtype=np.float32)
    for low, high in spans:
        latents[low:high] = _area2_latents(vel[low:high], bump_force[low:high], motor[low:high], input_gain, rng)
    # The load cell sees the bump, the handle's inertia and friction, and sensor noise.
    acceleration = np.gradient(vel, axis=0) * 1000.0 / 100.0  # m/s^2
    planar = bump_force + 0.6 * acceleration + 0.02 * vel
    mixing = np.array([[1.0, 0.0, 0.05, 0.01, -0.02, 0.03], [0.0, 1.0, -0.04, 0.02, 0.01, -0.03]])
    force = planar @ mixing + rng.normal(0.0, 0.02, (session_ms, 6))
    return Area2Session(start_ms, stop_ms, chunk, spans, onset, latents, pos, vel, force)


def _area2_columns(plan: Area2Plan, start_ms: np.ndarray, move_onset: np.ndarray, result: np.ndarray
                   ) -> tuple[TrialColumn, ...]:
    active = ~plan.bump

    def seconds(local_ms: np.ndarray, present: np.ndarray) -> np.ndarray:
        return np.where(present, (start_ms + local_ms) / 1000.0, np.nan)

    return (
        TrialColumn("result", "Trial outcome: R reward, A abort, I incomplete, F fail", result),
        TrialColumn("ctr_hold", "Centre hold before the target or bump (ms)",
                    np.where(plan.bump, plan.event, plan.target_on).astype(float)),
        TrialColumn("ctr_hold_bump", "Whether a bump was applied during the centre hold", plan.bump),
        TrialColumn("bump_dir", "Bump direction (degrees)", np.where(plan.bump, plan.direction, np.nan)),
        TrialColumn("target_on_time", "Time of target presentation", seconds(plan.target_on, active)),
        TrialColumn("target_dir", "Target direction (degrees)", np.where(active, plan.direction, np.nan)),
        TrialColumn("go_cue_time", "Time of the go cue", seconds(plan.go_cue, active)),
        TrialColumn("bump_time", "Time of bump onset", seconds(plan.event, plan.bump)),
        TrialColumn("move_onset_time", "Time of movement onset (hand speed above 15% of its peak)",
                    seconds(move_onset, np.ones(len(start_ms), bool))),
        TrialColumn("cond_dir", "Direction of the movement: bump or target direction (degrees)", plan.direction),
    )


def _generate_area2(spec: DatasetSpec, seed: int) -> GeneratedDataset:
    counts = spec.expected
    n_train, n_val, n_test = counts.val_train_trials, counts.val_eval_trials, counts.test_eval_trials
    rng = np.random.default_rng(seed)
    layout = _unit_layout(rng, counts.heldin_units, counts.heldout_units, n_arrays=1, electrodes_per_array=96,
                          id_prefix=False)
    n_units = len(layout.ids)
    input_gain = (rng.normal(size=(3, 6)) + 1j * rng.normal(size=(3, 6))) / np.sqrt(6)
    n_none = max(2, round(0.08 * (n_train + n_val)))
    n_trials = n_train + n_val + n_none
    split = _splits(rng, n_train, n_val, n_none)
    plan = _area2_plan(rng, n_trials, _balanced(rng, n_trials, AREA2_DIRECTIONS))
    session = _area2_session(rng, plan, _CHUNKS, input_gain)
    result = np.where(split == "none", rng.choice(np.array(["A", "I", "F"]), n_trials), "R")
    observed = np.concatenate([session.latents[low:high:BIN_MS] for low, high in session.chunk_spans])
    readout = _readout(rng, np.ones((n_units, _AREA2_LATENT_DIM)), observed, _AREA2_LOG_RATE_SD, _AREA2_MEAN_HZ)

    spans = session.chunk_spans
    chunk_latents = np.zeros((_CHUNKS, int((spans[:, 1] - spans[:, 0]).max()), _AREA2_LATENT_DIM), np.float32)
    for c, (low, high) in enumerate(spans):
        chunk_latents[c, :high - low] = session.latents[low:high]
    sampled = _sample_placed(PlacedTrials(chunk_latents, spans[:, 0], spans[:, 0], spans[:, 1]), readout, rng)
    collector = SpikeCollector(n_units)
    collector.add(sampled.spike_unit, sampled.spike_sample)
    first, n_bins = _coverage(spec, session.start_ms + session.move_onset)
    train_truth = TruthBlock(
        rates=_rows(sampled, session.chunk, first, n_bins, sampled.rates), first_bin=first, unit_ids=layout.ids,
        latents=_rows(sampled, session.chunk, first, n_bins, sampled.latents),
    )
    columns = _area2_columns(plan, session.start_ms, session.move_onset, result)
    train_units = _units_table(layout, collector, np.arange(n_units), spans / 1000.0)
    train_trials = TrialsTable(session.start_ms / 1000.0, session.stop_ms / 1000.0, split, columns)
    behavior = (
        BehaviorSeries("hand_pos", session.hand_pos, ("x", "y"), "cm", "Hand position"),
        BehaviorSeries("hand_vel", session.hand_vel, ("x", "y"), "cm/s", "Hand velocity"),
        BehaviorSeries("force", session.force, ("x", "y", "z", "mx", "my", "mz"), "N",
                       "Forces and torques at the manipulandum handle"),
    )

    # Test trials: a session of their own, each window cut out and re-timed.
    test_plan = _area2_plan(rng, n_test, _balanced(rng, n_test, AREA2_DIRECTIONS))
    test_session = _area2_session(rng, test_plan, 1, input_gain)
    align = test_session.start_ms + test_session.move_onset
    before = -spec.window_ms[0] + MARGIN_MS + BIN_MS
    after = spec.window_ms[1] + spec.forward_ms + MARGIN_MS + BIN_MS
    cut = align[:, None] + np.arange(-before, after)[None, :]
    test_collector, test_truth = _sample_test_trials(
        spec, test_session.latents[cut], np.full(n_test, before), readout, layout, rng
    )
    test_units, test_trials = _test_tables(spec, layout, test_collector, n_test)
    info = SessionInfo(
        session_id="area2", subject_id="Synth",
        session_description=f"Synthetic Area2_Bump-like session generated by nlb_suite, seed {seed}",
        experiment_description="Center-out reaching with unexpected bumps during the centre hold (synthetic)",
        keywords=("somatosensory cortex", "area 2", "proprioception", "synthetic", "Neural Latents Benchmark"),
    )
    arrays = (ElectrodeArray("area2", 96, "96-electrode array in area 2 (synthetic)", "Brodmann area 2"),)
    return GeneratedDataset(info, arrays, train_units, train_trials, behavior, test_units, test_trials,
                            train_truth, test_truth)


# ---------------------------------------------------------------------------------------------
# Entry points.

GENERATORS: dict[str, Callable[[DatasetSpec, int], GeneratedDataset]] = {
    "maze": _generate_maze,
    "area2": _generate_area2,
}
_GENERATOR_ARGS = {"maze": {"size", "seed"}, "area2": {"seed"}}


def truth_path(spec: DatasetSpec, root: str | Path | None = None) -> Path:
    if spec.folder is None:
        raise SyntheticDataError(f"dataset {spec.name!r} has no data folder for its truth file")
    return data_dir(root) / spec.folder / TRUTH_FILE


def _check_spec(spec: DatasetSpec) -> int:
    """The seed of a generatable spec, or an error saying what is wrong with it."""
    if spec.source != "synthetic" or spec.generator is None:
        raise SyntheticDataError(f"dataset {spec.name!r} is not synthetic (source {spec.source!r})")
    if spec.generator not in GENERATORS:
        raise SyntheticDataError(
            f"dataset {spec.name!r}: unknown generator {spec.generator!r}; known: {', '.join(GENERATORS)}"
        )
    args = dict(spec.generator_args)
    unknown = sorted(set(args) - _GENERATOR_ARGS[spec.generator])
    if unknown:
        raise SyntheticDataError(f"dataset {spec.name!r}: generator {spec.generator!r} takes no argument(s) {unknown}")
    counts = spec.expected
    needed = (counts.heldin_units, counts.heldout_units, counts.val_train_trials, counts.val_eval_trials,
              counts.test_eval_trials)
    if any(n is None or n <= 0 for n in needed):
        raise SyntheticDataError(f"dataset {spec.name!r}: expected unit and trial counts must all be positive")
    seed = args.get("seed", 0)
    if not isinstance(seed, int) or seed < 0:
        raise SyntheticDataError(f"dataset {spec.name!r}: seed must be a non-negative integer, got {seed!r}")
    return seed


def _write_truth(path: Path, spec: DatasetSpec, train: TruthBlock, test: TruthBlock) -> None:
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as f:
        f.attrs["dataset"] = spec.name
        f.attrs["generator"] = str(spec.generator)
        f.attrs["generator_args"] = json.dumps(dict(spec.generator_args), sort_keys=True)
        f.attrs["bin_ms"] = BIN_MS
        f.attrs["margin_ms"] = MARGIN_MS
        for name, block in (("train", train), ("test", test)):
            group = f.create_group(name)
            for key, value in vars(block).items():
                if value is not None:
                    group.create_dataset(key, data=value)


def generate(spec: DatasetSpec, root: str | Path | None = None, *, overwrite: bool = False) -> DatasetFiles:
    """Generate a synthetic dataset's train and test NWB files and its truth file."""
    seed = _check_spec(spec)
    files = dataset_files(spec, root)
    truth = truth_path(spec, root)
    existing = [p for p in (files.train, files.test, truth) if p.exists()]
    if existing and not overwrite:
        raise SyntheticDataError(
            f"dataset {spec.name!r} already exists ({existing[0]}); regenerate it with --overwrite"
        )
    dataset = GENERATORS[spec.generator](spec, seed)
    # The truth file goes last and is removed first: its presence marks a complete dataset.
    truth.unlink(missing_ok=True)
    write_nlb_nwb(files.train, session=dataset.session, arrays=dataset.arrays, units=dataset.train_units,
                  trials=dataset.train_trials, behavior=dataset.behavior)
    write_nlb_nwb(files.test, session=dataset.session, arrays=dataset.arrays, units=dataset.test_units,
                  trials=dataset.test_trials)
    truth.parent.mkdir(parents=True, exist_ok=True)
    _write_truth(truth, spec, dataset.train_truth, dataset.test_truth)
    return files


def ensure_generated(spec: DatasetSpec, root: str | Path | None = None) -> DatasetFiles:
    """The dataset's files, generated first if the train file, test file or truth file is missing."""
    files = dataset_files(spec, root)
    if all(p.is_file() for p in (files.train, files.test, truth_path(spec, root))):
        return files
    return generate(spec, root, overwrite=True)
