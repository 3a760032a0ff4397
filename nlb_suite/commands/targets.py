"""`nlb-suite targets DATASET`: write a dataset's eval targets as an NLB eval-target file.

The file has one group named like the submission group (`mc_maze`, `mc_maze_20`, ...), in the
layout of nlb_tools' eval-target files, so it can score a submission with `nlb-suite score`
or with nlb_tools' own `evaluate()`. Default path: `submissions/<group>_<phase>_targets.h5`
under the current directory (built with `core.paths.inside`, so it stays in `submissions/`). The
targets are computed, and every check that can fail has passed, before anything is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.paths import inside
from ..datasets import get_spec
from ..outputs.locations import SUBMISSIONS
from ._common import add_bin, add_dataset, add_out, add_phase, chosen_dataset

NAME = "targets"
HELP = "write a dataset's evaluation targets (held-out spikes, behaviour, PSTHs) as an NLB eval-target file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset(parser, positional=True)
    add_phase(parser)
    add_bin(parser)
    add_out(parser, None, "output file (default: submissions/<group>_<phase>_targets.h5)")


def default_path(group: str, phase: str) -> Path:
    return inside(SUBMISSIONS, f"{group}_{phase}_targets.h5")


def run(args: argparse.Namespace) -> int:
    from ..scoring.targets_io import TargetsFileError, write_targets
    from ..tensors import make_targets

    spec = get_spec(chosen_dataset(args))
    spec.check_bin(args.bin_ms)
    group = spec.result_name(args.bin_ms)
    output = args.out or default_path(group, args.phase)
    targets = make_targets(spec, args.phase, args.bin_ms, args.data_dir)
    try:
        path = write_targets(output, {group: targets})
    except OSError as err:
        raise TargetsFileError(f"cannot write {output}: {err.strerror or err}") from None
    n_eval, n_bins, n_heldout = targets.eval_spikes_heldout.shape
    extras = [name for name, present in (("behaviour", targets.eval_behavior is not None),
                                         ("decode masks", targets.eval_decode_mask is not None),
                                         ("PSTHs", targets.psth is not None)) if present]
    print(f"wrote {path}: group {group!r}, {n_eval} eval trials x {n_bins} bins x {n_heldout} held-out units"
          + (f", with {', '.join(extras)}" if extras else ""))
    return 0
