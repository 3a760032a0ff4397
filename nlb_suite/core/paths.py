"""Output paths that cannot leave their folder.

Every file the suite names after something it was given (a dataset name, a run name, a model
name) is put in its folder through `inside`: submissions, eval-target files, checkpoints, runs
and reports. A name is one plain path component, so `inside(folder, name)` is always directly
in `folder`, whatever `name` holds. Paths the user types (`-o FILE`, `--submissions DIR`) are
the user's choice and are not passed through it.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import NlbSuiteError


class UnsafePathError(NlbSuiteError, ValueError):
    """A file name that would put a file outside its folder."""


def inside(folder: str | Path, name: str) -> Path:
    """`folder / name`, or an UnsafePathError when `name` is not a single plain file name.

    Refused: an empty name, `.` and `..`, absolute names, any '/' or '\\' (on every platform, so
    that a name that is safe here is safe everywhere), a NUL byte, and a drive prefix ('C:x')."""
    problem = _problem(name)
    if problem:
        raise UnsafePathError(f"cannot write {name!r} into {folder}: {problem}; it must be a "
                              "plain file name with no folder part")
    return Path(folder) / name


def _problem(name: object) -> str | None:
    if not isinstance(name, str):
        return f"a file name must be text, not {type(name).__name__}"
    if name in ("", ".", ".."):
        return "not a file name"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    if "\0" in name:
        return "it holds a NUL byte"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive:
        return "it is an absolute path"
    return None
