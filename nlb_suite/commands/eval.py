"""`nlb-suite eval`: fit a model on a dataset, write its submission, score it, record the run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..outputs.locations import CHECKPOINTS, SUBMISSIONS
from ._common import (
    UsageError,
    add_bin,
    add_dataset,
    add_out,
    add_overrides,
    add_phase,
    add_results,
    chosen_dataset,
)

NAME = "eval"
HELP = "fit a model, write its submission, score it (val phase; test phase on synthetic data) and record the run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default=None,
                        help="a model name (`nlb-suite models` lists them: smoothing, gpfa, kalman, lfads, ...)")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="rerun the configuration a study wrote (runs/tune/<study>/best.toml): its model, "
                             "dataset, phase, bin and hyperparameters exactly")
    parser.add_argument("--untuned", action="store_true",
                        help="ignore the dataset's own tables in baselines/<model>.toml (defaults and [default] only)")
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

    if args.config is not None:
        from ..pipeline.tune import eval_best, read_best_config

        if args.model or args.datasets or args.overrides or args.resume or args.untuned:
            raise UsageError("--config names the model, dataset and hyperparameters; drop --model, --dataset, "
                             "--set, --resume and --untuned")
        config = read_best_config(args.config)
        args.phase, args.bin_ms, args.model = config.phase, config.bin_ms, config.model
        result = eval_best(config, root=args.data_dir, fetch=not args.no_fetch, submissions_dir=args.out,
                           results=args.results, n_boot=args.n_boot)
    elif args.model is None:
        raise UsageError("name a model with --model NAME (or a study's configuration with --config FILE)")
    else:
        result = run_eval(
            chosen_dataset(args), args.model, phase=args.phase, bin_ms=args.bin_ms, overrides=args.overrides,
            root=args.data_dir, fetch=not args.no_fetch, submissions_dir=args.out, results=args.results,
            n_boot=args.n_boot, resume=args.resume, checkpoints_dir=CHECKPOINTS, use_tables=not args.untuned,
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
