"""Poisson reconstruction cost and the bits-per-spike monitor used on validation trials."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def poisson_nll(log_rates: Tensor, counts: Tensor) -> Tensor:
    """Elementwise Poisson negative log-likelihood of `counts` given log rates (spikes/bin),
    exp(log_rates) - counts * log_rates: the log(n!) term does not depend on the model and is
    left out, as in lfads-torch. One fused op, which keeps no intermediate for the backward pass."""
    return F.poisson_nll_loss(log_rates, counts, log_input=True, full=False, reduction="none")


def bits_per_spike(log_rates: Tensor, counts: Tensor, observed: Tensor) -> float:
    """NLB's co-bps of predicted rates for (trials, bins, units) `counts` over the `observed`
    entries: log-likelihood gain over each unit's mean rate, in bits per spike."""
    observed = observed.to(log_rates.dtype)
    n_observed = observed.sum(dim=(0, 1)).clamp(min=1.0)
    null_rates = (counts * observed).sum(dim=(0, 1)) / n_observed
    null_log_rates = torch.log(null_rates.clamp(min=1e-9)).expand_as(counts)
    gain = ((poisson_nll(null_log_rates, counts) - poisson_nll(log_rates, counts)) * observed).sum()
    n_spikes = (counts * observed).sum()
    return float(gain / n_spikes / math.log(2.0)) if n_spikes > 0 else float("nan")
