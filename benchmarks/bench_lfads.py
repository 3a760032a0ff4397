"""LFADS training speed, ours against lfads-torch itself, side by side, at the two configurations
of issue 6 (mc_maze at 20 ms, mc_maze_small at 5 ms).

Every measurement runs in a fresh subprocess (so its peak resident memory, ru_maxrss, is its own)
with the same number of torch threads (2 unless told), on random Poisson spikes of the datasets'
shapes. Ours trains through the real `LFADS.fit`; lfads-torch through its own model, data module
and pytorch-lightning Trainer, built from its hydra configs (`configs/single.yaml` with
model=nlb_mc_maze or nlb_mc_maze_small) by `lfads_torch_driver.py` in lfads-torch's own Python
3.11 environment. With --peer lfads-torch the two sides alternate, configuration by
configuration, for --rounds rounds (the order flips every round), so a busy spell on shared cores
lands on both.

Both sides get the same trials: of the n trials, ours holds out round(valid_fraction * n) for
validation and trains on the rest each epoch; lfads-torch is given that same split as its
train/valid files and trains on the full batches of its training trials (its loader drops the
last partial batch). Throughput is trial-bins per second of training: the trials each side
actually trained in an epoch x (observed + forward bins) / seconds of that epoch, validation
excluded on both sides; the first epoch is a warm-up. The median epoch is the headline; the
fastest epoch is printed beside it because on shared cores other processes stretch some epochs.

    python benchmarks/bench_lfads.py [--peer lfads-torch] [--peer-src DIR] [--rounds 2] [--epochs 4]

lfads-torch (github.com/arsedler9/lfads-torch, measured at commit 007a555) is licensed for
internal non-commercial research only and may not be redistributed, so it is not bundled: pass a
checkout you have with --peer-src DIR or the environment variable NLB_SUITE_LFADS_TORCH_SRC. Its
environment is built on first use in a cache folder (--peer-env, default
~/.cache/nlb_suite/peers/lfads-torch-py311): a Python 3.11 venv with PEER_REQUIREMENTS below and
lfads-torch installed from the checkout with --no-deps (its own pins, torch 1.13 and
pytorch-lightning 1.6, do not install on Python 3.11), and reused while the checkout is unchanged.
Without a checkout the script says so and prints ours alone. (A mirror without lfads-torch's
datasets/*.h5 serves too: `git --git-dir=MIRROR archive 007a555 -- . ':(exclude)datasets' | tar -x`.)
`profile_lfads.py` shows where our training step spends its time, part by part.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "lfads_torch_driver.py"
PEER_NAME = "lfads-torch"
PEER_SRC_VARIABLE = "NLB_SUITE_LFADS_TORCH_SRC"
PEER_PYTHON = "python3.11"
# torch==2.13.0 is the CPU build on this machine's disk (a looser pin downloads a multi-GB CUDA
# build); the rest are the releases lfads-torch's code runs on with the driver's three shims.
# h5py and scikit-learn are imported by its data module.
PEER_REQUIREMENTS = ["torch==2.13.0", "pytorch-lightning>=2.6,<2.7", "hydra-core>=1.3,<1.4", "torchmetrics",
                     "h5py", "scikit-learn"]
VALID_FRACTION = 0.1  # LFADS' default: the share of trials ours holds out for validation


@dataclass(frozen=True)
class BenchConfig:
    name: str
    n_trials: int  # training trials of the NLB val phase, ours' validation trials among them
    n_bins: int
    n_forward: int
    n_heldin: int
    n_heldout: int
    batch_size: int
    sizes: dict[str, int]
    peer_model: str  # lfads-torch's configs/model/<name>.yaml and configs/datamodule/<name>.yaml
    peer_datamodule: str

    @property
    def n_valid(self) -> int:
        return round(VALID_FRACTION * self.n_trials)


CONFIGS = {
    "mc_maze_20ms": BenchConfig(
        "mc_maze_20ms", n_trials=1721, n_bins=35, n_forward=10, n_heldin=137, n_heldout=45, batch_size=256,
        sizes=dict(ic_enc_dim=64, ci_enc_dim=64, con_dim=64, co_dim=4, ic_dim=64, gen_dim=200, fac_dim=100),
        peer_model="nlb_mc_maze", peer_datamodule="nlb_mc_maze",
    ),
    "mc_maze_small_5ms": BenchConfig(
        "mc_maze_small_5ms", n_trials=75, n_bins=140, n_forward=40, n_heldin=107, n_heldout=35, batch_size=64,
        sizes=dict(ic_enc_dim=100, ci_enc_dim=80, con_dim=80, co_dim=4, ic_dim=100, gen_dim=100, fac_dim=40),
        peer_model="nlb_mc_maze_small", peer_datamodule="nlb_mc_maze_small",
    ),
}


@dataclass
class Measurement:
    config: str
    n_train_trials: int  # trials trained per epoch
    s_per_epoch: float  # median epoch
    best_s_per_epoch: float  # fastest epoch
    trial_bins_per_s: float  # at the median epoch
    peak_gb: float

    @classmethod
    def from_report(cls, report: dict) -> "Measurement":
        """From a child's JSON report, which may carry more keys."""
        return cls(**{f.name: report[f.name] for f in fields(cls)})


def measure(config: BenchConfig, epochs: int, threads: int) -> Measurement:
    """Train ours for 1 + `epochs` epochs in this process, with `threads` torch threads, and time them."""
    import resource

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
                  device="cpu", dropout=0.3, cd_rate=0.3, threads=threads, valid_fraction=VALID_FRACTION)
    model.fit(tensors)
    epochs_seconds = [record.train_seconds for record in model.history_[1:]]
    seconds = statistics.median(epochs_seconds)
    n_train = config.n_trials - config.n_valid
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
    return Measurement(config.name, n_train, seconds, min(epochs_seconds),
                       n_train * (config.n_bins + config.n_forward) / seconds, peak_gb)


# --- the peer ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    src: Path  # the lfads-torch checkout (its configs/ are read from here)
    python: Path  # its environment's interpreter
    versions: str


def peer_source(given: str | None) -> Path | None:
    """The lfads-torch checkout from --peer-src or the environment variable, if it looks like one."""
    path = given or os.environ.get(PEER_SRC_VARIABLE)
    if not path:
        return None
    src = Path(path).expanduser().resolve()
    if not (src / "lfads_torch" / "model.py").is_file() or not (src / "configs" / "single.yaml").is_file():
        print(f"{src}: not an lfads-torch checkout (no lfads_torch/model.py and configs/single.yaml)")
        return None
    return src


def default_peer_env() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "nlb_suite" / "peers" / "lfads-torch-py311"


def source_fingerprint(src: Path) -> str:
    """Hash of the checkout's package and set-up files: the installed copy is redone when it changes."""
    digest = hashlib.sha256()
    for path in sorted([src / "setup.py", *(src / "lfads_torch").rglob("*.py")]):
        digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _run_setup(command: list[str]) -> None:
    print("  $ " + shlex.join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        sys.exit(f"setting up lfads-torch's environment failed (exit {done.returncode}):\n{tail}")


def ensure_peer(src: Path, env: Path) -> Peer:
    """Build (or reuse) lfads-torch's environment in `env` and return how to run it."""
    python = env / "bin" / "python"
    marker = env / "nlb_suite_peer.json"
    wanted = {"src": str(src), "fingerprint": source_fingerprint(src), "requirements": PEER_REQUIREMENTS}
    installed = json.loads(marker.read_text()) if marker.is_file() else None
    if installed is None or installed.get("setup") != {k: wanted[k] for k in ("src", "fingerprint", "requirements")}:
        print(f"setting up lfads-torch's environment in {env} (once; reused while {src} is unchanged)")
        if not python.is_file():
            base = shutil.which(PEER_PYTHON)
            if base is None:
                sys.exit(f"lfads-torch needs {PEER_PYTHON} for its environment, and none is on PATH")
            _run_setup([base, "-m", "venv", str(env)])
        _run_setup([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS])
        _run_setup([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(src)])
        versions = subprocess.run(
            [str(python), "-c", "import torch, pytorch_lightning, hydra, torchmetrics; print("
             "f'torch {torch.__version__}, pytorch-lightning {pytorch_lightning.__version__}, "
             "hydra-core {hydra.__version__}, torchmetrics {torchmetrics.__version__}')"],
            check=True, capture_output=True, text=True).stdout.strip()
        installed = {"setup": wanted, "versions": versions}
        temporary = marker.with_suffix(".tmp")
        temporary.write_text(json.dumps(installed, indent=1))
        temporary.replace(marker)
    return Peer(src, python, installed["versions"])


def measure_peer(peer: Peer, config: BenchConfig, epochs: int, threads: int, workdir: Path) -> Measurement:
    command = [str(peer.python), str(DRIVER), "--src", str(peer.src), "--model", config.peer_model,
               "--datamodule", config.peer_datamodule, "--n-trials", str(config.n_trials),
               "--n-valid", str(config.n_valid), "--epochs", str(epochs), "--threads", str(threads),
               "--workdir", str(workdir)]
    done = subprocess.run(command, capture_output=True, text=True, env=_child_env(threads))
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:])
        sys.exit(f"lfads-torch failed on {config.name} (exit {done.returncode}):\n{tail}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    shapes = report["shapes"]
    ours = (config.n_bins, config.n_bins + config.n_forward, config.n_heldin,
            config.n_heldin + config.n_heldout, config.batch_size)
    theirs = (shapes["n_bins"], shapes["n_steps"], shapes["n_heldin"], shapes["n_units"], shapes["batch_size"])
    if ours != theirs:
        sys.exit(f"lfads-torch's {config.peer_model} config has (bins, steps, held-in, units, batch) = {theirs}, "
                 f"ours {ours}: not the same problem")
    return Measurement.from_report({**report, "config": config.name})


# --- ours in a child process ---------------------------------------------------------------------


def _child_env(threads: int) -> dict[str, str]:
    """Both sides' children see the same thread settings (torch.set_num_threads is called too)."""
    return os.environ | {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def measure_ours(config: BenchConfig, epochs: int, threads: int) -> Measurement:
    done = subprocess.run(
        [sys.executable, __file__, "--child", config.name, "--epochs", str(epochs), "--threads", str(threads)],
        capture_output=True, text=True, env=_child_env(threads),
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:])
        sys.exit(f"ours failed on {config.name} (exit {done.returncode}):\n{tail}")
    return Measurement.from_report(json.loads(done.stdout.strip().splitlines()[-1]))


# --- printing ------------------------------------------------------------------------------------


def _row(label: str, side: str, m: Measurement) -> str:
    return (f"  {label:18s} {side:12s} {m.s_per_epoch:6.2f} s ({m.best_s_per_epoch:5.2f})  {m.n_train_trials:5d}  "
            f"{m.trial_bins_per_s:11,.0f}  {m.peak_gb:6.2f}")


def _throughput(m: Measurement, steps: int, seconds: float) -> float:
    return m.n_train_trials * steps / seconds


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}x" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="measured epochs after one warm-up epoch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (with a peer)")
    parser.add_argument("--config", choices=sorted(CONFIGS), action="append",
                        help="run only this configuration (repeatable)")
    parser.add_argument("--peer", choices=[PEER_NAME], help="time lfads-torch side by side")
    parser.add_argument("--peer-src", help=f"lfads-torch checkout (default: ${PEER_SRC_VARIABLE})")
    parser.add_argument("--peer-env", type=Path, default=None,
                        help="lfads-torch's environment, built on first use (default: ~/.cache/nlb_suite/peers/...)")
    parser.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asdict(measure(CONFIGS[args.child], args.epochs, args.threads))))
        return

    peer = None
    if args.peer:
        src = peer_source(args.peer_src)
        if src is None:
            print(f"lfads-torch is not available: give a checkout with --peer-src DIR or ${PEER_SRC_VARIABLE}.\n"
                  "  Get one with `git clone https://github.com/arsedler9/lfads-torch` (measured at commit 007a555);\n"
                  "  its licence allows internal non-commercial research use only: do not redistribute it.\n"
                  "  Printing ours alone.\n")
        else:
            peer = ensure_peer(src, args.peer_env or default_peer_env())
            print(f"lfads-torch: {src} (files {source_fingerprint(src)}), {peer.versions}")
    import torch

    print(f"ours: torch {torch.__version__}")
    rounds = args.rounds if peer is not None else 1
    print(f"LFADS training throughput, {args.threads} torch threads, {args.epochs} measured epochs after a warm-up"
          + (f", {rounds} rounds alternating ours and lfads-torch (the order flips each round), each run a fresh "
             "process" if peer is not None else ""))
    names = args.config or list(CONFIGS)
    for name in names:
        config = CONFIGS[name]
        print(f"  {name}: {config.n_trials} trials, {config.n_bins} + {config.n_forward} bins, {config.n_heldin} -> "
              f"{config.n_heldin + config.n_heldout} units, batch {config.batch_size}; ours holds out "
              f"{config.n_valid} for validation" + (", lfads-torch is given the same split and drops its last "
                                                    "partial batch" if peer is not None else ""))
    print(f"\n  {'':18s} {'side':12s} s/epoch (fastest) trained trial-bins/s  peak GB")
    results: dict[str, list[tuple[Measurement, Measurement]]] = {name: [] for name in names}
    loads = [os.getloadavg()[0]]
    for round_index in range(rounds):
        if peer is not None:
            print(f"round {round_index + 1}")
        for name in names:
            config = CONFIGS[name]
            steps = config.n_bins + config.n_forward
            if peer is None:
                print(_row(name, "ours", measure_ours(config, args.epochs, args.threads)), flush=True)
                continue
            workdir = peer.python.parents[1] / "work"
            if round_index % 2 == 0:
                ours = measure_ours(config, args.epochs, args.threads)
                theirs = measure_peer(peer, config, args.epochs, args.threads, workdir)
            else:
                theirs = measure_peer(peer, config, args.epochs, args.threads, workdir)
                ours = measure_ours(config, args.epochs, args.threads)
            results[name].append((ours, theirs))
            at_fastest = (_throughput(ours, steps, ours.best_s_per_epoch)
                          / _throughput(theirs, steps, theirs.best_s_per_epoch))
            print(_row(name, "ours", ours))
            print(_row("", "lfads-torch", theirs))
            print(f"  {'':18s} ours / lfads-torch: throughput {ours.trial_bins_per_s / theirs.trial_bins_per_s:.2f}x "
                  f"(median epochs), {at_fastest:.2f}x (fastest); peak memory {ours.peak_gb / theirs.peak_gb:.2f}x",
                  flush=True)
        loads.append(os.getloadavg()[0])

    if peer is not None:
        print(f"\nover {rounds} rounds, ours / lfads-torch")
        for name in names:
            steps = CONFIGS[name].n_bins + CONFIGS[name].n_forward
            pairs = results[name]
            medians = [ours.trial_bins_per_s / theirs.trial_bins_per_s for ours, theirs in pairs]
            memory = [ours.peak_gb / theirs.peak_gb for ours, theirs in pairs]
            # Each side's fastest epoch of all rounds: the figure least stretched by other processes.
            best_ours = max(_throughput(ours, steps, ours.best_s_per_epoch) for ours, _ in pairs)
            best_theirs = max(_throughput(theirs, steps, theirs.best_s_per_epoch) for _, theirs in pairs)
            print(f"  {name:18s} throughput {_span(medians)} (median epochs of each round), "
                  f"{best_ours / best_theirs:.2f}x (fastest epochs: {best_ours:,.0f} against {best_theirs:,.0f} "
                  f"trial-bins/s); peak memory {_span(memory)}")
    print(f"\nload average (1-min, {os.cpu_count()} CPUs) " + ", ".join(f"{load:.2f}" for load in loads) +
          " at the start and after each round: other processes slow every figure above")


if __name__ == "__main__":
    main()
