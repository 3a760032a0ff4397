"""Scoring: the official NLB metrics (nlb_tools 0.0.4 numbers, closed-form ridge CV), the
nlb-compatible `evaluate()`, bootstrap intervals, ground-truth metrics, eval-target files."""

from .bootstrap import Interval
from .evaluate import OFFICIAL_METRIC_KEYS, Scores, evaluate, score
from .metrics import ScoringError, bits_per_spike, psth_r2, velocity_r2
from .targets_io import TargetsFileError, read_targets, targets_from_dict, targets_to_dict, write_targets

__all__ = ["OFFICIAL_METRIC_KEYS", "Interval", "Scores", "ScoringError", "TargetsFileError", "bits_per_spike",
           "evaluate", "psth_r2", "read_targets", "score", "targets_from_dict", "targets_to_dict",
           "velocity_r2", "write_targets"]
