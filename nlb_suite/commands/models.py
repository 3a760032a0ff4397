"""`nlb-suite models`: the models that can be built, and their hyperparameters' defaults."""

from __future__ import annotations

import argparse

NAME = "models"
HELP = "list the models (built in, installed plug-ins, --plugin modules) and, with --model, its hyperparameters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default=None, help="show this model's hyperparameters and defaults")


def run(args: argparse.Namespace) -> int:
    from ..models.base import hyperparameter_defaults, model_class, model_names, runtime_names

    if args.model is None:
        for name in model_names():
            print(name)
        return 0
    cls = model_class(args.model)
    runtime = runtime_names(cls)
    print(f"{args.model}: {cls.__module__}.{cls.__qualname__}")
    for key, value in hyperparameter_defaults(cls).items():
        print(f"  {key} = {value!r}" + ("  (runtime)" if key in runtime else ""))
    return 0
