"""What a tuning study keeps in its folder beside Ray's own files, defined once for the tuning
layer that writes it and the report that draws it: `rounds.jsonl` (the population after each
round: every member's objective and searched hyperparameters), `trials.json` (each trial at its
end, best first) and `best.toml`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROUNDS_FILE = "rounds.jsonl"
TRIALS_FILE = "trials.json"
STUDY_FILE = "study.json"
BEST_FILE = "best.toml"


@dataclass
class Round:
    """The population after one round: each member's objective and hyperparameters (a random
    search writes one round per finished trial, `best` the best so far)."""

    iteration: int
    epoch: int
    best: float
    median: float
    members: dict[str, dict[str, Any]]  # trial id -> {"objective": ..., "epoch": ..., hyperparameter: value}


def read_rounds(folder: Path) -> list[Round]:
    """The rounds written so far; none when the file is absent. A line cut short by a crash is
    skipped (it is rewritten when the study resumes)."""
    path = Path(folder) / ROUNDS_FILE
    if not path.exists():
        return []
    rounds = []
    for line in path.read_text().splitlines():
        try:
            rounds.append(Round(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return rounds


def read_trials(folder: Path) -> list[dict[str, Any]]:
    """`trials.json`: one dict per trial (trial_id, config, metrics, score, ...), best first."""
    try:
        data = json.loads((Path(folder) / TRIALS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [row for row in data if isinstance(row, dict)] if isinstance(data, list) else []


def read_study(folder: Path) -> dict[str, Any]:
    """`study.json`: model, dataset, method, settings, the searched space, wall time."""
    try:
        data = json.loads((Path(folder) / STUDY_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
