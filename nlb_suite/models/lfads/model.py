"""`LFADS`: the estimator behind `nlb-suite eval --model lfads`.

Sizes of the data (units, bins, forward bins) come from the `Tensors` given to `fit`; everything
else is a constructor keyword, checked there so that a bad value fails before any work.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ...core.arrays import Rates, Tensors
from ..base import ModelError, register_model
from .augment import sample_validation_mask
from .network import LFADSNetwork
from .train import Batch, EpochRecord, TrainConfig, Trainer

# Trials x posterior samples per forward pass at prediction: bounds memory whatever n_samples is.
PREDICT_ROWS = 1024

_SIZES = ("ic_enc_dim", "ci_enc_dim", "con_dim", "co_dim", "ic_dim", "gen_dim", "fac_dim", "ci_lag")


@dataclass
class PosteriorAverage:
    """Averages over posterior samples, (trials, bins + forward, ...)."""

    rates: np.ndarray  # spikes/bin, held-in then held-out units
    factors: np.ndarray
    inputs: np.ndarray | None


@register_model("lfads")
class LFADS:
    """Latent Factor Analysis via Dynamical Systems (Pandarinath et al. 2018), as lfads-torch
    runs it: sizes `ic_enc_dim` ... `fac_dim` (co_dim = 0: no controller), coordinated dropout
    `cd_rate`, sample validation `sv_rate`, ramped KL and L2 penalties, AdamW with learning-rate
    decay on plateau, early stopping on the smoothed validation loss after the ramps. `fit` holds
    out `valid_fraction` of the training trials for validation; `predict` averages `n_samples`
    posterior samples. `checkpoint_dir` (empty: none) receives `last.pt` every epoch and `best.pt`;
    `resume=True` continues from `last.pt`.

    `threads` sets torch's CPU threads while fitting and predicting (0 leaves torch's setting). It
    defaults to 1: the time loop's small matrix products gain little from a second thread, and on
    shared cores OpenMP threads waiting on each other have made epochs 30 times slower."""

    def __init__(
        self, *,
        ic_enc_dim: int = 100, ci_enc_dim: int = 80, con_dim: int = 80, co_dim: int = 4,
        ic_dim: int = 100, gen_dim: int = 100, fac_dim: int = 40, ci_lag: int = 1,
        dropout: float = 0.3, cd_rate: float = 0.3, sv_rate: float = 0.0,
        kl_ic_scale: float = 1e-4, kl_co_scale: float = 1e-4,
        l2_gen_scale: float = 1e-4, l2_con_scale: float = 1e-4,
        kl_start_epoch: int = 0, kl_increase_epoch: int = 80,
        l2_start_epoch: int = 0, l2_increase_epoch: int = 80,
        lr: float = 4e-3, weight_decay: float = 0.0, adam_eps: float = 1e-8,
        max_grad_norm: float = 200.0, loss_scale: float = 1e4,
        lr_decay: float = 0.95, lr_patience: int = 6, lr_stop: float = 1e-5,
        batch_size: int = 64, max_epochs: int = 1000, patience: int = 200, valid_fraction: float = 0.1,
        n_samples: int = 50, seed: int = 0, device: str = "auto", threads: int = 1,
        checkpoint_dir: str = "", resume: bool = False, log_every: int = 25,
    ):
        self.ic_enc_dim, self.ci_enc_dim, self.con_dim, self.co_dim = ic_enc_dim, ci_enc_dim, con_dim, co_dim
        self.ic_dim, self.gen_dim, self.fac_dim, self.ci_lag = ic_dim, gen_dim, fac_dim, ci_lag
        self.dropout, self.cd_rate, self.sv_rate = dropout, cd_rate, sv_rate
        self.kl_ic_scale, self.kl_co_scale = kl_ic_scale, kl_co_scale
        self.l2_gen_scale, self.l2_con_scale = l2_gen_scale, l2_con_scale
        self.kl_start_epoch, self.kl_increase_epoch = kl_start_epoch, kl_increase_epoch
        self.l2_start_epoch, self.l2_increase_epoch = l2_start_epoch, l2_increase_epoch
        self.lr, self.weight_decay, self.adam_eps = lr, weight_decay, adam_eps
        self.max_grad_norm, self.loss_scale = max_grad_norm, loss_scale
        self.lr_decay, self.lr_patience, self.lr_stop = lr_decay, lr_patience, lr_stop
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.valid_fraction = valid_fraction
        self.n_samples, self.seed, self.device, self.threads = n_samples, seed, device, threads
        self.checkpoint_dir, self.resume, self.log_every = checkpoint_dir, resume, log_every
        self._validate_hyperparameters()

    # --- hyperparameters ---------------------------------------------------------------------

    def _validate_hyperparameters(self) -> None:
        at_least = {name: 1 for name in ("ic_enc_dim", "ic_dim", "gen_dim", "fac_dim", "batch_size",
                                          "max_epochs", "patience", "n_samples")}
        at_least |= {name: 0 for name in ("ci_enc_dim", "con_dim", "co_dim", "ci_lag", "kl_start_epoch",
                                           "kl_increase_epoch", "l2_start_epoch", "l2_increase_epoch",
                                           "lr_patience", "seed", "log_every", "threads")}
        for name, low in at_least.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ModelError(f"lfads: {name} must be an integer >= {low}, got {value!r}")
        # (name, low, high, low inclusive, high inclusive)
        ranges = [("dropout", 0, 1, True, False), ("cd_rate", 0, 1, True, False), ("sv_rate", 0, 1, True, False),
                  ("valid_fraction", 0, 1, False, False), ("lr_decay", 0, 1, False, True),
                  ("lr", 0, math.inf, False, False), ("adam_eps", 0, math.inf, False, False),
                  ("max_grad_norm", 0, math.inf, False, False), ("loss_scale", 0, math.inf, False, False),
                  ("lr_stop", 0, math.inf, False, False), ("weight_decay", 0, math.inf, True, False)]
        ranges += [(name, 0, math.inf, True, False)
                   for name in ("kl_ic_scale", "kl_co_scale", "l2_gen_scale", "l2_con_scale")]
        for name, low, high, low_ok, high_ok in ranges:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ModelError(f"lfads: {name} must be a number, got {value!r}")
            inside = (low <= value if low_ok else low < value) and (value <= high if high_ok else value < high)
            if not inside:
                interval = f"{'[' if low_ok else '('}{low}, {high}{']' if high_ok else ')'}"
                raise ModelError(f"lfads: {name} must lie in {interval}, got {value!r}")
        if self.co_dim > 0 and (self.ci_enc_dim == 0 or self.con_dim == 0):
            raise ModelError("lfads: a controller (co_dim > 0) needs ci_enc_dim > 0 and con_dim > 0; "
                             "set co_dim = 0 for a model without inferred inputs")
        if not isinstance(self.resume, bool):
            raise ModelError(f"lfads: resume must be true or false, got {self.resume!r}")
        if not isinstance(self.checkpoint_dir, str):
            raise ModelError(f"lfads: checkpoint_dir must be a folder path, got {self.checkpoint_dir!r}")
        if self.resume and not self.checkpoint_dir:
            raise ModelError("lfads: resume=true needs checkpoint_dir, the folder holding last.pt")
        self._device()

    def _device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ModelError(f"lfads: device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(f"lfads: device {self.device!r} asked for, but CUDA is not available here")
        if device.type not in ("cpu", "cuda"):
            raise ModelError(f"lfads: device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        return device

    def _train_config(self) -> TrainConfig:
        return TrainConfig(
            lr=float(self.lr), weight_decay=float(self.weight_decay), adam_eps=float(self.adam_eps),
            max_grad_norm=float(self.max_grad_norm), loss_scale=float(self.loss_scale),
            lr_decay=float(self.lr_decay), lr_patience=self.lr_patience, lr_stop=float(self.lr_stop),
            batch_size=self.batch_size, max_epochs=self.max_epochs, patience=self.patience,
            cd_rate=float(self.cd_rate), sv_rate=float(self.sv_rate),
            kl_ic_scale=float(self.kl_ic_scale), kl_co_scale=float(self.kl_co_scale),
            l2_gen_scale=float(self.l2_gen_scale), l2_con_scale=float(self.l2_con_scale),
            kl_start_epoch=self.kl_start_epoch, kl_increase_epoch=self.kl_increase_epoch,
            l2_start_epoch=self.l2_start_epoch, l2_increase_epoch=self.l2_increase_epoch,
            log_every=self.log_every, checkpoint_dir=Path(self.checkpoint_dir) if self.checkpoint_dir else None,
            resume=self.resume,
        )

    # --- fit -----------------------------------------------------------------------------------

    def fit(self, tensors: Tensors) -> "LFADS":
        """Train on the training trials of `tensors` (held-in, held-out and forward spikes)."""
        n_trials, n_bins, n_heldin = tensors.train_spikes_heldin.shape
        if n_trials < 2:
            raise ModelError(f"lfads: needs at least 2 training trials (one for validation), got {n_trials}")
        if n_bins <= self.ci_lag and self.co_dim > 0:
            raise ModelError(f"lfads: ci_lag {self.ci_lag} must be shorter than the trials ({n_bins} bins)")
        device = self._device()
        self.n_bins_, self.n_forward_ = n_bins, tensors.n_forward
        self.n_heldin_, self.n_heldout_ = n_heldin, tensors.n_heldout
        with self._session(device, self.seed):
            trials = self._training_batch(tensors, device)
            valid_index, train_index = self._split(n_trials, device)
            network = LFADSNetwork(
                n_heldin, n_heldin + tensors.n_heldout, ic_enc_dim=self.ic_enc_dim, ci_enc_dim=self.ci_enc_dim,
                ci_lag=self.ci_lag, con_dim=self.con_dim, co_dim=self.co_dim, ic_dim=self.ic_dim,
                gen_dim=self.gen_dim, fac_dim=self.fac_dim, dropout=float(self.dropout),
            ).to(device)
            network.set_mean_rates(_mean_rates(trials, valid_index))
            run_config = {name: getattr(self, name) for name in _SIZES + ("seed", "valid_fraction", "sv_rate")}
            run_config |= {"n_train": n_trials, "n_bins": n_bins, "n_forward": tensors.n_forward,
                           "n_heldin": n_heldin, "n_heldout": tensors.n_heldout}
            trainer = Trainer(network, self._train_config(), n_heldin, n_bins, run_config)
            state = trainer.run(trials, train_index, valid_index)
        self.network_ = network
        self.history_: list[EpochRecord] = state.history
        self.best_epoch_: int = state.best_epoch
        return self

    def _training_batch(self, tensors: Tensors, device: torch.device) -> Batch:
        """All training trials as one `Batch`, assembled in place (mc_maze is 60 MB a copy)."""
        bins, heldin = self.n_bins_, self.n_heldin_
        target = torch.empty(tensors.n_train, bins + self.n_forward_, heldin + self.n_heldout_)
        target[:, :bins, :heldin] = torch.from_numpy(tensors.train_spikes_heldin)
        target[:, :bins, heldin:] = torch.from_numpy(tensors.train_spikes_heldout)
        target[:, bins:, :heldin] = torch.from_numpy(tensors.train_spikes_heldin_forward)
        target[:, bins:, heldin:] = torch.from_numpy(tensors.train_spikes_heldout_forward)
        observed = ~torch.isnan(target)
        target.nan_to_num_(nan=0.0)
        trained = observed
        if self.sv_rate > 0:
            generator = torch.Generator().manual_seed(self.seed)
            trained = observed.clone()
            inputs = (slice(None), slice(0, bins), slice(0, heldin))
            trained[inputs] &= ~sample_validation_mask((tensors.n_train, bins, heldin), self.sv_rate, generator)
        observed = observed.to(device)
        return Batch(target.to(device), observed, observed if trained is observed else trained.to(device))

    def _split(self, n_trials: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        order = np.random.default_rng(self.seed).permutation(n_trials)
        n_valid = min(n_trials - 1, max(1, round(self.valid_fraction * n_trials)))
        valid, train = np.sort(order[:n_valid]), np.sort(order[n_valid:])
        return torch.from_numpy(valid).to(device), torch.from_numpy(train).to(device)

    @contextlib.contextmanager
    def _session(self, device: torch.device, seed: int) -> Iterator[None]:
        """Seed torch and set its CPU threads for this run, restoring the caller's random state
        and thread count afterwards."""
        cuda_devices = []
        if device.type == "cuda":
            cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()]
        threads_before = torch.get_num_threads()
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            if self.threads > 0:
                torch.set_num_threads(self.threads)
            try:
                yield
            finally:
                torch.set_num_threads(threads_before)

    # --- predict -------------------------------------------------------------------------------

    def predict(self, tensors: Tensors) -> Rates:
        """Rates of training and evaluation trials (eval: from their held-in spikes alone),
        averaged over `n_samples` posterior samples; factors and inferred inputs in `latents`."""
        if not hasattr(self, "network_"):
            raise ModelError("lfads: predict() called before fit()")
        expected = (self.n_bins_, self.n_forward_, self.n_heldin_, self.n_heldout_)
        got = (tensors.n_bins, tensors.n_forward, tensors.n_heldin, tensors.n_heldout)
        if got != expected:
            raise ModelError(f"lfads: fitted on (bins, forward bins, held-in, held-out) = {expected}, "
                             f"asked to predict {got}")
        train = self._posterior_average(tensors.train_spikes_heldin)
        evaluation = self._posterior_average(tensors.eval_spikes_heldin)
        bins, heldin = self.n_bins_, self.n_heldin_
        latents = {"train_factors": train.factors[:, :bins], "eval_factors": evaluation.factors[:, :bins]}
        if train.inputs is not None and evaluation.inputs is not None:
            latents |= {"train_inputs": train.inputs[:, :bins], "eval_inputs": evaluation.inputs[:, :bins]}
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
        network, samples = self.network_, self.n_samples
        device = network.readout.weight.device
        network.eval()
        n_trials, steps = heldin.shape[0], self.n_bins_ + self.n_forward_
        rates = np.empty((n_trials, steps, self.n_heldin_ + self.n_heldout_), np.float32)
        factors = np.empty((n_trials, steps, self.fac_dim), np.float32)
        inputs = np.empty((n_trials, steps, self.co_dim), np.float32) if self.co_dim > 0 else None
        spikes = torch.from_numpy(np.nan_to_num(heldin.astype(np.float32), nan=0.0))
        chunk = max(1, PREDICT_ROWS // samples)
        with self._session(device, self.seed + 1):
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
