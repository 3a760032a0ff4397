"""Where a run writes: every output location checked before the model fits (a folder that is a
file, a results store that is a folder, an old submission that cannot be extended), the run
scored before its submission is written (a damaged truth file leaves no submission without its
record), and every output name put in its folder through `core.paths.inside`."""

from __future__ import annotations

import dataclasses
import faulthandler
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from hostile import TINY_COUNTS, Tiny, UserDataset, check_tree, make_tiny, run_cli, snapshot, user_dataset

from nlb_suite.core import writable
from nlb_suite.core.paths import UnsafePathError
from nlb_suite.core.spec import DatasetSpec
from nlb_suite.core.writable import OutputLocationError, check_file, check_folder
from nlb_suite.datasets import BUILTIN, get_spec
from nlb_suite.datasets.synthetic import dataset_folder, generate
from nlb_suite.models.lfads import LFADS
from nlb_suite.models.smoothing import SmoothingModel
from nlb_suite.outputs.artifacts import latents_path
from nlb_suite.pipeline.eval import checkpoint_folder, submission_path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return make_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def user(tiny: Tiny, tmp_path: Path) -> UserDataset:
    return user_dataset(tiny, tmp_path / "user")


@pytest.fixture
def no_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit that fails the test: the refusals below must come before any training."""
    def fit(self: object, tensors: object) -> None:
        raise AssertionError("the model was fitted before the outputs were checked")

    monkeypatch.setattr(SmoothingModel, "fit", fit)
    monkeypatch.setattr(LFADS, "fit", fit)


def _eval(capsys: pytest.CaptureFixture[str], user: UserDataset, *extra: str | Path, model: str = "smoothing"):
    return run_cli(capsys, "eval", "--model", model, "--dataset", user.toml, "--n-boot", "10", *extra)


def test_a_results_store_that_is_a_folder_is_refused_before_fitting(
        user: UserDataset, tmp_path: Path, no_fit: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "results"
    store.mkdir()
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    result = _eval(capsys, user, "--results", store)

    assert result.code == 2
    assert f"nlb-suite eval: error: cannot write the results store to {store}: it is a folder" in result.err
    assert check_tree(before, tmp_path) == []  # above all, no submission without its record


def test_a_submissions_folder_that_is_a_file_is_refused_before_fitting(
        user: UserDataset, tmp_path: Path, no_fit: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "subs").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    result = _eval(capsys, user, "--results", tmp_path / "r.jsonl", "-o", "subs")

    assert result.code == 2
    assert "cannot use subs as the folder of the submission: it is a file; give another folder" in result.err
    assert check_tree(before, tmp_path) == []


def test_a_file_in_the_way_of_the_checkpoints_folder_is_refused_before_training(
        user: UserDataset, tmp_path: Path, no_fit: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "runs").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    result = _eval(capsys, user, "--results", tmp_path / "r.jsonl", model="lfads")

    assert result.code == 2
    assert "cannot use runs/checkpoints as the checkpoints folder: runs is a file" in result.err
    assert check_tree(before, tmp_path) == []


def test_an_old_submission_that_cannot_be_extended_is_refused_before_fitting(
        user: UserDataset, tmp_path: Path, no_fit: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "submissions" / "hostile_val_5ms_smoothing.h5"
    old.parent.mkdir()
    old.write_bytes(b"not HDF5 at all")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    result = _eval(capsys, user, "--results", tmp_path / "r.jsonl")

    assert result.code == 2
    assert "nlb-suite eval: error: submissions/hostile_val_5ms_smoothing.h5: invalid submission" in result.err
    assert "not a readable HDF5 file" in result.err
    assert "the existing file cannot be extended; move it away or write to another file" in result.err
    assert check_tree(before, tmp_path) == []  # the old file is left as it was


@pytest.fixture
def tiny_builtin(monkeypatch: pytest.MonkeyPatch) -> DatasetSpec:
    spec = dataclasses.replace(get_spec("synth_maze"), expected=TINY_COUNTS)
    monkeypatch.setitem(BUILTIN, "synth_maze", spec)
    return spec


def test_a_damaged_truth_file_leaves_no_submission_without_its_record(
        tiny_builtin: DatasetSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    generate(tiny_builtin, data)
    truth = dataset_folder(tiny_builtin, data) / "truth.h5"
    damaged = bytearray(truth.read_bytes())
    damaged[:8] = b"\0" * 8  # the HDF5 signature, so the file keeps its size and its manifest entry
    truth.write_bytes(bytes(damaged))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)

    result = run_cli(capsys, "eval", "--model", "smoothing", "--dataset", "synth_maze", "--data-dir", data,
                     "--results", work / "r.jsonl", "--n-boot", "10")

    assert result.code == 2
    assert f"nlb-suite eval: error: {truth}: not a readable truth file (" in result.err
    assert "regenerate it with `nlb-suite synth synth_maze --overwrite`" in result.err
    assert check_tree(before, tmp_path) == []


def test_a_run_writes_its_submission_and_record_together(user: UserDataset, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    result = _eval(capsys, user, "--results", tmp_path / "r.jsonl")
    assert result.code == 0
    assert check_tree(before, tmp_path, allowed=["submissions/", "r.jsonl"]) == [
        "r.jsonl", "submissions/", "submissions/hostile_val_5ms_smoothing.h5"]
    (record,) = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert record["submission"].endswith("submissions/hostile_val_5ms_smoothing.h5")


@pytest.mark.parametrize("model", ["../x", "a/b", "/abs"])
def test_output_names_cannot_leave_their_folders(tiny: Tiny, tmp_path: Path, model: str) -> None:
    """Dataset names are checked when a spec is made; these paths hold a model name too (a
    plug-in's registered name), and the same function keeps them in their folder."""
    with pytest.raises(UnsafePathError, match="path separator"):
        submission_path(tmp_path, tiny.spec, "val", 5, model)
    with pytest.raises(UnsafePathError, match="path separator"):
        checkpoint_folder(tmp_path, f"synth_maze_val_5ms_{model}", {})
    assert latents_path(tmp_path / "s.h5") == tmp_path / "s_latents.h5"


def test_the_location_checks_create_nothing(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    assert check_folder(tmp_path / "a" / "b" / "c", "a folder") == tmp_path / "a" / "b" / "c"
    assert check_file(tmp_path / "a" / "f.h5", "a file") == tmp_path / "a" / "f.h5"
    (tmp_path / "file").write_text("x")
    before = snapshot(tmp_path)
    with pytest.raises(OutputLocationError, match=f"{tmp_path / 'file'} is a file"):
        check_folder(tmp_path / "file" / "deeper", "a folder")
    with pytest.raises(OutputLocationError, match="it is a folder"):
        check_file(tmp_path, "a file")
    assert check_tree(before, tmp_path) == []


def test_a_folder_without_write_permission_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permissions as a non-root user sees them (root may write anywhere, so they are faked)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(writable.os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    with pytest.raises(OutputLocationError, match=f"no permission to write into {locked}"):
        check_folder(locked / "sub", "the submissions folder")
    (locked / "store.jsonl").write_text("")
    assert check_file(locked / "store.jsonl", "the results store", append=True) == locked / "store.jsonl"
    with pytest.raises(OutputLocationError, match=f"cannot use {locked} as the folder of the submission"):
        check_file(locked / "store.jsonl", "the submission")


# --- a file where a folder must go, for the other commands that write ---------------------------

def test_synth_into_a_data_directory_that_is_a_file(tiny_builtin: DatasetSpec, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.write_text("not a folder")
    before = snapshot(tmp_path)
    for argv in (["synth", "synth_maze", "--data-dir", data],
                 ["eval", "--model", "smoothing", "--dataset", "synth_maze", "--data-dir", data,
                  "--results", tmp_path / "r.jsonl", "-o", tmp_path / "subs"]):
        result = run_cli(capsys, *argv)
        assert result.code == 2
        assert (f"cannot use {data}/synthetic/synth_maze as the folder of dataset 'synth_maze' (under --data-dir / "
                f"$NLB_SUITE_DATA): {data} is a file") in result.err
    assert check_tree(before, tmp_path) == []


def test_fetch_into_a_data_directory_that_is_a_file_asks_the_archive_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from dandi_server import DandiTestServer
    from test_fetch import SPEC, _served

    monkeypatch.setenv("DANDI_NO_ET", "1")
    monkeypatch.setitem(BUILTIN, "mc_maze_small", SPEC)
    data = tmp_path / "data"
    data.write_text("not a folder")
    before = snapshot(tmp_path)
    with DandiTestServer(_served(SPEC)) as server:
        result = run_cli(capsys, "fetch", "mc_maze_small", "--data-dir", data, "--dandi-api-url", server.api_url)
        assert server.requests == []
    assert result.code == 2
    assert f"cannot use {data}/000140/sub-Jenkins as the folder of a downloaded file" in result.err
    assert f"{data} is a file" in result.err
    assert check_tree(before, tmp_path) == []


def test_report_into_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "reports").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    for out in ("reports", "reports/html"):
        result = run_cli(capsys, "report", "--html", "-o", out, "--results", tmp_path / "r.jsonl")
        assert result.code == 2
        assert f"nlb-suite report: error: cannot use {out} as the report folder: " in result.err
    assert check_tree(before, tmp_path) == []


@pytest.fixture
def trial_arrays(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "arrays.npz"
    np.savez_compressed(path, spikes=rng.poisson(0.02, (40, 8, 900)), conditions=np.arange(40) % 4)
    return path


@pytest.mark.parametrize("cut", [100, 1000, -10])
def test_import_trials_from_a_damaged_npz(trial_arrays: Path, tmp_path: Path, cut: int,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    trial_arrays.write_bytes(trial_arrays.read_bytes()[:cut])
    before = snapshot(tmp_path)
    result = run_cli(capsys, "import-trials", trial_arrays, "--name", "mine", "--out", tmp_path / "out",
                     "--window", "100", "800")
    assert result.code == 2
    assert f"nlb-suite import-trials: error: {trial_arrays}: not a readable .npz file (" in result.err
    assert check_tree(before, tmp_path) == []


def test_import_trials_into_a_file(trial_arrays: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.write_text("not a folder")
    before = snapshot(tmp_path)
    result = run_cli(capsys, "import-trials", trial_arrays, "--name", "mine", "--out", out, "--window", "100", "800")
    assert result.code == 2
    assert f"cannot use {out} as the output folder: it is a file" in result.err
    assert check_tree(before, tmp_path) == []


def _crash(path: Path) -> dict[str, object]:
    faulthandler.disable()  # the child inherits pytest's fault handler; its dump would be noise
    os.kill(os.getpid(), signal.SIGSEGV)  # what scipy's compiled MATLAB reader does on some damaged files
    return {}


def test_import_trials_survives_a_matlab_reader_that_crashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from nlb_suite.datasets import trial_arrays

    source = tmp_path / "damaged.mat"
    source.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    monkeypatch.setattr(trial_arrays, "_loadmat", _crash)  # the child process is forked: it sees this
    before = snapshot(tmp_path)
    result = run_cli(capsys, "import-trials", source, "--name", "mine", "--out", tmp_path / "out",
                     "--window", "100", "800")
    assert result.code == 2
    assert (f"nlb-suite import-trials: error: {source}: not a readable MATLAB file (scipy's MATLAB reader crashed "
            "on it); the file is damaged: export it again") in result.err
    assert check_tree(before, tmp_path) == []


def test_import_trials_reports_the_readers_own_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "short.mat"
    source.write_bytes(b"MATLAB 5.0 MAT-file")
    result = run_cli(capsys, "import-trials", source, "--name", "mine", "--out", tmp_path / "out",
                     "--window", "100", "800")
    assert result.code == 2
    assert f"nlb-suite import-trials: error: {source}: not a readable MATLAB file (" in result.err
    assert "crashed" not in result.err
