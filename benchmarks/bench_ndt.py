"""NDT training speed: ours (`NDT.fit`, attention by `scaled_dot_product_attention` with a boolean
band mask) against the obvious way to write the same model, a plain `nn.TransformerEncoder`
(pre-norm `nn.TransformerEncoderLayer`s, batch_first, an additive float mask for the context
window), at the MC_Maze 5 ms shape (1721 training trials, 140 + 40 bins, 137 -> 182 units) and
the mc_maze_small 5 ms shape (75 trials, 140 + 40 bins, 107 -> 142 units), with NDT's reference
sizes (4 layers, 2 heads, feed-forward 128, width = held-in units rounded up to the heads, batch
64, dropouts 0.3).

Every measurement runs in a fresh subprocess (its peak resident memory, ru_maxrss, is its own)
with the same torch threads (2 unless told), on random Poisson spikes of the full shape (all
training trials in memory). Both sides go through the same training step, here: the same
masking (`models/ndt/masking.py`, 25% of bins, BERT replacement), the same masked Poisson loss,
AdamW, gradient clipping; only the network differs (ours: `NDTNetwork`, the one `NDT.fit`
trains). Timed: `--batches` steps after 2 warm-up steps; the median step is the headline (shared
cores stretch some steps), s/epoch is it times the batches of a full epoch (MC_Maze: 24 of 64
trials, of the 1549 left after 10% validation), trial-bins/s the epoch's trials x (observed +
forward bins) / s/epoch. Validation is excluded. Whole epochs at the MC_Maze shape take minutes
each on 2 shared cores, hence steps rather than epochs.

    python benchmarks/bench_ndt.py [--threads 2] [--batches 12] [--rounds 2] [--shapes mc_maze mc_maze_small]
                                    [--context -1 50]

What was tried for the attention (`models/ndt/network.py`, `attention`): on this CPU
`scaled_dot_product_attention` is the fastest without dropout (its fused kernel; no mask for an
unlimited context, a boolean band mask for a window), but with dropout on the attention weights
its CPU path measured 1.3-4x slower than the explicit softmax-dropout-product (forward + backward
of one layer's attention at 64 x 2 heads x 180 bins x 69 dims, 2 threads: SDPA+dropout 0.8-3.2 s,
explicit 0.4-0.7 s, SDPA without dropout 0.2-0.3 s; the spread is other jobs on the cores), so
training with attention dropout takes the explicit path. nn.TransformerEncoder's own fused
"fast path" applies only at inference, not in training.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

SHAPES = {
    # name: (training trials, bins, forward bins, held-in units, held-out units)
    "mc_maze": (1721, 140, 40, 137, 45),
    "mc_maze_small": (75, 140, 40, 107, 35),
}
VALID_FRACTION = 0.1


@dataclass
class Measurement:
    side: str
    shape: str
    context: int
    batch_seconds: list[float]  # every timed batch, warm-up batches excluded
    n_batches: int  # batches in a full epoch
    trained_trials: int  # trials in a full epoch
    steps: int
    peak_gb: float

    @property
    def seconds_per_batch(self) -> float:
        return statistics.median(self.batch_seconds)

    @property
    def epoch_seconds(self) -> float:
        return self.seconds_per_batch * self.n_batches

    @property
    def trial_bins_per_s(self) -> float:
        return self.trained_trials * self.steps / self.epoch_seconds


def _tensors(shape: str):  # noqa: ANN202  (a Tensors; imported inside the subprocess)
    from nlb_suite.core.arrays import Tensors

    n_train, n_bins, n_forward, n_heldin, n_heldout = SHAPES[shape]
    rng = np.random.default_rng(0)

    def draw(trials: int, bins: int, units: int) -> np.ndarray:
        return rng.poisson(0.1, (trials, bins, units)).astype(np.float32)

    return Tensors(dataset=shape, phase="val", bin_ms=5,
                   train_spikes_heldin=draw(n_train, n_bins, n_heldin),
                   train_spikes_heldout=draw(n_train, n_bins, n_heldout),
                   train_spikes_heldin_forward=draw(n_train, n_forward, n_heldin),
                   train_spikes_heldout_forward=draw(n_train, n_forward, n_heldout),
                   eval_spikes_heldin=draw(8, n_bins, n_heldin))


SETTINGS = dict(n_layers=4, n_heads=2, ff_dim=128, batch_size=64, dropout=0.3, dropout_attention=0.3,
                dropout_embedding=0.3, dropout_rates=0.3, mask_ratio=0.25, max_mask_span=1, lr=1e-3,
                valid_fraction=VALID_FRACTION, log_every=0)


def _reference_network(width: int, n_heldin: int, n_outputs: int, steps: int, context: int):  # noqa: ANN202
    import torch
    from torch import nn

    class Reference(nn.Module):
        """The same model written with nn.TransformerEncoder."""

        def __init__(self) -> None:
            super().__init__()
            layer = nn.TransformerEncoderLayer(width, SETTINGS["n_heads"], SETTINGS["ff_dim"], SETTINGS["dropout"],
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, SETTINGS["n_layers"], norm=nn.LayerNorm(width),
                                                 enable_nested_tensor=False)
            self.position = nn.Parameter(torch.randn(steps, width) * 0.1)
            self.dropout = nn.Dropout(SETTINGS["dropout"])
            self.readout = nn.Linear(width, n_outputs)
            mask = None
            if context >= 0:
                i, j = torch.arange(steps)[:, None], torch.arange(steps)[None, :]
                mask = torch.zeros(steps, steps).masked_fill((j < i - context) | (j > i + context), float("-inf"))
            self.register_buffer("mask", mask)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = nn.functional.pad(x, (0, width - n_heldin)) * width ** 0.5 + self.position
            states = self.encoder(self.dropout(x), mask=self.mask)
            return self.readout(self.dropout(states)), states

    return Reference()


def measure(side: str, shape: str, context: int, batches: int, threads: int) -> Measurement:
    """`batches` training steps (after 2 warm-up steps) of one side at one shape, through the same
    loop: ours is the suite's `NDTNetwork`, the reference the nn.TransformerEncoder model."""
    import torch

    from nlb_suite.models.ndt import NDTConfig
    from nlb_suite.models.ndt.masking import counted_entries, masked_bins, masked_loss, replace_masked
    from nlb_suite.models.ndt.network import NDTNetwork, hidden_size
    from nlb_suite.models.ndt.train import network_input

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n_train, n_bins, n_forward, n_heldin, n_heldout = SHAPES[shape]
    steps = n_bins + n_forward
    config = NDTConfig(**SETTINGS, context_backward=context, context_forward=context, device="cpu")
    width = hidden_size(config, n_heldin)
    tensors = _tensors(shape)
    target = torch.cat([torch.cat([torch.from_numpy(tensors.train_spikes_heldin),
                                   torch.from_numpy(tensors.train_spikes_heldout)], 2),
                        torch.cat([torch.from_numpy(tensors.train_spikes_heldin_forward),
                                   torch.from_numpy(tensors.train_spikes_heldout_forward)], 2)], 1)
    observed = torch.ones_like(target, dtype=torch.bool)
    n_used = n_train - round(VALID_FRACTION * n_train)
    if side == "ours":
        network = NDTNetwork(config, n_heldin, n_heldin + n_heldout, steps)
    else:
        network = _reference_network(width, n_heldin, n_heldin + n_heldout, steps, context)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=5e-5)
    n_batches = max(1, round(n_used / SETTINGS["batch_size"]))
    network.train()
    seconds = []
    order = torch.randperm(n_used).tensor_split(n_batches)
    for number in range(batches + 2):
        index = order[number % n_batches]
        started = time.perf_counter()
        batch, seen = target[index], observed[index]
        masked = masked_bins(len(index), n_bins, SETTINGS["mask_ratio"], 1)
        inputs = network_input(batch, n_bins, n_heldin)
        inputs[:, :n_bins] = replace_masked(inputs[:, :n_bins], masked, 0.8, 0.5)
        log_rates, _ = network(inputs)
        loss = masked_loss(log_rates, batch, counted_entries(seen, masked, n_bins, n_heldin))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 200.0)
        optimizer.step()
        if number >= 2:
            seconds.append(time.perf_counter() - started)
    name = "ours" if side == "ours" else "nn.TransformerEncoder"
    return Measurement(name, shape, context, seconds, n_batches, n_used, steps, _peak_gb())


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def _run_one(side: str, shape: str, context: int, batches: int, threads: int) -> Measurement:
    done = subprocess.run([sys.executable, __file__, "--one", side, "--shapes", shape, "--context", str(context),
                           "--batches", str(batches), "--threads", str(threads)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} {shape}: failed\n{done.stderr[-2000:]}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=12, help="timed training steps per measurement (after 2 warm-up steps)")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per side, alternating")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--context", nargs="+", type=int, default=[-1, 50],
                        help="context each way in bins (-1: unlimited)")
    parser.add_argument("--one", choices=("ours", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = measure(args.one, args.shapes[0], args.context[0], args.batches, args.threads)
        print(json.dumps(asdict(result)))
        return
    print(f"NDT training, {args.threads} threads, median of {args.batches} steps after 2 warm-up steps, fastest of "
          f"{args.rounds} alternating rounds; s/epoch = that x batches per epoch")
    print(f"{'shape':14s} {'context':>7s} {'side':22s} {'s/batch':>8s} {'s/epoch':>8s} {'trial-bins/s':>13s} "
          f"{'peak GB':>8s}")
    for shape in args.shapes:
        for context in args.context:
            # Sides alternate, the order flipping every round, so a busy spell lands on both; each
            # side's fastest round is kept.
            rounds: dict[str, list[Measurement]] = {"ours": [], "reference": []}
            for number in range(args.rounds):
                for side in (("ours", "reference") if number % 2 == 0 else ("reference", "ours")):
                    rounds[side].append(_run_one(side, shape, context, args.batches, args.threads))
            pair = [min(rounds[side], key=lambda m: m.epoch_seconds) for side in ("ours", "reference")]
            for m in pair:
                print(f"{shape:14s} {context:7d} {m.side:22s} {m.seconds_per_batch:8.3f} {m.epoch_seconds:8.1f} "
                      f"{m.trial_bins_per_s:13,.0f} {m.peak_gb:8.2f}", flush=True)
            ours, reference = pair
            print(f"{'':14s} {'':7s} ours / reference: speed {reference.epoch_seconds / ours.epoch_seconds:.2f}x, "
                  f"peak memory {ours.peak_gb / reference.peak_gb:.2f}x", flush=True)


if __name__ == "__main__":
    main()
