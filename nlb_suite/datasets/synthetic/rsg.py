"""A DMFC_RSG look-alike (`synth_rsg`): ready-set-go time-interval reproduction.

Each trial shows two flashes, ready and set, `ts` ms apart (short prior 480-800 ms, long prior
800-1200 ms, five values each), and the animal produces `tp` after set with an eye or hand
movement (`is_eye`) towards one of two directions (`theta` 0 or 180). Between set and go a latent
ramp rises from 0 to 1 at a speed drawn around 1/ts; go is when it reaches 1, so tp = 1/speed and
a faster ramp (faster neural change) means a shorter tp, which is what the benchmark's tp-corr
measures. The units also read a measurement ramp from ready to set, the context (effector,
direction, prior), a movement burst after go and one slow latent the task does not show. A few
trials (`is_outlier`) produce a far too early go. Trials run back to back with 200-400 ms gaps in
one observed stretch; trial columns as in the real file: ready_time, set_time, go_time, is_eye,
theta, is_short, ts, tp (ms) and is_outlier. Test trials are re-timed go-aligned 1.5 s segments
(held-in units, no tp), like every test file here.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from ...core.spec import DatasetSpec
from ...data.nwb_write import ElectrodeArray, SessionInfo, TrialColumn, TrialsTable
from ...data.truth import TruthBlock
from .common import (
    BIN_MS,
    CHUNK_TRIALS,
    MARGIN_MS,
    GeneratedDataset,
    PlacedTrials,
    SpikeCollector,
    SyntheticDataError,
    auto_saturation,
    balanced,
    calibrated_readout,
    generator_counts,
    sample_placed,
    sample_test_trials,
    splits,
    test_segments,
    truth_rows,
    unit_layout,
    units_table,
)

# Bumped whenever the same seed would give different files: stale datasets on disk are regenerated.
VERSION = 1

SHORT_TS = (480, 560, 640, 720, 800)
LONG_TS = (800, 900, 1000, 1100, 1200)
SPEED_SD = 0.08  # trial-to-trial spread of the ramp speed, relative to 1/ts
TP_LIMITS = (0.7, 1.3)  # tp within these multiples of ts, and below _TP_MAX_MS
_TP_MAX_MS = 1400
OUTLIER_FRACTION = 0.03
GO_MS = 3100  # go, in trial time: room for the longest ready-set-go and the 1.5 s window before it
_AFTER_GO_MS = 700  # jitter (300 ms), forward window, margins
_GAP_MS = (200, 400)
_SESSION_START_MS = 500
_BURST_MS = 120.0
_SLOW_TAU_MS = 400.0
_LOG_RATE_SD = (0.5, 0.9)
_MEAN_HZ = (4.0, 25.0)


def _conditions(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    combos = [(eye, theta, short, ts) for eye in (0, 1) for theta in (0.0, 180.0) for short in (1, 0)
              for ts in (SHORT_TS if short else LONG_TS)]
    chosen = np.array(combos, dtype=float)[balanced(rng, n, len(combos))]
    return {"is_eye": chosen[:, 0].astype(bool), "theta": chosen[:, 1], "is_short": chosen[:, 2].astype(bool),
            "ts": chosen[:, 3]}


def _intervals(rng: np.random.Generator, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tp in whole ms, outlier flags): tp = 1 / ramp speed; outliers go at 0.4-0.6 ts."""
    speed = (1.0 / ts) * (1.0 + SPEED_SD * rng.standard_normal(len(ts)))
    tp = np.clip(np.round(1.0 / speed), np.ceil(TP_LIMITS[0] * ts), np.minimum(TP_LIMITS[1] * ts, _TP_MAX_MS))
    outlier = rng.random(len(ts)) < OUTLIER_FRACTION
    tp = np.where(outlier, np.round(ts * rng.uniform(0.4, 0.6, len(ts))), tp)
    return tp, outlier


def _simulate(rng: np.random.Generator, task: dict[str, np.ndarray], tp: np.ndarray, n_ms: int) -> np.ndarray:
    """Latents (trials, n_ms, 8) in trial time, go at GO_MS."""
    n = len(tp)
    t = np.arange(n_ms)[None, :].astype(float)
    go = float(GO_MS)
    set_ms = go - tp[:, None]
    ready = set_ms - task["ts"][:, None]
    measure = np.clip((t - ready) / 1000.0, 0.0, None) * (t < set_ms)
    ramp = np.clip((t - set_ms) / tp[:, None], 0.0, 1.0) * (t <= go) + (t > go) * np.exp(-(t - go) / 150.0)
    burst = np.exp(-0.5 * ((t - go - _BURST_MS) / 60.0) ** 2)
    direction = np.where(task["theta"] == 0.0, 1.0, -1.0)[:, None]
    eye = np.where(task["is_eye"], 1.0, -1.0)[:, None]
    prior = np.where(task["is_short"], 0.5, -0.5)[:, None] * (t >= ready)
    pole = np.exp(-1.0 / _SLOW_TAU_MS)
    slow = lfilter([np.sqrt(1 - pole**2)], [1.0, -pole], rng.standard_normal((n, n_ms)), axis=1)
    ones = np.ones_like(t)
    features = [measure, ramp, ramp * eye, burst * direction, burst * eye, eye * ones, prior, slow]
    return np.stack([np.broadcast_to(f, (n, n_ms)) for f in features], axis=-1).astype(np.float32)


def generate_rsg(spec: DatasetSpec, seed: int) -> GeneratedDataset:
    rng = np.random.default_rng(seed)
    counts = generator_counts(spec)
    start, stop = spec.window_ms
    if GO_MS + start - spec.jitter_max_ms < MARGIN_MS + BIN_MS or stop > 0:
        raise SyntheticDataError(f"dataset {spec.name!r}: window {spec.window_ms} ms does not fit the trial layout")
    n_trials = counts.train_trials + counts.val_trials
    layout = unit_layout(rng, counts.heldin_units, counts.heldout_units, n_arrays=1, electrodes_per_array=32,
                         id_prefix=False)
    n_units = len(layout.ids)
    n_ms = GO_MS + _AFTER_GO_MS

    calibration_task = _conditions(rng, 200)
    calibration_tp, _ = _intervals(rng, calibration_task["ts"])
    calibration = _simulate(rng, calibration_task, calibration_tp, n_ms)
    reference = calibration[:, GO_MS + start - MARGIN_MS: GO_MS + spec.forward_ms + MARGIN_MS: BIN_MS]
    reference = reference.reshape(-1, reference.shape[-1])
    mean, sd = reference.mean(axis=0), reference.std(axis=0) + 1e-6
    saturation = auto_saturation((reference - mean) / sd)
    readout = calibrated_readout(rng, np.ones((n_units, reference.shape[1])), (reference - mean) / sd, _LOG_RATE_SD,
                                 _MEAN_HZ, saturation)

    task = _conditions(rng, n_trials)
    tp, outlier = _intervals(rng, task["ts"])
    split = splits(rng, counts.train_trials, counts.val_trials, 0)
    gaps = rng.integers(_GAP_MS[0], _GAP_MS[1] + 1, n_trials)
    start_ms = _SESSION_START_MS + np.concatenate([[0], np.cumsum(n_ms + gaps)[:-1]])
    stop_ms = start_ms + n_ms
    latents = (_simulate(rng, task, tp, n_ms) - mean) / sd

    # The truth covers every window the jitter can make: from the window's start to the forward
    # window after a window shifted by the largest jitter, with margins.
    go_ms = start_ms + GO_MS
    truth_first = (go_ms + start - MARGIN_MS) // BIN_MS
    n_bins = (stop - start + spec.jitter_max_ms + spec.forward_ms + 2 * MARGIN_MS) // BIN_MS + 1
    collector = SpikeCollector(n_units)
    truth_rates, truth_latents = [], []
    for low in range(0, n_trials, CHUNK_TRIALS):
        rows = np.arange(low, min(low + CHUNK_TRIALS, n_trials))
        sampled = sample_placed(PlacedTrials(latents[rows].astype(np.float32), start_ms[rows], start_ms[rows],
                                             stop_ms[rows]), readout, rng)
        collector.add(sampled.spike_unit, sampled.spike_sample)
        member = np.arange(len(rows))
        truth_rates.append(truth_rows(sampled, member, truth_first[rows], n_bins, sampled.rates))
        truth_latents.append(truth_rows(sampled, member, truth_first[rows], n_bins, sampled.latents))
    train_truth = TruthBlock(np.concatenate(truth_rates), truth_first, layout.ids, np.concatenate(truth_latents))
    obs = np.array([[start_ms[0] / 1000.0, stop_ms[-1] / 1000.0]])
    train_units = units_table(layout, collector, np.arange(n_units), obs)
    set_ms = go_ms - tp
    columns = (
        TrialColumn("ready_time", "Time of the ready flash (seconds)", (set_ms - task["ts"]) / 1000.0),
        TrialColumn("set_time", "Time of the set flash (seconds)", set_ms / 1000.0),
        TrialColumn("go_time", "Time of the produced response (seconds)", go_ms / 1000.0),
        *_task_columns(task),
        TrialColumn("tp", "Produced interval, set to go (ms)", tp.astype(float)),
        TrialColumn("is_outlier", "Whether tp is an outlier (far too early)", outlier),
    )
    train_trials = TrialsTable(start_ms / 1000.0, stop_ms / 1000.0, split, columns)

    n_test = counts.test_trials
    test_task = _conditions(rng, n_test)
    test_tp, _ = _intervals(rng, test_task["ts"])
    test_latents = ((_simulate(rng, test_task, test_tp, n_ms) - mean) / sd).astype(np.float32)
    test_collector, test_truth = sample_test_trials(spec, test_latents, np.full(n_test, GO_MS), readout, layout, rng)
    starts, _ = test_segments(spec, n_test)
    test_go = starts - start
    test_units = units_table(layout, test_collector, np.flatnonzero(~layout.heldout),
                             np.stack([starts, starts + spec.window_len_ms], axis=1) / 1000.0)
    test_columns = (
        TrialColumn("set_time", "Time of the set flash (seconds)", (test_go - test_tp) / 1000.0),
        TrialColumn("go_time", "Time of the produced response (seconds)", test_go / 1000.0),
        *_task_columns(test_task),
    )
    test_trials = TrialsTable(starts / 1000.0, (starts + spec.window_len_ms) / 1000.0, np.full(n_test, "test"),
                              test_columns)
    size = dict(spec.generator_args).get("size", "medium")
    session = SessionInfo(
        session_id=f"rsg-{size}", subject_id="Synth",
        session_description=f"Synthetic ready-set-go interval reproduction, {size} size, generated by nlb_suite, "
                            f"seed {seed}",
        experiment_description="A DMFC_RSG look-alike: produced intervals set by a latent ramp's speed",
        keywords=("ready-set-go", "timing", "synthetic", "Neural Latents Benchmark"),
    )
    array = ElectrodeArray("DMFC", 32, "32-channel probe in DMFC (synthetic)", "Dorsomedial frontal cortex")
    return GeneratedDataset(session, (array,), train_units, train_trials, (), test_units, test_trials,
                            train_truth, test_truth)


def _task_columns(task: dict[str, np.ndarray]) -> tuple[TrialColumn, ...]:
    return (
        TrialColumn("is_eye", "Response with the eyes (else the hand)", task["is_eye"]),
        TrialColumn("theta", "Direction of the response (degrees)", task["theta"]),
        TrialColumn("is_short", "Short prior (ts 480-800 ms; else long, 800-1200 ms)", task["is_short"]),
        TrialColumn("ts", "Sample interval, ready to set (ms)", task["ts"]),
    )
