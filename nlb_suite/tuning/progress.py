"""A study's progress: one line per round (all members reported the same epoch: best and median
objective, the population's range of each searched hyperparameter), kept in `rounds.jsonl` in
the study folder for the report's figure, and the stopper that ends a study whose population
has stopped improving.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper
from tqdm import tqdm

from ..outputs.studies import ROUNDS_FILE, Round, read_rounds
from .space import Dimension


class PopulationLog(Callback):
    """Collects every trial's results by training iteration; when all running members have
    reported an iteration, writes that round (a line on stderr and in `rounds.jsonl`)."""

    def __init__(self, folder: Path, space: tuple[Dimension, ...], minimize: bool, per_trial: bool = False,
                 write: Callable[[str], None] | None = None, total: int | None = None):
        self.folder = folder
        self.per_trial = per_trial  # a random search: one line per finished trial, best so far
        self.space = space
        self.minimize = minimize
        self.write = write or _to_stderr
        self.rounds: list[Round] = read_rounds(folder)
        self._pending: dict[int, dict[str, dict[str, Any]]] = {}
        self.total = total  # rounds (or trials) expected: a bar on a terminal
        self._bar: Any = None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__, _bar=None)  # Ray pickles its callbacks; a bar does not pickle

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled with a restored study: the rounds on disk are the truth, not the pickled ones.
        self.__dict__.update(state)
        self.rounds = read_rounds(self.folder)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        if self.per_trial:
            return  # a random search's trial is written when it ends (ASHA has it report every epoch)
        entry = self._entry(trial, result)
        step = int(result.get("training_iteration", 0))
        if any(done.iteration == step for done in self.rounds):
            return  # a round already written (a resumed study repeats the last one)
        members = self._pending.setdefault(step, {})
        members[trial.trial_id] = entry
        running = [t for t in trials if t.status not in ("ERROR", "TERMINATED") or t.trial_id in members]
        if len(members) >= len(running):
            self._close(step, self._pending.pop(step))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        # Finished, or stopped early by ASHA: its last result is the trial's (epoch: how far it got).
        if self.per_trial and trial.last_result:
            self._close_trial(trial.trial_id, self._entry(trial, trial.last_result))

    def _entry(self, trial: Any, result: dict[str, Any]) -> dict[str, Any]:
        # The values the result was trained with (a PBT round may already have changed trial.config).
        config = result.get("config") or trial.config
        return {"objective": result.get("objective"), "epoch": result.get("epoch"),
                **{dim.name: config.get(dim.name) for dim in self.space}}

    def _close_trial(self, trial_id: str, entry: dict[str, Any]) -> None:
        if entry["objective"] is None:
            return
        scores = [r.members[k]["objective"] for r in self.rounds for k in r.members] + [entry["objective"]]
        best = min(scores) if self.minimize else max(scores)
        self._append(Round(len(self.rounds) + 1, len(self.rounds) + 1, float(best), float(statistics.median(scores)),
                           {trial_id: entry}))

    def _close(self, step: int, members: dict[str, dict[str, Any]]) -> None:
        scores = [m["objective"] for m in members.values() if m["objective"] is not None]
        if not scores:
            return
        best = min(scores) if self.minimize else max(scores)
        epochs = [m["epoch"] for m in members.values() if m.get("epoch") is not None]
        self._append(Round(step, int(max(epochs)) if epochs else step, float(best),
                           float(statistics.median(scores)), members))

    def _append(self, done: Round) -> None:
        self.rounds.append(done)
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / ROUNDS_FILE).open("a") as file:
            file.write(json.dumps(asdict(done)) + "\n")
        line = round_line(done, self.space)
        if self.write is _to_stderr and self.total and sys.stderr.isatty():
            if self._bar is None:
                self._bar = tqdm(total=self.total, initial=len(self.rounds) - 1, desc="study", unit="round",
                                 file=sys.stderr, dynamic_ncols=True)
            self._bar.write(line, file=sys.stderr)
            self._bar.update(1)
        else:
            self.write(line)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def round_line(done: Round, space: tuple[Dimension, ...]) -> str:
    ranges = []
    for dim in space:
        values = [m[dim.name] for m in done.members.values() if m.get(dim.name) is not None]
        if not values:
            continue
        if dim.choices is not None:
            ranges.append(f"{dim.name} {sorted(set(map(str, values)))}")
        else:
            ranges.append(f"{dim.name} {min(values):.3g}..{max(values):.3g}")
    if len(done.members) == 1:  # a random search's trial
        (entry,) = done.members.values()
        return (f"trial {done.iteration:3d}  objective {entry['objective']:.5f}  best so far {done.best:.5f}  "
                + "  ".join(f"{dim.name} {_short(entry.get(dim.name))}" for dim in space))
    return (f"round {done.iteration:3d}  epoch {done.epoch:4d}  best {done.best:.5f}  median {done.median:.5f}  "
            f"({len(done.members)} members)  " + "  ".join(ranges))


class PlateauStopper(Stopper):
    """Stops the whole study when the best objective of the last `patience` rounds is not better
    than the best before them by `min_improvement` (relative)."""

    def __init__(self, log: PopulationLog, patience: int, min_improvement: float):
        self.log, self.patience, self.min_improvement = log, patience, min_improvement

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        rounds = self.log.rounds
        if len(rounds) <= self.patience:
            return False
        before = [r.best for r in rounds[:-self.patience]]
        recent = [r.best for r in rounds[-self.patience:]]
        if self.log.minimize:
            reference, latest = min(before), min(recent)
            return latest > reference - self.min_improvement * abs(reference)
        reference, latest = max(before), max(recent)
        return latest < reference + self.min_improvement * abs(reference)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
