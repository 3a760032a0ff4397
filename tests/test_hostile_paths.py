"""Names that would put a file outside its folder: refused when the spec is read, before any
work, and every output path built through `core.paths.inside`."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import Tiny, check_tree, make_tiny, run_cli, snapshot, user_dataset

from nlb_suite.core.paths import UnsafePathError, inside


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return make_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("name", ["x_val_targets.h5", "synth_maze_val_5ms_gpfa.h5", "..x", "a..b", ".hidden"])
def test_inside_keeps_plain_names_in_their_folder(tmp_path: Path, name: str) -> None:
    assert inside(tmp_path, name) == tmp_path / name
    assert inside(tmp_path, name).parent == tmp_path


@pytest.mark.parametrize(("name", "problem"), [
    ("", "not a file name"), (".", "not a file name"), ("..", "not a file name"),
    ("../x", "path separator"), ("a/b", "path separator"), ("/etc/x", "path separator"),
    ("a\\b", "path separator"), ("..\\x", "path separator"), ("C:x", "absolute path"),
    ("x\0y", "NUL byte"),
])
def test_inside_refuses_names_that_leave_or_are_not_file_names(tmp_path: Path, name: str, problem: str) -> None:
    with pytest.raises(UnsafePathError, match=problem) as raised:
        inside(tmp_path, name)
    assert str(tmp_path) in str(raised.value) and repr(name) in str(raised.value)


def _hostile_name_toml(tiny: Tiny, tmp_path: Path, name: str) -> Path:
    user = user_dataset(tiny, tmp_path / "user")
    text = user.toml.read_text().replace('name = "hostile"', f'name = "{name}"')
    user.toml.write_text(text)
    return user.toml


@pytest.mark.parametrize("name", ["../../etc/x", "ABSOLUTE", "a/b", "x y", ".."])
def test_targets_refuses_a_dataset_name_that_is_a_path(tiny: Tiny, tmp_path: Path, name: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    if name == "ABSOLUTE":
        name = str(tmp_path / "etc" / "x")
    toml = _hostile_name_toml(tiny, tmp_path, name)
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)

    result = run_cli(capsys, "targets", toml)

    assert result.code == 2
    assert f"{toml}: `name = \"{name}\"`: dataset name {name!r} is not allowed" in result.err
    assert check_tree(before, tmp_path) == []


@pytest.mark.parametrize("model", ["smoothing", "lfads"])
def test_eval_refuses_such_a_name_before_fitting_or_checkpointing(tiny: Tiny, tmp_path: Path, model: str,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    toml = _hostile_name_toml(tiny, tmp_path, "../../etc/x")
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)

    result = run_cli(capsys, "eval", "--model", model, "--dataset", toml, "--results", tmp_path / "results.jsonl")

    assert result.code == 2
    assert f"{toml}: `name = \"../../etc/x\"`: dataset name '../../etc/x' is not allowed" in result.err
    assert check_tree(before, tmp_path) == []  # no submission, no runs/checkpoints, no record


def test_targets_writes_only_into_submissions(tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    result = run_cli(capsys, "targets", user.toml)

    assert result.code == 0
    assert "wrote submissions/hostile_val_targets.h5" in result.out
    assert check_tree(before, tmp_path, allowed=["submissions/"]) == [
        "submissions/", "submissions/hostile_val_targets.h5"]
