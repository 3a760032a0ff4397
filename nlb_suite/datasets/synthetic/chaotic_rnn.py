"""The chaotic RNN of the LFADS papers (Sussillo et al. 2016; Pandarinath et al. 2018):
`synth_chaotic_rnn`, and `synth_chaotic_rnn_inputs` with unpredictable input pulses.

A vanilla rate network of N = 50 units, tau dx/dt = -x + W tanh(x) + b u(t), W_ij ~ N(0,
gamma^2 / N), tau = 25 ms, Euler steps of 1 ms (N, tau and the initial states' sd 1 are the
values of the paper's generator script). gamma = 2.5 rather than the script's 1.5: the network is
chaotic for gamma > 1 only as N grows, and at N = 50 over a 1 s trial none of 8 draws with
gamma 1.5 had a positive largest Lyapunov exponent (-0.3 to -5.9 /s, seeds 0-7), against 6 of 8
with gamma 2.5 (0.8 to 2.1 /s); a draw below `MIN_LYAPUNOV_PER_S` is drawn again. Conditions
are 25 initial states x0_c ~ N(0, 1) per unit; a trial starts at x0_c + N(0, 0.1^2) per unit,
which the chaos amplifies over the trial. Units read tanh(x) log-linearly (log rate =
baseline + w . tanh(x), calibrated to mean rates of 5-40 Hz). The inputs variant: on half the
trials (drawn independently) a 10 ms pulse of height 2.5 enters along b ~ N(0, 1) per unit at a
time uniform in 250-650 ms after the trial start (150-550 ms into the evaluation window),
kicking the state by about one standard deviation of the initial states; nothing before it
predicts it (the paper's inferred-inputs test). Its time is the trials table's `pulse_time`
(NaN without a pulse), and `pulse` says whether a trial has one. Trial layout, behaviour and
files: `systems.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.spec import DatasetSpec
from ...data.nwb_write import ElectrodeArray, SessionInfo, TrialColumn
from .common import GeneratedDataset, SyntheticDataError
from .systems import ONSET_MS, SystemRun, TrialEvent, generate_system

# Bumped whenever the same seed would give different files: stale datasets on disk are regenerated.
VERSION = 1

N_NETWORK = 50
GAMMA = 2.5
MIN_LYAPUNOV_PER_S = 0.5
_MAX_DRAWS = 50
TAU_MS = 25.0
N_CONDITIONS = 25
X0_SD = 1.0  # spread of the conditions' initial states
TRIAL_X0_SD = 0.1  # trial-to-trial noise on the initial state
PULSE_PROBABILITY = 0.5
PULSE_MS = 10
PULSE_HEIGHT = 2.5
PULSE_WINDOW_MS = (ONSET_MS + 150, ONSET_MS + 550)  # pulse onsets, ms from the trial start
_LOG_RATE_SD = (0.8, 1.2)
_MEAN_HZ = (5.0, 40.0)


def euler_step(x: np.ndarray, weights: np.ndarray, drive: np.ndarray | float = 0.0) -> np.ndarray:
    """One 1 ms Euler step of tau dx/dt = -x + W tanh(x) + drive, for states (..., N)."""
    return x + (np.tanh(x) @ weights.T + drive - x) / TAU_MS


def lyapunov_per_s(weights: np.ndarray, initial_states: np.ndarray, n_ms: int = 1000) -> float:
    """The largest Lyapunov exponent (1/s) over the first `n_ms` from each initial state, by the
    growth of a 1e-6 perturbation renormalised every 20 ms (Benettin's method); the median over
    the initial states."""
    size, every = 1e-6, 20
    x = initial_states.copy()
    offset = np.random.default_rng(0).normal(size=x.shape)
    y = x + offset * (size / np.linalg.norm(offset, axis=1, keepdims=True))
    growth = np.zeros(len(x))
    for t in range(1, n_ms + 1):
        x, y = euler_step(x, weights), euler_step(y, weights)
        if t % every == 0:
            distance = np.linalg.norm(y - x, axis=1)
            growth += np.log(distance / size)
            y = x + (y - x) * (size / distance[:, None])
    return float(np.median(growth) / (n_ms / 1000.0))


@dataclass(frozen=True)
class ChaoticRnn:
    """The network, its conditions' initial states and (inputs variant) the pulses' direction."""

    weights: np.ndarray  # (N, N)
    initial_states: np.ndarray  # (conditions, N)
    input_weights: np.ndarray  # (N,)
    pulses: bool

    n_conditions: int = N_CONDITIONS
    log_rate_sd: tuple[float, float] = _LOG_RATE_SD
    mean_hz: tuple[float, float] = _MEAN_HZ

    @property
    def saturation(self) -> np.ndarray:
        # s * tanh(x / s) with s = 1: the units read tanh(x), as the network's own units do.
        return np.ones(N_NETWORK, dtype=np.float32)

    @classmethod
    def draw(cls, rng: np.random.Generator, pulses: bool) -> ChaoticRnn:
        """A network whose largest Lyapunov exponent over a trial is at least `MIN_LYAPUNOV_PER_S`
        (drawn again until it is: at N = 50 some draws settle onto limit cycles or fixed points)."""
        for _ in range(_MAX_DRAWS):
            weights = rng.normal(0.0, GAMMA / np.sqrt(N_NETWORK), (N_NETWORK, N_NETWORK))
            initial_states = rng.normal(0.0, X0_SD, (N_CONDITIONS, N_NETWORK))
            if lyapunov_per_s(weights, initial_states) >= MIN_LYAPUNOV_PER_S:
                return cls(weights, initial_states, rng.normal(0.0, 1.0, N_NETWORK), pulses)
        raise SyntheticDataError(f"no chaotic network in {_MAX_DRAWS} draws; try another seed")

    def simulate(self, condition: np.ndarray, n_ms: int, rng: np.random.Generator) -> SystemRun:
        n = len(condition)
        x = self.initial_states[condition] + rng.normal(0.0, TRIAL_X0_SD, (n, N_NETWORK))
        has_pulse = (rng.random(n) < PULSE_PROBABILITY) & self.pulses
        pulse_at = rng.integers(PULSE_WINDOW_MS[0], PULSE_WINDOW_MS[1] + 1, n)
        latents = np.empty((n, n_ms, N_NETWORK), dtype=np.float32)
        for t in range(n_ms):
            latents[:, t] = x
            pulsing = has_pulse & (t >= pulse_at) & (t < pulse_at + PULSE_MS)
            x = euler_step(x, self.weights, np.outer(pulsing * PULSE_HEIGHT, self.input_weights))
        if not self.pulses:
            return SystemRun(latents)
        pulse_ms = np.where(has_pulse, pulse_at, np.nan)
        return SystemRun(
            latents,
            events=(TrialEvent("pulse_time", f"Onset of the {PULSE_MS} ms input pulse (NaN: no pulse)", pulse_ms),),
            flags=(TrialColumn("pulse", "Whether an input pulse entered the network on the trial", has_pulse),),
        )


def _generate(spec: DatasetSpec, seed: int, pulses: bool) -> GeneratedDataset:
    rng = np.random.default_rng(seed)
    system = ChaoticRnn.draw(rng, pulses)
    variant = "with input pulses" if pulses else "without inputs"
    size = dict(spec.generator_args).get("size", "medium")
    session = SessionInfo(
        session_id=f"chaotic-rnn-{size}{'-inputs' if pulses else ''}", subject_id="ChaoticRNN",
        species="none (simulated network)",
        session_description=(f"Chaotic RNN ({N_NETWORK} units, gamma {GAMMA}, tau {TAU_MS:g} ms) {variant}, "
                             f"{size} size, generated by nlb_suite, seed {seed}"),
        experiment_description="The LFADS papers' synthetic chaotic-RNN benchmark, in the NLB layout",
        keywords=("chaotic RNN", "LFADS", "synthetic", "Neural Latents Benchmark"),
    )
    array = ElectrodeArray("network", 192, "Read-out channels of the simulated network", "none (simulated)")
    return generate_system(spec, rng, system, session, array)


def generate_chaotic_rnn(spec: DatasetSpec, seed: int) -> GeneratedDataset:
    return _generate(spec, seed, pulses=False)


def generate_chaotic_rnn_inputs(spec: DatasetSpec, seed: int) -> GeneratedDataset:
    return _generate(spec, seed, pulses=True)
