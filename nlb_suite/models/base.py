"""The model contract, in scikit-learn's manner: the constructor holds the hyperparameters, `fit`
learns from `Tensors` (the training trials and the evaluation trials' held-in spikes, never the
targets), `predict` returns `Rates`.

A model is any class with `fit(tensors) -> self` and `predict(tensors) -> Rates` whose
constructor takes its hyperparameters as keywords (`Model`). The suite's own models derive from
`Estimator`, whose hyperparameters are one typed, frozen dataclass (`Hyperparameters`): every
field carries its type and range (`param`), checked once when the model is built, so a bad value
fails before any data is loaded, with the same words everywhere.

Models are found by name: the package's own and any installed plug-in register under the entry
point group `nlb_suite.models` (`name = "module:Class"` in a package's metadata); a module named
with `--plugin MODULE` registers its classes with `@register_model(name)` when imported. Listing
the names imports no model module (torch loads only when a torch model is built).

What a model can do beyond fit/predict is declared by small protocols: `Checkpointing` (saves its
training as it goes and continues an interrupted run) and `TrainingCurves` (per-epoch curves for
the report). A model whose hyperparameters include `seed` is seeded by it; the pipeline varies
it for seed ensembles and reuses it for the bootstrap.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, get_args, get_origin, runtime_checkable

import numpy as np

from ..core.arrays import Rates, Tensors
from ..core.errors import NlbSuiteError

ENTRY_POINT_GROUP = "nlb_suite.models"
SEED = "seed"


class ModelError(NlbSuiteError, ValueError):
    """A model name, hyperparameter or input that cannot work; raised before any work starts."""


@runtime_checkable
class Model(Protocol):
    """Anything with these two methods is a model. `fit` sees only `Tensors` (no eval targets)."""

    def fit(self, tensors: Tensors) -> Model: ...

    def predict(self, tensors: Tensors) -> Rates: ...


@runtime_checkable
class Checkpointing(Protocol):
    """A model that writes its training state into `folder` as it goes (weights, optimiser and
    the full hyperparameters) and, with `resume`, continues from there; resuming with other
    hyperparameters is refused."""

    def use_checkpoints(self, folder: Path, resume: bool) -> None: ...


@runtime_checkable
class TrainingCurves(Protocol):
    """A model trained in epochs that keeps its curves: name -> one value per epoch ('epoch',
    'train_loss', 'valid_loss', ...), saved beside the submission and drawn in the report."""

    def training_curves(self) -> dict[str, np.ndarray]: ...


@runtime_checkable
class EpochProgress(Protocol):
    """A model trained in epochs that calls `callback(epoch)` after each one, with that epoch's
    weights in place so that `predict` works from inside it (without disturbing the training's
    random state): how a study's early stopping (ASHA) watches a trial. None removes it."""

    def on_epoch(self, callback: Callable[[int], None] | None) -> None: ...


@runtime_checkable
class FittedHyperparameters(Protocol):
    """A model whose constructor values can leave choices to the data (LFADS's `scale_to_data`):
    after `fit`, the hyperparameters it actually trained with, recorded beside the constructor's."""

    def fitted_params(self) -> dict[str, Any]: ...


def check_range(owner: str, name: str, value: object, low: float = -math.inf, high: float = math.inf, *,
                integer: bool = False, low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    """Raise ModelError unless `value` is a number (an integer if `integer`) within the bounds;
    an infinite bound is never inclusive. `owner` names the model or component in the message."""
    kind = numbers.Integral if integer else numbers.Real
    low_inclusive, high_inclusive = low_inclusive and low > -math.inf, high_inclusive and high < math.inf
    valid = isinstance(value, kind) and not isinstance(value, bool)
    if valid:
        number = float(value)  # type: ignore[arg-type]  # a Real, checked above
        valid = (not math.isnan(number) and (number >= low if low_inclusive else number > low)
                 and (number <= high if high_inclusive else number < high))
    if not valid:
        interval = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
        raise ModelError(f"{owner}: {name} must be {'an integer' if integer else 'a number'} in {interval}, "
                         f"got {value!r}")


@dataclass(frozen=True)
class _Range:
    low: float
    high: float
    low_inclusive: bool
    high_inclusive: bool


def param(default: Any, *, low: float = -math.inf, high: float = math.inf, low_inclusive: bool = True,
          high_inclusive: bool = True, runtime: bool = False) -> Any:
    """A hyperparameter field with its allowed range (numbers; an infinite bound is open). The
    field's annotation gives its type: int, float, bool, str, a Literal of choices, or a tuple of
    numbers. `runtime` marks settings that change how a model runs, not what it computes
    (device, threads, logging): they are kept apart from the hyperparameters in results records
    and do not stop a checkpoint from being resumed."""
    metadata = {"range": _Range(low, high, low_inclusive, high_inclusive), "runtime": runtime}
    return field(default=default, metadata=metadata)


H = TypeVar("H", bound="Hyperparameters")


@dataclass(frozen=True)
class Hyperparameters:
    """A model's hyperparameters: subclass as a frozen dataclass of `param` fields. Values are
    checked and normalised (ints accepted for floats, lists for tuples) when an instance is made;
    `check` adds rules that tie several fields together."""

    OWNER: ClassVar[str] = "model"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for item in fields(self):
            value = _normalised(self.OWNER, item.name, getattr(self, item.name), hints[item.name], item.metadata)
            object.__setattr__(self, item.name, value)
        self.check()

    def check(self) -> None:
        """Rules across fields; raise ModelError. Nothing by default."""

    def to_dict(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in fields(self)}

    def hyperparameters(self) -> dict[str, Any]:
        """What the model computes depends on these (hashed, compared when resuming)."""
        return {item.name: getattr(self, item.name) for item in fields(self) if not item.metadata.get("runtime")}

    def runtime(self) -> dict[str, Any]:
        """How the model runs: device, threads, logging."""
        return {item.name: getattr(self, item.name) for item in fields(self) if item.metadata.get("runtime")}

    def replace(self: H, **changes: Any) -> H:
        return dataclasses.replace(self, **changes)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {item.name: item.default for item in fields(cls)}

    @classmethod
    def runtime_names(cls) -> frozenset[str]:
        return frozenset(item.name for item in fields(cls) if item.metadata.get("runtime"))


def _normalised(owner: str, name: str, value: Any, hint: Any, metadata: Mapping[str, Any]) -> Any:
    """`value` checked against the field's type and range, in the field's type."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ModelError(f"{owner}: {name} must be one of {list(args)}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ModelError(f"{owner}: {name} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ModelError(f"{owner}: {name} must be a string, got {value!r}")
        return value
    bounds = metadata.get("range")
    if hint in (int, float):
        limits = dict(low=bounds.low, high=bounds.high, low_inclusive=bounds.low_inclusive,
                      high_inclusive=bounds.high_inclusive) if bounds else {}
        check_range(owner, name, value, integer=hint is int, **limits)
        return int(value) if hint is int else float(value)
    if origin is tuple:
        element = args[0]
        if not isinstance(value, (list, tuple)) or not value:
            raise ModelError(f"{owner}: {name} must be a non-empty list, got {value!r}")
        return tuple(_normalised(owner, f"{name} entries", entry, element, metadata) for entry in value)
    if isinstance(hint, types.UnionType) or origin is typing.Union:
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _normalised(owner, name, value, inner, metadata)
    raise TypeError(f"{owner}: hyperparameter {name} has an unsupported type {hint!r}")


class Estimator(Generic[H]):
    """Base of the suite's models: `Model(**hyperparameters)` builds and checks `self.config`, an
    instance of the class attribute `Config` (a `Hyperparameters` dataclass)."""

    Config: ClassVar[type[Hyperparameters]]
    config: H

    def __init__(self, **hyperparameters: Any) -> None:
        unknown = sorted(set(hyperparameters) - set(self.Config.defaults()))
        if unknown:
            raise ModelError(f"{self.Config.OWNER}: no hyperparameter(s) {unknown}; it takes "
                             f"{sorted(self.Config.defaults())}")
        self.config = self.Config(**hyperparameters)  # type: ignore[assignment]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as scikit-learn's estimators return them."""
        return self.config.to_dict()

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.config.to_dict().items() if v != self.Config.defaults()[k]}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


def not_fitted(owner: str, method: str = "predict") -> ModelError:
    """The one error for using a model before `fit`."""
    return ModelError(f"{owner}: {method} called before fit")


# --- the registry --------------------------------------------------------------------------

_REGISTERED: dict[str, type] = {}
C = TypeVar("C", bound=type)


def register_model(name: str) -> Callable[[C], C]:
    """Class decorator: make a model available as `nlb-suite eval --model NAME` once its module
    is imported (`--plugin MODULE`). Installed packages register through the entry point group
    `nlb_suite.models` instead."""

    def add(cls: C) -> C:
        _REGISTERED[name] = cls
        return cls

    return add


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def model_names() -> list[str]:
    """Every model that can be built: entry points and registered classes (nothing is imported)."""
    return sorted(set(_entry_points()) | set(_REGISTERED))


def model_class(name: str) -> type:
    if name in _REGISTERED:
        return _REGISTERED[name]
    point = _entry_points().get(name)
    if point is None:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(model_names())} "
                         "(a model of your own: --plugin MODULE, or an entry point in the group "
                         f"{ENTRY_POINT_GROUP!r})")
    try:
        loaded = point.load()
    except (ImportError, AttributeError) as err:
        raise ModelError(f"model {name!r}: its entry point {point.value!r} cannot be loaded ({err})") from None
    if not isinstance(loaded, type):
        raise ModelError(f"model {name!r}: entry point {point.value!r} is not a class")
    return loaded


def load_plugin(module: str) -> None:
    """Import a user's module so that its `@register_model` classes register."""
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ModelError(f"--plugin {module}: cannot import it ({err}); is it on PYTHONPATH?") from None


def hyperparameter_defaults(cls: type) -> dict[str, Any]:
    """A model class's hyperparameters and their defaults: its `Config` fields, or (a plain
    class) its constructor's keywords."""
    config = getattr(cls, "Config", None)
    if isinstance(config, type) and issubclass(config, Hyperparameters):
        return config.defaults()
    parameters = inspect.signature(cls).parameters
    return {name: (None if p.default is inspect.Parameter.empty else p.default)
            for name, p in parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def runtime_names(cls: type) -> frozenset[str]:
    """The runtime settings among a model class's hyperparameters (see `param`)."""
    config = getattr(cls, "Config", None)
    if isinstance(config, type) and issubclass(config, Hyperparameters):
        return config.runtime_names()
    return frozenset()


def make_model(name: str, **hyperparameters: Any) -> Model:
    """Instantiate a registered model, rejecting hyperparameters it does not take."""
    cls = model_class(name)
    known = sorted(hyperparameter_defaults(cls))
    unknown = sorted(set(hyperparameters) - set(known))
    if unknown:
        raise ModelError(f"model {name!r} has no hyperparameter(s) {unknown}; it takes {known}")
    model = cls(**hyperparameters)
    if not isinstance(model, Model):
        raise ModelError(f"model {name!r}: {cls.__name__} has no fit/predict methods")
    return model
