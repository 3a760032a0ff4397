"""Files appear whole or not at all: everything the suite writes goes through `atomic_path`;
and what a file holds, by its sha256 (`file_sha256`)."""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path in `path`'s folder to write to; when the block ends normally it replaces
    `path` in one rename, when it raises (or is interrupted) it is removed and `path` is untouched.
    The temporary file exists, empty, when the block starts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path, suffix)
    # The writer's process id in the name tells a later writer whether this temporary is an
    # orphan (its writer was killed with SIGKILL, which no `except` sees). A lock would say so
    # more directly, but HDF5 takes its own lock on the files it creates and the two collide.
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# A writer keeps writing into its temporary; one untouched for this long, whose process is gone,
# is an orphan even if its process id has been reused since (or belongs to another host).
ORPHAN_AGE_S = 60.0


def _remove_orphans(path: Path, suffix: str) -> None:
    """Remove the temporaries of `path` that killed writers left behind."""
    prefix = f".{path.name}."
    for other in path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        pid = other.name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            if time.time() - other.stat().st_mtime >= ORPHAN_AGE_S:
                other.unlink()
        except OSError:
            continue  # gone meanwhile, or not ours to remove


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)
