"""The ceilings a synthetic dataset's true rates set: what its generating model scores (co-bps and
fp-bps, and vel R2 and PSTH R2, val phase, 5 ms bins), by the suite's own tensors and scorer.

They are computed once per generated dataset and kept beside its truth file in `ceilings.json`
with the truth file's size and modification time; a regenerated dataset gets them anew.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.arrays import Phase
from ..core.atomic import write_text_atomic
from ..core.spec import DatasetSpec
from ..data.paths import truth_path
from ..datasets.synthetic import CEILINGS_FILE, SyntheticDataError
from ..tensors import make_targets, make_tensors, make_true_rates
from .evaluate import score

CEILINGS_PHASE: Phase = "val"
CEILINGS_BIN_MS = 5


@dataclass(frozen=True)
class Ceilings:
    """What a synthetic dataset's true rates score (val phase, 5 ms bins), and which truth file
    (size in bytes, modification time in ns) they were computed from."""

    co_bps: float
    fp_bps: float
    vel_r2: float | None
    psth_r2: float | None
    truth_size: int
    truth_mtime_ns: int


def ceilings_path(spec: DatasetSpec, root: str | Path | None) -> Path | None:
    truth = truth_path(spec, root)
    return None if truth is None else truth.parent / CEILINGS_FILE


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _truth_file(spec: DatasetSpec, root: str | Path | None) -> Path:
    truth = truth_path(spec, root)
    if truth is None or not truth.is_file():
        raise SyntheticDataError(f"dataset {spec.name!r} has no truth file ({truth}); generate it with "
                                 f"`nlb-suite synth {spec.name}`")
    return truth


def compute_ceilings(spec: DatasetSpec, root: str | Path | None) -> Ceilings:
    """Score the true rates of a generated synthetic dataset (val phase, 5 ms)."""
    truth = _truth_file(spec, root)
    stat = truth.stat()
    tensors = make_tensors(spec, CEILINGS_PHASE, CEILINGS_BIN_MS, root)
    true_rates = make_true_rates(spec, tensors, root)
    if true_rates is None:
        raise SyntheticDataError(f"dataset {spec.name!r}: no true rates in {truth}")
    scores = score(true_rates, make_targets(spec, CEILINGS_PHASE, CEILINGS_BIN_MS, root), n_boot=0)
    if scores.fp_bps is None:
        raise SyntheticDataError(f"dataset {spec.name!r}: the true rates' forward window could not be scored")
    return Ceilings(co_bps=float(scores.co_bps), fp_bps=float(scores.fp_bps), vel_r2=_finite(scores.vel_r2),
                    psth_r2=_finite(scores.psth_r2), truth_size=stat.st_size, truth_mtime_ns=stat.st_mtime_ns)


def read_ceilings(spec: DatasetSpec, root: str | Path | None) -> Ceilings | None:
    """The stored ceilings, or None where there are none, they are unreadable, or the truth file
    has changed since they were computed."""
    path, truth = ceilings_path(spec, root), truth_path(spec, root)
    if path is None or truth is None or not path.is_file() or not truth.is_file():
        return None
    try:
        stored = Ceilings(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    stat = truth.stat()
    fresh = (stored.truth_size, stored.truth_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    return stored if fresh else None


def ensure_ceilings(spec: DatasetSpec, root: str | Path | None) -> Ceilings:
    """The ceilings of a generated synthetic dataset, computed and stored when they are not."""
    stored = read_ceilings(spec, root)
    if stored is not None:
        return stored
    ceilings = compute_ceilings(spec, root)
    write_text_atomic(_truth_file(spec, root).parent / CEILINGS_FILE, json.dumps(asdict(ceilings), indent=1) + "\n")
    return ceilings


