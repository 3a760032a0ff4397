"""LFADS building blocks: encoders, the controller + generator unroll, the factor map.

Every recurrent network here is a *clipped* GRU in the sense of LFADS: its hidden state is
clamped to +-CELL_CLIP, the initial state included. The GRUs use torch's gate layout (the reset
gate multiplies `W_hn h + b_hn`), and a GRU update h' = z*h + (1-z)*n with 0 < z < 1 and
|n| < 1 is a convex combination of h and n, so once |h0| <= CELL_CLIP every later state stays
within the clip. Clamping the initial state is therefore the only clamp that ever acts, which
lets the encoders (and an uncontrolled generator) run as fused `torch.nn.GRU` calls, and lets the
controller + generator loop skip the per-step clamp. Only that loop steps through time in Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .side_by_side import side_by_side
from .unroll import UnrollInputs, UnrollWeights, unroll

CELL_CLIP = 5.0
# Floor on the initial-condition posterior variance, as in LFADS: keeps the IC KL finite.
IC_POST_VAR_MIN = 1e-4


def init_fan_in_(linear: nn.Linear) -> None:
    """LFADS' variance-scaling init: weights ~ N(0, 1/fan_in), zero bias."""
    nn.init.normal_(linear.weight, std=1.0 / math.sqrt(linear.in_features))
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


class NormalizedLinear(nn.Module):
    """Linear map without bias whose weight rows have unit norm (LFADS' generator -> factors):
    the factors' scale is then set by the readout alone."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / math.sqrt(in_features))

    def normalized_weight(self) -> Tensor:
        return F.normalize(self.weight, p=2.0, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight())


class BidirectionalEncoder(nn.Module):
    """Bidirectional clipped GRU with a learned initial state, run as one fused `nn.GRU` call."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True, bidirectional=True)
        self.h0 = nn.Parameter(torch.zeros(2, 1, hidden_size))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (batch, time, input) -> outputs (batch, time, 2*hidden) and the final states of
        both directions (forward at the last step, backward at the first), (batch, 2*hidden)."""
        h0 = self.h0.clamp(-CELL_CLIP, CELL_CLIP).expand(-1, x.shape[0], -1).contiguous()
        outputs, h_n = self.gru(x, h0)
        return outputs, torch.cat([h_n[0], h_n[1]], dim=1)


@dataclass
class EncoderOutput:
    ic_mean: Tensor  # (batch, ic_dim) posterior mean of the generator's initial condition
    ic_std: Tensor  # (batch, ic_dim)
    controller_input: Tensor | None  # (batch, time, 2*ci_enc_dim) lagged CI encoding; None without controller


class Encoder(nn.Module):
    """IC encoder (final states -> Gaussian posterior over g0) and, with a controller, the CI
    encoder whose outputs are lagged by `ci_lag` bins: at step t the controller sees the forward
    encoding of bins <= t-lag and the backward encoding of bins >= t+lag, never bin t itself,
    so the inferred inputs cannot simply copy the current spikes."""

    def __init__(self, n_input: int, ic_enc_dim: int, ic_dim: int, ci_enc_dim: int, ci_lag: int,
                 dropout: float):
        super().__init__()
        self.ic_encoder = BidirectionalEncoder(n_input, ic_enc_dim)
        self.ic_linear = nn.Linear(2 * ic_enc_dim, 2 * ic_dim)
        init_fan_in_(self.ic_linear)
        self.ci_encoder = BidirectionalEncoder(n_input, ci_enc_dim) if ci_enc_dim > 0 else None
        self.ci_lag = ci_lag
        self.dropout_rate = dropout

    def forward(self, spikes: Tensor) -> EncoderOutput:
        spikes = apply_dropout(spikes, self.dropout_rate, self.training)
        if self.ci_encoder is None:
            _, ic_final = self.ic_encoder(spikes)
            ci = None
        else:  # the two encoders read the same spikes: on two CPU threads they run at once
            (_, ic_final), (ci, _) = side_by_side(self.ic_encoder, self.ci_encoder, spikes)
        ic_mean, ic_logvar = self.ic_linear(apply_dropout(ic_final, self.dropout_rate, self.training)).chunk(2, dim=1)
        ic_std = torch.sqrt(torch.exp(ic_logvar) + IC_POST_VAR_MIN)
        if ci is None:
            return EncoderOutput(ic_mean, ic_std, None)
        forward_part, backward_part = ci.chunk(2, dim=2)
        lag = self.ci_lag
        n_bins = ci.shape[1]
        forward_part = F.pad(forward_part, (0, 0, lag, 0))[:, :n_bins]
        backward_part = F.pad(backward_part, (0, 0, 0, lag))[:, lag:]
        return EncoderOutput(ic_mean, ic_std, torch.cat([forward_part, backward_part], dim=2))


@dataclass
class DecoderOutput:
    factors: Tensor  # (batch, steps, fac_dim)
    co_mean: Tensor | None  # (batch, steps, co_dim) controller-output posterior; None without controller
    co_std: Tensor | None
    inputs: Tensor | None  # (batch, steps, co_dim) inferred inputs fed to the generator (samples or means)


class Decoder(nn.Module):
    """Generator GRU started from g0, optionally driven by a controller GRU that reads the CI
    encoding and the previous factors and emits the inferred inputs u_t ~ N(mean_t, std_t).

    Over the forward bins the CI encoding is zero (there is no data), so the controller and
    generator run on, as in lfads-torch."""

    def __init__(self, ic_dim: int, gen_dim: int, fac_dim: int, ci_dim: int, con_dim: int, co_dim: int,
                 dropout: float, autograd_unroll: bool = False):
        super().__init__()
        self.autograd_unroll = autograd_unroll
        self.ic_to_g0 = nn.Linear(ic_dim, gen_dim)
        init_fan_in_(self.ic_to_g0)
        # torch.nn.GRU needs at least one input feature; an uncontrolled generator gets a constant
        # zero input, which leaves only its input bias.
        self.generator = nn.GRU(max(co_dim, 1), gen_dim, batch_first=True)
        self.factor_map = NormalizedLinear(gen_dim, fac_dim)
        self.dropout_rate = dropout
        self.controlled = co_dim > 0
        if self.controlled:
            # A container of GRU weights: `unroll` steps it by hand.
            self.controller = nn.GRUCell(ci_dim + fac_dim, con_dim)
            self.controller_h0 = nn.Parameter(torch.zeros(1, con_dim))
            self.co_linear = nn.Linear(con_dim, 2 * co_dim)
            init_fan_in_(self.co_linear)
            self.ci_dim = ci_dim
            self.co_dim = co_dim

    def forward(self, g0: Tensor, controller_input: Tensor | None, n_steps: int,
                input_noise: Tensor | None) -> DecoderOutput:
        """g0: (batch, ic_dim) initial-condition sample; controller_input: (batch, bins, ci_dim)
        with bins <= n_steps (zero-padded to n_steps); input_noise: (batch, n_steps, co_dim)
        standard normal draws for the inferred inputs, or None to use their posterior means."""
        gen_h0 = self.ic_to_g0(g0).clamp(-CELL_CLIP, CELL_CLIP)
        if not self.controlled:
            zeros = gen_h0.new_zeros(g0.shape[0], n_steps, 1)
            states, _ = self.generator(zeros, gen_h0.unsqueeze(0))
            factors = self.factor_map(apply_dropout(states, self.dropout_rate, self.training))
            return DecoderOutput(factors, None, None, None)
        assert controller_input is not None
        return self._unroll(gen_h0, controller_input, n_steps, input_noise)

    def _unroll(self, gen_h0: Tensor, controller_input: Tensor, n_steps: int,
                input_noise: Tensor | None) -> DecoderOutput:
        batch, con, gen = gen_h0.shape[0], self.controller, self.generator
        w_con_ci, w_con_fac = con.weight_ih.split([self.ci_dim, self.factor_map.weight.shape[0]], dim=1)
        # The CI part of the controller's input gates, for all observed bins in one product. The
        # CI encoding is zero over the forward bins, which leaves the bias there: the product is
        # not run over those zeros (22% of its rows at both benchmark configurations).
        ci = apply_dropout(controller_input, self.dropout_rate, self.training).transpose(0, 1)
        n_bins = ci.shape[0]
        observed_gates = torch.addmm(con.bias_ih, ci.reshape(-1, self.ci_dim), w_con_ci.t())
        con_input_gates = torch.cat([observed_gates.view(n_bins, batch, -1),
                                     con.bias_ih.expand(n_steps - n_bins, batch, -1)])
        if input_noise is None:
            noise = gen_h0.new_zeros(n_steps, batch, self.co_dim)
        else:
            noise = input_noise.transpose(0, 1).contiguous()
        gen_keep = factor_keep = None
        if self.training and self.dropout_rate > 0:
            gen_keep = keep_mask((n_steps + 1, batch, gen.hidden_size), self.dropout_rate, gen_h0)
            factor_keep = keep_mask((n_steps, batch, w_con_fac.shape[1]), self.dropout_rate, gen_h0)
        weights = UnrollWeights(
            con_fac=w_con_fac, con_hh=con.weight_hh, con_hh_bias=con.bias_hh, co=self.co_linear.weight,
            co_bias=self.co_linear.bias, gen_ih=_tensor(gen.weight_ih_l0), gen_ih_bias=_tensor(gen.bias_ih_l0),
            gen_hh=_tensor(gen.weight_hh_l0), gen_hh_bias=_tensor(gen.bias_hh_l0),
            fac=self.factor_map.normalized_weight(),
        )
        con_h0 = self.controller_h0.clamp(-CELL_CLIP, CELL_CLIP).expand(batch, -1)
        inputs = UnrollInputs(con_input_gates, con_h0, gen_h0, noise, gen_keep, factor_keep)
        out = unroll(inputs, weights, autograd=self.autograd_unroll)
        co_mean, co_logvar = out.co_params.transpose(0, 1).split(self.co_dim, dim=2)
        return DecoderOutput(factors=out.factors.transpose(0, 1), co_mean=co_mean,
                             co_std=torch.exp(0.5 * co_logvar), inputs=out.inputs.transpose(0, 1))


def keep_mask(shape: tuple[int, ...], rate: float, like: Tensor) -> Tensor:
    """Dropout mask: 0 with probability `rate`, else 1 / (1 - rate). Thresholding uniform draws
    is about three times faster on a CPU than the Bernoulli sampler behind nn.Dropout."""
    keep = torch.rand(shape, device=like.device) >= rate
    return keep.to(like.dtype).mul_(1.0 / (1.0 - rate))


def apply_dropout(x: Tensor, rate: float, training: bool) -> Tensor:
    if not training or rate == 0.0:
        return x
    return x * keep_mask(x.shape, rate, x)


def _tensor(value: Tensor | nn.Module) -> Tensor:
    """A module's parameter as a Tensor (nn.Module attributes are typed Tensor | Module)."""
    assert isinstance(value, Tensor)
    return value
