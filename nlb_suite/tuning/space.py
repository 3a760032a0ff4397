"""A study's plan from the `[search]` table of `baselines/<model>.toml`: how to search (the
study's settings) and what (the search space), checked before Ray or any trial starts.

    [search]                  # the study's settings, for every dataset
    method = "pbt"            # "pbt" (population-based training; LFADS) or "random"
    scheduler = "asha"        # random: stop weak trials early (models trained in epochs)
    population = 8            # pbt: members trained at once; random: trials run at once (<= cores)
    epochs = 300              # pbt: each member's budget (its max_epochs)
    perturbation_interval = 25  # pbt: epochs between exploit/explore rounds
    burn_in = 50              # pbt: epochs before the first round
    [search.space]            # the hyperparameters searched and their ranges
    lr = { low = 1e-5, high = 5e-3, log = true, init = 4e-3 }   # init: every member starts there
    latent_dim = { low = 4, high = 24, integer = true }
    transform = { choice = ["sqrt", "counts"] }
    [search.fixed]            # hyperparameters every trial takes (over the usual layers)
    lr_decay = 1.0
    [search.mc_maze]          # one dataset's own settings (e.g. a larger population)
    population = 20
    [search.mc_maze.space]    # ... and its own ranges for some dimensions (whole entries)
    lr = { low = 1e-5, high = 5e-3, log = true, init = 4e-3 }

Every key is checked: a setting the study does not know, a searched or fixed key the model
does not take, a range with low > high, a log range reaching 0 or below, a bound outside the
model's own range: each a `SearchSpaceError` naming the file, the key and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from ..core.errors import NlbSuiteError
from ..models.base import ModelError, hyperparameter_defaults, make_model, model_class, runtime_names
from ..models.config import hyperparameter_file, load_hyperparameters, read_toml

SEARCH_TABLE = "search"
Method = Literal["pbt", "random"]
Scheduler = Literal["fifo", "asha"]


class SearchSpaceError(NlbSuiteError, ValueError):
    """A `[search]` table (or a study option) that cannot make a study."""


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter: a range (uniform, or log-uniform with `log`; whole numbers
    with `integer`) or a list of `choices`. With `init`, every trial starts at that value instead
    of a draw from the range (lfads-torch's `HyperParam(init=...)`: its PBT starts every member's
    learning rate at 4e-3 and coordinated dropout at 0.5); PBT's explore still uses the range."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None
    explore: float | None = None  # PBT's perturbation weight for this one (else the study's)
    init: float | None = None

    def initial(self) -> Any:
        """What a new trial takes: `init`, else the Ray Tune domain to draw from."""
        if self.init is not None:
            return int(self.init) if self.integer else self.init
        return self.ray_domain()

    def ray_domain(self) -> Any:
        """The Ray Tune sampling domain of this dimension."""
        from ray import tune

        if self.choices is not None:
            return tune.choice(list(self.choices))
        assert self.low is not None and self.high is not None
        if self.integer:
            # Ray's integer domains exclude the upper bound.
            return (tune.lograndint if self.log else tune.randint)(int(self.low), int(self.high) + 1)
        return (tune.loguniform if self.log else tune.uniform)(self.low, self.high)

    def clip(self, value: Any) -> Any:
        """`value` brought into the range (rounded for an integer dimension)."""
        if self.choices is not None:
            return value
        assert self.low is not None and self.high is not None
        clipped = min(self.high, max(self.low, value))
        return int(round(clipped)) if self.integer else float(clipped)

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name} in {list(self.choices)}"
        scale = "log " if self.log else ""
        kind = "integer " if self.integer else ""
        return f"{self.name} {scale}{kind}[{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class StudySettings:
    """How a study searches. `population` trials run at once for PBT (its members); a random
    search runs `samples` trials. `explore`: a perturbed value is the winner's times a factor
    drawn uniformly from [1 - explore, 1 + explore] (AutoLFADS), clipped to the range. The study
    stops when its best objective has not improved by `min_improvement` (relative) for
    `patience_rounds` rounds. `validation_fraction` of the training trials score a non-PBT trial.
    `scheduler = "asha"` stops a random search's weaker trials early (Ray Tune's ASHA, for models
    trained in epochs): each trial reports its validation co-bps after every epoch, and at epochs
    `grace_epochs` x `reduction_factor`^k only the best 1/`reduction_factor` of the trials that
    got there so far go on."""

    method: Method = "random"
    scheduler: Scheduler = "fifo"
    grace_epochs: int = 10
    reduction_factor: int = 3
    population: int = 8
    samples: int = 16
    epochs: int = 300
    perturbation_interval: int = 25
    burn_in: int = 50
    explore: float = 0.3
    patience_rounds: int = 4
    min_improvement: float = 1e-3
    validation_fraction: float = 0.2
    seed: int = 0

    def check(self, where: str) -> None:
        if self.method not in ("pbt", "random"):
            raise SearchSpaceError(f"{where}: method must be 'pbt' or 'random', got {self.method!r}")
        for name in ("population", "samples", "epochs", "perturbation_interval", "patience_rounds"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SearchSpaceError(f"{where}: {name} must be a whole number >= 1, got {value!r}")
        if self.method == "pbt" and self.population < 2:
            raise SearchSpaceError(f"{where}: population-based training needs a population of at least 2, "
                                   f"got {self.population}")
        if self.scheduler not in ("fifo", "asha"):
            raise SearchSpaceError(f"{where}: scheduler must be 'fifo' (every trial runs to its end) or 'asha' "
                                   f"(early stopping), got {self.scheduler!r}")
        if self.scheduler == "asha" and self.method != "random":
            raise SearchSpaceError(f"{where}: scheduler 'asha' is for a random search; PBT schedules its "
                                   "population itself (drop scheduler or set method = \"random\")")
        for name, least in (("grace_epochs", 1), ("reduction_factor", 2)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise SearchSpaceError(f"{where}: {name} must be a whole number >= {least}, got {value!r}")
        if not isinstance(self.burn_in, int) or self.burn_in < 0:
            raise SearchSpaceError(f"{where}: burn_in must be a whole number of epochs >= 0, got {self.burn_in!r}")
        if not 0 < self.explore < 1:
            raise SearchSpaceError(f"{where}: explore must be in (0, 1), got {self.explore!r}")
        if not 0 < self.validation_fraction < 1:
            raise SearchSpaceError(f"{where}: validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if not self.min_improvement >= 0:
            raise SearchSpaceError(f"{where}: min_improvement must be >= 0, got {self.min_improvement!r}")


SETTING_NAMES = frozenset(item.name for item in fields(StudySettings))
SUBTABLES = frozenset({"space", "fixed"})


@dataclass(frozen=True)
class StudyPlan:
    """Everything a study needs before it starts: the model, the hyperparameters every trial
    shares (`base`: defaults, the TOML layers, `[search.fixed]`, the overrides), the searched
    dimensions and the settings."""

    model: str
    dataset: str
    bin_ms: int
    base: dict[str, Any]
    space: tuple[Dimension, ...]
    settings: StudySettings
    source: str = field(default="")

    def dimension(self, name: str) -> Dimension:
        (found,) = [dim for dim in self.space if dim.name == name]
        return found


def _dimension(where: str, name: str, spec: Any) -> Dimension:
    if not isinstance(spec, dict):
        raise SearchSpaceError(f"{where}: {name} must be a table like {{ low = 0.1, high = 1.0 }} or "
                               f"{{ choice = [...] }}, got {spec!r}")
    unknown = sorted(set(spec) - {"low", "high", "log", "integer", "choice", "explore", "init"})
    if unknown:
        raise SearchSpaceError(f"{where}: {name} has unknown key(s) {unknown}; use low, high, log, integer, "
                               "explore, init or choice")
    explore = spec.pop("explore", None)
    init = spec.pop("init", None)
    if explore is not None and not (isinstance(explore, (int, float)) and 0 < explore < 1):
        raise SearchSpaceError(f"{where}: {name}.explore must be in (0, 1), got {explore!r}")
    if "choice" in spec:
        choices = spec["choice"]
        if set(spec) != {"choice"} or not isinstance(choices, list) or not choices or init is not None:
            raise SearchSpaceError(f"{where}: {name}: choice must be a non-empty list, alone in its table")
        return Dimension(name, choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise SearchSpaceError(f"{where}: {name} needs both low and high (or a choice list)")
    low, high = spec["low"], spec["high"]
    for bound, value in (("low", low), ("high", high)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise SearchSpaceError(f"{where}: {name}.{bound} must be a finite number, got {value!r}")
    log, integer = spec.get("log", False), spec.get("integer", False)
    if not isinstance(log, bool) or not isinstance(integer, bool):
        raise SearchSpaceError(f"{where}: {name}: log and integer must be true or false")
    if low > high:
        raise SearchSpaceError(f"{where}: {name} has low {low!r} > high {high!r}; swap them")
    if log and low <= 0:
        raise SearchSpaceError(f"{where}: {name} is a log range but low is {low!r}; a log range needs "
                               "low > 0 (e.g. 1e-6), or drop log = true")
    if init is not None and (not isinstance(init, (int, float)) or isinstance(init, bool) or not low <= init <= high):
        raise SearchSpaceError(f"{where}: {name}.init must be a number within [{low!r}, {high!r}], got {init!r}")
    return Dimension(name, float(low), float(high), log, integer, explore=None if explore is None else float(explore),
                     init=None if init is None else float(init))


def _check_bounds(where: str, model: str, base: dict[str, Any], dim: Dimension) -> None:
    """Each end of the range (each choice) must be a value the model accepts."""
    values = list(dim.choices) if dim.choices is not None else [dim.clip(dim.low), dim.clip(dim.high)]
    for value in values:
        try:
            make_model(model, **(base | {dim.name: value}))
        except ModelError as err:
            raise SearchSpaceError(f"{where}: {dim.describe()} reaches a value the model refuses: {err}; "
                                   "narrow the range") from None


def read_plan(model: str, dataset: str, bin_ms: int, overrides: list[str] | dict[str, Any] | None = None,
              use_tables: bool = True, settings: dict[str, Any] | None = None) -> StudyPlan:
    """The study of `model` on `dataset` as its TOML's `[search]` table describes it, with
    `settings` (the command line's --population, --epochs, ...) over the table's."""
    cls = model_class(model)
    path = hyperparameter_file(model)
    document = read_toml(path) if path is not None else {}
    table = document.get(SEARCH_TABLE)
    where = f"{path} [{SEARCH_TABLE}]"
    if not table:
        raise SearchSpaceError(f"{path or 'model ' + repr(model)}: no [{SEARCH_TABLE}] table, so there is nothing "
                               f"to tune; add one with a [{SEARCH_TABLE}.space] of the hyperparameters to search")
    known = set(hyperparameter_defaults(cls)) - runtime_names(cls)
    values: dict[str, Any] = {}
    space_table = table.get("space", {})
    for key, value in table.items():
        if key in SUBTABLES:
            continue
        if isinstance(value, dict):
            if key == dataset:
                own = dict(value)
                own_space = own.pop("space", {})
                if not isinstance(own_space, dict):
                    raise SearchSpaceError(f"{path} [{SEARCH_TABLE}.{key}]: space must be a table of dimensions")
                values |= _settings_only(f"{path} [{SEARCH_TABLE}.{key}]", own)
                if isinstance(space_table, dict):
                    space_table = space_table | own_space  # whole dimensions replaced, others kept
            continue  # another dataset's settings
        values[key] = value
    values = _settings_only(where, values) | (settings or {})
    study = replace(StudySettings(), **values)
    study.check(where)

    if not isinstance(space_table, dict) or not space_table:
        raise SearchSpaceError(f"{where}: [{SEARCH_TABLE}.space] is missing or empty; name the hyperparameters "
                               "to search there")
    fixed = table.get("fixed", {})
    for name in list(space_table) + [key for key in fixed if key not in runtime_names(cls)]:
        if name not in known:
            raise SearchSpaceError(f"{where}: {name!r} is not a hyperparameter of model {model!r}; "
                                   f"it takes {sorted(known)}")
    space = tuple(_dimension(f"{path} [{SEARCH_TABLE}.space]", name, dict(spec) if isinstance(spec, dict) else spec)
                  for name, spec in space_table.items())
    base = load_hyperparameters(model, dataset, bin_ms, overrides, use_tables) | dict(fixed)
    if study.method == "pbt":
        base["max_epochs"] = study.epochs
    for dim in space:
        _check_bounds(f"{path} [{SEARCH_TABLE}.space]", model, base, dim)
    return StudyPlan(model, dataset, bin_ms, base, space, study, str(path))


def _settings_only(where: str, table: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(table) - SETTING_NAMES)
    if unknown:
        raise SearchSpaceError(f"{where}: unknown study setting(s) {unknown}; the settings are "
                               f"{sorted(SETTING_NAMES)} (searched hyperparameters go in [{SEARCH_TABLE}.space])")
    return dict(table)
