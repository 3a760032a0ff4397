"""Per-dataset hyperparameters of a model, from `baselines/<model>.toml` plus command-line overrides.

A model's TOML file has this shape (every table is optional):

    [default]                 # applies to every dataset
    alpha = 0.01
    [mc_maze]                 # one dataset (its registry or user-spec name)
    kern_sd_ms = 50
    [mc_maze.bin20]           # that dataset at 20 ms bins only
    kern_sd_ms = 60

Values are layered in that order: the constructor's defaults, `[default]`, `[<dataset>]`,
`[<dataset>.bin<bin_ms>]`, then overrides ("key=value" strings from the CLI, or a dict). Every key
must be a constructor keyword of the model; anything else is a `ModelError` naming the file, table
and key, raised before any data is loaded. A model without a TOML file gets its constructor
defaults. The folder is `baselines/` at the repository root, or `$NLB_SUITE_BASELINES`.
"""

from __future__ import annotations

import inspect
import os
import tomllib
from pathlib import Path
from typing import Any

from .base import Model, ModelError, hyperparameter_names, make_model, model_class

BASELINES_ENV = "NLB_SUITE_BASELINES"


def baselines_dir() -> Path:
    """The folder holding `<model>.toml` files: `$NLB_SUITE_BASELINES`, else `<repo>/baselines`."""
    override = os.environ.get(BASELINES_ENV)
    return Path(override) if override else Path(__file__).resolve().parents[2] / "baselines"


def load_hyperparameters(model: str, dataset: str, bin_ms: int,
                         overrides: list[str] | dict[str, Any] | None = None) -> dict[str, Any]:
    """The hyperparameters of `model` on `dataset` at `bin_ms`: defaults, TOML layers, overrides.

    Raises ModelError for an unknown model, an unreadable TOML file, a key the model's
    constructor does not take, or an override that does not parse.
    """
    cls = model_class(model)
    known = hyperparameter_names(cls)
    values = _constructor_defaults(cls)
    path = baselines_dir() / f"{model}.toml"
    for table_name, table in _tables(path, dataset, bin_ms):
        for key, value in table.items():
            if key not in known:
                raise ModelError(f"{path}: [{table_name}] sets {key!r}, which model {model!r} does "
                                 f"not take; its hyperparameters are {known}")
            values[key] = value
    for key, value in _parse_overrides(overrides, values).items():
        if key not in known:
            raise ModelError(f"override {key!r}: model {model!r} has no such hyperparameter; "
                             f"its hyperparameters are {known}")
        values[key] = value
    return values


def configured_model(model: str, dataset: str, bin_ms: int,
                     overrides: list[str] | dict[str, Any] | None = None) -> Model:
    """A model built from `load_hyperparameters`; a value out of range is a ModelError that also
    names where the hyperparameters came from."""
    hyperparameters = load_hyperparameters(model, dataset, bin_ms, overrides)
    try:
        return make_model(model, **hyperparameters)
    except ModelError as err:
        source = baselines_dir() / f"{model}.toml"
        raise ModelError(f"{err} (hyperparameters for {dataset} at {bin_ms} ms from {source} "
                         f"and overrides {overrides or 'none'})") from None


def _constructor_defaults(cls: type) -> dict[str, Any]:
    parameters = inspect.signature(cls.__init__).parameters
    return {name: p.default for name, p in parameters.items()
            if name != "self" and p.default is not inspect.Parameter.empty}


def _tables(path: Path, dataset: str, bin_ms: int) -> list[tuple[str, dict[str, Any]]]:
    """The tables of `path` that apply, lowest precedence first, as (name, plain keys)."""
    if not path.exists():
        return []
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ModelError(f"{path}: cannot read hyperparameters: {err}") from None
    for name, table in document.items():
        if not isinstance(table, dict):
            raise ModelError(f"{path}: top-level key {name!r} must be inside a table "
                             "([default] or [<dataset>])")
        for sub_name, sub_value in table.items():
            if isinstance(sub_value, dict) and not _is_bin_table(sub_name):
                raise ModelError(f"{path}: table [{name}.{sub_name}] is not a bin table; "
                                 "only [<dataset>.bin<ms>] (e.g. bin5, bin20) may be nested")
    dataset_table = document.get(dataset, {})
    bin_key = f"bin{bin_ms}"
    layers = [("default", document.get("default", {})),
              (dataset, {k: v for k, v in dataset_table.items() if not isinstance(v, dict)}),
              (f"{dataset}.{bin_key}", dataset_table.get(bin_key, {}))]
    return [(name, table) for name, table in layers if table]


def _is_bin_table(name: str) -> bool:
    return name.startswith("bin") and name[3:].isdigit()


def _parse_overrides(overrides: list[str] | dict[str, Any] | None,
                     current: dict[str, Any]) -> dict[str, Any]:
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
