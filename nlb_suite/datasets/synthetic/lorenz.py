"""The Lorenz attractor benchmark of the LFADS literature (`synth_lorenz`; Sussillo et al. 2016).

The state (x, y, z) follows dx/dt = sigma (y - x), dy/dt = x (rho - z) - y, dz/dt = x y - beta z
with sigma = 10, rho = 28, beta = 8/3, on a clock where one second of the trial is
`TIME_UNITS_PER_S` Lorenz time units, integrated by 4th-order Runge-Kutta in 1 ms steps.
Conditions are 25 points of the attractor (where runs from random starts are after 20 time
units); a trial starts at its condition's point plus N(0, `TRIAL_SD`^2) per coordinate. The
latents are the state standardised by the attractor's mean and standard deviation; units read
them log-linearly (log rate = baseline + w . latents, calibrated to mean rates of 5-40 Hz).
Trial layout, behaviour and files: `systems.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.spec import DatasetSpec
from ...data.nwb_write import ElectrodeArray, SessionInfo
from .common import GeneratedDataset
from .systems import SystemRun, generate_system

# Bumped whenever the same seed would give different files: stale datasets on disk are regenerated.
VERSION = 1

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0
TIME_UNITS_PER_S = 1.0
N_CONDITIONS = 25
TRIAL_SD = 0.5  # trial-to-trial noise on the initial state (Lorenz units; the attractor spans ~40)
_BURN_IN = 20.0  # time units from random starts to the attractor
_STATISTICS_RUNS = 100
_STATISTICS_SPAN = 20.0  # time units of each run over which the attractor's statistics are taken
_COARSE_STEP = 0.01  # RK4 step (time units) for reaching the attractor and its statistics
_LOG_RATE_SD = (0.8, 1.2)
_MEAN_HZ = (5.0, 40.0)


def lorenz_derivative(state: np.ndarray) -> np.ndarray:
    """d(x, y, z)/dt for states (..., 3)."""
    x, y, z = state[..., 0], state[..., 1], state[..., 2]
    return np.stack([SIGMA * (y - x), x * (RHO - z) - y, x * y - BETA * z], axis=-1)


def rk4_step(state: np.ndarray, h: float) -> np.ndarray:
    k1 = lorenz_derivative(state)
    k2 = lorenz_derivative(state + 0.5 * h * k1)
    k3 = lorenz_derivative(state + 0.5 * h * k2)
    k4 = lorenz_derivative(state + h * k3)
    return state + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)


_STEP = TIME_UNITS_PER_S / 1000.0  # time units per 1 ms step


@dataclass(frozen=True)
class Lorenz:
    """The conditions' initial states and the standardisation of the attractor."""

    initial_states: np.ndarray  # (conditions, 3)
    mean: np.ndarray  # (3,)
    sd: np.ndarray  # (3,)

    n_conditions: int = N_CONDITIONS
    log_rate_sd: tuple[float, float] = _LOG_RATE_SD
    mean_hz: tuple[float, float] = _MEAN_HZ
    saturation: None = None  # log-linear readout

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Lorenz:
        # Random starts run onto the attractor; the conditions are where the first ones land, and
        # the attractor's statistics come from all of them over a further stretch.
        state = np.array([0.0, 0.0, 25.0]) + rng.normal(0.0, 10.0, (_STATISTICS_RUNS, 3))
        for _ in range(round(_BURN_IN / _COARSE_STEP)):
            state = rk4_step(state, _COARSE_STEP)
        initial_states = state[:N_CONDITIONS].copy()
        path = np.empty((round(_STATISTICS_SPAN / _COARSE_STEP), _STATISTICS_RUNS, 3))
        for t in range(len(path)):
            state = rk4_step(state, _COARSE_STEP)
            path[t] = state
        flat = path.reshape(-1, 3)
        return cls(initial_states, flat.mean(axis=0), flat.std(axis=0))

    def simulate(self, condition: np.ndarray, n_ms: int, rng: np.random.Generator) -> SystemRun:
        state = self.initial_states[condition] + rng.normal(0.0, TRIAL_SD, (len(condition), 3))
        latents = np.empty((len(condition), n_ms, 3), dtype=np.float32)
        for t in range(n_ms):
            latents[:, t] = (state - self.mean) / self.sd
            state = rk4_step(state, _STEP)
        return SystemRun(latents)


def generate_lorenz(spec: DatasetSpec, seed: int) -> GeneratedDataset:
    rng = np.random.default_rng(seed)
    system = Lorenz.draw(rng)
    size = dict(spec.generator_args).get("size", "medium")
    session = SessionInfo(
        session_id=f"lorenz-{size}", subject_id="Lorenz", species="none (simulated system)",
        session_description=(f"Lorenz attractor (sigma {SIGMA:g}, rho {RHO:g}, beta 8/3), {size} size, generated "
                             f"by nlb_suite, seed {seed}"),
        experiment_description="The Lorenz-attractor benchmark of the LFADS literature, in the NLB layout",
        keywords=("Lorenz attractor", "LFADS", "synthetic", "Neural Latents Benchmark"),
    )
    array = ElectrodeArray("lorenz", 192, "Read-out channels of the simulated system", "none (simulated)")
    return generate_system(spec, rng, system, session, array)
