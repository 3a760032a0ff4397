"""`NDT` and `STNDT`: the estimators behind `nlb-suite eval --model ndt` / `--model stndt`.

Sizes of the data (units, bins, forward bins) come from the `Tensors` given to `fit`; everything
else is a field of `NDTConfig` / `STNDTConfig`, checked when the model is built.
"""

from __future__ import annotations

import numpy as np
import torch

from ...core.arrays import LatentKind, Rates, Tensors, latent_key
from ..base import ModelError, not_fitted
from ..torch_support import TorchEstimator, batch_count, training_targets
from .config import NDTConfig, STNDTConfig
from .network import NDTNetwork
from .train import EpochRecord, Trainer, Trials

# Trials per forward pass at prediction.
PREDICT_ROWS = 256


class NDT(TorchEstimator[NDTConfig]):
    """Neural Data Transformer (Ye & Pandarinath 2021): a masked-modelling transformer on binned
    spikes whose Poisson readout predicts held-in and held-out units over the trial window and
    the forward bins (which enter as masked positions). `fit` holds out `valid_fraction` of the
    training trials for early stopping on the validation masked loss; `predict` runs the network
    on the unmasked held-in spikes for the held-out and forward rates and the latents (the last
    layer's states), and on masked copies for the held-in rates (`_forward`).

    With `use_checkpoints(folder, resume)` (the pipeline does it for every run), `fit` writes
    `last.pt` every epoch and `best.pt` at each new best, and with `resume` continues from
    `last.pt`; a checkpoint made with other hyperparameters or data is refused."""

    Config = NDTConfig

    # --- fit -----------------------------------------------------------------------------------

    def fit(self, tensors: Tensors, until_epoch: int | None = None) -> "NDT":
        """Train on the training trials (held-in, held-out and forward spikes). `until_epoch`
        stops after that many epochs in all (to test resuming; the pipeline never sets it)."""
        cfg = self.config
        n_trials, n_bins, n_heldin = tensors.train_spikes_heldin.shape
        if n_trials < 2:
            raise ModelError(f"{cfg.OWNER}: needs at least 2 training trials (one for validation), got {n_trials}")
        device = self._device()
        self.n_bins_, self.n_forward_ = n_bins, tensors.n_forward
        self.n_heldin_, self.n_heldout_ = n_heldin, tensors.n_heldout
        steps = n_bins + tensors.n_forward
        with self._session(device):
            trials = self._training_trials(tensors, device)
            valid_index, train_index = self._split(n_trials, device)
            network = NDTNetwork(cfg, n_heldin, n_heldin + tensors.n_heldout, steps).to(device)
            train = trials.take(train_index)
            network.set_mean_rates(train.target.sum(dim=(0, 1)) / train.observed.sum(dim=(0, 1)).clamp(min=1))
            identity = {"hyperparameters": cfg.hyperparameters(), "model": {"name": cfg.OWNER},
                        "data": {"n_train": n_trials, "n_bins": n_bins, "n_forward": tensors.n_forward,
                                 "n_heldin": n_heldin, "n_heldout": tensors.n_heldout}}
            n_batches = batch_count(len(train_index), cfg.batch_size)
            trainer = Trainer(network, cfg, n_bins, n_heldin, n_batches, identity, self.checkpoint_dir, self.resume)
            self.network_ = network  # `predict` works from an epoch callback (a study's ASHA)
            state = trainer.run(trials, train_index, valid_index, until_epoch, self.epoch_callback)
        self.history_: list[EpochRecord] = state.history
        self.best_epoch_: int = state.best_epoch
        return self

    def _training_trials(self, tensors: Tensors, device: torch.device) -> Trials:
        target, observed = training_targets(tensors)
        return Trials(target.to(device), observed.to(device))

    # --- predict -------------------------------------------------------------------------------

    def predict(self, tensors: Tensors) -> Rates:
        """Rates of training and evaluation trials (eval: from their held-in spikes alone); the
        last layer's states over the trial window in `latents`."""
        if not hasattr(self, "network_"):
            raise not_fitted(self.config.OWNER)
        expected = (self.n_bins_, self.n_forward_, self.n_heldin_, self.n_heldout_)
        got = (tensors.n_bins, tensors.n_forward, tensors.n_heldin, tensors.n_heldout)
        if got != expected:
            raise ModelError(f"{self.config.OWNER}: fitted on (bins, forward bins, held-in, held-out) = {expected}, "
                             f"asked to predict {got}")
        passes = held_in_passes(self.config.mask_ratio)
        train_rates, train_states = self._forward(tensors.train_spikes_heldin, passes)
        eval_rates, eval_states = self._forward(tensors.eval_spikes_heldin, passes)
        bins, heldin = self.n_bins_, self.n_heldin_
        return Rates(
            train_rates_heldin=train_rates[:, :bins, :heldin], train_rates_heldout=train_rates[:, :bins, heldin:],
            eval_rates_heldin=eval_rates[:, :bins, :heldin], eval_rates_heldout=eval_rates[:, :bins, heldin:],
            eval_rates_heldin_forward=eval_rates[:, bins:, :heldin],
            eval_rates_heldout_forward=eval_rates[:, bins:, heldin:],
            latents={latent_key("train", LatentKind.STATES): train_states[:, :bins],
                     latent_key("eval", LatentKind.STATES): eval_states[:, :bins]},
        )

    @torch.no_grad()
    def _forward(self, heldin: np.ndarray, passes: int) -> tuple[np.ndarray, np.ndarray]:
        """Rates and last-layer states of the trials with held-in spikes `heldin`. The held-out
        and forward rates and the states come from the unmasked spikes, as NDT predicts. The
        held-in rates of bin t come from pass t % `passes`, which zeroes every `passes`-th bin
        from there: the loss only ever trained masked held-in bins, and an unmasked bin's rate
        echoes its own spikes (held-in rate R2 against the true rates -0.09..0.36 on synth_maze
        that way)."""
        network = self.network_
        device = network.readout.weight.device
        network.eval()
        bins, steps = self.n_bins_, self.n_bins_ + self.n_forward_
        spikes = torch.zeros(heldin.shape[0], steps, self.n_heldin_)
        spikes[:, :bins] = torch.from_numpy(np.nan_to_num(heldin.astype(np.float32), nan=0.0))
        rates, states = [], []
        with self._session(device):
            for chunk in spikes.split(PREDICT_ROWS):
                chunk = chunk.to(device)
                log_rates, last = network(chunk)
                for first in range(passes):
                    hidden = torch.zeros(steps, dtype=torch.bool, device=device)
                    hidden[first:bins:passes] = True
                    masked_log_rates, _ = network(chunk.masked_fill(hidden[None, :, None], 0.0))
                    log_rates[:, hidden, :self.n_heldin_] = masked_log_rates[:, hidden, :self.n_heldin_]
                rates.append(torch.exp(log_rates).cpu())
                states.append(last.cpu())
        return torch.cat(rates).numpy(), torch.cat(states).numpy()


def held_in_passes(mask_ratio: float) -> int:
    """Masked passes at prediction: each hides about the share of bins training masked."""
    return max(2, round(1 / mask_ratio))


class STNDT(NDT):
    """Spatiotemporal NDT (Le & Shlizerman 2022): NDT whose layers also attend across units, and
    whose loss adds an NT-Xent contrastive term between two augmented views of each trial with
    weight `contrast_lambda`. See `STNDTConfig`."""

    Config = STNDTConfig
