"""Leaderboard tables: latest run per setting, best marking, CIs, published rows, files written."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from nlb_suite.cli import main
from nlb_suite.outputs.results import RunRecord, append_record
from nlb_suite.report.published import PUBLISHED_LABEL, PUBLISHED_RESULTS, published_results
from nlb_suite.report.tables import (
    RUN_HERE_LABEL,
    best_rows,
    format_value,
    latest_runs,
    leaderboard,
    markdown_table,
    table_keys,
    write_tables,
)


def record(model: str, co_bps: float, timestamp: str, dataset: str = "synth_maze", vel_r2: float = 0.5,
           hyperparameters: dict | None = None, extra: dict | None = None, seed: int = 0) -> RunRecord:
    return RunRecord(
        dataset=dataset, phase="val", bin_ms=5, model=model,
        hyperparameters=hyperparameters if hyperparameters is not None else {"kern_sd_ms": 50},
        seed=seed, metrics={"co-bps": co_bps, "vel R2": vel_r2, "psth R2": 0.3, "fp-bps": 0.1},
        cis={"co-bps": [co_bps - 0.01, co_bps + 0.01]}, extra=extra or {}, timestamp=timestamp,
        git_commit=None,
    )


RECORDS = [
    record("smoothing", 0.20, "2026-01-01T10:00:00+00:00", vel_r2=0.70),
    record("smoothing", 0.21, "2026-01-02T10:00:00+00:00", vel_r2=0.71),  # newer: replaces the first
    record("smoothing", 0.15, "2026-01-01T12:00:00+00:00", hyperparameters={"kern_sd_ms": 20}),
    record("lfads", 0.30, "2026-01-01T11:00:00+00:00", vel_r2=0.60,
           extra={"rate R2": 0.8, "co-bps ceiling": 0.35}),
    record("gpfa", 0.25, "2026-01-01T09:00:00+00:00", dataset="mc_maze_large"),
]


def test_latest_run_per_model_and_hyperparameters() -> None:
    latest = latest_runs(RECORDS)
    assert [(r.model, r.metrics["co-bps"]) for r in latest] == [
        ("smoothing", 0.21), ("smoothing", 0.15), ("lfads", 0.30), ("gpfa", 0.25),
    ]


def test_equal_timestamps_keep_the_later_record() -> None:
    twins = [record("gpfa", 0.1, "2026-01-01T00:00:00+00:00"), record("gpfa", 0.2, "2026-01-01T00:00:00+00:00")]
    assert [r.metrics["co-bps"] for r in latest_runs(twins)] == [0.2]


def test_leaderboard_sorts_by_co_bps_and_keeps_only_present_extras() -> None:
    table = leaderboard(RECORDS, "synth_maze", "val", 5)
    assert list(table["method"]) == ["lfads", "smoothing", "smoothing"]
    assert list(table["co-bps"]) == [0.30, 0.21, 0.15]
    assert table.loc[0, "co-bps low"] == pytest.approx(0.29) and table.loc[0, "co-bps high"] == pytest.approx(0.31)
    assert "rate R2" in table.columns and math.isnan(table.loc[1, "rate R2"])
    assert (table["origin"] == RUN_HERE_LABEL).all()
    everything = leaderboard(RECORDS, "synth_maze", "val", 5, all_runs=True)
    assert len(everything) == 4
    no_extras = leaderboard(RECORDS[:3], "synth_maze", "val", 5)
    assert "rate R2" not in no_extras.columns and "psth R2" in no_extras.columns


def test_best_value_per_column_is_found_and_the_ceiling_is_not_ranked() -> None:
    table = leaderboard(RECORDS, "synth_maze", "val", 5)
    best = best_rows(table)
    assert best["co-bps"] == [0] and best["vel R2"] == [1] and best["rate R2"] == [0]
    assert best["psth R2"] == [0, 1, 2]  # a tie marks every row that has the best value
    assert "co-bps ceiling" not in best


def test_markdown_marks_the_best_and_shows_intervals() -> None:
    text = markdown_table(leaderboard(RECORDS, "synth_maze", "val", 5))
    lines = text.splitlines()
    assert lines[0] == "| method | origin | hyperparameters | co-bps | vel R2 | PSTH R2 | fp-bps | rate R2 | co-bps ceiling |"
    lfads = next(line for line in lines if line.startswith("| lfads"))
    assert "**0.3000 [0.2900, 0.3100]**" in lfads
    assert "| 0.3500 |" in lfads  # the ceiling is shown, never bold
    smoothing = next(line for line in lines if "0.2100" in line)
    assert "**0.7100**" in smoothing and "**0.3000**" in smoothing


def test_published_rows_are_included_and_labelled() -> None:
    table = leaderboard(RECORDS, "mc_maze_large", "val", 5)
    published = table[table["origin"] == PUBLISHED_LABEL]
    assert len(published) == len(published_results("mc_maze_large", "val", 5)) == 4
    gru = published[published["method"] == "GRU, coordinated dropout"].iloc[0]
    assert gru["co-bps"] == 0.3212 and gru["fp-bps"] == 0.1807 and gru["source"] == "NLB workshop walkthrough"
    assert best_rows(table)["co-bps"] == [0]  # published rows compete for best
    text = markdown_table(table)
    assert f"| GRU, coordinated dropout | {PUBLISHED_LABEL}: NLB workshop walkthrough |" in text
    assert "| gpfa | run here |" in text
    assert leaderboard(RECORDS, "mc_maze_large", "val", 5, include_published=False)["method"].tolist() == ["gpfa"]


def test_reference_data_matches_the_reference_notes() -> None:
    by_method = {(r.dataset, r.phase, r.method): r.metrics for r in PUBLISHED_RESULTS}
    assert by_method[("mc_maze_small", "val", "SLDS")] == {
        "co-bps": 0.1533, "vel R2": 0.6514, "psth R2": 0.2186, "fp-bps": -2.7199}
    assert by_method[("mc_maze", "test", "STNDT ensemble")] == {
        "co-bps": 0.3862, "vel R2": 0.9095, "psth R2": 0.6693, "fp-bps": 0.2686}
    assert by_method[("area2_bump", "test", "MINT")] == {
        "co-bps": 0.2735, "vel R2": 0.8877, "psth R2": 0.9135, "fp-bps": 0.1483}
    assert by_method[("dmfc_rsg", "test", "MINT")]["tp corr"] == -0.6929
    assert by_method[("mc_maze", "test", "GPFA")] == {"co-bps": 0.1872, "vel R2": 0.6399, "psth R2": 0.5150}
    # Every row of the reference notes' test-phase tables: 10 MC_Maze, 9 Area2_Bump, 4 MC_RTT,
    # 1 DMFC_RSG, 9 secondary co-bps figures.
    counts = {key: sum(1 for r in PUBLISHED_RESULTS if (r.dataset, r.phase, r.bin_ms) == key)
              for key in (("mc_maze", "test", 5), ("area2_bump", "test", 5), ("mc_rtt", "test", 5),
                          ("dmfc_rsg", "test", 5), ("mc_maze", "test", 20))}
    assert counts == {("mc_maze", "test", 5): 16, ("area2_bump", "test", 5): 9, ("mc_rtt", "test", 5): 4,
                      ("dmfc_rsg", "test", 5): 1, ("mc_maze", "test", 20): 3}
    assert all(r.source for r in PUBLISHED_RESULTS)


def test_format_value() -> None:
    assert format_value(0.312, 0.301, 0.323) == "0.3120 [0.3010, 0.3230]"
    assert format_value(0.312) == "0.3120"
    assert format_value(math.nan) == "-"


def test_table_keys_cover_runs_and_published_results() -> None:
    keys = [(k.dataset, k.phase, k.bin_ms) for k in table_keys(RECORDS)]
    assert keys == [("area2_bump", "test", 5), ("dmfc_rsg", "test", 5), ("mc_maze", "test", 5),
                    ("mc_maze", "test", 20), ("mc_maze_large", "val", 5), ("mc_maze_small", "val", 5),
                    ("mc_rtt", "test", 5), ("synth_maze", "val", 5)]


def test_write_tables_writes_markdown_and_csv(tmp_path: Path) -> None:
    paths = write_tables(RECORDS, tmp_path / "reports", all_runs=True)
    assert [p.name for p in paths] == ["leaderboard.md", "leaderboard.csv"]
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["leaderboard.csv", "leaderboard.md"]
    markdown = paths[0].read_text()
    assert "## synth_maze, val phase, 5 ms bins" in markdown
    assert "## mc_maze, test phase, 5 ms bins\n\nNo runs here yet." in markdown
    assert "| seed | run at |" in markdown
    csv = pd.read_csv(paths[1])
    synth = csv[csv["dataset"] == "synth_maze"]
    assert len(synth) == 4
    assert synth.iloc[0]["best_in"] == "co-bps;psth R2;fp-bps;rate R2"  # psth and fp tie
    stndt = csv[(csv["method"] == "STNDT ensemble") & (csv["dataset"] == "mc_maze")].iloc[0]
    assert stndt["origin"] == PUBLISHED_LABEL and stndt["co-bps"] == 0.3862 and stndt["phase"] == "test"


def test_report_command_writes_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "results.jsonl"
    for run in RECORDS:
        append_record(run, store)
    out = tmp_path / "reports"
    assert main(["report", "--results", str(store), "--out", str(out)]) == 0
    assert f"wrote {out / 'leaderboard.md'}" in capsys.readouterr().out
    assert "| lfads | run here |" in (out / "leaderboard.md").read_text()
    assert main(["report", "--results", str(tmp_path / "absent.jsonl"), "--out", str(out)]) == 2
    assert "no results store at" in capsys.readouterr().err
