"""`nlb-suite tune`: a hyperparameter study on Ray Tune (AutoLFADS' PBT for lfads, a random search
for other models) over the `[search]` table of `baselines/<model>.toml`; the best member becomes
a normal submission and results record, its configuration `best.toml` in the study folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..outputs.locations import SUBMISSIONS
from ._common import add_bin, add_dataset, add_out, add_overrides, add_phase, add_results, chosen_dataset

NAME = "tune"
HELP = "tune a model's hyperparameters on Ray Tune (PBT for lfads) and record its best member"
STUDIES = Path("runs/tune")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", required=True, help="the model to tune (lfads: AutoLFADS' PBT)")
    add_dataset(parser)
    add_phase(parser)
    add_bin(parser)
    add_overrides(parser)
    parser.add_argument("--untuned", action="store_true",
                        help="start from the model's defaults and [default] table, ignoring the dataset's own tables")
    parser.add_argument("--population", type=int, default=None, metavar="N",
                        help="PBT members (or random-search trials at once); default from [search]")
    parser.add_argument("--samples", type=int, default=None, metavar="N", help="random search: trials in all")
    parser.add_argument("--epochs", type=int, default=None, metavar="N", help="PBT: each member's epochs")
    parser.add_argument("--interval", type=int, default=None, metavar="EPOCHS", dest="perturbation_interval",
                        help="PBT: epochs between perturbation rounds")
    parser.add_argument("--burn-in", type=int, default=None, metavar="EPOCHS", dest="burn_in",
                        help="PBT: epochs before the first round")
    parser.add_argument("--ensemble", type=int, default=0, metavar="K",
                        help="also record the average of the K best members' rates")
    parser.add_argument("--address", default=None,
                        help="a Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: $RAY_ADDRESS, else Ray "
                             "starts here); start one with `ray start --head`")
    parser.add_argument("--cpus", type=int, default=None, help="Ray started here: CPUs to use (default: all)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted study (Ray Tune's restore)")
    parser.add_argument("--studies", type=Path, default=STUDIES, metavar="DIR",
                        help=f"folder of study folders (default: {STUDIES})")
    add_out(parser, SUBMISSIONS, "folder for the submission files")
    add_results(parser)
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    parser.add_argument("--no-fetch", action="store_true", help="never download; fail if DANDI files are missing")


def run(args: argparse.Namespace) -> int:
    from ..pipeline.tune import run_tune

    settings = {name: getattr(args, name) for name in ("population", "samples", "epochs", "perturbation_interval",
                                                       "burn_in") if getattr(args, name) is not None}
    result = run_tune(
        chosen_dataset(args), args.model, phase=args.phase, bin_ms=args.bin_ms, overrides=args.overrides,
        use_tables=not args.untuned, settings=settings, root=args.data_dir, fetch=not args.no_fetch,
        submissions_dir=args.out, results=args.results, n_boot=args.n_boot, address=args.address, cpus=args.cpus,
        resume=args.resume, ensemble=args.ensemble, studies_dir=args.studies,
    )
    print(f"study:      {result.folder} ({len(result.study.trials)} trials, {result.study.wall_seconds:.0f} s)")
    print(f"best:       {result.best_config}  (rerun: nlb-suite eval --config {result.best_config})")
    for run_ in (result.best, result.ensemble):
        if run_ is None:
            continue
        print(f"submission: {run_.submission}")
        if run_.scores is not None:
            scores = run_.scores
            shown = "  ".join(f"{name} {getattr(scores, name):.4f}" for name in scores.METRICS
                              if isinstance(getattr(scores, name), float))
            print(f"  {run_.model}: {shown}")
    return 0
