"""Our evaluate() against nlb_tools 0.0.4's evaluation code on many randomized cases: the same
result structure and every number within 1e-9."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import numpy as np
import pytest
from scoring_cases import Case, CaseShape, make_case

from nlb_suite.scoring import evaluate, targets_to_dict, write_targets

NLB_TOOLS_REF = Path(__file__).resolve().parents[1] / ".venv" / "nlb_tools_ref"
TOLERANCE = 1e-9

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def nlb_evaluation() -> ModuleType:
    if not (NLB_TOOLS_REF / "nlb_tools" / "evaluation.py").is_file():
        pytest.skip(f"nlb_tools 0.0.4 not installed at {NLB_TOOLS_REF} (run `make install`)")
    # Appended, not prepended, and removed again: the folder also holds nlb_tools' own top-level
    # `tests` package, which must not shadow ours.
    sys.path.append(str(NLB_TOOLS_REF))
    try:
        return importlib.import_module("nlb_tools.evaluation")
    finally:
        sys.path.remove(str(NLB_TOOLS_REF))


def assert_same_results(ours: list[dict[str, dict[str, float]]], theirs: list[dict[str, dict[str, float]]]) -> None:
    assert [list(entry) for entry in ours] == [list(entry) for entry in theirs]
    for our_entry, their_entry in zip(ours, theirs):
        for split, metrics in their_entry.items():
            assert list(our_entry[split]) == list(metrics), split
            for key, value in metrics.items():
                ours_value = our_entry[split][key]
                assert (math.isnan(ours_value) and math.isnan(value)) or abs(ours_value - value) <= TOLERANCE, \
                    f"{split} {key}: ours {ours_value!r}, nlb_tools {value!r}"


def groups_of(cases: dict[str, Case]) -> tuple[dict[str, Any], dict[str, Any]]:
    targets = {name: targets_to_dict(case.targets) for name, case in cases.items()}
    submission = {name: case.rates.arrays() for name, case in cases.items()}
    return targets, submission


SHAPES = [
    CaseShape(),
    CaseShape(n_train=23, n_eval=7, n_bins=9, n_heldin=5, n_heldout=3, n_conditions=3),
    CaseShape(n_train=61, n_eval=29, n_bins=15, n_forward=6, n_heldin=14, n_heldout=6, behavior_noise=4.0),
    CaseShape(nan_spikes=True, nan_behavior=True, behavior_noise=5.0, prediction_scale=0.3),
    CaseShape(behavior_noise=10.0, prediction_scale=0.01),
    CaseShape(zero_rates=True, psth_nan_tail=True, behavior_noise=0.05),
    CaseShape(n_train=33, n_eval=11, n_bins=7, n_forward=2, n_heldin=20, n_heldout=2, n_conditions=9,
              nan_spikes=True, zero_rates=True),
]


@pytest.mark.parametrize("seed", range(len(SHAPES)))
def test_maze_groups_match(nlb_evaluation: ModuleType, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cases = {"mc_maze": make_case(rng, SHAPES[seed]), "mc_maze_20": make_case(rng, SHAPES[seed], bin_ms=20),
             "mc_rtt": make_case(rng, SHAPES[seed])}
    targets, submission = groups_of(cases)
    del targets["mc_rtt"]["psth"]  # mc_rtt has no PSTH target
    assert_same_results(evaluate(targets, submission), nlb_evaluation.evaluate(targets, submission))


@pytest.mark.parametrize("seed", range(4))
def test_area2_two_decode_masks_match(nlb_evaluation: ModuleType, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    shape = CaseShape(n_masks=2, nan_behavior=seed % 2 == 1, nan_spikes=seed >= 2, n_conditions=6,
                      behavior_noise=[0.1, 1.0, 3.0, 8.0][seed])
    cases = {"area2_bump": make_case(rng, shape), "area2_bump_20": make_case(rng, shape, bin_ms=20)}
    targets, submission = groups_of(cases)
    ours = evaluate(targets, submission)
    assert [list(entry) for entry in ours] == [["area2_bump_split"], ["area2_bump_20_split"]]
    assert_same_results(ours, nlb_evaluation.evaluate(targets, submission))


def test_scaling_trio_in_one_file_matches(nlb_evaluation: ModuleType, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    cases = {
        "mc_maze_large": make_case(rng, CaseShape(n_train=50, n_eval=20)),
        "mc_maze_medium": make_case(rng, CaseShape(n_train=30, n_eval=12, nan_spikes=True)),
        "mc_maze_small": make_case(rng, CaseShape(n_train=20, n_eval=8, zero_rates=True)),
        "mc_maze_small_20": make_case(rng, CaseShape(n_train=20, n_eval=8), bin_ms=20),
        "mc_maze": make_case(rng, CaseShape()),
    }
    # Through files: our target-file layout must be what nlb_tools reads.
    targets_file = write_targets(tmp_path / "targets.h5", {name: case.targets for name, case in cases.items()})
    submission_file = tmp_path / "submission.h5"
    with h5py.File(submission_file, "w") as file:
        for name, case in cases.items():
            for key, array in case.rates.arrays().items():
                file.create_dataset(f"{name}/{key}", data=array.astype(np.float32))
    ours = evaluate(targets_file, submission_file)
    assert [list(entry) for entry in ours] == [["mc_maze_split"], ["mc_maze_scaling_split"],
                                               ["mc_maze_scaling_20_split"]]
    assert list(ours[1]["mc_maze_scaling_split"])[:4] == ["[500] co-bps", "[500] vel R2", "[500] psth R2",
                                                          "[500] fp-bps"]
    assert_same_results(ours, nlb_evaluation.evaluate(str(targets_file), str(submission_file)))


def test_psth_with_empty_conditions_and_nan_bins_matches(nlb_evaluation: ModuleType) -> None:
    rng = np.random.default_rng(11)
    case = make_case(rng, CaseShape(n_eval=6, n_conditions=8, psth_nan_tail=True))
    assert any(idx.size == 0 for idx in case.targets.eval_cond_idx or [])
    targets, submission = groups_of({"mc_maze": case})
    assert_same_results(evaluate(targets, submission), nlb_evaluation.evaluate(targets, submission))


def dmfc_group(rng: np.random.Generator, n_eval: int = 24, n_bins: int = 14, n_conditions: int = 3,
               outliers: int = 0, max_jitter: int = 4) -> tuple[dict[str, Any], dict[str, Any]]:
    """dmfc_rsg-like: held-out spikes NaN before each trial's set time and in the jitter's last
    bins, per-trial behaviour rows (is_eye, theta, is_short, ts, tp; outlier rows NaN), PSTHs
    padded at the front and a per-trial jitter."""
    n_train, n_heldin, n_heldout = 20, 6, 4
    pad = n_bins // 3
    jitter = rng.integers(0, max_jitter, n_eval)
    eval_rates = rng.gamma(2.0, 0.1, (n_eval, n_bins, n_heldin + n_heldout))
    spikes = rng.poisson(eval_rates[..., n_heldin:]).astype(float)
    for trial in range(n_eval):
        spikes[trial, : rng.integers(0, pad + 1)] = np.nan
        spikes[trial, n_bins - jitter[trial]:] = np.nan
    combo = rng.permutation(np.arange(n_eval) % 4)  # every (is_eye, theta) condition has trials
    behavior = np.column_stack([combo % 2, combo // 2, np.zeros(n_eval),
                                rng.uniform(0.5, 1.0, n_eval), rng.uniform(0.5, 1.2, n_eval)]).astype(float)
    behavior[rng.choice(n_eval, outliers, replace=False)] = np.nan
    psth = rng.gamma(2.0, 0.1, (n_conditions, n_bins, n_heldin + n_heldout))
    psth[:, :max(pad, max_jitter)] = np.nan
    cond_idx = np.empty(n_conditions, dtype=object)
    for i, trials in enumerate(np.array_split(rng.permutation(n_eval), n_conditions)):
        cond_idx[i] = np.sort(trials)
    target = {"eval_spikes_heldout": spikes, "train_behavior": rng.random((n_train, 5)), "eval_behavior": behavior,
              "psth": psth, "eval_cond_idx": cond_idx, "eval_jitter": jitter,
              "eval_spikes_heldin_forward": rng.poisson(1.0, (n_eval, 3, n_heldin)).astype(float),
              "eval_spikes_heldout_forward": rng.poisson(1.0, (n_eval, 3, n_heldout)).astype(float)}
    forward = rng.gamma(2.0, 0.5, (n_eval, 3, n_heldin + n_heldout))
    user = {"eval_rates_heldin": eval_rates[..., :n_heldin], "eval_rates_heldout": eval_rates[..., n_heldin:],
            "eval_rates_heldin_forward": forward[..., :n_heldin], "eval_rates_heldout_forward": forward[..., n_heldin:]}
    return target, user


@pytest.mark.parametrize("seed", range(6))
def test_dmfc_randomized_cases_match(nlb_evaluation: ModuleType, seed: int) -> None:
    """tp corr, jittered PSTH R2, co-bps and fp-bps on randomized dmfc_rsg and dmfc_rsg_20 groups."""
    rng = np.random.default_rng(200 + seed)
    shape = {"n_eval": int(rng.integers(24, 60)), "n_bins": int(rng.integers(10, 30)),
             "n_conditions": int(rng.integers(2, 6)), "outliers": int(rng.integers(0, 4)),
             "max_jitter": int(rng.integers(1, 5))}
    groups = {"dmfc_rsg": dmfc_group(rng, **shape), "dmfc_rsg_20": dmfc_group(rng, **shape)}
    targets = {name: target for name, (target, _) in groups.items()}
    submission = {name: user for name, (_, user) in groups.items()}
    ours = evaluate(targets, submission)
    assert [list(entry) for entry in ours] == [["dmfc_rsg_split"], ["dmfc_rsg_20_split"]]
    assert list(ours[0]["dmfc_rsg_split"]) == ["co-bps", "tp corr", "psth R2", "fp-bps"]
    assert_same_results(ours, nlb_evaluation.evaluate(targets, submission))


def test_synthetic_rsg_group_scored_like_dmfc(nlb_evaluation: ModuleType) -> None:
    """A group with per-trial behaviour (synth_rsg) gets tp corr, as dmfc_rsg does."""
    target, user = dmfc_group(np.random.default_rng(17), outliers=2)
    ours = evaluate({"dmfc_rsg": target, "synth_rsg": target}, {"dmfc_rsg": user, "synth_rsg": user})
    assert ours[1]["synth_rsg_split"] == ours[0]["dmfc_rsg_split"]
    assert_same_results(ours[:1], nlb_evaluation.evaluate({"dmfc_rsg": target}, {"dmfc_rsg": user}))


def test_dmfc_tp_correlation_and_jitter_match(nlb_evaluation: ModuleType) -> None:
    target, user = dmfc_group(np.random.default_rng(5))
    ours = evaluate({"dmfc_rsg": target}, {"dmfc_rsg": user})
    assert list(ours[0]["dmfc_rsg_split"]) == ["co-bps", "tp corr", "psth R2", "fp-bps"]
    assert_same_results(ours, nlb_evaluation.evaluate({"dmfc_rsg": target}, {"dmfc_rsg": user}))


def test_other_group_names_scored_like_official_ones(nlb_evaluation: ModuleType) -> None:
    rng = np.random.default_rng(3)
    maze = make_case(rng, CaseShape())
    area2 = make_case(rng, CaseShape(n_masks=2))
    targets, submission = groups_of({"mc_maze": maze, "synth_maze_small": maze, "area2_bump": area2,
                                     "synth_area2_20": area2})
    ours = evaluate(targets, submission)
    assert [list(entry) for entry in ours] == [["mc_maze_split"], ["area2_bump_split"], ["synth_maze_small_split"],
                                               ["synth_area2_20_split"]]
    assert ours[2]["synth_maze_small_split"] == ours[0]["mc_maze_split"]
    assert ours[3]["synth_area2_20_split"] == ours[1]["area2_bump_split"]
    assert_same_results(ours[:2], nlb_evaluation.evaluate(targets, submission))


def test_groups_without_targets_or_predictions_are_skipped_alike(nlb_evaluation: ModuleType) -> None:
    rng = np.random.default_rng(9)
    targets, submission = groups_of({"mc_maze": make_case(rng, CaseShape()),
                                     "area2_bump": make_case(rng, CaseShape())})
    del targets["area2_bump"]
    submission["mc_maze_20"] = {"eval_rates_heldin": np.ones((2, 2, 2))}  # no eval_rates_heldout
    ours = evaluate(targets, submission)
    assert [list(entry) for entry in ours] == [["mc_maze_split"]]
    assert_same_results(ours, nlb_evaluation.evaluate(targets, submission))


def test_forward_metrics_only_when_both_sides_have_them(nlb_evaluation: ModuleType) -> None:
    rng = np.random.default_rng(13)
    targets, submission = groups_of({"mc_maze": make_case(rng, CaseShape())})
    del submission["mc_maze"]["eval_rates_heldin_forward"]
    ours = evaluate(targets, submission)
    assert "fp-bps" not in ours[0]["mc_maze_split"]
    assert_same_results(ours, nlb_evaluation.evaluate(targets, submission))
