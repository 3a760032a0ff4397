"""What every synthetic generator shares: latents on a 1 ms grid -> 5 ms rates on a file's clock
-> Poisson spikes at 30 kHz resolution; unit layouts, calibrated readouts, test segments and the
truth kept for each trial.

The log rate of a unit is a baseline plus a linear readout of the latent state averaged over each
5 ms bin of the file's clock (each latent dimension softly saturated); readouts are calibrated so
that every unit's mean rate lies in a given range and its peak stays near 200 Hz or below. Test
trials are simulated apart from the train file's session and written like the real test files:
held-in units only, each trial's evaluation window re-timed to start at k * (window + 100 ms),
no behaviour. What the truth file holds is described in `data/truth.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.errors import NlbSuiteError
from ...core.spec import DatasetSpec
from ...data.nwb_write import (
    SPIKE_SAMPLE_RATE,
    BehaviorSeries,
    ElectrodeArray,
    Ragged,
    SessionInfo,
    TrialColumn,
    TrialsTable,
    UnitsTable,
    spike_times_from_samples,
)
from ...data.truth import MARGIN_MS, TRUTH_BIN_MS, TruthBlock

BIN_MS = TRUTH_BIN_MS
SAMPLES_PER_MS = SPIKE_SAMPLE_RATE // 1000
# Gap between re-timed test segments, as in the real test files (0.7 s windows every 0.8 s).
TEST_SEGMENT_GAP_MS = 100
# Trials simulated at once; bounds memory to a few hundred MB at the full MC_Maze size.
CHUNK_TRIALS = 256
SATURATION_SD = 1.5  # latent values saturate at this many standard deviations
PEAK_HZ = 200.0  # highest rate of a unit on the calibration data
ONSET_THRESHOLD = 0.15  # fraction of peak speed that marks move onset


class SyntheticDataError(NlbSuiteError, ValueError):
    """A synthetic dataset cannot be generated as asked."""


@dataclass(frozen=True)
class GeneratorCounts:
    """How many units and trials a generator makes (from the spec's expected counts)."""

    heldin_units: int
    heldout_units: int
    train_trials: int
    val_trials: int
    test_trials: int


def generator_counts(spec: DatasetSpec) -> GeneratorCounts:
    expected = spec.expected
    values = (expected.heldin_units, expected.heldout_units, expected.val_train_trials, expected.val_eval_trials,
              expected.test_eval_trials)
    if any(n is None or n <= 0 for n in values):
        raise SyntheticDataError(f"dataset {spec.name!r}: expected unit and trial counts must all be positive")
    return GeneratorCounts(*(int(n) for n in values if n is not None))




def saturate(latents: np.ndarray, saturation: np.ndarray | None) -> np.ndarray:
    if saturation is None:
        return latents.astype(np.float32)
    return (saturation * np.tanh(latents / saturation)).astype(np.float32)


def auto_saturation(reference: np.ndarray) -> np.ndarray:
    """Per latent dimension, `SATURATION_SD` standard deviations of the reference latents."""
    return (SATURATION_SD * reference.std(axis=0)).astype(np.float32)


@dataclass(frozen=True)
class Readout:
    """log rate (spikes/ms) = log_baseline + weights @ features, where each latent dimension x
    enters as the soft-saturated s * tanh(x / s) (`saturation` s per dimension; None: x itself,
    a log-linear readout). The look-alikes saturate at a few standard deviations (neurons' tuning
    saturates, and the brief large excursions of the latents around movement would otherwise
    dominate every unit's range); the chaotic RNN's units read tanh(x) (s = 1)."""

    weights: np.ndarray
    log_baseline: np.ndarray
    saturation: np.ndarray | None

    def counts_per_bin(self, latents: np.ndarray) -> np.ndarray:
        """Expected spikes per 5 ms bin for bin-averaged latents (..., latent_dim)."""
        flat = saturate(latents.reshape(-1, latents.shape[-1]), self.saturation)
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


def sorted_uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    """n sorted uniform values in [0, 1), in linear time: normalised partial sums of n + 1
    exponential gaps."""
    partial = np.cumsum(rng.standard_exponential(n + 1))
    return partial[:-1] / partial[-1]


def sample_placed(placed: PlacedTrials, readout: Readout, rng: np.random.Generator) -> SampledTrials:
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
    position = sorted_uniform(rng, rng.poisson(total)) * total
    flat = np.searchsorted(cumulative, position, side="right")
    within = np.clip((position - (cumulative[flat] - expected[flat])) / expected[flat], 0.0, np.nextafter(1.0, 0.0))
    trial, bin_index, unit = np.unravel_index(flat, rates.shape)
    # Partly observed bins (at a trial's edges) get spikes only in their observed ms.
    low_ms = np.maximum((first_bin[trial] + bin_index) * BIN_MS, placed.span_start_ms[trial])
    sample = ((low_ms + within * observed_ms[trial, bin_index]) * SAMPLES_PER_MS).astype(np.int64)
    return SampledTrials(first_bin, latents, rates, trial, bin_index, unit, sample)


class SpikeCollector:
    """Spike samples (30 kHz) per unit, gathered over chunks of trials. Chunks come in time
    order and each is time-ordered per unit (as `sample_placed` makes them), so a unit's
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


def unit_layout(rng: np.random.Generator, n_heldin: int, n_heldout: int, n_arrays: int,
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


def peak_hz(drive: np.ndarray, gain: np.ndarray, mean_hz: np.ndarray) -> np.ndarray:
    """Peak rate of units whose log rate is gain * drive (samples, units) plus the baseline that
    gives them `mean_hz`."""
    scaled = drive * gain
    return mean_hz * np.exp(scaled.max(axis=0)) / np.exp(scaled).mean(axis=0)


def calibrated_readout(rng: np.random.Generator, feature_scale: np.ndarray, reference: np.ndarray,
                       log_rate_sd: tuple[float, float], mean_hz: tuple[float, float],
                       saturation: np.ndarray | None) -> Readout:
    """A random readout of latents saturated at `saturation` (see `Readout`), calibrated on
    `reference` latents (samples, features): weights N(0, 1) times `feature_scale` (units,
    features), rescaled so that each unit's log rate varies with a standard deviation drawn from
    `log_rate_sd` and its mean rate, drawn log-uniformly from `mean_hz`, is met exactly. Brief
    large latent excursions (movement) would give some units absurd peaks, so a unit's
    modulation is reduced until its peak rate on the reference stays below `PEAK_HZ`."""
    n_units = len(feature_scale)
    reference = saturate(reference, saturation)
    weights = rng.normal(size=feature_scale.shape) * feature_scale
    drive = reference @ weights.T
    drive -= drive.mean(axis=0)
    target_hz = np.exp(rng.uniform(np.log(mean_hz[0]), np.log(mean_hz[1]), n_units))

    gain = rng.uniform(*log_rate_sd, n_units) / drive.std(axis=0)
    capped = np.flatnonzero(peak_hz(drive, gain, target_hz) > PEAK_HZ)
    low, high = np.zeros(len(capped)), gain[capped]
    for _ in range(16):  # bisection on the gain of the units whose peak is too high
        middle = (low + high) / 2
        over = peak_hz(drive[:, capped], middle, target_hz[capped]) > PEAK_HZ
        high = np.where(over, middle, high)
        low = np.where(over, low, middle)
    gain[capped] = low
    weights *= gain[:, None]
    log_baseline = np.log(target_hz / 1000.0) - np.log(np.exp(reference @ weights.T).mean(axis=0))
    return Readout(weights.astype(np.float32), log_baseline.astype(np.float32), saturation)


def units_table(layout: UnitLayout, spikes: SpikeCollector, rows: np.ndarray,
                 obs_intervals_s: np.ndarray) -> UnitsTable:
    obs = Ragged.from_rows([obs_intervals_s for _ in rows])
    return UnitsTable(ids=layout.ids[rows], spike_times=spikes.spike_times(rows), obs_intervals=obs,
                      heldout=layout.heldout[rows], electrodes=layout.electrodes[rows])


def balanced(rng: np.random.Generator, n: int, n_values: int) -> np.ndarray:
    """`n` labels 0..n_values-1, as equal in number as possible, in random order."""
    return rng.permutation(np.resize(np.arange(n_values), n))


def splits(rng: np.random.Generator, n_train: int, n_val: int, n_none: int) -> np.ndarray:
    return rng.permutation(np.array(["train"] * n_train + ["val"] * n_val + ["none"] * n_none))


def test_segments(spec: DatasetSpec, n_test: int) -> tuple[np.ndarray, np.int64]:
    """Start (ms) of each re-timed test segment, and the segment period (ms)."""
    period = spec.window_len_ms + TEST_SEGMENT_GAP_MS
    return np.arange(n_test, dtype=np.int64) * period, np.int64(period)


def truth_coverage(spec: DatasetSpec, align_ms: np.ndarray) -> tuple[np.ndarray, int]:
    """First global 5 ms bin of each trial's truth rows, and the number of rows."""
    first = (align_ms + spec.window_ms[0] - MARGIN_MS) // BIN_MS
    n_bins = (spec.window_len_ms + spec.forward_ms + 2 * MARGIN_MS) // BIN_MS + 1
    return first, n_bins


def truth_rows(sampled: SampledTrials, member: np.ndarray, first_bin: np.ndarray, n_bins: int, values: np.ndarray
          ) -> np.ndarray:
    """Global bins first_bin .. first_bin + n_bins - 1 of `values` (a SampledTrials array) for
    trials that lie in sampled row `member`."""
    offset = first_bin - sampled.first_bin[member]
    if offset.min() < 0 or (offset + n_bins).max() > values.shape[1]:
        raise AssertionError("truth coverage runs outside the simulated trial")
    return values[member[:, None], offset[:, None] + np.arange(n_bins)]


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


def test_tables(spec: DatasetSpec, layout: UnitLayout, collector: SpikeCollector, n_test: int
                 ) -> tuple[UnitsTable, TrialsTable]:
    starts, _ = test_segments(spec, n_test)
    stops = starts + spec.window_len_ms
    heldin = np.flatnonzero(~layout.heldout)
    units = units_table(layout, collector, heldin, np.stack([starts, stops], axis=1) / 1000.0)
    trials = TrialsTable(
        start_time=starts / 1000.0, stop_time=stops / 1000.0, split=np.full(n_test, "test"),
        columns=(TrialColumn(spec.align_field, "Time of the alignment event (seconds)",
                             (starts - spec.window_ms[0]) / 1000.0),),
    )
    return units, trials


def sample_test_trials(spec: DatasetSpec, latents: np.ndarray, align_local_ms: np.ndarray, readout: Readout,
                        layout: UnitLayout, rng: np.random.Generator) -> tuple[SpikeCollector, TruthBlock]:
    """Place simulated test trials (latents in trial time, alignment event at `align_local_ms`) as
    the re-timed segments of a test file, sample their spikes and keep the truth."""
    n_test = len(latents)
    starts, _ = test_segments(spec, n_test)
    align_file = starts - spec.window_ms[0]
    first_bin, n_bins = truth_coverage(spec, align_file)
    placed = PlacedTrials(
        latents=latents, offset_ms=align_file - align_local_ms,
        span_start_ms=first_bin * BIN_MS, span_stop_ms=(first_bin + n_bins) * BIN_MS,
    )
    sampled = sample_placed(placed, readout, rng)
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



def minimum_jerk(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Position fraction and its derivative (per sample) of a minimum-jerk move over n samples."""
    s = (np.arange(n) + 1) / n
    return 10 * s**3 - 15 * s**4 + 6 * s**5, (30 * s**2 - 60 * s**3 + 30 * s**4) / n
