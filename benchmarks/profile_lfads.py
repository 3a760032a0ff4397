"""Where an LFADS training step spends its time, part by part, at the two configurations of
`bench_lfads.py` (mc_maze at 20 ms, mc_maze_small at 5 ms), beside each part's floating-point work.

One training step is the Trainer's (coordinated dropout, encoders, posterior sample, controller +
generator unroll, readout, Poisson loss, KL and L2 terms, backward, gradient clipping, AdamW),
on one batch of random Poisson spikes of the configuration's shapes. The backward pass is cut at
the encoders' outputs and run in two phases, so the encoders' backward is timed apart from the
decoder's; the work done is the same as in `Trainer._train_step`. Each part is timed with
`time.process_time` (CPU seconds of this process: other processes on shared cores stretch wall
time, much less CPU time) over --steps steps after two warm-up steps, and the median is printed
with its share of the step. GFLOP counts the multiply-adds of the matrix products (x2) from the
shapes: together with the seconds it says how close each part runs to the machine's rate for
products of those shapes.

    python benchmarks/profile_lfads.py [--steps 8] [--threads 1] [--config mc_maze_small_5ms]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from bench_lfads import CONFIGS, BenchConfig

from nlb_suite.models.lfads.augment import block_gradients, coordinated_dropout
from nlb_suite.models.lfads.config import LFADSConfig
from nlb_suite.models.lfads.losses import poisson_nll
from nlb_suite.models.lfads.network import LFADSNetwork
from nlb_suite.models.lfads.train import Batch, Trainer

PARTS = ["coordinated dropout", "encoders forward", "decoder forward (unroll)", "readout, loss, KL, L2",
         "backward: loss to encoder outputs (unroll)", "backward: encoders", "clip + AdamW"]


def gflop(config: BenchConfig) -> dict[str, float]:
    """Matrix-product work (2 x multiply-adds, GFLOP) per training step of the encoders and the
    unroll, forward and backward (the backward does twice the forward's products, except the
    encoders' input products, whose input gradient is not needed: the input is data)."""
    s = config.sizes
    batch, bins, steps = config.batch_size, config.n_bins, config.n_bins + config.n_forward
    units, n_in = config.n_heldin + config.n_heldout, config.n_heldin
    cells = [s["ic_enc_dim"]] * 2 + [s["ci_enc_dim"]] * 2
    enc_in = sum(2 * batch * bins * n_in * 3 * h for h in cells)
    enc_hh = sum(2 * batch * bins * h * 3 * h for h in cells)
    con, gen, fac, co, ci = s["con_dim"], s["gen_dim"], s["fac_dim"], s["co_dim"], 2 * s["ci_enc_dim"]
    # The controller's CI product runs over the observed bins only (the CI is zero after them).
    unroll = (2 * batch * bins * 3 * con * ci
              + 2 * batch * steps * (3 * con * (fac + con) + 2 * co * con + 3 * gen * (co + gen) + fac * gen))
    readout = 2 * batch * steps * fac * units
    return {"encoders forward": (enc_in + enc_hh) / 1e9,
            "decoder forward (unroll)": unroll / 1e9,
            "readout, loss, KL, L2": readout / 1e9,
            "backward: loss to encoder outputs (unroll)": (2 * unroll + 2 * readout) / 1e9,
            "backward: encoders": (enc_in + 2 * enc_hh) / 1e9}


def profile(config: BenchConfig, steps: int) -> dict[str, list[float]]:
    torch.manual_seed(0)
    cfg = LFADSConfig(**config.sizes, batch_size=config.batch_size, dropout=0.3, cd_rate=0.3)
    units = config.n_heldin + config.n_heldout
    n_steps = config.n_bins + config.n_forward
    rng = np.random.default_rng(0)
    rates = rng.uniform(0.05, 0.5, (config.batch_size, n_steps, units))
    target = torch.from_numpy(rng.poisson(rates).astype(np.float32))
    observed = torch.ones_like(target, dtype=torch.bool)
    batch = Batch(target, observed, observed)
    net = LFADSNetwork(cfg, config.n_heldin, units)
    trainer = Trainer(net, cfg, config.n_heldin, config.n_bins, identity={})
    seconds: dict[str, list[float]] = defaultdict(list)

    @contextmanager
    def part(name: str) -> Iterator[None]:
        started = time.process_time()
        yield
        seconds[name].append(time.process_time() - started)

    def step() -> None:
        # Trainer._train_step, with the graph cut at the encoders' outputs.
        with part("coordinated dropout"):
            dropout = coordinated_dropout(batch.encoder_input(config.n_bins, config.n_heldin, cfg.sv_rate),
                                          cfg.cd_rate)
        with part("encoders forward"):
            encoded = net.encoder(dropout.inputs)
        cut = [encoded.ic_mean, encoded.ic_std, encoded.controller_input]
        leaves = [x.detach().requires_grad_() for x in cut if x is not None]
        ic_mean, ic_std, controller_input = (leaves + [None])[:3]
        with part("decoder forward (unroll)"):
            g0 = net.ic_prior.make_posterior(ic_mean, ic_std).rsample()
            noise = torch.randn(config.batch_size, n_steps, cfg.co_dim)
            decoded = net.decoder(g0, controller_input, n_steps, noise)
        with part("readout, loss, KL, L2"):
            log_rates = net.readout(decoded.factors)
            nll = block_gradients(poisson_nll(log_rates, batch.target), dropout.gradient_mask)
            recon = (nll * batch.trained).sum() / batch.trained.sum().clamp(min=1)
            kl_ic = cfg.kl_ic_scale * net.ic_prior.kl(ic_mean, ic_std, g0)
            assert net.co_prior is not None and decoded.co_mean is not None and decoded.co_std is not None
            assert decoded.inputs is not None
            kl_co = cfg.kl_co_scale * net.co_prior.kl(decoded.co_mean, decoded.co_std, decoded.inputs)
            l2 = net.recurrent_l2(cfg.l2_gen_scale, cfg.l2_con_scale)
            loss = cfg.loss_scale * (recon + 0.5 * l2 + 0.5 * (kl_ic + kl_co))
        trainer.optimizer.zero_grad(set_to_none=True)
        with part("backward: loss to encoder outputs (unroll)"):
            loss.backward()
        with part("backward: encoders"):
            torch.autograd.backward([x for x in cut if x is not None], [leaf.grad for leaf in leaves])
        with part("clip + AdamW"):
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
            trainer.optimizer.step()

    for _ in range(2):
        step()
    seconds.clear()
    for _ in range(steps):
        started = time.process_time()
        step()
        seconds["whole step"].append(time.process_time() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.config or list(CONFIGS):
        config = CONFIGS[name]
        seconds = profile(config, args.steps)
        work = gflop(config)
        whole = statistics.median(seconds["whole step"])
        print(f"\n{name}: batch {config.batch_size}, {config.n_bins} + {config.n_forward} bins, {args.threads} "
              f"thread(s), median CPU ms of {args.steps} steps")
        print(f"  {'part':44s} {'ms':>7s} {'share':>6s} {'GFLOP':>6s} {'GFLOP/s':>8s}")
        for label in PARTS:
            ms = 1e3 * statistics.median(seconds[label])
            flops = work.get(label)
            rate = f"{flops / ms * 1e3:8.1f}" if flops else ""
            print(f"  {label:44s} {ms:7.1f} {ms / whole / 1e3:6.1%} {flops or 0:6.2f} {rate}")
        total = sum(work.values())
        print(f"  {'whole step':44s} {1e3 * whole:7.1f} {'':6s} {total:6.2f} {total / whole:8.1f}")


if __name__ == "__main__":
    main()
