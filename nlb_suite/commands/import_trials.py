"""`nlb-suite import-trials`: your own trial arrays -> NLB-layout NWB files + a dataset TOML.

Reads spike counts in 1 ms bins, and optionally behaviour, from a MATLAB struct array or an .npz
file (`datasets/trial_arrays.py`), writes the train and test NWB files, and writes
`<out>/<name>.toml` for `--dataset`. With behaviour (e.g. hand velocity) the dataset gets vel R2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import UsageError

NAME = "import-trials"
HELP = "turn trial arrays (.mat struct array or .npz) into NLB-layout NWB files and a dataset TOML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help=".mat (struct array) or .npz file")
    parser.add_argument("--name", required=True, help="dataset name (letters, digits, '_' and '-')")
    parser.add_argument("--out", "-o", type=Path, required=True, help="folder for the NWB files and the TOML")
    parser.add_argument("--struct", default="D", help="MATLAB struct array variable (default: D)")
    parser.add_argument("--spikes-field", default="data", help="struct field with units x ms counts (default: data)")
    parser.add_argument("--condition-field", default="condition", help="struct field with the condition label")
    parser.add_argument("--behavior-field", default=None,
                        help="behaviour at 1 ms, trials x ms x channels: an .npz array or a struct field "
                             "(ms x channels per trial); none by default")
    parser.add_argument("--behavior-name", default="hand_vel",
                        help="name of the behaviour series in the NWB file (default: hand_vel)")
    parser.add_argument("--behavior-columns", default=None, metavar="X,Y",
                        help="channel names, comma-separated (default: x,y for two channels)")
    parser.add_argument("--behavior-unit", default="unknown", help="unit of the behaviour (e.g. mm/s)")
    parser.add_argument("--behavior-lag-ms", type=int, default=0,
                        help="behaviour lags the spikes by this many ms when decoded (default: 0)")
    parser.add_argument("--align-ms", type=int, default=0, help="alignment event, ms into each trial")
    parser.add_argument("--align-field", default="align_time", help="trials column of the alignment event")
    parser.add_argument("--window", type=int, nargs=2, required=True, metavar=("START", "STOP"),
                        help="evaluation window in ms around the alignment event")
    parser.add_argument("--forward-ms", type=int, default=0, help="forward-prediction window after it")
    parser.add_argument("--heldout-fraction", type=float, default=0.25,
                        help="fraction of units held out, drawn once with --seed (default: 0.25)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out units and the trial split")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..core.paths import inside
    from ..datasets.toml_spec import write_spec_toml
    from ..datasets.trial_arrays import read_trial_arrays, write_trial_arrays

    if not 0 < args.heldout_fraction < 1:
        raise UsageError(f"--heldout-fraction must be between 0 and 1, not {args.heldout_fraction}")
    arrays = read_trial_arrays(args.source, args.struct, args.spikes_field, args.condition_field,
                               args.behavior_field)
    n_units = arrays.spikes.shape[1]
    rng = np.random.default_rng(args.seed)
    heldout = np.sort(rng.choice(n_units, size=max(1, round(args.heldout_fraction * n_units)), replace=False))
    columns = args.behavior_columns.split(",") if args.behavior_columns else None
    spec = write_trial_arrays(
        args.out, args.name, arrays.spikes, arrays.conditions, heldout_units=heldout, align_ms=args.align_ms,
        window_ms=tuple(args.window), forward_ms=args.forward_ms, align_field=args.align_field, seed=args.seed,
        behavior=arrays.behavior, behavior_name=args.behavior_name, behavior_columns=columns,
        behavior_unit=args.behavior_unit, behavior_lag_ms=args.behavior_lag_ms,
    )
    toml_path = write_spec_toml(spec, inside(args.out, f"{spec.name}.toml"))
    n_trials, _, n_ms = arrays.spikes.shape
    print(f"{n_trials} trials x {n_units} units x {n_ms} ms; held-out units {heldout.tolist()}"
          + (f"; behaviour {spec.behavior_field} ({arrays.behavior.shape[2]} channels)"
             if arrays.behavior is not None else ""))
    print(f"train file: {spec.train.path}\ntest file:  {spec.test.path}\ndataset:    {toml_path}")
    return 0
