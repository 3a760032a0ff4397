"""An MC_RTT look-alike (`synth_rtt`): continuous, self-paced reaches to random targets.

The hand moves from target to target with minimum-jerk reaches of 300-700 ms, each followed by a
100-300 ms dwell, targets drawn uniformly in a 20 x 20 cm workspace. The units read a latent
state made of the hand's velocity and speed `LEAD_MS` ahead (motor cortex leads the movement:
the benchmark's behaviour lag is 140 ms), its position, and two slow Ornstein-Uhlenbeck latents
that the hand does not show. The behaviour `finger_vel` (cm/s, 1 kHz) is the hand's velocity plus
a little sensor noise. As in the real session the recording is one continuous stretch, cut into
600 ms "trials" laid end to end (`start_time` is the alignment event, windows may overlap), so
the forward window and the lagged behaviour of one trial run into the next. Test trials are
simulated apart and written as re-timed segments (held-in units, no behaviour), like every test
file here.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from ...core.spec import DatasetSpec
from ...data.nwb_write import BehaviorSeries, ElectrodeArray, SessionInfo, TrialsTable
from ...data.truth import TruthBlock
from .common import (
    BIN_MS,
    MARGIN_MS,
    GeneratedDataset,
    PlacedTrials,
    SpikeCollector,
    SyntheticDataError,
    auto_saturation,
    calibrated_readout,
    generator_counts,
    minimum_jerk,
    sample_placed,
    sample_test_trials,
    splits,
    test_segments,
    truth_coverage,
    truth_rows,
    unit_layout,
    units_table,
)

# Bumped whenever the same seed would give different files: stale datasets on disk are regenerated.
VERSION = 1

LEAD_MS = 140  # the units lead the hand by the benchmark's behaviour lag
_REACH_MS = (300, 700)
_DWELL_MS = (100, 300)
_WORKSPACE_CM = 10.0  # targets within +-10 cm
_HEAD_MS = 200  # recording before the first trial
_TAIL_MS = 1200  # recording after the last trial (forward window, lagged behaviour, margins)
_NOISE_TAU_MS = 300.0
_SENSOR_NOISE = 0.3  # cm/s
_TEST_SIM_MS = 1100  # each test trial's own simulated stretch; its window starts at _TEST_ALIGN_MS
_TEST_ALIGN_MS = 100
_LOG_RATE_SD = (0.5, 0.9)
_MEAN_HZ = (4.0, 30.0)


def reaching(rng: np.random.Generator, n_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Hand position (cm) and velocity (cm/s) at 1 kHz over `n_ms` ms of random-target reaching."""
    position = np.zeros((n_ms, 2))
    velocity = np.zeros((n_ms, 2))
    here = rng.uniform(-_WORKSPACE_CM, _WORKSPACE_CM, 2)
    t = 0
    while t < n_ms:
        target = rng.uniform(-_WORKSPACE_CM, _WORKSPACE_CM, 2)
        n_reach = int(rng.integers(_REACH_MS[0], _REACH_MS[1] + 1))
        n_dwell = int(rng.integers(_DWELL_MS[0], _DWELL_MS[1] + 1))
        fraction, rate = minimum_jerk(n_reach)
        stop = min(t + n_reach, n_ms)
        position[t:stop] = here + fraction[: stop - t, None] * (target - here)
        velocity[t:stop] = rate[: stop - t, None] * (target - here) * 1000.0
        here = target
        dwell_stop = min(stop + n_dwell, n_ms)
        position[stop:dwell_stop] = here
        t = dwell_stop
    return position, velocity


def _latents(rng: np.random.Generator, n_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """(latents (n_ms, 7) float32, hand velocity (n_ms, 2)): latent ms t reads the hand at t + LEAD_MS."""
    position, velocity = reaching(rng, n_ms + LEAD_MS)
    ahead = velocity[LEAD_MS:]
    speed = np.linalg.norm(ahead, axis=1, keepdims=True)
    pole = np.exp(-1.0 / _NOISE_TAU_MS)
    slow = lfilter([np.sqrt(1 - pole**2)], [1.0, -pole], rng.standard_normal((n_ms, 2)), axis=0)
    features = np.hstack([ahead, speed, position[LEAD_MS:], slow])
    return features.astype(np.float32), velocity[:n_ms]


def _standardise(latents: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return ((latents - mean) / sd).astype(np.float32)


def generate_rtt(spec: DatasetSpec, seed: int) -> GeneratedDataset:
    rng = np.random.default_rng(seed)
    counts = generator_counts(spec)
    if spec.window_ms[0] < -_HEAD_MS + MARGIN_MS + BIN_MS:
        raise SyntheticDataError(f"dataset {spec.name!r}: the window {spec.window_ms} ms starts before the recording")
    n_trials = counts.train_trials + counts.val_trials
    trial_ms = spec.window_len_ms
    layout = unit_layout(rng, counts.heldin_units, counts.heldout_units, n_arrays=1, electrodes_per_array=96,
                         id_prefix=False)
    n_units = len(layout.ids)
    session_ms = _HEAD_MS + n_trials * trial_ms + _TAIL_MS
    raw, velocity = _latents(rng, session_ms)
    mean, sd = raw.mean(axis=0), raw.std(axis=0)
    latents = _standardise(raw, mean, sd)
    reference = latents[::BIN_MS]
    saturation = auto_saturation(reference)
    readout = calibrated_readout(rng, np.ones((n_units, latents.shape[1])), reference, _LOG_RATE_SD, _MEAN_HZ,
                                 saturation)

    start_ms = _HEAD_MS + np.arange(n_trials, dtype=np.int64) * trial_ms
    split = splits(rng, counts.train_trials, counts.val_trials, 0)
    sampled = sample_placed(PlacedTrials(latents[None], np.zeros(1, np.int64), np.zeros(1, np.int64),
                                         np.array([session_ms], np.int64)), readout, rng)
    collector = SpikeCollector(n_units)
    collector.add(sampled.spike_unit, sampled.spike_sample)
    truth_first, n_bins = truth_coverage(spec, start_ms)
    member = np.zeros(n_trials, dtype=np.int64)
    train_truth = TruthBlock(truth_rows(sampled, member, truth_first, n_bins, sampled.rates), truth_first, layout.ids,
                             truth_rows(sampled, member, truth_first, n_bins, sampled.latents))
    obs = np.array([[0.0, session_ms / 1000.0]])
    train_units = units_table(layout, collector, np.arange(n_units), obs)
    train_trials = TrialsTable(start_ms / 1000.0, (start_ms + trial_ms) / 1000.0, split)
    finger_vel = velocity + rng.normal(0.0, _SENSOR_NOISE, velocity.shape)
    behavior = (BehaviorSeries("finger_vel", finger_vel, ("x", "y"), "cm/s",
                               f"Finger velocity; the units lead it by {LEAD_MS} ms"),)

    # Test trials: stretches of their own, each trial's window at _TEST_ALIGN_MS of its stretch.
    n_test = counts.test_trials
    test_raw, _ = _latents(rng, n_test * _TEST_SIM_MS)
    test_latents = _standardise(test_raw, mean, sd).reshape(n_test, _TEST_SIM_MS, -1)
    test_collector, test_truth = sample_test_trials(spec, test_latents, np.full(n_test, _TEST_ALIGN_MS), readout,
                                                    layout, rng)
    starts, _ = test_segments(spec, n_test)
    stops = starts + trial_ms
    test_units = units_table(layout, test_collector, np.flatnonzero(~layout.heldout),
                             np.stack([starts, stops], axis=1) / 1000.0)
    test_trials = TrialsTable(starts / 1000.0, stops / 1000.0, np.full(n_test, "test"))
    size = dict(spec.generator_args).get("size", "medium")
    session = SessionInfo(
        session_id=f"rtt-{size}", subject_id="Synth",
        session_description=f"Synthetic random-target reaching, {size} size, generated by nlb_suite, seed {seed}",
        experiment_description="An MC_RTT look-alike: continuous self-paced reaching with known firing rates",
        keywords=("random target task", "synthetic", "Neural Latents Benchmark"),
    )
    array = ElectrodeArray("M1", 96, "96-electrode array in M1 (synthetic)", "Primary motor cortex")
    return GeneratedDataset(session, (array,), train_units, train_trials, behavior, test_units, test_trials,
                            train_truth, test_truth)
