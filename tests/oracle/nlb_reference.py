"""Runs under nlb_tools 0.0.4's own pinned environment (Python 3.10, pandas 1.3.4): makes the
benchmark's tensors for one dataset folder, phase and bin size, and saves them to an .npz file.

    python nlb_reference.py DATA NLB_DATASET_NAME BIN_MS PHASE OUT.npz [--skip-psth]

DATA is the folder holding a dataset's train and test NWB files (nlb_tools loads both, as for
the real datasets), or, with PHASE `test-inputs`, a lone test file. Only nlb_tools' public
functions are called.
"""

import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def main(folder: str, name: str, bin_ms: int, phase: str, out: str, psth: bool) -> None:
    from nlb_tools.make_tensors import make_eval_input_tensors, make_eval_target_tensors, make_train_input_tensors
    from nlb_tools.nwb_interface import NWBDataset

    started = time.perf_counter()
    dataset = NWBDataset(folder)
    dataset.resample(bin_ms)
    arrays = {}
    if phase == "test-inputs":
        arrays.update(make_eval_input_tensors(dataset, name, "test", save_file=False))
        arrays["seconds"] = np.array(time.perf_counter() - started)
        np.savez(out, **arrays)
        return
    train_split, eval_split = ("train", "val") if phase == "val" else (["train", "val"], "test")
    arrays.update(make_train_input_tensors(dataset, name, train_split, save_file=False,
                                           include_behavior=True, include_forward_pred=True))
    arrays.update(make_eval_input_tensors(dataset, name, eval_split, save_file=False))
    if phase == "val":
        targets = make_eval_target_tensors(dataset, name, train_split, eval_split, save_file=False,
                                           include_psth=psth)
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
    main(args[0], args[1], int(args[2]), args[3], args[4], psth="--skip-psth" not in sys.argv)
