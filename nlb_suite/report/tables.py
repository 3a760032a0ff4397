"""Leaderboard tables from the results store: one per dataset, phase and bin size.

Rows are methods (the latest run per model and hyperparameter set, or every run), plus the
published results of `references.py`, labelled "published, not run here". Columns are the
official metrics, then the suite's extras when any row has them. Every metric is higher-is-better,
and the best value of each column (published rows included, so a reader sees how far the runs
here are from the literature) is marked: bold in Markdown, listed in the `best_in` column in CSV.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from ..core.arrays import Phase
from ..core.atomic import write_text_atomic
from ..outputs.results import EXTRA_METRIC_KEYS, RunRecord
from ..scoring import OFFICIAL_METRIC_KEYS
from .published import PUBLISHED_LABEL, PUBLISHED_RESULTS, published_results


@dataclass(frozen=True)
class MetricColumn:
    """A leaderboard column: where the value lives in a record, its heading, whether to mark the best."""

    key: str
    label: str
    official: bool
    mark_best: bool = True


METRIC_COLUMNS: tuple[MetricColumn, ...] = (
    MetricColumn(OFFICIAL_METRIC_KEYS["co_bps"], "co-bps", official=True),
    MetricColumn(OFFICIAL_METRIC_KEYS["vel_r2"], "vel R2", official=True),
    MetricColumn(OFFICIAL_METRIC_KEYS["psth_r2"], "PSTH R2", official=True),
    MetricColumn(OFFICIAL_METRIC_KEYS["fp_bps"], "fp-bps", official=True),
    # dmfc_rsg's metric, shown where a row has it. Its sign is the task's (faster neural change,
    # shorter produced interval: negative), so no value is marked best.
    MetricColumn(OFFICIAL_METRIC_KEYS["tp_corr"], "tp corr", official=False, mark_best=False),
    MetricColumn(EXTRA_METRIC_KEYS["rate_r2"], "rate R2", official=False),
    # The co-bps of the true rates belongs to the dataset, not to a method: nothing to rank.
    MetricColumn(EXTRA_METRIC_KEYS["co_bps_ceiling"], "co-bps ceiling", official=False, mark_best=False),
)
RUN_HERE_LABEL = "run here"
DECIMALS = 4


@dataclass(frozen=True)
class TableKey:
    """Which leaderboard: dataset, phase, bin size."""

    dataset: str
    phase: Phase
    bin_ms: int

    @property
    def title(self) -> str:
        return f"{self.dataset}, {self.phase} phase, {self.bin_ms} ms bins"


def latest_runs(records: Iterable[RunRecord]) -> list[RunRecord]:
    """The most recent record per (dataset, phase, bin size, model, hyperparameter hash); of equal
    timestamps the one later in the store wins. Order: first appearance in `records`."""
    latest: dict[tuple[str, str, int, str, str], RunRecord] = {}
    for record in records:
        key = (record.dataset, record.phase, record.bin_ms, record.model, record.hyperparameter_hash)
        held = latest.get(key)
        if held is None or _when(record) >= _when(held):
            latest[key] = record
    return list(latest.values())


def _when(record: RunRecord) -> datetime:
    return datetime.fromisoformat(record.timestamp)


def _record_value(record: RunRecord, key: str) -> float:
    value = record.metrics.get(key, record.extra.get(key))
    return float(value) if isinstance(value, (int, float)) else math.nan


def _record_ci(record: RunRecord, key: str) -> tuple[float, float]:
    interval = record.cis.get(key)
    if not interval or len(interval) != 2 or any(bound is None for bound in interval):
        return math.nan, math.nan
    low, high = interval
    assert low is not None and high is not None
    return float(low), float(high)


def leaderboard(
    records: Iterable[RunRecord], dataset: str, phase: Phase, bin_ms: int,
    all_runs: bool = False, include_published: bool = True,
) -> pd.DataFrame:
    """The leaderboard of one dataset, phase and bin size, sorted by co-bps (best first).

    Columns: method, origin ("run here" or "published, not run here"), source, hyperparameter
    hash, seed, timestamp, and per metric key `<key>`, `<key> low`, `<key> high` (NaN where not
    reported). Metric columns that no row fills are dropped, except the official ones.
    """
    chosen = [r for r in records if (r.dataset, r.phase, r.bin_ms) == (dataset, phase, bin_ms)]
    if not all_runs:
        chosen = latest_runs(chosen)
    rows = []
    for record in chosen:
        row: dict[str, object] = {
            "method": record.model, "origin": RUN_HERE_LABEL, "source": record.submission or "",
            "hyperparameter hash": record.hyperparameter_hash, "seed": record.seed,
            "timestamp": record.timestamp,
        }
        for column in METRIC_COLUMNS:
            row[column.key] = _record_value(record, column.key)
            row[f"{column.key} low"], row[f"{column.key} high"] = _record_ci(record, column.key)
        rows.append(row)
    if include_published:
        for published in published_results(dataset, phase, bin_ms):
            row = {
                "method": published.method, "origin": PUBLISHED_LABEL, "source": published.source,
                "hyperparameter hash": "", "seed": None, "timestamp": "",
            }
            for column in METRIC_COLUMNS:
                row[column.key] = published.metrics.get(column.key, math.nan)
                row[f"{column.key} low"] = row[f"{column.key} high"] = math.nan
            rows.append(row)
    table = pd.DataFrame(rows, columns=_all_columns())
    for column in METRIC_COLUMNS:
        if not column.official and table[column.key].isna().all():
            table = table.drop(columns=[column.key, f"{column.key} low", f"{column.key} high"])
    table = table.sort_values("co-bps", ascending=False, na_position="last", kind="stable")
    return table.reset_index(drop=True)


def _all_columns() -> list[str]:
    columns = ["method", "origin", "source", "hyperparameter hash", "seed", "timestamp"]
    for column in METRIC_COLUMNS:
        columns += [column.key, f"{column.key} low", f"{column.key} high"]
    return columns


def shown_metrics(table: pd.DataFrame) -> list[MetricColumn]:
    """The metric columns present in a leaderboard, in display order."""
    return [column for column in METRIC_COLUMNS if column.key in table.columns]


def best_rows(table: pd.DataFrame) -> dict[str, list[int]]:
    """Metric key -> row positions holding that column's best (highest) value; ties all win."""
    best: dict[str, list[int]] = {}
    for column in shown_metrics(table):
        values = table[column.key]
        if column.mark_best and values.notna().any():
            best[column.key] = [int(i) for i in values.index[values == values.max()]]
    return best


def table_keys(records: Iterable[RunRecord], include_published: bool = True) -> list[TableKey]:
    """Every (dataset, phase, bin size) with runs here or published results, sorted."""
    keys = {TableKey(r.dataset, r.phase, r.bin_ms) for r in records}
    if include_published:
        keys |= {TableKey(p.dataset, p.phase, p.bin_ms) for p in PUBLISHED_RESULTS}
    return sorted(keys, key=lambda k: (k.dataset, k.phase, k.bin_ms))


def format_value(value: float, low: float = math.nan, high: float = math.nan) -> str:
    """'0.3120 [0.3010, 0.3230]'; '-' when the metric is absent; no interval when it is absent."""
    if math.isnan(value):
        return "-"
    text = f"{value:.{DECIMALS}f}"
    if not (math.isnan(low) or math.isnan(high)):
        text += f" [{low:.{DECIMALS}f}, {high:.{DECIMALS}f}]"
    return text


def _markdown_cell(text: object) -> str:
    return str(text).replace("|", "\\|")


def markdown_table(table: pd.DataFrame, all_runs: bool = False) -> str:
    """A leaderboard as a Markdown table; best values in bold, CIs in brackets."""
    metrics = shown_metrics(table)
    best = best_rows(table)
    headings = ["method", "origin", "hyperparameters"]
    if all_runs:
        headings += ["seed", "run at"]
    headings += [column.label for column in metrics]
    lines = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
    for position, values in enumerate(table.to_dict("records")):
        origin = values["origin"]
        if origin == PUBLISHED_LABEL:
            origin = f"{PUBLISHED_LABEL}: {values['source']}"
        cells = [values["method"], origin, values["hyperparameter hash"]]
        if all_runs:
            seed = values["seed"]
            cells += ["" if seed is None or pd.isna(seed) else int(seed), values["timestamp"]]
        for column in metrics:
            text = format_value(values[column.key], values[f"{column.key} low"], values[f"{column.key} high"])
            if position in best.get(column.key, ()):
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(_markdown_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _csv_frame(key: TableKey, table: pd.DataFrame) -> pd.DataFrame:
    best = best_rows(table)
    frame = table.copy()
    frame.insert(0, "bin_ms", key.bin_ms)
    frame.insert(0, "phase", key.phase)
    frame.insert(0, "dataset", key.dataset)
    frame["best_in"] = [
        ";".join(metric for metric, positions in best.items() if position in positions)
        for position in range(len(frame))
    ]
    return frame


def write_tables(records: Sequence[RunRecord], out_dir: str | Path, all_runs: bool = False,
                 extra_markdown: Mapping[TableKey, str] | None = None) -> list[Path]:
    """Write every leaderboard to `out_dir`: `leaderboard.md` (one section per table, followed by
    its `extra_markdown`, e.g. the claims table) and `leaderboard.csv` (all tables stacked, with
    dataset / phase / bin_ms columns)."""
    out_dir = Path(out_dir)
    sections = [
        "# NLB leaderboards\n",
        f"Runs here: {'every run' if all_runs else 'the latest run per model and hyperparameter set'}. "
        "Bold: best in column. Brackets: bootstrap 95% confidence interval over evaluation trials. "
        f"Rows marked '{PUBLISHED_LABEL}' are published numbers, copied with their source.\n",
    ]
    frames = []
    for key in table_keys(records):
        table = leaderboard(records, key.dataset, key.phase, key.bin_ms, all_runs=all_runs)
        sections.append(f"## {key.title}\n")
        if (table["origin"] == RUN_HERE_LABEL).sum() == 0:
            sections.append("No runs here yet.\n")
        sections.append(markdown_table(table, all_runs=all_runs))
        if extra_markdown and key in extra_markdown:
            sections.append(extra_markdown[key])
        frames.append(_csv_frame(key, table))
    markdown_path = out_dir / "leaderboard.md"
    csv_path = out_dir / "leaderboard.csv"
    write_text_atomic(markdown_path, "\n".join(sections))
    combined = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["dataset"])
    write_text_atomic(csv_path, combined.to_csv(index=False))
    return [markdown_path, csv_path]
