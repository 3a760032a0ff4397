"""The Area2_Bump look-alike (`synth_area2`).

A continuous session in a few long recording chunks; active reaches to 8 directions and passive
bumps (a force pulse at a random time of the centre hold). A linear latent system (three damped
oscillators, a low-passed hand velocity and a low-passed hand position) is driven by hand
velocity, a motor command leading active reaches, and the bump force itself: an input that
nothing before it predicts. The position signal (proprioception of the limb's posture) holds
each active trial's target through the hold that follows the reach, so the forward window
(500-700 ms after move onset) still differs across conditions and trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from ...core.spec import DatasetSpec
from ...data.nwb_write import BehaviorSeries, ElectrodeArray, SessionInfo, TrialColumn, TrialsTable
from ...data.truth import TruthBlock
from .common import (
    BIN_MS,
    MARGIN_MS,
    ONSET_THRESHOLD,
    GeneratedDataset,
    PlacedTrials,
    SpikeCollector,
    auto_saturation,
    balanced,
    calibrated_readout,
    generator_counts,
    minimum_jerk,
    sample_placed,
    sample_test_trials,
    splits,
    test_tables,
    truth_coverage,
    truth_rows,
    unit_layout,
    units_table,
)

# Bumped whenever the same seed would give different files: stale datasets on disk are regenerated.
# 2: the position signal (forward-window activity).
VERSION = 2

AREA2_DIRECTIONS = 8
_AREA2_MODES_TAU_MS = np.array([40.0, 80.0, 150.0])
_AREA2_MODES_HZ = np.array([4.0, 2.5, 1.0])
_AREA2_VEL_TAU_MS = 20.0
_AREA2_LATENT_DIM = 2 * len(_AREA2_MODES_TAU_MS) + 4
_AREA2_POSTURE_TAU_MS = 50.0
_AREA2_POSTURE_WEIGHT = 0.5
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
_AREA2_LOG_RATE_SD = (0.65, 1.05)
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
    bump = balanced(rng, n, 2).astype(bool)
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
        fraction, rate = minimum_jerk(reach)
        back_at = int(start_ms[i] + plan.length[i]) - 500
        target = _REACH_CM * plan.amplitude[i] * unit[i]
        pos[at:at + reach] += fraction[:, None] * target
        pos[at + reach:back_at] += target
        pos[back_at:back_at + 400] += (1 - minimum_jerk(400)[0])[:, None] * target
        lead = at - _MOTOR_LEAD_MS
        motor[lead:lead + reach] += (rate / rate.max())[:, None] * unit[i]
    pos, bump_force, motor = pos[:session_ms], bump_force[:session_ms], motor[:session_ms]
    vel = np.asarray(np.gradient(pos, axis=0)) * 1000.0
    speed = np.hypot(vel[:, 0], vel[:, 1])
    onset = np.empty(len(start_ms), dtype=np.int64)
    for i in range(len(start_ms)):
        at = int(start_ms[i] + plan.event[i])
        window = speed[at:at + 600]
        onset[i] = plan.event[i] + int(np.argmax(window >= ONSET_THRESHOLD * window.max()))
    return pos, bump_force, motor, onset


def _area2_latents(pos: np.ndarray, vel: np.ndarray, bump_force: np.ndarray, motor: np.ndarray,
                   input_gain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Linear latent dynamics driven by [velocity, bump force, motor command] (time, 6), plus
    slow input noise: activity the kinematics do not explain."""
    inputs = np.concatenate([vel / _TYPICAL_SPEED_CM_S, bump_force / _BUMP_N, motor], axis=1)
    pole = np.exp(-1.0 / _INPUT_NOISE_TAU_MS)
    noise = lfilter([1.0 - pole], [1.0, -pole], rng.standard_normal(inputs.shape), axis=0)
    inputs += noise * (_INPUT_NOISE / noise.std())
    responses = []
    for k, (tau, hz) in enumerate(zip(_AREA2_MODES_TAU_MS, _AREA2_MODES_HZ)):
        pole = np.exp(-1.0 / tau + 2j * np.pi * hz / 1000.0)
        drive = inputs @ input_gain[k]
        # Scaled by the decay per ms, so that slow and fast modes respond with similar amplitude.
        responses.append(lfilter([1.0 - abs(pole)], [1.0, -pole], drive))
    modes = np.stack(responses, axis=1)
    pole = np.exp(-1.0 / _AREA2_VEL_TAU_MS)
    smooth_vel = lfilter([1.0 - pole], [1.0, -pole], vel / _TYPICAL_SPEED_CM_S, axis=0)
    pole = np.exp(-1.0 / _AREA2_POSTURE_TAU_MS)
    posture = lfilter([1.0 - pole], [1.0, -pole], pos / _REACH_CM, axis=0)
    return np.concatenate([modes.real, modes.imag, smooth_vel, posture], axis=1).astype(np.float32)


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
        latents[low:high] = _area2_latents(pos[low:high], vel[low:high], bump_force[low:high], motor[low:high], input_gain, rng)
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


def generate_area2(spec: DatasetSpec, seed: int) -> GeneratedDataset:
    counts = generator_counts(spec)
    n_train, n_val, n_test = counts.train_trials, counts.val_trials, counts.test_trials
    rng = np.random.default_rng(seed)
    layout = unit_layout(rng, counts.heldin_units, counts.heldout_units, n_arrays=1, electrodes_per_array=96,
                          id_prefix=False)
    n_units = len(layout.ids)
    input_gain = (rng.normal(size=(3, 6)) + 1j * rng.normal(size=(3, 6))) / np.sqrt(6)
    n_none = max(2, round(0.08 * (n_train + n_val)))
    n_trials = n_train + n_val + n_none
    split = splits(rng, n_train, n_val, n_none)
    plan = _area2_plan(rng, n_trials, balanced(rng, n_trials, AREA2_DIRECTIONS))
    session = _area2_session(rng, plan, _CHUNKS, input_gain)
    result = np.where(split == "none", rng.choice(np.array(["A", "I", "F"]), n_trials), "R")
    observed = np.concatenate([session.latents[low:high:BIN_MS] for low, high in session.chunk_spans])
    feature_scale = np.ones((n_units, _AREA2_LATENT_DIM))
    feature_scale[:, -2:] = _AREA2_POSTURE_WEIGHT
    readout = calibrated_readout(rng, feature_scale, observed, _AREA2_LOG_RATE_SD, _AREA2_MEAN_HZ,
                              auto_saturation(observed))

    spans = session.chunk_spans
    chunk_latents = np.zeros((_CHUNKS, int((spans[:, 1] - spans[:, 0]).max()), _AREA2_LATENT_DIM), np.float32)
    for c, (low, high) in enumerate(spans):
        chunk_latents[c, :high - low] = session.latents[low:high]
    sampled = sample_placed(PlacedTrials(chunk_latents, spans[:, 0], spans[:, 0], spans[:, 1]), readout, rng)
    collector = SpikeCollector(n_units)
    collector.add(sampled.spike_unit, sampled.spike_sample)
    first, n_bins = truth_coverage(spec, session.start_ms + session.move_onset)
    train_truth = TruthBlock(
        rates=truth_rows(sampled, session.chunk, first, n_bins, sampled.rates), first_bin=first, unit_ids=layout.ids,
        latents=truth_rows(sampled, session.chunk, first, n_bins, sampled.latents),
    )
    columns = _area2_columns(plan, session.start_ms, session.move_onset, result)
    train_units = units_table(layout, collector, np.arange(n_units), spans / 1000.0)
    train_trials = TrialsTable(session.start_ms / 1000.0, session.stop_ms / 1000.0, split, columns)
    behavior = (
        BehaviorSeries("hand_pos", session.hand_pos, ("x", "y"), "cm", "Hand position"),
        BehaviorSeries("hand_vel", session.hand_vel, ("x", "y"), "cm/s", "Hand velocity"),
        BehaviorSeries("force", session.force, ("x", "y", "z", "mx", "my", "mz"), "N",
                       "Forces and torques at the manipulandum handle"),
    )

    # Test trials: a session of their own, each window cut out and re-timed.
    test_plan = _area2_plan(rng, n_test, balanced(rng, n_test, AREA2_DIRECTIONS))
    test_session = _area2_session(rng, test_plan, 1, input_gain)
    align = test_session.start_ms + test_session.move_onset
    before = -spec.window_ms[0] + MARGIN_MS + BIN_MS
    after = spec.window_ms[1] + spec.forward_ms + MARGIN_MS + BIN_MS
    cut = align[:, None] + np.arange(-before, after)[None, :]
    test_collector, test_truth = sample_test_trials(
        spec, test_session.latents[cut], np.full(n_test, before), readout, layout, rng
    )
    test_units, test_trials = test_tables(spec, layout, test_collector, n_test)
    info = SessionInfo(
        session_id="area2", subject_id="Synth",
        session_description=f"Synthetic Area2_Bump-like session generated by nlb_suite, seed {seed}",
        experiment_description="Center-out reaching with unexpected bumps during the centre hold (synthetic)",
        keywords=("somatosensory cortex", "area 2", "proprioception", "synthetic", "Neural Latents Benchmark"),
    )
    arrays = (ElectrodeArray("area2", 96, "96-electrode array in area 2 (synthetic)", "Brodmann area 2"),)
    return GeneratedDataset(info, arrays, train_units, train_trials, behavior, test_units, test_trials,
                            train_truth, test_truth)
