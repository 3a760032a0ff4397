"""`nlb-suite eval`: fit a model on a dataset, write its submission, score it, record the run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from ..pipeline.eval import EvalRun
    from ..scoring import Scores

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
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="run the model at N seeds (its seed, seed + 1, ...; submissions <run name>_seed<k>) "
                             "and record their ensemble too (default: 1, one run)")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_scores(scores: Scores, title: str) -> None:
    print(f"\n{title}")
    for name in scores.METRICS:
        value = getattr(scores, name)
        if value is None:
            continue
        interval = scores.ci.get(name)
        ci = f"  [{_fmt(interval.low)}, {_fmt(interval.high)}]" if interval else ""
        print(f"  {name:<16} {_fmt(value)}{ci}")


def _print_run(result: EvalRun, title: str) -> None:
    print(f"submission: {result.submission}")
    if result.latents is not None:
        print(f"latents:    {result.latents}")
    if result.scores is None:
        print("test phase: score the submission with `nlb-suite score SUBMISSION --phase test`")
        return
    print_scores(result.scores, title)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import run_eval

    if args.config is not None:
        from ..pipeline.tune import eval_best, read_best_config

        if args.model or args.datasets or args.overrides or args.resume or args.untuned or args.seeds > 1:
            raise UsageError("--config names the model, dataset and hyperparameters; drop --model, --dataset, "
                             "--set, --resume, --untuned and --seeds")
        config = read_best_config(args.config)
        result = eval_best(config, root=args.data_dir, fetch=not args.no_fetch, submissions_dir=args.out,
                           results=args.results, n_boot=args.n_boot)
        _print_run(result, f"{result.spec.result_name(config.bin_ms)} ({config.phase}), model {config.model}")
        return 0
    if args.model is None:
        raise UsageError("name a model with --model NAME (or a study's configuration with --config FILE)")
    options = dict(phase=args.phase, bin_ms=args.bin_ms, overrides=args.overrides, root=args.data_dir,
                   fetch=not args.no_fetch, submissions_dir=args.out, results=args.results, n_boot=args.n_boot,
                   resume=args.resume, checkpoints_dir=CHECKPOINTS, use_tables=not args.untuned)
    if args.seeds > 1:
        from ..pipeline.ensemble import run_seeds

        runs, ensemble = run_seeds(chosen_dataset(args), args.model, args.seeds, **options)
        for member in runs:
            _print_run(member, f"{member.spec.result_name(args.bin_ms)} ({args.phase}), model {args.model}, "
                               f"seed {member.hyperparameters.get('seed')}")
        print(f"\nensemble:   {ensemble.submission}")
        if ensemble.scores is not None:
            print_scores(ensemble.scores, f"{runs[0].spec.result_name(args.bin_ms)} ({args.phase}), "
                                          f"{ensemble.record.model if ensemble.record else 'ensemble'}")
        return 0
    result = run_eval(chosen_dataset(args), args.model, **options)
    _print_run(result, f"{result.spec.result_name(args.bin_ms)} ({args.phase}), model {args.model}")
    return 0
