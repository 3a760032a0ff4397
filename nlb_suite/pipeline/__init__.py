"""Runs: one evaluation run (`eval.py`: data -> tensors -> fit -> predict -> submission -> score
-> results record) and what builds on it."""

from .eval import (
    DEFAULT_CHECKPOINTS,
    DEFAULT_SUBMISSIONS,
    EvalRun,
    ModelSettings,
    configure,
    ensure_dataset,
    record_spec,
    run_eval,
    run_name,
    submission_path,
)

__all__ = ["DEFAULT_CHECKPOINTS", "DEFAULT_SUBMISSIONS", "EvalRun", "ModelSettings", "configure", "ensure_dataset",
           "record_spec", "run_eval", "run_name", "submission_path"]
