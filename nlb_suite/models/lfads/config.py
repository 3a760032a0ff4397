"""LFADS's hyperparameters: one typed dataclass, checked once when the model is built.

The network (`network.py`) reads its sizes from it and the trainer (`train.py`) its optimisation
settings; nothing below them sees it. `unroll`, `device`, `threads` and `log_every` say how the
model runs, not what it computes: they are runtime settings (see `models.base.param`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ..base import Hyperparameters, ModelError, param


@dataclass(frozen=True)
class LFADSConfig(Hyperparameters):
    """Sizes `ic_enc_dim` ... `fac_dim` (co_dim = 0: no controller) and the CI encoder's lag
    `ci_lag`; dropout on encoder inputs, encodings and generator states `dropout`; coordinated
    dropout `cd_rate`; sample validation `sv_rate` (a fraction of training entries never shown to
    the encoder, scored for model selection); KL and L2 penalties with their linear ramps;
    AdamW (`lr`, `weight_decay`, `adam_eps`), gradient clipping `max_grad_norm`, `loss_scale`;
    learning-rate decay on plateau (`lr_decay`, `lr_patience`, down to `lr_stop`); minibatches of
    `batch_size`; at most `max_epochs`, early stopping `patience` epochs after the best smoothed
    validation loss; `valid_fraction` of the training trials held out for validation;
    `n_samples` posterior samples averaged for the rates; `seed`.

    The defaults are lfads-torch's sizes and settings for the 5 ms NLB datasets."""

    OWNER: ClassVar[str] = "lfads"

    ic_enc_dim: int = param(100, low=1)
    ci_enc_dim: int = param(80, low=0)
    con_dim: int = param(80, low=0)
    co_dim: int = param(4, low=0)
    ic_dim: int = param(100, low=1)
    gen_dim: int = param(100, low=1)
    fac_dim: int = param(40, low=1)
    ci_lag: int = param(1, low=0)
    dropout: float = param(0.3, low=0, high=1, high_inclusive=False)
    cd_rate: float = param(0.3, low=0, high=1, high_inclusive=False)
    sv_rate: float = param(0.0, low=0, high=1, high_inclusive=False)
    kl_ic_scale: float = param(1e-4, low=0)
    kl_co_scale: float = param(1e-4, low=0)
    l2_gen_scale: float = param(1e-4, low=0)
    l2_con_scale: float = param(1e-4, low=0)
    kl_start_epoch: int = param(0, low=0)
    kl_increase_epoch: int = param(80, low=0)
    l2_start_epoch: int = param(0, low=0)
    l2_increase_epoch: int = param(80, low=0)
    lr: float = param(4e-3, low=0, low_inclusive=False)
    weight_decay: float = param(0.0, low=0)
    adam_eps: float = param(1e-8, low=0, low_inclusive=False)
    max_grad_norm: float = param(200.0, low=0, low_inclusive=False)
    loss_scale: float = param(1e4, low=0, low_inclusive=False)
    lr_decay: float = param(0.95, low=0, high=1, low_inclusive=False)
    lr_patience: int = param(6, low=0)
    lr_stop: float = param(1e-5, low=0, low_inclusive=False)
    batch_size: int = param(64, low=1)
    max_epochs: int = param(1000, low=1)
    patience: int = param(200, low=1)
    valid_fraction: float = param(0.1, low=0, high=1, low_inclusive=False, high_inclusive=False)
    n_samples: int = param(50, low=1)
    seed: int = param(0, low=0)
    # Sizes and budget from the data where they are left at their defaults (`scaled_to`): what
    # baselines/lfads.toml's [default] asks for, so that a dataset without a table of its own
    # gets a model fitted in minutes instead of lfads-torch's full-size one.
    scale_to_data: bool = param(False)
    # How it runs. `threads` sets torch's CPU threads while fitting and predicting (0 leaves
    # torch's setting); it defaults to 1: the time loop's small matrix products gain little from
    # a second thread, and on shared cores OpenMP threads waiting on each other have made epochs
    # 30 times slower. `unroll = "autograd"` replaces the hand-written backward pass of the
    # controller + generator loop by plain autograd (same numbers; for debugging and new features).
    # The fused loop runs in C++ where native.py could build it (NLB_SUITE_NATIVE=0: in Python).
    unroll: Literal["fused", "autograd"] = param("fused", runtime=True)
    device: str = param("auto", runtime=True)
    threads: int = param(1, low=0, runtime=True)
    log_every: int = param(25, low=0, runtime=True)

    def check(self) -> None:
        if self.co_dim > 0 and (self.ci_enc_dim == 0 or self.con_dim == 0):
            raise ModelError("lfads: a controller (co_dim > 0) needs ci_enc_dim > 0 and con_dim > 0; "
                             "set co_dim = 0 for a model without inferred inputs")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ModelError(f"lfads: device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")

    def scaled_to(self, n_train: int, n_steps: int, n_units: int) -> "LFADSConfig":
        """With `scale_to_data`, the fields still at their constructor defaults scaled to `n_train`
        trials of `n_steps` bins (window + forward) and `n_units` held-in units; every field set
        otherwise is kept. Anchors: lfads-torch's sizes (100 wide, batch 64) are for mc_maze's
        ~1700 training trials; the synth_maze table (188 training trials of 180 steps, generator
        64, batch 64, 400 epochs, 50-epoch ramps) reached 96% of the true-rate ceiling in about
        6 minutes on one core. Width grows with the square root of the trial count (64 at 188
        trials), factors are a sixth of the units (20 of 114 there), batches a third of the
        trials up to 64; the epochs keep trials x steps x epochs at that run's (so the time stays
        near minutes), the ramps take an eighth of them.

        The learning rate grows as the updates per epoch shrink: lfads-torch's 4e-3 at mc_maze's
        ~27 batches an epoch, times sqrt(27 / batches), within 4e-3..1e-2. With 3 batches an epoch
        (synth_maze) that is 1e-2, the synthetic tables' value: untuned synth_maze measured co-bps
        0.429 at 4e-3 and 0.554 at 1e-2 (the table: 0.557)."""
        if not self.scale_to_data:
            return self
        defaults = type(self).defaults()
        width = int(min(100, max(32, round(4.7 * n_train ** 0.5))))
        epochs = int(min(1000, max(100, round(13.5e6 / max(1, n_train * n_steps)))))
        if self.max_epochs != defaults["max_epochs"]:
            epochs = self.max_epochs  # a budget set elsewhere (a study's) sets the ramps' length
        batch_size = int(min(64, max(8, n_train // 3))) if self.batch_size == defaults["batch_size"] else self.batch_size
        batches = max(1, round(n_train * (1 - self.valid_fraction) / batch_size))
        lr = float(min(1e-2, max(4e-3, 4e-3 * (27 / batches) ** 0.5)))
        scaled = {
            "ic_enc_dim": width, "ic_dim": width, "gen_dim": width, "ci_enc_dim": max(16, width // 2),
            "con_dim": max(16, width // 2), "fac_dim": int(min(40, max(10, round(n_units / 6)))),
            "batch_size": batch_size, "max_epochs": epochs, "lr": lr,
            "kl_increase_epoch": epochs // 8, "l2_increase_epoch": epochs // 8, "patience": max(20, epochs // 4),
        }
        changes = {name: value for name, value in scaled.items() if getattr(self, name) == defaults[name]}
        return self.replace(**changes)

    @property
    def ramps_done_epoch(self) -> int:
        """First epoch at which both penalties are at full weight."""
        return max(self.kl_start_epoch + self.kl_increase_epoch, self.l2_start_epoch + self.l2_increase_epoch)
