"""NWB -> all tensors and targets (PSTHs included): nlb_suite against nlb_tools 0.0.4.

Generates synthetic MC_Maze-layout files at the MC_Maze_Large size (~700 trials, 162 units) and
at the full MC_Maze size (~2,900 trials, 182 units, 1 kHz behaviour), then times the whole
val-phase path at 5 ms, each side in a fresh process, and prints wall time, peak memory (RSS of
the largest process) and the ratios. nlb_tools runs in its pinned Python 3.10 environment
(../shared/tools/nlb_tools_env.sh); at the full size it needs more than 24 GB and is killed, so
it runs there only with --nlb-full.

    .venv/bin/python benchmarks/bench_tensors.py [--data-dir DIR] [--sizes large full rtt rsg] [--nlb-full]

`rtt` and `rsg` are synth_rtt and synth_rsg (MC_RTT's and DMFC_RSG's tensor definitions).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nlb_suite.datasets import DatasetSpec

REPO = Path(__file__).resolve().parents[1]
NLB_ENV_SCRIPT = REPO.parent / "shared" / "tools" / "nlb_tools_env.sh"
REFERENCE_SCRIPT = REPO / "tests" / "oracle" / "nlb_reference.py"
# The real dataset whose nlb_tools settings each synthetic size mimics.
SIZES = {"large": ("synth_maze_large", "mc_maze_large"), "full": ("synth_maze_full", "mc_maze"),
         # The MC_RTT and DMFC_RSG shapes (overlapping continuous windows; set..go segments, jitter).
         "rtt": ("synth_rtt", "mc_rtt"), "rsg": ("synth_rsg", "dmfc_rsg")}

OURS = """
import sys
from nlb_suite.datasets import get_spec
from nlb_suite.tensors import make_tensors, make_targets
spec = get_spec(sys.argv[1])
make_tensors(spec, "val", 5, sys.argv[2])
make_targets(spec, "val", 5, sys.argv[2])
"""


@dataclass
class Measurement:
    seconds: float
    peak_gb: float
    ok: bool


def measure(command: list[str]) -> Measurement:
    """Run `command` in a fresh wrapper process that reports its child's wall time and peak RSS."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'peak_kb': peak, 'rc': rc}))\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return Measurement(report["seconds"], report["peak_kb"] / 1024**2, report["rc"] == 0)


def compare(spec: "DatasetSpec", root: Path, reference: Path) -> str:
    """Whether our tensors equal nlb_tools' (spike counts exactly, the rest within 1e-6)."""
    import numpy as np

    from nlb_suite.tensors import make_targets, make_tensors

    tensors, targets = make_tensors(spec, "val", 5, root), make_targets(spec, "val", 5, root)
    with np.load(reference) as theirs:
        pairs = {name: (getattr(tensors, name), theirs[name]) for name in (
            "train_spikes_heldin", "train_spikes_heldout", "train_spikes_heldin_forward",
            "train_spikes_heldout_forward", "eval_spikes_heldin", "train_behavior")}
        pairs.update({f"target {name}": (getattr(targets, name), theirs[f"target_{name}"]) for name in (
            "eval_spikes_heldout", "eval_spikes_heldin_forward", "eval_spikes_heldout_forward", "eval_behavior",
            "psth") if f"target_{name}" in theirs})  # mc_rtt has no PSTH
    worst = {name: float(np.nanmax(np.abs(ours.astype(float) - ref.astype(float)))) if ours.shape == ref.shape
             and np.array_equal(np.isnan(ours), np.isnan(ref)) else float("inf") for name, (ours, ref) in pairs.items()}
    exact = all(worst[name] == 0 for name in worst if "spikes" in name)
    close = all(value <= 1e-6 for value in worst.values())
    return f"{'yes' if exact and close else 'NO'}: largest difference {max(worst.values()):.2e} ({len(worst)} arrays)"


def raw_read_seconds(paths: list[Path], repeats: int = 3) -> float:
    """The floor: reading every array the tensors need (spike times and their index, observation
    intervals, the trials table, behaviour) raw with h5py, in this process; best of `repeats`
    (the files are in the page cache after generation, as they are for the timed runs)."""
    import h5py

    def read(path: Path) -> None:
        with h5py.File(path, "r") as f:
            for name in ("spike_times", "spike_times_index", "obs_intervals", "obs_intervals_index", "id",
                         "heldout"):
                if name in f["units"]:
                    f["units"][name][()]
            for item in f["intervals/trials"].values():
                item[()]
            for series in f.get("processing/behavior", {}).values():
                if "data" in series:
                    series["data"][()]

    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for path in paths:
            read(path)
        best = min(best, time.perf_counter() - started)
    return best


def nlb_python() -> Path | None:
    done = subprocess.run(["bash", str(NLB_ENV_SCRIPT), str(REPO / ".venv-nlb-tools")], capture_output=True, text=True)
    return Path(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "nlb_suite_bench")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["large", "full"])
    parser.add_argument("--nlb-full", action="store_true", help="also run nlb_tools at the full size")
    args = parser.parse_args()

    from nlb_suite.data.paths import dataset_files
    from nlb_suite.datasets import get_spec
    from nlb_suite.datasets.synthetic import ensure_generated

    reference_python = nlb_python()
    print(f"{'size':<6} {'who':<10} {'seconds':>8} {'peak GB':>8}")
    for size in args.sizes:
        ours_name, nlb_name = SIZES[size]
        spec = get_spec(ours_name)
        started = time.perf_counter()
        ensure_generated(spec, args.data_dir)
        files = dataset_files(spec, args.data_dir)
        print(f"# {ours_name}: train file {files.train.stat().st_size / 1e6:.0f} MB "
              f"(generated or found in {time.perf_counter() - started:.1f} s)")
        floor = raw_read_seconds([files.train, files.test])
        print(f"{size:<6} {'raw read':<10} {floor:>8.3f}          (h5py, the arrays the tensors need: the floor)")
        ours = measure([sys.executable, "-c", OURS, ours_name, str(args.data_dir)])
        print(f"{size:<6} {'nlb_suite':<10} {ours.seconds:>8.2f} {ours.peak_gb:>8.2f}{'' if ours.ok else '  FAILED'}"
              f"  ({ours.seconds / floor:.0f}x the raw read, interpreter start and imports included)")
        if reference_python is None:
            print(f"{size:<6} {'nlb_tools':<10} skipped: no Python 3.10 environment for nlb_tools")
            continue
        if size == "full" and not args.nlb_full:
            print(f"{size:<6} {'nlb_tools':<10} skipped: needs more than 24 GB (run with --nlb-full)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.npz"
            theirs = measure([str(reference_python), str(REFERENCE_SCRIPT), str(files.train.parent), nlb_name, "5",
                              "val", str(out)])
            status = "" if theirs.ok else "  FAILED (killed or crashed)"
            print(f"{size:<6} {'nlb_tools':<10} {theirs.seconds:>8.2f} {theirs.peak_gb:>8.2f}{status}")
            if theirs.ok:
                print(f"{size:<6} {'identical':<10} {compare(spec, args.data_dir, out)}")
        if theirs.ok and ours.ok:
            print(f"{size:<6} {'ratio':<10} {theirs.seconds / ours.seconds:>7.1f}x {ours.peak_gb / theirs.peak_gb:>7.2f}"
                  "  (speed-up; our peak memory as a fraction of theirs)")


if __name__ == "__main__":
    main()
