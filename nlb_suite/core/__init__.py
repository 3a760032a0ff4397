"""The core everything stands on: errors, the dataset specification, the array types that pass
between layers, and atomic writes. It imports nothing else of the suite."""

from .arrays import (
    RATE_ARRAYS,
    EvalTargets,
    LatentKind,
    Phase,
    Rates,
    Sizes,
    Slot,
    Tensors,
    TrueRates,
    latent_key,
)
from .errors import NlbSuiteError
from .spec import Asset, DatasetSpec, ExpectedCounts, SpecError

__all__ = ["RATE_ARRAYS", "Asset", "DatasetSpec", "EvalTargets", "ExpectedCounts", "LatentKind", "NlbSuiteError",
           "Phase", "Rates", "Sizes", "Slot", "SpecError", "Tensors", "TrueRates", "latent_key"]
