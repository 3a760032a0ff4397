"""The LFADS network: encoders -> g0 and controller input -> controller + generator -> factors
-> log rates of every unit over the observed and forward bins."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import LFADSConfig
from .modules import Decoder, Encoder, init_fan_in_
from .priors import AutoregressivePrior, GaussianPrior


@dataclass
class NetworkOutput:
    log_rates: Tensor  # (batch, steps, held-in + held-out units), steps = observed + forward bins
    factors: Tensor  # (batch, steps, fac_dim)
    inputs: Tensor | None  # (batch, steps, co_dim) inferred inputs; None without controller
    ic_mean: Tensor  # (batch, ic_dim)
    ic_std: Tensor
    ic_sample: Tensor  # the initial condition the generator started from (the mean when not sampling)
    co_mean: Tensor | None  # (batch, steps, co_dim)
    co_std: Tensor | None


class LFADSNetwork(nn.Module):
    """`n_input` held-in units read by the encoders, `n_output` units reconstructed (held-in
    first, then held-out); sizes and dropout from the config. `co_dim = 0` leaves out the CI
    encoder and the controller."""

    def __init__(self, config: LFADSConfig, n_input: int, n_output: int):
        super().__init__()
        cfg = config
        controlled = cfg.co_dim > 0
        self.encoder = Encoder(n_input, cfg.ic_enc_dim, cfg.ic_dim, cfg.ci_enc_dim if controlled else 0, cfg.ci_lag,
                               cfg.dropout)
        self.decoder = Decoder(cfg.ic_dim, cfg.gen_dim, cfg.fac_dim, 2 * cfg.ci_enc_dim, cfg.con_dim, cfg.co_dim,
                               cfg.dropout, autograd_unroll=cfg.unroll == "autograd")
        self.readout = nn.Linear(cfg.fac_dim, n_output)
        init_fan_in_(self.readout)
        self.ic_prior = GaussianPrior(cfg.ic_dim)
        self.co_prior = AutoregressivePrior(cfg.co_dim) if controlled else None
        self.co_dim = cfg.co_dim

    def set_mean_rates(self, mean_rates: Tensor) -> None:
        """Start the readout at each unit's mean rate (spikes/bin), so training begins at the
        mean-rate null model instead of spending its first epochs finding the firing rates."""
        with torch.no_grad():
            self.readout.bias.copy_(torch.log(mean_rates.clamp(min=1e-3)))

    def set_dropout(self, rate: float) -> None:
        """Another dropout rate from the next step on (population-based training perturbs it)."""
        self.encoder.dropout_rate = rate
        self.decoder.dropout_rate = rate

    def forward(self, spikes: Tensor, n_steps: int, sample: bool) -> NetworkOutput:
        """spikes: (batch, bins, n_input) encoder input; n_steps >= bins: bins to reconstruct.
        `sample` draws g0 and the inferred inputs from their posteriors; else their means."""
        encoded = self.encoder(spikes)
        g0 = encoded.ic_mean
        noise = None
        if sample:
            g0 = self.ic_prior.make_posterior(encoded.ic_mean, encoded.ic_std).rsample()
            if self.co_dim > 0:
                noise = torch.randn(spikes.shape[0], n_steps, self.co_dim, device=spikes.device)
        decoded = self.decoder(g0, encoded.controller_input, n_steps, noise)
        return NetworkOutput(
            log_rates=self.readout(decoded.factors), factors=decoded.factors, inputs=decoded.inputs,
            ic_mean=encoded.ic_mean, ic_std=encoded.ic_std, ic_sample=g0, co_mean=decoded.co_mean,
            co_std=decoded.co_std,
        )

    def recurrent_l2(self, gen_scale: float, con_scale: float) -> Tensor:
        """LFADS' L2 penalty on the recurrent kernels: sum of scale * ||W_hh||^2 / 2 over the
        penalised cells, divided by their total number of weights."""
        generator = self.decoder.generator.weight_hh_l0
        assert isinstance(generator, Tensor)
        kernels: list[tuple[Tensor, float]] = [(generator, gen_scale)]
        if self.co_prior is not None:
            kernels.append((self.decoder.controller.weight_hh, con_scale))
        penalised = [(weight, scale) for weight, scale in kernels if scale > 0]
        total = self.readout.bias.new_zeros(())
        for weight, scale in penalised:
            total = total + scale * 0.5 * weight.square().sum()
        return total / max(1, sum(weight.numel() for weight, _ in penalised))
