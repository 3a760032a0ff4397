"""`nlb-suite fetch`: download NLB datasets from DANDI, verified by size and sha256, resumable."""

from __future__ import annotations

import argparse

from ..data.fetch import (
    API_URL_ENV_VAR,
    DEFAULT_API_URL,
    FileStatus,
    check_files,
    dandiset_page_url,
    fetch_files,
    resolve_api_url,
)
from ..data.paths import data_dir
from ..datasets import BUILTIN, get_spec
from ._common import UsageError, add_dataset, chosen_datasets

NAME = "fetch"
HELP = "download NLB datasets from DANDI into the data directory (verified by size and sha256, resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset(parser, several=True, positional=True, default=None)
    parser.add_argument("--all", action="store_true", help="fetch every dataset that is on DANDI")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the files, their sizes and state, and the total to download; download nothing")
    parser.add_argument("--dandi-api-url", default=None,
                        help=f"DANDI API to download from (default: ${API_URL_ENV_VAR} or {DEFAULT_API_URL})")


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:,.1f} MB"


def _state(status: FileStatus) -> str:
    if status.state == "valid":
        return "present, verified"
    if status.state == "invalid":
        return f"present but invalid ({status.problem}): will be downloaded again"
    if status.partial_bytes:
        return f"missing ({_megabytes(status.partial_bytes)} of an interrupted download kept)"
    return "missing"


def run(args: argparse.Namespace) -> int:
    names = chosen_datasets(args)
    if args.all == bool(names):
        raise UsageError("name the datasets to fetch, or use --all (not both)")
    specs = ([spec for spec in BUILTIN.values() if spec.source == "dandi"] if args.all
             else [get_spec(name) for name in names])
    url = resolve_api_url(args.dandi_api_url)
    root = data_dir(args.data_dir)
    checked = [(spec, check_files(spec, root)) for spec in specs]
    print(f"data directory: {root}")
    statuses: list[FileStatus] = []
    for spec, spec_statuses in checked:
        print(f"{spec.name}: DANDI {spec.dandiset}/{spec.version}  {dandiset_page_url(spec)}")
        for status in spec_statuses:
            print(f"  {status.path.relative_to(root)}  {_megabytes(status.size)}  {_state(status)}")
        statuses.extend(spec_statuses)
    needed = [status for status in statuses if status.state != "valid"]
    total = sum(status.bytes_to_download for status in needed)
    if args.dry_run:
        print(f"would download {len(needed)} file(s), {_megabytes(total)}, from {url}")
        return 0
    if needed:
        print(f"downloading {len(needed)} file(s), {_megabytes(total)}, from {url}")
        fetch_files(needed, url)
    print(f"all {len(statuses)} file(s) present and verified")
    return 0
