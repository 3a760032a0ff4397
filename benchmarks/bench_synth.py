"""How long each synthetic dataset takes to generate at its registry size, and what its true rates
look like in the forward window.

For every synthetic built-in (or those named), in one process with one BLAS thread: the generator
itself (simulation, rates, Poisson spikes, in memory), then the whole `generate` (the same plus
writing the NWB files, truth file and manifest into a temporary folder), and the ratio of the
true rates' standard deviation across eval trials in the forward window to that inside the window
(val phase, 5 ms; the issue's measure of forward-window activity); then what the true rates and
the mean-rate null (each unit's mean training rate everywhere) score on every metric. Timing is
wall time: on a shared machine run it alone (`flock /tmp/nlb_heavy.lock ...`).

    .venv/bin/python benchmarks/bench_synth.py [DATASET ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

from nlb_suite.core.arrays import Rates, Tensors
from nlb_suite.datasets import BUILTIN, get_spec
from nlb_suite.datasets.synthetic import GENERATORS, generate
from nlb_suite.datasets.synthetic.common import generator_counts
from nlb_suite.scoring import Scores, score
from nlb_suite.tensors import make_targets, make_tensors, make_true_rates


def null_rates(tensors: Tensors) -> Rates:
    """Each unit's mean training rate in every bin."""
    heldin = np.nanmean(tensors.train_spikes_heldin, axis=(0, 1))
    heldout = np.nanmean(tensors.train_spikes_heldout, axis=(0, 1))

    def fill(n: int, bins: int, rates: np.ndarray) -> np.ndarray:
        return np.broadcast_to(rates, (n, bins, rates.size)).astype(np.float32)

    return Rates(fill(tensors.n_train, tensors.n_bins, heldin), fill(tensors.n_train, tensors.n_bins, heldout),
                 fill(tensors.n_eval, tensors.n_bins, heldin), fill(tensors.n_eval, tensors.n_bins, heldout),
                 fill(tensors.n_eval, tensors.n_forward, heldin), fill(tensors.n_eval, tensors.n_forward, heldout))


def scores_cells(scores: Scores) -> str:
    return " ".join(f"{value if value is not None else float('nan'):>6.3f}"
                    for value in (scores.co_bps, scores.fp_bps, scores.vel_r2, scores.psth_r2))


def truth_and_null(name: str, root: str) -> tuple[float, str, str]:
    """The forward-window sd ratio of the true rates, and the true rates' and the null's scores."""
    spec = get_spec(name)
    tensors = make_tensors(spec, "val", 5, root)
    truth = make_true_rates(spec, tensors, root)
    assert truth is not None
    inside = np.concatenate([truth.eval_rates_heldin, truth.eval_rates_heldout], axis=2).std(axis=0).mean()
    forward = np.concatenate([truth.eval_rates_heldin_forward, truth.eval_rates_heldout_forward], axis=2)
    targets = make_targets(spec, "val", 5, root)
    return (float(forward.std(axis=0).mean() / inside), scores_cells(score(truth, targets, n_boot=0)),
            scores_cells(score(null_rates(tensors), targets, n_boot=0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", default=[n for n, s in BUILTIN.items() if s.source == "synthetic"])
    args = parser.parse_args()
    metrics = " ".join(f"{name:>6}" for name in ("co-bps", "fp-bps", "vel R2", "PSTH"))
    print(f"{'dataset':<26} {'trials':>6} {'units':>5} {'generator s':>11} {'generate s':>10} {'fwd/in sd':>9}  "
          f"true: {metrics}  null: {metrics}")
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
            ratio, true_scores, null_scores = truth_and_null(name, root)
            print(f"{name:<26} {trials:>6} {units:>5} {in_memory:>11.1f} {whole:>10.1f} {ratio:>9.2f}  "
                  f"      {true_scores}        {null_scores}", flush=True)


if __name__ == "__main__":
    main()
