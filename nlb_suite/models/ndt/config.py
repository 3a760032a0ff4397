"""The transformers' hyperparameters: `NDTConfig` (Ye & Pandarinath 2021) and `STNDTConfig`
(Le & Shlizerman 2022: NDT plus spatial attention and a contrastive term), one typed dataclass
each, checked once when the model is built.

The network (`network.py`) reads its sizes from them, the masking (`masking.py`) its ratios and
spans, the trainer (`train.py`) its optimisation settings. `device`, `threads` and `log_every`
say how a model runs, not what it computes (runtime settings, see `models.base.param`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ..base import Hyperparameters, ModelError, param


@dataclass(frozen=True)
class NDTConfig(Hyperparameters):
    """Inputs: held-in spikes per bin, `log1p` of them or as counted; `embedding = "none"` feeds
    them straight in (the hidden size is the number of held-in units, rounded up to a multiple of
    `n_heads` with zero channels) and `"linear"` maps them to `hidden_dim` first. A learnable
    positional embedding per bin; `n_layers` pre-norm encoder layers of `n_heads` heads and a
    feed-forward of `ff_dim`; each bin attends to `context_backward` bins before it and
    `context_forward` after it (-1: no limit). Dropout on the inputs `dropout_embedding`, in the
    attention `dropout_attention`, elsewhere in the layers `dropout`, and on the states before the
    readout `dropout_rates`.

    Training by masked Poisson reconstruction: a share `mask_ratio` of the observed bins is
    masked in spans of up to `max_mask_span` bins (ramped from 1 between `mask_ramp_start` and
    `mask_ramp_end`, as fractions of the training's updates); of the masked bins `mask_token_ratio`
    are zeroed, `mask_random_ratio` of the rest get random counts, the others are left as they
    are (BERT). The loss counts the masked held-in entries and every held-out and forward entry.
    AdamW (`lr`, `weight_decay`) with a linear warm-up over `warmup_fraction` of the updates and
    a cosine decay to zero at `max_epochs`; gradient clipping `max_grad_norm`; minibatches of
    `batch_size`; early stopping `patience` epochs after the best validation loss, on
    `valid_fraction` of the training trials; `seed`."""

    OWNER: ClassVar[str] = "ndt"

    input_transform: Literal["none", "log1p"] = param("none")
    embedding: Literal["none", "linear"] = param("none")
    hidden_dim: int = param(128, low=1)
    n_layers: int = param(4, low=1)
    n_heads: int = param(2, low=1)
    ff_dim: int = param(128, low=1)
    context_backward: int = param(-1, low=-1)
    context_forward: int = param(-1, low=-1)
    dropout: float = param(0.2, low=0, high=1, high_inclusive=False)
    dropout_attention: float = param(0.2, low=0, high=1, high_inclusive=False)
    dropout_embedding: float = param(0.2, low=0, high=1, high_inclusive=False)
    dropout_rates: float = param(0.2, low=0, high=1, high_inclusive=False)
    mask_ratio: float = param(0.25, low=0, high=1, low_inclusive=False, high_inclusive=False)
    max_mask_span: int = param(1, low=1)
    mask_ramp_start: float = param(0.16, low=0, high=1)
    mask_ramp_end: float = param(0.24, low=0, high=1)
    mask_token_ratio: float = param(0.8, low=0, high=1)
    mask_random_ratio: float = param(0.5, low=0, high=1)
    lr: float = param(1e-3, low=0, low_inclusive=False)
    weight_decay: float = param(5e-5, low=0)
    warmup_fraction: float = param(0.1, low=0, high=1, high_inclusive=False)
    max_grad_norm: float = param(200.0, low=0, low_inclusive=False)
    batch_size: int = param(64, low=1)
    max_epochs: int = param(2000, low=1)
    patience: int = param(200, low=1)
    valid_fraction: float = param(0.1, low=0, high=1, low_inclusive=False, high_inclusive=False)
    seed: int = param(0, low=0)
    # How it runs. `threads` sets torch's CPU threads while fitting and predicting (0 leaves
    # torch's setting): 1 by default, as LFADS, since the suite's machines share their cores.
    device: str = param("auto", runtime=True)
    threads: int = param(1, low=0, runtime=True)
    log_every: int = param(25, low=0, runtime=True)

    def check(self) -> None:
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ModelError(f"{self.OWNER}: device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.mask_ramp_end < self.mask_ramp_start:
            raise ModelError(f"{self.OWNER}: mask_ramp_end ({self.mask_ramp_end}) must not come before "
                             f"mask_ramp_start ({self.mask_ramp_start})")
        if self.embedding == "linear" and self.hidden_dim % self.n_heads:
            raise ModelError(f"{self.OWNER}: hidden_dim {self.hidden_dim} must be a multiple of n_heads "
                             f"{self.n_heads}")

    @property
    def spatial(self) -> bool:
        """Whether each layer also attends across units (STNDT)."""
        return False


@dataclass(frozen=True)
class STNDTConfig(NDTConfig):
    """NDT's fields plus spatial attention in every layer (the hidden channels, i.e. the units
    without an embedding, attend to each other; their attention weights mix the temporal
    features) and a contrastive term: NT-Xent at `temperature` between two augmented views of
    each trial (independent masks, and `contrast_drop` of the input spikes dropped), added to
    the masked reconstruction loss with weight `contrast_lambda`."""

    OWNER: ClassVar[str] = "stndt"

    contrast_lambda: float = param(0.1, low=0)
    temperature: float = param(0.1, low=0, low_inclusive=False)
    contrast_drop: float = param(0.2, low=0, high=1, high_inclusive=False)
    # With `gate_spatial`, each layer's spatial branch enters through a learnable scale that
    # starts at 0 (as ReZero, Bachlechner et al. 2021, starts its residual branches), so training
    # starts from NDT and mixes the channels only as far as that lowers the loss.
    gate_spatial: bool = param(False)

    @property
    def spatial(self) -> bool:
        return True
