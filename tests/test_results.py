"""The results store: records round-trip, appends are atomic across processes, corrupt lines are skipped."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.synchronize
import warnings
from pathlib import Path

import numpy as np
import pytest

from nlb_suite.outputs.results import (
    ENV_VAR,
    CorruptRecordWarning,
    ResultsStoreError,
    RunRecord,
    append_record,
    hyperparameter_hash,
    read_records,
    results_path,
)
from nlb_suite.scoring import Interval, Scores


def make_record(model: str = "smoothing", co_bps: float = 0.2, **changes: object) -> RunRecord:
    fields: dict[str, object] = dict(
        dataset="synth_maze", phase="val", bin_ms=5, model=model,
        hyperparameters={"kern_sd_ms": 50, "alpha": 0.01}, seed=0,
        metrics={"co-bps": co_bps, "vel R2": 0.6, "psth R2": 0.4, "fp-bps": 0.1},
        cis={"co-bps": [co_bps - 0.01, co_bps + 0.01]}, extra={"rate R2": 0.7, "co-bps ceiling": 0.35},
        fit_seconds=1.5, predict_seconds=0.25, submission="submissions/x.h5",
    )
    fields.update(changes)
    return RunRecord(**fields)


def test_results_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert results_path() == tmp_path / "results" / "results.jsonl"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.jsonl"))
    assert results_path() == tmp_path / "env.jsonl"
    assert results_path(tmp_path / "flag.jsonl") == tmp_path / "flag.jsonl"


def test_hyperparameter_hash_is_stable_and_order_free() -> None:
    first = hyperparameter_hash({"a": 1, "b": [1.5, 2], "c": np.float64(0.1)})
    assert first == hyperparameter_hash({"c": 0.1, "b": (1.5, 2), "a": np.int64(1)})
    assert first != hyperparameter_hash({"a": 2, "b": [1.5, 2], "c": 0.1})
    assert len(first) == 12


def test_record_round_trip_through_the_store(tmp_path: Path) -> None:
    path = tmp_path / "store" / "results.jsonl"
    record = make_record(hyperparameters={"kern_sd_ms": np.int64(50), "dims": (4, 8)},
                         metrics={"co-bps": np.float32(0.25), "fp-bps": float("nan")})
    append_record(record, path)
    [back] = read_records(path)
    assert back == record
    assert back.hyperparameters == {"kern_sd_ms": 50, "dims": [4, 8]}
    assert back.metrics == {"co-bps": pytest.approx(0.25), "fp-bps": None}  # non-finite stored as null
    assert back.hyperparameter_hash == record.hyperparameter_hash
    line = json.loads(path.read_text())
    assert {"package_version", "git_commit", "timestamp", "hyperparameter_hash"} <= set(line)


def test_appends_never_rewrite_earlier_lines(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    append_record(make_record(co_bps=0.1), path)
    first = path.read_bytes()
    append_record(make_record(co_bps=0.2), path)
    assert path.read_bytes().startswith(first)
    assert [r.metrics["co-bps"] for r in read_records(path)] == [0.1, 0.2]


def _append_many(path: str, worker: int, count: int, start: multiprocessing.synchronize.Event) -> None:
    start.wait()  # all workers append at the same moment
    for index in range(count):
        # A long payload makes each line bigger than a pipe buffer, so interleaving would show.
        append_record(make_record(model=f"worker{worker}", seed=index, extra={"padding": "x" * 20000}), path)


def test_concurrent_appends_from_several_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    workers, count = 4, 25
    context = multiprocessing.get_context("fork")
    start = context.Event()
    processes = [context.Process(target=_append_many, args=(str(path), w, count, start)) for w in range(workers)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptRecordWarning)
        records = read_records(path)
    assert len(records) == workers * count
    assert {(r.model, r.seed) for r in records} == {(f"worker{w}", i) for w in range(workers) for i in range(count)}
    assert len(path.read_bytes().splitlines()) == workers * count


def test_corrupt_lines_are_skipped_with_a_warning_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    append_record(make_record(co_bps=0.1), path)
    with path.open("a") as file:
        file.write('{"dataset": "synth_maze", "phase": "val"}\n')  # line 2: fields missing
        file.write("[1, 2]\n")  # line 3: not an object
        file.write('{"dataset": "synth_maze", "phase": "val", "bin_ms": 5, "model"\n')  # line 4: bad JSON
    append_record(make_record(co_bps=0.3), path)
    with pytest.warns(CorruptRecordWarning) as caught:
        records = read_records(path)
    assert [r.metrics["co-bps"] for r in records] == [0.1, 0.3]
    texts = [str(w.message) for w in caught]
    assert len(texts) == 3
    assert texts[0].startswith(f"{path}:2: skipped a corrupt record (missing field(s)")
    assert texts[1].startswith(f"{path}:3: skipped a corrupt record (a JSON list")
    assert texts[2].startswith(f"{path}:4: skipped a corrupt record")


def test_a_half_written_last_line_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    append_record(make_record(co_bps=0.1), path)
    with path.open("a") as file:
        file.write('{"dataset": "synth')  # a writer killed mid-line: no newline
    append_record(make_record(co_bps=0.2), path)
    with pytest.warns(CorruptRecordWarning, match=":2: "):
        records = read_records(path)
    assert [r.metrics["co-bps"] for r in records] == [0.1, 0.2]


def test_wrong_field_types_and_phase_are_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    good = make_record().to_dict()
    path.write_text(
        json.dumps(good | {"bin_ms": "5"}) + "\n" + json.dumps(good | {"phase": "train"}) + "\n"
        + json.dumps(good | {"timestamp": "2026-01-01T10:00:00"}) + "\n"
        + json.dumps(good | {"added_in_a_later_version": 1}) + "\n"
    )
    with pytest.warns(CorruptRecordWarning) as caught:
        records = read_records(path)
    assert len(records) == 1  # unknown keys are ignored, not corrupt
    assert "field 'bin_ms' is str, expected int" in str(caught[0].message)
    assert "phase 'train' is neither 'val' nor 'test'" in str(caught[1].message)
    assert "timestamp '2026-01-01T10:00:00' is not an ISO 8601 time with a timezone" in str(caught[2].message)


def test_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsStoreError, match="no results store at .*absent.jsonl"):
        read_records(tmp_path / "absent.jsonl")


def test_from_scores_names_metrics_as_nlb_tools_and_summarises_per_unit_co_bps(tmp_path: Path) -> None:
    scores = Scores(
        co_bps=0.3, vel_r2=0.8, psth_r2=None, fp_bps=0.1,
        co_bps_per_unit=np.array([0.1, np.nan, 0.5, 0.3]), rate_r2=0.9, co_bps_ceiling=0.4,
        ci={"co_bps": Interval(0.28, 0.32), "rate_r2": Interval(0.85, 0.95)}, n_boot=100, seed=3,
    )
    made = RunRecord.from_scores(scores, dataset="synth_maze", phase="val", bin_ms=20, model="smoothing",
                                 hyperparameters={"kern_sd_ms": 50}, seed=3, fit_seconds=2.0,
                                 predict_seconds=0.5, submission=tmp_path / "sub.h5")
    assert made.metrics == {"co-bps": 0.3, "vel R2": 0.8, "fp-bps": 0.1}
    assert made.cis == {"co-bps": [0.28, 0.32], "rate R2": [0.85, 0.95]}
    assert made.extra == {
        "rate R2": 0.9, "co-bps ceiling": 0.4,
        "per-unit co-bps": {"units": 3, "mean": pytest.approx(0.3), "median": 0.3, "min": 0.1, "max": 0.5},
    }
    assert made.submission == str(tmp_path / "sub.h5")
    append_record(made, tmp_path / "results.jsonl")
    assert read_records(tmp_path / "results.jsonl") == [made]


def test_the_commit_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit made while a run trains is not recorded as the code that trained."""
    import subprocess

    from nlb_suite.outputs import results

    heads = iter(["a" * 40, "b" * 40])

    def rev_parse(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, stdout=next(heads) + "\n", stderr="")

    results.git_commit.cache_clear()
    monkeypatch.setattr(results.subprocess, "run", rev_parse)
    try:
        assert results.git_commit() == "a" * 40  # as the run starts
        assert make_record().git_commit == "a" * 40  # as its record is written, after a commit
    finally:
        results.git_commit.cache_clear()
