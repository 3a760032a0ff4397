"""Interrupted and conflicting synthetic generation: a dataset is complete or absent, records how
it was made (manifest.json), and is never replaced by other settings unless asked."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile import TINY_COUNTS, check_tree, run_cli, snapshot

from nlb_suite.core.spec import DatasetSpec
from nlb_suite.datasets import BUILTIN, get_spec
from nlb_suite.datasets import synthetic as synthetic_module
from nlb_suite.datasets.synthetic import (
    GENERATOR_VERSIONS,
    MANIFEST_FILE,
    SyntheticDataError,
    dataset_folder,
    ensure_generated,
    generate,
    read_manifest,
)


def tiny(seed: int = 0, **changes: object) -> DatasetSpec:
    spec = get_spec("synth_maze")
    args = {**dict(spec.generator_args), "seed": seed}
    return dataclasses.replace(spec, expected=TINY_COUNTS, generator_args=tuple(args.items()), **changes)


@pytest.fixture
def tiny_builtin(monkeypatch: pytest.MonkeyPatch) -> DatasetSpec:
    """`synth_maze` shrunk, for the commands that look it up by name."""
    spec = tiny()
    monkeypatch.setitem(BUILTIN, "synth_maze", spec)
    return spec


def test_manifest_records_generator_version_seed_and_every_file(tmp_path: Path) -> None:
    spec = tiny(seed=3)
    generate(spec, tmp_path)
    folder = dataset_folder(spec, tmp_path)
    manifest = read_manifest(spec, tmp_path)
    assert manifest is not None
    assert (manifest.generator, manifest.generator_version, manifest.seed) == ("maze", GENERATOR_VERSIONS["maze"], 3)
    assert manifest.generator_args == {"size": "medium", "seed": 3}
    assert manifest.expected == dataclasses.asdict(TINY_COUNTS)
    on_disk = {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    assert manifest.files == {name: size for name, size in on_disk.items() if name != MANIFEST_FILE}
    assert {"truth.h5", spec.train.path, spec.test.path} <= set(manifest.files)
    assert json.loads((folder / MANIFEST_FILE).read_text())["generator_version"] == GENERATOR_VERSIONS["maze"]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left


def test_interrupted_generation_leaves_nothing_and_a_rerun_needs_no_overwrite(
        tmp_path: Path, tiny_builtin: DatasetSpec, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    calls = []
    real_write = synthetic_module.write_nlb_nwb

    def write_then_interrupt(path: Path, **tables: object) -> Path:
        calls.append(path)
        if len(calls) == 2:  # the train file is written, the test file is not
            raise KeyboardInterrupt
        return real_write(path, **tables)

    monkeypatch.setattr(synthetic_module, "write_nlb_nwb", write_then_interrupt)
    before = snapshot(tmp_path)
    result = run_cli(capsys, "synth", "synth_maze", "--seed", "5", "--data-dir", tmp_path)
    assert result.code == 130 and "interrupted" in result.err
    assert check_tree(before, tmp_path, allowed=["synthetic/"]) == ["synthetic/"]

    monkeypatch.setattr(synthetic_module, "write_nlb_nwb", real_write)
    result = run_cli(capsys, "synth", "synth_maze", "--seed", "5", "--data-dir", tmp_path)
    assert result.code == 0 and "generated synth_maze (seed 5)" in result.out
    assert read_manifest(tiny_builtin, tmp_path).seed == 5  # type: ignore[union-attr]


def test_killed_generation_leaves_no_dataset_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    """`kill -9` while the files are written: the dataset is absent, and the orphaned temporary
    folder goes at the next run, which needs no --overwrite."""
    spec = get_spec("synth_maze_small")
    folder = dataset_folder(spec, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NLB_SUITE_DATA": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-m", "nlb_suite.cli", "synth", spec.name, "--seed", "5"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    building: list[Path] = []
    while time.monotonic() < deadline and process.poll() is None:
        building = [p for p in (tmp_path / "synthetic").glob(f".{folder.name}.building-*/**/*") if p.is_file()]
        if building:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert building, f"the generator never started writing: {process.stderr.read().decode()[-2000:]}"
    assert not folder.exists()

    generate(dataclasses.replace(spec, generator_args=(("size", "small"), ("seed", 5))), tmp_path)

    assert read_manifest(spec, tmp_path).seed == 5  # type: ignore[union-attr]
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


def test_a_temporary_folder_another_process_is_building_is_left_alone(tmp_path: Path) -> None:
    spec = tiny()
    parent = dataset_folder(spec, tmp_path).parent
    busy, orphan = parent / ".synth_maze.building-busy", parent / ".synth_maze.building-orphan"
    for path in (busy, orphan):
        path.mkdir(parents=True)
        (path / "partial.nwb").write_bytes(b"half")
    handle = os.open(busy, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        generate(spec, tmp_path)
        assert busy.is_dir() and not orphan.exists()
    finally:
        os.close(handle)


def test_plain_eval_uses_a_dataset_made_with_another_seed_without_regenerating(
        tmp_path: Path, tiny_builtin: DatasetSpec, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert run_cli(capsys, "synth", "synth_maze", "--seed", "5", "--data-dir", data).code == 0
    monkeypatch.chdir(tmp_path)
    before = snapshot(data)

    with caplog.at_level(logging.WARNING):
        result = run_cli(capsys, "eval", "--model", "smoothing", "--dataset", "synth_maze", "--data-dir", data,
                         "--results", tmp_path / "results.jsonl", "--n-boot", "10")

    assert result.code == 0
    assert ("synthetic dataset 'synth_maze' in " + str(dataset_folder(tiny_builtin, data)) +
            " was made with seed 5 (its definition's seed is 0); using it as it is") in caplog.text
    assert check_tree(before, data) == []  # the seed-5 files are untouched


def test_a_dataset_made_with_other_counts_is_an_error_not_a_regeneration(
        tmp_path: Path, tiny_builtin: DatasetSpec, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    other = dataclasses.replace(tiny_builtin, expected=dataclasses.replace(TINY_COUNTS, heldout_units=2))
    generate(other, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    result = run_cli(capsys, "eval", "--model", "smoothing", "--dataset", "synth_maze", "--data-dir",
                     tmp_path / "data", "--results", tmp_path / "results.jsonl")

    assert result.code == 2
    assert "synthetic dataset 'synth_maze' in" in result.err
    assert "counts 6/2/8/4/12/4, not as its definition asks" in result.err
    assert "regenerate it with `nlb-suite synth synth_maze --overwrite`" in result.err
    assert check_tree(before, tmp_path) == []


def test_a_stale_version_regenerates_with_its_own_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    generate(tiny(seed=5), tmp_path)
    monkeypatch.setitem(GENERATOR_VERSIONS, "maze", GENERATOR_VERSIONS["maze"] + 1)

    with caplog.at_level(logging.WARNING):
        ensure_generated(tiny(seed=0), tmp_path)

    manifest = read_manifest(tiny(), tmp_path)
    assert manifest is not None
    assert (manifest.generator_version, manifest.seed) == (GENERATOR_VERSIONS["maze"], 5)
    assert "generating it again with version" in caplog.text and "the same settings" in caplog.text


def test_synth_without_overwrite_says_what_is_there(tmp_path: Path, tiny_builtin: DatasetSpec,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "synth", "synth_maze", "--seed", "5", "--data-dir", tmp_path).code == 0
    folder = dataset_folder(tiny_builtin, tmp_path)
    before = snapshot(tmp_path)

    again = run_cli(capsys, "synth", "synth_maze", "--data-dir", tmp_path)
    assert again.code == 2
    assert (f"dataset 'synth_maze' in {folder} already exists (made by generator 'maze' version "
            f"{GENERATOR_VERSIONS['maze']} with seed 5, size medium); regenerate it with --overwrite") in again.err

    (folder / "truth.h5").unlink()
    before = snapshot(tmp_path)
    incomplete = run_cli(capsys, "synth", "synth_maze", "--data-dir", tmp_path)
    assert incomplete.code == 2
    assert f"in {folder} exists but is incomplete or from an older version (no complete manifest.json)" in incomplete.err
    assert check_tree(before, tmp_path) == []


def test_overwrite_replaces_the_whole_folder(tmp_path: Path, tiny_builtin: DatasetSpec,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "synth", "synth_maze", "--seed", "5", "--data-dir", tmp_path).code == 0
    folder = dataset_folder(tiny_builtin, tmp_path)
    (folder / "stray.txt").write_text("left from before")

    assert run_cli(capsys, "synth", "synth_maze", "--overwrite", "--data-dir", tmp_path).code == 0

    assert not (folder / "stray.txt").exists()
    assert read_manifest(tiny_builtin, tmp_path).seed == 0  # type: ignore[union-attr]
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


def test_an_incomplete_dataset_is_generated_again_when_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = tiny()
    files = generate(spec, tmp_path)
    files.test.unlink()
    with caplog.at_level(logging.WARNING):
        ensure_generated(spec, tmp_path)
    assert files.test.is_file() and read_manifest(spec, tmp_path) is not None
    assert "is incomplete or from an older version" in caplog.text


def test_a_damaged_manifest_counts_as_incomplete(tmp_path: Path) -> None:
    spec = tiny()
    generate(spec, tmp_path)
    manifest = dataset_folder(spec, tmp_path) / MANIFEST_FILE
    for text in ("{", "[]", '{"dataset": 1}', json.dumps({**json.loads(manifest.read_text()), "files": 3})):
        manifest.write_text(text)
        assert read_manifest(spec, tmp_path) is None
    with pytest.raises(SyntheticDataError, match="exists but is incomplete"):
        generate(spec, tmp_path)
