"""The results store: one JSON line per scored run, appended, never rewritten.

Location: `--results FILE`, else $NLB_SUITE_RESULTS, else `results/results.jsonl` under the
current directory. Each append is one `os.write` of one complete line on a file opened with
O_APPEND, under an exclusive `flock`, so runs finishing at the same time never interleave or lose
lines. Readers skip a corrupt line (a crash mid-write, a hand edit) with a warning that names the
file and line, so one bad line never hides the other results.

Non-finite numbers are stored as null, which keeps every line strict JSON for other tools.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import math
import os
import subprocess
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..core.arrays import Phase
from ..core.atomic import file_sha256
from ..core.errors import NlbSuiteError
from ..scoring import OFFICIAL_METRIC_KEYS, Scores

ENV_VAR = "NLB_SUITE_RESULTS"
DEFAULT_RELATIVE_PATH = Path("results") / "results.jsonl"
HASH_LENGTH = 12
# Scores field -> record key of the suite's own metrics, named in the style of nlb_tools' keys.
EXTRA_METRIC_KEYS = {"rate_r2": "rate R2", "co_bps_ceiling": "co-bps ceiling"}
PER_UNIT_KEY = "per-unit co-bps"
# An ensemble's record: model `ensemble(<members' models>)`, hyperparameters {"members": [...]}.
ENSEMBLE_MEMBERS = "members"
ENSEMBLE_PREFIX = "ensemble("


class ResultsStoreError(NlbSuiteError, OSError):
    """The results store cannot be found, read or appended to."""


class CorruptRecordWarning(UserWarning):
    """A line of the results store is not a valid record and was skipped."""


def results_path(override: str | Path | None = None) -> Path:
    """`override`, else $NLB_SUITE_RESULTS, else ./results/results.jsonl."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.cwd() / DEFAULT_RELATIVE_PATH


def _plain(value: Any) -> Any:
    """JSON-ready copy of hyperparameters and metrics: numpy scalars and arrays become Python
    numbers and lists, paths and other objects their text, non-finite floats None."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def hyperparameter_hash(hyperparameters: Mapping[str, Any]) -> str:
    """Stable short hash of a hyperparameter set: the same values give the same hash in any
    process and any key order."""
    canonical = json.dumps(_plain(hyperparameters), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def ensemble_model_name(models: list[str]) -> str:
    """The model name an ensemble is recorded under, which marks it in leaderboards:
    'ensemble(ndt x3)' for seeds of one model, 'ensemble(lfads+ndt+stndt)' for several."""
    if len(set(models)) == 1:
        return f"{ENSEMBLE_PREFIX}{models[0]} x{len(models)})"
    return f"{ENSEMBLE_PREFIX}{'+'.join(sorted(models))})"


@functools.cache
def git_commit() -> str | None:
    """The commit of the nlb_suite source tree, or None outside a git checkout. Read once per
    process, at the first call: a run calls it as it starts, so that a commit made during an
    hour of training is not recorded as the code that trained."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """One scored run. `metrics` are the official ones under their nlb_tools names ("co-bps",
    "vel R2", "psth R2", "fp-bps"); `extra` holds the suite's additions ("rate R2",
    "co-bps ceiling", "per-unit co-bps" summary); `cis` maps any of those metric names to its
    bootstrap 95% interval [low, high]. Build one from a `Scores` with `from_scores`."""

    dataset: str
    phase: Phase
    bin_ms: int
    model: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, float | None]
    seed: int | None = None
    cis: dict[str, list[float | None]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float | None = None
    predict_seconds: float | None = None
    submission: str | None = None
    # The submission file's sha256 when the record was made: a later run with the same name
    # rewrites the file, and the report then knows the arrays there are not this run's.
    submission_sha256: str | None = None
    # How the model ran (device, threads, ...): recorded, not part of the hyperparameters' hash.
    runtime: dict[str, Any] = field(default_factory=dict)
    # The dataset's spec when it is not a built-in one (a user's TOML, imported trial arrays), so
    # that reports find its files without the TOML.
    spec: dict[str, Any] | None = None
    package_version: str = __version__
    git_commit: str | None = field(default_factory=git_commit)
    timestamp: str = field(default_factory=_now)
    hyperparameter_hash: str = field(init=False)

    def __post_init__(self) -> None:
        # Stored in plain form so a record read back equals the record written.
        self.hyperparameters = _plain(self.hyperparameters)
        self.metrics = _plain(self.metrics)
        self.cis = _plain(self.cis)
        self.extra = _plain(self.extra)
        self.runtime = _plain(self.runtime)
        self.spec = None if self.spec is None else _plain(self.spec)
        self.hyperparameter_hash = hyperparameter_hash(self.hyperparameters)

    @classmethod
    def from_scores(
        cls, scores: Scores, *, dataset: str, phase: Phase, bin_ms: int, model: str,
        hyperparameters: Mapping[str, Any], seed: int | None = None, fit_seconds: float | None = None,
        predict_seconds: float | None = None, submission: str | Path | None = None,
        runtime: Mapping[str, Any] | None = None, spec: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """The record of a scored run: official metrics under nlb_tools' names, the extras under
        `EXTRA_METRIC_KEYS`, each interval under its metric's key, and a per-unit co-bps summary."""
        names = OFFICIAL_METRIC_KEYS | EXTRA_METRIC_KEYS
        extra: dict[str, Any] = {
            key: getattr(scores, field_name) for field_name, key in EXTRA_METRIC_KEYS.items()
            if getattr(scores, field_name) is not None
        }
        per_unit = np.asarray(scores.co_bps_per_unit, dtype=np.float64)
        finite = per_unit[np.isfinite(per_unit)]  # units without held-out spikes have no value
        if finite.size:
            extra[PER_UNIT_KEY] = {
                "units": int(finite.size), "mean": float(finite.mean()), "median": float(np.median(finite)),
                "min": float(finite.min()), "max": float(finite.max()),
            }
        return cls(
            dataset=dataset, phase=phase, bin_ms=bin_ms, model=model, hyperparameters=dict(hyperparameters),
            metrics={key: value for key, value in scores.official().items()},
            cis={names.get(field_name, field_name): [interval.low, interval.high] for field_name, interval in scores.ci.items()},
            extra=extra, seed=seed, fit_seconds=fit_seconds, predict_seconds=predict_seconds,
            submission=None if submission is None else str(submission),
            submission_sha256=file_sha256(Path(submission)) if submission is not None and Path(submission).is_file()
            else None,
            runtime=dict(runtime or {}), spec=None if spec is None else dict(spec),
        )

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """A record from its stored form; ValueError names what is wrong. Unknown keys (from a
        later version of the suite) are ignored; the hash is recomputed, not trusted."""
        names = {f.name for f in fields(cls) if f.init}
        required = {"dataset", "phase", "bin_ms", "model", "hyperparameters", "metrics", "timestamp"}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        checks = {
            "dataset": str, "phase": str, "bin_ms": int, "model": str, "hyperparameters": dict,
            "metrics": dict, "cis": dict, "extra": dict, "runtime": dict,
        }
        for name, kind in checks.items():
            if name in data and not isinstance(data[name], kind):
                raise ValueError(f"field {name!r} is {type(data[name]).__name__}, expected {kind.__name__}")
        if data.get("spec") is not None and not isinstance(data["spec"], dict):
            raise ValueError(f"field 'spec' is {type(data['spec']).__name__}, expected an object or null")
        if data["phase"] not in ("val", "test"):
            raise ValueError(f"phase {data['phase']!r} is neither 'val' nor 'test'")
        # Reports order runs by time, which needs comparable (timezone-aware) timestamps.
        if not isinstance(data["timestamp"], str) or datetime.fromisoformat(data["timestamp"]).tzinfo is None:
            raise ValueError(f"timestamp {data['timestamp']!r} is not an ISO 8601 time with a timezone")
        known = {key: value for key, value in data.items() if key in names}
        # An absent commit stays unknown rather than being filled in with today's checkout.
        known.setdefault("git_commit", None)
        return cls(**known)


def append_record(record: RunRecord, path: str | Path | None = None) -> Path:
    """Append one record to the store as a single line; safe against concurrent appenders."""
    path = results_path(path)
    line = (json.dumps(record.to_dict(), sort_keys=True, allow_nan=False) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as err:
        raise ResultsStoreError(f"{path}: cannot open the results store for appending ({err})") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        size = os.fstat(descriptor).st_size
        # A writer killed mid-line leaves no newline at the end; start a fresh line so that only
        # the broken record is lost, not this one too.
        if size and os.pread(descriptor, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = os.write(descriptor, line)
        if written != len(line):
            raise ResultsStoreError(f"{path}: short write ({written} of {len(line)} bytes); disk full?")
        os.fsync(descriptor)
    except OSError as err:
        raise ResultsStoreError(f"{path}: cannot append to the results store ({err})") from None
    finally:
        os.close(descriptor)  # closing releases the lock
    return path


def read_records(path: str | Path | None = None) -> list[RunRecord]:
    """Every valid record in file order; corrupt lines are skipped with a CorruptRecordWarning."""
    path = results_path(path)
    try:
        with path.open("rb") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_SH)  # never read a line that is half written
            content = file.read()
    except FileNotFoundError:
        raise ResultsStoreError(
            f"no results store at {path}; score a run first (`nlb-suite eval ...`), or point "
            f"--results / ${ENV_VAR} at an existing store"
        ) from None
    except OSError as err:
        raise ResultsStoreError(f"{path}: cannot read the results store ({err})") from None
    records = []
    for number, raw in enumerate(content.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            records.append(RunRecord.from_dict(data))
        except (ValueError, TypeError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            warnings.warn(f"{path}:{number}: skipped a corrupt record ({err})", CorruptRecordWarning, stacklevel=2)
    return records
