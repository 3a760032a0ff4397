"""`nlb-suite score`: score a submission file as nlb_tools' `evaluate()` would.

The targets come from one of three places: an eval-target file in the NLB layout (`--targets`);
the public test-split ground truth `eval_data_test.h5` in the data directory (`--phase test`,
verified by size and sha256 first); or a dataset's own files (`--dataset D`, val phase, or the
test phase of a synthetic dataset, whose truth file keeps every spike). The submission is checked
against the targets' shapes first and refused with the same messages as `nlb-suite validate`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import UsageError, add_bin, add_dataset, add_phase, chosen_datasets

NAME = "score"
HELP = ("score a submission file against eval targets: --targets FILE, --phase test (the public test split), "
        "or --dataset D (targets made from the dataset's files)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submission", type=Path, help="submission HDF5 file (EvalAI format)")
    parser.add_argument("--targets", type=Path, metavar="TARGETS.h5",
                        help="eval-target file in the NLB layout (e.g. from `nlb-suite targets`)")
    add_dataset(parser, default=None)
    add_phase(parser, default=None)
    add_bin(parser)
    parser.add_argument("--json", action="store_true", help="print exactly what nlb_tools' evaluate() returns, as JSON")


def _print_table(results: list[dict[str, dict[str, float]]]) -> None:
    for entry in results:
        for split, metrics in entry.items():
            print(split)
            width = max((len(name) for name in metrics), default=0)
            for name, value in metrics.items():
                print(f"  {name:<{width}}  {value:.4f}")


def _targets(args: argparse.Namespace) -> tuple[dict, str]:
    """The target groups and where they came from, for messages."""
    from ..core.arrays import check_phase
    from ..data.test_targets import verified_test_targets
    from ..datasets import get_spec
    from ..scoring import read_targets, targets_to_dict
    from ..tensors import make_targets

    datasets = chosen_datasets(args)
    given = [what for what, present in (("--targets", args.targets is not None), ("--dataset", bool(datasets)))
             if present]
    if len(given) > 1:
        raise UsageError("give the targets one way: --targets FILE or --dataset D, not both")
    if args.targets is not None:
        if args.phase is not None:
            raise UsageError("--phase goes with --dataset (or alone, for the public test split), not with --targets")
        return read_targets(args.targets), str(args.targets)
    if datasets:
        spec = get_spec(datasets[0])
        phase = check_phase(args.phase or "val")
        targets = make_targets(spec, phase, args.bin_ms, args.data_dir)
        return {spec.result_name(args.bin_ms): targets_to_dict(targets)}, f"{spec.name} ({phase} phase, from its files)"
    if args.phase == "test":
        path = verified_test_targets(args.data_dir)
        return read_targets(path), str(path)
    raise UsageError("scoring needs targets: --targets FILE, --dataset D (val-phase targets from the dataset's "
                     "files), or --phase test (the public test split in the data directory)")


def run(args: argparse.Namespace) -> int:
    from ..outputs.submission import checked_against_targets
    from ..scoring import evaluate

    targets, label = _targets(args)
    arrays = checked_against_targets(args.submission, targets, label)
    results = evaluate(targets, arrays)
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{args.submission} scored against {label}")
        _print_table(results)
    return 0
