"""Scoring speed: nlb_suite's `evaluate()` against nlb_tools 0.0.4's on one MC_Maze-sized submission.

Val-phase MC_Maze sizes at 5 ms: 1721 train / 574 eval trials x 140 bins x 182 units (137
held-in + 45 held-out), 40 forward bins, hand velocity (2 channels), PSTHs of 108 conditions.
The data are random but shaped like the real thing: smooth condition-specific latent
trajectories, log-linear rates of 2-40 Hz, Poisson spikes, velocity a noisy linear read-out of
the latents, and a "model" whose rates are the truth distorted by smooth per-trial noise.

Targets and submission are written to HDF5 once; each scorer then runs in a fresh process on
those files, which reports its wall time and its peak resident memory (ru_maxrss, imports
included). The script checks that both return the same numbers (within 1e-9), prints the
ratios, and also times the suite's `score()` with 1000 bootstrap resamples.

    nice .venv/bin/python benchmarks/bench_scoring.py [--nlb-python PYTHON] [--threads N] [--keep DIR]

By default nlb_tools runs in this interpreter from `.venv/nlb_tools_ref` (its evaluation code
works on current numpy / scikit-learn); `--nlb-python /path/to/python` runs it in another
environment that has nlb_tools installed (e.g. its pinned Python 3.10 one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from nlb_suite.core.arrays import EvalTargets

REPO = Path(__file__).resolve().parents[1]
NLB_TOOLS_REF = REPO / ".venv" / "nlb_tools_ref"
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Sizes:
    n_train: int = 1721
    n_eval: int = 574
    n_bins: int = 140
    n_forward: int = 40
    n_heldin: int = 137
    n_heldout: int = 45
    n_conditions: int = 108
    n_latents: int = 8


def make_data(sizes: Sizes, seed: int = 0) -> tuple[EvalTargets, dict[str, np.ndarray]]:
    """Targets and a model's six rate arrays (float32) at the given sizes."""
    rng = np.random.default_rng(seed)
    s = sizes
    n_trials, n_units, n_time = s.n_train + s.n_eval, s.n_heldin + s.n_heldout, s.n_bins + s.n_forward
    t = (np.arange(n_time, dtype=np.float32) / n_time)[None, :, None]
    frequencies = rng.uniform(0.5, 2.0, (1, 1, s.n_latents))
    phases = rng.uniform(0, 2 * np.pi, (s.n_conditions, 1, s.n_latents))
    condition_latents = np.sin(2 * np.pi * frequencies * t + phases)
    conditions = rng.integers(0, s.n_conditions, n_trials)
    trial_drift = 0.2 * np.sin(2 * np.pi * t * rng.uniform(0.2, 1.0, (n_trials, 1, 1)) + rng.uniform(0, 6, (n_trials, 1, 1)))
    latents = (condition_latents[conditions] + trial_drift).astype(np.float32)
    loading = rng.normal(0, 0.35, (s.n_latents, n_units)).astype(np.float32)
    baseline = np.log(rng.uniform(2, 40, n_units) * 0.005).astype(np.float32)  # 2-40 Hz in 5 ms bins
    true = np.exp(latents @ loading + baseline)
    spikes = np.empty_like(true)
    for start in range(0, n_trials, 256):
        spikes[start : start + 256] = rng.poisson(true[start : start + 256])
    velocity = latents[:, : s.n_bins] @ rng.normal(0, 120, (s.n_latents, 2)).astype(np.float32)
    velocity += rng.normal(0, 60, velocity.shape).astype(np.float32)
    model_noise = 0.25 * np.sin(2 * np.pi * t * rng.uniform(0.5, 3, (n_trials, 1, n_units)) + rng.uniform(0, 6, (n_trials, 1, n_units)))
    predicted = true * np.exp(model_noise.astype(np.float32))

    train, evals = slice(0, s.n_train), slice(s.n_train, n_trials)
    window, forward = slice(0, s.n_bins), slice(s.n_bins, n_time)
    heldin, heldout = slice(0, s.n_heldin), slice(s.n_heldin, n_units)
    psth = np.stack([true[conditions == c, window].mean(axis=0) if np.any(conditions == c)
                     else np.full((s.n_bins, n_units), np.nan, np.float32) for c in range(s.n_conditions)])
    targets = EvalTargets(
        dataset="mc_maze", bin_ms=5,
        eval_spikes_heldout=spikes[evals, window, heldout],
        eval_spikes_heldin_forward=spikes[evals, forward, heldin],
        eval_spikes_heldout_forward=spikes[evals, forward, heldout],
        train_behavior=velocity[train], eval_behavior=velocity[evals], psth=psth,
        train_cond_idx=[np.flatnonzero(conditions[train] == c) for c in range(s.n_conditions)],
        eval_cond_idx=[np.flatnonzero(conditions[evals] == c) for c in range(s.n_conditions)],
    )
    rates = {
        "train_rates_heldin": predicted[train, window, heldin], "train_rates_heldout": predicted[train, window, heldout],
        "eval_rates_heldin": predicted[evals, window, heldin], "eval_rates_heldout": predicted[evals, window, heldout],
        "eval_rates_heldin_forward": predicted[evals, forward, heldin],
        "eval_rates_heldout_forward": predicted[evals, forward, heldout],
    }
    return targets, rates


# Each scorer runs in a fresh interpreter; the code is self-contained so that it also runs in
# nlb_tools' own environment, where nlb_suite is not installed.
# Peak RSS is the process's VmHWM (Linux): unlike ru_maxrss it does not inherit the parent's
# peak across fork + exec.
_PEAK_RSS = """
def peak_rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
"""

_CHILD = _PEAK_RSS + """
import json, sys, time
sys.path.append({path!r})
from {module} import evaluate
rss_before = peak_rss_mb()
start = time.perf_counter()
result = evaluate({targets!r}, {submission!r})
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before,
                  "result": result}}, default=float))
"""

_BOOTSTRAP_CHILD = _PEAK_RSS + """
import json, time
import h5py
from nlb_suite.core.arrays import RATE_ARRAYS, Rates
from nlb_suite.scoring import read_targets, score, targets_from_dict
targets = targets_from_dict(read_targets({targets!r})["mc_maze"], "mc_maze", 5)
with h5py.File({submission!r}, "r") as file:
    rates = Rates(**{{name: file["mc_maze"][name][()] for name in RATE_ARRAYS}})
start = time.perf_counter()
scores = score(rates, targets, n_boot=1000, seed=0)
print(json.dumps({{"seconds": time.perf_counter() - start,
                  "peak_rss_mb": peak_rss_mb(), "scores": scores.to_dict()}}))
"""


def run_child(python: str, code: str, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads is not None:
        env.update({name: str(threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode != 0:
        sys.exit(f"scorer process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def max_difference(ours: list[dict], theirs: list[dict]) -> float:
    if [list(entry) for entry in ours] != [list(entry) for entry in theirs]:
        return float("inf")
    worst = 0.0
    for our_entry, their_entry in zip(ours, theirs):
        for split, metrics in their_entry.items():
            if list(our_entry[split]) != list(metrics):
                return float("inf")
            worst = max(worst, *(abs(our_entry[split][key] - value) for key, value in metrics.items()))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nlb-python", default=None, help="Python of an environment with nlb_tools installed")
    parser.add_argument("--keep", type=Path, default=None, help="write the HDF5 files here and keep them")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads of both scorers (default: the BLAS default; 1 avoids the thread "
                             "contention of an oversubscribed machine)")
    args = parser.parse_args()
    if args.nlb_python is None and not (NLB_TOOLS_REF / "nlb_tools").is_dir():
        sys.exit(f"nlb_tools not found at {NLB_TOOLS_REF}; run `make install` or pass --nlb-python")

    from nlb_suite.scoring import write_targets

    threads = "BLAS default" if args.threads is None else args.threads
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; BLAS threads: {threads}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        targets, rates = make_data(Sizes())
        targets_file = write_targets(folder / "mc_maze_val_targets.h5", {"mc_maze": targets})
        submission_file = folder / "mc_maze_submission.h5"
        with h5py.File(submission_file, "w") as file:
            for name, array in rates.items():
                file.create_dataset(f"mc_maze/{name}", data=array, dtype=np.float32)
        del targets, rates
        paths = {"targets": str(targets_file), "submission": str(submission_file)}

        nlb = run_child(args.nlb_python or sys.executable,
                        _CHILD.format(path=str(NLB_TOOLS_REF), module="nlb_tools.evaluation", **paths), args.threads)
        ours = run_child(sys.executable, _CHILD.format(path=str(REPO), module="nlb_suite.scoring", **paths), args.threads)
        boot = run_child(sys.executable, _BOOTSTRAP_CHILD.format(**paths), args.threads)

    difference = max_difference(ours["result"], nlb["result"])
    print(f"nlb_tools evaluate(): {nlb['seconds']:7.2f} s   peak RSS {nlb['peak_rss_mb']:7.0f} MB")
    print(f"nlb_suite evaluate(): {ours['seconds']:7.2f} s   peak RSS {ours['peak_rss_mb']:7.0f} MB")
    print(f"speed-up {nlb['seconds'] / ours['seconds']:.1f}x, peak memory ratio "
          f"{nlb['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x (RSS after imports: nlb_tools {nlb['rss_before_mb']:.0f} MB, "
          f"ours {ours['rss_before_mb']:.0f} MB)")
    print(f"results: {json.dumps(ours['result'])}")
    print(f"max |difference| to nlb_tools: {difference:.2e} ({'agree' if difference <= TOLERANCE else 'DISAGREE'} "
          f"within {TOLERANCE:g})")
    intervals = boot["scores"]["ci"]
    print(f"nlb_suite score() with 1000 bootstrap resamples: {boot['seconds']:.2f} s, peak RSS "
          f"{boot['peak_rss_mb']:.0f} MB; 95% CIs: "
          + ", ".join(f"{name} [{low:.4f}, {high:.4f}]" for name, (low, high) in intervals.items()))
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0 if difference <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
