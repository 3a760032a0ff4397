"""LFADS training speed against lfads-torch, at the two configurations of issue 6.

Each configuration runs in a fresh subprocess (so its peak resident memory, ru_maxrss, is its
own) with 2 torch threads, on random Poisson spikes of the real datasets' shapes, through the
real `LFADS.fit`. Throughput is trial-bins per second of training: training trials x (observed +
forward bins) / seconds of one training epoch (validation excluded, as in the reference figures;
the first epoch is a warm-up). The median epoch is the headline; the fastest epoch is printed
beside it because on shared cores other processes stretch some epochs many times over.

    python benchmarks/bench_lfads.py [--epochs N] [--threads 2]

The lfads-torch figures were measured with its own clipped-GRU loop and training step on this
kind of machine with 2 threads (issue 6); lfads-torch cannot be installed here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class BenchConfig:
    name: str
    n_trials: int
    n_bins: int
    n_forward: int
    n_heldin: int
    n_heldout: int
    batch_size: int
    sizes: dict[str, int]
    reference_trial_bins_per_s: float
    reference_s_per_epoch: float
    reference_peak_gb: float


CONFIGS = {
    "mc_maze_20ms": BenchConfig(
        "mc_maze_20ms", n_trials=1721, n_bins=35, n_forward=10, n_heldin=137, n_heldout=45, batch_size=256,
        sizes=dict(ic_enc_dim=64, ci_enc_dim=64, con_dim=64, co_dim=4, ic_dim=64, gen_dim=200, fac_dim=100),
        reference_trial_bins_per_s=17_900, reference_s_per_epoch=3.9, reference_peak_gb=1.0,
    ),
    "mc_maze_small_5ms": BenchConfig(
        "mc_maze_small_5ms", n_trials=75, n_bins=140, n_forward=40, n_heldin=107, n_heldout=35, batch_size=64,
        sizes=dict(ic_enc_dim=100, ci_enc_dim=80, con_dim=80, co_dim=4, ic_dim=100, gen_dim=100, fac_dim=40),
        reference_trial_bins_per_s=11_000, reference_s_per_epoch=1.05, reference_peak_gb=0.8,
    ),
}


@dataclass
class Measurement:
    config: str
    n_train_trials: int
    s_per_epoch: float  # median epoch
    best_s_per_epoch: float  # fastest epoch
    trial_bins_per_s: float  # at the median epoch
    peak_gb: float


def measure(config: BenchConfig, epochs: int, threads: int) -> Measurement:
    """Train for 1 + `epochs` epochs in this process, with `threads` torch threads, and time them."""
    from nlb_suite.core.arrays import Tensors
    from nlb_suite.models.lfads import LFADS

    rng = np.random.default_rng(0)
    units = config.n_heldin + config.n_heldout
    spikes = np.empty((config.n_trials, config.n_bins + config.n_forward, units), np.float32)
    for trial in spikes:  # one trial at a time: the data's float64 draws would dominate peak memory
        trial[:] = rng.poisson(rng.uniform(0.05, 0.5, trial.shape))
    observed, forward = spikes[:, : config.n_bins], spikes[:, config.n_bins:]
    tensors = Tensors(
        dataset=config.name, phase="val", bin_ms=5,
        train_spikes_heldin=observed[..., : config.n_heldin], train_spikes_heldout=observed[..., config.n_heldin:],
        train_spikes_heldin_forward=forward[..., : config.n_heldin],
        train_spikes_heldout_forward=forward[..., config.n_heldin:],
        eval_spikes_heldin=observed[:8, :, : config.n_heldin],
    )
    model = LFADS(**config.sizes, batch_size=config.batch_size, max_epochs=1 + epochs, log_every=0,
                  device="cpu", dropout=0.3, cd_rate=0.3, threads=threads)
    model.fit(tensors)
    epochs_seconds = [record.train_seconds for record in model.history_[1:]]
    seconds = statistics.median(epochs_seconds)
    n_train = config.n_trials - round(model.valid_fraction * config.n_trials)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
    return Measurement(config.name, n_train, seconds, min(epochs_seconds),
                       n_train * (config.n_bins + config.n_forward) / seconds, peak_gb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="measured epochs after one warm-up epoch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append",
                        help="run only this configuration (repeatable)")
    parser.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asdict(measure(CONFIGS[args.child], args.epochs, args.threads))))
        return
    print(f"LFADS training throughput, {args.threads} torch threads, {args.epochs} measured epochs")
    for name in args.config or list(CONFIGS):
        config = CONFIGS[name]
        load_before = os.getloadavg()[0]
        child = subprocess.run(
            [sys.executable, __file__, "--child", name, "--epochs", str(args.epochs), "--threads", str(args.threads)],
            check=True, capture_output=True, text=True,
        )
        result = Measurement(**json.loads(child.stdout.strip().splitlines()[-1]))
        load_after = os.getloadavg()[0]
        print(f"\n{name}: {config.n_trials} trials ({result.n_train_trials} trained), "
              f"{config.n_bins} + {config.n_forward} bins, {config.n_heldin} -> "
              f"{config.n_heldin + config.n_heldout} units, batch {config.batch_size}")
        print(f"  trial-bins/s  {result.trial_bins_per_s:10,.0f}   lfads-torch {config.reference_trial_bins_per_s:,.0f}"
              f"   ratio {result.trial_bins_per_s / config.reference_trial_bins_per_s:.2f}x")
        print(f"  s/epoch       {result.s_per_epoch:10.2f}   lfads-torch {config.reference_s_per_epoch:.2f}"
              f"   (fastest epoch {result.best_s_per_epoch:.2f} s: "
              f"{config.reference_s_per_epoch / result.best_s_per_epoch:.2f}x)")
        print(f"  peak memory   {result.peak_gb:10.2f} GB  lfads-torch {config.reference_peak_gb:.1f} GB")
        print(f"  load average  {load_before:.2f} before, {load_after:.2f} after  "
              f"(1-min, {os.cpu_count()} CPUs; other processes slow every figure above)")


if __name__ == "__main__":
    main()
