"""How long each synthetic dataset takes to generate at its registry size, and what its true rates
look like in the forward window.

For every synthetic built-in (or those named), in one process with one BLAS thread: the generator
itself (simulation, rates, Poisson spikes, in memory), then the whole `generate` (the same plus
writing the NWB files, truth file and manifest into a temporary folder), and the ratio of the
true rates' standard deviation across eval trials in the forward window to that inside the window
(val phase, 5 ms; the issue's measure of forward-window activity). Timing is wall time: on a
shared machine run it alone (`flock /tmp/nlb_heavy.lock ...`).

    .venv/bin/python benchmarks/bench_synth.py [DATASET ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

from nlb_suite.datasets import BUILTIN, get_spec
from nlb_suite.datasets.synthetic import GENERATORS, generate
from nlb_suite.datasets.synthetic.common import generator_counts
from nlb_suite.tensors import make_tensors, make_true_rates


def forward_ratio(name: str, root: str) -> float:
    spec = get_spec(name)
    tensors = make_tensors(spec, "val", 5, root)
    truth = make_true_rates(spec, tensors, root)
    assert truth is not None
    inside = np.concatenate([truth.eval_rates_heldin, truth.eval_rates_heldout], axis=2).std(axis=0).mean()
    forward = np.concatenate([truth.eval_rates_heldin_forward, truth.eval_rates_heldout_forward], axis=2)
    return float(forward.std(axis=0).mean() / inside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=[n for n, s in BUILTIN.items() if s.source == "synthetic"])
    args = parser.parse_args()
    print(f"{'dataset':<26} {'trials':>6} {'units':>5} {'generator s':>11} {'generate s':>10} {'fwd/in sd':>9}")
    with threadpool_limits(1), tempfile.TemporaryDirectory() as root:
        for name in args.datasets:
            spec = get_spec(name)
            assert spec.generator is not None
            counts = generator_counts(spec)
            seed = int(dict(spec.generator_args).get("seed", 0))
            started = time.perf_counter()
            GENERATORS[spec.generator](spec, seed)
            in_memory = time.perf_counter() - started
            started = time.perf_counter()
            generate(spec, root)
            whole = time.perf_counter() - started
            trials = counts.train_trials + counts.val_trials + counts.test_trials
            units = counts.heldin_units + counts.heldout_units
            print(f"{name:<26} {trials:>6} {units:>5} {in_memory:>11.1f} {whole:>10.1f} "
                  f"{forward_ratio(name, root):>9.2f}", flush=True)


if __name__ == "__main__":
    main()
