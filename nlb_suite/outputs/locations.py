"""Where the suite writes, relative to the current folder unless a command says otherwise. Kept
free of heavy imports: the command-line parser reads these for its help texts."""

from __future__ import annotations

from pathlib import Path

SUBMISSIONS = Path("submissions")
# Models that checkpoint their training do so here, one folder per run name and hyperparameters.
CHECKPOINTS = Path("runs/checkpoints")
REPORTS = Path("reports")
