"""Training LFADS: the objective, ramps, early stopping, learning-rate decay, checkpoints, resume.

The objective reads as in lfads-torch:
    loss = loss_scale * (recon + l2_ramp * l2 + kl_ramp * (kl_ic + kl_co))
with `recon` the mean Poisson NLL per reconstructed entry (coordinated dropout deciding which
held-in entries carry gradient), the KL terms per trial, each already multiplied by its scale.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from ...core.poisson import bits_per_spike
from ..torch_support import resumable_checkpoint, save_checkpoint, shuffled_batches
from .augment import block_gradients, coordinated_dropout, hold_back
from .config import LFADSConfig
from .losses import poisson_nll
from .network import LFADSNetwork, NetworkOutput

CHECKPOINT_FORMAT = 1
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
# Weight of the newest epoch in the exponentially smoothed validation loss used for model selection.
VALID_SMOOTHING = 0.3


@dataclass
class Batch:
    """Trials as the training loop sees them; one dataclass for a minibatch or a whole split."""

    target: Tensor  # (trials, bins + forward, held-in + held-out): counts, 0 where unobserved
    observed: Tensor  # bool, like target: False where the data are NaN
    # bool, like target: observed and not held back for sample validation (without sample
    # validation, the `observed` tensor itself)
    trained: Tensor

    def take(self, index: Tensor) -> "Batch":
        return Batch(self.target[index], self.observed[index], self.trained[index])

    def encoder_input(self, n_bins: int, n_heldin: int, sv_rate: float) -> Tensor:
        """Held-in counts over the observed bins, sample-validation entries zeroed."""
        inputs = (slice(None), slice(0, n_bins), slice(0, n_heldin))
        if sv_rate == 0.0:
            return self.target[inputs]
        return hold_back(self.target[inputs], ~self.trained[inputs], sv_rate)


@dataclass
class EpochRecord:
    """One row of the training curves."""

    epoch: int
    train_loss: float  # the objective without loss_scale, averaged over batches
    train_recon: float
    valid_loss: float  # Poisson NLL per entry the encoder never sees, on validation trials
    valid_loss_smoothed: float
    valid_co_bps: float  # held-out units of the validation trials, posterior-mean rates
    kl_ramp: float
    l2_ramp: float
    lr: float
    train_seconds: float


@dataclass
class TrainingState:
    """Everything beyond the weights that a resumed run needs to continue exactly."""

    epoch: int = 0  # epochs completed
    history: list[EpochRecord] = field(default_factory=list)
    smoothed: float | None = None
    best_loss: float = float("inf")
    best_epoch: int = -1
    best_weights: dict[str, Tensor] | None = None
    epochs_since_best: int = 0


def ramp(epoch: int, start: int, increase: int) -> float:
    """Penalty weight at `epoch`: 0 before `start`, rising linearly to 1 at `start + increase`."""
    if increase <= 0:
        return 1.0 if epoch >= start else 0.0
    return min(1.0, max(0.0, (epoch - start) / increase))


class Trainer:
    """Fits an `LFADSNetwork`; `run` leaves it with the weights of the best epoch after the ramps
    (the last weights if training ended before the ramps did) and returns the training state."""

    def __init__(self, network: LFADSNetwork, config: LFADSConfig, n_heldin: int, n_bins: int,
                 identity: dict[str, Any], checkpoint_dir: Path | None = None, resume: bool = False):
        self.network = network
        self.config = config
        self.n_heldin = n_heldin
        self.n_bins = n_bins
        self.identity = identity  # saved in checkpoints; must match to resume
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, eps=config.adam_eps,
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=config.lr_decay, patience=config.lr_patience,
            threshold=0.0, min_lr=config.lr_stop)
        self.state = TrainingState()

    def run(self, trials: Batch, train_index: Tensor, valid_index: Tensor,
            until_epoch: int | None = None, keep_last: bool = False,
            after_epoch: Callable[[int], None] | None = None) -> TrainingState:
        """Train on `trials[train_index]`, select on `trials[valid_index]`, until `max_epochs`,
        early stopping or (when given) `until_epoch` epochs in all, whichever comes first.
        `keep_last` leaves the network with its last weights (training goes on from there, as a
        population-based-training member's does between perturbations) instead of the best.
        `after_epoch(epoch)` is called after each epoch."""
        cfg = self.config
        valid = trials.take(valid_index)
        if self.resume:
            self._restore()
        last = cfg.max_epochs if until_epoch is None else min(until_epoch, cfg.max_epochs)
        bar = tqdm(total=cfg.max_epochs, initial=self.state.epoch, desc="LFADS", unit="epoch",
                   disable=None, file=sys.stderr, dynamic_ncols=True)
        with bar:
            while self.state.epoch < last and not self.stopped():
                record = self._epoch(trials, train_index, valid)
                bar.update(1)
                bar.set_postfix(train=f"{record.train_loss:.4f}", valid=f"{record.valid_loss:.4f}",
                                co_bps=f"{record.valid_co_bps:.3f}")
                if cfg.log_every > 0 and (record.epoch + 1) % cfg.log_every == 0:
                    bar.write(_log_line(record), file=sys.stderr)
                if after_epoch is not None:
                    after_epoch(record.epoch)
        if self.state.best_weights is not None and not keep_last:
            self.network.load_state_dict(self.state.best_weights)
        return self.state

    def set_config(self, config: LFADSConfig) -> None:
        """Go on training with other values of the settings that may change between epochs
        (learning rate, AdamW's eps and weight decay, dropout, coordinated dropout, KL and L2
        scales): population-based training perturbs them. Sizes must not change."""
        self.config = config
        for group in self.optimizer.param_groups:
            group.update(lr=config.lr, eps=config.adam_eps, weight_decay=config.weight_decay)
        self.scheduler.factor, self.scheduler.patience = config.lr_decay, config.lr_patience
        self.scheduler.min_lrs = [config.lr_stop] * len(self.optimizer.param_groups)
        self.network.set_dropout(config.dropout)

    def stopped(self) -> bool:
        return self.state.epochs_since_best >= self.config.patience

    def _epoch(self, trials: Batch, train_index: Tensor, valid: Batch) -> EpochRecord:
        cfg, state = self.config, self.state
        epoch = state.epoch
        kl_ramp = ramp(epoch, cfg.kl_start_epoch, cfg.kl_increase_epoch)
        l2_ramp = ramp(epoch, cfg.l2_start_epoch, cfg.l2_increase_epoch)
        started = time.perf_counter()
        self.network.train()
        losses, recons = [], []
        for index in shuffled_batches(train_index, cfg.batch_size):
            loss, recon = self._train_step(trials.take(index), kl_ramp, l2_ramp)
            losses.append(loss)
            recons.append(recon)
        train_seconds = time.perf_counter() - started
        valid_loss, valid_co_bps = self._validate(valid)
        state.smoothed = valid_loss if state.smoothed is None else (
            VALID_SMOOTHING * valid_loss + (1.0 - VALID_SMOOTHING) * state.smoothed)
        if epoch >= cfg.ramps_done_epoch:
            self.scheduler.step(state.smoothed)
            if state.smoothed < state.best_loss:
                state.best_loss, state.best_epoch, state.epochs_since_best = state.smoothed, epoch, 0
                state.best_weights = _cpu_copy(self.network.state_dict())
                self._save_best()
            else:
                state.epochs_since_best += 1
        record = EpochRecord(
            epoch=epoch, train_loss=sum(losses) / len(losses), train_recon=sum(recons) / len(recons),
            valid_loss=valid_loss, valid_loss_smoothed=state.smoothed, valid_co_bps=valid_co_bps,
            kl_ramp=kl_ramp, l2_ramp=l2_ramp, lr=self.optimizer.param_groups[0]["lr"],
            train_seconds=train_seconds,
        )
        state.history.append(record)
        state.epoch = epoch + 1
        self._save_last()
        return record

    def _train_step(self, batch: Batch, kl_ramp: float, l2_ramp: float) -> tuple[float, float]:
        cfg, net = self.config, self.network
        dropout = coordinated_dropout(batch.encoder_input(self.n_bins, self.n_heldin, cfg.sv_rate), cfg.cd_rate)
        out = net(dropout.inputs, batch.target.shape[1], sample=True)
        nll = block_gradients(poisson_nll(out.log_rates, batch.target), dropout.gradient_mask)
        recon = (nll * batch.trained).sum() / batch.trained.sum().clamp(min=1)
        kl_ic, kl_co = self._kl_terms(out)
        l2 = net.recurrent_l2(cfg.l2_gen_scale, cfg.l2_con_scale)
        objective = recon + l2_ramp * l2 + kl_ramp * (kl_ic + kl_co)
        loss = cfg.loss_scale * objective
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        return objective.item(), recon.item()

    def _kl_terms(self, out: NetworkOutput) -> tuple[Tensor, Tensor]:
        net, cfg = self.network, self.config
        kl_ic = cfg.kl_ic_scale * net.ic_prior.kl(out.ic_mean, out.ic_std, out.ic_sample)
        if net.co_prior is None or out.co_mean is None or out.co_std is None or out.inputs is None:
            return kl_ic, torch.zeros_like(kl_ic)  # no controller, no inferred inputs
        return kl_ic, cfg.kl_co_scale * net.co_prior.kl(out.co_mean, out.co_std, out.inputs)

    @torch.no_grad()
    def _validate(self, valid: Batch) -> tuple[float, float]:
        """Validation trials through the posterior means (no sampling, no dropout). The loss
        counts only entries the encoder never saw (held-out units, forward bins, held-back
        samples): on the held-in inputs a model that copies its input would look best."""
        self.network.eval()
        encoder_input = valid.encoder_input(self.n_bins, self.n_heldin, self.config.sv_rate)
        log_rates = torch.cat([
            self.network(chunk, valid.target.shape[1], sample=False).log_rates
            for chunk in encoder_input.split(self.config.batch_size)
        ])
        scored = valid.observed.clone()
        inputs = (slice(None), slice(0, self.n_bins), slice(0, self.n_heldin))
        scored[inputs] &= ~valid.trained[inputs]
        nll = (poisson_nll(log_rates, valid.target) * scored).sum() / scored.sum().clamp(min=1)
        heldout = (slice(None), slice(0, self.n_bins), slice(self.n_heldin, None))
        spikes = valid.target[heldout].masked_fill(~valid.observed[heldout], float("nan"))
        co_bps = bits_per_spike(torch.exp(log_rates[heldout]).cpu().numpy(), spikes.cpu().numpy())
        return float(nll), co_bps

    # --- checkpoints -------------------------------------------------------------------------

    def _save_last(self) -> None:
        if self.checkpoint_dir is None:
            return
        self.save(self.checkpoint_dir / LAST_CHECKPOINT)

    def save(self, path: Path) -> None:
        """The whole training state (weights, optimiser, scheduler, curves, selection, random
        state) as one checkpoint file: what `restore` continues from."""
        state = self.state
        payload = {
            "format": CHECKPOINT_FORMAT,
            "identity": self.identity,
            "epoch": state.epoch,
            "weights": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": [asdict(record) for record in state.history],
            "selection": {"smoothed": state.smoothed, "best_loss": state.best_loss,
                          "best_epoch": state.best_epoch, "epochs_since_best": state.epochs_since_best},
            "best_weights": state.best_weights,
            "rng": _rng_state(self.network),
        }
        save_checkpoint(path, payload)

    def _save_best(self) -> None:
        if self.checkpoint_dir is None:
            return
        payload = {"format": CHECKPOINT_FORMAT, "identity": self.identity, "epoch": self.state.best_epoch,
                   "weights": self.state.best_weights}
        save_checkpoint(self.checkpoint_dir / BEST_CHECKPOINT, payload)

    def _restore(self) -> None:
        """Continue from `last.pt` when it exists; a fresh run otherwise. A checkpoint made with
        other hyperparameters or other data is refused, naming what differs."""
        assert self.checkpoint_dir is not None
        path = self.checkpoint_dir / LAST_CHECKPOINT
        if path.exists():
            self.restore(path)

    def restore(self, path: Path, same_settings: bool = True) -> None:
        """Continue from the checkpoint at `path`. With `same_settings` (resuming a run) one made
        with other hyperparameters or other data is refused, naming what differs; without it
        (a population member taking over another's state) only the data must agree."""
        def data_only(identity: dict[str, Any]) -> dict[str, Any]:
            return {"data": identity.get("data")}

        payload = resumable_checkpoint(path, "LFADS", CHECKPOINT_FORMAT, None if same_settings else data_only,
                                       self.identity if same_settings else data_only(self.identity))
        self.network.load_state_dict(payload["weights"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        selection = payload["selection"]
        self.state = TrainingState(
            epoch=payload["epoch"], history=[EpochRecord(**row) for row in payload["history"]],
            smoothed=selection["smoothed"], best_loss=selection["best_loss"],
            best_epoch=selection["best_epoch"], best_weights=payload["best_weights"],
            epochs_since_best=selection["epochs_since_best"],
        )
        _set_rng_state(payload["rng"], self.network)


def _cpu_copy(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()}


def _rng_state(network: LFADSNetwork) -> dict[str, Tensor | None]:
    device = network.readout.weight.device
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_state(saved: dict[str, Tensor | None], network: LFADSNetwork) -> None:
    cpu = saved["cpu"]
    assert cpu is not None, "a checkpoint always holds the CPU generator's state"
    torch.set_rng_state(cpu)
    device = network.readout.weight.device
    # A run saved on another kind of device resumes with that device's generator as it stands.
    if device.type == "cuda" and saved["cuda"] is not None:
        torch.cuda.set_rng_state(saved["cuda"], device)


def _log_line(record: EpochRecord) -> str:
    return (f"epoch {record.epoch + 1:4d}  train {record.train_loss:.4f}  valid {record.valid_loss:.4f}"
            f"  co-bps {record.valid_co_bps:.3f}  kl ramp {record.kl_ramp:.2f}  lr {record.lr:.1e}"
            f"  {record.train_seconds:.1f} s")
