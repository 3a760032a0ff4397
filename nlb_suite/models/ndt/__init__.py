"""Transformers on binned spikes: NDT (Ye & Pandarinath 2021) and STNDT (Le & Shlizerman 2022),
one code path (`model.py` the estimators, `config.py` their hyperparameters, `network.py` the
layers, `masking.py` the masked-modelling and contrastive objectives, `train.py` the loop)."""

from .config import NDTConfig, STNDTConfig
from .model import NDT, STNDT

__all__ = ["NDT", "NDTConfig", "STNDT", "STNDTConfig"]
