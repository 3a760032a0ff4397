"""Dataset specifications: the NLB'21 datasets, synthetic look-alikes, and user datasets."""

from ..core.spec import Asset, DatasetSpec, ExpectedCounts, SpecError
from .registry import BUILTIN, DEFAULT_DATASET, get_spec, recorded_spec
from .toml_spec import load_spec_toml

__all__ = ["BUILTIN", "DEFAULT_DATASET", "Asset", "DatasetSpec", "ExpectedCounts", "SpecError",
           "get_spec", "load_spec_toml", "recorded_spec"]
