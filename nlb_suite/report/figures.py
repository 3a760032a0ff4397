"""The report's figures, drawn with matplotlib on the Agg canvas and returned as PNG bytes.

Figures are built on `matplotlib.figure.Figure` objects rather than through pyplot, so nothing
needs a display and no global figure state outlives a call. Each function draws one figure from
the named arrays of `report_data`; rates arrive in spikes/bin and are shown in spikes/s. A run
keeps its colour in every figure of a leaderboard (`run_colors`); recorded data and true rates
are black, published results grey.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import ColorType

from .loading import TrainingHistory
from .published import PUBLISHED_LABEL
from .tables import shown_metrics
from .views import (
    InputsAroundEvent,
    LatentTrajectories,
    PsthComparison,
    Rotations,
    SingleTrials,
    TimeAxis,
    VelocityComparison,
)

DPI = 96
DATA_COLOR = "black"
PUBLISHED_COLOR = "0.55"
KALMAN_COLOR = "0.35"
EVENT_COLOR = "0.6"
# tab10 without its grey (index 7), which is kept for published results.
_RUN_PALETTE: list[ColorType] = [colormaps["tab10"](index) for index in range(10) if index != 7]
# Beyond this many conditions a legend would hide the trajectories; colour alone tells them apart.
MAX_CONDITION_LEGEND = 16
SHOWN_EVENT_TRIALS = 10
# Metric panels per row of the leaderboard chart.
CHART_COLUMNS = 3


Colors = Mapping[str, ColorType]


def run_colors(labels: Sequence[str]) -> dict[str, ColorType]:
    return {label: _RUN_PALETTE[index % len(_RUN_PALETTE)] for index, label in enumerate(labels)}


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _grid(n_rows: int, n_columns: int, panel_width: float, panel_height: float,
          sharex: bool = True) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(panel_width * n_columns + 1.0, panel_height * n_rows + 0.9), layout="constrained")
    axes = figure.subplots(n_rows, n_columns, sharex=sharex, squeeze=False)
    return figure, axes


def _legend_below(figure: Figure, handles: Sequence[Line2D], n_columns: int = 4) -> None:
    figure.legend(handles=list(handles), loc="outside lower center", ncols=min(n_columns, len(handles)),
                  frameon=False, fontsize="small")


def _line(label: str, color: ColorType, **style: Any) -> Line2D:
    return Line2D([], [], color=color, label=label, **style)


def leaderboard_chart(table: pd.DataFrame, labels: Sequence[str], colors: Colors, title: str) -> bytes:
    """Each metric of each leaderboard row, with its bootstrap 95% interval; published rows as
    hollow grey diamonds. `labels` name the rows of `table` in order."""
    metrics = shown_metrics(table)
    rows = table.to_dict("records")
    heights = np.arange(len(rows))[::-1]  # first row (best co-bps) on top
    n_columns = min(len(metrics), CHART_COLUMNS)
    n_rows = math.ceil(len(metrics) / n_columns)
    figure = Figure(figsize=(3.6 * n_columns + 1.8, (0.3 * len(rows) + 1.1) * n_rows + 0.6), layout="constrained")
    axes = figure.subplots(n_rows, n_columns, squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for index, (ax, metric) in enumerate(zip(axes.flat, metrics, strict=False)):
        for row, label, height in zip(rows, labels, heights, strict=True):
            value = row[metric.key]
            if math.isnan(value):
                continue
            if row["origin"] == PUBLISHED_LABEL:
                ax.plot(value, height, marker="D", markerfacecolor="none", markeredgecolor=PUBLISHED_COLOR,
                        linestyle="none")
                continue
            low, high = row[f"{metric.key} low"], row[f"{metric.key} high"]
            error = None if math.isnan(low) or math.isnan(high) else [[value - low], [high - value]]
            ax.errorbar(value, height, xerr=error, fmt="o", color=colors[label], capsize=3)
        ax.set_title(metric.label)
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_yticks(heights, labels if index % n_columns == 0 else [])
    figure.suptitle(title)
    _legend_below(figure, [
        _line("run here (bar: bootstrap 95% CI)", DATA_COLOR, marker="o", linestyle="none"),
        _line(PUBLISHED_LABEL, PUBLISHED_COLOR, marker="D", markerfacecolor="none", linestyle="none"),
    ])
    return _png(figure)


def _mark_event(ax: Axes) -> None:
    ax.axvline(0.0, color=EVENT_COLOR, linewidth=0.8, linestyle=":")


def single_trials_figure(data: SingleTrials, axis: TimeAxis, colors: Colors) -> bytes:
    """Rows: held-out units; columns: eval trials. Each run's predicted rate, the true rate where
    known, and the spikes as ticks under the curves (tick height: spikes in the bin)."""
    n_trials, n_bins, n_units = data.spikes.shape
    times = axis.centres(n_bins)
    figure, axes = _grid(n_units, n_trials, 3.4, 1.9)
    for u in range(n_units):
        for t in range(n_trials):
            ax = axes[u, t]
            curves = [rates[t, :, u] for rates in data.predicted.values()]
            if data.true_rates is not None:
                curves.append(data.true_rates[t, :, u])
            top = max(float(np.nanmax(curves)) * axis.per_second, 1.0)
            for label, rates in data.predicted.items():
                ax.plot(times, rates[t, :, u] * axis.per_second, color=colors[label], linewidth=1.2)
            if data.true_rates is not None:
                ax.plot(times, data.true_rates[t, :, u] * axis.per_second, color=DATA_COLOR, linestyle="--",
                        linewidth=1.2)
            counts = np.nan_to_num(data.spikes[t, :, u])
            fired = counts > 0
            base = -0.3 * top
            ax.vlines(times[fired], base, base + 0.25 * top * counts[fired] / max(counts.max(), 1.0),
                      color=DATA_COLOR, linewidth=1.0)
            ax.axhline(0.0, color="0.85", linewidth=0.6)
            # The band under zero holds the spike ticks, not rates: label only the rate range.
            ax.set_yticks([tick for tick in ax.get_yticks() if 0 <= tick <= ax.get_ylim()[1]])
            _mark_event(ax)
            if u == 0:
                ax.set_title(data.trial_names[t], fontsize="medium")
            if t == 0:
                ax.set_ylabel(f"{data.unit_names[u]}\nspikes/s", fontsize="small")
            if u == n_units - 1:
                ax.set_xlabel(f"time from {axis.event} (ms)")
    handles = [_line(label, colors[label]) for label in data.predicted]
    if data.true_rates is not None:
        handles.append(_line("true rate", DATA_COLOR, linestyle="--"))
    handles.append(_line("spikes (height: count per bin)", DATA_COLOR, marker="|", linestyle="none"))
    _legend_below(figure, handles)
    return _png(figure)


def psth_figure(data: PsthComparison, axis: TimeAxis, colors: Colors) -> bytes:
    """Rows: held-out units; columns: conditions. Target PSTH against each run's condition average."""
    n_conditions, n_bins, n_units = data.target.shape
    times = axis.centres(n_bins)
    figure, axes = _grid(n_units, n_conditions, 2.9, 1.8)
    for u in range(n_units):
        for c in range(n_conditions):
            ax = axes[u, c]
            ax.plot(times, data.target[c, :, u] * axis.per_second, color=DATA_COLOR, linewidth=2.0)
            for label, predicted in data.predicted.items():
                ax.plot(times, predicted[c, :, u] * axis.per_second, color=colors[label], linewidth=1.2)
            _mark_event(ax)
            if u == 0:
                ax.set_title(data.condition_names[c], fontsize="small")
            if c == 0:
                ax.set_ylabel(f"{data.unit_names[u]}\nspikes/s", fontsize="small")
            if u == n_units - 1:
                ax.set_xlabel(f"time from {axis.event} (ms)")
    handles = [_line("target PSTH (smoothed spikes)", DATA_COLOR, linewidth=2.0)]
    handles += [_line(f"{label}: condition average", colors[label]) for label in data.predicted]
    _legend_below(figure, handles)
    return _png(figure)


def trajectories_figure(data: LatentTrajectories, axis: TimeAxis) -> bytes:
    """Rows: runs. Condition-averaged latents on PC1 against PC2 (and PC3); colour: condition,
    open circle: window start, black dot: the alignment event."""
    n_components = min(run.condition_means.shape[2] for run in data.runs)
    if n_components < 2:
        raise ValueError("trajectories need at least two principal components")
    planes = [(0, 1), (0, 2)] if n_components >= 3 else [(0, 1)]
    n_conditions = len(data.condition_names)
    palette = colormaps["hsv"](np.linspace(0.0, 1.0, n_conditions, endpoint=False))
    figure, axes = _grid(len(data.runs), len(planes), 3.4, 3.2, sharex=False)
    event_bin = axis.event_bin
    for row, run in enumerate(data.runs):
        for column, (first, second) in enumerate(planes):
            ax = axes[row, column]
            for condition in range(n_conditions):
                path = run.condition_means[condition]
                ax.plot(path[:, first], path[:, second], color=palette[condition], linewidth=1.0)
                ax.plot(path[0, first], path[0, second], marker="o", markerfacecolor="none",
                        markeredgecolor=palette[condition], markersize=4)
                if 0 <= event_bin < len(path):
                    ax.plot(path[event_bin, first], path[event_bin, second], marker="o", color=DATA_COLOR,
                            markersize=3)
            ax.set_xlabel(f"PC{first + 1}")
            ax.set_ylabel(f"PC{second + 1}")
        shown = run.explained[:n_components].sum() * 100
        axes[row, 0].set_title(f"{run.label}: {run.source} (PC1-{n_components}: {shown:.0f}% of variance)",
                               fontsize="medium", loc="left")
    handles = [_line(f"{axis.event}", DATA_COLOR, marker="o", linestyle="none"),
               _line("window start", "0.4", marker="o", markerfacecolor="none", linestyle="none")]
    if n_conditions <= MAX_CONDITION_LEGEND:
        handles += [_line(name, palette[i]) for i, name in enumerate(data.condition_names)]
    figure.legend(handles=handles, loc="outside right upper", frameon=False, fontsize="small")
    return _png(figure)


def jpca_figure(data: Rotations) -> bytes:
    """One panel per run: the condition-averaged latents in their top jPC plane (the rosette of
    Churchland et al. 2012); colour: condition, open circle: window start, arrow: its end."""
    n_conditions = len(data.condition_names)
    palette = colormaps["hsv"](np.linspace(0.0, 1.0, n_conditions, endpoint=False))
    figure, axes = _grid(1, len(data.runs), 3.4, 3.4, sharex=False)
    for column, run in enumerate(data.runs):
        ax = axes[0, column]
        for condition, path in enumerate(run.result.projected):
            ax.plot(path[:, 0], path[:, 1], color=palette[condition], linewidth=1.0)
            ax.plot(path[0, 0], path[0, 1], marker="o", markerfacecolor="none", markeredgecolor=palette[condition],
                    markersize=4)
            if len(path) >= 2:
                ax.annotate("", xy=path[-1], xytext=path[-2],
                            arrowprops=dict(arrowstyle="-|>", color=palette[condition], lw=1.0))
        ax.set_xlabel("jPC1")
        ax.set_ylabel("jPC2")
        ax.set_aspect("equal", adjustable="datalim")
        share = run.result.r2_skew / run.result.r2_unconstrained
        ax.set_title(f"{run.label}: {run.source}\nrotation {share:.0%} of the linear dynamics", fontsize="medium",
                     loc="left")
    return _png(figure)


def velocity_figure(data: VelocityComparison, axis: TimeAxis, colors: Colors) -> bytes:
    """Rows: eval trials; columns: velocity channels. Recorded velocity, each run's ridge-decoded
    velocity and the Kalman filter's."""
    n_trials, n_bins, n_channels = data.recorded.shape
    times = axis.centres(n_bins)
    figure, axes = _grid(n_trials, n_channels, 4.0, 1.9)
    for t in range(n_trials):
        for c in range(n_channels):
            ax = axes[t, c]
            ax.plot(times, data.recorded[t, :, c], color=DATA_COLOR, linewidth=2.0)
            for decoded in data.decoded:
                ax.plot(times, decoded.velocity[t, :, c], color=colors[decoded.label], linewidth=1.2)
            ax.plot(times, data.kalman.velocity[t, :, c], color=KALMAN_COLOR, linestyle="--", linewidth=1.2)
            _mark_event(ax)
            if t == 0:
                ax.set_title(f"hand velocity {data.channel_names[c]}", fontsize="medium")
            if c == 0:
                ax.set_ylabel(data.trial_names[t], fontsize="small")
            if t == n_trials - 1:
                ax.set_xlabel(f"time from {axis.event} (ms)")
    handles = [_line("recorded", DATA_COLOR, linewidth=2.0)]
    handles += [_line(f"{d.label}: ridge on rates (vel R2 {d.r2:.3f})", colors[d.label]) for d in data.decoded]
    handles.append(_line(f"{data.kalman.label} (R2 {data.kalman.r2:.3f})", KALMAN_COLOR, linestyle="--"))
    _legend_below(figure, handles, n_columns=2)
    return _png(figure)


def inputs_figure(data: InputsAroundEvent, colors: Colors) -> bytes:
    """Rows: runs; columns: inferred-input dimensions. Thin: single trials around the event;
    thick: their mean; grey: the mean of trials without the event, around the alignment event."""
    n_dims = data.runs[0].at_event.shape[2]
    figure, axes = _grid(len(data.runs), n_dims, 2.8, 2.0)
    for row, run in enumerate(data.runs):
        color = colors[run.label]
        for d in range(n_dims):
            ax = axes[row, d]
            for trial in run.at_event[:SHOWN_EVENT_TRIALS, :, d]:
                ax.plot(data.lags_ms, trial, color=color, alpha=0.3, linewidth=0.7)
            ax.plot(data.lags_ms, _mean_where_present(run.at_event[:, :, d]), color=color, linewidth=2.0)
            if len(run.at_alignment):
                ax.plot(data.lags_ms, _mean_where_present(run.at_alignment[:, :, d]), color=PUBLISHED_COLOR,
                        linewidth=2.0)
            _mark_event(ax)
            if row == 0:
                ax.set_title(f"input {d + 1}", fontsize="medium")
            if d == 0:
                ax.set_ylabel(run.label, fontsize="small")
            if row == len(data.runs) - 1:
                ax.set_xlabel(f"time from {data.event} (ms)")
    _legend_below(figure, [
        _line(f"single trials with a {data.event}", "0.3", alpha=0.4, linewidth=0.7),
        _line(f"mean over trials with a {data.event}", "0.3", linewidth=2.0),
        _line(f"mean over trials without, around {data.alignment}", PUBLISHED_COLOR, linewidth=2.0),
    ], n_columns=3)
    return _png(figure)


def _mean_where_present(values: np.ndarray) -> np.ndarray:
    """Mean over trials (axis 0) of the non-NaN entries; NaN, drawn as a gap, where there are none
    (lags outside every trial's window)."""
    present = ~np.isnan(values)
    counts = present.sum(axis=0)
    sums = np.where(present, values, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def training_curves_figure(histories: Mapping[str, TrainingHistory], colors: Colors) -> bytes:
    """Train and validation loss per epoch (left) and validation co-bps per epoch (right)."""
    figure, axes = _grid(1, 2, 4.2, 2.8, sharex=False)
    loss_ax, bps_ax = axes[0]
    for label, history in histories.items():
        loss_ax.plot(history.epoch, history.train_loss, color=colors[label], linewidth=1.2)
        loss_ax.plot(history.epoch, history.valid_loss, color=colors[label], linewidth=1.2, linestyle="--")
        bps_ax.plot(history.epoch, history.valid_co_bps, color=colors[label], linewidth=1.2)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="training objective and validation loss")
    bps_ax.set(xlabel="epoch", ylabel="co-bps", title="validation co-bps")
    handles = [_line(label, colors[label]) for label in histories]
    handles += [_line("train loss", "0.3"), _line("validation loss", "0.3", linestyle="--")]
    _legend_below(figure, handles)
    return _png(figure)


def study_figure(rounds: Sequence[Any], space: Sequence[Mapping[str, Any]], minimize: bool) -> bytes:
    """A tuning study over time (the AutoLFADS figure): each member's objective per round with the
    population's best and median (first panel), then each searched hyperparameter's values
    across the population (log axes for log ranges). `rounds` are `outputs.studies.Round`s."""
    names = [dim["name"] for dim in space if dim.get("choices") is None]
    n_panels = 1 + len(names)
    n_columns = min(4, n_panels)
    figure, axes = _grid((n_panels + n_columns - 1) // n_columns, n_columns, 3.0, 2.4, sharex=False)
    flat = [ax for row in axes for ax in row]
    x = np.array([r.epoch for r in rounds], dtype=float)
    per_trial = all(len(r.members) == 1 for r in rounds)
    xlabel = "trial" if per_trial else "epoch"
    objective_ax = flat[0]
    for r, position in zip(rounds, x):
        values = [m["objective"] for m in r.members.values() if m.get("objective") is not None]
        objective_ax.scatter(np.full(len(values), position), values, s=8, color="0.6")
    objective_ax.plot(x, [r.best for r in rounds], color="C0", linewidth=1.4, label="best")
    if not per_trial:
        objective_ax.plot(x, [r.median for r in rounds], color="C1", linewidth=1.2, linestyle="--", label="median")
    objective_ax.set(xlabel=xlabel, ylabel="objective",
                     title=("validation loss (lower is better)" if minimize else "validation co-bps"))
    objective_ax.legend(fontsize=7)
    for ax, dim in zip(flat[1:], [d for d in space if d.get("choices") is None]):
        for r, position in zip(rounds, x):
            values = [m[dim["name"]] for m in r.members.values() if m.get(dim["name"]) is not None]
            ax.scatter(np.full(len(values), position), values, s=8, color="C2")
        if dim.get("log"):
            ax.set_yscale("log")
        ax.set(xlabel=xlabel, title=dim["name"])
        if dim.get("low") is not None and dim.get("high") is not None:
            ax.axhline(dim["low"], color="0.8", linewidth=0.8)
            ax.axhline(dim["high"], color="0.8", linewidth=0.8)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return _png(figure)
