"""LFADS priors, as lfads-torch has them: each turns posterior parameters into a distribution
(`make_posterior`) and returns the KL divergence of the posterior from itself with one signature,
`kl(post_mean, post_std, sample)`, summed over latent dimensions and time and averaged over
trials. The Gaussian IC prior's KL is analytic (the sample is not needed); the AR(1) prior over
the inferred inputs estimates it at the sample drawn."""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.distributions import Normal


class Prior(Protocol):
    def make_posterior(self, mean: Tensor, std: Tensor) -> Normal: ...

    def kl(self, post_mean: Tensor, post_std: Tensor, sample: Tensor) -> Tensor: ...


class GaussianPrior(nn.Module):
    """Prior over the generator's initial condition: diagonal Gaussian with a learnable mean and
    a fixed variance. The KL is analytic."""

    def __init__(self, dim: int, mean: float = 0.0, variance: float = 0.1):
        super().__init__()
        self.mean = nn.Parameter(torch.full((dim,), float(mean)))
        self.logvar: Tensor
        self.register_buffer("logvar", torch.full((dim,), math.log(variance)))

    def make_posterior(self, mean: Tensor, std: Tensor) -> Normal:
        return Normal(mean, std)

    def kl(self, post_mean: Tensor, post_std: Tensor, sample: Tensor) -> Tensor:
        """post_mean, post_std: (batch, dim) -> mean over the batch of KL(posterior || prior),
        analytic (`sample`, drawn from the posterior, is not needed)."""
        post_var = post_std.square()
        prior_var = torch.exp(self.logvar)
        per_dim = 0.5 * (self.logvar - torch.log(post_var)
                         + (post_var + (post_mean - self.mean).square()) / prior_var - 1.0)
        return per_dim.sum(dim=1).mean()


class AutoregressivePrior(nn.Module):
    """Prior over the inferred inputs: per dimension a stationary AR(1) process
    u_t = a u_{t-1} + e_t, e_t ~ N(0, noise_var), a = exp(-1/tau), with learnable time constant
    tau (in bins) and noise variance; u_0 ~ N(0, noise_var / (1 - a^2)), the stationary variance.

    The posterior's means depend on earlier samples through the generator, so its density is only
    available at the samples drawn; the KL is the Monte Carlo estimate log q(u) - log p(u)."""

    def __init__(self, dim: int, tau: float = 10.0, noise_var: float = 0.1):
        super().__init__()
        self.log_tau = nn.Parameter(torch.full((dim,), math.log(tau)))
        self.log_noise_var = nn.Parameter(torch.full((dim,), math.log(noise_var)))

    def make_posterior(self, mean: Tensor, std: Tensor) -> Normal:
        return Normal(mean, std)

    def log_prob(self, u: Tensor) -> Tensor:
        """u: (batch, time, dim) -> log density of each trial's sequence, (batch,)."""
        alpha = torch.exp(-torch.exp(-self.log_tau))
        noise_std = torch.exp(0.5 * self.log_noise_var)
        stationary_std = noise_std / torch.sqrt(1.0 - alpha.square())
        first = Normal(torch.zeros_like(stationary_std), stationary_std).log_prob(u[:, 0])
        rest = Normal(alpha * u[:, :-1], noise_std).log_prob(u[:, 1:])
        return first.sum(dim=1) + rest.sum(dim=(1, 2))

    def kl(self, post_mean: Tensor, post_std: Tensor, sample: Tensor) -> Tensor:
        """`sample` drawn from the posterior N(post_mean, post_std), all (batch, time, dim) ->
        mean over the batch of the one-sample estimate of KL(posterior || prior)."""
        log_q = self.make_posterior(post_mean, post_std).log_prob(sample).sum(dim=(1, 2))
        return (log_q - self.log_prob(sample)).mean()
