"""LFADS priors: the analytic IC KL agrees with Monte Carlo, the AR(1) density is the stationary
Gaussian process it claims to be, and its one-sample KL estimate is unbiased."""

from __future__ import annotations

import math

import torch
from lfads_testing import one_torch_thread  # noqa: F401  (autouse fixture)
from torch.distributions import MultivariateNormal, Normal

from nlb_suite.models.lfads.priors import AutoregressivePrior, GaussianPrior


def test_gaussian_prior_kl_matches_monte_carlo():
    torch.manual_seed(0)
    prior = GaussianPrior(dim=5, mean=0.0, variance=0.1)
    with torch.no_grad():
        prior.mean.copy_(torch.randn(5) * 0.3)  # the learnable mean must enter the KL
    post_mean, post_std = torch.randn(3, 5) * 0.5, torch.rand(3, 5) * 0.4 + 0.1
    samples = prior.make_posterior(post_mean, post_std).sample((200_000,))
    log_q = Normal(post_mean, post_std).log_prob(samples).sum(-1)
    log_p = Normal(prior.mean, torch.exp(0.5 * prior.logvar)).log_prob(samples).sum(-1)
    monte_carlo = (log_q - log_p).mean(0).mean()
    analytic = prior.kl(post_mean, post_std, post_mean)
    assert abs(analytic.item() - monte_carlo.item()) < 0.01 * analytic.item()
    mean, std = prior.mean.expand(3, 5), torch.exp(0.5 * prior.logvar).expand(3, 5)
    assert prior.kl(mean, std, mean).abs() < 1e-6


def _ar1_covariance(tau: float, noise_var: float, steps: int) -> torch.Tensor:
    alpha = math.exp(-1.0 / tau)
    lags = (torch.arange(steps)[:, None] - torch.arange(steps)[None, :]).abs()
    return noise_var / (1 - alpha**2) * alpha ** lags.double()


def test_autoregressive_log_prob_is_the_stationary_ar1_gaussian():
    torch.manual_seed(1)
    tau, noise_var, steps = 4.0, 0.3, 9
    prior = AutoregressivePrior(dim=2, tau=tau, noise_var=noise_var).double()
    u = torch.randn(6, steps, 2, dtype=torch.float64)
    process = MultivariateNormal(torch.zeros(steps, dtype=torch.float64), _ar1_covariance(tau, noise_var, steps))
    expected = process.log_prob(u[..., 0]) + process.log_prob(u[..., 1])
    torch.testing.assert_close(prior.log_prob(u), expected)


def test_autoregressive_kl_estimate_averages_to_the_exact_kl():
    # With a posterior whose means do not depend on earlier samples, KL(q || p) between the
    # diagonal Gaussian q and the AR(1) Gaussian p is available in closed form.
    torch.manual_seed(2)
    tau, noise_var, steps, n_samples = 5.0, 0.1, 8, 100_000
    prior = AutoregressivePrior(dim=1, tau=tau, noise_var=noise_var).double()
    mean = 0.2 * torch.randn(1, steps, 1, dtype=torch.float64)
    std = 0.1 + 0.3 * torch.rand(1, steps, 1, dtype=torch.float64)
    u = mean + std * torch.randn(n_samples, steps, 1, dtype=torch.float64)
    estimate = prior.kl(mean.expand_as(u), std.expand_as(u), u)
    posterior = MultivariateNormal(mean[0, :, 0], torch.diag(std[0, :, 0] ** 2))
    process = MultivariateNormal(torch.zeros(steps, dtype=torch.float64), _ar1_covariance(tau, noise_var, steps))
    exact = torch.distributions.kl_divergence(posterior, process)
    assert abs(estimate.item() - exact.item()) < 0.02 * exact.item()


def test_prior_parameters_learn():
    prior = AutoregressivePrior(dim=3)
    u = torch.randn(4, 10, 3)
    prior.kl(torch.zeros_like(u), torch.ones_like(u), u).backward()
    assert prior.log_tau.grad.abs().sum() > 0 and prior.log_noise_var.grad.abs().sum() > 0
