"""`nlb-suite import-trials`: your own trial arrays -> NLB-layout NWB files + a dataset TOML.

Reads spike counts in 1 ms bins from a MATLAB struct array (one element per trial, a units x ms
matrix and a condition label per trial, e.g. the Yu et al. 2009 PMd recordings) or from an .npz
file (`spikes`: trials x units x ms, `conditions`: one label per trial), writes the train and
test NWB files, and writes `<out>/<name>.toml` for `--dataset`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..core.spec import SpecError
from ..datasets.toml_spec import write_spec_toml
from ..datasets.trial_arrays import write_trial_arrays

NAME = "import-trials"
HELP = "turn trial arrays (.mat struct array or .npz) into NLB-layout NWB files and a dataset TOML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help=".mat (struct array) or .npz file")
    parser.add_argument("--name", required=True, help="dataset name")
    parser.add_argument("--out", type=Path, required=True, help="folder for the NWB files and the TOML")
    parser.add_argument("--struct", default="D", help="MATLAB struct array variable (default: D)")
    parser.add_argument("--spikes-field", default="data", help="struct field with units x ms counts (default: data)")
    parser.add_argument("--condition-field", default="condition", help="struct field with the condition label")
    parser.add_argument("--align-ms", type=int, default=0, help="alignment event, ms into each trial")
    parser.add_argument("--align-field", default="align_time", help="trials column of the alignment event")
    parser.add_argument("--window", type=int, nargs=2, required=True, metavar=("START", "STOP"),
                        help="evaluation window in ms around the alignment event")
    parser.add_argument("--forward-ms", type=int, default=0, help="forward-prediction window after it")
    parser.add_argument("--heldout-fraction", type=float, default=0.25,
                        help="fraction of units held out, drawn once with --seed (default: 0.25)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out units and the trial split")


def read_trial_arrays(path: Path, struct: str, spikes_field: str, condition_field: str) -> tuple[np.ndarray, np.ndarray]:
    """(spikes (trials, units, ms), conditions (trials,)) from a .mat struct array or an .npz."""
    if not path.is_file():
        raise SpecError(f"trial arrays not found: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as saved:
            missing = [k for k in ("spikes", "conditions") if k not in saved]
            if missing:
                raise SpecError(f"{path}: lacks array(s) {missing}")
            return saved["spikes"], saved["conditions"]
    from scipy.io import loadmat

    try:
        contents = loadmat(path, squeeze_me=True)
    except (ValueError, OSError) as err:
        raise SpecError(f"{path}: not a readable MATLAB file ({err})") from None
    if struct not in contents:
        raise SpecError(f"{path}: no variable {struct!r}; it holds {[k for k in contents if not k.startswith('__')]}")
    trials = np.atleast_1d(contents[struct])
    names = trials.dtype.names or ()
    missing = [f for f in (spikes_field, condition_field) if f not in names]
    if missing:
        raise SpecError(f"{path}: struct {struct!r} lacks field(s) {missing}; it has {list(names)}")
    spikes = np.stack([np.asarray(t[spikes_field]) for t in trials])
    conditions = np.array([t[condition_field] for t in trials])
    return spikes, conditions


def run(args: argparse.Namespace) -> int:
    spikes, conditions = read_trial_arrays(args.source, args.struct, args.spikes_field, args.condition_field)
    if not 0 < args.heldout_fraction < 1:
        raise SpecError(f"--heldout-fraction must be between 0 and 1, not {args.heldout_fraction}")
    n_units = spikes.shape[1]
    rng = np.random.default_rng(args.seed)
    heldout = np.sort(rng.choice(n_units, size=max(1, round(args.heldout_fraction * n_units)), replace=False))
    spec = write_trial_arrays(
        args.out, args.name, spikes, conditions, heldout_units=heldout, align_ms=args.align_ms,
        window_ms=tuple(args.window), forward_ms=args.forward_ms, align_field=args.align_field, seed=args.seed,
    )
    toml_path = write_spec_toml(spec, args.out / f"{args.name}.toml")
    print(f"{spikes.shape[0]} trials x {n_units} units x {spikes.shape[2]} ms; held-out units {heldout.tolist()}")
    print(f"train file: {spec.train.path}\ntest file:  {spec.test.path}\ndataset:    {toml_path}")
    return 0
