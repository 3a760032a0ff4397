"""NDT training speed: ours (`NDT.fit`, attention by `scaled_dot_product_attention` with a boolean
band mask) against the obvious way to write the same model, a plain `nn.TransformerEncoder`
(pre-norm `nn.TransformerEncoderLayer`s, batch_first, an additive float mask for the context
window), at the MC_Maze 5 ms shape (1721 training trials, 140 + 40 bins, 137 -> 182 units) and
the mc_maze_small 5 ms shape (75 trials, 140 + 40 bins, 107 -> 142 units), with NDT's reference
sizes (4 layers, 2 heads, feed-forward 128, width = held-in units rounded up to the heads, batch
64, dropouts 0.3).

Every measurement runs in a fresh subprocess (its peak resident memory, ru_maxrss, is its own)
with the same torch threads (2 unless told), on random Poisson spikes of the shape. Both sides
train the same way per batch: the same masking (`models/ndt/masking.py`, 25% of bins, BERT
replacement), the same masked Poisson loss, AdamW, gradient clipping; ours through the real
trainer (whose per-epoch `train_seconds` exclude validation), the reference through a loop
here. Throughput is trained trial-bins per second: trials trained in an epoch x (observed +
forward bins) / seconds of the epoch. The first epoch is a warm-up; the fastest later epoch is
the headline (shared cores stretch some epochs).

    python benchmarks/bench_ndt.py [--threads 2] [--epochs 3] [--shapes mc_maze mc_maze_small]
                                    [--context -1 50]

What was tried for the attention, on this machine's CPU (see docs/readme/ndt.md for figures):
SDPA with no mask when the context is unlimited (PyTorch picks its fused CPU kernel), SDPA with a
boolean band mask for a window; nn.TransformerEncoder's own fast path does not apply in training.
"""

from __future__ import annotations

import argparse
import json
import resource
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
    epoch_seconds: list[float]
    trained_trials: int
    steps: int
    peak_gb: float

    @property
    def best(self) -> float:
        later = self.epoch_seconds[1:] or self.epoch_seconds
        return min(later)

    @property
    def trial_bins_per_s(self) -> float:
        return self.trained_trials * self.steps / self.best


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


def measure_ours(shape: str, context: int, epochs: int, threads: int) -> Measurement:
    from nlb_suite.models.ndt import NDT

    tensors = _tensors(shape)
    model = NDT(**SETTINGS, context_backward=context, context_forward=context, max_epochs=epochs,
                patience=epochs, threads=threads, device="cpu")
    model.fit(tensors)
    n_valid = round(VALID_FRACTION * tensors.n_train)
    return Measurement("ours", shape, context, [row.train_seconds for row in model.history_],
                       tensors.n_train - n_valid, tensors.n_bins + tensors.n_forward, _peak_gb())


def measure_reference(shape: str, context: int, epochs: int, threads: int) -> Measurement:
    import torch
    from torch import nn

    from nlb_suite.models.ndt.masking import counted_entries, masked_bins, masked_loss, replace_masked
    from nlb_suite.models.ndt.train import network_input

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n_train, n_bins, n_forward, n_heldin, n_heldout = SHAPES[shape]
    steps = n_bins + n_forward
    width = -(-n_heldin // SETTINGS["n_heads"]) * SETTINGS["n_heads"]
    tensors = _tensors(shape)
    target = torch.cat([torch.cat([torch.from_numpy(tensors.train_spikes_heldin),
                                   torch.from_numpy(tensors.train_spikes_heldout)], 2),
                        torch.cat([torch.from_numpy(tensors.train_spikes_heldin_forward),
                                   torch.from_numpy(tensors.train_spikes_heldout_forward)], 2)], 1)
    observed = torch.ones_like(target, dtype=torch.bool)
    n_used = n_train - round(VALID_FRACTION * n_train)

    class Reference(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layer = nn.TransformerEncoderLayer(width, SETTINGS["n_heads"], SETTINGS["ff_dim"], SETTINGS["dropout"],
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, SETTINGS["n_layers"], norm=nn.LayerNorm(width),
                                                 enable_nested_tensor=False)
            self.position = nn.Parameter(torch.randn(steps, width) * 0.1)
            self.dropout = nn.Dropout(SETTINGS["dropout"])
            self.readout = nn.Linear(width, n_heldin + n_heldout)
            mask = None
            if context >= 0:
                i, j = torch.arange(steps)[:, None], torch.arange(steps)[None, :]
                mask = torch.zeros(steps, steps).masked_fill((j < i - context) | (j > i + context), float("-inf"))
            self.register_buffer("mask", mask)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = nn.functional.pad(x, (0, width - n_heldin)) * width ** 0.5 + self.position
            return self.readout(self.dropout(self.encoder(self.dropout(x), mask=self.mask)))

    network = Reference()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=5e-5)
    n_batches = max(1, round(n_used / SETTINGS["batch_size"]))
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        network.train()
        for index in torch.randperm(n_used).tensor_split(n_batches):
            batch, seen = target[index], observed[index]
            masked = masked_bins(len(index), n_bins, SETTINGS["mask_ratio"], 1)
            inputs = network_input(batch, n_bins, n_heldin)
            inputs[:, :n_bins] = replace_masked(inputs[:, :n_bins], masked, 0.8, 0.5)
            loss = masked_loss(network(inputs), batch, counted_entries(seen, masked, n_bins, n_heldin))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 200.0)
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    return Measurement("nn.TransformerEncoder", shape, context, seconds, n_used, steps, _peak_gb())


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def _run_one(side: str, shape: str, context: int, epochs: int, threads: int) -> Measurement:
    done = subprocess.run([sys.executable, __file__, "--one", side, "--shapes", shape, "--context", str(context),
                           "--epochs", str(epochs), "--threads", str(threads)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} {shape}: failed\n{done.stderr[-2000:]}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first is a warm-up)")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--context", nargs="+", type=int, default=[-1, 50],
                        help="context each way in bins (-1: unlimited)")
    parser.add_argument("--one", choices=("ours", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        measure = measure_ours if args.one == "ours" else measure_reference
        result = measure(args.shapes[0], args.context[0], args.epochs, args.threads)
        print(json.dumps(asdict(result)))
        return
    print(f"NDT training, {args.threads} threads, {args.epochs} epochs each (first = warm-up), fastest later epoch")
    print(f"{'shape':14s} {'context':>7s} {'side':22s} {'s/epoch':>8s} {'trial-bins/s':>13s} {'peak GB':>8s}")
    for shape in args.shapes:
        for context in args.context:
            pair = [_run_one(side, shape, context, args.epochs, args.threads) for side in ("ours", "reference")]
            for m in pair:
                print(f"{shape:14s} {context:7d} {m.side:22s} {m.best:8.2f} {m.trial_bins_per_s:13,.0f} "
                      f"{m.peak_gb:8.2f}", flush=True)
            ours, reference = pair
            print(f"{'':14s} {'':7s} ours / reference: speed {reference.best / ours.best:.2f}x, "
                  f"peak memory {ours.peak_gb / reference.peak_gb:.2f}x", flush=True)


if __name__ == "__main__":
    main()
