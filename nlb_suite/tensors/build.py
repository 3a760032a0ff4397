"""A dataset's files -> `Tensors`, `EvalTargets` and (synthetic data) `TrueRates`.

Phases: `val` trains on split 'train' and evaluates split 'val', both from the train file, so it
can be scored here; `test` trains on 'train' + 'val' and evaluates the test file's trials, whose
held-out spikes only the benchmark's public ground-truth file holds.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.arrays import EvalTargets, Phase, Tensors, TrueRates, check_phase
from ..core.errors import NlbSuiteError
from ..core.spec import DatasetSpec
from ..data.nwb import NWBFormatError, Recording, read_recording
from ..data.paths import DatasetFiles, require_files, truth_path
from ..data.truth import Part, Values, read_windows
from .behavior import behavior_windows
from .grid import (
    NS_PER_MS,
    ONE_US_NS,
    Windows,
    ceil_div,
    ordered_units,
    seconds_to_ns,
    spike_tensors,
    window_start_bins,
)
from .psth import condition_psth, segment_psth

log = logging.getLogger(__name__)


class TensorError(NlbSuiteError):
    """A dataset's files cannot produce the requested tensors."""


@functools.lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int, size: int, behavior_field: str | None) -> Recording:
    return read_recording(path, behavior_fields=(behavior_field,) if behavior_field else ())


def read_dataset_file(path: Path, behavior_field: str | None = None) -> Recording:
    """`read_recording`, remembered while the file is unchanged (tensors and targets share it)."""
    path = Path(path)
    if not path.is_file():
        return read_recording(path)  # raises the missing-file error
    stat = path.stat()
    return _read(str(path), stat.st_mtime_ns, stat.st_size, behavior_field)


@dataclass(frozen=True)
class _PhaseTrials:
    """The recordings and trials (table order) a phase trains and evaluates on."""

    train_rec: Recording
    train: pd.DataFrame
    eval_rec: Recording
    eval: pd.DataFrame


def _check(spec: DatasetSpec, phase: str, bin_ms: int) -> None:
    check_phase(phase)
    spec.check_bin(bin_ms)


def _named_columns(spec: DatasetSpec) -> list[str]:
    optional = (spec.decode_mask_field, spec.outlier_field, spec.jitter_field)
    return [spec.align_field, *spec.psth_conditions, *spec.behavior_columns, *(spec.eval_segment or ()),
            *(name for name in optional if name)]


def _check_columns(spec: DatasetSpec, rec: Recording) -> None:
    """The trial columns the spec names exist, and the decode mask is boolean: checked when the
    train file is first used, so that a run fails before it fits, not after writing output."""
    named = list(dict.fromkeys(_named_columns(spec)))
    missing = [column for column in named if column not in rec.trials.columns]
    if missing:
        raise NWBFormatError(f"{rec.path}: trials table lacks column(s) {missing} named by dataset {spec.name!r}; "
                             f"this file does not hold {spec.name}'s trial information (is it the right file?)")
    heldout = rec.units.heldout
    if heldout.all() or not heldout.any():
        raise NWBFormatError(
            f"{rec.path}: units column 'heldout' marks {'every' if heldout.all() else 'no'} unit of "
            f"{len(heldout)} as held out; the train file needs both held-in units (False) and held-out units "
            "(True, the ones a model predicts from the others)")
    if spec.decode_mask_field is not None:
        values = rec.trials[spec.decode_mask_field]
        if not values.isin([0, 1]).all():
            raise NWBFormatError(f"{rec.path}: trials column {spec.decode_mask_field!r} (the decode mask) must be "
                                 "boolean")


def _phase_trials(spec: DatasetSpec, phase: Phase, files: DatasetFiles) -> _PhaseTrials:
    train_rec = read_dataset_file(files.train, spec.behavior_field)
    _check_columns(spec, train_rec)
    train_splits: tuple[str, ...]
    if phase == "val":
        eval_rec, train_splits, eval_splits = train_rec, ("train",), ("val",)
    else:
        eval_rec, train_splits, eval_splits = read_dataset_file(files.test), ("train", "val"), ("test",)
    chosen = _PhaseTrials(
        train_rec=train_rec, train=train_rec.trials[train_rec.trials["split"].isin(train_splits)],
        eval_rec=eval_rec, eval=eval_rec.trials[eval_rec.trials["split"].isin(eval_splits)],
    )
    for rec, trials, splits in ((train_rec, chosen.train, train_splits), (eval_rec, chosen.eval, eval_splits)):
        if len(trials) == 0:
            raise TensorError(f"{rec.path}: no trials with split {' or '.join(splits)}")
    return chosen


def _align_ns(rec: Recording, trials: pd.DataFrame, field: str) -> np.ndarray:
    if field not in trials.columns:
        raise NWBFormatError(f"{rec.path}: trials table has no alignment column {field!r}")
    values = trials[field].to_numpy(dtype=float)
    if np.isnan(values).any():
        ids = trials["trial_id"].to_numpy()[np.isnan(values)][:10].tolist()
        raise TensorError(f"{rec.path}: trial(s) {ids} have no {field} and cannot be aligned")
    return seconds_to_ns(values)


def _decode_mask(spec: DatasetSpec, trials: pd.DataFrame) -> np.ndarray | None:
    if spec.decode_mask_field is None:
        return None
    values = trials[spec.decode_mask_field].to_numpy()
    return np.stack([values == 0, values == 1], axis=1)


def _ids(trials: pd.DataFrame, mask: np.ndarray) -> list[int]:
    return trials["trial_id"].to_numpy()[mask][:10].tolist()


def _behavior(spec: DatasetSpec, rec: Recording, trials: pd.DataFrame, align_ns: np.ndarray, bin_ms: int,
              jitter: np.ndarray) -> np.ndarray | None:
    if spec.behavior_columns:
        # Per-trial behaviour from the trials table (dmfc_rsg), outliers masked as nlb_tools masks them.
        values = trials[list(spec.behavior_columns)].to_numpy(dtype=float).copy()
        if spec.outlier_field is not None:
            values[~(trials[spec.outlier_field].to_numpy(dtype=float) == 0)] = np.nan
        return values
    if spec.behavior_field is None:
        return None
    starts = window_start_bins(align_ns, spec.window_ms[0] + spec.behavior_lag_ms, bin_ms) + jitter
    windows = behavior_windows(rec, spec.behavior_field, bin_ms, starts, spec.n_bins(bin_ms))
    # Edges of a continuous session may lack a few bins (NaN, as nlb_tools pads them); a window
    # wholly outside the series means the series does not cover the trials. (NaN values inside the
    # series are the file's own: `_check_behavior` names them.)
    first_s, last_s = rec.behavior[spec.behavior_field].span()
    window_s = np.stack([starts, starts + spec.n_bins(bin_ms)], axis=1) * (bin_ms / 1000.0)
    uncovered = (window_s[:, 1] <= first_s) | (window_s[:, 0] > last_s)
    if uncovered.any():
        raise TensorError(
            f"{rec.path}: behaviour series {spec.behavior_field!r} ({first_s:.3f} to {last_s:.3f} s) does not "
            f"cover the windows of trial(s) {_ids(trials, uncovered)} ({spec.window_ms} ms around "
            f"{spec.align_field}, lagged {spec.behavior_lag_ms} ms); the file's behaviour must span every trial: "
            "use the complete file, or drop those trials"
        )
    return windows


def _check_behavior(spec: DatasetSpec, rec: Recording, which: str, trials: pd.DataFrame,
                    values: np.ndarray | None) -> None:
    """The velocity decoder leaves out bins without behaviour: say which trials lose bins, and
    refuse windows that hold none at all (the decoder would have nothing to fit or score).
    Per-trial behaviour (`behavior_columns`, e.g. DMFC_RSG's tp) has its own rule: outliers are
    masked on purpose."""
    if values is None or spec.behavior_columns:
        return
    missing = np.isnan(values).any(axis=2)
    if missing.all():
        raise NWBFormatError(f"{rec.path}: behaviour series {spec.behavior_field!r} has no values in any "
                             f"{which} window; vel R2 cannot be computed (set behavior_field = \"\" in the "
                             "dataset's TOML to score without it)")
    if missing.any():
        ids = trials["trial_id"].to_numpy()[missing.any(axis=1)]
        log.warning("%s: behaviour series %r is missing (NaN) in %d of %d bins of the %s windows, in trial(s) "
                    "%s; those bins are left out of the velocity decoding (vel R2)", rec.path, spec.behavior_field,
                    int(missing.sum()), missing.size, which, ids[:20].tolist() + (["..."] if len(ids) > 20 else []))


def jitter_bins(spec: DatasetSpec, trials: pd.DataFrame, bin_ms: int) -> np.ndarray:
    """Each trial's window shift in bins, nlb_tools 0.0.4's `_prep_jitter`: for trials not in the
    test split a draw from [0, clip(window - <jitter_field>, 0, jitter_max_ms) / bin) rounded,
    from numpy's legacy generator seeded 0 (one draw per trial of the set, in table order, as
    nlb_tools seeds before each set); 0 everywhere for datasets without jitter."""
    if spec.jitter_field is None:
        return np.zeros(len(trials), dtype=np.int64)
    # The test file holds no produced interval; its trials are not jittered.
    field = (trials[spec.jitter_field].to_numpy(dtype=float) if spec.jitter_field in trials.columns
             else np.full(len(trials), np.nan))
    room = np.clip(spec.window_len_ms - field, 0.0, spec.jitter_max_ms)
    room = np.where(trials["split"].to_numpy() == "test", 0.0, room)
    if np.isnan(room).any():
        raise TensorError(f"trial(s) {_ids(trials, np.isnan(room))} have no {spec.jitter_field}, which sets "
                          f"{spec.name}'s window jitter; the file's trials table must hold it for every train "
                          "and val trial")
    high = np.floor(np.round(room / bin_ms, 4))
    draws = np.random.RandomState(0).random_sample(len(trials))
    return np.round(draws * high).astype(np.int64)


def _check_overlap(spec: DatasetSpec, rec: Recording, trials: pd.DataFrame, align_ns: np.ndarray) -> None:
    """Windows must not run into the next trial unless the spec allows it (nlb_tools would cut
    them short and then fail to stack them)."""
    if spec.allow_overlap or len(trials) < 2:
        return
    nan_ns = np.iinfo(np.int64).min

    def as_float(ns: np.ndarray) -> np.ndarray:
        return np.where(ns == nan_ns, np.nan, ns.astype(float))

    full_next = rec.trials["start_time"].shift(-1).loc[trials.index].to_numpy(dtype=float)
    next_start = as_float(seconds_to_ns(full_next))
    align = as_float(align_ns)
    window_start = align + spec.window_ms[0] * NS_PER_MS
    window_end = align + spec.window_ms[1] * NS_PER_MS - ONE_US_NS
    bound = np.fmin(next_start[1:], window_start[1:])
    overlapping = np.append(window_end[:-1] > bound, False)
    if overlapping.any():
        raise TensorError(
            f"{rec.path}: the windows of trial(s) {_ids(trials, overlapping)} ({spec.window_ms} ms around "
            f"{spec.align_field}) run into the next trial, and dataset {spec.name!r} does not allow overlapping "
            "windows; for continuous data set allow_overlap = true in the dataset's spec, else shorten the window"
        )


def _windows(spec: DatasetSpec, align_ns: np.ndarray, bin_ms: int, forward: bool,
             jitter: np.ndarray | None = None) -> dict[str, Windows]:
    start, stop = spec.window_ms
    shift = 0 if jitter is None else jitter
    windows = {"main": Windows(window_start_bins(align_ns, start, bin_ms) + shift, spec.n_bins(bin_ms))}
    if forward:
        windows["forward"] = Windows(window_start_bins(align_ns, stop, bin_ms) + shift, spec.n_forward_bins(bin_ms))
    return windows


def _segment_windows(spec: DatasetSpec, rec: Recording, trials: pd.DataFrame, jitter: np.ndarray,
                     bin_ms: int) -> tuple[Windows, np.ndarray]:
    """Where the evaluation segments [start_field, end_field) sit (nlb_tools' make_jagged_array
    with front padding): each trial's segment ends `jitter` bins before the end of an n-bin
    window; the window's first bin and which of its bins the segment covers."""
    assert spec.eval_segment is not None
    start_field, end_field = spec.eval_segment
    missing = [name for name in (start_field, end_field) if name not in trials.columns]
    if missing:
        raise NWBFormatError(f"{rec.path}: trials table lacks column(s) {missing}, which bound {spec.name}'s "
                             "evaluation segments; use a file with the task's trial events")
    n = spec.n_bins(bin_ms)
    bw = bin_ms * NS_PER_MS
    start_ns = seconds_to_ns(trials[start_field].to_numpy(dtype=float))
    end_ns = seconds_to_ns(trials[end_field].to_numpy(dtype=float))
    untimed = (start_ns == np.iinfo(np.int64).min) | (end_ns == np.iinfo(np.int64).min)
    if untimed.any():
        raise TensorError(f"{rec.path}: evaluation trial(s) {_ids(trials, untimed)} have no {start_field} or "
                          f"{end_field}, which bound {spec.name}'s evaluation segments; drop those trials or use "
                          "the complete file")
    first = ceil_div(start_ns, bw)
    last = (end_ns - ONE_US_NS) // bw
    # make_trial_data without allow_overlap: a segment stops where the next evaluation trial begins.
    full_next = rec.trials["start_time"].shift(-1).loc[trials.index].to_numpy(dtype=float)
    next_ns = seconds_to_ns(full_next).astype(float)
    next_ns[~np.isfinite(full_next)] = np.nan
    bound = np.append(np.fmin(next_ns[1:], start_ns[1:].astype(float)), np.nan)
    cut = ~np.isnan(bound) & ((end_ns - ONE_US_NS) > bound)
    last = np.where(cut, np.floor((np.where(cut, bound, 0.0) - ONE_US_NS) / bw).astype(np.int64), last)
    starts = last - (n - 1) + jitter
    k = np.arange(n)[None, :]
    covered = (starts[:, None] + k >= first[:, None]) & (k <= n - 1 - jitter[:, None])
    return Windows(starts, n), covered


def make_tensors(spec: DatasetSpec, phase: Phase, bin_ms: int, root: str | Path | None = None) -> Tensors:
    """The model inputs of `phase` at `bin_ms` ms bins."""
    _check(spec, phase, bin_ms)
    chosen = _phase_trials(spec, phase, require_files(spec, root))
    train_rec, eval_rec = chosen.train_rec, chosen.eval_rec
    train_align = _align_ns(train_rec, chosen.train, spec.align_field)
    eval_align = _align_ns(eval_rec, chosen.eval, spec.align_field)
    heldin, heldout = ordered_units(train_rec, False), ordered_units(train_rec, True)
    eval_heldin = ordered_units(eval_rec, False)
    if not np.array_equal(eval_rec.units.ids[eval_heldin], train_rec.units.ids[heldin]):
        raise TensorError(f"{eval_rec.path}: its held-in units differ from those of {train_rec.path}")

    train_jitter = jitter_bins(spec, chosen.train, bin_ms)
    eval_jitter = jitter_bins(spec, chosen.eval, bin_ms)
    _check_overlap(spec, train_rec, chosen.train, train_align)
    _check_overlap(spec, eval_rec, chosen.eval, eval_align)
    train_windows = _windows(spec, train_align, bin_ms, forward=True, jitter=train_jitter)
    train_in = spike_tensors(train_rec, heldin, bin_ms, train_windows)
    train_out = spike_tensors(train_rec, heldout, bin_ms, train_windows)
    eval_in = spike_tensors(eval_rec, eval_heldin, bin_ms,
                            _windows(spec, eval_align, bin_ms, forward=False, jitter=eval_jitter))
    return Tensors(
        dataset=spec.name, phase=phase, bin_ms=bin_ms,
        train_spikes_heldin=train_in["main"], train_spikes_heldout=train_out["main"],
        train_spikes_heldin_forward=train_in["forward"], train_spikes_heldout_forward=train_out["forward"],
        eval_spikes_heldin=eval_in["main"],
        train_behavior=_behavior(spec, train_rec, chosen.train, train_align, bin_ms, train_jitter),
        train_decode_mask=_decode_mask(spec, chosen.train),
        train_trials=chosen.train.reset_index(drop=True), eval_trials=chosen.eval.reset_index(drop=True),
        heldin_ids=train_rec.units.ids[heldin], heldout_ids=train_rec.units.ids[heldout],
    )


def make_targets(spec: DatasetSpec, phase: Phase, bin_ms: int, root: str | Path | None = None,
                 include_psth: bool = True) -> EvalTargets:
    """The evaluation targets of `phase`. Val-phase targets come from the train file. The test
    file holds no held-out spikes: test-phase targets exist only for synthetic datasets, whose
    truth file keeps every spike (co-bps and fp-bps; real datasets are scored against the
    benchmark's public eval_data_test.h5)."""
    _check(spec, phase, bin_ms)
    if phase == "test":
        return _synthetic_test_targets(spec, bin_ms, root)
    chosen = _phase_trials(spec, phase, require_files(spec, root))
    rec = chosen.train_rec
    train_align = _align_ns(rec, chosen.train, spec.align_field)
    eval_align = _align_ns(rec, chosen.eval, spec.align_field)
    heldin, heldout = ordered_units(rec, False), ordered_units(rec, True)
    train_jitter = jitter_bins(spec, chosen.train, bin_ms)
    eval_jitter = jitter_bins(spec, chosen.eval, bin_ms)
    windows = _windows(spec, eval_align, bin_ms, forward=True, jitter=eval_jitter)
    covered = None
    if spec.eval_segment is not None:
        windows["main"], covered = _segment_windows(spec, rec, chosen.eval, eval_jitter, bin_ms)
    eval_in = spike_tensors(rec, heldin, bin_ms, {"forward": windows["forward"]})
    eval_out = spike_tensors(rec, heldout, bin_ms, windows)
    if covered is not None:
        eval_out["main"][~covered] = np.nan
    targets = EvalTargets(
        dataset=spec.name, bin_ms=bin_ms,
        eval_spikes_heldout=eval_out["main"],
        eval_spikes_heldin_forward=eval_in["forward"], eval_spikes_heldout_forward=eval_out["forward"],
        train_behavior=_behavior(spec, rec, chosen.train, train_align, bin_ms, train_jitter),
        eval_behavior=_behavior(spec, rec, chosen.eval, eval_align, bin_ms, eval_jitter),
        train_decode_mask=_decode_mask(spec, chosen.train), eval_decode_mask=_decode_mask(spec, chosen.eval),
    )
    for which, trials, values in (("training", chosen.train, targets.train_behavior),
                                  ("evaluation", chosen.eval, targets.eval_behavior)):
        _check_behavior(spec, rec, which, trials, values)
    if include_psth and spec.psth_conditions:
        considered = rec.trials["split"].isin(("train", "val")).to_numpy()
        trials = rec.trials[considered]
        make_psth = segment_psth if spec.eval_segment is not None else condition_psth
        psth = make_psth(
            rec, spec, bin_ms, trials,
            train_mask=(trials["split"] == "train").to_numpy(), eval_mask=(trials["split"] == "val").to_numpy(),
        )
        targets.psth = psth.psth
        targets.train_cond_idx = psth.train_cond_idx
        targets.eval_cond_idx = psth.eval_cond_idx
        if spec.jitter_field is not None:
            targets.eval_jitter = eval_jitter
    return targets


def _truth_file(spec: DatasetSpec, root: str | Path | None) -> Path | None:
    path = truth_path(spec, root)
    return path if path is not None and path.is_file() else None


def _truth_windows(path: Path, part: Part, values: Values, rec: Recording, trials: pd.DataFrame,
                   spec: DatasetSpec, bin_ms: int, unit_ids: np.ndarray) -> dict[str, np.ndarray]:
    """The truth's values cut to the trials' main and forward windows at `bin_ms`."""
    rows = rec.trials.index.get_indexer(trials.index)
    align = _align_ns(rec, trials, spec.align_field)
    windows = _windows(spec, align, bin_ms, forward=True, jitter=jitter_bins(spec, trials, bin_ms))
    return {name: read_windows(path, part, values, rows, window.starts, window.n_bins, bin_ms, unit_ids)
            for name, window in windows.items()}


def make_true_rates(spec: DatasetSpec, tensors: Tensors, root: str | Path | None = None) -> TrueRates | None:
    """Ground-truth rates aligned with `tensors` for synthetic datasets; None for the others."""
    path = _truth_file(spec, root)
    if path is None:
        return None
    chosen = _phase_trials(spec, tensors.phase, require_files(spec, root))
    units = np.concatenate([tensors.heldin_ids, tensors.heldout_ids])
    train = _truth_windows(path, "train", "rates", chosen.train_rec, chosen.train, spec, tensors.bin_ms, units)
    if tensors.phase == "val":
        evaluation = _truth_windows(path, "train", "rates", chosen.eval_rec, chosen.eval, spec, tensors.bin_ms, units)
    else:
        evaluation = _truth_windows(path, "test", "rates_all", chosen.eval_rec, chosen.eval, spec, tensors.bin_ms,
                                    units)
    return TrueRates.from_all_units(train["main"], evaluation["main"], evaluation["forward"], tensors.n_heldin)


def _synthetic_test_targets(spec: DatasetSpec, bin_ms: int, root: str | Path | None) -> EvalTargets:
    path = _truth_file(spec, root)
    if path is None:
        raise TensorError(
            f"{spec.name}: test-phase targets are not in the NWB files; score test submissions "
            "against the benchmark's eval_data_test.h5 (`nlb-suite score --phase test`)"
        )
    chosen = _phase_trials(spec, "test", require_files(spec, root))
    train_rec = chosen.train_rec
    heldin_ids = train_rec.units.ids[ordered_units(train_rec, False)]
    heldout_ids = train_rec.units.ids[ordered_units(train_rec, True)]
    units = np.concatenate([heldin_ids, heldout_ids])
    spikes = _truth_windows(path, "test", "spikes_all", chosen.eval_rec, chosen.eval, spec, bin_ms, units)
    n_heldin = len(heldin_ids)
    main = spikes["main"][..., n_heldin:]
    if spec.eval_segment is not None:
        _, covered = _segment_windows(spec, chosen.eval_rec, chosen.eval, np.zeros(len(chosen.eval), np.int64),
                                      bin_ms)
        main[~covered] = np.nan
    return EvalTargets(
        dataset=spec.name, bin_ms=bin_ms,
        eval_spikes_heldout=main,
        eval_spikes_heldin_forward=spikes["forward"][..., :n_heldin],
        eval_spikes_heldout_forward=spikes["forward"][..., n_heldin:],
    )
