"""Runs under nlb_tools 0.0.4's own pinned environment (Python 3.10, pandas 1.3.4): makes the
benchmark's tensors for one dataset folder, phase and bin size, and saves them to an .npz file.

    python nlb_reference.py DATA NLB_DATASET_NAME BIN_MS PHASE OUT.npz [--skip-psth] [--params=FILE.json]

DATA is the folder holding a dataset's train and test NWB files (nlb_tools loads both, as for
the real datasets), or, with PHASE `test-inputs`, a lone test file. Only nlb_tools' public
functions are called. `--params` gives their `update_params` (top-level keys of the dataset's
PARAMS entry replaced), for datasets whose settings no NLB'21 dataset has.
"""

import json
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def load_params(path: str) -> dict:
    """update_params from JSON; window ranges become the tuples nlb_tools expects."""
    def tuples(value):
        if isinstance(value, dict):
            return {k: tuple(v) if k == "align_range" else tuples(v) for k, v in value.items()}
        return value
    with open(path) as f:
        return tuples(json.load(f))


def main(folder: str, name: str, bin_ms: int, phase: str, out: str, psth: bool, params: dict | None) -> None:
    from nlb_tools.make_tensors import make_eval_input_tensors, make_eval_target_tensors, make_train_input_tensors
    from nlb_tools.nwb_interface import NWBDataset

    started = time.perf_counter()
    dataset = NWBDataset(folder)
    dataset.resample(bin_ms)
    arrays = {}
    if phase == "test-inputs":
        arrays.update(make_eval_input_tensors(dataset, name, "test", update_params=params, save_file=False))
        arrays["seconds"] = np.array(time.perf_counter() - started)
        np.savez(out, **arrays)
        return
    train_split, eval_split = ("train", "val") if phase == "val" else (["train", "val"], "test")
    arrays.update(make_train_input_tensors(dataset, name, train_split, update_params=params, save_file=False,
                                           include_behavior=True, include_forward_pred=True))
    arrays.update(make_eval_input_tensors(dataset, name, eval_split, update_params=params, save_file=False))
    if phase == "val":
        targets = make_eval_target_tensors(dataset, name, train_split, eval_split, update_params=params,
                                           save_file=False, include_psth=psth)
        for key, value in next(iter(targets.values())).items():
            if key.endswith("cond_idx"):
                for i, idx in enumerate(value):
                    arrays[f"target_{key}_{i}"] = np.asarray(idx, dtype=np.int64)
            else:
                arrays[f"target_{key}"] = value
    arrays["seconds"] = np.array(time.perf_counter() - started)
    np.savez(out, **arrays)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    params_files = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--params=")]
    main(args[0], args[1], int(args[2]), args[3], args[4], psth="--skip-psth" not in sys.argv,
         params=load_params(params_files[0]) if params_files else None)
