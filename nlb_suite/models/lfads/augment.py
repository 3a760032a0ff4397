"""Coordinated dropout and sample validation: the two ways LFADS keeps its encoder from passing
the spikes it must reconstruct straight through to the output (an identity solution)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class CoordinatedDropout:
    inputs: Tensor  # (batch, bins, held-in) encoder input with the dropped entries zeroed, rescaled
    gradient_mask: Tensor  # (batch, bins, held-in) bool: held-in entries whose reconstruction trains the model


def coordinated_dropout(spikes: Tensor, rate: float) -> CoordinatedDropout:
    """Drop each input entry with probability `rate` (new draw per call). The reconstruction of
    held-in spikes then trains the model only where they were dropped: the network cannot learn
    to copy an input entry into the same output entry. With rate 0 every entry trains."""
    if rate == 0.0:
        return CoordinatedDropout(spikes, torch.ones_like(spikes, dtype=torch.bool))
    dropped = torch.rand(spikes.shape, device=spikes.device) < rate
    return CoordinatedDropout(spikes.masked_fill(dropped, 0.0) / (1.0 - rate), dropped)


def block_gradients(nll: Tensor, gradient_mask: Tensor) -> Tensor:
    """Keep the values of `nll` (batch, steps, units) but let gradients flow only where
    `gradient_mask` is True. The mask covers the held-in units over the observed bins; held-out
    units and forward bins, never seen by the encoder, always train."""
    steps, units = nll.shape[1], nll.shape[2]
    mask = F.pad(gradient_mask, (0, units - gradient_mask.shape[2], 0, steps - gradient_mask.shape[1]),
                 value=True)
    return torch.where(mask, nll, nll.detach())


def sample_validation_mask(shape: tuple[int, ...], rate: float, generator: torch.Generator) -> Tensor:
    """A fixed bool mask over training entries, True for the fraction `rate` held back: never
    shown to the encoder, never trained on, and scored on validation trials for model selection."""
    return torch.rand(shape, generator=generator) < rate


def hold_back(spikes: Tensor, held_back: Tensor, rate: float) -> Tensor:
    """Encoder input with the sample-validation entries (a fraction `rate` > 0) zeroed, rescaled
    to keep the mean count."""
    return spikes.masked_fill(held_back, 0.0) / (1.0 - rate)
