"""`nlb-suite datasets`: every known dataset, its source, file sizes, whether it is here, and for
each synthetic dataset that is generated the ceilings its true rates set (co-bps and fp-bps,
val phase, 5 ms bins; `scoring/ceilings.py`), computed once and kept beside its truth file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.spec import DatasetSpec
from ..data.paths import data_dir, dataset_files, truth_path
from ..datasets import BUILTIN

NAME = "datasets"
HELP = "list the known datasets, their source and sizes, whether their files are present, and the synthetic ones' ceilings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _size(n: int | None) -> str:
    return "generated" if n is None else f"{n / 1e6:,.1f} MB"


def _ceiling_cells(spec: DatasetSpec, root: str | Path | None, present: bool) -> str:
    from ..scoring.ceilings import ensure_ceilings, read_ceilings

    if spec.source != "synthetic" or not present:
        return f"{'-':>7} {'-':>7}"
    if read_ceilings(spec, root) is None:
        print(f"computing the true-rate ceilings of {spec.name} (once) ...", file=sys.stderr)
    ceilings = ensure_ceilings(spec, root)
    return f"{ceilings.co_bps:>7.4f} {ceilings.fp_bps:>7.4f}"


def run(args: argparse.Namespace) -> int:
    from ..scoring.ceilings import CEILINGS_BIN_MS, CEILINGS_PHASE

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
