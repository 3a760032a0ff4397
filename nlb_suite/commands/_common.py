"""The options every command spells the same way, defined once.

- A dataset is named with `--dataset NAME` (a built-in name or a dataset .toml file) everywhere;
  the commands whose subject is the dataset (synth, fetch, targets) also take it positionally.
- `--phase val|test`, `--bin MS` (checked against the dataset's bin sizes), `--set KEY=VALUE`
  (a model's hyperparameter, repeatable).
- What a command writes goes to `--out` (a folder, or a file where it writes one file); the
  results store is `--results FILE`.
- `--data-dir` and `--plugin MODULE` are options of every command (added by `cli.py`).

Commands import their heavy modules inside `run`, so that building the parser (`--help`,
`--version`) loads neither torch nor the scientific stack.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import NlbSuiteError
from ..datasets.registry import DEFAULT_DATASET

RESULTS_HELP = "results store (default: $NLB_SUITE_RESULTS or results/results.jsonl)"


class UsageError(NlbSuiteError, ValueError):
    """Options that do not go together, or a required one that is missing."""


def add_dataset(parser: argparse.ArgumentParser, *, several: bool = False, positional: bool = False,
                default: str | None = DEFAULT_DATASET) -> None:
    """`--dataset` (repeatable when `several`), and with `positional` the same as arguments."""
    what = "dataset name(s) or .toml file(s)" if several else "dataset name or a dataset .toml file"
    default_text = f" (default: {default})" if default else ""
    if positional:
        parser.add_argument("datasets_positional", nargs="*" if several else "?", metavar="DATASET",
                            help=f"{what}, the same as --dataset")
    parser.add_argument("--dataset", "-d", dest="datasets", action="append", default=[], metavar="NAME",
                        help=f"{what}{default_text}" + ("; repeatable" if several else ""))
    parser.set_defaults(dataset_default=default, several_datasets=several)


def chosen_datasets(args: argparse.Namespace) -> list[str]:
    """The datasets named positionally and with --dataset, or the default."""
    positional = getattr(args, "datasets_positional", None) or []
    if isinstance(positional, str):
        positional = [positional]
    names = [*positional, *args.datasets]
    if not args.several_datasets and len(names) > 1:
        raise UsageError(f"name one dataset, not {len(names)} ({', '.join(names)})")
    if not names and args.dataset_default:
        names = [args.dataset_default]
    return names


def chosen_dataset(args: argparse.Namespace) -> str:
    names = chosen_datasets(args)
    if not names:
        raise UsageError("name a dataset with --dataset NAME")
    return names[0]


def add_phase(parser: argparse.ArgumentParser, default: str | None = "val") -> None:
    parser.add_argument("--phase", choices=("val", "test"), default=default,
                        help="val: train on 'train', evaluate 'val' (scorable here); test: train on "
                             f"'train' + 'val', predict the test file (default: {default or 'none'})")


def add_bin(parser: argparse.ArgumentParser, default: int | None = 5) -> None:
    parser.add_argument("--bin", dest="bin_ms", type=_positive_int, default=default, metavar="MS",
                        help=f"bin size in ms, one of the dataset's (5 or 20 for NLB) (default: {default})")


def add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a hyperparameter from baselines/<model>.toml (repeatable)")


def add_out(parser: argparse.ArgumentParser, default: Path | None, what: str) -> None:
    parser.add_argument("--out", "-o", type=Path, default=default, metavar="PATH",
                        help=f"{what} (default: {default if default is not None else 'see below'})")


def add_results(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=None, metavar="FILE", help=RESULTS_HELP)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of ms: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value
