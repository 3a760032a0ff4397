"""`nlb-suite ensemble RUN...`: average several runs' rates into a new submission, score it and
record it (model `ensemble(...)`, hyperparameters listing the members)."""

from __future__ import annotations

import argparse

from ..outputs.locations import SUBMISSIONS
from ._common import add_results
from .eval import print_scores

NAME = "ensemble"
HELP = "average the rates of several runs (same dataset, phase and bin; any models) into a scored, recorded submission"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="a run's submission file, or its run name (the file's stem in --submissions, "
                             "e.g. synth_maze_val_5ms_ndt_seed1)")
    parser.add_argument("--submissions", type=str, default=str(SUBMISSIONS), metavar="DIR",
                        help=f"folder of the members named by run name, and of the ensemble (default: {SUBMISSIONS})")
    add_results(parser)
    parser.add_argument("--dataset", "-d", default=None, metavar="NAME",
                        help="dataset of members without a record in the results store")
    parser.add_argument("--phase", choices=("val", "test"), default=None,
                        help="phase of members without a record")
    parser.add_argument("--bin", dest="bin_ms", type=int, default=None, metavar="MS",
                        help="bin size of members without a record")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..pipeline.ensemble import run_ensemble

    result = run_ensemble(args.runs, submissions_dir=Path(args.submissions), results=args.results,
                          root=args.data_dir, n_boot=args.n_boot, dataset=args.dataset, phase=args.phase,
                          bin_ms=args.bin_ms)
    print(f"ensemble of {len(result.members)}: " + ", ".join(str(m.submission) for m in result.members))
    print(f"submission: {result.submission}")
    if result.scores is None:
        print("test phase: score the submission with `nlb-suite score SUBMISSION --phase test`")
        return 0
    first = result.members[0]
    print_scores(result.scores, f"{first.dataset} {first.phase} {first.bin_ms} ms, "
                                f"{result.record.model if result.record else 'ensemble'}")
    return 0
