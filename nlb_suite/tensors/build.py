"""A dataset's files -> `Tensors`, `EvalTargets` and (synthetic data) `TrueRates`.

Phases: `val` trains on split 'train' and evaluates split 'val', both from the train file, so it
can be scored here; `test` trains on 'train' + 'val' and evaluates the test file's trials, whose
held-out spikes only the benchmark's public ground-truth file holds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..data.nwb import NWBFormatError, Recording, read_recording
from ..data.paths import DatasetFiles, require_files
from ..datasets.spec import DatasetSpec, SpecError
from ..datasets.synthetic import truth_path
from ..errors import NlbSuiteError
from .behavior import decimated_behavior
from .grid import Windows, gather_windows, ordered_units, seconds_to_ns, spike_tensors, window_start_bins
from .psth import condition_psth
from .types import EvalTargets, Phase, Tensors, TrueRates

# The truth file of a synthetic dataset holds its values per 5 ms bin of the file's clock.
TRUTH_BIN_MS = 5


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
    if phase not in ("val", "test"):
        raise SpecError(f"phase must be 'val' or 'test', not {phase!r}")
    spec.check_bin(bin_ms)


def _phase_trials(spec: DatasetSpec, phase: Phase, files: DatasetFiles) -> _PhaseTrials:
    train_rec = read_dataset_file(files.train, spec.behavior_field)
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


def _behavior(spec: DatasetSpec, rec: Recording, align_ns: np.ndarray, bin_ms: int) -> np.ndarray | None:
    if spec.behavior_field is None:
        return None
    values = decimated_behavior(rec, spec.behavior_field, bin_ms)
    starts = window_start_bins(align_ns, spec.window_ms[0] + spec.behavior_lag_ms, bin_ms)
    return gather_windows(values, starts, spec.n_bins(bin_ms))


def _windows(spec: DatasetSpec, align_ns: np.ndarray, bin_ms: int, forward: bool) -> dict[str, Windows]:
    start, stop = spec.window_ms
    windows = {"main": Windows(window_start_bins(align_ns, start, bin_ms), spec.n_bins(bin_ms))}
    if forward:
        windows["forward"] = Windows(window_start_bins(align_ns, stop, bin_ms), spec.n_forward_bins(bin_ms))
    return windows


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

    train_windows = _windows(spec, train_align, bin_ms, forward=True)
    train_in = spike_tensors(train_rec, heldin, bin_ms, train_windows)
    train_out = spike_tensors(train_rec, heldout, bin_ms, train_windows)
    eval_in = spike_tensors(eval_rec, eval_heldin, bin_ms, _windows(spec, eval_align, bin_ms, forward=False))
    return Tensors(
        dataset=spec.name, phase=phase, bin_ms=bin_ms,
        train_spikes_heldin=train_in["main"], train_spikes_heldout=train_out["main"],
        train_spikes_heldin_forward=train_in["forward"], train_spikes_heldout_forward=train_out["forward"],
        eval_spikes_heldin=eval_in["main"],
        train_behavior=_behavior(spec, train_rec, train_align, bin_ms),
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
    windows = _windows(spec, eval_align, bin_ms, forward=True)
    eval_in = spike_tensors(rec, heldin, bin_ms, {"forward": windows["forward"]})
    eval_out = spike_tensors(rec, heldout, bin_ms, windows)
    targets = EvalTargets(
        dataset=spec.name, bin_ms=bin_ms,
        eval_spikes_heldout=eval_out["main"],
        eval_spikes_heldin_forward=eval_in["forward"], eval_spikes_heldout_forward=eval_out["forward"],
        train_behavior=_behavior(spec, rec, train_align, bin_ms),
        eval_behavior=_behavior(spec, rec, eval_align, bin_ms),
        train_decode_mask=_decode_mask(spec, chosen.train), eval_decode_mask=_decode_mask(spec, chosen.eval),
    )
    if include_psth and spec.psth_conditions:
        considered = rec.trials["split"].isin(("train", "val")).to_numpy()
        trials = rec.trials[considered]
        psth = condition_psth(
            rec, spec, bin_ms, trials,
            train_mask=(trials["split"] == "train").to_numpy(), eval_mask=(trials["split"] == "val").to_numpy(),
        )
        targets.psth = psth.psth
        targets.train_cond_idx = psth.train_cond_idx
        targets.eval_cond_idx = psth.eval_cond_idx
    return targets


def _truth_file(spec: DatasetSpec, root: str | Path | None) -> Path | None:
    if spec.source != "synthetic":
        return None
    path = truth_path(spec, root)
    return path if path.is_file() else None


def make_true_rates(spec: DatasetSpec, tensors: Tensors, root: str | Path | None = None) -> TrueRates | None:
    """Ground-truth rates aligned with `tensors` for synthetic datasets; None for the others."""
    path = _truth_file(spec, root)
    if path is None:
        return None
    chosen = _phase_trials(spec, tensors.phase, require_files(spec, root))
    with h5py.File(path, "r") as f:
        train = _truth_windows(f["train"], "rates", "unit_ids", chosen.train_rec, chosen.train, spec, tensors.bin_ms)
        if tensors.phase == "val":
            evaluation = _truth_windows(f["train"], "rates", "unit_ids", chosen.eval_rec, chosen.eval, spec, tensors.bin_ms)
        else:
            evaluation = _truth_windows(f["test"], "rates_all", "unit_ids_all", chosen.eval_rec, chosen.eval, spec,
                                        tensors.bin_ms)
    return TrueRates(
        train_heldin=train.units("main", tensors.heldin_ids), train_heldout=train.units("main", tensors.heldout_ids),
        eval_heldin=evaluation.units("main", tensors.heldin_ids),
        eval_heldout=evaluation.units("main", tensors.heldout_ids),
        eval_heldin_forward=evaluation.units("forward", tensors.heldin_ids),
        eval_heldout_forward=evaluation.units("forward", tensors.heldout_ids),
    )


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
    with h5py.File(path, "r") as f:
        spikes = _truth_windows(f["test"], "spikes_all", "unit_ids_all", chosen.eval_rec, chosen.eval, spec, bin_ms)
    return EvalTargets(
        dataset=spec.name, bin_ms=bin_ms,
        eval_spikes_heldout=spikes.units("main", heldout_ids).astype(np.float32),
        eval_spikes_heldin_forward=spikes.units("forward", heldin_ids).astype(np.float32),
        eval_spikes_heldout_forward=spikes.units("forward", heldout_ids).astype(np.float32),
    )


@dataclass(frozen=True)
class _TruthWindows:
    """Values of the truth file cut to trial windows, for the file's units."""

    windows: dict[str, np.ndarray]
    unit_ids: np.ndarray

    def units(self, window: str, wanted: np.ndarray) -> np.ndarray:
        where = {int(u): i for i, u in enumerate(self.unit_ids)}
        return self.windows[window][..., [where[int(u)] for u in wanted]]


def _truth_windows(group: h5py.Group, values_key: str, ids_key: str, rec: Recording, trials: pd.DataFrame,
                   spec: DatasetSpec, bin_ms: int) -> _TruthWindows:
    """Sum the truth file's 5 ms values into the trials' windows at `bin_ms`."""
    if bin_ms % TRUTH_BIN_MS:
        raise TensorError(f"{group.file.filename}: the truth exists at multiples of {TRUTH_BIN_MS} ms only")
    factor = bin_ms // TRUTH_BIN_MS
    table_rows = rec.trials.index.get_indexer(trials.index)
    values = group[values_key][()][table_rows]
    first = group["first_bin"][()][table_rows]
    align = _align_ns(rec, trials, spec.align_field)
    windows = {}
    for name, window in _windows(spec, align, bin_ms, forward=True).items():
        offsets = window.starts * factor - first
        idx = offsets[:, None] + np.arange(window.n_bins * factor)[None, :]
        if idx.min() < 0 or idx.max() >= values.shape[1]:
            raise TensorError(f"{group.file.filename}: the truth does not cover the {name} windows")
        picked = np.take_along_axis(values, idx[:, :, None], axis=1).astype(np.float64)
        windows[name] = picked.reshape(len(trials), window.n_bins, factor, -1).sum(axis=2).astype(np.float32)
    return _TruthWindows(windows=windows, unit_ids=group[ids_key][()])
