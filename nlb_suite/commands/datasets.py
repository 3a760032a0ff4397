"""`nlb-suite datasets`: every known dataset, its source, file sizes, whether it is here, and for
each synthetic dataset that is generated the ceilings its true rates set (co-bps and fp-bps,
val phase, 5 ms bins).

The ceilings are computed once per generated dataset, by the suite's own tensors and scorer
from the truth file, and kept beside it in `ceilings.json` with the truth file's size and
modification time; `nlb-suite synth` computes them right after generating, and this command
computes them for a dataset generated otherwise (on first use by `eval`, or by a test) or
regenerated since.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.arrays import Phase
from ..core.atomic import write_text_atomic
from ..core.spec import DatasetSpec
from ..data.paths import data_dir, dataset_files, truth_path
from ..datasets import BUILTIN
from ..datasets.synthetic import CEILINGS_FILE, SyntheticDataError
from ..scoring import score
from ..tensors import make_targets, make_tensors, make_true_rates

NAME = "datasets"
HELP = "list the known datasets, their source and sizes, whether their files are present, and the synthetic ones' ceilings"

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _size(n: int | None) -> str:
    return "generated" if n is None else f"{n / 1e6:,.1f} MB"


def _ceiling_cells(spec: DatasetSpec, root: str | Path | None, present: bool) -> str:
    if spec.source != "synthetic" or not present:
        return f"{'-':>7} {'-':>7}"
    if read_ceilings(spec, root) is None:
        print(f"computing the true-rate ceilings of {spec.name} (once) ...", file=sys.stderr)
    ceilings = ensure_ceilings(spec, root)
    return f"{ceilings.co_bps:>7.4f} {ceilings.fp_bps:>7.4f}"


def run(args: argparse.Namespace) -> int:
    print(f"data directory: {data_dir(args.data_dir)}")
    print(f"ceilings: co-bps and fp-bps of the true rates, {CEILINGS_PHASE} phase, {CEILINGS_BIN_MS} ms bins "
          "(synthetic datasets, once generated)")
    header = (f"{'dataset':<25} {'source':<24} {'train file':>12} {'test file':>10}  {'present':<7} "
              f"{'co-bps':>7} {'fp-bps':>7}")
    print(header)
    print("-" * len(header))
    for spec in BUILTIN.values():
        files = dataset_files(spec, args.data_dir)
        truth = truth_path(spec, args.data_dir)
        needed = [files.train, files.test] + ([truth] if spec.source == "synthetic" and truth is not None else [])
        present = [p.is_file() for p in needed]
        state = "yes" if all(present) else ("partly" if any(present) else "no")
        source = f"DANDI {spec.dandiset}/{spec.version}" if spec.source == "dandi" else spec.source
        print(f"{spec.name:<25} {source:<24} {_size(spec.train.size):>12} {_size(spec.test.size):>10}  {state:<7} "
              f"{_ceiling_cells(spec, args.data_dir, all(present))}")
    return 0
