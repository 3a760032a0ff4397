"""NWB -> all tensors and targets (PSTHs included): nlb_suite against nlb_tools 0.0.4, beside the
raw-read floor.

Generates synthetic MC_Maze-layout files at the MC_Maze_Large size (~700 trials, 162 units) and
at the full MC_Maze size (2,869 trials, 182 units, 1 kHz behaviour, a 620 MB train file), and
synth_rtt and synth_rsg (MC_RTT's and DMFC_RSG's tensor definitions), then times the whole
val-phase path at 5 ms, each side in a fresh process, and prints wall time (interpreter start and
imports included; ours also without them), peak memory (RSS of the largest process) and the
ratios: nlb_tools / ours, and ours / the raw read. The raw read is h5py reading, in this process,
the arrays the tensors need (spike times and their index, observation intervals, the units'
ids and held-out flags, the trials table, the one behaviour series the dataset bins), best of
three, with the files in the page cache as they are for the timed runs.

nlb_tools runs in its pinned Python 3.10 environment (../shared/tools/nlb_tools_env.sh, built in
--nlb-env on first use, a few minutes); at the full size it needs more than 24 GB and is killed,
so it runs there only with --nlb-full. Ours runs --repeats times (fastest and median printed);
nlb_tools once. The machine's load average is printed beside the figures.

    .venv/bin/python benchmarks/bench_tensors.py [--data-dir DIR] [--sizes large full rtt rsg]
        [--nlb-env DIR] [--nlb-full] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import statistics
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
import json, sys, time
started = time.perf_counter()
from nlb_suite.datasets import get_spec
from nlb_suite.tensors import make_tensors, make_targets
imported = time.perf_counter()
spec = get_spec(sys.argv[1])
make_tensors(spec, "val", 5, sys.argv[2])
make_targets(spec, "val", 5, sys.argv[2])
print(json.dumps({"imports": imported - started, "work": time.perf_counter() - imported}))
"""


@dataclass
class Measurement:
    seconds: float
    peak_gb: float
    ok: bool
    work_seconds: float | None = None  # ours: after the imports


def measure(command: list[str]) -> Measurement:
    """Run `command` in a fresh wrapper process that reports its child's wall time and peak RSS."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'peak_kb': peak, 'rc': rc}))\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    work = next((json.loads(line)["work"] for line in lines[:-1] if line.startswith('{"imports"')), None)
    return Measurement(report["seconds"], report["peak_kb"] / 1024**2, report["rc"] == 0, work)


def load_average() -> str:
    try:
        return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load average unknown"


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


def raw_read_seconds(paths: list[Path], behavior_field: str | None, repeats: int = 3) -> float:
    """The floor: reading every array the tensors need (spike times and their index, observation
    intervals, the units' ids and held-out flags, the trials table, the behaviour series the
    dataset bins) raw with h5py, in this process; best of `repeats` (the files are in the page
    cache after generation, as they are for the timed runs). Other behaviour series (MC_Maze's
    files also hold cursor, eye and hand positions) are not read, by nlb_suite nor here."""
    import h5py

    def read(path: Path) -> None:
        with h5py.File(path, "r") as f:
            for name in ("spike_times", "spike_times_index", "obs_intervals", "obs_intervals_index", "id",
                         "heldout"):
                if name in f["units"]:
                    f["units"][name][()]
            for item in f["intervals/trials"].values():
                item[()]
            series = f.get(f"processing/behavior/{behavior_field}") if behavior_field else None
            if series is not None:
                for item in series.values():
                    item[()]

    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for path in paths:
            read(path)
        best = min(best, time.perf_counter() - started)
    return best


def nlb_python(env_dir: Path) -> Path | None:
    done = subprocess.run(["bash", str(NLB_ENV_SCRIPT), str(env_dir)], capture_output=True, text=True)
    return Path(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "nlb_suite_bench")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["large", "full", "rtt", "rsg"])
    parser.add_argument("--nlb-env", type=Path, default=REPO / ".venv-nlb-tools",
                        help="folder of nlb_tools' Python 3.10 environment (built there if absent)")
    parser.add_argument("--nlb-full", action="store_true", help="also run nlb_tools at the full size")
    parser.add_argument("--skip-nlb", action="store_true", help="time nlb_suite and the raw read only")
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs of ours per size")
    args = parser.parse_args()

    from nlb_suite.data.paths import dataset_files
    from nlb_suite.datasets import get_spec
    from nlb_suite.datasets.synthetic import ensure_generated

    reference_python = None if args.skip_nlb else nlb_python(args.nlb_env)
    print(f"{'size':<6} {'who':<10} {'seconds':>8} {'peak GB':>8}")
    for size in args.sizes:
        ours_name, nlb_name = SIZES[size]
        spec = get_spec(ours_name)
        started = time.perf_counter()
        ensure_generated(spec, args.data_dir)
        files = dataset_files(spec, args.data_dir)
        print(f"# {ours_name}: train file {files.train.stat().st_size / 1e6:.0f} MB "
              f"(generated or found in {time.perf_counter() - started:.1f} s); {load_average()}")
        floor = raw_read_seconds([files.train, files.test], spec.behavior_field)
        print(f"{size:<6} {'raw read':<10} {floor:>8.3f}          (h5py, the arrays the tensors need: the floor)")
        runs = [measure([sys.executable, "-c", OURS, ours_name, str(args.data_dir)]) for _ in range(args.repeats)]
        ours = min(runs, key=lambda run: run.seconds)
        median = statistics.median(run.seconds for run in runs)
        work = min((run.work_seconds for run in runs if run.work_seconds is not None), default=float("nan"))
        print(f"{size:<6} {'nlb_suite':<10} {ours.seconds:>8.2f} {max(r.peak_gb for r in runs):>8.2f}"
              f"{'' if all(r.ok for r in runs) else '  FAILED'}  (fastest of {len(runs)}, median {median:.2f} s; "
              f"{ours.seconds / floor:.0f}x the raw read; {work:.2f} s and {work / floor:.0f}x after the imports)")
        if reference_python is None:
            print(f"{size:<6} {'nlb_tools':<10} skipped: {'--skip-nlb' if args.skip_nlb else 'no Python 3.10 environment for nlb_tools'}")
            continue
        if size == "full" and not args.nlb_full:
            print(f"{size:<6} {'nlb_tools':<10} skipped: needs more than 24 GB (run with --nlb-full)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.npz"
            print(f"# nlb_tools on {ours_name}; {load_average()}")
            theirs = measure([str(reference_python), str(REFERENCE_SCRIPT), str(files.train.parent), nlb_name, "5",
                              "val", str(out)])
            status = "" if theirs.ok else "  FAILED (killed or crashed)"
            print(f"{size:<6} {'nlb_tools':<10} {theirs.seconds:>8.2f} {theirs.peak_gb:>8.2f}{status}")
            if theirs.ok:
                print(f"{size:<6} {'identical':<10} {compare(spec, args.data_dir, out)}")
        if theirs.ok and ours.ok:
            print(f"{size:<6} {'ratio':<10} {theirs.seconds / ours.seconds:>7.1f}x {ours.peak_gb / theirs.peak_gb:>7.2f}"
                  f"  (speed-up, fastest run; {theirs.seconds / median:.1f}x at our median; our peak memory as a "
                  "fraction of theirs)")


if __name__ == "__main__":
    main()
