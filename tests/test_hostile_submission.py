"""Submission files that are not what they seem: links into other files, soft and dangling links,
bytes stored elsewhere, non-numeric or absurdly large arrays, and all-zero rates. Only plain
numeric datasets stored in the file count; nothing is ever followed out of it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from hostile import Tiny, check_tree, make_tiny, run_cli, snapshot, user_dataset, valid_rates

from nlb_suite.core.arrays import Rates
from nlb_suite.outputs.submission import SubmissionError, read_submission, write_submission
from nlb_suite.scoring import write_targets
from nlb_suite.tensors import make_targets

GROUP = "hostile"  # the user dataset's group name at 5 ms
ARRAY = f"{GROUP}/eval_rates_heldout"


@dataclass(frozen=True)
class Files:
    folder: Path
    toml: Path
    targets: Path
    good: Path
    rates: Rates


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    tiny: Tiny = make_tiny(tmp_path_factory.mktemp("tiny"))
    folder = tmp_path_factory.mktemp("submissions")
    user = user_dataset(tiny, folder / "user")
    targets = write_targets(folder / "targets.h5", {GROUP: make_targets(user.spec, "val", 5)})
    rates = valid_rates(user.spec)
    return Files(folder=folder, toml=user.toml, targets=targets,
                 good=write_submission(folder / "good.h5", {GROUP: rates}), rates=rates)


def _variant(files: Files, folder: Path, change: Callable[[h5py.File, Path], None]) -> Path:
    """A copy of the good submission in `folder`, altered by `change(file, folder)`, plus
    `other.h5` there: a valid submission with other values for links to point into."""
    other = write_submission(folder / "other.h5", {GROUP: Rates(**{
        name: values * 2 for name, values in files.rates.arrays().items()})})
    assert other.is_file()
    path = folder / "submission.h5"
    with h5py.File(files.good, "r") as good, h5py.File(path, "w") as out:
        good.copy(GROUP, out)
        change(out, folder)
    return path


def external_array(f: h5py.File, folder: Path) -> None:
    del f[ARRAY]
    f[ARRAY] = h5py.ExternalLink("other.h5", f"/{ARRAY}")


def external_group(f: h5py.File, folder: Path) -> None:
    del f[GROUP]
    f[GROUP] = h5py.ExternalLink("other.h5", f"/{GROUP}")


def dangling_external(f: h5py.File, folder: Path) -> None:
    del f[ARRAY]
    f[ARRAY] = h5py.ExternalLink("no_such_file.h5", f"/{ARRAY}")


def soft_link(f: h5py.File, folder: Path) -> None:
    f["keep"] = f[ARRAY][()]
    del f[ARRAY]
    f[ARRAY] = h5py.SoftLink("/keep")


def dangling_soft(f: h5py.File, folder: Path) -> None:
    del f[ARRAY]
    f[ARRAY] = h5py.SoftLink("/nowhere/eval_rates_heldout")


def external_storage(f: h5py.File, folder: Path) -> None:
    values = f[ARRAY][()] * 3
    values.tofile(folder / "raw.bin")
    del f[ARRAY]
    f.create_dataset(ARRAY, shape=values.shape, dtype=values.dtype, external=[("raw.bin", 0, values.nbytes)])


def virtual(f: h5py.File, folder: Path) -> None:
    shape = f[ARRAY].shape
    del f[ARRAY]
    layout = h5py.VirtualLayout(shape=shape, dtype="f4")
    layout[:] = h5py.VirtualSource("other.h5", f"/{ARRAY}", shape=shape)
    f[GROUP].create_virtual_dataset("eval_rates_heldout", layout)


def strings(f: h5py.File, folder: Path) -> None:
    del f[ARRAY]
    f[ARRAY] = np.array([b"0.1", b"0.2"])


def compound(f: h5py.File, folder: Path) -> None:
    del f[ARRAY]
    f[ARRAY] = np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])


def huge(f: h5py.File, folder: Path) -> None:
    del f[ARRAY]
    f.create_dataset(ARRAY, shape=(10**6, 10**4, 10**3), dtype="f4", chunks=(1, 1, 1000))


CASES = [
    (external_array, f"array 'eval_rates_heldout': external link to '/{ARRAY}' in file 'other.h5': refused, "
                     "a submission must hold its own arrays"),
    (external_group, f"group '{GROUP}': external link to '/{GROUP}' in file 'other.h5': refused"),
    (dangling_external, "external link to '/hostile/eval_rates_heldout' in file 'no_such_file.h5': refused"),
    (soft_link, "array 'eval_rates_heldout': soft link to '/keep': refused, only plain datasets count"),
    (dangling_soft, "dangling soft link to '/nowhere/eval_rates_heldout' (nothing is there)"),
    (external_storage, "its bytes are stored in external file(s) 'raw.bin': refused"),
    (virtual, "virtual dataset (its values are mapped from other datasets or files): refused"),
    (strings, "dtype |S3 is not numeric; only numeric datasets count"),
    (compound, "is not numeric; only numeric datasets count"),
    (huge, "shape (1000000, 10000, 1000) of dtype float32 (37252.9 GiB) is far larger than any NLB array"),
]


@pytest.mark.parametrize(("change", "words"), CASES, ids=[case[0].__name__ for case in CASES])
def test_validate_and_score_refuse_what_is_not_a_plain_array(files: Files, tmp_path: Path, change: Callable,
                                                            words: str, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = _variant(files, tmp_path, change)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    validated = run_cli(capsys, "validate", path, "--dataset", files.toml)
    scored = run_cli(capsys, "score", path, "--targets", files.targets, "--json")

    assert validated.code == 1
    assert f"{path}: " in validated.out and words in validated.out
    assert "valid for" not in validated.out
    assert scored.code == 2
    assert f"nlb-suite score: error: {path}: invalid submission" in scored.err and words in scored.err
    assert scored.out == ""  # nothing scored, least of all the other file's arrays
    assert check_tree(before, tmp_path) == []


def test_the_reader_never_returns_linked_arrays(files: Files, tmp_path: Path) -> None:
    path = _variant(files, tmp_path, external_array)
    with pytest.raises(SubmissionError, match="external link"):
        read_submission(path)


def test_writing_into_a_file_with_links_is_refused_and_leaves_it(files: Files, tmp_path: Path) -> None:
    path = _variant(files, tmp_path, lambda f, folder: f.__setitem__("extra", h5py.ExternalLink("other.h5", "/")))
    before = snapshot(tmp_path)
    with pytest.raises(SubmissionError, match="(?s)external link to '/' in file 'other.h5'.*cannot be extended"):
        write_submission(path, {"new_group": files.rates})
    assert check_tree(before, tmp_path) == []


def test_groups_kept_when_writing_are_copied_as_values(files: Files, tmp_path: Path) -> None:
    path = write_submission(tmp_path / "sub.h5", {GROUP: files.rates})
    write_submission(path, {"second": files.rates})
    with h5py.File(path, "r") as f:
        assert all(isinstance(f[GROUP].get(name, getlink=True), h5py.HardLink) for name in f[GROUP])
    assert sorted(read_submission(path)) == [GROUP, "second"]


def test_an_all_zero_submission_is_flagged_by_validate_but_scored_as_nlb_tools_does(
        files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zeros = Rates(**{name: np.zeros_like(values) for name, values in files.rates.arrays().items()})
    path = write_submission(tmp_path / "zeros.h5", {GROUP: zeros})

    validated = run_cli(capsys, "validate", path, "--dataset", files.toml)
    scored = run_cli(capsys, "score", path, "--targets", files.targets, "--json")

    assert validated.code == 1
    for name in ("train_rates_heldin", "eval_rates_heldout", "eval_rates_heldout_forward"):
        assert (f"{path}: group '{GROUP}', array '{name}': every rate is zero; the scorer would replace each "
                "by 1e-9") in validated.out
    assert scored.code == 0
    co_bps = json.loads(scored.out)[0]["hostile_split"]["co-bps"]
    assert co_bps < -5  # zeros scored as 1e-9 spikes/bin, as nlb_tools scores them


def test_one_zero_array_is_flagged_alone(files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arrays = files.rates.arrays()
    arrays["eval_rates_heldout"] = np.zeros_like(arrays["eval_rates_heldout"])
    path = write_submission(tmp_path / "one_zero.h5", {GROUP: Rates(**arrays)})
    validated = run_cli(capsys, "validate", path, "--dataset", files.toml)
    assert validated.code == 1
    assert validated.out.count("every rate is zero") == 1


def test_the_good_submission_is_valid_and_scored(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    validated = run_cli(capsys, "validate", files.good, "--dataset", files.toml)
    scored = run_cli(capsys, "score", files.good, "--targets", files.targets, "--json")
    assert validated.code == 0 and f"{files.good}: valid for the val phase ({GROUP})" in validated.out
    assert scored.code == 0 and "co-bps" in scored.out


def test_the_validators_help_says_what_counts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_cli(capsys, "validate", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "Only plain HDF5 datasets of a numeric dtype, stored in the file itself, count" in text
    assert "External links, soft links (dangling or not), virtual datasets" in text


def test_a_folder_given_as_the_submission_is_named_as_one(files: Files, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    validated = run_cli(capsys, "validate", tmp_path, "--dataset", files.toml)
    scored = run_cli(capsys, "score", tmp_path, "--targets", files.targets)
    assert validated.code == 1 and f"{tmp_path}: is a folder, not a submission file" in validated.out
    assert scored.code == 2 and "is a folder, not a submission file" in scored.err
