"""`nlb-suite eval`: fit a model on a dataset, write its submission, score it, record the run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..datasets import DEFAULT_DATASET
from ..models.base import model_names
from ..pipeline import DEFAULT_CHECKPOINTS, DEFAULT_SUBMISSIONS, run_eval

NAME = "eval"
HELP = "fit a model, write its submission, score it (val phase) and append the results record"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help=f"one of: {', '.join(model_names())}")
    parser.add_argument("--dataset", default=DEFAULT_DATASET,
                        help=f"dataset name or path to a dataset .toml (default: {DEFAULT_DATASET})")
    parser.add_argument("--phase", choices=("val", "test"), default="val")
    parser.add_argument("--bin", dest="bin_ms", type=int, default=5, help="bin size in ms (5 or 20)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a hyperparameter from baselines/<model>.toml (repeatable)")
    parser.add_argument("--submissions", type=Path, default=DEFAULT_SUBMISSIONS,
                        help="folder for submission files (default: submissions/)")
    parser.add_argument("--results", default=None, help="results store (default: $NLB_SUITE_RESULTS or results/results.jsonl)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    parser.add_argument("--no-fetch", action="store_true", help="never download; fail if DANDI files are missing")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted training run from its last checkpoint "
                             f"(in {DEFAULT_CHECKPOINTS}/<run name>/ unless checkpoint_dir is set)")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def run(args: argparse.Namespace) -> int:
    result = run_eval(
        args.dataset, args.model, phase=args.phase, bin_ms=args.bin_ms, overrides=args.overrides,
        root=args.data_dir, fetch=not args.no_fetch, submissions_dir=args.submissions, results=args.results,
        n_boot=args.n_boot, resume=args.resume,
    )
    print(f"submission: {result.submission}")
    if result.latents is not None:
        print(f"latents:    {result.latents}")
    if result.scores is None:
        print("test phase: score the submission with `nlb-suite score SUBMISSION --phase test`")
        return 0
    print(f"\n{result.spec.result_name(args.bin_ms)} ({args.phase}), model {args.model}")
    scores = result.scores
    for name in scores.METRICS:
        value = getattr(scores, name)
        if value is None:
            continue
        interval = scores.ci.get(name)
        ci = f"  [{_fmt(interval.low)}, {_fmt(interval.high)}]" if interval else ""
        print(f"  {name:<16} {_fmt(value)}{ci}")
    return 0
