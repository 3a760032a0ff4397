"""The HTML report: one self-contained page per run set, with the leaderboards, the figures and
the settings behind every row.

Per leaderboard (dataset, phase, bin size with runs here) the page shows the table (sortable by
clicking any header), a chart of every metric with its bootstrap interval, the figures of
`figures.py`, and the hyperparameters, seed, package version, git commit and times of each run.
A selector switches between leaderboards when there is more than one. Figures are embedded as
base64 PNG and the CSS and JavaScript are inline, so the file reads offline and loads nothing.
A figure whose input is missing (a model without latents, a dataset without behaviour) is
replaced by a line saying why.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import math
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from .. import __version__
from ..core.atomic import write_text_atomic
from ..outputs.results import RunRecord, git_commit
from ..outputs.studies import read_rounds, read_study, read_trials
from . import figures
from .claims import CLAIMS, Claims
from .figures import Colors
from .loading import PieceMissing, View, gather_view, repeated_models, run_label
from .published import PUBLISHED_LABEL
from .tables import RUN_HERE_LABEL, TableKey, best_rows, format_value, leaderboard, shown_metrics, table_keys
from .views import (
    EVENT_WINDOW_MS,
    inputs_around_event,
    latent_trajectories,
    psth_comparison,
    rotations,
    single_trials,
    time_axis,
    training_histories,
    velocity_comparison,
)

REPORT_NAME = "report.html"
# Libraries whose versions shape the numbers or the figures, listed in the page's footer.
REPORTED_PACKAGES = ("numpy", "scipy", "pandas", "scikit-learn", "h5py", "pynwb", "torch", "matplotlib")


@dataclass(frozen=True)
class FigureBlock:
    title: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class Omission:
    """A figure that could not be drawn, and why."""

    title: str
    reason: str


@dataclass(frozen=True)
class Section:
    """Everything the page shows for one leaderboard."""

    key: TableKey
    table_html: str
    settings_html: str
    blocks: list[FigureBlock | Omission]
    notes: list[str]
    claims: Claims | None = None
    studies_html: str = ""

    @property
    def anchor(self) -> str:
        return f"view-{_slug(self.key)}"


def _slug(key: TableKey) -> str:
    return f"{key.dataset}_{key.phase}_{key.bin_ms}ms"


def _single_trials(view: View, colors: Colors) -> tuple[bytes, str]:
    data = single_trials(view)
    axis = time_axis(view)
    truth = ", and the true rate (dashed)" if data.true_rates is not None else ""
    caption = (
        f"{', '.join(data.trial_names)} of the eval set: spikes of the {len(data.unit_names)} held-out units with "
        f"the most eval spikes (ticks under the curves; height: spikes in the {axis.bin_ms} ms bin), each run's "
        f"predicted rate{truth}. Held-out units are predicted from held-in activity only. "
        f"Dotted line: {axis.event}."
    )
    return figures.single_trials_figure(data, axis, colors), caption


def _psth(view: View, colors: Colors) -> tuple[bytes, str]:
    data = psth_comparison(view)
    caption = (
        f"Target PSTHs (black: spikes smoothed and averaged over the condition's trials) of the "
        f"{len(data.unit_names)} held-out units that vary most, in the first {len(data.condition_names)} "
        "conditions with eval trials, against each run's eval rates averaged over the condition's eval trials: "
        "what PSTH R2 scores."
    )
    return figures.psth_figure(data, time_axis(view), colors), caption


def _trajectories(view: View, colors: Colors) -> tuple[bytes, str]:
    data = latent_trajectories(view)
    axis = time_axis(view)
    sources = ", ".join(f"{run.label}: {run.source}" for run in data.runs)
    caption = (
        f"Eval-trial latents ({sources}) projected on their first principal components (over all eval trials "
        f"and bins) and averaged over the eval trials of each of the {len(data.condition_names)} conditions "
        f"(colour). Open circle: window start ({axis.start_ms} ms); black dot: {axis.event}."
    )
    if data.without_latents:
        caption += f" Runs without latents: {', '.join(data.without_latents)}."
    return figures.trajectories_figure(data, axis), caption


def _velocity(view: View, colors: Colors) -> tuple[bytes, str]:
    data = velocity_comparison(view)
    assert view.spec is not None
    masks = (f" One decoder per value of {view.spec.decode_mask_field}, as the metric does."
             if view.spec.decode_mask_field else "")
    caption = (
        f"Hand velocity of {', '.join(data.trial_names)} (behaviour lagged by {view.spec.behavior_lag_ms} ms, as "
        "scored): recorded (black); decoded from each run's rates of all units by the ridge regression of the "
        "vel-R2 metric, fitted on the train trials; and by a Kalman filter on the held-in spikes "
        f"(Wu et al. 2006, dashed). R2 in the legend: over all eval trials.{masks}"
    )
    return figures.velocity_figure(data, time_axis(view), colors), caption


def _inputs(view: View, colors: Colors) -> tuple[bytes, str]:
    data = inputs_around_event(view)
    caption = (
        f"Inferred inputs of the eval trials with a {data.event}, {EVENT_WINDOW_MS[0]} to {EVENT_WINDOW_MS[1]} ms "
        f"around its onset (thin: up to {figures.SHOWN_EVENT_TRIALS} single trials; thick: mean), and the mean over "
        f"trials without one around {data.alignment} (grey). The {data.event} is an input nothing before it "
        "predicts, so a controller that captures it shows a deflection after 0 ms."
    )
    return figures.inputs_figure(data, colors), caption


def _training_curves(view: View, colors: Colors) -> tuple[bytes, str]:
    histories = training_histories(view)
    caption = ("Per epoch: training objective (solid) and validation reconstruction loss (dashed), and "
               "validation co-bps (held-out units of the validation trials).")
    return figures.training_curves_figure(histories, colors), caption


def _rotations(view: View, colors: Colors) -> tuple[bytes, str]:
    data = rotations(view)
    start, stop = data.window_ms
    caption = (
        f"jPCA (Churchland et al. 2012) of each run's condition-averaged eval latents from {start} to {stop} ms "
        f"around {time_axis(view).event}: the {len(data.condition_names)} conditions' trajectories in the plane of "
        "the fastest rotation of the best skew-symmetric (purely rotational) linear dynamics. The title gives the "
        "variance of the latents' change those explain as a share of what unconstrained linear dynamics explain."
    )
    return figures.jpca_figure(data), caption


FigureBuilder = Callable[[View, Colors], tuple[bytes, str]]
FIGURE_BUILDERS: tuple[tuple[str, FigureBuilder], ...] = (
    ("Single trials", _single_trials),
    ("PSTHs per condition", _psth),
    ("Latent trajectories", _trajectories),
    ("Rotations: the top jPC plane", _rotations),
    ("Behaviour: decoded hand velocity", _velocity),
    ("Inferred inputs around the unpredictable input", _inputs),
    ("Training curves", _training_curves),
)


def _row_labels(table: pd.DataFrame) -> list[str]:
    here = table["origin"] == RUN_HERE_LABEL
    repeated = repeated_models(list(table.loc[here, "method"]))
    return [
        run_label(row["method"], row["hyperparameter hash"], repeated) if row["origin"] == RUN_HERE_LABEL
        else f"{row['method']} (published)"
        for row in table.to_dict("records")
    ]


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _sort_value(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def _leaderboard_html(table: pd.DataFrame, labels: Sequence[str]) -> str:
    metrics = shown_metrics(table)
    best = best_rows(table)
    head = '<th>run</th><th>origin</th>' + "".join(
        f'<th data-type="number">{_text(metric.label)}</th>' for metric in metrics)
    body = []
    for position, (row, label) in enumerate(zip(table.to_dict("records"), labels, strict=True)):
        published = row["origin"] == PUBLISHED_LABEL
        origin = f"{PUBLISHED_LABEL}: {row['source']}" if published else RUN_HERE_LABEL
        cells = [f"<td>{_text(label)}</td>", f"<td>{_text(origin)}</td>"]
        for metric in metrics:
            value = row[metric.key]
            shown = _text(format_value(value, row[f"{metric.key} low"], row[f"{metric.key} high"]))
            if position in best.get(metric.key, ()):
                shown = f"<strong>{shown}</strong>"
            cells.append(f'<td class="number" data-sort="{_sort_value(value)}">{shown}</td>')
        body.append(f'<tr{" class=published" if published else ""}>{"".join(cells)}</tr>')
    return (f'<div class="table-wrap"><table class="sortable leaderboard"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _hyperparameters_html(hyperparameters: Mapping[str, object]) -> str:
    return "<br>".join(f"<code>{_text(name)}={_text(value)}</code>" for name, value in sorted(hyperparameters.items()))


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _settings_html(table: pd.DataFrame, labels: Sequence[str], records: Sequence[RunRecord]) -> str:
    """Per leaderboard row: the settings and versions behind it (runs), or its source (published)."""
    by_run = {(record.model, record.hyperparameter_hash): record for record in records}
    headings = ["run", "hyperparameters", "hash", "seed", "nlb_suite", "git commit", "run at", "fit s",
                "predict s", "submission or source"]
    numeric = {"seed", "fit s", "predict s"}
    head = "".join(f'<th{" data-type=number" if name in numeric else ""}>{_text(name)}</th>' for name in headings)
    body = []
    for row, label in zip(table.to_dict("records"), labels, strict=True):
        record = by_run.get((row["method"], row["hyperparameter hash"])) if row["origin"] == RUN_HERE_LABEL else None
        if record is None:
            cells = [_text(label), "", "", "", "", "", "", "", "", _text(row["source"])]
            body.append("<tr class=published>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
            continue
        commit = record.git_commit or "unknown"
        seed = "" if record.seed is None else str(record.seed)
        cells = [
            f"<td>{_text(label)}</td>",
            f"<td>{_hyperparameters_html(record.hyperparameters)}</td>",
            f"<td><code>{_text(record.hyperparameter_hash)}</code></td>",
            f'<td data-sort="{seed}">{_text(seed)}</td>',
            f"<td>{_text(record.package_version)}</td>",
            f'<td title="{_text(commit)}"><code>{_text(commit[:10])}</code></td>',
            f"<td>{_text(record.timestamp)}</td>",
            f'<td data-sort="{_seconds(record.fit_seconds)}">{_seconds(record.fit_seconds)}</td>',
            f'<td data-sort="{_seconds(record.predict_seconds)}">{_seconds(record.predict_seconds)}</td>',
            f"<td><code>{_text(record.submission or '')}</code></td>",
        ]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="table-wrap"><table class="sortable settings"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _section(records: Sequence[RunRecord], key: TableKey, root: str | Path | None, progress: tqdm) -> Section:
    table = leaderboard(records, key.dataset, key.phase, key.bin_ms)
    labels = _row_labels(table)
    colors = figures.run_colors(
        [label for label, origin in zip(labels, table["origin"], strict=True) if origin == RUN_HERE_LABEL])
    progress.set_postfix_str(f"{_slug(key)}: leaderboard chart")
    chart = FigureBlock(
        "Leaderboard chart",
        "Each metric of each run here with its bootstrap 95% confidence interval over eval trials, and published "
        "results (hollow grey diamonds: not run here, no interval). Rows in the order of the table (best co-bps "
        "first).",
        figures.leaderboard_chart(table, labels, colors, key.title),
    )
    progress.update()
    progress.set_postfix_str(f"{_slug(key)}: loading data")
    view = gather_view(records, key, root)
    blocks: list[FigureBlock | Omission] = [chart]
    for title, build in FIGURE_BUILDERS:
        progress.set_postfix_str(f"{_slug(key)}: {title.lower()}")
        try:
            png, caption = build(view, colors)
            blocks.append(FigureBlock(title, caption, png))
        except PieceMissing as missing:
            blocks.append(Omission(title, str(missing)))
        progress.update()
    studies_html = []
    for record in view.records:
        block, trials_html = _study(record)
        if block is not None:
            blocks.append(block)
            studies_html.append(trials_html)
    return Section(key=key, table_html=_leaderboard_html(table, labels),
                   settings_html=_settings_html(table, labels, view.records), blocks=blocks, notes=view.run_notes,
                   studies_html="".join(studies_html))


def _study(record: RunRecord) -> tuple[FigureBlock | Omission | None, str]:
    """A tuned run's study: the population over time and its table of trials (best first)."""
    tuning = record.extra.get("tuning")
    if not isinstance(tuning, dict) or "study" not in tuning or "ensemble" in tuning:
        return None, ""
    folder = Path(str(tuning["study"]))
    title = f"Tuning study of {record.model} ({tuning.get('method', '?')})"
    rounds, study = read_rounds(folder), read_study(folder)
    if not rounds or not study:
        return Omission(title, f"the study folder {folder} is missing or has no rounds"), ""
    minimize = study.get("method") == "pbt"
    caption = (f"{folder}: {len(rounds)} rounds, {tuning.get('trials', '?')} trials, "
               f"{float(tuning.get('wall_seconds', 0)):.0f} s. First panel: each member's objective per round "
               "(grey), the population's best and median; then each searched hyperparameter across the "
               "population (grey lines: its range).")
    png = figures.study_figure(rounds, study.get("space", []), minimize)
    trials = read_trials(folder)
    names = [dim["name"] for dim in study.get("space", [])]
    head = "".join(f"<th>{_text(name)}</th>" for name in ["trial", "score", "epoch", *names])
    body = []
    for row in trials:
        config = row.get("config", {})
        cells = [row.get("trial_id", ""), f"{row.get('score', float('nan')):.5g}", row.get("metrics", {}).get("epoch", "")]
        cells += [f"{config[name]:.4g}" if isinstance(config.get(name), float) else config.get(name, "") for name in names]
        body.append("<tr>" + "".join(f"<td>{_text(cell)}</td>" for cell in cells) + "</tr>")
    trials_html = (f"<h3>Trials of the study in {_text(folder)}</h3>"
                   f'<div class="table-wrap"><table class="sortable settings"><thead><tr>{head}</tr></thead>'
                   f'<tbody>{"".join(body)}</tbody></table></div>')
    return FigureBlock(title, caption, png), trials_html


def _block_html(block: FigureBlock | Omission) -> str:
    if isinstance(block, Omission):
        return f'<p class="omitted"><strong>{_text(block.title)}</strong> omitted: {_text(block.reason)}</p>'
    data = base64.b64encode(block.png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_text(block.title)}">'
            f"<figcaption><strong>{_text(block.title)}.</strong> {_text(block.caption)}</figcaption></figure>")


def _claims_html(claims: Claims | None) -> str:
    if claims is None:
        return ""
    rows = "".join(
        f"<tr><td>{row.claim}: {_text(CLAIMS[row.claim])}</td><td>{_text(row.model)}</td><td>{_text(row.measured)}</td>"
        f"<td>{_text(format_value(row.value, row.interval.low, row.interval.high))}</td>"
        f"<td>{'yes' if row.holds else 'no'}</td></tr>" for row in claims.rows)
    notes = "".join(f"<li>{_text(note)}</li>" for note in claims.notes)
    return ("<h3>The LFADS paper's claims, measured here</h3>"
            '<p class="hint">Brackets: bootstrap 95% interval over eval trials. How each claim is measured and when '
            "it holds: nlb_suite/report/claims.py.</p>"
            '<table class="claims"><thead><tr><th>claim</th><th>model</th><th>measured</th><th>value</th>'
            f"<th>holds</th></tr></thead><tbody>{rows}</tbody></table>"
            + (f'<ul class="notes">{notes}</ul>' if notes else ""))


def _section_html(section: Section) -> str:
    notes = "".join(f"<li>{_text(note)}</li>" for note in section.notes)
    parts = [
        f'<section id="{_text(section.anchor)}" class="view">',
        f"<h2>{_text(section.key.title)}</h2>",
        "<h3>Leaderboard</h3>",
        '<p class="hint">Click a header to sort; bold: best in column; brackets: bootstrap 95% interval.</p>',
        section.table_html,
        f'<ul class="notes">{notes}</ul>' if notes else "",
        _claims_html(section.claims),
        "<h3>Figures</h3>",
        *(_block_html(block) for block in section.blocks),
        section.studies_html,
        "<h3>Settings and versions behind every row</h3>",
        section.settings_html,
        "</section>",
    ]
    return "\n".join(part for part in parts if part)


def _package_versions() -> str:
    versions = [f"Python {platform.python_version()}"]
    for name in REPORTED_PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(versions)


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto;
       max-width: 1400px; padding: 0 1rem; color: #1b1b1b; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 2px solid #ccc; padding-bottom: 0.2rem; margin-top: 2rem; }
.meta, .hint { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.88rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.published td { color: #666; font-style: italic; }
figure { margin: 1.2rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9rem; color: #333; max-width: 1100px; }
.omitted { color: #8a5300; background: #fff7e6; border-left: 4px solid #f0b350; padding: 0.4rem 0.7rem; }
.notes { color: #8a5300; }
code { font-size: 0.85em; }
.selector { margin: 1rem 0; font-size: 1rem; }
.table-wrap { overflow-x: auto; }
"""

_SCRIPT = """
function cellKey(row, column, numeric) {
  const cell = row.cells[column];
  const text = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
  if (text === "") return null;
  if (numeric) { const number = parseFloat(text); return Number.isNaN(number) ? null : number; }
  return text.toLowerCase();
}
function sortTable(table, column) {
  const header = table.tHead.rows[0].cells[column];
  const numeric = header.dataset.type === "number";
  const current = header.getAttribute("aria-sort");
  // Metrics are higher-is-better, so a first click puts the best on top.
  const descending = current ? current === "ascending" : numeric;
  for (const cell of table.tHead.rows[0].cells) cell.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellKey(a, column, numeric), y = cellKey(b, column, numeric);
    if (x === null || y === null) return (x === null) - (y === null);  // empty cells last
    const order = x < y ? -1 : x > y ? 1 : 0;
    return descending ? -order : order;
  });
  for (const row of rows) body.appendChild(row);
}
for (const table of document.querySelectorAll("table.sortable")) {
  Array.from(table.tHead.rows[0].cells).forEach((header, column) =>
    header.addEventListener("click", () => sortTable(table, column)));
}
const selector = document.getElementById("view-select");
function showView(id) {
  for (const view of document.querySelectorAll("section.view")) view.hidden = view.id !== id;
}
if (selector) {
  selector.addEventListener("change", () => showView(selector.value));
  showView(selector.value);
}
"""


def _page(sections: Sequence[Section], n_records: int) -> str:
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    commit = git_commit() or "unknown"
    selector = ""
    if len(sections) > 1:
        options = "".join(f'<option value="{_text(s.anchor)}">{_text(s.key.title)}</option>' for s in sections)
        selector = (f'<p class="selector"><label for="view-select">Dataset and phase: </label>'
                    f'<select id="view-select">{options}</select></p>')
    body = "\n".join(_section_html(section) for section in sections) or "<p>No runs in the results store.</p>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>NLB report</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>Neural Latents Benchmark report</h1>
<p class="meta">{n_records} run record(s); the latest run per model and hyperparameter set is shown.
Generated {_text(generated)} by nlb_suite {_text(__version__)} (git commit <code>{_text(commit)}</code>)
with {_text(_package_versions())}.</p>
</header>
{selector}
<main>
{body}
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def write_html_report(records: Sequence[RunRecord], out_dir: str | Path, root: str | Path | None = None,
                      claims: Mapping[TableKey, Claims] | None = None) -> Path:
    """Write `out_dir/report.html` for every (dataset, phase, bin size) that has runs in
    `records`; `root` is the data directory the datasets are read from (for the figures);
    `claims` are the leaderboards' claims tables (`claims.claims_by_table`)."""
    keys = table_keys(records, include_published=False)
    with tqdm(total=len(keys) * (1 + len(FIGURE_BUILDERS)), desc="report figures", unit="figure",
              file=sys.stderr) as progress:
        sections = [replace(_section(records, key, root, progress), claims=(claims or {}).get(key)) for key in keys]
    path = Path(out_dir) / REPORT_NAME
    write_text_atomic(path, _page(sections, len(records)))
    return path
