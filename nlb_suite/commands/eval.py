"""`nlb-suite eval`: fit a model on a dataset, write its submission, score it, record the run."""

from __future__ import annotations

import argparse

from ..outputs.locations import CHECKPOINTS, SUBMISSIONS
from ._common import add_bin, add_dataset, add_out, add_overrides, add_phase, add_results, chosen_dataset

NAME = "eval"
HELP = "fit a model, write its submission, score it (val phase; test phase on synthetic data) and record the run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", required=True,
                        help="a model name (`nlb-suite models` lists them: smoothing, gpfa, kalman, lfads, ...)")
    add_dataset(parser)
    add_phase(parser)
    add_bin(parser)
    add_overrides(parser)
    add_out(parser, SUBMISSIONS, "folder for the submission file")
    add_results(parser)
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    parser.add_argument("--no-fetch", action="store_true", help="never download; fail if DANDI files are missing")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted training run from its last checkpoint "
                             f"(in {CHECKPOINTS}/<run name>_<hyperparameter hash>/)")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def run(args: argparse.Namespace) -> int:
    from ..pipeline import run_eval

    result = run_eval(
        chosen_dataset(args), args.model, phase=args.phase, bin_ms=args.bin_ms, overrides=args.overrides,
        root=args.data_dir, fetch=not args.no_fetch, submissions_dir=args.out, results=args.results,
        n_boot=args.n_boot, resume=args.resume, checkpoints_dir=CHECKPOINTS,
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
