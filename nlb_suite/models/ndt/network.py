"""The NDT / STNDT network: spikes per bin -> pre-norm transformer layers -> Poisson log-rates.

Attention (`attention`) is limited by a boolean band mask (each bin sees `context_backward` bins
before it and `context_forward` after it); with no limit the mask is left out. Measured against a plain `nn.TransformerEncoder` of the same sizes in
`benchmarks/bench_ndt.py` (see its docstring for the numbers and what else was tried).

STNDT layers add spatial attention: the hidden channels (the units, without an embedding) are
the tokens and their time courses the features; the channels x channels attention weights mix
the temporal block's output. It sees the whole trial, so the context window limits only the
temporal attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import NDTConfig, STNDTConfig


def band_mask(n_steps: int, backward: int, forward: int) -> Tensor | None:
    """(steps, steps) bool, True where bin i may attend to bin j: i - backward <= j <= i + forward
    (-1: no limit that way). None when nothing is limited."""
    if backward < 0 and forward < 0:
        return None
    i = torch.arange(n_steps)[:, None]
    j = torch.arange(n_steps)[None, :]
    allowed = torch.ones(n_steps, n_steps, dtype=torch.bool)
    if backward >= 0:
        allowed &= j >= i - backward
    if forward >= 0:
        allowed &= j <= i + forward
    return allowed


def attention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, dropout: float) -> Tensor:
    """Scaled dot-product attention, (batch, heads, steps, dims) each; `mask` bool, True where
    allowed. Without dropout, `scaled_dot_product_attention` (its fused CPU kernel: about 2x faster
    than the explicit product on the MC_Maze shape); with dropout on the attention weights, the
    explicit softmax-dropout-product, because SDPA's dropout path on the CPU measured 1.3-4x
    slower than it (benchmarks/bench_ndt.py's docstring has the figures)."""
    if dropout == 0.0:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    weights = query @ key.transpose(-2, -1) * query.shape[-1] ** -0.5
    if mask is not None:
        weights = weights.masked_fill(~mask, float("-inf"))
    return F.dropout(torch.softmax(weights, dim=-1), dropout) @ value


def hidden_size(config: NDTConfig, n_inputs: int) -> int:
    """The model's width: `hidden_dim` with a linear embedding; else the number of input units
    rounded up to a multiple of the heads (the extra channels enter as zeros)."""
    if config.embedding == "linear":
        return config.hidden_dim
    return math.ceil(n_inputs / config.n_heads) * config.n_heads


class EncoderLayer(nn.Module):
    """Pre-norm layer: x + attention(norm(x)) [+ spatial mixing], then x + feed-forward(norm(x))."""

    def __init__(self, config: NDTConfig, width: int, n_steps: int) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.attention_dropout = config.dropout_attention
        self.norm_attention = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm_ff = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, config.ff_dim), nn.ReLU(), nn.Dropout(config.dropout),
                                nn.Linear(config.ff_dim, width))
        self.dropout = nn.Dropout(config.dropout)
        self.spatial = config.spatial
        if self.spatial:
            # Channels are tokens, their n_steps values the features; one head, as STNDT.
            self.norm_spatial = nn.LayerNorm(width)
            self.unit_position = nn.Parameter(torch.zeros(width, n_steps))
            self.spatial_qk = nn.Linear(n_steps, 2 * n_steps)
            self.spatial_dropout = nn.Dropout(config.dropout_attention)
            gated = isinstance(config, STNDTConfig) and config.gate_spatial
            self.spatial_scale = nn.Parameter(torch.zeros(())) if gated else None

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        batch, steps, width = x.shape
        heads = self.n_heads
        qkv = self.qkv(self.norm_attention(x)).view(batch, steps, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        attended = attention(qkv[0], qkv[1], qkv[2], mask, self.attention_dropout if self.training else 0.0)
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, steps, width)))
        if self.spatial:
            states = self.norm_spatial(x)
            tokens = states.transpose(1, 2) + self.unit_position  # (batch, channels, steps)
            query, key = self.spatial_qk(tokens).chunk(2, dim=-1)
            weights = torch.softmax(query @ key.transpose(1, 2) / math.sqrt(steps), dim=-1)
            mixed = self.dropout(states @ self.spatial_dropout(weights).transpose(1, 2))
            x = x + (mixed if self.spatial_scale is None else self.spatial_scale * mixed)
        return x + self.dropout(self.ff(self.norm_ff(x)))


class NDTNetwork(nn.Module):
    """(trials, steps, held-in units) counts, 0 where masked or unobserved -> (log-rates of all
    units, last-layer states), both (trials, steps, ...)."""

    def __init__(self, config: NDTConfig, n_inputs: int, n_outputs: int, n_steps: int) -> None:
        super().__init__()
        self.n_inputs = n_inputs
        self.width = hidden_size(config, n_inputs)
        self.log1p = config.input_transform == "log1p"
        self.embed = nn.Linear(n_inputs, self.width) if config.embedding == "linear" else None
        # NDT scales its inputs by sqrt(width) before adding the positions.
        self.scale = math.sqrt(self.width)
        self.position = nn.Parameter(torch.randn(n_steps, self.width) * 0.1)
        self.embedding_dropout = nn.Dropout(config.dropout_embedding)
        self.layers = nn.ModuleList(EncoderLayer(config, self.width, n_steps) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(self.width)
        self.rates_dropout = nn.Dropout(config.dropout_rates)
        self.readout = nn.Linear(self.width, n_outputs)
        mask = band_mask(n_steps, config.context_backward, config.context_forward)
        self.mask: Tensor | None
        self.register_buffer("mask", mask, persistent=False)

    def set_mean_rates(self, mean_rates: Tensor) -> None:
        """Start the readout at each unit's mean rate (log), so training starts at the null model."""
        with torch.no_grad():
            self.readout.bias.copy_(torch.log(mean_rates.clamp(min=1e-4)))

    def forward(self, spikes: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.log1p(spikes) if self.log1p else spikes
        if self.embed is not None:
            x = self.embed(x)
        elif self.width > self.n_inputs:
            x = F.pad(x, (0, self.width - self.n_inputs))
        x = self.embedding_dropout(x * self.scale + self.position)
        for layer in self.layers:
            x = layer(x, self.mask)
        states = self.norm(x)
        return self.readout(self.rates_dropout(states)), states
