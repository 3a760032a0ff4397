"""The LFADS papers' systems as datasets (chaotic RNN, with and without input pulses; Lorenz
attractor): their dynamics, the trial layout, the truth against the files, realistic rates,
determinism, and our tensors against nlb_tools on their files."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from test_oracle import REFERENCE_SCRIPT, assert_same
from test_synthetic import (
    check_forward_window,
    check_rates_and_counts,
    check_same_seed_same_dataset,
    check_test_file,
    check_truth_matches_the_files,
    check_windows_observed,
    modulation_correlation,
    ms,
)

from nlb_suite.core.spec import DatasetSpec, ExpectedCounts
from nlb_suite.data.nwb import read_recording
from nlb_suite.data.paths import DatasetFiles, dataset_files, truth_path
from nlb_suite.datasets import BUILTIN, get_spec
from nlb_suite.datasets.synthetic import GENERATOR_VERSIONS, GENERATORS, generate
from nlb_suite.datasets.synthetic.chaotic_rnn import (
    GAMMA,
    MIN_LYAPUNOV_PER_S,
    N_NETWORK,
    PULSE_WINDOW_MS,
    ChaoticRnn,
    lyapunov_per_s,
)
from nlb_suite.datasets.synthetic.lorenz import Lorenz, rk4_step
from nlb_suite.datasets.synthetic.systems import CONDITION_FIELD, ONSET_FIELD, ONSET_MS, trial_length_ms
from nlb_suite.tensors import make_targets, make_tensors, make_true_rates

SYSTEMS = ["synth_chaotic_rnn", "synth_chaotic_rnn_inputs", "synth_lorenz"]
BASE_COLUMNS = ["trial_id", "start_time", "stop_time", CONDITION_FIELD, ONSET_FIELD]


def small(name: str, **generator_args: int) -> DatasetSpec:
    """A built-in spec shrunk to 60 trials (25 conditions: two or three trials each) and 19 units."""
    spec = get_spec(name)
    args = {**dict(spec.generator_args), **generator_args}
    return dataclasses.replace(spec, expected=ExpectedCounts(14, 5, 45, 15, 60, 10),
                               generator_args=tuple(args.items()))


@pytest.fixture(scope="module", params=SYSTEMS)
def system(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[DatasetSpec, Path, DatasetFiles]:
    spec, root = small(request.param), tmp_path_factory.mktemp(request.param)
    started = time.perf_counter()
    files = generate(spec, root)
    print(f"{spec.name} at 60 trials x 19 units generated in {time.perf_counter() - started:.2f} s")
    return spec, root, files


def test_registry_entries() -> None:
    for name in [*SYSTEMS, "synth_chaotic_rnn_small", "synth_lorenz_small"]:
        spec = BUILTIN[name]
        assert spec.align_field == ONSET_FIELD and spec.psth_conditions == (CONDITION_FIELD,)
        assert spec.generator in GENERATORS and GENERATOR_VERSIONS[spec.generator] >= 1
    # Sizes as the real scaled mazes'.
    for name, maze in (("synth_lorenz_small", "mc_maze_small"), ("synth_chaotic_rnn", "mc_maze_medium")):
        assert BUILTIN[name].expected == BUILTIN[maze].expected
    assert set(GENERATOR_VERSIONS) == set(GENERATORS)


def test_layout_and_timing(system: tuple[DatasetSpec, Path, DatasetFiles]) -> None:
    spec, _, files = system
    train, test = read_recording(files.train), read_recording(files.test)
    trials = train.trials
    pulses = spec.generator == "chaotic_rnn_inputs"
    assert list(trials.columns) == BASE_COLUMNS + (["pulse_time", "pulse"] if pulses else []) + ["split"]
    counts = trials.split.value_counts()
    assert (counts["train"], counts["val"]) == (45, 15) and len(trials) == 60
    assert set(trials[CONDITION_FIELD]) == set(range(25))
    np.testing.assert_array_equal(ms(trials[ONSET_FIELD] - trials.start_time), ONSET_MS)
    np.testing.assert_array_equal(ms(trials.stop_time - trials.start_time), trial_length_ms(spec))
    gaps = ms(trials.start_time[1:].to_numpy()) - ms(trials.stop_time[:-1].to_numpy())
    assert gaps.min() >= 200 and gaps.max() <= 400
    np.testing.assert_allclose(train.units.obs_intervals[0], trials[["start_time", "stop_time"]].to_numpy())
    assert sorted(train.behavior) == ["hand_vel"] and train.behavior["hand_vel"].data.shape == (train.end_ms, 2)
    if pulses:
        pulse = trials.pulse.to_numpy(bool)
        assert 0.2 < pulse.mean() < 0.8
        assert trials.pulse_time[~pulse].isna().all()
        after_start = ms(trials.pulse_time[pulse] - trials.start_time[pulse])
        assert after_start.min() >= PULSE_WINDOW_MS[0] and after_start.max() <= PULSE_WINDOW_MS[1]
    check_windows_observed(spec, train)
    check_test_file(spec, train, test)


def test_truth_matches_the_files(system: tuple[DatasetSpec, Path, DatasetFiles]) -> None:
    check_truth_matches_the_files(*system)


def test_truth_is_aligned_with_the_tensors(system: tuple[DatasetSpec, Path, DatasetFiles]) -> None:
    """Every array of the true rates has its tensor's shape, and the spikes in each follow it."""
    spec, root, _ = system
    tensors = make_tensors(spec, "val", 5, root)
    targets = make_targets(spec, "val", 5, root)
    truth = make_true_rates(spec, tensors, root)
    assert truth is not None
    pairs = [(truth.train_rates_heldin, tensors.train_spikes_heldin),
             (truth.train_rates_heldout, tensors.train_spikes_heldout),
             (truth.eval_rates_heldin, tensors.eval_spikes_heldin),
             (truth.eval_rates_heldout, targets.eval_spikes_heldout),
             (truth.eval_rates_heldin_forward, targets.eval_spikes_heldin_forward),
             (truth.eval_rates_heldout_forward, targets.eval_spikes_heldout_forward)]
    for rates, spikes in pairs:
        assert rates.shape == spikes.shape
        expected, observed = rates.sum(), spikes.sum()
        assert abs(observed - expected) < 5 * np.sqrt(expected)
        assert modulation_correlation(spikes, rates) > 0.3


def test_rates_and_counts(system: tuple[DatasetSpec, Path, DatasetFiles]) -> None:
    spec, root, _ = system
    check_rates_and_counts(spec, root)


def test_forward_window_carries_trial_activity(system: tuple[DatasetSpec, Path, DatasetFiles]) -> None:
    spec, root, _ = system
    check_forward_window(spec, root, min_fp_bps=0.15)


@pytest.mark.parametrize("dataset", SYSTEMS)
def test_same_seed_same_dataset(dataset: str, tmp_path: Path) -> None:
    check_same_seed_same_dataset(small(dataset), tmp_path)


def test_chaotic_rnn_is_chaotic() -> None:
    """The drawn network expands small perturbations (its largest Lyapunov exponent over a trial
    is positive) where a network with gamma < 1 contracts them, as theory says."""
    network = ChaoticRnn.draw(np.random.default_rng(0), pulses=False)
    assert network.weights.shape == (N_NETWORK, N_NETWORK)
    assert abs(network.weights.std() * np.sqrt(N_NETWORK) - GAMMA) < 0.1
    assert lyapunov_per_s(network.weights, network.initial_states) >= MIN_LYAPUNOV_PER_S
    tame = network.weights * (0.5 / GAMMA)
    assert lyapunov_per_s(tame, network.initial_states) < -5.0


def test_pulses_change_only_what_follows_them() -> None:
    rng_seed = 3
    without = ChaoticRnn.draw(np.random.default_rng(0), pulses=False)
    with_pulses = dataclasses.replace(without, pulses=True)
    condition = np.arange(20) % without.n_conditions
    plain = without.simulate(condition, 1000, np.random.default_rng(rng_seed))
    pulsed = with_pulses.simulate(condition, 1000, np.random.default_rng(rng_seed))
    (event,), (flag,) = pulsed.events, pulsed.flags
    assert flag.values.any() and not flag.values.all()
    for i in range(len(condition)):
        if not flag.values[i]:
            np.testing.assert_array_equal(plain.latents[i], pulsed.latents[i])
            continue
        at = int(event.local_ms[i])
        np.testing.assert_array_equal(plain.latents[i, :at + 1], pulsed.latents[i, :at + 1])
        kick = np.abs(pulsed.latents[i, at + 10] - plain.latents[i, at + 10]).mean()
        assert kick > 0.3


def test_lorenz_attractor() -> None:
    """The integrator reproduces the Lorenz system's known largest Lyapunov exponent (0.906 per
    time unit), and the conditions lie on the attractor (standardised coordinates within a few sd)."""
    system = Lorenz.draw(np.random.default_rng(0))
    state = system.initial_states.copy()
    offset = state + 1e-7
    growth, step = np.zeros(len(state)), 0.005
    for t in range(1, 8001):
        state, offset = rk4_step(state, step), rk4_step(offset, step)
        if t % 20 == 0:
            distance = np.linalg.norm(offset - state, axis=1)
            growth += np.log(distance / (1e-7 * np.sqrt(3)))
            offset = state + (offset - state) * (1e-7 * np.sqrt(3) / distance[:, None])
    assert abs(np.mean(growth / 40.0) - 0.906) < 0.1
    standard = (system.initial_states - system.mean) / system.sd
    assert np.abs(standard).max() < 4.0 and len(np.unique(system.initial_states[:, 0])) == system.n_conditions


def nlb_params(spec: DatasetSpec) -> dict[str, object]:
    """The spec's settings as nlb_tools' `update_params` (over mc_maze_small's entry)."""
    window = {"align_field": spec.align_field, "align_range": list(spec.window_ms)}
    return {
        "behavior_field": spec.behavior_field, "lag": spec.behavior_lag_ms, "fp_len": spec.forward_ms,
        "make_params": window, "eval_make_params": window,
        "psth_params": {"cond_fields": list(spec.psth_conditions), "make_params": window,
                        "kern_sd": spec.psth_kern_sd_ms},
    }


@pytest.mark.oracle
@pytest.mark.parametrize(("dataset", "phase", "bin_ms"), [
    ("synth_chaotic_rnn", "val", 5), ("synth_chaotic_rnn", "test", 5), ("synth_chaotic_rnn_inputs", "val", 5),
    ("synth_lorenz", "val", 5), ("synth_lorenz", "val", 20),
])
def test_tensors_match_nlb_tools(dataset: str, phase: str, bin_ms: int, nlb_python: Path,
                                 tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    spec = small(dataset)
    root = tmp_path_factory.getbasetemp() / f"oracle-{dataset}"
    if not truth_path(spec, root).is_file():
        generate(spec, root)
    params = tmp_path / "params.json"
    params.write_text(json.dumps(nlb_params(spec)))
    folder = dataset_files(spec, root).train.parent
    done = subprocess.run([str(nlb_python), str(REFERENCE_SCRIPT), str(folder), "mc_maze_small",
                           str(bin_ms), phase, str(tmp_path / "ref.npz"), f"--params={params}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"nlb_tools failed:\n{done.stderr[-3000:]}"
    with np.load(tmp_path / "ref.npz") as saved:
        theirs = dict(saved)
    tensors = make_tensors(spec, phase, bin_ms, root)
    for name in ("train_spikes_heldin", "train_spikes_heldout", "train_spikes_heldin_forward",
                 "train_spikes_heldout_forward", "eval_spikes_heldin"):
        assert_same(getattr(tensors, name), theirs[name], name, exact=True)
    assert_same(tensors.train_behavior, theirs["train_behavior"], "train_behavior", exact=False)
    if phase != "val":
        return
    targets = make_targets(spec, phase, bin_ms, root)
    for name in ("eval_spikes_heldout", "eval_spikes_heldin_forward", "eval_spikes_heldout_forward"):
        assert_same(getattr(targets, name), theirs[f"target_{name}"], f"target {name}", exact=True)
    for name in ("train_behavior", "eval_behavior", "psth"):
        assert_same(getattr(targets, name), theirs[f"target_{name}"], f"target {name}", exact=False)
    for name in ("train_cond_idx", "eval_cond_idx"):
        ours = getattr(targets, name)
        assert f"target_{name}_{len(ours)}" not in theirs, f"{name}: nlb_tools has more conditions"
        assert all(np.array_equal(a, theirs[f"target_{name}_{i}"]) for i, a in enumerate(ours)), f"{name} differs"
