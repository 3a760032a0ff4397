"""Fuzzing: bytes flipped and files cut at random offsets in a small NWB train file, a small
submission and a small eval-target file. Every case ends in a clear error naming the file (exit
2, or 1 for `validate`) or in a valid result, never in a traceback. The offsets are drawn from a fixed seed, a third anywhere
in the file, a third in the raw bytes of the units and trials columns, a third in the bytes that
hold no dataset's values (HDF5's own structures), so each case can be replayed by its id."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from hostile import Tiny, UserDataset, make_tiny, run_cli, user_dataset, valid_rates

from nlb_suite.outputs.submission import read_submission, write_submission
from nlb_suite.scoring import read_targets, write_targets
from nlb_suite.tensors import make_targets

N_NWB_CASES = 60
N_SUBMISSION_CASES = 60
N_TARGETS_CASES = 30
GROUP = "hostile"


@dataclass(frozen=True)
class Mutation:
    """`truncate`: cut the file at the offset; else xor `flips` bytes from the offset on."""

    truncate: bool
    region: str  # "anywhere", "columns" or "structure"
    where: float  # position in the region, 0 <= where < 1
    flips: tuple[int, ...]

    def label(self) -> str:
        return f"{'cut' if self.truncate else 'flip'}-{self.region}-{self.where:.4f}"


def _plan(seed: int, n: int) -> list[Mutation]:
    rng = random.Random(seed)
    regions = ("anywhere", "columns", "structure")
    return [Mutation(truncate=rng.random() < 0.25, region=regions[i % 3], where=rng.random(),
                     flips=tuple(rng.randrange(1, 256) for _ in range(rng.randrange(1, 5))))
            for i in range(n)]


NWB_PLAN = _plan(13, N_NWB_CASES)
SUBMISSION_PLAN = _plan(31, N_SUBMISSION_CASES)
TARGETS_PLAN = _plan(47, N_TARGETS_CASES)


def _extents(path: Path, prefixes: tuple[str, ...] | None) -> list[tuple[int, int]]:
    """(offset, size) of the stored bytes of every dataset (those under `prefixes`, if given)."""
    spans: list[tuple[int, int]] = []

    def visit(name: str, item: object) -> None:
        if not isinstance(item, h5py.Dataset) or (prefixes and not name.startswith(prefixes)):
            return
        if item.chunks is None:
            offset = item.id.get_offset()
            if offset is not None:
                spans.append((offset, item.id.get_storage_size()))
        else:
            for index in range(item.id.get_num_chunks()):
                chunk = item.id.get_chunk_info(index)
                spans.append((chunk.byte_offset, chunk.size))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return sorted(spans)


def _offset(path: Path, mutation: Mutation) -> int:
    size = path.stat().st_size
    if mutation.region == "anywhere":
        return int(mutation.where * size)
    if mutation.region == "columns":
        spans = _extents(path, ("units/", "intervals/trials/", "hostile/"))
    else:  # the complement of every dataset's values
        covered = np.zeros(size, dtype=bool)
        for offset, length in _extents(path, None):
            covered[offset: offset + length] = True
        free = np.flatnonzero(~covered)
        return int(free[int(mutation.where * len(free))])
    total = sum(length for _, length in spans)
    position = int(mutation.where * total)
    for offset, length in spans:
        if position < length:
            return offset + position
        position -= length
    raise AssertionError("no column bytes")


def _mutate(source: Path, target: Path, mutation: Mutation) -> None:
    data = bytearray(source.read_bytes())
    offset = _offset(source, mutation)
    if mutation.truncate:
        del data[offset:]
    else:
        for i, flip in enumerate(mutation.flips):
            if offset + i < len(data):
                data[offset + i] ^= flip
    target.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return make_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def clean(tiny: Tiny, tmp_path_factory: pytest.TempPathFactory) -> tuple[UserDataset, Path, Path]:
    """The user dataset, its clean train file kept aside, and a valid submission and targets."""
    folder = tmp_path_factory.mktemp("fuzz")
    user = user_dataset(tiny, folder / "user")
    original = folder / "original_train.nwb"
    original.write_bytes(user.train.read_bytes())
    write_targets(folder / "targets.h5", {GROUP: make_targets(user.spec, "val", 5)})
    submission = write_submission(folder / "submission.h5", {GROUP: valid_rates(user.spec)})
    return user, original, submission


@pytest.mark.parametrize("mutation", NWB_PLAN, ids=[m.label() for m in NWB_PLAN])
def test_a_damaged_nwb_file_gives_a_clear_error_or_valid_targets(clean: tuple[UserDataset, Path, Path],
                                                                 tmp_path: Path, mutation: Mutation,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    user, original, _ = clean
    _mutate(original, user.train, mutation)
    out = tmp_path / "targets.h5"

    result = run_cli(capsys, "targets", user.toml, "-o", out)

    if result.code == 0:
        targets = read_targets(out)[GROUP]  # a readable eval-target file, whatever the damage changed
        assert targets["eval_spikes_heldout"].ndim == 3
    else:
        assert result.code == 2, result.err
        assert result.err.startswith("nlb-suite targets: error: "), result.err
        assert str(user.train) in result.err, result.err
        assert not out.exists()


@pytest.mark.parametrize("mutation", SUBMISSION_PLAN, ids=[m.label() for m in SUBMISSION_PLAN])
def test_a_damaged_submission_gives_a_clear_error_or_a_score(clean: tuple[UserDataset, Path, Path],
                                                             tmp_path: Path, mutation: Mutation,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    user, _, submission = clean
    damaged = tmp_path / "submission.h5"
    _mutate(submission, damaged, mutation)
    targets = submission.parent / "targets.h5"

    validated = run_cli(capsys, "validate", damaged, "--dataset", user.toml)
    scored = run_cli(capsys, "score", damaged, "--targets", targets, "--json")

    assert validated.code in (0, 1)
    assert all(line.startswith(f"{damaged}: ") for line in validated.out.splitlines()), validated.out
    if validated.code == 0:
        assert read_submission(damaged)[GROUP]
        assert scored.code == 0 and "co-bps" in scored.out
    else:
        assert f"{damaged}: invalid (" in validated.out
        assert scored.code in (0, 2)  # score accepts what only validate flags (all-zero arrays)
        if scored.code == 2:
            assert scored.err.startswith(f"nlb-suite score: error: {damaged}: "), scored.err


@pytest.mark.parametrize("mutation", TARGETS_PLAN, ids=[m.label() for m in TARGETS_PLAN])
def test_damaged_eval_targets_give_a_clear_error_or_a_score(clean: tuple[UserDataset, Path, Path], tmp_path: Path,
                                                            mutation: Mutation,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    _, _, submission = clean
    damaged = tmp_path / "targets.h5"
    _mutate(submission.parent / "targets.h5", damaged, mutation)

    scored = run_cli(capsys, "score", submission, "--targets", damaged, "--json")

    assert scored.code in (0, 2), scored.err
    if scored.code == 0:
        assert "co-bps" in scored.out
    else:
        assert scored.err.startswith("nlb-suite score: error: "), scored.err
        assert str(damaged) in scored.err or str(submission) in scored.err, scored.err
