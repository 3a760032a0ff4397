"""Random but realistic scoring cases for the scorer tests: Poisson spikes from smooth latent
rates, behaviour that is a noisy linear read-out of the latents, PSTHs from the condition means,
and the predictions of an imperfect model (true rates plus noise)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nlb_suite.core.arrays import EvalTargets, Rates, TrueRates


@dataclass(frozen=True)
class CaseShape:
    n_train: int = 40
    n_eval: int = 16
    n_bins: int = 12
    n_forward: int = 4
    n_heldin: int = 9
    n_heldout: int = 4
    n_conditions: int = 4
    n_masks: int = 0  # 0: no decode masks; 2: area2-style active / passive masks
    behavior_noise: float = 0.5
    nan_spikes: bool = False
    nan_behavior: bool = False
    zero_rates: bool = False
    psth_nan_tail: bool = False
    # Rates far below the behaviour's scale make the ridge penalty matter, so that the
    # cross-validated choice of alpha decides the velocity R2.
    prediction_scale: float = 1.0


@dataclass(frozen=True)
class Case:
    targets: EvalTargets
    rates: Rates
    true_rates: TrueRates


def make_case(rng: np.random.Generator, shape: CaseShape, dataset: str = "case", bin_ms: int = 5) -> Case:
    s = shape
    n_trials = s.n_train + s.n_eval
    n_units = s.n_heldin + s.n_heldout
    n_time = s.n_bins + s.n_forward
    conditions = rng.integers(0, s.n_conditions, n_trials)
    condition_phase = rng.uniform(0, 2 * np.pi, s.n_conditions)
    t = np.linspace(0, 2 * np.pi, n_time)
    latents = np.stack([np.sin(t[None] + condition_phase[conditions, None]),
                        np.cos(0.5 * t[None] + condition_phase[conditions, None])], axis=-1)
    latents += 0.2 * rng.standard_normal((n_trials, 1, 2))
    loading = rng.normal(0, 0.8, (2, n_units))
    true = np.exp(latents @ loading + rng.uniform(-2.5, -0.5, n_units))
    spikes = rng.poisson(true).astype(np.float64)
    behavior = latents[:, : s.n_bins] @ rng.normal(0, 10, (2, 2)) + s.behavior_noise * rng.standard_normal(
        (n_trials, s.n_bins, 2))
    predicted = s.prediction_scale * true * np.exp(0.3 * rng.standard_normal(true.shape))

    if s.nan_spikes:  # a unit unobserved over a stretch of some trials, as outside obs_intervals
        for trial in rng.choice(n_trials, max(1, n_trials // 5), replace=False):
            unit = rng.integers(n_units)
            start = rng.integers(0, n_time - 2)
            spikes[trial, start : start + rng.integers(1, n_time - start), unit] = np.nan
    if s.nan_behavior:
        for trial in rng.choice(n_trials, max(1, n_trials // 4), replace=False):
            behavior[trial, rng.integers(0, s.n_bins, 3)] = np.nan
    if s.zero_rates:
        predicted[rng.random(predicted.shape) < 0.02] = 0.0

    train, evals = slice(0, s.n_train), slice(s.n_train, n_trials)
    window, forward = slice(0, s.n_bins), slice(s.n_bins, n_time)
    heldin, heldout = slice(0, s.n_heldin), slice(s.n_heldin, n_units)
    eval_conditions = conditions[evals]
    eval_cond_idx = [np.flatnonzero(eval_conditions == c) for c in range(s.n_conditions)]
    train_cond_idx = [np.flatnonzero(conditions[train] == c) for c in range(s.n_conditions)]
    psth = np.stack([true[conditions == c][:, window].mean(axis=0) if np.any(conditions == c)
                     else np.full((s.n_bins, n_units), np.nan) for c in range(s.n_conditions)])
    if s.psth_nan_tail:
        psth[0, -2:] = np.nan
    masks = None
    if s.n_masks:
        passive = rng.random(n_trials) < 0.5
        passive[:2], passive[s.n_train : s.n_train + 2] = [True, False], [True, False]
        masks = np.stack([~passive, passive], axis=1)

    targets = EvalTargets(
        dataset=dataset, bin_ms=bin_ms,
        eval_spikes_heldout=spikes[evals, window, heldout],
        eval_spikes_heldin_forward=spikes[evals, forward, heldin],
        eval_spikes_heldout_forward=spikes[evals, forward, heldout],
        train_behavior=behavior[train], eval_behavior=behavior[evals],
        train_decode_mask=None if masks is None else masks[train],
        eval_decode_mask=None if masks is None else masks[evals],
        psth=psth, train_cond_idx=train_cond_idx, eval_cond_idx=eval_cond_idx,
    )
    rates = Rates(
        train_rates_heldin=predicted[train, window, heldin], train_rates_heldout=predicted[train, window, heldout],
        eval_rates_heldin=predicted[evals, window, heldin], eval_rates_heldout=predicted[evals, window, heldout],
        eval_rates_heldin_forward=predicted[evals, forward, heldin],
        eval_rates_heldout_forward=predicted[evals, forward, heldout],
    )
    true_rates = TrueRates(
        train_rates_heldin=true[train, window, heldin], train_rates_heldout=true[train, window, heldout],
        eval_rates_heldin=true[evals, window, heldin], eval_rates_heldout=true[evals, window, heldout],
        eval_rates_heldin_forward=true[evals, forward, heldin],
        eval_rates_heldout_forward=true[evals, forward, heldout],
    )
    return Case(targets=targets, rates=rates, true_rates=true_rates)
