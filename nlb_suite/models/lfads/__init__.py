"""LFADS in PyTorch (`model.py` is the estimator; `config.py` its hyperparameters)."""

from .config import LFADSConfig
from .model import LFADS

__all__ = ["LFADS", "LFADSConfig"]
