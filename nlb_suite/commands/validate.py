"""`nlb-suite validate`: check a submission file against datasets' shapes before scoring it.

Exit status 0: valid; 1: problems (each printed, naming the group and array); 2: the command
itself could not run (an unknown dataset, say). Besides the format (see `outputs.submission`),
it flags values that are valid but almost surely a mistake, such as an all-zero array, which
`nlb-suite score` would still score as nlb_tools does.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..datasets import BUILTIN, get_spec
from ._common import add_bin, add_dataset, add_phase, chosen_datasets

if TYPE_CHECKING:
    from ..outputs.submission import ExpectedShapes, Problem

NAME = "validate"
HELP = ("check a submission file: groups, array names, shapes, dtype, links, NaN / inf / negative rates, "
        "all-zero arrays")


EPILOG = ("Only plain HDF5 datasets of a numeric dtype, stored in the file itself, count (file -> group -> "
          "dataset). External links, soft links (dangling or not), virtual datasets, datasets whose bytes lie in "
          "other files, nested groups and non-numeric datasets are reported as what they are and never followed. "
          "Exit status: 0 valid, 1 problems found (each printed), 2 the check could not run.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="submission HDF5 file")
    # Without --dataset every group is checked against the known dataset its name gives
    # (e.g. mc_maze or mc_maze_20).
    add_dataset(parser, several=True, default=None)
    add_phase(parser)
    add_bin(parser, default=None)
    parser.epilog = EPILOG


def _groups_by_name() -> dict[str, tuple[str, int]]:
    """Group name -> (built-in dataset, bin size), e.g. 'mc_maze_20' -> ('mc_maze', 20)."""
    return {
        spec.result_name(bin_ms): (spec.name, bin_ms) for spec in BUILTIN.values() for bin_ms in spec.bin_sizes
    }


def _expected_from_names(groups: list[str], phase: str) -> tuple[dict[str, ExpectedShapes], list[Problem]]:
    from ..core.arrays import check_phase
    from ..outputs.submission import Problem, expected_for_dataset

    """Expectations for each group, read off its name; a name no dataset has is a problem."""
    known = _groups_by_name()
    expected: dict[str, ExpectedShapes] = {}
    problems: list[Problem] = []
    for group in groups:
        if group not in known:
            problems.append(Problem(
                "not a known dataset group name; pass --dataset (and --bin) to say what it holds", group))
            continue
        dataset, bin_ms = known[group]
        expected |= expected_for_dataset(BUILTIN[dataset], check_phase(phase), bin_ms)
    return expected, problems


def _problems(args: argparse.Namespace) -> tuple[list[str], list[Problem]]:
    """The groups checked and every problem found."""
    from ..outputs.submission import (
        SubmissionError,
        expected_for_dataset,
        read_submission,
        suspicious_values,
        validate_submission,
    )

    try:
        arrays = read_submission(args.file)
    except SubmissionError as err:
        return [], err.problems
    if chosen_datasets(args):
        expected: dict[str, ExpectedShapes] = {}
        for name in chosen_datasets(args):
            expected |= expected_for_dataset(get_spec(name), args.phase, args.bin_ms or 5)
        naming_problems: list[Problem] = []
    else:
        if args.bin_ms is not None:
            print("note: --bin applies to --dataset; the bin size of each group is read from its name")
        expected, naming_problems = _expected_from_names(list(arrays), args.phase)
    # Other groups are left alone: with --dataset they may belong to another dataset (the scaled
    # mazes share one file); without it, unknown names are already reported above.
    problems = validate_submission(arrays, expected, allow_extra_groups=True)
    checked = {group: arrays[group] for group in expected if group in arrays}
    return list(expected), naming_problems + problems + suspicious_values(checked)


def run(args: argparse.Namespace) -> int:
    checked, problems = _problems(args)
    for problem in problems:
        print(f"{args.file}: {problem}")
    if problems:
        print(f"{args.file}: invalid ({len(problems)} problem(s))")
        return 1
    print(f"{args.file}: valid for the {args.phase} phase ({', '.join(checked)})")
    return 0
