"""The MC_Maze look-alike (`synth_maze` and its sizes).

Delayed centre-out reaches, 27 conditions (trial_type 1..9 picks the target, trial_version 0..2
the path around a barrier). A 10-dimensional latent state: three rotational planes z_i
(complex), a condition-invariant movement signal, a preparatory signal and a 2-D posture
signal. After target onset each z_i relaxes to a condition's preparatory value (plus trial
noise); at a trigger a reaction time after the go cue the planes rotate and decay, with a
frequency that grows with amplitude (the nonlinearity). Hand velocity is a linear readout of
the rotating components `behavior_lag_ms` earlier; move onset is where hand speed first passes
15 % of its peak. The posture signal is the displacement the rotating components have commanded
since the trigger: it carries each trial's reach endpoint through the hold that follows, so the
forward window (450-650 ms after move onset, the hand at the target) still differs across
conditions and trials, as in the real recordings. Trials run back to back with 200-400 ms gaps
(the hand returns to the centre); each trial's [start, stop] is an observation interval.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.signal import lfilter

from ...core.spec import DatasetSpec
from ...data.nwb_write import BehaviorSeries, ElectrodeArray, Ragged, SessionInfo, TrialColumn, TrialsTable
from ...data.truth import TruthBlock
from .common import (
    BIN_MS,
    CHUNK_TRIALS,
    ONSET_THRESHOLD,
    GeneratedDataset,
    PlacedTrials,
    Readout,
    SpikeCollector,
    UnitLayout,
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
# 2: the posture signal (forward-window activity).
VERSION = 2

MAZE_TYPES = 9
MAZE_VERSIONS = 3
_MAZE_PLANES = 3
_MAZE_LATENT_DIM = 2 * _MAZE_PLANES + 4
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
_MAZE_LOG_RATE_SD = (0.85, 1.25)
_CALIBRATION_TRIALS = 128
_MAZE_MEAN_HZ = (5.0, 40.0)
_CIS_TAU_MS = 40.0
_CIS_DURATION_MS = 300
_PREP_SIGNAL_TAU_MS = 150.0
_PREP_AMPLITUDE = 1.4  # typical |preparatory state|
_REACH_MM = (80.0, 130.0)
_POSTURE_MM = 100.0  # hand displacement that moves the posture latents by one unit
_POSTURE_WEIGHT = 0.5


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
        latents[:, t, 2 * _MAZE_PLANES] = cis
        latents[:, t, 2 * _MAZE_PLANES + 1] = prep_signal
    # Posture: the displacement the rotating components command since the trigger, in units of a
    # typical reach. It persists while the hand holds at the target.
    moving = np.arange(n_time)[None, :] >= plan.trigger[:, None]
    command = (latents[..., _MAZE_PLANES:2 * _MAZE_PLANES] @ dynamics.directions.astype(np.float32)) * moving[..., None]
    latents[..., -2:] = np.cumsum(command, axis=1) * (dynamics.velocity_gain / _POSTURE_MM)
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
    move_onset = np.argmax(after & in_trial & (speed >= ONSET_THRESHOLD * peak[:, None]), axis=1)
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
        np.broadcast_to(move_weight * _POSTURE_WEIGHT, (n_units, 2)),
    ], axis=1)
    # Calibrated on trials like the real ones, noise included, so that no unit leans on a
    # direction that only trial-to-trial variability explores.
    # Only the evaluation windows (plus margins) count: that is where rates are scored.
    plan = _maze_plan(rng, balanced(rng, _CALIBRATION_TRIALS, MAZE_TYPES * MAZE_VERSIONS))
    sim = _simulate_maze(model.dynamics, plan, rng)
    around_onset = sim.move_onset[:, None] + np.arange(-300, 701, BIN_MS)[None, :]
    reference = np.take_along_axis(sim.latents, around_onset[..., None], axis=1).reshape(-1, _MAZE_LATENT_DIM)
    return calibrated_readout(rng, feature_scale, reference, _MAZE_LOG_RATE_SD, _MAZE_MEAN_HZ,
                              auto_saturation(reference))


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
        fraction, rate = minimum_jerk(int(high - low))
        end = hand_pos[low - 1]
        hand_pos[low:high] = end * (1 - fraction)[:, None]
        hand_vel[low:high] = -end * rate[:, None] * 1000.0


def generate_maze(spec: DatasetSpec, seed: int) -> GeneratedDataset:
    counts = generator_counts(spec)
    n_train, n_val, n_test = counts.train_trials, counts.val_trials, counts.test_trials
    rng = np.random.default_rng(seed)
    layout = unit_layout(rng, counts.heldin_units, counts.heldout_units, n_arrays=2, electrodes_per_array=96,
                          id_prefix=True)
    model = _maze_model(rng, spec.behavior_lag_ms)
    readout = _maze_readout(rng, model, layout)
    n_conditions = MAZE_TYPES * MAZE_VERSIONS
    n_none = max(2, round(0.03 * (n_train + n_val)))
    n_trials = n_train + n_val + n_none
    split = splits(rng, n_train, n_val, n_none)
    plan = _maze_plan(rng, balanced(rng, n_trials, n_conditions))
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
        sampled = sample_placed(placed, readout, rng)
        collector.add(sampled.spike_unit, sampled.spike_sample)
        first, n_bins = truth_coverage(spec, start_ms[rows] + sim.move_onset)
        truth_first[rows] = first
        member = np.arange(len(rows))
        truth_rates.append(truth_rows(sampled, member, first, n_bins, sampled.rates))
        truth_latents.append(truth_rows(sampled, member, first, n_bins, sampled.latents))
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
    train_units = units_table(layout, collector, np.arange(len(layout.ids)), obs)
    train_trials = TrialsTable(start_ms / 1000.0, stop_ms / 1000.0, split, columns)
    behavior = (
        BehaviorSeries("hand_pos", hand_pos, ("x", "y"), "mm", "Hand position"),
        BehaviorSeries("hand_vel", hand_vel, ("x", "y"), "mm/s", "Hand velocity"),
        BehaviorSeries("cursor_pos", hand_pos.copy(), ("x", "y"), "mm", "Cursor position (follows the hand)"),
        BehaviorSeries("eye_pos", eye_pos, ("x", "y"), "mm", "Eye position on the screen"),
    )

    test_plan = _maze_plan(rng, balanced(rng, n_test, n_conditions))
    test_sim = _simulate_maze(model.dynamics, test_plan, rng)
    test_collector, test_truth = sample_test_trials(spec, test_sim.latents, test_sim.move_onset, readout,
                                                     layout, rng)
    test_units, test_trials = test_tables(spec, layout, test_collector, n_test)
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
