"""Masked modelling as NDT trains: which bins are masked, what they are replaced by, which
entries the loss counts, and STNDT's contrastive term.

Masks are whole bins (every held-in unit at once, NDT's "timestep" mode), in spans: span starts
are drawn with probability `ratio / span` per bin and each start masks `span` bins from there,
so about `ratio` of the bins are masked whatever the span.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..lfads.losses import poisson_nll


def mask_span(max_span: int, progress: float, ramp_start: float, ramp_end: float) -> int:
    """The longest span at `progress` (0..1 of the training's updates): 1 before `ramp_start`,
    rising linearly to `max_span` at `ramp_end`."""
    if max_span <= 1 or progress < ramp_start:
        return 1
    if progress >= ramp_end or ramp_end <= ramp_start:
        return max_span
    return 1 + round((max_span - 1) * (progress - ramp_start) / (ramp_end - ramp_start))


def masked_bins(n_trials: int, n_bins: int, ratio: float, span: int,
                generator: torch.Generator | None = None, device: torch.device | None = None) -> Tensor:
    """(trials, bins) bool: masked spans of `span` bins covering about `ratio` of the bins."""
    starts = torch.rand(n_trials, n_bins, generator=generator) < ratio / span
    if span > 1:
        # A bin is masked when a start lies within the `span` bins up to it.
        starts = F.max_pool1d(F.pad(starts.float()[:, None], (span - 1, 0)), span, stride=1)[:, 0] > 0
    return starts.to(device) if device is not None else starts


def replace_masked(inputs: Tensor, masked: Tensor, token_ratio: float, random_ratio: float,
                   generator: torch.Generator | None = None) -> Tensor:
    """`inputs` (trials, bins, units) with masked bins replaced as BERT does: `token_ratio` of
    them zeroed, `random_ratio` of the rest given random counts (uniform up to the batch's largest
    count), the others left as they are."""
    draw = torch.rand(masked.shape, generator=generator).to(inputs.device)
    zeroed = masked & (draw < token_ratio)
    randomised = masked & ~zeroed & (torch.rand(masked.shape, generator=generator).to(inputs.device) < random_ratio)
    out = inputs.masked_fill(zeroed[..., None], 0.0)
    if bool(randomised.any()):
        top = int(inputs.max().item()) + 1
        noise = torch.randint(0, top, inputs.shape, generator=generator).to(inputs)
        out = torch.where(randomised[..., None], noise, out)
    return out


def counted_entries(observed: Tensor, masked: Tensor, n_bins: int, n_heldin: int) -> Tensor:
    """Which entries of the target (trials, bins + forward, held-in + held-out) the loss counts:
    held-in units in masked bins, every held-out unit and every forward bin, where observed."""
    counted = torch.ones_like(observed)
    counted[:, :n_bins, :n_heldin] = masked[..., None]
    return counted & observed


def masked_loss(log_rates: Tensor, target: Tensor, counted: Tensor) -> Tensor:
    """Mean Poisson NLL over the counted entries."""
    return (poisson_nll(log_rates, target) * counted).sum() / counted.sum().clamp(min=1)


def nt_xent(first: Tensor, second: Tensor, temperature: float) -> Tensor:
    """NT-Xent (Chen et al. 2020, SimCLR) between two views, (trials, dims) each: every row's
    positive is its other view, the other 2 * trials - 2 rows are negatives; cosine similarity
    over `temperature`, mean over the 2 * trials rows."""
    n = first.shape[0]
    z = F.normalize(torch.cat([first, second]), dim=1)
    similarity = z @ z.T / temperature
    similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(similarity, positives)
