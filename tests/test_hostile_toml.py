"""Dataset TOMLs: every key's type and range checked when the file is read, each message naming
the file, the key and its value; nothing is read from the NWB files or written first."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hostile import Tiny, UserDataset, check_tree, make_tiny, run_cli, snapshot, user_dataset

from nlb_suite.datasets import SpecError, load_spec_toml
from nlb_suite.datasets.toml_spec import spec_to_toml


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return make_tiny(tmp_path_factory.mktemp("tiny"))


def _with(user: UserDataset, *lines: str) -> Path:
    """The user TOML with the keys of `lines` replaced (or added) by those lines; a line '-key'
    removes the key."""
    keys = {line.split("=")[0].strip().lstrip("-") for line in lines}
    kept = [line for line in user.toml.read_text().splitlines() if line.split("=")[0].strip() not in keys]
    user.toml.write_text("\n".join([*(line for line in lines if not line.startswith("-")), *kept]) + "\n")
    return user.toml


# (lines replacing keys of the TOML, words the message must hold after the file name)
CASES = [
    (['forward_ms = -200'], '`forward_ms = -200`: must be >= 0'),
    (['forward_ms = "200"'], '`forward_ms = "200"`: must be a whole number of ms, without quotes'),
    (['forward_ms = 200.0'], '`forward_ms = 200.0`: must be a whole number of ms'),
    (['forward_ms = true'], '`forward_ms = true`: must be a whole number of ms'),
    (['window_ms = "abc"'], '`window_ms = "abc"`: must be a list of 2 whole numbers (ms)'),
    (['window_ms = [-250]'], '`window_ms = [-250]`: must be a list of 2 whole numbers (ms)'),
    (['window_ms = ["a", 450]'], '`window_ms = ["a", 450]`: must be a whole number of ms'),
    (['window_ms = [450, -250]'], '`window_ms = [450, -250]`: the window must start before it stops'),
    (['window_ms = [0, 0]'], '`window_ms = [0, 0]`: the window must start before it stops'),
    (['window_ms = [0, 100000000000]'], '`window_ms = [0, 100000000000]`: more than 60000 ms'),
    (['bin_sizes = [7]'], 'bin_sizes: forward_ms (200 ms) is not a whole number of 7 ms bins'),
    (['bin_sizes = [5]', 'forward_ms = 203'], 'bin_sizes: forward_ms (203 ms) is not a whole number of 5 ms bins'),
    (['forward_ms = 210', '-bin_sizes'],
     'bin_sizes (default [5, 20]): forward_ms (210 ms) is not a whole number of 20 ms bins'),
    (['window_ms = [-250, 455]'], 'bin_sizes: window_ms (705 ms) is not a whole number of 20 ms bins'),
    (['bin_sizes = [0, 5]'], '`bin_sizes = [0, 5]`: must be positive'),
    (['bin_sizes = []'], '`bin_sizes = []`: must be a non-empty list of whole numbers (ms)'),
    (['bin_sizes = [5, 5]'], '`bin_sizes = [5, 5]`: lists a bin size twice'),
    (['psth_kern_sd_ms = 0'], '`psth_kern_sd_ms = 0`: must be positive'),
    (['behavior_lag_ms = "100"'], '`behavior_lag_ms = "100"`: must be a whole number of ms'),
    (['psth_conditions = "trial_type"'], '`psth_conditions = "trial_type"`: must be a list of column names'),
    (['psth_conditions = [1, 2]'], '`psth_conditions = [1, 2]`: must be a list of column names'),
    (['eval_allow_overlap = "yes"'], '`eval_allow_overlap = "yes"`: must be true or false'),
    (['align_field = 3'], '`align_field = 3`: must be a string in quotes'),
    (['align_field = ""'], '`align_field = ""`: must not be empty'),
    (['behavior_field = []'], '`behavior_field = []`: must be a string in quotes'),
    (['name = 5'], '`name = 5`: must be a string in quotes'),
    (['name = "my data"'], "`name = \"my data\"`: dataset name 'my data' is not allowed"),
    (['train = 3'], '`train = 3`: must be a file path, or a table with a `path` key'),
    (['train = {size = 5}'], '`train = {size = 5}`: must be a file path, or a table with a `path` key'),
    (['train = {path = "t.nwb", size = -1}'],
     '`train = {path = "t.nwb", size = -1}`: `size` must be a whole number of bytes'),
    (['train = {path = "t.nwb", sha256 = "abc"}'],
     '`train = {path = "t.nwb", sha256 = "abc"}`: `sha256` must be 64 lower-case hex digits'),
    (['train = {path = "t.nwb", md5 = "abc"}'],
     "`train = {path = \"t.nwb\", md5 = \"abc\"}`: unknown key(s) ['md5']; a file table holds path, size and sha256"),
    (['source = "synthetic"'], "unknown keys ['source']"),
    (['folder = "/etc"'], "unknown keys ['folder']"),
]


@pytest.mark.parametrize(("lines", "words"), CASES, ids=[case[0][0] for case in CASES])
def test_bad_values_name_the_file_and_the_key(tiny: Tiny, tmp_path: Path, lines: list[str], words: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    toml = _with(user, *lines)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    result = run_cli(capsys, "targets", toml)

    assert result.code == 2
    assert f"nlb-suite targets: error: {toml}: {words}" in result.err
    assert check_tree(before, tmp_path) == []


@pytest.mark.parametrize(("text", "words"), [
    ("[expected]\nheldin_units = -1\n", "`expected.heldin_units = -1`: must be a whole number >= 0"),
    ("[expected]\nheldin_units = 1.5\n", "`expected.heldin_units = 1.5`: must be a whole number >= 0"),
    ("[expected]\nunits = 4\n", "[expected] has unknown key(s) ['units']; known keys are"),
    ("expected = 5\n", "`expected = 5`: must be a table ([expected])"),
])
def test_expected_counts_are_checked(tiny: Tiny, tmp_path: Path, text: str, words: str) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    body = user.toml.read_text().split("[expected]")[0]
    user.toml.write_text(text + body if text.startswith("expected") else body + text)
    with pytest.raises(SpecError) as raised:
        load_spec_toml(user.toml)
    assert str(raised.value).startswith(f"{user.toml}: {words}")


@pytest.mark.parametrize(("content", "words"), [
    (b"\xff\xfe\x00name", "not a text (UTF-8) file"),
    (b"name = [", "not valid TOML"),
    (b'name = "x"\n', "missing required keys ['train', 'test', 'align_field', 'window_ms']"),
])
def test_unreadable_files_are_named(tmp_path: Path, content: bytes, words: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_bytes(content)
    result = run_cli(capsys, "targets", toml)
    assert result.code == 2
    assert f"{toml}: {words}" in result.err


def test_a_folder_named_like_a_toml_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "spec.toml"
    folder.mkdir()
    result = run_cli(capsys, "targets", folder)
    assert result.code == 2
    assert f"{folder}: cannot read the dataset spec" in result.err


def test_written_specs_read_back_unchanged_even_with_odd_text(tiny: Tiny, tmp_path: Path) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    odd = dataclasses.replace(user.spec, description='quotes " and \\ and\nnewline \x7f and ü')
    path = tmp_path / "odd.toml"
    path.write_text(spec_to_toml(odd), encoding="utf-8")
    assert load_spec_toml(path) == odd


def test_a_valid_spec_still_runs(tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    toml = _with(user, "bin_sizes = [10]", "window_ms = [-250, 450]", "forward_ms = 100")
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, "targets", toml, "--bin", "10")
    assert result.code == 0
    assert "4 eval trials x 70 bins x 3 held-out units" in result.out


@pytest.mark.parametrize("command", ["targets", "eval"])
def test_a_bin_size_the_spec_does_not_list_says_how_to_add_it(tiny: Tiny, tmp_path: Path, command: str,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    argv = [user.toml, "--bin", "7"] if command == "targets" else ["--model", "smoothing", "--dataset", user.toml,
                                                                   "--bin", "7", "--results", tmp_path / "r.jsonl"]
    result = run_cli(capsys, command, *argv)
    assert result.code == 2
    assert ("dataset 'hostile' supports bin sizes [5, 20] ms, not 7 ms; choose one of them with --bin, or add 7 to "
            "bin_sizes in the dataset's TOML file (it must divide the 700 ms window and the 200 ms forward "
            "window)") in result.err
    assert check_tree(before, tmp_path) == []


@pytest.mark.parametrize("pin", ["size", "sha256"])
def test_a_pinned_size_or_sha256_is_checked(tiny: Tiny, tmp_path: Path, pin: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    user = user_dataset(tiny, tmp_path / "user")
    value = "5" if pin == "size" else '"' + "0" * 64 + '"'
    toml = _with(user, f'train = {{path = "{user.train}", {pin} = {value}}}')
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    result = run_cli(capsys, "eval", "--model", "smoothing", "--dataset", toml, "--results", tmp_path / "r.jsonl")

    assert result.code == 2
    found = f"{user.train.stat().st_size:,} bytes" if pin == "size" else "sha256 "
    assert f"nlb-suite eval: error: {user.train}: {found}" in result.err
    assert f"but the dataset's TOML declares {pin} = {value} (dataset 'hostile'): this is not the file" in result.err
    assert check_tree(before, tmp_path) == []


def test_the_right_pins_pass(tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    user = user_dataset(tiny, tmp_path / "user")
    digest = hashlib.sha256(user.train.read_bytes()).hexdigest()
    toml = _with(user, f'train = {{path = "{user.train}", size = {user.train.stat().st_size}, sha256 = "{digest}"}}')
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "targets", toml).code == 0
