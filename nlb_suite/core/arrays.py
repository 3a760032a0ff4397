"""The arrays every layer passes on: model inputs (`Tensors`), evaluation targets (`EvalTargets`),
predictions (`Rates`) and, for synthetic data, the ground truth (`TrueRates`).

Every array is (trials, bins, units) in spikes per bin, float32, NaN where unobserved, trials in
trials-table order, units sorted by id with held-in units apart from held-out ones. The names of
the blocks and their shapes are defined here once: a block is one `Slot` (which trials, which
units, the trial window or the forward window after it), and its array is named
`<split>_<kind>_<units>[_forward]`, e.g. `eval_spikes_heldout` or `eval_rates_heldin_forward`.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Literal, get_args

import numpy as np
import pandas as pd

from .errors import NlbSuiteError

Phase = Literal["val", "test"]
PHASES: tuple[Phase, ...] = get_args(Phase)
Split = Literal["train", "eval"]
UnitGroup = Literal["heldin", "heldout"]
Kind = Literal["spikes", "rates"]


class PhaseError(NlbSuiteError, ValueError):
    """A phase other than 'val' or 'test'."""


def check_phase(phase: object) -> Phase:
    """`phase` if it is 'val' or 'test', else a PhaseError."""
    if phase != "val" and phase != "test":
        raise PhaseError(f"phase must be 'val' or 'test', not {phase!r}")
    return phase


@dataclass(frozen=True)
class Slot:
    """One (trials, bins, units) block: the training or evaluation trials, the held-in or held-out
    units, over the trial window or the forward window that follows it."""

    split: Split
    units: UnitGroup
    forward: bool = False

    def name(self, kind: Kind) -> str:
        return f"{self.split}_{kind}_{self.units}" + ("_forward" if self.forward else "")


@dataclass(frozen=True)
class Sizes:
    """The sizes of one phase and bin size; `shape(slot)` is the shape of a block. None leaves a
    size open (a submission checked against a target file that does not tell it)."""

    n_train: int | None
    n_eval: int | None
    n_bins: int | None
    n_forward: int | None
    n_heldin: int | None
    n_heldout: int | None

    def shape(self, slot: Slot) -> tuple[int | None, int | None, int | None]:
        return (self.n_train if slot.split == "train" else self.n_eval,
                self.n_forward if slot.forward else self.n_bins,
                self.n_heldin if slot.units == "heldin" else self.n_heldout)


# The sizes each axis of a block takes, as `Sizes` fields, for messages and open sizes.
def axis_fields(slot: Slot) -> tuple[str, str, str]:
    return ("n_train" if slot.split == "train" else "n_eval", "n_forward" if slot.forward else "n_bins",
            "n_heldin" if slot.units == "heldin" else "n_heldout")


AXIS_WORDS = {"n_train": "train trials", "n_eval": "eval trials", "n_bins": "bins",
              "n_forward": "forward bins", "n_heldin": "held-in units", "n_heldout": "held-out units"}

# The blocks a model predicts (what a submission file holds), in the benchmark's order.
RATE_SLOTS: tuple[Slot, ...] = (
    Slot("train", "heldin"), Slot("train", "heldout"), Slot("eval", "heldin"), Slot("eval", "heldout"),
    Slot("eval", "heldin", forward=True), Slot("eval", "heldout", forward=True),
)
# Spikes a model may see, and the spikes it is scored against.
INPUT_SLOTS: tuple[Slot, ...] = (
    Slot("train", "heldin"), Slot("train", "heldout"), Slot("train", "heldin", forward=True),
    Slot("train", "heldout", forward=True), Slot("eval", "heldin"),
)
TARGET_SLOTS: tuple[Slot, ...] = (
    Slot("eval", "heldout"), Slot("eval", "heldin", forward=True), Slot("eval", "heldout", forward=True),
)
RATE_ARRAYS: tuple[str, ...] = tuple(slot.name("rates") for slot in RATE_SLOTS)


class LatentKind(StrEnum):
    """What a model's latent arrays hold: LFADS factors and inferred inputs, the latent states of
    GPFA and the Kalman-filter model, the last-layer states of a transformer."""

    FACTORS = "factors"
    INPUTS = "inputs"
    STATES = "latents"


def latent_key(split: Split, kind: LatentKind) -> str:
    """Key of a latent array in `Rates.latents` and in the latents file, e.g. 'eval_factors'."""
    return f"{split}_{kind.value}"


@dataclass
class Tensors:
    """What a model sees: spikes of training trials (held-in, held-out, forward window), held-in
    spikes of evaluation trials, and training behaviour."""

    dataset: str
    phase: Phase
    bin_ms: int
    train_spikes_heldin: np.ndarray
    train_spikes_heldout: np.ndarray
    train_spikes_heldin_forward: np.ndarray
    train_spikes_heldout_forward: np.ndarray
    eval_spikes_heldin: np.ndarray
    train_behavior: np.ndarray | None = None
    train_decode_mask: np.ndarray | None = None
    train_trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    eval_trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    heldin_ids: np.ndarray = field(default_factory=lambda: np.empty(0, int))
    heldout_ids: np.ndarray = field(default_factory=lambda: np.empty(0, int))

    @property
    def n_train(self) -> int:
        return int(self.train_spikes_heldin.shape[0])

    @property
    def n_eval(self) -> int:
        return int(self.eval_spikes_heldin.shape[0])

    @property
    def n_bins(self) -> int:
        return int(self.train_spikes_heldin.shape[1])

    @property
    def n_forward(self) -> int:
        return int(self.train_spikes_heldin_forward.shape[1])

    @property
    def n_heldin(self) -> int:
        return int(self.train_spikes_heldin.shape[2])

    @property
    def n_heldout(self) -> int:
        return int(self.train_spikes_heldout.shape[2])

    @property
    def sizes(self) -> Sizes:
        return Sizes(self.n_train, self.n_eval, self.n_bins, self.n_forward, self.n_heldin, self.n_heldout)


@dataclass
class EvalTargets:
    """What a model is scored against, named as in the benchmark's eval-target files."""

    dataset: str
    bin_ms: int
    eval_spikes_heldout: np.ndarray
    eval_spikes_heldin_forward: np.ndarray
    eval_spikes_heldout_forward: np.ndarray
    train_behavior: np.ndarray | None = None
    eval_behavior: np.ndarray | None = None
    train_decode_mask: np.ndarray | None = None
    eval_decode_mask: np.ndarray | None = None
    psth: np.ndarray | None = None
    train_cond_idx: list[np.ndarray] | None = None
    eval_cond_idx: list[np.ndarray] | None = None
    # DMFC_RSG: per-trial shift (bins) of each eval trial's rates before the PSTH comparison.
    eval_jitter: np.ndarray | None = None

    REQUIRED: ClassVar[tuple[str, ...]] = tuple(slot.name("spikes") for slot in TARGET_SLOTS)
    OPTIONAL: ClassVar[tuple[str, ...]] = ("train_behavior", "eval_behavior", "train_decode_mask",
                                           "eval_decode_mask", "psth", "eval_cond_idx", "train_cond_idx",
                                           "eval_jitter")

    def sizes(self, n_train: int | None = None) -> Sizes:
        """The sizes these targets fix (train trials from the behaviour, when there is some)."""
        n_eval, n_bins, n_heldout = self.eval_spikes_heldout.shape
        _, n_forward, n_heldin = self.eval_spikes_heldin_forward.shape
        if n_train is None and self.train_behavior is not None:
            n_train = len(self.train_behavior)
        return Sizes(n_train, n_eval, n_bins, n_forward, n_heldin, n_heldout)


R = typing.TypeVar("R", bound="Rates")


@dataclass
class Rates:
    """A model's predictions in spikes/bin, shaped like the spikes they predict. These six arrays
    are what a submission file holds (`RATE_ARRAYS`); `latents` holds optional per-trial latent
    variables for plots and decoding, keyed by `latent_key` (e.g. 'eval_factors'): (trials, bins,
    dims)."""

    train_rates_heldin: np.ndarray
    train_rates_heldout: np.ndarray
    eval_rates_heldin: np.ndarray
    eval_rates_heldout: np.ndarray
    eval_rates_heldin_forward: np.ndarray
    eval_rates_heldout_forward: np.ndarray
    latents: dict[str, np.ndarray] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in RATE_ARRAYS}

    def block(self, slot: Slot) -> np.ndarray:
        block: np.ndarray = getattr(self, slot.name("rates"))
        return block

    def all_units(self, split: Split, forward: bool = False) -> np.ndarray:
        """Held-in and held-out rates side by side (held-in first), float64."""
        return join_units(self.block(Slot(split, "heldin", forward)), self.block(Slot(split, "heldout", forward)))

    def check_shapes(self, sizes: Sizes, where: str = "rates") -> None:
        """Raise RatesShapeError naming the first array whose shape does not fit `sizes`."""
        for slot in RATE_SLOTS:
            got = self.block(slot).shape
            want = sizes.shape(slot)
            if len(got) != 3 or any(w is not None and g != w for g, w in zip(got, want)):
                raise RatesShapeError(f"{where}: {slot.name('rates')} has shape {got}, expected {want}")

    @classmethod
    def from_all_units(cls: type[R], train: np.ndarray, evaluation: np.ndarray, forward: np.ndarray, n_heldin: int,
                       latents: dict[str, np.ndarray] | None = None) -> R:
        """Rates (float32) from predictions over all units, held-in units first: `train` and
        `evaluation` are (trials, bins, units), `forward` is (eval trials, forward bins, units)."""
        def part(array: np.ndarray, heldin: bool) -> np.ndarray:
            return np.ascontiguousarray(array[..., :n_heldin] if heldin else array[..., n_heldin:], dtype=np.float32)

        return cls(
            train_rates_heldin=part(train, True), train_rates_heldout=part(train, False),
            eval_rates_heldin=part(evaluation, True), eval_rates_heldout=part(evaluation, False),
            eval_rates_heldin_forward=part(forward, True), eval_rates_heldout_forward=part(forward, False),
            latents=dict(latents or {}),
        )


def average_rates(members: Sequence[Rates]) -> Rates:
    """The ensemble of several models' predictions for the same data: the mean of each rate array
    (in float64, stored float32), as the leaderboard's ensemble entries average their members'
    rates. Latents are dropped: members' latent spaces are not aligned, so their mean means nothing."""
    if not members:
        raise RatesShapeError("an ensemble needs at least one member")
    first = members[0]
    arrays: dict[str, typing.Any] = {}
    for name in RATE_ARRAYS:
        shapes = {np.shape(getattr(member, name)) for member in members}
        if len(shapes) != 1:
            raise RatesShapeError(f"ensemble members disagree on the shape of {name}: {sorted(shapes)}")
        total = np.zeros(np.shape(getattr(first, name)))
        for member in members:
            total += getattr(member, name)
        arrays[name] = (total / len(members)).astype(np.float32)
    return Rates(**arrays)


class TrueRates(Rates):
    """The ground-truth rates of a synthetic dataset, aligned with its `Tensors`: the rates of the
    model that generated the spikes, in the same six arrays as any model's `Rates`."""


class RatesShapeError(NlbSuiteError, ValueError):
    """Predicted rates whose shapes do not fit the data they are for."""


def join_units(heldin: np.ndarray, heldout: np.ndarray) -> np.ndarray:
    """Held-in and held-out arrays side by side along units, in float64 (converted while copying
    into place: no float64 copy of each half)."""
    heldin, heldout = np.asarray(heldin), np.asarray(heldout)
    if heldin.shape[:-1] != heldout.shape[:-1]:
        raise RatesShapeError(f"held-in shape {heldin.shape} and held-out shape {heldout.shape} differ "
                              "in trials or bins")
    joined = np.empty(heldin.shape[:-1] + (heldin.shape[-1] + heldout.shape[-1],))
    joined[..., : heldin.shape[-1]] = heldin
    joined[..., heldin.shape[-1]:] = heldout
    return joined
