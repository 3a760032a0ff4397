"""Submission files: write/read round trip, atomic group replacement, and every validation problem."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from nlb_suite.cli import main
from nlb_suite.core.arrays import RATE_ARRAYS, EvalTargets, Rates
from nlb_suite.data import test_targets
from nlb_suite.datasets import BUILTIN, Asset, DatasetSpec, ExpectedCounts
from nlb_suite.outputs.submission import (
    ExpectedShapes,
    SubmissionError,
    expected_for_dataset,
    expected_from_targets,
    read_submission,
    require_valid_submission,
    validate_submission,
    write_submission,
)
from nlb_suite.scoring import evaluate, write_targets

# A toy dataset: 100 ms window -> 20 bins at 5 ms, 5 at 20 ms; forward 200 ms -> 40 / 10 bins.
TOY = DatasetSpec(
    name="toy", description="toy", source="user", train=Asset("train.nwb"), test=Asset("test.nwb"),
    align_field="move_onset_time", window_ms=(0, 100),
    expected=ExpectedCounts(heldin_units=3, heldout_units=2, val_train_trials=6, val_eval_trials=4,
                            test_train_trials=10, test_eval_trials=5),
)


def make_rates(n_train: int, n_eval: int, n_bins: int, n_forward: int, n_heldin: int, n_heldout: int,
               seed: int = 0, dtype: type = np.float32) -> Rates:
    rng = np.random.default_rng(seed)

    def draw(*shape: int) -> np.ndarray:
        return rng.gamma(2.0, 0.05, size=shape).astype(dtype)

    return Rates(
        train_rates_heldin=draw(n_train, n_bins, n_heldin), train_rates_heldout=draw(n_train, n_bins, n_heldout),
        eval_rates_heldin=draw(n_eval, n_bins, n_heldin), eval_rates_heldout=draw(n_eval, n_bins, n_heldout),
        eval_rates_heldin_forward=draw(n_eval, n_forward, n_heldin),
        eval_rates_heldout_forward=draw(n_eval, n_forward, n_heldout),
    )


def toy_rates(phase: str = "val", bin_ms: int = 5, seed: int = 0, dtype: type = np.float32) -> Rates:
    shapes = ExpectedShapes.from_spec(TOY, phase, bin_ms)
    return make_rates(shapes.n_train, shapes.n_eval, shapes.n_bins, shapes.n_forward_bins,
                      shapes.n_heldin, shapes.n_heldout, seed=seed, dtype=dtype)


def toy_arrays(**changes: np.ndarray | None) -> dict[str, dict[str, np.ndarray]]:
    """The toy val-phase group as arrays, with some replaced (None: removed)."""
    arrays = toy_rates().arrays()
    for name, value in changes.items():
        if value is None:
            arrays.pop(name)
        else:
            arrays[name] = value
    return {"toy": arrays}


TOY_EXPECTED = expected_for_dataset(TOY, "val", 5)


def messages(problems: list) -> list[str]:
    return [str(problem) for problem in problems]


# --- writing and reading ---------------------------------------------------------------------

def test_round_trip_stores_float32_and_the_same_values(tmp_path: Path) -> None:
    rates = toy_rates(dtype=np.float64)
    path = write_submission(tmp_path / "submissions" / "toy.h5", {"toy": rates})
    back = read_submission(path)
    assert list(back) == ["toy"]
    assert sorted(back["toy"]) == sorted(RATE_ARRAYS)
    for name, values in rates.arrays().items():
        assert back["toy"][name].dtype == np.float32
        np.testing.assert_array_equal(back["toy"][name], values.astype(np.float32))


def test_writing_into_an_existing_file_adds_and_replaces_groups_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "scaling.h5"
    write_submission(path, {"mc_maze_large": toy_rates(seed=1), "mc_maze_medium": toy_rates(seed=2)})
    replacement = toy_rates(seed=3)
    write_submission(path, {"mc_maze_medium": replacement, "mc_maze_small": toy_rates(seed=4)})
    back = read_submission(path)
    assert sorted(back) == ["mc_maze_large", "mc_maze_medium", "mc_maze_small"]
    np.testing.assert_array_equal(back["mc_maze_large"]["eval_rates_heldout"], toy_rates(seed=1).eval_rates_heldout)
    np.testing.assert_array_equal(back["mc_maze_medium"]["eval_rates_heldout"], replacement.eval_rates_heldout)
    assert [p.name for p in tmp_path.iterdir()] == ["scaling.h5"]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_untouched(tmp_path: Path) -> None:
    path = write_submission(tmp_path / "sub.h5", {"toy": toy_rates(seed=1)})
    before = path.read_bytes()
    broken = toy_rates()
    broken.eval_rates_heldout = np.array([object()])  # h5py cannot store it: the write fails midway
    with pytest.raises(TypeError):
        write_submission(path, {"toy": toy_rates(seed=2), "other": broken})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sub.h5"]


def test_invalid_group_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SubmissionError, match="invalid group name 'a/b'"):
        write_submission(tmp_path / "sub.h5", {"a/b": toy_rates()})


def test_unreadable_file_is_a_submission_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.h5"
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(SubmissionError, match="(?s)broken.h5: invalid submission.*not a readable HDF5 file"):
        read_submission(path)
    assert "file not found" in messages(validate_submission(tmp_path / "absent.h5", TOY_EXPECTED))[0]


# --- expected shapes -------------------------------------------------------------------------

def test_expected_shapes_from_a_spec_follow_phase_and_bin_size() -> None:
    assert ExpectedShapes.from_spec(TOY, "val", 5) == ExpectedShapes(
        n_train=6, n_eval=4, n_bins=20, n_forward_bins=40, n_heldin=3, n_heldout=2)
    assert ExpectedShapes.from_spec(TOY, "test", 20) == ExpectedShapes(
        n_train=10, n_eval=5, n_bins=5, n_forward_bins=10, n_heldin=3, n_heldout=2)
    maze = expected_for_dataset(BUILTIN["mc_maze"], "val", 20)
    assert maze == {"mc_maze_20": ExpectedShapes(1721, 574, 35, 10, 137, 45)}


def test_expected_shapes_from_targets_read_every_size() -> None:
    targets = {
        "toy": {
            "eval_spikes_heldout": np.zeros((4, 20, 2)), "train_behavior": np.zeros((6, 20, 2)),
            "eval_spikes_heldin_forward": np.zeros((4, 40, 3)), "eval_spikes_heldout_forward": np.zeros((4, 40, 2)),
        },
        "no_eval_spikes": {"train_behavior": np.zeros((6, 20, 2))},
    }
    assert expected_from_targets(targets) == {"toy": ExpectedShapes.from_spec(TOY, "val", 5)}


# --- validation: one test per problem kind ---------------------------------------------------

def test_a_valid_submission_has_no_problems_and_float64_is_accepted() -> None:
    assert validate_submission(toy_arrays(), TOY_EXPECTED) == []
    assert validate_submission({"toy": toy_rates(dtype=np.float64).arrays()}, TOY_EXPECTED) == []
    forward_free = toy_arrays(eval_rates_heldin_forward=None, eval_rates_heldout_forward=None)
    assert validate_submission(forward_free, TOY_EXPECTED) == []


def test_wrong_group_is_reported_as_missing_and_unexpected() -> None:
    arrays = {"toy_20": toy_arrays()["toy"]}
    assert messages(validate_submission(arrays, TOY_EXPECTED)) == [
        "group 'toy': missing group; the submission holds 'toy_20'",
        "group 'toy_20': unexpected group; expected 'toy'",
    ]
    assert messages(validate_submission(arrays, TOY_EXPECTED, allow_extra_groups=True)) == [
        "group 'toy': missing group; the submission holds 'toy_20'",
    ]


def test_missing_required_array_and_half_a_forward_pair() -> None:
    problems = validate_submission(toy_arrays(eval_rates_heldout=None, eval_rates_heldout_forward=None), TOY_EXPECTED)
    assert messages(problems) == [
        "group 'toy', array 'eval_rates_heldout': required array is missing",
        "group 'toy', array 'eval_rates_heldout_forward': missing while 'eval_rates_heldin_forward' is present "
        "(give both or neither)",
    ]


def test_unknown_array_name_is_reported() -> None:
    arrays = toy_arrays()
    arrays["toy"]["eval_rate_heldout"] = arrays["toy"]["eval_rates_heldout"]
    [problem] = validate_submission(arrays, TOY_EXPECTED)
    assert problem.group == "toy" and problem.array == "eval_rate_heldout"
    assert "unknown array name" in problem.message


def test_wrong_shape_names_the_axis_and_sizes() -> None:
    problems = validate_submission(toy_arrays(eval_rates_heldout=np.ones((4, 20, 5), np.float32)), TOY_EXPECTED)
    assert messages(problems) == [
        "group 'toy', array 'eval_rates_heldout': shape (4, 20, 5), expected (4, 20, 2): "
        "5 held-out units, expected 2",
    ]
    flat = validate_submission(toy_arrays(train_rates_heldin=np.ones((6, 60), np.float32)), TOY_EXPECTED)
    assert messages(flat) == [
        "group 'toy', array 'train_rates_heldin': 2-d array of shape (6, 60); expected 3-d "
        "(train trials, bins, held-in units)",
    ]


def test_open_sizes_must_agree_between_arrays() -> None:
    open_units = {"toy": ExpectedShapes(n_train=6, n_eval=4, n_bins=20, n_forward_bins=40, n_heldin=None,
                                        n_heldout=None)}
    assert validate_submission(toy_arrays(), open_units) == []
    problems = validate_submission(toy_arrays(eval_rates_heldin=np.ones((4, 20, 7), np.float32)), open_units)
    assert messages(problems) == [
        "group 'toy', array 'eval_rates_heldin': shape (4, 20, 7), expected (4, 20, 3): 7 held-in units, expected 3",
    ]


def test_dtype_policy_refuses_integers_and_float16() -> None:
    integer = validate_submission(toy_arrays(eval_rates_heldout=np.ones((4, 20, 2), np.int64)), TOY_EXPECTED)
    assert messages(integer) == [
        "group 'toy', array 'eval_rates_heldout': dtype int64, expected float32 or float64 "
        "(rates must be floating point)",
    ]
    half = validate_submission(toy_arrays(eval_rates_heldout=np.ones((4, 20, 2), np.float16)), TOY_EXPECTED)
    assert "dtype float16, expected float32 or float64 (too imprecise for scoring)" in messages(half)[0]


def test_nan_is_reported_with_the_trial_indices() -> None:
    values = np.ones((4, 20, 2), np.float32)
    values[1, 3, 0] = values[1, 4, 1] = values[3, 0, 0] = np.nan
    problems = validate_submission(toy_arrays(eval_rates_heldout=values), TOY_EXPECTED)
    assert messages(problems) == ["group 'toy', array 'eval_rates_heldout': 3 NaN value(s) in trials 1, 3"]


def test_long_trial_lists_are_summarised() -> None:
    values = np.full((6, 20, 3), np.nan, np.float32)
    [problem] = validate_submission(toy_arrays(train_rates_heldin=values), TOY_EXPECTED)
    assert problem.message == "360 NaN value(s) in trials 0, 1, 2, 3, 4, 5"
    many = {"toy": ExpectedShapes(n_train=None, n_eval=4, n_bins=20, n_forward_bins=40, n_heldin=3, n_heldout=2)}
    arrays = toy_arrays(train_rates_heldin=np.full((15, 20, 3), np.nan, np.float32),
                        train_rates_heldout=np.ones((15, 20, 2), np.float32))
    [problem] = validate_submission(arrays, many)
    assert problem.message.endswith("trials 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 5 more")


def test_infinite_and_negative_values_are_reported() -> None:
    values = np.ones((4, 40, 3), np.float32)
    values[2, 0, 0] = np.inf
    values[0, 1, 1] = -0.5
    values[2, 1, 1] = -0.25
    problems = validate_submission(toy_arrays(eval_rates_heldin_forward=values), TOY_EXPECTED)
    assert messages(problems) == [
        "group 'toy', array 'eval_rates_heldin_forward': 1 infinite value(s) in trial 2",
        "group 'toy', array 'eval_rates_heldin_forward': 2 negative rate(s) (minimum -0.5) in trials 0, 2",
    ]


def test_zero_rates_are_allowed() -> None:
    assert validate_submission(toy_arrays(eval_rates_heldout=np.zeros((4, 20, 2), np.float32)), TOY_EXPECTED) == []


def test_file_layout_problems_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as file:
        file["eval_rates_heldout"] = np.ones((4, 20, 2), np.float32)
    assert messages(validate_submission(path, TOY_EXPECTED)) == [
        "top-level dataset 'eval_rates_heldout'; rates belong in a group per dataset",
        "the submission holds no groups",
    ]


def test_require_valid_submission_raises_with_every_problem(tmp_path: Path) -> None:
    rates = toy_rates()
    rates.eval_rates_heldout[0, 0, 0] = np.nan
    path = write_submission(tmp_path / "sub.h5", {"toy": rates, "extra": toy_rates()})
    with pytest.raises(SubmissionError) as caught:
        require_valid_submission(path, TOY_EXPECTED)
    assert len(caught.value.problems) == 2
    assert str(path) in str(caught.value) and "NaN value(s) in trial 0" in str(caught.value)
    clean = write_submission(tmp_path / "clean.h5", {"toy": toy_rates(), "extra": toy_rates()})
    both = TOY_EXPECTED | {"extra": TOY_EXPECTED["toy"]}
    assert sorted(require_valid_submission(clean, both)) == ["extra", "toy"]


# --- the validate command --------------------------------------------------------------------

def small_maze_rates(**changes: np.ndarray) -> Rates:
    shapes = ExpectedShapes.from_spec(BUILTIN["mc_maze_small"], "val", 20)
    rates = make_rates(shapes.n_train, shapes.n_eval, shapes.n_bins, shapes.n_forward_bins,
                       shapes.n_heldin, shapes.n_heldout)
    for name, value in changes.items():
        setattr(rates, name, value)
    return rates


def test_validate_command_accepts_a_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_submission(tmp_path / "sub.h5", {"mc_maze_small_20": small_maze_rates()})
    assert main(["validate", str(path)]) == 0
    assert main(["validate", str(path), "--dataset", "mc_maze_small", "--bin", "20"]) == 0
    assert "valid for the val phase (mc_maze_small_20)" in capsys.readouterr().out


def test_validate_command_prints_each_problem_and_exits_1(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = small_maze_rates()
    bad.eval_rates_heldout[[2, 7]] = -1.0
    path = write_submission(tmp_path / "sub.h5", {"mc_maze_small_20": bad, "my_group": small_maze_rates()})
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "group 'mc_maze_small_20', array 'eval_rates_heldout': 2450 negative rate(s) (minimum -1) in trials 2, 7" in out
    assert "group 'my_group': not a known dataset group name" in out
    assert "invalid (2 problem(s))" in out


def test_validate_command_checks_the_phase_and_the_named_dataset(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = write_submission(tmp_path / "sub.h5", {"mc_maze_small_20": small_maze_rates()})
    assert main(["validate", str(path), "--phase", "test"]) == 1
    assert "75 train trials, expected 100" in capsys.readouterr().out
    assert main(["validate", str(path), "--dataset", "mc_maze_small"]) == 1  # 5 ms group expected
    assert "group 'mc_maze_small': missing group; the submission holds 'mc_maze_small_20'" in capsys.readouterr().out


def test_validate_command_reports_an_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junk.h5"
    path.write_text("junk")
    assert main(["validate", str(path)]) == 1
    assert "not a readable HDF5 file" in capsys.readouterr().out
    valid = write_submission(tmp_path / "sub.h5", {"mc_maze_small_20": small_maze_rates()})
    assert main(["validate", str(valid), "--dataset", "no_such_dataset"]) == 2
    assert "unknown dataset 'no_such_dataset'" in capsys.readouterr().err


# --- the score command -----------------------------------------------------------------------

def toy_targets(seed: int = 0) -> EvalTargets:
    """Targets shaped like the toy val phase: 6 train / 4 eval trials, 20 bins, 3 + 2 units."""
    rng = np.random.default_rng(seed)
    shapes = ExpectedShapes.from_spec(TOY, "val", 5)
    eval_heldout = rng.poisson(0.3, (shapes.n_eval, shapes.n_bins, shapes.n_heldout)).astype(float)
    eval_heldout[0, :3, 0] = np.nan  # unobserved stretch: masked by the scorer
    return EvalTargets(
        dataset="toy", bin_ms=5, eval_spikes_heldout=eval_heldout,
        eval_spikes_heldin_forward=rng.poisson(0.3, (shapes.n_eval, shapes.n_forward_bins, shapes.n_heldin)),
        eval_spikes_heldout_forward=rng.poisson(0.3, (shapes.n_eval, shapes.n_forward_bins, shapes.n_heldout)),
        train_behavior=rng.normal(size=(shapes.n_train, shapes.n_bins, 2)),
        eval_behavior=rng.normal(size=(shapes.n_eval, shapes.n_bins, 2)),
        psth=rng.gamma(2.0, 0.1, (2, shapes.n_bins, shapes.n_heldin + shapes.n_heldout)),
        train_cond_idx=[np.array([0, 2, 4]), np.array([1, 3, 5])],
        eval_cond_idx=[np.array([0, 2]), np.array([1, 3])],
    )


@pytest.fixture()
def scored_files(tmp_path: Path) -> tuple[Path, Path]:
    """A valid submission and its targets, group 'mc_maze_small' so the scaling naming shows."""
    targets = write_targets(tmp_path / "targets.h5", {"mc_maze_small": toy_targets()})
    submission = write_submission(tmp_path / "sub.h5", {"mc_maze_small": toy_rates()})
    return submission, targets


def test_score_json_is_exactly_what_evaluate_returns(scored_files: tuple[Path, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    submission, targets = scored_files
    assert main(["score", str(submission), "--targets", str(targets), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == evaluate(str(targets), str(submission))
    assert list(printed[0]) == ["mc_maze_scaling_split"]
    assert set(printed[0]["mc_maze_scaling_split"]) == {"[100] co-bps", "[100] vel R2", "[100] psth R2",
                                                        "[100] fp-bps"}


def test_score_prints_a_table_by_default(scored_files: tuple[Path, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    submission, targets = scored_files
    assert main(["score", str(submission), "--targets", str(targets)]) == 0
    out = capsys.readouterr().out
    [entry] = evaluate(str(targets), str(submission))
    co_bps = entry["mc_maze_scaling_split"]["[100] co-bps"]
    assert "mc_maze_scaling_split\n" in out and f"[100] co-bps   {co_bps:.4f}" in out


def test_score_refuses_an_invalid_submission_with_the_validation_messages(
        tmp_path: Path, scored_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, targets = scored_files
    bad = toy_rates()
    bad.eval_rates_heldout[3, 0, 0] = np.nan
    submission = write_submission(tmp_path / "bad.h5", {"mc_maze_small": bad, "mc_maze_large": toy_rates()})
    assert main(["score", str(submission), "--targets", str(targets)]) == 2
    err = capsys.readouterr().err
    assert "group 'mc_maze_small', array 'eval_rates_heldout': 1 NaN value(s) in trial 3" in err
    assert f"group 'mc_maze_large': no targets for this group in {targets} (it has 'mc_maze_small')" in err
    wrong_shape = write_submission(tmp_path / "short.h5", {"mc_maze_small": toy_rates(phase="test")})
    assert main(["score", str(wrong_shape), "--targets", str(targets)]) == 2
    assert "10 train trials, expected 6" in capsys.readouterr().err


def test_score_needs_targets(scored_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    submission, _ = scored_files
    assert main(["score", str(submission)]) == 2
    assert "scoring needs targets: --targets FILE" in capsys.readouterr().err


def test_score_test_phase_says_where_to_get_the_ground_truth(
        tmp_path: Path, scored_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    submission, _ = scored_files
    assert main(["score", str(submission), "--phase", "test", "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert f"test-split ground truth not found at {tmp_path / 'data' / 'eval_data_test.h5'}" in err
    assert "github.com/neurallatents/nlb_tools" in err and "data/eval_data_test.h5" in err


def test_score_test_phase_refuses_a_file_of_the_wrong_size_or_digest(
        tmp_path: Path, scored_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    submission, _ = scored_files
    data = tmp_path / "data"
    data.mkdir()
    ground_truth = data / "eval_data_test.h5"
    ground_truth.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    assert main(["score", str(submission), "--phase", "test", "--data-dir", str(data)]) == 2
    assert "43 bytes, expected 105,927,616: it is truncated, altered or another file" in capsys.readouterr().err
    with ground_truth.open("r+b") as file:
        file.truncate(test_targets.TEST_TARGETS.size)  # right size, wrong content (sparse zeros)
    assert main(["score", str(submission), "--phase", "test", "--data-dir", str(data)]) == 2
    assert f"expected {test_targets.TEST_TARGETS.sha256}" in capsys.readouterr().err


def test_score_test_phase_uses_the_verified_ground_truth(
        tmp_path: Path, scored_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    submission, targets = scored_files
    data = tmp_path / "data"
    data.mkdir()
    ground_truth = data / "eval_data_test.h5"
    ground_truth.write_bytes(targets.read_bytes())
    # Stand-in reference: the real file is 106 MB; the check itself is what is tested here.
    monkeypatch.setattr(test_targets, "TEST_TARGETS", Asset(
        path="eval_data_test.h5", size=ground_truth.stat().st_size,
        sha256=hashlib.sha256(ground_truth.read_bytes()).hexdigest()))
    assert main(["score", str(submission), "--phase", "test", "--data-dir", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == evaluate(str(targets), str(submission))
