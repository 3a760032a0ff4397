"""`nlb-suite datasets`: every known dataset, its source, file sizes, and whether it is here."""

from __future__ import annotations

import argparse

from ..data.paths import data_dir, dataset_files
from ..datasets import BUILTIN

NAME = "datasets"
HELP = "list the known datasets, their source and sizes, and whether their files are present"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _size(n: int | None) -> str:
    return "generated" if n is None else f"{n / 1e6:,.1f} MB"


def run(args: argparse.Namespace) -> int:
    print(f"data directory: {data_dir(args.data_dir)}")
    header = f"{'dataset':<18} {'source':<24} {'train file':>12} {'test file':>10}  present"
    print(header)
    print("-" * len(header))
    for spec in BUILTIN.values():
        files = dataset_files(spec, args.data_dir)
        present = [p.is_file() for p in (files.train, files.test)]
        state = "yes" if all(present) else ("partly" if any(present) else "no")
        source = f"DANDI {spec.dandiset}/{spec.version}" if spec.source == "dandi" else spec.source
        print(f"{spec.name:<18} {source:<24} {_size(spec.train.size):>12} {_size(spec.test.size):>10}  {state}")
    return 0
