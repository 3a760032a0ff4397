"""`nlb-suite report`: leaderboard tables (Markdown, CSV) from the results store."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..report import write_tables
from ..results import ENV_VAR, read_records, results_path

NAME = "report"
HELP = "write leaderboard tables (Markdown and CSV) from the results store, with published reference rows"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default=None, metavar="FILE",
                        help=f"results store (default: ${ENV_VAR} or results/results.jsonl)")
    parser.add_argument("--out", default="reports", type=Path, metavar="DIR",
                        help="folder for the report files (default: reports/)")
    parser.add_argument("--all-runs", action="store_true",
                        help="list every run, not only the latest per model and hyperparameter set")


def run(args: argparse.Namespace) -> int:
    store = results_path(args.results)
    records = read_records(store)
    print(f"{store}: {len(records)} run(s)")
    for path in write_tables(records, args.out, all_runs=args.all_runs):
        print(f"wrote {path}")
    return 0
