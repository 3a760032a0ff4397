"""Per-dataset hyperparameters of a model, from `baselines/<model>.toml` plus command-line overrides.

A model's TOML file has this shape (every table is optional):

    [default]                 # applies to every dataset
    alpha = 0.01
    [mc_maze]                 # one dataset (its registry or user-spec name)
    kern_sd_ms = 50
    [mc_maze.bin20]           # that dataset at 20 ms bins only
    kern_sd_ms = 60
    [search]                  # the tuning search space (`nlb-suite tune`); not read here

Values are layered in that order: the model's defaults, `[default]`, `[<dataset>]`,
`[<dataset>.bin<bin_ms>]`, then overrides ("key=value" strings from the CLI, or a dict). Every
key must be a hyperparameter of the model; anything else is a `ModelError` naming the file,
table and key, raised before any data is loaded.

The files ship inside the package (`nlb_suite/baselines`, a link to the repository's top-level
`baselines/` folder, whose files the wheel copies), read with importlib.resources;
`$NLB_SUITE_BASELINES` names another folder. Every model of this package has a file there, and a
missing one is an error (an install without them would silently run with other values). A
plug-in model (`--plugin`, or another package's entry point) may have none: it gets its defaults.
"""

from __future__ import annotations

import importlib.resources
import os
import tomllib
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from .base import Model, ModelError, hyperparameter_defaults, make_model, model_class

BASELINES_ENV = "NLB_SUITE_BASELINES"
# Tables that are not layers of hyperparameters.
NON_LAYER_TABLES = frozenset({"search"})


def baselines_dir() -> Traversable:
    """The folder holding `<model>.toml` files: `$NLB_SUITE_BASELINES`, else the package's own."""
    override = os.environ.get(BASELINES_ENV)
    if override:
        return Path(override)
    return importlib.resources.files("nlb_suite") / "baselines"


def hyperparameter_file(model: str) -> Traversable | None:
    """The model's TOML file; None for a plug-in model that ships none. A model of this package
    whose file is missing is an error."""
    path = baselines_dir() / f"{model}.toml"
    if path.is_file():
        return path
    cls = model_class(model)
    if cls.__module__.split(".")[0] == "nlb_suite" and not os.environ.get(BASELINES_ENV):
        raise ModelError(f"the hyperparameter file of model {model!r} is missing: {path}; the installation "
                         "is incomplete (reinstall nlb_suite) or set $NLB_SUITE_BASELINES to a folder holding it")
    return None


def read_toml(path: Traversable) -> dict[str, Any]:
    """A hyperparameter file's tables, checked for shape (the layers and the [search] table)."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ModelError(f"{path}: cannot read hyperparameters: {err}") from None
    for name, table in document.items():
        if not isinstance(table, dict):
            raise ModelError(f"{path}: top-level key {name!r} must be inside a table "
                             "([default] or [<dataset>])")
        if name in NON_LAYER_TABLES:
            continue
        for sub_name, sub_value in table.items():
            if isinstance(sub_value, dict) and not _is_bin_table(sub_name):
                raise ModelError(f"{path}: table [{name}.{sub_name}] is not a bin table; "
                                 "only [<dataset>.bin<ms>] (e.g. bin5, bin20) may be nested")
    return document


def load_hyperparameters(model: str, dataset: str, bin_ms: int,
                         overrides: list[str] | dict[str, Any] | None = None,
                         use_tables: bool = True) -> dict[str, Any]:
    """The hyperparameters of `model` on `dataset` at `bin_ms`: defaults, TOML layers, overrides.
    `use_tables=False` skips the dataset's own tables ([<dataset>], [<dataset>.bin<ms>]): the
    model as it runs on a dataset nobody tuned it for.

    Raises ModelError for an unknown model, an unreadable TOML file, a key the model does not
    take, or an override that does not parse.
    """
    cls = model_class(model)
    values = hyperparameter_defaults(cls)
    known = sorted(values)
    path = hyperparameter_file(model)
    if path is not None:
        for table_name, table in _layers(read_toml(path), dataset, bin_ms, use_tables):
            for key, value in table.items():
                if key not in values:
                    raise ModelError(f"{path}: [{table_name}] sets {key!r}, which model {model!r} does "
                                     f"not take; its hyperparameters are {known}")
                values[key] = value
    for key, value in parse_overrides(overrides, values).items():
        if key not in values:
            raise ModelError(f"override {key!r}: model {model!r} has no such hyperparameter; "
                             f"its hyperparameters are {known}")
        values[key] = value
    return values


def configured_model(model: str, dataset: str, bin_ms: int,
                     overrides: list[str] | dict[str, Any] | None = None, use_tables: bool = True) -> Model:
    """A model built from `load_hyperparameters`; a value out of range is a ModelError that also
    names where the hyperparameters came from."""
    hyperparameters = load_hyperparameters(model, dataset, bin_ms, overrides, use_tables)
    try:
        return make_model(model, **hyperparameters)
    except ModelError as err:
        source = hyperparameter_file(model) or "the model's defaults"
        raise ModelError(f"{err} (hyperparameters for {dataset} at {bin_ms} ms from {source} "
                         f"and overrides {overrides or 'none'})") from None


def _layers(document: dict[str, Any], dataset: str, bin_ms: int,
            use_tables: bool) -> list[tuple[str, dict[str, Any]]]:
    """The tables that apply, lowest precedence first, as (name, plain keys)."""
    layers = [("default", document.get("default", {}))]
    if use_tables:
        dataset_table = document.get(dataset, {})
        bin_key = f"bin{bin_ms}"
        layers += [(dataset, {k: v for k, v in dataset_table.items() if not isinstance(v, dict)}),
                   (f"{dataset}.{bin_key}", dataset_table.get(bin_key, {}))]
    return [(name, table) for name, table in layers if table]


def _is_bin_table(name: str) -> bool:
    return name.startswith("bin") and name[3:].isdigit()


def parse_overrides(overrides: list[str] | dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """Overrides as typed values. Strings "key=value" take the type of the current value of key
    (bool, int, float, str, or a TOML array for sequences); dict values are taken as given."""
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, separator, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not separator or not key:
            raise ModelError(f"override {item!r} must look like key=value")
        parsed[key] = _parse_value(key, text, current.get(key))
    return parsed


def _parse_value(key: str, text: str, like: Any) -> Any:
    try:
        if isinstance(like, bool):
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("expected true or false")
            return lowered in ("true", "1", "yes")
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
        if isinstance(like, str):
            return text
        # Sequences and keys without a typed default: read the text as a TOML value.
        return tomllib.loads(f"value = {text}")["value"]
    except (ValueError, tomllib.TOMLDecodeError) as err:
        expected = type(like).__name__ if like is not None else "TOML value"
        raise ModelError(f"override {key}={text!r}: not a valid {expected} ({err})") from None
