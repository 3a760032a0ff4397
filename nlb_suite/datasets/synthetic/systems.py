"""Trial-structured dynamical systems as NLB datasets: what the chaotic RNN (`chaotic_rnn.py`) and
the Lorenz attractor (`lorenz.py`) of the LFADS papers share.

Each trial starts at an initial condition, a condition's centre plus trial noise (conditions are
initial-condition clusters, the `condition` column; PSTHs are condition means), and the system
runs freely from there. In trial time (ms from the trial start) the alignment event
`onset_time` is `ONSET_MS` in; the evaluation window, the forward window and the lagged
behaviour window follow it, and the trial ends `TAIL_MS` after the last of them, so the dynamics
run on, unchanged, through the forward window. Units read the state through a calibrated
readout (`common.calibrated_readout`); the behaviour `hand_vel` is a lagged linear readout of
the same features plus slow noise that the units do not see. Trials run back to back with
200-400 ms gaps and each trial's [start, stop] is an observation interval, as in the MC_Maze
files; test trials are re-timed segments, as in every test file here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.signal import lfilter

from ...core.spec import DatasetSpec
from ...data.nwb_write import BehaviorSeries, ElectrodeArray, SessionInfo, TrialColumn, TrialsTable
from ...data.truth import TruthBlock
from .common import (
    BIN_MS,
    CHUNK_TRIALS,
    MARGIN_MS,
    GeneratedDataset,
    PlacedTrials,
    SpikeCollector,
    SyntheticDataError,
    balanced,
    calibrated_readout,
    generator_counts,
    sample_placed,
    sample_test_trials,
    saturate,
    splits,
    test_tables,
    truth_coverage,
    truth_rows,
    unit_layout,
    units_table,
)

ONSET_FIELD = "onset_time"
CONDITION_FIELD = "condition"
ONSET_MS = 100  # the alignment event, after the trial's initial condition
TAIL_MS = 50
_GAP_MS = (200, 400)
_SESSION_START_MS = 1000
_CALIBRATION_TRIALS = 500
_BEHAVIOR_SD = 1.0  # the behaviour readout's standard deviation (arbitrary units)
_BEHAVIOR_NOISE = 0.2  # sd of the noise the units do not see, relative to the readout's
_BEHAVIOR_NOISE_TAU_MS = 40.0


@dataclass(frozen=True)
class TrialEvent:
    """A per-trial time that a system adds to the trials table, in ms from the trial start (NaN
    on trials without the event)."""

    name: str
    description: str
    local_ms: np.ndarray


@dataclass(frozen=True)
class SystemRun:
    """Simulated trials: `latents[i, t]` is trial i's state t ms after its start (float32)."""

    latents: np.ndarray
    events: tuple[TrialEvent, ...] = ()
    flags: tuple[TrialColumn, ...] = ()


class TrialSystem(Protocol):
    """One dynamical system, fixed for a dataset (drawn from its seed)."""

    @property
    def n_conditions(self) -> int: ...

    @property
    def saturation(self) -> np.ndarray | None:
        """How the units and the behaviour read the latents (see `common.Readout`)."""

    @property
    def log_rate_sd(self) -> tuple[float, float]: ...

    @property
    def mean_hz(self) -> tuple[float, float]: ...

    def simulate(self, condition: np.ndarray, n_ms: int, rng: np.random.Generator) -> SystemRun:
        """`n_ms` ms of one trial per entry of `condition` (condition indices)."""


def trial_length_ms(spec: DatasetSpec) -> int:
    """ms per trial: up to `TAIL_MS` past the truth's coverage (the forward window plus margins)
    and past the lagged behaviour window."""
    start, stop = spec.window_ms
    if ONSET_MS + min(start, start + spec.behavior_lag_ms) - MARGIN_MS - BIN_MS < 0:
        raise SyntheticDataError(f"dataset {spec.name!r}: the window {spec.window_ms} ms (behaviour lag "
                                 f"{spec.behavior_lag_ms} ms) starts too early for a trial that begins "
                                 f"{ONSET_MS} ms before its {ONSET_FIELD}")
    covered = max(stop + spec.forward_ms + MARGIN_MS + BIN_MS, stop + spec.behavior_lag_ms)
    return ONSET_MS + covered + TAIL_MS


@dataclass(frozen=True)
class BehaviorReadout:
    """behaviour = (features(latents `lag_ms` earlier) - mean) @ weights; before the trial's
    start the state is taken to be its initial one."""

    weights: np.ndarray  # (latent_dim, 2)
    mean: np.ndarray  # (latent_dim,)
    saturation: np.ndarray | None
    lag_ms: int

    def __call__(self, latents: np.ndarray) -> np.ndarray:
        features = saturate(latents, self.saturation) - self.mean
        lagged = np.concatenate([np.repeat(features[:, :1], self.lag_ms, axis=1),
                                 features[:, :features.shape[1] - self.lag_ms]], axis=1)
        return lagged @ self.weights


def _behavior_readout(rng: np.random.Generator, reference: np.ndarray, saturation: np.ndarray | None,
                      lag_ms: int) -> BehaviorReadout:
    features = saturate(reference, saturation)
    mean = features.mean(axis=0)
    weights = rng.normal(size=(reference.shape[1], 2))
    weights *= _BEHAVIOR_SD / ((features - mean) @ weights).std(axis=0)
    return BehaviorReadout(weights.astype(np.float32), mean.astype(np.float32), saturation, lag_ms)


def _slow_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    pole = np.exp(-1.0 / _BEHAVIOR_NOISE_TAU_MS)
    noise = lfilter([1.0 - pole], [1.0, -pole], rng.standard_normal(shape), axis=1)
    return noise * (_BEHAVIOR_NOISE * _BEHAVIOR_SD / noise.std())


def _columns(spec: DatasetSpec, run: SystemRun, condition: np.ndarray, start_ms: np.ndarray
             ) -> tuple[TrialColumn, ...]:
    onset = TrialColumn(ONSET_FIELD, f"Alignment event, {ONSET_MS} ms after the trial's initial condition",
                        (start_ms + ONSET_MS) / 1000.0)
    events = tuple(TrialColumn(e.name, e.description, (start_ms + e.local_ms) / 1000.0) for e in run.events)
    return (TrialColumn(CONDITION_FIELD, "Initial-condition cluster of the trial", condition), onset,
            *events, *run.flags)


def generate_system(spec: DatasetSpec, rng: np.random.Generator, system: TrialSystem, session: SessionInfo,
                    array: ElectrodeArray) -> GeneratedDataset:
    """A dataset of `system`'s trials in the layout of the MC_Maze files (see the module)."""
    counts = generator_counts(spec)
    n_train, n_val, n_test = counts.train_trials, counts.val_trials, counts.test_trials
    layout = unit_layout(rng, counts.heldin_units, counts.heldout_units, n_arrays=1,
                         electrodes_per_array=array.n_electrodes, id_prefix=False)
    n_units = len(layout.ids)
    n_ms = trial_length_ms(spec)

    # The readouts are calibrated on the part of the trials that is scored: window, forward
    # window and margins.
    calibration = system.simulate(balanced(rng, _CALIBRATION_TRIALS, system.n_conditions), n_ms, rng)
    scored = slice(ONSET_MS + spec.window_ms[0] - MARGIN_MS,
                   ONSET_MS + spec.window_ms[1] + spec.forward_ms + MARGIN_MS, BIN_MS)
    reference = calibration.latents[:, scored].reshape(-1, calibration.latents.shape[-1])
    readout = calibrated_readout(rng, np.ones((n_units, reference.shape[1])), reference, system.log_rate_sd,
                                 system.mean_hz, system.saturation)
    behavior_readout = _behavior_readout(rng, reference, system.saturation, spec.behavior_lag_ms)

    n_trials = n_train + n_val
    split = splits(rng, n_train, n_val, 0)
    condition = balanced(rng, n_trials, system.n_conditions)
    gaps = rng.integers(_GAP_MS[0], _GAP_MS[1] + 1, n_trials)
    start_ms = _SESSION_START_MS + np.concatenate([[0], np.cumsum(n_ms + gaps)[:-1]])
    stop_ms = start_ms + n_ms
    run = system.simulate(condition, n_ms, rng)
    behavior = behavior_readout(run.latents) + _slow_noise(rng, (n_trials, n_ms, 2))
    hand_vel = np.zeros((int(stop_ms[-1]), 2))
    for i in range(n_trials):
        hand_vel[start_ms[i]:stop_ms[i]] = behavior[i]

    collector = SpikeCollector(n_units)
    truth_first, n_bins = truth_coverage(spec, start_ms + ONSET_MS)
    truth_rates, truth_latents = [], []
    for low in range(0, n_trials, CHUNK_TRIALS):
        rows = np.arange(low, min(low + CHUNK_TRIALS, n_trials))
        sampled = sample_placed(PlacedTrials(run.latents[rows], start_ms[rows], start_ms[rows], stop_ms[rows]),
                                readout, rng)
        collector.add(sampled.spike_unit, sampled.spike_sample)
        member = np.arange(len(rows))
        truth_rates.append(truth_rows(sampled, member, truth_first[rows], n_bins, sampled.rates))
        truth_latents.append(truth_rows(sampled, member, truth_first[rows], n_bins, sampled.latents))
    train_truth = TruthBlock(np.concatenate(truth_rates), truth_first, layout.ids, np.concatenate(truth_latents))
    obs = np.stack([start_ms, stop_ms], axis=1) / 1000.0
    train_units = units_table(layout, collector, np.arange(n_units), obs)
    train_trials = TrialsTable(start_ms / 1000.0, stop_ms / 1000.0, split, _columns(spec, run, condition, start_ms))
    behavior_series = (BehaviorSeries(
        "hand_vel", hand_vel, ("x", "y"), "a.u.",
        f"Lagged linear readout of the latent state ({spec.behavior_lag_ms} ms), plus slow noise",
    ),)

    test_run = system.simulate(balanced(rng, n_test, system.n_conditions), n_ms, rng)
    test_collector, test_truth = sample_test_trials(spec, test_run.latents, np.full(n_test, ONSET_MS), readout,
                                                    layout, rng)
    test_units, test_trials = test_tables(spec, layout, test_collector, n_test)
    return GeneratedDataset(session, (array,), train_units, train_trials, behavior_series, test_units, test_trials,
                            train_truth, test_truth)
