"""`nlb-suite score`: score a submission file against an eval-target file, as nlb_tools would.

The targets are any file in the NLB eval-target layout (`--targets`), or, for the test phase,
the public test-split ground truth `eval_data_test.h5` in the data directory, verified by size
and sha256 before use. The submission is validated against the targets' shapes first and refused
with the same messages as `nlb-suite validate`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..data.paths import MissingDataError, data_dir
from ..outputs.submission import (
    Problem,
    SubmissionArrays,
    SubmissionError,
    expected_from_targets,
    read_submission,
    validate_submission,
)
from ..scoring import TargetsFileError, evaluate, read_targets

NAME = "score"
HELP = "score a submission file against eval targets (--targets FILE, or --phase test for the public test split)"

TEST_TARGETS_NAME = "eval_data_test.h5"
TEST_TARGETS_SIZE = 105_927_616
TEST_TARGETS_SHA256 = "f2f434d30193251b58e6a693381fdd185c8fbc0e47d38f8810e65295bc42c865"
TEST_TARGETS_ORIGIN = (
    "the nlb_tools GitHub repository (https://github.com/neurallatents/nlb_tools), file "
    f"data/{TEST_TARGETS_NAME}, published by the benchmark's authors in January 2026"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submission", help="submission HDF5 file (EvalAI format)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--targets", type=Path, metavar="TARGETS.h5",
                        help="eval-target file in the NLB layout (e.g. from `nlb-suite targets`)")
    source.add_argument("--phase", choices=("val", "test"), default=None,
                        help=f"test: score against the public test-split ground truth ({TEST_TARGETS_NAME} "
                             "in the data directory)")
    parser.add_argument("--json", action="store_true",
                        help="print exactly what nlb_tools' evaluate() returns, as JSON")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_test_targets(root: str | Path | None = None) -> Path:
    """The public test-split ground truth in the data directory, checked byte for byte."""
    path = data_dir(root) / TEST_TARGETS_NAME
    if not path.is_file():
        raise MissingDataError(
            f"test-split ground truth not found at {path}\nget it from {TEST_TARGETS_ORIGIN}, "
            "and put it in the data directory (or pass --data-dir)"
        )
    size = path.stat().st_size
    if size != TEST_TARGETS_SIZE:
        raise TargetsFileError(
            f"{path}: {size:,} bytes, but the published file has {TEST_TARGETS_SIZE:,}; it is truncated or "
            f"a different file (a Git LFS pointer, if cloned without LFS); get it again from {TEST_TARGETS_ORIGIN}"
        )
    digest = _sha256(path)
    if digest != TEST_TARGETS_SHA256:
        raise TargetsFileError(
            f"{path}: sha256 {digest} differs from the published file's {TEST_TARGETS_SHA256}; "
            f"it is corrupt or altered; get it again from {TEST_TARGETS_ORIGIN}"
        )
    return path


def _targets_path(args: argparse.Namespace) -> Path:
    if args.targets is not None:
        return args.targets
    if args.phase == "test":
        return verified_test_targets(args.data_dir)
    raise TargetsFileError(
        "scoring needs targets: --targets FILE (write val-phase targets with "
        "`nlb-suite targets DATASET --phase val`), or --phase test for the public test split"
    )


def checked_submission(submission: Path, targets: Mapping[str, Mapping[str, np.ndarray]],
                       targets_path: Path) -> SubmissionArrays:
    """The submission's arrays, refused (SubmissionError) unless every group has targets and fits
    their shapes. Target groups the submission lacks are not scored, as in nlb_tools."""
    arrays = read_submission(submission)
    available = expected_from_targets(targets)
    listing = ", ".join(repr(group) for group in available) or "none"
    problems = [
        Problem(f"no targets for this group in {targets_path} (it has {listing})", group)
        for group in arrays if group not in available
    ]
    common = {group: shapes for group, shapes in available.items() if group in arrays}
    problems += validate_submission(arrays, common, allow_extra_groups=True)
    if problems:
        raise SubmissionError(str(submission), problems)
    return arrays


def _print_table(results: list[dict[str, dict[str, float]]]) -> None:
    for entry in results:
        for split, metrics in entry.items():
            print(split)
            width = max((len(name) for name in metrics), default=0)
            for name, value in metrics.items():
                print(f"  {name:<{width}}  {value:.4f}")


def run(args: argparse.Namespace) -> int:
    targets_path = _targets_path(args)
    targets = read_targets(targets_path)
    arrays = checked_submission(Path(args.submission), targets, targets_path)
    results = evaluate(targets, arrays)
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{args.submission} scored against {targets_path}")
        _print_table(results)
    return 0
