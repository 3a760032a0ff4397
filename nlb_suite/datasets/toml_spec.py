"""Users' datasets: a small TOML file with the fields of `DatasetSpec`, read and written here."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..core.atomic import write_text_atomic
from ..core.spec import Asset, DatasetSpec, ExpectedCounts, Role, SpecError, check_name

_REQUIRED = ("name", "train", "test", "align_field", "window_ms")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Times in a spec are ms around an event: a minute is far beyond any trial, and a bound keeps a
# typo (seconds written as ms, an extra digit) from asking for terabytes of tensors.
MAX_MS = 60_000


class _Reader:
    """Reads one TOML file's values; every complaint names the file, the key and the value."""

    def __init__(self, path: Path, raw: dict[str, Any]) -> None:
        self.path = path
        self.raw = raw

    def fail(self, key: str, value: object, problem: str) -> SpecError:
        return SpecError(f"{self.path}: `{key} = {_toml_value(value)}`: {problem}")

    def text(self, key: str, *, empty_is_none: bool = False) -> str | None:
        value = self.raw[key]
        if not isinstance(value, str):
            raise self.fail(key, value, 'must be a string in quotes, e.g. `' + key + ' = "..."`')
        if value == "" and empty_is_none:
            return None
        if not value.strip():
            raise self.fail(key, value, "must not be empty")
        return value

    def integer(self, key: str, item: object = None, *, minimum: int = -MAX_MS) -> int:
        """A whole number of ms in [minimum, MAX_MS]: the key's value, or `item` of its list."""
        value = self.raw[key] if item is None else item
        # TOML's true / false arrive as bool, a subclass of int: refused like any other non-integer.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, self.raw[key], "must be a whole number of ms, without quotes")
        if value < minimum:
            raise self.fail(key, self.raw[key], "must be positive" if minimum == 1 else f"must be >= {minimum}")
        if abs(value) > MAX_MS:
            raise self.fail(key, self.raw[key], f"more than {MAX_MS} ms; times in a dataset spec are in ms")
        return value

    def integers(self, key: str, *, minimum: int = -MAX_MS, length: int | None = None) -> tuple[int, ...]:
        value = self.raw[key]
        if not isinstance(value, list) or (length is not None and len(value) != length) or not value:
            shape = f"a list of {length} whole numbers" if length else "a non-empty list of whole numbers"
            raise self.fail(key, value, f"must be {shape} (ms)")
        return tuple(self.integer(key, item, minimum=minimum) for item in value)

    def boolean(self, key: str) -> bool:
        value = self.raw[key]
        if not isinstance(value, bool):
            raise self.fail(key, value, "must be true or false, without quotes")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.raw[key]
        if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
            raise self.fail(key, value, 'must be a list of column names, e.g. `' + key + ' = ["trial_type"]`')
        return tuple(value)

    def asset(self, role: Role) -> Asset:
        value = self.raw[role]
        table = {"path": value} if isinstance(value, str) else value
        if not isinstance(table, dict) or not isinstance(table.get("path"), str) or not table["path"].strip():
            raise self.fail(role, value, "must be a file path, or a table with a `path` key")
        unknown = sorted(set(table) - {"path", "size", "sha256"})
        if unknown:
            raise self.fail(role, value, f"unknown key(s) {unknown}; a file table holds path, size and sha256")
        text = table["path"]
        if "\0" in text:
            raise self.fail(role, value, "the path holds a NUL byte")
        try:
            file_path = Path(text).expanduser()
        except RuntimeError as err:  # '~someone' without a home folder
            raise self.fail(role, value, f"cannot expand the path ({err})") from None
        if not file_path.is_absolute():
            file_path = (self.path.parent / file_path).resolve()
        size = table.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise self.fail(role, value, "`size` must be a whole number of bytes")
        digest = table.get("sha256")
        if digest is not None and (not isinstance(digest, str) or not _SHA256.fullmatch(digest)):
            raise self.fail(role, value, "`sha256` must be 64 lower-case hex digits")
        return Asset(path=str(file_path), size=size, sha256=digest)

    def expected(self) -> ExpectedCounts:
        value = self.raw["expected"]
        names = [f.name for f in fields(ExpectedCounts)]
        if not isinstance(value, dict):
            raise self.fail("expected", value, f"must be a table ([expected]) with keys among {names}")
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise SpecError(f"{self.path}: [expected] has unknown key(s) {unknown}; known keys are {names}")
        counts: dict[str, int] = {}
        for name, count in value.items():
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise SpecError(f"{self.path}: `expected.{name} = {_toml_value(count)}`: must be a whole "
                                "number >= 0")
            counts[name] = count
        return ExpectedCounts(**counts)


# key -> how it is read into the DatasetSpec field of the same name.
_FIELDS: dict[str, Callable[[_Reader, str], object]] = {
    "name": lambda r, k: r.text(k),
    "description": lambda r, k: r.text(k),
    "train": lambda r, k: r.asset("train"),
    "test": lambda r, k: r.asset("test"),
    "align_field": lambda r, k: r.text(k),
    "window_ms": lambda r, k: r.integers(k, length=2),
    "forward_ms": lambda r, k: r.integer(k, minimum=0),
    "bin_sizes": lambda r, k: r.integers(k, minimum=1),
    # TOML has no null: an empty string says "this dataset has no behaviour / no decode masks".
    "behavior_field": lambda r, k: r.text(k, empty_is_none=True),
    "behavior_lag_ms": lambda r, k: r.integer(k),
    "psth_conditions": lambda r, k: r.texts(k),
    "psth_kern_sd_ms": lambda r, k: r.integer(k, minimum=1),
    "decode_mask_field": lambda r, k: r.text(k, empty_is_none=True),
    "eval_allow_overlap": lambda r, k: r.boolean(k),
    # Continuous recordings cut into windows that run into each other (as MC_RTT).
    "allow_overlap": lambda r, k: r.boolean(k),
    "scaling_key": lambda r, k: r.text(k, empty_is_none=True),
    "expected": lambda r, k: r.expected(),
}


def load_spec_toml(path: str | Path) -> DatasetSpec:
    """Read a user's dataset description. Every key's type and range is checked here, and each
    message names the file, the key and its value.

    Example (paths relative to the TOML file)::

        name = "my_reach"
        description = "PMd during delayed reaches"
        train = "data/my_reach_train.nwb"
        test = "data/my_reach_test.nwb"
        align_field = "move_onset_time"
        window_ms = [-250, 450]
        forward_ms = 200
        bin_sizes = [5, 20]
        behavior_field = "hand_vel"
        behavior_lag_ms = 100
        psth_conditions = ["trial_type", "trial_version"]
        psth_kern_sd_ms = 50

    `name` is a safe identifier (letters, digits, '_', '-'), since files are named after it;
    `window_ms` is [start, stop] with start < stop; `forward_ms` >= 0; each bin size divides
    both the window and the forward window, so no window is silently cut to whole bins.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise SpecError(f"dataset spec file not found: {path}") from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read the dataset spec ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not a text (UTF-8) file ({err.reason} at byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML ({err})") from None
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise SpecError(f"{path}: unknown keys {unknown}; known keys are {sorted(_FIELDS)}")
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise SpecError(f"{path}: missing required keys {missing}")
    reader = _Reader(path, raw)
    values = {key: read(reader, key) for key, read in _FIELDS.items() if key in raw}
    try:
        check_name(values["name"])
    except SpecError as err:
        raise reader.fail("name", raw["name"], str(err)) from None
    _check_windows(reader, values)
    values.setdefault("description", f"user dataset from {path.name}")
    try:
        return DatasetSpec(source="user", **values)  # type: ignore[arg-type]
    except SpecError as err:  # the spec's own checks, should one be added that is not mirrored here
        raise SpecError(f"{path}: {err}") from None


def _check_windows(reader: _Reader, values: dict[str, Any]) -> None:
    """start < stop, and every bin size divides the window and the forward window."""
    start, stop = values["window_ms"]
    if stop <= start:
        raise reader.fail("window_ms", reader.raw["window_ms"],
                          f"the window must start before it stops (start {start} ms, stop {stop} ms)")
    bin_sizes = values.get("bin_sizes", _default("bin_sizes"))
    forward = values.get("forward_ms", _default("forward_ms"))
    bins_key = "bin_sizes" if "bin_sizes" in values else f"bin_sizes (default {list(bin_sizes)})"
    if len(set(bin_sizes)) != len(bin_sizes):
        raise reader.fail("bin_sizes", reader.raw["bin_sizes"], "lists a bin size twice")
    for bin_ms in bin_sizes:
        for key, length in (("window_ms", stop - start), ("forward_ms", forward)):
            if length % bin_ms:
                raise SpecError(
                    f"{reader.path}: {bins_key}: {key} ({length} ms) is not a whole number of {bin_ms} ms "
                    f"bins; use bin sizes that divide both the window ({stop - start} ms) and the "
                    f"forward window ({forward} ms)"
                )


def _default(name: str) -> Any:
    return next(f.default for f in fields(DatasetSpec) if f.name == name)


def _toml_value(v: object) -> str:
    """`v` as it would be written in TOML."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, str):
        # JSON's string escapes are TOML's (\", \\, \n, \uXXXX); TOML also wants DEL escaped.
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    return str(v)


def spec_to_toml(spec: DatasetSpec) -> str:
    """The TOML text that `load_spec_toml` reads back into `spec` (a user dataset: absolute paths)."""
    value = _toml_value
    lines = [
        f"name = {value(spec.name)}",
        f"description = {value(spec.description)}",
        f"train = {value(spec.train.path)}",
        f"test = {value(spec.test.path)}",
        f"align_field = {value(spec.align_field)}",
        f"window_ms = {value(list(spec.window_ms))}",
        f"forward_ms = {spec.forward_ms}",
        f"bin_sizes = {value(list(spec.bin_sizes))}",
        f"behavior_field = {value(spec.behavior_field or '')}",
        f"behavior_lag_ms = {spec.behavior_lag_ms}",
        f"psth_conditions = {value(list(spec.psth_conditions))}",
        f"psth_kern_sd_ms = {spec.psth_kern_sd_ms}",
        f"decode_mask_field = {value(spec.decode_mask_field or '')}",
        f"eval_allow_overlap = {value(spec.eval_allow_overlap)}",
        f"allow_overlap = {value(spec.allow_overlap)}",
    ]
    counts = {f.name: getattr(spec.expected, f.name) for f in fields(ExpectedCounts)}
    lines += ["", "[expected]"] + [f"{k} = {v}" for k, v in counts.items() if v is not None]
    return "\n".join(lines) + "\n"


def write_spec_toml(spec: DatasetSpec, path: str | Path) -> Path:
    """Write `spec` as a dataset TOML file (atomically), usable as `--dataset path`."""
    return write_text_atomic(path, spec_to_toml(spec))
