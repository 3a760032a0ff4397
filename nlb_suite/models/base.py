"""The model contract: hyperparameters in the constructor, `fit(tensors)`, `predict(tensors) -> Rates`.

Models are found by name in a registry; their per-dataset hyperparameters live in
`baselines/<model>.toml` (see `config.py`).
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Callable, Protocol, TypeVar, runtime_checkable

from ..core.arrays import Rates, Tensors
from ..core.errors import NlbSuiteError


@runtime_checkable
class Model(Protocol):
    """Anything with these two methods is a model. `fit` sees only `Tensors` (no eval targets)."""

    def fit(self, tensors: Tensors) -> "Model": ...

    def predict(self, tensors: Tensors) -> Rates: ...


class ModelError(NlbSuiteError, ValueError):
    """A model name, hyperparameter or input that cannot work; raised before any work starts."""


def check_range(owner: str, name: str, value: object, low: float = -math.inf, high: float = math.inf, *,
                integer: bool = False, low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    """Raise ModelError unless `value` is a number (an integer if `integer`) within the bounds;
    an infinite bound is never inclusive. `owner` names the model or component in the message."""
    kind = numbers.Integral if integer else numbers.Real
    low_inclusive, high_inclusive = low_inclusive and low > -math.inf, high_inclusive and high < math.inf
    valid = (isinstance(value, kind) and not isinstance(value, bool) and not (isinstance(value, float) and math.isnan(value))
             and (value >= low if low_inclusive else value > low)
             and (value <= high if high_inclusive else value < high))
    if not valid:
        interval = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
        raise ModelError(f"{owner}: {name} must be {'an integer' if integer else 'a number'} in {interval}, "
                         f"got {value!r}")


_REGISTRY: dict[str, type] = {}
M = TypeVar("M", bound=type)


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: make a model available as `nlb-suite eval --model NAME`."""

    def add(cls: M) -> M:
        _REGISTRY[name] = cls
        cls.model_name = name  # type: ignore[attr-defined]
        return cls

    return add


def model_names() -> list[str]:
    _load_builtin_models()
    return sorted(_REGISTRY)


def model_class(name: str) -> type:
    _load_builtin_models()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}") from None


def hyperparameter_names(cls: type) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def make_model(name: str, **hyperparameters: Any) -> Model:
    """Instantiate a registered model, rejecting hyperparameters its constructor does not take."""
    cls = model_class(name)
    known = hyperparameter_names(cls)
    unknown = sorted(set(hyperparameters) - set(known))
    if unknown:
        raise ModelError(f"model {name!r} has no hyperparameter(s) {unknown}; it takes {known}")
    return cls(**hyperparameters)


def _load_builtin_models() -> None:
    # Importing the modules registers their classes; done lazily so torch loads only when needed.
    import importlib

    for module in ("smoothing", "gpfa", "kalman", "lfads"):
        try:
            importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{module}":
                raise
