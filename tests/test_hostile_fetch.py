"""Fetching against archives that misbehave: a host that accepts connections and never answers,
one that stops answering a lookup or in the middle of a download, and two processes fetching the
same file at once. Every network step ends within the timeout; the .part file is locked."""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import multiprocessing.synchronize
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from dandi_server import DandiTestServer
from hostile import check_tree, snapshot
from test_fetch import SPEC, TEST_BYTES, TRAIN_BYTES, _served

from nlb_suite.cli import main
from nlb_suite.data import fetch
from nlb_suite.data.fetch import DOWNLOAD_CHUNK_BYTES, OfflineError, fetch_dataset, part_path
from nlb_suite.data.paths import dataset_files
from nlb_suite.datasets import BUILTIN

TIMEOUT_S = 0.5


@pytest.fixture(autouse=True)
def _short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DANDI_NO_ET", "1")
    monkeypatch.setattr(fetch, "NETWORK_TIMEOUT_S", TIMEOUT_S)


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A host that accepts connections (the kernel queues them) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/api"


def _within(seconds: float, call: Callable[[], object]) -> object:
    """`call()` in a thread, failing the test if it has not returned after `seconds`; what it
    raised is raised here."""
    outcome: list[object] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as err:  # handed to the test's thread
            failure.append(err)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    if failure:
        raise failure[0]
    return outcome[0]


def test_a_host_that_never_answers_gives_the_offline_message_in_time(
        silent_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(BUILTIN, "mc_maze_small", SPEC)
    before = snapshot(tmp_path)
    started = time.monotonic()

    code = _within(30, lambda: main(["fetch", "mc_maze_small", "--data-dir", str(tmp_path),
                                     "--dandi-api-url", silent_url]))

    err = capsys.readouterr().err
    assert code == 2
    assert time.monotonic() - started < 10
    assert "Traceback" not in err
    assert f"cannot reach the DANDI archive at {silent_url} (" in err and "timed out" in err
    assert str(dataset_files(SPEC, tmp_path).train) in err
    assert check_tree(before, tmp_path) == []


def test_the_offline_error_from_a_silent_host_is_a_missing_data_error(silent_url: str, tmp_path: Path) -> None:
    with pytest.raises(OfflineError, match="timed out"):
        _within(30, lambda: fetch_dataset(SPEC, tmp_path, silent_url, progress=False))


def test_a_lookup_that_gets_no_answer_ends_with_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(BUILTIN, "mc_maze_small", SPEC)
    before = snapshot(tmp_path)
    with DandiTestServer(_served(SPEC), stall_paths=("/api/dandisets/",)) as server:
        code = _within(30, lambda: main(["fetch", "mc_maze_small", "--data-dir", str(tmp_path),
                                         "--dandi-api-url", server.api_url]))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"DANDI 000140/0.220113.0408 at {server.api_url}: looking up {SPEC.train.path} failed (" in err
    assert "timed out" in err
    assert check_tree(before, tmp_path) == []


def test_a_download_that_stops_ends_with_the_timeout_and_resumes_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(BUILTIN, "mc_maze_small", SPEC)
    served = _served(SPEC)
    served[0].stall_after = DOWNLOAD_CHUNK_BYTES + 1000
    train = dataset_files(SPEC, tmp_path).train
    before = snapshot(tmp_path)
    with DandiTestServer(served) as server:
        code = _within(30, lambda: main(["fetch", "mc_maze_small", "--data-dir", str(tmp_path),
                                         "--dandi-api-url", server.api_url]))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{train}: download from " in err
    assert f"stopped after {DOWNLOAD_CHUNK_BYTES:,} of {len(TRAIN_BYTES):,} bytes" in err
    assert "timed out" in err and "the next fetch resumes from there" in err
    part = part_path(train).relative_to(tmp_path).as_posix()
    assert check_tree(before, tmp_path, allowed=["000140/"]) == ["000140/", "000140/sub-Jenkins/", part]
    assert not train.exists() and part_path(train).stat().st_size == DOWNLOAD_CHUNK_BYTES

    with DandiTestServer(_served(SPEC)) as server:
        fetch_dataset(SPEC, tmp_path, server.api_url, progress=False)
        assert [r.range_header for r in server.downloads() if "train" in r.path] == [f"bytes={DOWNLOAD_CHUNK_BYTES}-"]
    assert train.read_bytes() == TRAIN_BYTES


def _fetch_in_child(root: str, url: str, barrier: multiprocessing.synchronize.Barrier, log: str) -> None:
    handler = logging.FileHandler(log)
    logging.getLogger(fetch.__name__).addHandler(handler)
    barrier.wait()
    fetch_dataset(SPEC, root, url, progress=False)
    handler.close()


def test_two_processes_fetching_one_file_download_it_once(tmp_path: Path) -> None:
    served = _served(SPEC)
    for asset in served:
        asset.chunk_delay_s = 0.05  # slow enough that the two fetches overlap
    context = multiprocessing.get_context("fork")
    with DandiTestServer(served) as server:
        barrier = context.Barrier(2)
        logs = [tmp_path / f"child-{i}.log" for i in range(2)]
        children = [context.Process(target=_fetch_in_child, args=(str(tmp_path / "data"), server.api_url, barrier,
                                                                  str(log)))
                    for log in logs]
        for child in children:
            child.start()
        for child in children:
            child.join(60)
        assert [child.exitcode for child in children] == [0, 0]
        blobs = sorted(r.path for r in server.downloads())
    files = dataset_files(SPEC, tmp_path / "data")
    assert files.train.read_bytes() == TRAIN_BYTES and files.test.read_bytes() == TEST_BYTES
    assert blobs == ["/blobs/test-test-0002", "/blobs/test-train-0001"]  # each file downloaded once
    assert any("another process is downloading this file" in log.read_text() for log in logs)  # they overlapped
    assert not list(tmp_path.rglob("*.part"))


def test_a_part_locked_by_another_process_is_waited_for(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """While another open file holds the lock, the fetch waits (and says so); once that holder has
    put the verified file in place, the waiting fetch finds it and downloads nothing."""
    files = dataset_files(SPEC, tmp_path)
    files.train.parent.mkdir(parents=True)
    partial = part_path(files.train)
    holder = os.open(partial, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    only_test = replace(SPEC, name="only_train")
    with DandiTestServer(_served(only_test)) as server:
        waiting = threading.Thread(target=lambda: fetch_dataset(only_test, tmp_path, server.api_url, progress=False))
        waiting.start()
        deadline = time.monotonic() + 20
        while "another process is downloading" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "another process is downloading this file; waiting for it to finish" in caplog.text
        os.write(holder, TRAIN_BYTES)
        os.replace(partial, files.train)
        os.close(holder)
        waiting.join(30)
        assert not waiting.is_alive()
        assert [r.path for r in server.downloads()] == ["/blobs/test-test-0002"]
    assert files.train.read_bytes() == TRAIN_BYTES
