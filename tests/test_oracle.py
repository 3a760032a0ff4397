"""Our tensors and targets against nlb_tools 0.0.4 itself, run in its own pinned environment
(Python 3.10, pandas 1.3.4): spike counts exactly, behaviour and PSTHs within 1e-6.

Skips where Python 3.10 is absent. `make oracle` runs only these."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nlb_suite.data.paths import dataset_files
from nlb_suite.datasets import get_spec
from nlb_suite.tensors import make_targets, make_tensors
from nlb_suite.tensors.build import read_dataset_file
from nlb_suite.tensors.grid import Windows, ordered_units, seconds_to_ns, spike_tensors, window_start_bins

pytestmark = pytest.mark.oracle

REFERENCE_SCRIPT = Path(__file__).with_name("oracle") / "nlb_reference.py"


@dataclass(frozen=True)
class Case:
    dataset: str  # ours
    nlb_name: str  # the real dataset whose nlb_tools settings it mimics
    phase: str
    bin_ms: int


CASES = [
    Case("synth_maze_small", "mc_maze_small", "val", 5),
    Case("synth_maze_small", "mc_maze_small", "val", 20),
    Case("synth_maze_small", "mc_maze_small", "test", 5),
    Case("synth_area2", "area2_bump", "val", 5),
    Case("synth_area2", "area2_bump", "val", 20),
    Case("synth_rtt_small", "mc_rtt", "val", 5),
    Case("synth_rtt_small", "mc_rtt", "val", 20),
    Case("synth_rtt_small", "mc_rtt", "test", 5),
    Case("synth_rsg_small", "dmfc_rsg", "val", 5),
    Case("synth_rsg_small", "dmfc_rsg", "val", 20),
    Case("synth_rsg_small", "dmfc_rsg", "test", 5),
]


def reference(nlb_python: Path, data: Path, name: str, bin_ms: int, phase: str, out: Path) -> dict[str, np.ndarray]:
    done = subprocess.run([str(nlb_python), str(REFERENCE_SCRIPT), str(data), name, str(bin_ms), phase, str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"nlb_tools failed:\n{done.stderr[-3000:]}"
    with np.load(out) as saved:
        return dict(saved)


def assert_same(ours: np.ndarray | None, theirs: np.ndarray, name: str, exact: bool) -> None:
    assert ours is not None, f"{name}: we made nothing"
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} vs nlb_tools {theirs.shape}"
    if exact:
        assert np.array_equal(ours.astype(np.float64), theirs.astype(np.float64), equal_nan=True), f"{name} differs"
    else:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.dataset}-{c.phase}-{c.bin_ms}ms")
def test_tensors_match_nlb_tools(case: Case, nlb_python: Path, synthetic_root: Path, tmp_path: Path) -> None:
    spec = get_spec(case.dataset)
    folder = dataset_files(spec, synthetic_root).train.parent
    theirs = reference(nlb_python, folder, case.nlb_name, case.bin_ms, case.phase, tmp_path / "ref.npz")
    tensors = make_tensors(spec, case.phase, case.bin_ms, synthetic_root)
    for name in ("train_spikes_heldin", "train_spikes_heldout", "train_spikes_heldin_forward",
                 "train_spikes_heldout_forward", "eval_spikes_heldin"):
        assert_same(getattr(tensors, name), theirs[name], name, exact=True)
    assert_same(tensors.train_behavior, theirs["train_behavior"], "train_behavior", exact=False)
    if case.phase != "val":
        return
    targets = make_targets(spec, case.phase, case.bin_ms, synthetic_root)
    if spec.eval_segment is None:
        assert_same(targets.eval_spikes_heldout, theirs["eval_spikes_heldout"], "eval input heldout", exact=True)
    else:  # dmfc_rsg: the targets are the input window's held-out spikes between set and go
        covered = ~np.isnan(targets.eval_spikes_heldout)
        assert covered.any() and np.array_equal(targets.eval_spikes_heldout[covered],
                                                theirs["eval_spikes_heldout"][covered]), "eval input heldout differs"
    for name in ("eval_spikes_heldout", "eval_spikes_heldin_forward", "eval_spikes_heldout_forward"):
        assert_same(getattr(targets, name), theirs[f"target_{name}"], f"target {name}", exact=True)
    for name in ("train_behavior", "eval_behavior", "psth"):
        if getattr(targets, name) is None and f"target_{name}" not in theirs:
            continue  # mc_rtt has no PSTH
        assert_same(getattr(targets, name), theirs[f"target_{name}"], f"target {name}", exact=False)
    if "target_eval_jitter" in theirs:
        assert np.array_equal(targets.eval_jitter, theirs["target_eval_jitter"]), "eval_jitter differs"
    for name in ("train_decode_mask", "eval_decode_mask"):
        if f"target_{name}" in theirs:
            assert np.array_equal(getattr(targets, name), theirs[f"target_{name}"]), name
    for name in ("train_cond_idx", "eval_cond_idx"):
        ours = getattr(targets, name) or []
        theirs_idx = [theirs[f"target_{name}_{i}"] for i in range(len(ours))]
        assert f"target_{name}_{len(ours)}" not in theirs, f"{name}: nlb_tools has more conditions"
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs_idx)), f"{name} differs"


@pytest.mark.parametrize("bin_ms", [5, 20])
def test_real_test_file_matches_nlb_tools(bin_ms: int, nlb_python: Path, real_test_file: Path, tmp_path: Path) -> None:
    spec = get_spec("mc_maze_small")
    theirs = reference(nlb_python, real_test_file, "mc_maze_small", bin_ms, "test-inputs", tmp_path / "ref.npz")
    rec = read_dataset_file(real_test_file)
    align = seconds_to_ns(rec.trials[spec.align_field].to_numpy(float))
    windows = {"main": Windows(window_start_bins(align, spec.window_ms[0], bin_ms), spec.n_bins(bin_ms))}
    ours = spike_tensors(rec, ordered_units(rec, False), bin_ms, windows)["main"]
    assert ours.shape == (100, spec.n_bins(bin_ms), 107)
    assert_same(ours, theirs["eval_spikes_heldin"], "eval_spikes_heldin", exact=True)
