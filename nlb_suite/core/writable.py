"""Checks, made before any work, that a run's outputs can be written where they are to go.

A run that fits for an hour and then finds its submission folder to be a file, or its results
store to be a folder, has wasted the hour and may leave a submission without its record. These
checks create nothing: they walk up to the first path that exists and ask whether the rest can
be made there. What they cannot foresee (a full disk, permissions changed while a run works)
still fails when the file is written, and the atomic writes leave the old file whole.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import NlbSuiteError


class OutputLocationError(NlbSuiteError):
    """An output path that cannot be written: a file where a folder must go, or the reverse, or
    a folder the user may not write into."""


def check_folder(folder: str | Path, what: str) -> Path:
    """`folder` if it is, or can be made as, a folder the suite may write into; else an
    OutputLocationError naming `what` it is for ('the submissions folder', ...). Creates nothing."""
    folder = Path(folder)
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if os.path.lexists(existing) and not existing.is_dir():
        blocker = "it is a file" if existing == folder else f"{existing} is a file"
        raise OutputLocationError(f"cannot use {folder} as {what}: {blocker}; give another folder or move "
                                  "the file away")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputLocationError(f"cannot use {folder} as {what}: no permission to write into {existing}")
    return folder


def check_file(path: str | Path, what: str, *, append: bool = False) -> Path:
    """`path` if a file can be written there; else an OutputLocationError naming `what` it is.
    A file is replaced through a temporary file beside it (`core.atomic`), so its folder must be
    writable; with `append`, an existing file needs only to be writable itself. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise OutputLocationError(f"cannot write {what} to {path}: it is a folder; give a file path")
    exists = os.path.lexists(path)
    if exists and not os.access(path, os.W_OK):
        raise OutputLocationError(f"cannot write {what} to {path}: no permission to write it")
    if not (append and exists):
        check_folder(path.parent, f"the folder of {what}")
    return path
