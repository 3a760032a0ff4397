"""The `nlb-suite` command. Subcommands are the modules of `nlb_suite.commands`; building the parser
imports only them, and they import their heavy modules when they run (startup stays well under a
second)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType

from . import __version__, commands
from .core.errors import NlbSuiteError


def _command_modules() -> list[ModuleType]:
    names = sorted(info.name for info in pkgutil.iter_modules(commands.__path__) if not info.name.startswith("_"))
    return [importlib.import_module(f"{commands.__name__}.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nlb-suite", description="Neural Latents Benchmark evaluation suite")
    parser.add_argument("--version", action="version", version=f"nlb-suite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _command_modules():
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        cmd.add_argument("--data-dir", default=None,
                         help="data directory (default: $NLB_SUITE_DATA or ~/.cache/nlb_suite)")
        cmd.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                         help="import MODULE first, so that its @register_model classes can be used (repeatable)")
        module.add_arguments(cmd)
        cmd.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.plugin:
            from .models.base import load_plugin

            for module in args.plugin:
                load_plugin(module)
        return int(args.run(args) or 0)
    except NlbSuiteError as err:
        print(f"nlb-suite {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nlb-suite {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
