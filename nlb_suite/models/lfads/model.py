"""`LFADS`: the estimator behind `nlb-suite eval --model lfads`.

Sizes of the data (units, bins, forward bins) come from the `Tensors` given to `fit`; everything
else is a field of `LFADSConfig`, checked when the model is built so that a bad value fails
before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...core.arrays import LatentKind, Rates, Tensors, latent_key
from ..base import ModelError, not_fitted
from ..torch_support import TorchEstimator, training_targets
from .augment import sample_validation_mask
from .config import LFADSConfig
from .network import LFADSNetwork
from .train import Batch, EpochRecord, Trainer

# Trials x posterior samples per forward pass at prediction: bounds memory whatever n_samples is.
PREDICT_ROWS = 1024



@dataclass
class TrainingSetup:
    """What `LFADS.fit` trains: all training trials, the split, the trainer."""

    trials: Batch
    train_index: torch.Tensor
    valid_index: torch.Tensor
    trainer: Trainer


@dataclass
class PosteriorAverage:
    """Averages over posterior samples, (trials, bins + forward, ...)."""

    rates: np.ndarray  # spikes/bin, held-in then held-out units
    factors: np.ndarray
    inputs: np.ndarray | None


class LFADS(TorchEstimator[LFADSConfig]):
    """Latent Factor Analysis via Dynamical Systems (Pandarinath et al. 2018), as lfads-torch
    runs it: IC encoder, controller with an AR(1) prior on its inferred inputs, generator,
    factors, Poisson readout; coordinated dropout, sample validation, ramped KL and L2 penalties,
    AdamW with learning-rate decay on plateau, early stopping on the smoothed validation loss after
    the ramps. `fit` holds out `valid_fraction` of the training trials for validation; `predict`
    averages `n_samples` posterior samples. See `LFADSConfig` for every hyperparameter.

    With `use_checkpoints(folder, resume)` (the pipeline does it for every run), `fit` writes
    `last.pt` every epoch and `best.pt` at each new best, and with `resume` continues from
    `last.pt`; a checkpoint made with other hyperparameters or data is refused."""

    Config = LFADSConfig

    # --- fit -----------------------------------------------------------------------------------

    def fit(self, tensors: Tensors) -> "LFADS":
        """Train on the training trials of `tensors` (held-in, held-out and forward spikes)."""
        device = self._device()
        with self._session(device, self.config.seed):
            setup = self.training_setup(tensors, device)
            self.network_ = setup.trainer.network  # `predict` works from an epoch callback
            setup.trainer.run(setup.trials, setup.train_index, setup.valid_index, after_epoch=self.epoch_callback)
        self.adopt(setup.trainer)
        return self

    def training_setup(self, tensors: Tensors, device: torch.device | None = None) -> "TrainingSetup":
        """The training data, split and `Trainer` that `fit` runs (a population-based-training
        member runs the same, a few epochs at a time): the validation trials are drawn from the
        training trials only, by `seed`. With `scale_to_data` the sizes and budget come from
        the data here (`LFADSConfig.scaled_to`); `fitted_config_` holds what was trained."""
        n_trials, n_bins, n_heldin = tensors.train_spikes_heldin.shape
        cfg = self.fitted_config_ = self.config.scaled_to(n_trials, n_bins + tensors.n_forward, n_heldin)
        if n_trials < 2:
            raise ModelError(f"lfads: needs at least 2 training trials (one for validation), got {n_trials}")
        if n_bins <= cfg.ci_lag and cfg.co_dim > 0:
            raise ModelError(f"lfads: ci_lag {cfg.ci_lag} must be shorter than the trials ({n_bins} bins)")
        device = self._device() if device is None else device
        self.n_bins_, self.n_forward_ = n_bins, tensors.n_forward
        self.n_heldin_, self.n_heldout_ = n_heldin, tensors.n_heldout
        trials = self._training_batch(tensors, device)
        valid_index, train_index = self._split(n_trials, device)
        network = LFADSNetwork(cfg, n_heldin, n_heldin + tensors.n_heldout).to(device)
        network.set_mean_rates(_mean_rates(trials, valid_index))
        # What a checkpoint must agree on to be resumed: every hyperparameter and the data's sizes.
        identity = {"hyperparameters": cfg.hyperparameters(),
                    "data": {"n_train": n_trials, "n_bins": n_bins, "n_forward": tensors.n_forward,
                             "n_heldin": n_heldin, "n_heldout": tensors.n_heldout}}
        trainer = Trainer(network, cfg, n_heldin, n_bins, identity, self.checkpoint_dir, self.resume)
        return TrainingSetup(trials, train_index, valid_index, trainer)

    def fitted_params(self) -> dict[str, Any]:
        """The hyperparameters as trained: the sizes, budget and rate `scale_to_data` chose."""
        if not hasattr(self, "fitted_config_"):
            raise not_fitted(self.config.OWNER)
        return self.fitted_config_.hyperparameters()

    def adopt(self, trainer: Trainer) -> None:
        """Take the trained network and curves of `trainer` (set up by `training_setup`) as the
        fitted model."""
        self.network_ = trainer.network
        self.history_: list[EpochRecord] = trainer.state.history
        self.best_epoch_: int = trainer.state.best_epoch

    def _training_batch(self, tensors: Tensors, device: torch.device) -> Batch:
        """All training trials as one `Batch`, assembled in place (mc_maze is 60 MB a copy)."""
        bins, heldin = self.n_bins_, self.n_heldin_
        target, observed = training_targets(tensors)
        trained = observed
        if self.config.sv_rate > 0:
            generator = torch.Generator().manual_seed(self.config.seed)
            trained = observed.clone()
            inputs = (slice(None), slice(0, bins), slice(0, heldin))
            trained[inputs] &= ~sample_validation_mask((tensors.n_train, bins, heldin), self.config.sv_rate,
                                                       generator)
        observed = observed.to(device)
        return Batch(target.to(device), observed, observed if trained is observed else trained.to(device))

    # --- predict -------------------------------------------------------------------------------

    def predict(self, tensors: Tensors) -> Rates:
        """Rates of training and evaluation trials (eval: from their held-in spikes alone),
        averaged over `n_samples` posterior samples; factors and inferred inputs in `latents`."""
        if not hasattr(self, "network_"):
            raise not_fitted("lfads")
        expected = (self.n_bins_, self.n_forward_, self.n_heldin_, self.n_heldout_)
        got = (tensors.n_bins, tensors.n_forward, tensors.n_heldin, tensors.n_heldout)
        if got != expected:
            raise ModelError(f"lfads: fitted on (bins, forward bins, held-in, held-out) = {expected}, "
                             f"asked to predict {got}")
        train = self._posterior_average(tensors.train_spikes_heldin)
        evaluation = self._posterior_average(tensors.eval_spikes_heldin)
        bins, heldin = self.n_bins_, self.n_heldin_
        latents = {latent_key("train", LatentKind.FACTORS): train.factors[:, :bins],
                   latent_key("eval", LatentKind.FACTORS): evaluation.factors[:, :bins]}
        if train.inputs is not None and evaluation.inputs is not None:
            latents |= {latent_key("train", LatentKind.INPUTS): train.inputs[:, :bins],
                        latent_key("eval", LatentKind.INPUTS): evaluation.inputs[:, :bins]}
        return Rates(
            train_rates_heldin=train.rates[:, :bins, :heldin],
            train_rates_heldout=train.rates[:, :bins, heldin:],
            eval_rates_heldin=evaluation.rates[:, :bins, :heldin],
            eval_rates_heldout=evaluation.rates[:, :bins, heldin:],
            eval_rates_heldin_forward=evaluation.rates[:, bins:, :heldin],
            eval_rates_heldout_forward=evaluation.rates[:, bins:, heldin:],
            latents=latents,
        )

    @torch.no_grad()
    def _posterior_average(self, heldin: np.ndarray) -> PosteriorAverage:
        """Average rates, factors and inputs over posterior samples, a chunk of trials at a time;
        each chunk's sums land in host arrays, so memory does not grow with n_samples."""
        network, samples = self.network_, self.config.n_samples
        device = network.readout.weight.device
        network.eval()
        n_trials, steps = heldin.shape[0], self.n_bins_ + self.n_forward_
        rates = np.empty((n_trials, steps, self.n_heldin_ + self.n_heldout_), np.float32)
        factors = np.empty((n_trials, steps, self.fitted_config_.fac_dim), np.float32)
        inputs = np.empty((n_trials, steps, self.config.co_dim), np.float32) if self.config.co_dim > 0 else None
        spikes = torch.from_numpy(np.nan_to_num(heldin.astype(np.float32), nan=0.0))
        chunk = max(1, PREDICT_ROWS // samples)
        with self._session(device, self.config.seed + 1):
            for start in range(0, n_trials, chunk):
                rows = slice(start, min(start + chunk, n_trials))
                batch = spikes[rows].to(device).repeat_interleave(samples, dim=0)
                out = network(batch, steps, sample=True)
                rates[rows] = _sample_mean(torch.exp(out.log_rates), samples)
                factors[rows] = _sample_mean(out.factors, samples)
                if inputs is not None and out.inputs is not None:
                    inputs[rows] = _sample_mean(out.inputs, samples)
        return PosteriorAverage(rates, factors, inputs)


def _mean_rates(trials: Batch, valid_index: torch.Tensor) -> torch.Tensor:
    """Each unit's mean count per observed bin over the training split (all trials minus the
    validation ones, which avoids copying the training split)."""
    valid = trials.take(valid_index)
    counts = trials.target.sum(dim=(0, 1)) - valid.target.sum(dim=(0, 1))
    n_observed = trials.observed.sum(dim=(0, 1)) - valid.observed.sum(dim=(0, 1))
    return counts / n_observed.clamp(min=1)


def _sample_mean(values: torch.Tensor, samples: int) -> np.ndarray:
    """(trials * samples, ...) with each trial's samples adjacent -> (trials, ...) mean, on the host."""
    return values.reshape(-1, samples, *values.shape[1:]).mean(dim=1).cpu().numpy()
