"""`nlb-suite report`: leaderboard tables (Markdown, CSV) from the results store; with `--html`,
also the HTML report with figures (`report_html.py`)."""

from __future__ import annotations

import argparse

from ..core.writable import check_folder
from ..outputs.locations import REPORTS
from ._common import add_out, add_results

NAME = "report"
HELP = ("write leaderboard tables (Markdown and CSV) from the results store, with published reference rows; "
        "with --html also an HTML report with figures")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_results(parser)
    add_out(parser, REPORTS, "folder for the report files")
    parser.add_argument("--all-runs", action="store_true",
                        help="list every run, not only the latest per model and hyperparameter set")
    parser.add_argument("--html", action="store_true",
                        help="also write report.html: tables, figures from the datasets and the runs' files, settings")


def run(args: argparse.Namespace) -> int:
    from ..outputs.results import read_records, results_path
    from ..report.claims import claims_by_table, claims_markdown
    from ..report.tables import write_tables

    check_folder(args.out, "the report folder")
    store = results_path(args.results)
    records = read_records(store)
    print(f"{store}: {len(records)} run(s)")
    claims = claims_by_table(records, args.data_dir)
    markdown = {key: "### The LFADS paper's claims, measured here\n\n" + claims_markdown(table)
                for key, table in claims.items()}
    paths = write_tables(records, args.out, all_runs=args.all_runs, extra_markdown=markdown)
    if args.html:
        # Imported here: matplotlib is only needed for the HTML report, not by every CLI start.
        from ..report.html import write_html_report

        paths.append(write_html_report(records, args.out, root=args.data_dir, claims=claims))
    for path in paths:
        print(f"wrote {path}")
    return 0
