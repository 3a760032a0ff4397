"""Scoring entry points: nlb_tools-compatible `evaluate()` and the suite's `score()`.

`evaluate(targets, submission)` takes what nlb_tools 0.0.4's `evaluate()` takes (an HDF5 path or
a nested mapping of arrays, for both) and returns the same list of `{"<group>_split": {metric:
value}}` dicts with the same numbers. Official group names (mc_maze, mc_rtt, area2_bump,
dmfc_rsg, mc_maze_large/medium/small, each optionally with `_20`) behave exactly as there, in
the same order; the three scaled mazes are merged into `mc_maze_scaling_split` (and
`mc_maze_scaling_20_split`) with `[500]`/`[250]`/`[100]` key prefixes, after everything else.
Any other group (synthetic or user datasets) is scored like a maze dataset (one decoder per
decode mask when the targets have masks) and reported as `<group>_split`, after the official
ones, in the submission's group order.

Which metrics a group gets: co-bps always; vel R2 when the targets hold train and eval
behaviour (nlb_tools fails without them; dmfc_rsg gets tp corr instead); psth R2 when they hold
`psth` (with `eval_cond_idx` and optional `eval_jitter`); fp-bps when the submission holds
`eval_rates_heldin_forward` and the targets `eval_spikes_heldin_forward`. A submission group
without `eval_rates_heldout` is skipped, as is one without target data (with a warning).

`score(rates, targets)` works on the suite's dataclasses and adds bootstrap confidence
intervals, per-unit co-bps and, given the true rates of a synthetic dataset, rate R2 and the
co-bps ceiling.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from ..core.arrays import EvalTargets, Rates, TrueRates
from ..datasets import BUILTIN
from .bootstrap import (
    Interval,
    bias_corrected_interval,
    psth_r2_samples,
    rate_r2_samples,
    tp_corr_samples,
    trial_resamples,
    velocity_r2_samples,
)
from .metrics import (
    ScoringError,
    bits_per_spike,
    decode_velocity,
    jittered,
    neural_speeds,
    poisson_stats,
    psth_conditions,
    psth_r2,
    rate_r2,
    speed_tp_correlation,
    velocity_r2,
)

logger = logging.getLogger(__name__)

Source = str | os.PathLike[str] | Mapping[str, Any]

# The datasets nlb_tools' evaluate() knows, in its order, and its bin-size suffixes.
OFFICIAL_DATASETS = ("mc_maze", "mc_rtt", "area2_bump", "dmfc_rsg", "mc_maze_large", "mc_maze_medium",
                     "mc_maze_small")
_BIN_SUFFIXES = ("", "_20")
_SCALING_KEYS = {name: BUILTIN[name].scaling_key for name in OFFICIAL_DATASETS
                 if name in BUILTIN and BUILTIN[name].scaling_key}

# Scores field -> nlb_tools result key.
OFFICIAL_METRIC_KEYS = {"co_bps": "co-bps", "vel_r2": "vel R2", "psth_r2": "psth R2", "fp_bps": "fp-bps",
                        "tp_corr": "tp corr"}

# The most a metric can reach (R2 is at most 1); bounds of the bootstrap intervals stop there.
_LARGEST = {"vel_r2": 1.0, "psth_r2": 1.0, "rate_r2": 1.0, "tp_corr": 1.0}


@contextmanager
def _opened(source: Source, role: str) -> Iterator[tuple[Mapping[str, Any], str]]:
    """The groups of an HDF5 file or an in-memory mapping, and a label for error messages."""
    if isinstance(source, Mapping):
        yield source, f"in-memory {role}"
        return
    path = Path(source)
    if not path.is_file():
        raise ScoringError(f"{role} file not found: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise ScoringError(f"{path}: cannot read it as an HDF5 {role} file ({err})") from None
    with handle:
        yield handle, str(path)


def _array(group: Mapping[str, Any], key: str, role: str) -> np.ndarray:
    if key not in group:
        raise ScoringError(f"the {role} have no array {key!r}")
    return np.array(group[key], dtype=np.float64)


def _join_units(heldin: Any, heldout: Any) -> np.ndarray:
    """Held-in and held-out arrays side by side along units, in float64 (converted while
    copying into place: no float64 copy of each half)."""
    heldin, heldout = np.asarray(heldin), np.asarray(heldout)
    if heldin.shape[:-1] != heldout.shape[:-1]:
        raise ScoringError(f"held-in shape {heldin.shape} and held-out shape {heldout.shape} differ "
                           "in trials or bins")
    joined = np.empty(heldin.shape[:-1] + (heldin.shape[-1] + heldout.shape[-1],))
    joined[..., : heldin.shape[-1]] = heldin
    joined[..., heldin.shape[-1] :] = heldout
    return joined


def _joined(group: Mapping[str, Any], keys: tuple[str, str], role: str) -> np.ndarray:
    missing = [key for key in keys if key not in group]
    if missing:
        raise ScoringError(f"the {role} have no array {missing[0]!r}")
    return _join_units(group[keys[0]], group[keys[1]])


def _index_lists(raw: Any) -> list[np.ndarray]:
    # In HDF5 the condition indices are a variable-length integer dataset (object array of arrays).
    return [np.asarray(trials, dtype=np.intp).reshape(-1) for trials in np.asarray(raw, dtype=object)]


def _score_group(dataset: str, target: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, float]:
    """nlb_tools' metrics for one group; `dataset` is the group name without its bin suffix."""
    result: dict[str, float] = {}
    eval_spikes_heldout = _array(target, "eval_spikes_heldout", "targets")
    eval_rates_heldout = _array(user, "eval_rates_heldout", "predictions")
    eval_rates = _joined(user, ("eval_rates_heldin", "eval_rates_heldout"), "predictions")
    result["co-bps"] = bits_per_spike(eval_rates_heldout, eval_spikes_heldout)

    # Behaviour per trial (2-d, as dmfc_rsg's trial-table columns) is scored by tp corr, per bin by
    # vel R2: nlb_tools decides by the name, which the official groups keep.
    per_trial = "eval_behavior" in target and np.ndim(target["eval_behavior"]) == 2
    if dataset == "dmfc_rsg" or (dataset not in OFFICIAL_DATASETS and per_trial):
        result["tp corr"] = speed_tp_correlation(eval_spikes_heldout, eval_rates,
                                                 _array(target, "eval_behavior", "targets"))
    elif "train_behavior" in target and "eval_behavior" in target:
        train_rates = _joined(user, ("train_rates_heldin", "train_rates_heldout"), "predictions")
        train_mask, eval_mask = (np.asarray(target[key], dtype=bool) if key in target else None
                                 for key in ("train_decode_mask", "eval_decode_mask"))
        result["vel R2"] = velocity_r2(train_rates, _array(target, "train_behavior", "targets"), eval_rates,
                                       _array(target, "eval_behavior", "targets"), train_mask, eval_mask)

    if "psth" in target:
        if "eval_cond_idx" not in target:
            raise ScoringError("the targets have a psth but no 'eval_cond_idx'")
        jitter = np.asarray(target["eval_jitter"], dtype=int) if "eval_jitter" in target else None
        result["psth R2"] = psth_r2(_array(target, "psth", "targets"), eval_rates,
                                    _index_lists(target["eval_cond_idx"]), jitter=jitter)

    if "eval_rates_heldin_forward" in user and "eval_spikes_heldin_forward" in target:
        spikes_forward = _joined(target, ("eval_spikes_heldin_forward", "eval_spikes_heldout_forward"), "targets")
        rates_forward = _joined(user, ("eval_rates_heldin_forward", "eval_rates_heldout_forward"), "predictions")
        result["fp-bps"] = bits_per_spike(rates_forward, spikes_forward)
    return result


def _group_metrics(group: str, dataset: str, targets: Mapping[str, Any], submission: Mapping[str, Any],
                   labels: tuple[str, str]) -> dict[str, float] | None:
    """The metrics of one submission group, or None where nlb_tools skips the group."""
    user = submission.get(group)
    if not isinstance(user, Mapping) or "eval_rates_heldout" not in user:
        return None
    target = targets.get(group)
    if not isinstance(target, Mapping) or "eval_spikes_heldout" not in target:
        logger.warning("Evaluation data for %s not found", group)
        return None
    try:
        return _score_group(dataset, target, user)
    except ScoringError as err:
        raise ScoringError(f"group {group!r} (submission {labels[1]}, targets {labels[0]}): {err}") from None


def evaluate(targets: Source, submission: Source) -> list[dict[str, dict[str, float]]]:
    """nlb_tools 0.0.4 `evaluate(test_annotation_file, user_submission_file)`, same result."""
    with _opened(targets, "targets") as (target_groups, target_label), \
            _opened(submission, "submission") as (user_groups, user_label):
        labels = (target_label, user_label)
        results: list[dict[str, dict[str, float]]] = []
        scaling: dict[str, dict[str, float]] = {suffix: {} for suffix in _BIN_SUFFIXES}
        official_groups = set()
        for dataset in OFFICIAL_DATASETS:
            for suffix in _BIN_SUFFIXES:
                group = dataset + suffix
                official_groups.add(group)
                metrics = _group_metrics(group, dataset, target_groups, user_groups, labels)
                if metrics is None:
                    continue
                if dataset in _SCALING_KEYS:
                    scaling[suffix].update({f"{_SCALING_KEYS[dataset]} {key}": value for key, value in metrics.items()})
                else:
                    results.append({f"{group}_split": metrics})
        for group in user_groups:
            if group not in official_groups:
                metrics = _group_metrics(group, group, target_groups, user_groups, labels)
                if metrics is not None:
                    results.append({f"{group}_split": metrics})
        for suffix, metrics in scaling.items():
            if metrics:
                results.append({f"mc_maze_scaling{suffix}_split": metrics})
    return results


def _json_number(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


@dataclass
class Scores:
    """The official metrics of one prediction (None where the targets cannot give one), their
    bootstrap 95% intervals over eval trials (`ci`, keyed by field name), per-unit co-bps over
    the held-out units and, on synthetic data, rate R2 and the co-bps of the true rates."""

    co_bps: float
    vel_r2: float | None
    psth_r2: float | None
    fp_bps: float | None
    co_bps_per_unit: np.ndarray
    rate_r2: float | None = None
    co_bps_ceiling: float | None = None
    ci: dict[str, Interval] = field(default_factory=dict)
    n_boot: int = 0
    seed: int = 0
    # dmfc_rsg's behavioural metric (per-trial behaviour instead of velocity).
    tp_corr: float | None = None

    METRICS: ClassVar[tuple[str, ...]] = ("co_bps", "vel_r2", "psth_r2", "fp_bps", "rate_r2", "co_bps_ceiling",
                                          "tp_corr")

    def official(self) -> dict[str, float]:
        """The metrics nlb_tools reports, under its key names (`co-bps`, `vel R2`, ...)."""
        return {key: getattr(self, name) for name, key in OFFICIAL_METRIC_KEYS.items()
                if getattr(self, name) is not None}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: metrics, `ci` as [low, high] lists, per-unit co-bps; NaN becomes None."""
        out: dict[str, Any] = {name: _json_number(getattr(self, name)) for name in self.METRICS}
        out["ci"] = {name: [_json_number(interval.low), _json_number(interval.high)]
                     for name, interval in self.ci.items()}
        out["co_bps_per_unit"] = [_json_number(value) for value in self.co_bps_per_unit]
        out["n_boot"] = self.n_boot
        out["seed"] = self.seed
        return out


def _check_rates_fit_targets(rates: Rates, targets: EvalTargets) -> None:
    n_eval, n_bins, n_heldout = targets.eval_spikes_heldout.shape
    n_heldin = targets.eval_spikes_heldin_forward.shape[2]
    n_train = len(targets.train_behavior) if targets.train_behavior is not None else len(rates.train_rates_heldin)
    expected = {
        "train_rates_heldin": (n_train, n_bins, n_heldin),
        "train_rates_heldout": (n_train, n_bins, n_heldout),
        "eval_rates_heldin": (n_eval, n_bins, n_heldin),
        "eval_rates_heldout": (n_eval, n_bins, n_heldout),
        "eval_rates_heldin_forward": targets.eval_spikes_heldin_forward.shape,
        "eval_rates_heldout_forward": targets.eval_spikes_heldout_forward.shape,
    }
    for name, shape in expected.items():
        got = getattr(rates, name).shape
        if got != tuple(shape):
            raise ScoringError(f"{targets.dataset}: {name} has shape {got}, the targets need {tuple(shape)}")


def score(rates: Rates, targets: EvalTargets, *, true_rates: TrueRates | None = None, n_boot: int = 1000,
          seed: int = 0) -> Scores:
    """Score `rates` against `targets`: the official metrics (same numbers as `evaluate`) with
    bootstrap 95% intervals from `n_boot` resamples of the eval trials (0: none; see
    `bootstrap.py`), per-unit co-bps, and, with `true_rates`, `rate_r2` (R2 of the predicted
    against the true eval rates, held-in and held-out units, per unit over all eval trials and
    bins pooled, averaged over units) and `co_bps_ceiling` (co-bps of the true held-out rates)."""
    if n_boot < 0:
        raise ScoringError(f"n_boot must be >= 0, got {n_boot}")
    _check_rates_fit_targets(rates, targets)
    rng = np.random.default_rng(seed)
    n_eval = targets.eval_spikes_heldout.shape[0]
    counts = trial_resamples(n_eval, n_boot, rng)
    samples: dict[str, np.ndarray] = {}
    eval_rates = _join_units(rates.eval_rates_heldin, rates.eval_rates_heldout)

    co_stats = poisson_stats(rates.eval_rates_heldout, targets.eval_spikes_heldout)
    co_bps = float(co_stats.bits_per_spike())
    samples["co_bps"] = co_stats.bits_per_spike(counts)

    fp_bps = None
    if targets.eval_spikes_heldin_forward.shape[1] > 0:
        fp_stats = poisson_stats(
            _join_units(rates.eval_rates_heldin_forward, rates.eval_rates_heldout_forward),
            _join_units(targets.eval_spikes_heldin_forward, targets.eval_spikes_heldout_forward),
        )
        fp_bps = float(fp_stats.bits_per_spike())
        samples["fp_bps"] = fp_stats.bits_per_spike(counts)

    vel_r2 = tp_corr = None
    if targets.eval_behavior is not None and np.ndim(targets.eval_behavior) == 2:
        tp_corr = speed_tp_correlation(targets.eval_spikes_heldout, eval_rates, targets.eval_behavior)
        samples["tp_corr"] = tp_corr_samples(neural_speeds(targets.eval_spikes_heldout, eval_rates),
                                             np.asarray(targets.eval_behavior, dtype=np.float64), counts)
    elif targets.train_behavior is not None and targets.eval_behavior is not None:
        train_rates = _join_units(rates.train_rates_heldin, rates.train_rates_heldout)
        decoders = decode_velocity(train_rates, targets.train_behavior, eval_rates, targets.eval_behavior,
                                   targets.train_decode_mask, targets.eval_decode_mask)
        vel_r2 = float(np.mean([decoder.r2 for decoder in decoders]))
        samples["vel_r2"] = velocity_r2_samples(decoders, counts)

    psth_value = None
    if targets.psth is not None:
        if targets.eval_cond_idx is None:
            raise ScoringError(f"{targets.dataset}: the targets have a psth but no eval_cond_idx")
        psth = np.asarray(targets.psth, dtype=np.float64)
        psth_rates = eval_rates if targets.eval_jitter is None else jittered(eval_rates, targets.eval_jitter)
        psth_value = psth_r2(psth, psth_rates, targets.eval_cond_idx)
        samples["psth_r2"] = psth_r2_samples(psth, psth_rates, psth_conditions(psth, targets.eval_cond_idx),
                                             n_boot, rng)

    rate_value = ceiling = None
    if true_rates is not None:
        true_eval = _join_units(true_rates.eval_rates_heldin, true_rates.eval_rates_heldout)
        rate_value = rate_r2(eval_rates, true_eval)
        samples["rate_r2"] = rate_r2_samples(eval_rates, true_eval, counts)
        ceiling_stats = poisson_stats(true_rates.eval_rates_heldout, targets.eval_spikes_heldout)
        ceiling = float(ceiling_stats.bits_per_spike())
        samples["co_bps_ceiling"] = ceiling_stats.bits_per_spike(counts)

    estimates: dict[str, float | None] = {"co_bps": co_bps, "fp_bps": fp_bps, "vel_r2": vel_r2, "tp_corr": tp_corr,
                                          "psth_r2": psth_value, "rate_r2": rate_value, "co_bps_ceiling": ceiling}
    intervals: dict[str, Interval] = {}
    if n_boot:
        intervals = {name: bias_corrected_interval(values, float(estimates[name] or np.nan),
                                                   upper=_LARGEST.get(name, np.inf))
                     for name, values in samples.items()}
    return Scores(co_bps=co_bps, vel_r2=vel_r2, psth_r2=psth_value, fp_bps=fp_bps,
                  co_bps_per_unit=co_stats.bits_per_spike_per_unit(), rate_r2=rate_value,
                  co_bps_ceiling=ceiling, ci=intervals, n_boot=n_boot, seed=seed, tp_corr=tp_corr)
