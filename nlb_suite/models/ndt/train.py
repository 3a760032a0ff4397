"""Training NDT / STNDT: masked Poisson reconstruction (plus STNDT's contrastive term), AdamW
with a warm-up and a cosine decay per update, early stopping on the validation masked loss,
checkpoints (weights, optimiser, schedule, random state and the full hyperparameters; loaded
with weights_only) and resume.

    loss = masked_recon + contrast_lambda * nt_xent(view 1, view 2)     (STNDT; NDT: no second term)

View 1 is the reconstruction's masked input; view 2 another mask of the same trials with
`contrast_drop` of the input spikes dropped; each view's states are averaged over bins.

The validation loss is the same masked reconstruction on the validation trials with one fixed
mask (drawn once from the seed, the full span, masked bins zeroed): the same entries are scored
every epoch, so epochs compare.
"""

from __future__ import annotations

import math
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
from .config import NDTConfig, STNDTConfig
from .masking import counted_entries, mask_span, masked_bins, masked_loss, nt_xent, replace_masked
from .network import NDTNetwork

CHECKPOINT_FORMAT = 1
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


@dataclass
class Trials:
    """Trials as the training loop sees them (a minibatch or a whole split)."""

    target: Tensor  # (trials, bins + forward, held-in + held-out): counts, 0 where unobserved
    observed: Tensor  # bool, like target

    def take(self, index: Tensor) -> "Trials":
        return Trials(self.target[index], self.observed[index])


def network_input(target: Tensor, n_bins: int, n_heldin: int) -> Tensor:
    """The held-in counts over the trial window, zeros over the forward bins (masked positions)."""
    inputs = torch.zeros(target.shape[0], target.shape[1], n_heldin, dtype=target.dtype, device=target.device)
    inputs[:, :n_bins] = target[:, :n_bins, :n_heldin]
    return inputs


@dataclass
class EpochRecord:
    """One row of the training curves."""

    epoch: int
    train_loss: float  # the objective, averaged over batches
    train_recon: float
    train_contrast: float
    valid_loss: float  # masked reconstruction on validation trials, one fixed mask
    valid_co_bps: float  # held-out units of the validation trials, unmasked input
    mask_span: int
    lr: float
    train_seconds: float


@dataclass
class TrainingState:
    """Everything beyond the weights that a resumed run needs to continue exactly."""

    epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    best_loss: float = float("inf")
    best_epoch: int = -1
    best_weights: dict[str, Tensor] | None = None
    epochs_since_best: int = 0


def schedule(update: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up over `warmup` updates, then a cosine to 0 at `total`."""
    if update < warmup:
        return (update + 1) / warmup
    progress = min(1.0, (update - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class Trainer:
    """Fits an `NDTNetwork`; `run` leaves it with the best epoch's weights."""

    def __init__(self, network: NDTNetwork, config: NDTConfig, n_bins: int, n_heldin: int, n_batches: int,
                 identity: dict[str, Any], checkpoint_dir: Path | None = None, resume: bool = False) -> None:
        self.network, self.config = network, config
        self.n_bins, self.n_heldin, self.n_batches = n_bins, n_heldin, n_batches
        self.identity, self.checkpoint_dir, self.resume = identity, checkpoint_dir, resume
        self.total_updates = config.max_epochs * n_batches
        warmup = round(config.warmup_fraction * self.total_updates)
        self.optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda update: schedule(update, self.total_updates, warmup))
        self.state = TrainingState()

    def run(self, trials: Trials, train_index: Tensor, valid_index: Tensor,
            until_epoch: int | None = None, after_epoch: Callable[[int], None] | None = None) -> TrainingState:
        cfg = self.config
        valid = trials.take(valid_index)
        valid_counted, valid_input = self._validation_mask(valid)
        if self.resume:
            self._restore()
        last = cfg.max_epochs if until_epoch is None else min(until_epoch, cfg.max_epochs)
        bar = tqdm(total=cfg.max_epochs, initial=self.state.epoch, desc=cfg.OWNER.upper(), unit="epoch",
                   disable=None, file=sys.stderr, dynamic_ncols=True)
        with bar:
            while self.state.epoch < last and self.state.epochs_since_best < cfg.patience:
                record = self._epoch(trials, train_index, valid, valid_input, valid_counted)
                bar.update(1)
                bar.set_postfix(train=f"{record.train_loss:.4f}", valid=f"{record.valid_loss:.4f}",
                                co_bps=f"{record.valid_co_bps:.3f}")
                if cfg.log_every > 0 and (record.epoch + 1) % cfg.log_every == 0:
                    bar.write(_log_line(record), file=sys.stderr)
                if after_epoch is not None:
                    after_epoch(record.epoch)
        if self.state.best_weights is not None:
            self.network.load_state_dict(self.state.best_weights)
        return self.state

    def _validation_mask(self, valid: Trials) -> tuple[Tensor, Tensor]:
        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed + 7)
        masked = masked_bins(valid.target.shape[0], self.n_bins, cfg.mask_ratio, cfg.max_mask_span, generator,
                             valid.target.device)
        inputs = network_input(valid.target, self.n_bins, self.n_heldin)
        inputs[:, :self.n_bins] = inputs[:, :self.n_bins].masked_fill(masked[..., None], 0.0)
        return counted_entries(valid.observed, masked, self.n_bins, self.n_heldin), inputs

    def _epoch(self, trials: Trials, train_index: Tensor, valid: Trials, valid_input: Tensor,
               valid_counted: Tensor) -> EpochRecord:
        cfg, state = self.config, self.state
        started = time.perf_counter()
        self.network.train()
        span = 1
        totals = [0.0, 0.0, 0.0]
        batches = shuffled_batches(train_index, cfg.batch_size)  # self.n_batches of them
        for number, index in enumerate(batches):
            update = state.epoch * self.n_batches + number
            span = mask_span(cfg.max_mask_span, update / self.total_updates, cfg.mask_ramp_start, cfg.mask_ramp_end)
            for position, value in enumerate(self._train_step(trials.take(index), span)):
                totals[position] += value
        train_seconds = time.perf_counter() - started
        valid_loss, valid_co_bps = self._validate(valid, valid_input, valid_counted)
        if valid_loss < state.best_loss:
            state.best_loss, state.best_epoch, state.epochs_since_best = valid_loss, state.epoch, 0
            state.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.network.state_dict().items()}
            self._save_best()
        else:
            state.epochs_since_best += 1
        n = len(batches)
        record = EpochRecord(epoch=state.epoch, train_loss=totals[0] / n, train_recon=totals[1] / n,
                             train_contrast=totals[2] / n, valid_loss=valid_loss, valid_co_bps=valid_co_bps,
                             mask_span=span, lr=self.optimizer.param_groups[0]["lr"], train_seconds=train_seconds)
        state.history.append(record)
        state.epoch += 1
        self._save_last()
        return record

    def _view(self, batch: Trials, span: int) -> tuple[Tensor, Tensor]:
        """One masked view of the batch: (network input, counted entries)."""
        cfg = self.config
        n_trials, device = batch.target.shape[0], batch.target.device
        masked = masked_bins(n_trials, self.n_bins, cfg.mask_ratio, span, device=device)
        inputs = network_input(batch.target, self.n_bins, self.n_heldin)
        inputs[:, :self.n_bins] = replace_masked(inputs[:, :self.n_bins], masked, cfg.mask_token_ratio,
                                                 cfg.mask_random_ratio)
        return inputs, counted_entries(batch.observed, masked, self.n_bins, self.n_heldin)

    def _train_step(self, batch: Trials, span: int) -> tuple[float, float, float]:
        cfg, net = self.config, self.network
        inputs, counted = self._view(batch, span)
        log_rates, states = net(inputs)
        recon = masked_loss(log_rates, batch.target, counted)
        loss, contrast = recon, torch.zeros(())
        if isinstance(cfg, STNDTConfig) and cfg.contrast_lambda > 0 and batch.target.shape[0] > 1:
            # The second view: another mask, and a share of the input spikes dropped; the first
            # view is the reconstruction's own pass (one forward pass saved).
            other, _ = self._view(batch, span)
            kept = torch.rand(other.shape) >= cfg.contrast_drop
            _, other_states = net(other * kept.to(other.device))
            contrast = nt_xent(states.mean(dim=1), other_states.mean(dim=1), cfg.temperature)
            loss = recon + cfg.contrast_lambda * contrast
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item(), recon.item(), contrast.item()

    @torch.no_grad()
    def _validate(self, valid: Trials, valid_input: Tensor, valid_counted: Tensor) -> tuple[float, float]:
        net, size = self.network, self.config.batch_size
        net.eval()
        log_rates = torch.cat([net(chunk)[0] for chunk in valid_input.split(size)])
        loss = float(masked_loss(log_rates, valid.target, valid_counted))
        plain = network_input(valid.target, self.n_bins, self.n_heldin)
        unmasked = torch.cat([net(chunk)[0] for chunk in plain.split(size)])
        heldout = (slice(None), slice(0, self.n_bins), slice(self.n_heldin, None))
        spikes = valid.target[heldout].masked_fill(~valid.observed[heldout], float("nan"))
        co_bps = bits_per_spike(torch.exp(unmasked[heldout]).cpu().numpy(), spikes.cpu().numpy())
        return loss, co_bps

    # --- checkpoints ---------------------------------------------------------------------------

    def _save_last(self) -> None:
        if self.checkpoint_dir is None:
            return
        state = self.state
        device = self.network.readout.weight.device
        payload = {
            "format": CHECKPOINT_FORMAT, "identity": self.identity, "epoch": state.epoch,
            "weights": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": [asdict(record) for record in state.history],
            "selection": {"best_loss": state.best_loss, "best_epoch": state.best_epoch,
                          "epochs_since_best": state.epochs_since_best},
            "best_weights": state.best_weights,
            "rng": {"cpu": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
        }
        save_checkpoint(self.checkpoint_dir / LAST_CHECKPOINT, payload)

    def _save_best(self) -> None:
        if self.checkpoint_dir is None:
            return
        save_checkpoint(self.checkpoint_dir / BEST_CHECKPOINT,
                        {"format": CHECKPOINT_FORMAT, "identity": self.identity, "epoch": self.state.best_epoch,
                         "weights": self.state.best_weights})

    def _restore(self) -> None:
        """Continue from `last.pt` when it exists; a checkpoint of other settings is refused."""
        assert self.checkpoint_dir is not None
        path = self.checkpoint_dir / LAST_CHECKPOINT
        if not path.exists():
            return
        payload = resumable_checkpoint(path, "NDT", CHECKPOINT_FORMAT, now=self.identity)
        self.network.load_state_dict(payload["weights"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        selection = payload["selection"]
        self.state = TrainingState(epoch=payload["epoch"], history=[EpochRecord(**row) for row in payload["history"]],
                                   best_loss=selection["best_loss"], best_epoch=selection["best_epoch"],
                                   best_weights=payload["best_weights"],
                                   epochs_since_best=selection["epochs_since_best"])
        torch.set_rng_state(payload["rng"]["cpu"])
        device = self.network.readout.weight.device
        if device.type == "cuda" and payload["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(payload["rng"]["cuda"], device)


def _log_line(record: EpochRecord) -> str:
    return (f"epoch {record.epoch + 1:4d}  train {record.train_loss:.4f}  valid {record.valid_loss:.4f}"
            f"  co-bps {record.valid_co_bps:.3f}  span {record.mask_span}  lr {record.lr:.1e}"
            f"  {record.train_seconds:.1f} s")
