"""Fetching from DANDI: the real dandi client against a small DANDI-compatible server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import random
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from dandi_server import DandiTestServer, ServedAsset

from nlb_suite.cli import main
from nlb_suite.data.fetch import (
    API_URL_ENV_VAR,
    DEFAULT_API_URL,
    DOWNLOAD_CHUNK_BYTES,
    PART_SUFFIX,
    ChecksumError,
    FetchError,
    OfflineError,
    SizeMismatchError,
    check_files,
    fetch_dataset,
    part_path,
    resolve_api_url,
    verify_file,
)
from nlb_suite.data.paths import MissingDataError, dataset_files
from nlb_suite.datasets import BUILTIN, Asset, DatasetSpec
from nlb_suite.datasets.registry import MC_MAZE_SMALL

TRAIN_BYTES = random.Random(1).randbytes(700_000)
TEST_BYTES = random.Random(2).randbytes(40_000)


def _asset(template: Asset, content: bytes, asset_id: str) -> Asset:
    return replace(template, size=len(content), sha256=hashlib.sha256(content).hexdigest(), asset_id=asset_id)


# mc_maze_small's dandiset, version and paths, pinned to the small files the test server serves.
SPEC: DatasetSpec = replace(
    MC_MAZE_SMALL,
    train=_asset(MC_MAZE_SMALL.train, TRAIN_BYTES, "test-train-0001"),
    test=_asset(MC_MAZE_SMALL.test, TEST_BYTES, "test-test-0002"),
)


def _served(spec: DatasetSpec, train: bytes = TRAIN_BYTES, test: bytes = TEST_BYTES) -> list[ServedAsset]:
    assert spec.dandiset is not None and spec.version is not None
    return [
        ServedAsset(dandiset=spec.dandiset, version=spec.version, path=asset.path, asset_id=asset.asset_id,
                    content=content)
        for asset, content in ((spec.train, train), (spec.test, test))
        if asset.asset_id is not None
    ]


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dandi client asks GitHub for newer releases unless DANDI_NO_ET is set."""
    monkeypatch.setenv("DANDI_NO_ET", "1")
    monkeypatch.delenv(API_URL_ENV_VAR, raising=False)


@pytest.fixture
def archive() -> Iterator[DandiTestServer]:
    with DandiTestServer(_served(SPEC)) as server:
        yield server


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


def test_fetch_downloads_and_verifies_both_files(archive: DandiTestServer, tmp_path: Path) -> None:
    files = fetch_dataset(SPEC, tmp_path, archive.api_url, progress=False)

    assert files == dataset_files(SPEC, tmp_path)
    assert files.train == tmp_path / "000140" / SPEC.train.path
    assert files.train.read_bytes() == TRAIN_BYTES
    assert files.test.read_bytes() == TEST_BYTES
    assert [s.state for s in check_files(SPEC, tmp_path)] == ["valid", "valid"]
    assert not list(tmp_path.rglob(f"*{PART_SUFFIX}"))
    paths = {request.path for request in archive.requests}
    assert "/api/dandisets/000140/versions/0.220113.0408/assets/" in paths
    assert {"/api/assets/test-train-0001/download/", "/api/assets/test-test-0002/download/"} <= paths


def test_second_fetch_contacts_nobody(archive: DandiTestServer, tmp_path: Path) -> None:
    fetch_dataset(SPEC, tmp_path, archive.api_url, progress=False)
    archive.requests.clear()

    fetch_dataset(SPEC, tmp_path, archive.api_url, progress=False)

    assert archive.requests == []


def test_invalid_present_file_is_reported_and_fetched_again(
    archive: DandiTestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = dataset_files(SPEC, tmp_path)
    files.test.parent.mkdir(parents=True)
    files.test.write_bytes(b"not the test file")

    fetch_dataset(SPEC, tmp_path, archive.api_url, progress=False)

    assert files.test.read_bytes() == TEST_BYTES
    assert f"{files.test}: 17 bytes, expected 40,000; downloading it again" in caplog.text
    assert [r.path for r in archive.downloads()] == ["/blobs/test-train-0001", "/blobs/test-test-0002"]


def test_served_bytes_not_matching_the_registry_leave_nothing(tmp_path: Path) -> None:
    corrupt = bytearray(TRAIN_BYTES)
    corrupt[1000] ^= 0xFF
    with DandiTestServer(_served(SPEC, train=bytes(corrupt))) as server:
        with pytest.raises(ChecksumError, match="do not match the registry") as raised:
            fetch_dataset(SPEC, tmp_path, server.api_url, progress=False)

    train = dataset_files(SPEC, tmp_path).train
    assert raised.value.path == train
    assert not train.exists()
    assert not part_path(train).exists()


def test_dropped_connection_keeps_no_final_file_and_retry_resumes(
    archive: DandiTestServer, tmp_path: Path
) -> None:
    archive.assets[0].drop_after = 2 * DOWNLOAD_CHUNK_BYTES - 1000
    kept = DOWNLOAD_CHUNK_BYTES  # the chunk in flight when the connection broke is lost
    train = dataset_files(SPEC, tmp_path).train

    with pytest.raises(FetchError, match=f"stopped after {kept:,} of {len(TRAIN_BYTES):,} bytes") as raised:
        fetch_dataset(SPEC, tmp_path, archive.api_url, progress=False)

    assert "Connection broken" in str(raised.value)
    assert "next fetch resumes" in str(raised.value)
    assert not train.exists()
    assert part_path(train).stat().st_size == kept
    assert check_files(SPEC, tmp_path)[0].partial_bytes == kept

    fetch_dataset(SPEC, tmp_path, archive.api_url, progress=False)

    assert train.read_bytes() == TRAIN_BYTES
    assert not part_path(train).exists()
    train_downloads = [r for r in archive.downloads() if r.path == "/blobs/test-train-0001"]
    assert [r.range_header for r in train_downloads] == [None, f"bytes={kept}-"]


def test_resumed_download_that_does_not_verify_restarts_from_zero(
    archive: DandiTestServer, tmp_path: Path
) -> None:
    train = dataset_files(SPEC, tmp_path).train
    train.parent.mkdir(parents=True)
    part_path(train).write_bytes(b"\0" * 5000)  # left by some other, wrong download

    fetch_dataset(SPEC, tmp_path, archive.api_url, progress=False)

    assert train.read_bytes() == TRAIN_BYTES
    train_downloads = [r for r in archive.downloads() if r.path == "/blobs/test-train-0001"]
    assert [r.range_header for r in train_downloads] == ["bytes=5000-", None]


def test_asset_id_differing_from_the_registry_is_refused(archive: DandiTestServer, tmp_path: Path) -> None:
    other = replace(SPEC, test=replace(SPEC.test, asset_id="some-other-asset"))

    with pytest.raises(FetchError, match="is asset test-test-0002, but the registry pins some-other-asset"):
        fetch_dataset(other, tmp_path, archive.api_url, progress=False)


def test_unreachable_server_gives_the_offline_message(
    closed_port_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["fetch", "mc_maze_small", "--data-dir", str(tmp_path), "--dandi-api-url", closed_port_url])

    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err
    assert f"cannot reach the DANDI archive at {closed_port_url} (Connection refused)" in err
    for asset in (MC_MAZE_SMALL.train, MC_MAZE_SMALL.test):
        assert str(tmp_path / "000140" / asset.path) in err
        assert f"{asset.size:,} bytes, sha256 {asset.sha256}" in err
    assert "https://dandiarchive.org/dandiset/000140/0.220113.0408" in err


def test_offline_error_is_a_missing_data_error(closed_port_url: str, tmp_path: Path) -> None:
    with pytest.raises(OfflineError) as raised:
        fetch_dataset(SPEC, tmp_path, closed_port_url, progress=False)
    assert isinstance(raised.value, MissingDataError)


def test_cli_fetch_end_to_end(
    archive: DandiTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(BUILTIN, "mc_maze_small", SPEC)
    monkeypatch.setenv(API_URL_ENV_VAR, archive.api_url)

    assert main(["fetch", "mc_maze_small", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"downloading 2 file(s), 0.7 MB, from {archive.api_url}" in out
    assert "all 2 file(s) present and verified" in out

    assert main(["fetch", "mc_maze_small", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("present, verified") == 2
    assert "downloading" not in out


def test_dry_run_lists_the_two_mc_maze_small_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch", "mc_maze_small", "--dry-run", "--data-dir", str(tmp_path)]) == 0

    out = capsys.readouterr().out
    assert "000140/sub-Jenkins/sub-Jenkins_ses-small_desc-train_behavior+ecephys.nwb  29.2 MB  missing" in out
    assert "000140/sub-Jenkins/sub-Jenkins_ses-small_desc-test_ecephys.nwb  0.7 MB  missing" in out
    assert f"would download 2 file(s), 29.9 MB, from {DEFAULT_API_URL}" in out
    assert not any(tmp_path.iterdir())


def test_synthetic_dataset_points_to_synth(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch", "synth_maze"]) == 2
    assert "generate it with `nlb-suite synth synth_maze`" in capsys.readouterr().err


def test_names_or_all_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch"]) == 2
    assert "name the datasets to fetch, or use --all" in capsys.readouterr().err


def test_verify_file_names_size_and_checksum_problems(tmp_path: Path) -> None:
    path = tmp_path / "file.nwb"
    path.write_bytes(b"abcd")
    good = Asset("file.nwb", 4, hashlib.sha256(b"abcd").hexdigest())

    verify_file(path, good)
    with pytest.raises(SizeMismatchError, match=r"file.nwb: 4 bytes, expected 5"):
        verify_file(path, replace(good, size=5))
    with pytest.raises(ChecksumError, match=f"file.nwb: sha256 {good.sha256}, expected 00"):
        verify_file(path, replace(good, sha256="00"))


def test_api_url_comes_from_flag_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_api_url() == DEFAULT_API_URL
    monkeypatch.setenv(API_URL_ENV_VAR, "http://127.0.0.1:1/api")
    assert resolve_api_url() == "http://127.0.0.1:1/api"
    assert resolve_api_url("https://api.sandbox.dandiarchive.org/api") == "https://api.sandbox.dandiarchive.org/api"
    with pytest.raises(FetchError, match="must start with http"):
        resolve_api_url("api.dandiarchive.org")


def test_a_plain_dandi_download_tree_is_used_as_it_is(real_test_file: Path) -> None:
    """`dandi download DANDI:000140/...` makes `<parent>/000140/sub-Jenkins/...`: the parent is the data directory."""
    test_status = check_files(MC_MAZE_SMALL, real_test_file.parents[2])[1]

    assert test_status.path == real_test_file
    assert test_status.state == "valid"
