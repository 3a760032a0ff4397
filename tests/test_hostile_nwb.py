"""Bad NWB content, made in each test from a copy of a tiny synthetic train file: what breaks the
benchmark's definitions is refused naming the file and the column; what it tolerates is kept
with a warning naming the units or trials, and gives exactly the tensors the clean file gives."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from hostile import (
    TINY_COUNTS,
    Tiny,
    UserDataset,
    check_tree,
    duplicate_trial,
    make_tiny,
    ragged_rows,
    rewrite,
    run_cli,
    snapshot,
    user_dataset,
    write_ragged,
)

from nlb_suite.cli import main
from nlb_suite.data.nwb import NWBFormatError, read_recording
from nlb_suite.scoring import read_targets
from nlb_suite.tensors import make_targets


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return make_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def clean_targets(tiny: Tiny, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The targets of the unaltered copy, to compare the tolerated alterations with."""
    folder = tmp_path_factory.mktemp("clean")
    user = user_dataset(tiny, folder / "user")
    assert main(["targets", str(user.toml), "-o", str(folder / "targets.h5")]) == 0
    return read_targets(folder / "targets.h5")["hostile"]


def _units(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["units/id"][()], f["units/heldout"][()]


def _trials(path: Path, column: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[f"intervals/trials/{column}"][()]


# --- refused: the exit status, the message, and nothing written -------------------------------

def heldout_strings(user: UserDataset) -> None:
    _, heldout = _units(user.train)
    rewrite(user.train, "units/heldout", np.where(heldout, b"yes", b"no"))


def heldout_floats(user: UserDataset) -> None:
    _, heldout = _units(user.train)
    rewrite(user.train, "units/heldout", heldout.astype(float))


def heldout_twos(user: UserDataset) -> None:
    _, heldout = _units(user.train)
    rewrite(user.train, "units/heldout", heldout.astype(np.int64) * 2)


def heldout_short(user: UserDataset) -> None:
    _, heldout = _units(user.train)
    rewrite(user.train, "units/heldout", heldout[:-1])


def duplicated_trial(user: UserDataset) -> None:
    duplicate_trial(user.train, 3)


def duplicated_trial_new_id(user: UserDataset) -> None:
    duplicate_trial(user.train, 3, new_id=999)


def nan_spike(user: UserDataset) -> None:
    rows = ragged_rows(user.train, "units/spike_times")
    rows[2] = np.append(rows[2], np.nan)
    write_ragged(user.train, "units/spike_times", rows)


def index_past_the_data(user: UserDataset) -> None:
    with h5py.File(user.train, "r") as f:
        ends = f["units/spike_times_index"][()].astype(np.int64)
    ends[-1] += 10
    rewrite(user.train, "units/spike_times_index", ends)


def index_decreasing(user: UserDataset) -> None:
    with h5py.File(user.train, "r") as f:
        ends = f["units/spike_times_index"][()].astype(np.int64)
    ends[2], ends[3] = ends[3], ends[2]
    rewrite(user.train, "units/spike_times_index", ends)


def index_of_floats(user: UserDataset) -> None:
    with h5py.File(user.train, "r") as f:
        ends = f["units/spike_times_index"][()]
    rewrite(user.train, "units/spike_times_index", ends.astype(float))


def obs_interval_backwards(user: UserDataset) -> None:
    rows = ragged_rows(user.train, "units/obs_intervals")
    rows[1] = rows[1][:, ::-1].copy()
    write_ragged(user.train, "units/obs_intervals", rows)


def stop_time_infinite(user: UserDataset) -> None:
    stop = _trials(user.train, "stop_time")
    stop[-1] = np.inf
    rewrite(user.train, "intervals/trials/stop_time", stop)


def times_in_microseconds(user: UserDataset) -> None:
    rewrite(user.train, "intervals/trials/start_time", _trials(user.train, "start_time") * 1e6)


def column_too_short(user: UserDataset) -> None:
    rewrite(user.train, "intervals/trials/go_cue_time", _trials(user.train, "go_cue_time")[:-2])


def duplicated_unit_id(user: UserDataset) -> None:
    ids, _ = _units(user.train)
    ids[1] = ids[0]
    rewrite(user.train, "units/id", ids)


def every_unit_heldout(user: UserDataset) -> None:
    _, heldout = _units(user.train)
    rewrite(user.train, "units/heldout", np.ones_like(heldout))


def no_unit_heldout(user: UserDataset) -> None:
    _, heldout = _units(user.train)
    rewrite(user.train, "units/heldout", np.zeros_like(heldout))


def behavior_cut_short(user: UserDataset) -> None:
    with h5py.File(user.train, "r") as f:
        data = f["processing/behavior/hand_vel/data"][:1000]  # the first second: before any trial's window
    rewrite(user.train, "processing/behavior/hand_vel/data", data)


def split_not_text(user: UserDataset) -> None:
    rewrite(user.train, "intervals/trials/split", np.array([b"\xff\xfe"] * len(_trials(user.train, "split"))))


REFUSED: list[tuple[Callable[[UserDataset], None], str]] = [
    (heldout_strings, "units column 'heldout' must be boolean (True for the held-out units), not |S3 with "
                      "values b'no', b'yes'"),
    (heldout_floats, "units column 'heldout' must be boolean (True for the held-out units), not float64 with "
                     "values 0.0, 1.0"),
    (heldout_twos, "units column 'heldout' must be boolean (True for the held-out units), not int64 with "
                   "values 0, 2"),
    (heldout_short, "units column 'heldout' has shape (8,) for 9 units"),
    (duplicated_trial, "trials [3, 14] (rows of the trials table) have the same id: a duplicated trial would "
                       "be counted twice; remove the copies"),
    (duplicated_trial_new_id, "trials [3, 14] (rows of the trials table) have the same start_time and stop_time"),
    (nan_spike, "spike_times of unit(s) [{unit[2]}] hold NaN or infinite times"),
    (index_past_the_data, "/units/spike_times_index does not index spike_times"),
    (index_decreasing, "/units/spike_times_index does not index spike_times"),
    (index_of_floats, "/units/spike_times_index is not a 1-d integer index"),
    (obs_interval_backwards, "obs_intervals of unit {unit[1]}: every interval needs a finite start and a stop at or after it"),
    (stop_time_infinite, "trials column 'stop_time' holds infinite times"),
    (times_in_microseconds, "trials column 'start_time' holds times up to"),
    (column_too_short, "trials column 'go_cue_time' has 12 values for 14 trials"),
    (duplicated_unit_id, "units table has duplicated unit ids [{unit[0]}]"),
    (split_not_text, "trials column 'split' holds text that is not UTF-8"),
    (every_unit_heldout, "units column 'heldout' marks every unit of 9 as held out; the train file needs both "
                         "held-in units (False) and held-out units (True"),
    (no_unit_heldout, "units column 'heldout' marks no unit of 9 as held out"),
    (behavior_cut_short, "behaviour series 'hand_vel' (0.000 to 0.999 s) does not cover the windows of trial(s)"),
]


@pytest.mark.parametrize(("alter", "words"), REFUSED, ids=[case[0].__name__ for case in REFUSED])
def test_refused_naming_the_file_and_column(tiny: Tiny, tmp_path: Path, alter: Callable[[UserDataset], None],
                                            words: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    words = words.format(unit=_units(user.train)[0].tolist())
    alter(user)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    targets = run_cli(capsys, "targets", user.toml)
    evaluated = run_cli(capsys, "eval", "--model", "smoothing", "--dataset", user.toml,
                        "--results", tmp_path / "results.jsonl")

    for result, command in ((targets, "targets"), (evaluated, "eval")):
        assert result.code == 2
        assert f"nlb-suite {command}: error: {user.train}: " in result.err
        assert words in result.err
    assert check_tree(before, tmp_path) == []  # no targets, no submission, no record


def test_integer_heldout_of_zeros_and_ones_is_read_as_boolean(tiny: Tiny, tmp_path: Path,
                                                             clean_targets: dict[str, np.ndarray]) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    _, heldout = _units(user.train)
    rewrite(user.train, "units/heldout", heldout.astype(np.uint8))
    assert read_recording(user.train).units.heldout.tolist() == heldout.tolist()


# --- tolerated: a warning naming the units or trials, and the clean file's tensors --------------

def unsorted_spikes(user: UserDataset) -> None:
    rows = ragged_rows(user.train, "units/spike_times")
    for unit in (1, 4):
        rows[unit] = rows[unit][::-1].copy()
    write_ragged(user.train, "units/spike_times", rows)


def spikes_outside_the_session(user: UserDataset) -> None:
    rows = ragged_rows(user.train, "units/spike_times")
    rows[0] = np.concatenate([[-0.5], rows[0], [1e4]])
    rows[5] = np.append(rows[5], 2e4)
    write_ragged(user.train, "units/spike_times", rows)


def spikes_outside_obs_intervals(user: UserDataset) -> None:
    rows = ragged_rows(user.train, "units/spike_times")
    gaps = ragged_rows(user.train, "units/obs_intervals")[3]
    unobserved = (gaps[0, 1] + gaps[1, 0]) / 2  # between the first two observed stretches
    rows[3] = np.sort(np.append(rows[3], [unobserved, unobserved + 1e-4]))
    write_ragged(user.train, "units/spike_times", rows)


TOLERATED: list[tuple[Callable[[UserDataset], None], str]] = [
    (unsorted_spikes, "spike_times of unit(s) [{unit[1]}, {unit[4]}] are not in increasing order; sorted them"),
    (spikes_outside_the_session, "3 spike time(s) of unit(s) [{unit[0]}, {unit[5]}] lie outside the session (0 to "),
    (spikes_outside_obs_intervals, "2 spike time(s) of unit(s) [{unit[3]}] lie outside the unit's obs_intervals; they "
                                   "are ignored, as the benchmark ignores unobserved time"),
]


@pytest.mark.parametrize(("alter", "words"), TOLERATED, ids=[case[0].__name__ for case in TOLERATED])
def test_tolerated_with_a_warning_and_the_clean_targets(tiny: Tiny, tmp_path: Path,
                                                        alter: Callable[[UserDataset], None], words: str,
                                                        clean_targets: dict[str, np.ndarray],
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    words = words.format(unit=_units(user.train)[0].tolist())
    alter(user)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    with caplog.at_level(logging.WARNING):
        result = run_cli(capsys, "targets", user.toml)

    assert result.code == 0
    assert f"{user.train}: {words}" in caplog.text
    assert check_tree(before, tmp_path, allowed=["submissions/"]) == [
        "submissions/", "submissions/hostile_val_targets.h5"]
    altered = read_targets(tmp_path / "submissions/hostile_val_targets.h5")["hostile"]
    assert sorted(altered) == sorted(clean_targets)
    for name, values in clean_targets.items():
        if values.dtype == object:
            assert [a.tolist() for a in altered[name]] == [a.tolist() for a in values], name
        else:
            np.testing.assert_array_equal(altered[name], values, err_msg=name)


def test_unsorted_spikes_give_a_submission_and_its_record(tiny: Tiny, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    unsorted_spikes(user)
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results.jsonl"
    with caplog.at_level(logging.WARNING):
        result = run_cli(capsys, "eval", "--model", "smoothing", "--dataset", user.toml, "--results", results,
                         "--n-boot", "10")
    assert result.code == 0
    assert "are not in increasing order; sorted them" in caplog.text
    assert (tmp_path / "submissions/hostile_val_5ms_smoothing.h5").is_file()
    (record,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert record["dataset"] == "hostile"


def test_trials_without_start_or_stop_are_named(tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    start, stop = _trials(user.train, "start_time"), _trials(user.train, "stop_time")
    start[4], stop[9] = np.nan, np.nan
    rewrite(user.train, "intervals/trials/start_time", start)
    rewrite(user.train, "intervals/trials/stop_time", stop)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        result = run_cli(capsys, "targets", user.toml)
    assert result.code == 0
    assert (f"{user.train}: trial(s) [4, 9] have no start_time or stop_time (NaN); their windows are placed by "
            "the alignment event alone") in caplog.text


def test_a_duplicated_trial_never_enlarges_the_training_set(tiny: Tiny, tmp_path: Path) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    train_rows = np.flatnonzero(_trials(user.train, "split") == b"train")
    duplicate_trial(user.train, int(train_rows[0]))
    with pytest.raises(NWBFormatError, match="duplicated trial would be counted twice"):
        read_recording(user.train)


def test_the_clean_copy_reads_without_a_warning(tiny: Tiny, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    with caplog.at_level(logging.WARNING):
        read_recording(user.train)
        read_recording(user.test)
        make_targets(user.spec, "val", 5)
    assert caplog.text == ""


@pytest.mark.parametrize(("line", "words"), [
    ('psth_conditions = ["trial_type", "no_such_column"]', "trials table lacks column(s) ['no_such_column'] named "
                                                          "by dataset 'hostile'"),
    ('decode_mask_field = "no_such_column"', "trials table lacks column(s) ['no_such_column']"),
    ('align_field = "no_such_column"', "trials table lacks column(s) ['no_such_column']"),
    ('decode_mask_field = "trial_type"', "trials column 'trial_type' (the decode mask) must be boolean"),
])
def test_columns_the_spec_names_are_checked_before_anything_is_fitted_or_written(
        tiny: Tiny, tmp_path: Path, line: str, words: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    key = line.split(" =")[0]
    lines = [text for text in user.toml.read_text().splitlines() if not text.startswith(f"{key} =")]
    user.toml.write_text("\n".join([line, *lines]) + "\n")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    result = run_cli(capsys, "eval", "--model", "smoothing", "--dataset", user.toml,
                     "--results", tmp_path / "results.jsonl")

    assert result.code == 2
    assert f"nlb-suite eval: error: {user.train}: {words}" in result.err
    assert check_tree(before, tmp_path) == []  # no submission without its record


def test_targets_into_a_folder_is_a_clear_error(tiny: Tiny, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    folder = tmp_path / "out.h5"
    folder.mkdir()
    before = snapshot(tmp_path)
    result = run_cli(capsys, "targets", user.toml, "-o", folder)
    assert result.code == 2
    assert f"nlb-suite targets: error: cannot write {folder}: Is a directory" in result.err
    assert check_tree(before, tmp_path) == []


def test_trials_of_an_unknown_split_are_named_and_left_out(tiny: Tiny, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from nlb_suite.tensors import make_tensors

    user = user_dataset(tiny, tmp_path / "user")
    split = _trials(user.train, "split")
    ids = _trials(user.train, "id")
    rows = np.flatnonzero(split == b"train")[:2]
    split[rows] = [b"TRAIN", b"validation"]
    rewrite(user.train, "intervals/trials/split", split.astype(object))
    with caplog.at_level(logging.WARNING):
        tensors = make_tensors(user.spec, "val", 5)
    assert (f"{user.train}: trial(s) {ids[rows].tolist()} have split value(s) ['TRAIN', 'validation'], not one of "
            "['train', 'val', 'test', 'none']; they belong to no split and are left out") in caplog.text
    assert tensors.train_spikes_heldin.shape[0] == TINY_COUNTS.val_train_trials - 2


def test_bins_without_behaviour_are_named_by_trial(tiny: Tiny, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    clean = make_targets(user.spec, "val", 5)
    start = _trials(user.train, "start_time")
    split, ids = _trials(user.train, "split"), _trials(user.train, "id")
    val = int(np.flatnonzero(split == b"val")[0])  # blank the behaviour of one whole val trial
    with h5py.File(user.train, "r+") as f:
        data = f["processing/behavior/hand_vel/data"]
        first, last = int(start[val] * 1000), int(start[val + 1] * 1000) if val + 1 < len(start) else len(data)
        values = data[()]
        values[first:last] = np.nan
        data[...] = values
    with caplog.at_level(logging.WARNING):
        altered = make_targets(user.spec, "val", 5)
    assert (f"{user.train}: behaviour series 'hand_vel' is missing (NaN) in 140 of 560 bins of the evaluation "
            f"windows, in trial(s) [{ids[val]}]; those bins are left out of the velocity decoding (vel R2)") in caplog.text
    assert "training windows" not in caplog.text
    assert altered.eval_behavior is not None and clean.eval_behavior is not None
    np.testing.assert_array_equal(altered.eval_spikes_heldout, clean.eval_spikes_heldout)


def test_trials_without_a_psth_condition_are_named(tiny: Tiny, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    conditions, ids = _trials(user.train, "trial_type").astype(float), _trials(user.train, "id")
    conditions[[2, 5]] = np.nan
    rewrite(user.train, "intervals/trials/trial_type", conditions)
    with caplog.at_level(logging.WARNING):
        make_targets(user.spec, "val", 5)
    assert (f"{user.train}: trial(s) {ids[[2, 5]].tolist()} have no value (NaN) in PSTH condition column(s) "
            "['trial_type', 'trial_version']; they are left out of the PSTHs (psth R2)") in caplog.text
