"""Times lfads-torch's own training loop; run by `bench_lfads.py --peer lfads-torch` inside the
peer's virtual environment (Python 3.11, torch, pytorch-lightning 2.6, hydra-core 1.3, lfads-torch
installed with --no-deps), never imported by nlb_suite.

This file holds none of lfads-torch's code: it composes lfads-torch's own hydra configuration
(`configs/single.yaml` with `model=<name>` and `datamodule=<name>`), instantiates its model and
data module from it, and trains them with pytorch-lightning's Trainer on random Poisson spikes of
the configuration's shapes, written to an HDF5 file its data module reads. Three runtime shims
let lfads-torch (written for pytorch-lightning 1.6) run on 2.6:
  - `pytorch_lightning.trainer.supporters.CombinedLoader`, which its data module imports, is an
    alias of `pytorch_lightning.utilities.combined_loader.CombinedLoader`;
  - its `on_before_optimizer_step(optimizer, optimizer_idx)` gets the default optimizer_idx=0
    (2.x calls the hook with the optimizer alone);
  - the `relpath`, `max` and `sum` OmegaConf resolvers its configs use, which its `run_model.py`
    registers, are registered here (relpath against the checkout given).

Validation is switched off (limit_val_batches=0), and so are checkpoints, loggers and the progress
bar: the figure is the training epoch, as on our side. Prints one JSON line on stdout.

    python lfads_torch_driver.py --src DIR --model nlb_mc_maze --datamodule nlb_mc_maze \
        --n-trials 1721 --n-valid 172 --epochs 4 --threads 2 --workdir DIR
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path


def install_shims(src: Path) -> None:
    import pytorch_lightning.utilities.combined_loader as combined_loader
    from omegaconf import OmegaConf

    supporters = types.ModuleType("pytorch_lightning.trainer.supporters")
    supporters.CombinedLoader = combined_loader.CombinedLoader  # type: ignore[attr-defined]
    sys.modules["pytorch_lightning.trainer.supporters"] = supporters
    OmegaConf.register_new_resolver("relpath", lambda p: str(src / p), replace=True)
    OmegaConf.register_new_resolver("max", lambda *args: max(args), replace=True)
    OmegaConf.register_new_resolver("sum", lambda *args: sum(args), replace=True)

    from lfads_torch.model import LFADS

    LFADS.on_before_optimizer_step.__defaults__ = (0,)


def write_spikes(path: Path, n_trials: int, n_valid: int, n_bins: int, n_steps: int, n_heldin: int,
                 n_units: int, seed: int) -> None:
    """Random Poisson counts drawn as bench_lfads.py draws ours, in the file layout lfads-torch's
    BasicDataModule reads (train_/valid_ encod_data and recon_data)."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    spikes = np.empty((n_trials, n_steps, n_units), np.float32)
    for trial in spikes:  # one trial at a time, as in bench_lfads.py
        trial[:] = rng.poisson(rng.uniform(0.05, 0.5, trial.shape))
    n_train = n_trials - n_valid
    with h5py.File(path, "w") as h5:
        for prefix, part in (("train", spikes[:n_train]), ("valid", spikes[n_train:])):
            h5[f"{prefix}_encod_data"] = part[:, :n_bins, :n_heldin]
            h5[f"{prefix}_recon_data"] = part


def main() -> None:
    parser = argparse.ArgumentParser(description="Time lfads-torch's training epochs")
    parser.add_argument("--src", type=Path, required=True, help="lfads-torch checkout (holds configs/)")
    parser.add_argument("--model", required=True, help="configs/model/<name>.yaml")
    parser.add_argument("--datamodule", required=True, help="configs/datamodule/<name>.yaml")
    parser.add_argument("--n-trials", type=int, required=True, help="trials in all, training + validation")
    parser.add_argument("--n-valid", type=int, required=True, help="of which validation trials (not trained)")
    parser.add_argument("--epochs", type=int, required=True, help="measured epochs after one warm-up")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True, help="folder for the spikes file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    install_shims(args.src.resolve())
    import hydra
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        datafile = Path(tmp) / "spikes.h5"
        # lfads-torch's run_model.py composes with version_base 1.1 too.
        with hydra.initialize_config_dir(config_dir=str(args.src.resolve() / "configs"), version_base="1.1"):
            config = hydra.compose(config_name="single", overrides=[
                f"model={args.model}", f"datamodule={args.datamodule}",
                f"datamodule.datafile_pattern={datafile}", "datamodule.batch_keys=[]", "datamodule.attr_keys=[]",
            ])
        shapes = {
            "n_bins": int(config.model.encod_seq_len), "n_steps": int(config.model.recon_seq_len),
            "n_heldin": int(config.model.encod_data_dim),
            "n_units": int(config.model.readout.modules[0].out_features),
            "batch_size": int(config.datamodule.batch_size),
        }
        write_spikes(datafile, args.n_trials, args.n_valid, shapes["n_bins"], shapes["n_steps"],
                     shapes["n_heldin"], shapes["n_units"], args.seed)
        pl.seed_everything(config.seed, verbose=False)
        datamodule = instantiate(config.datamodule, _convert_="all")
        model = instantiate(config.model)

        class EpochTimer(pl.Callback):
            """Seconds and trials of each training epoch (validation is off)."""

            def __init__(self) -> None:
                self.seconds: list[float] = []
                self.trials: list[int] = []

            def on_train_epoch_start(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
                self.trials.append(0)
                self.started = time.perf_counter()

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
                self.trials[-1] += sum(len(session[0].encod_data) for session in batch.values())

            def on_train_epoch_end(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
                self.seconds.append(time.perf_counter() - self.started)

        timer = EpochTimer()
        trainer = instantiate(
            config.trainer, max_epochs=1 + args.epochs, accelerator="cpu", devices=1, callbacks=[timer],
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            limit_val_batches=0, num_sanity_val_steps=0,
        )
        trainer.fit(model=model, datamodule=datamodule)

    seconds = timer.seconds[1:]  # the first epoch is a warm-up
    median = statistics.median(seconds)
    n_train = timer.trials[-1]
    import omegaconf
    import torchmetrics

    print(json.dumps({
        "n_train_trials": n_train,
        "s_per_epoch": median,
        "best_s_per_epoch": min(seconds),
        "trial_bins_per_s": n_train * shapes["n_steps"] / median,
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # kB on Linux
        "epoch_seconds": seconds,
        "shapes": shapes,
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "pytorch_lightning": pl.__version__,
                     "hydra": hydra.__version__, "omegaconf": omegaconf.__version__,
                     "torchmetrics": torchmetrics.__version__},
    }))


if __name__ == "__main__":
    main()
