"""`nlb-suite synth NAME`: generate a synthetic dataset into the data directory.

The dataset appears whole or not at all (see `datasets.synthetic`); one that exists is replaced
only with `--overwrite`."""

from __future__ import annotations

import argparse
import dataclasses
import time

from ..datasets import get_spec
from ._common import add_dataset, chosen_dataset

NAME = "synth"
HELP = "generate a synthetic dataset (NWB train and test files plus true rates) into the data directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset(parser, positional=True, default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace the dataset's files if they exist")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the dataset's own)")


def run(args: argparse.Namespace) -> int:
    from ..datasets.synthetic import SyntheticDataError, dataset_folder, generate, read_manifest
    from ..scoring.ceilings import CEILINGS_BIN_MS, CEILINGS_PHASE, ensure_ceilings

    spec = get_spec(chosen_dataset(args))
    if args.seed is not None:
        if args.seed < 0:
            raise SyntheticDataError(f"--seed must be a non-negative integer, got {args.seed}")
        others = tuple((key, value) for key, value in spec.generator_args if key != "seed")
        spec = dataclasses.replace(spec, generator_args=(*others, ("seed", args.seed)))
    started = time.perf_counter()
    generate(spec, args.data_dir, overwrite=args.overwrite)
    elapsed = time.perf_counter() - started
    manifest = read_manifest(spec, args.data_dir)
    if manifest is None:  # only if something removed it at once
        raise SyntheticDataError(f"dataset {spec.name!r}: generated, but its folder is no longer complete")
    folder = dataset_folder(spec, args.data_dir)
    print(f"generated {spec.name} (seed {manifest.seed}) in {elapsed:.1f} s:")
    for name, size in manifest.files.items():
        print(f"  {folder / name}  {size / 1e6:,.1f} MB")
    ceilings = ensure_ceilings(spec, args.data_dir)
    print(f"true-rate ceilings ({CEILINGS_PHASE} phase, {CEILINGS_BIN_MS} ms): co-bps {ceilings.co_bps:.4f}, "
          f"fp-bps {ceilings.fp_bps:.4f}")
    return 0
