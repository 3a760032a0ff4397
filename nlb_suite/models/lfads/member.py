"""One member of a population-based-training (PBT) study of LFADS: the same data, split and
`Trainer` as `LFADS.fit`, run a few epochs at a time, with hyperparameters that change between
rounds and a state that another member can take over (AutoLFADS' exploit step).

The tuning layer drives members; nothing here knows about Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...core.arrays import Tensors
from ..base import ModelError
from ..torch_support import load_checkpoint, save_checkpoint
from .model import LFADS
from .train import CHECKPOINT_FORMAT, LAST_CHECKPOINT

# Hyperparameters that can change while a member trains: the rest (sizes, split, ramps, budget)
# fix the network or the data it sees. AutoLFADS perturbs exactly these.
MUTABLE = frozenset({"lr", "adam_eps", "weight_decay", "dropout", "cd_rate", "kl_ic_scale", "kl_co_scale",
                     "l2_gen_scale", "l2_con_scale", "lr_decay", "lr_patience", "lr_stop"})


class Member:
    """A member training on the training trials of `tensors` with `hyperparameters`."""

    def __init__(self, hyperparameters: dict[str, Any], tensors: Tensors):
        self.estimator = LFADS(**hyperparameters)
        config = self.estimator.config
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.setup = self.estimator.training_setup(tensors)

    @property
    def epoch(self) -> int:
        """Epochs trained so far."""
        return self.setup.trainer.state.epoch

    @property
    def finished(self) -> bool:
        return self.epoch >= self.setup.trainer.config.max_epochs or self.setup.trainer.stopped()

    def train(self, epochs: int) -> dict[str, float]:
        """Train `epochs` more epochs (fewer at the budget's end); the last epoch's curves, with
        `objective` the smoothed validation reconstruction loss (validation trials drawn from
        the training trials; eval trials are never seen) and `best_objective` its best value
        after the penalty ramps (the weights `fitted` predicts with; until the ramps end, the
        last value)."""
        setup = self.setup
        setup.trainer.run(setup.trials, setup.train_index, setup.valid_index,
                          until_epoch=self.epoch + epochs, keep_last=True)
        state = setup.trainer.state
        last = state.history[-1]
        best = state.best_loss if state.best_weights is not None else last.valid_loss_smoothed
        return {"epoch": float(state.epoch), "objective": float(last.valid_loss_smoothed),
                "best_objective": float(best), "valid_loss": float(last.valid_loss),
                "valid_co_bps": float(last.valid_co_bps), "train_loss": float(last.train_loss)}

    def set_hyperparameters(self, changes: dict[str, Any]) -> None:
        """Go on with other values of the `MUTABLE` hyperparameters (checked as any are)."""
        fixed = sorted(set(changes) - MUTABLE)
        if fixed:
            raise ModelError(f"lfads: {fixed} cannot change while training; only {sorted(MUTABLE)} can")
        self.estimator.config = self.estimator.config.replace(**changes)
        self.setup.trainer.set_config(self.setup.trainer.config.replace(**changes))  # sizes as scaled

    def save(self, folder: Path) -> Path:
        """The whole training state into `folder` (one checkpoint file)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LAST_CHECKPOINT
        self.setup.trainer.save(path)
        return path

    def load(self, folder: Path) -> None:
        """Take over the training state saved in `folder` by any member of the same study (its
        hyperparameters may differ: the caller sets this member's own afterwards)."""
        self.setup.trainer.restore(folder / LAST_CHECKPOINT, same_settings=False)

    def fitted(self) -> LFADS:
        """The member as a fitted estimator: the best weights after the ramps (else the last)."""
        trainer = self.setup.trainer
        if trainer.state.best_weights is not None:
            trainer.network.load_state_dict(trainer.state.best_weights)
        self.estimator.adopt(trainer)
        return self.estimator


def export_checkpoint(source: Path, target: Path, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Copy a member's checkpoint from folder `source` to folder `target` as the checkpoint of a
    finished LFADS run with `hyperparameters` (its final values, `max_epochs` set to the epochs
    it trained): `LFADS` with those and `use_checkpoints(target, resume=True)` then predicts
    from exactly these weights. Returns the hyperparameters it was written for."""
    payload = load_checkpoint(source / LAST_CHECKPOINT, "LFADS")
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{source}: not an LFADS checkpoint of this version")
    data = payload["identity"]["data"]
    # The sizes as the member trained them, written out (no scaling left to redo).
    config = LFADS(**hyperparameters).config.scaled_to(
        data["n_train"], data["n_bins"] + data["n_forward"], data["n_heldin"]).replace(
        max_epochs=int(payload["epoch"]), scale_to_data=False)
    payload["identity"] = dict(payload["identity"], hyperparameters=config.hyperparameters())
    target.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target / LAST_CHECKPOINT, payload)
    return config.to_dict()
