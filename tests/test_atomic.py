"""Writes land whole or not at all, with ordinary permissions."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nlb_suite.core.atomic import atomic_path, write_text_atomic


def test_file_appears_with_default_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "sub" / "table.md", "hello")
    finally:
        os.umask(mask)
    assert path.read_text() == "hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["table.md"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "results.h5"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as temporary:
            temporary.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.h5"]


def _old(path: Path) -> Path:
    """Age a file past the time a live writer could leave it untouched."""
    os.utime(path, (0, 0))
    return path


def test_a_temporary_left_by_a_killed_writer_goes_at_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "sub.h5"
    code = ("import os, signal, sys\nfrom nlb_suite.core.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as t:\n    t.write_text('half')\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    process = subprocess.run([sys.executable, "-c", code, str(path)])
    assert process.returncode == -signal.SIGKILL
    (orphan,) = tmp_path.iterdir()
    assert orphan.name.startswith(".sub.h5.") and orphan.read_text() == "half"
    _old(orphan)

    write_text_atomic(path, "whole")

    assert [p.name for p in tmp_path.iterdir()] == ["sub.h5"] and path.read_text() == "whole"


def test_only_orphans_of_this_file_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "sub.h5"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(dead.stdout)
    names = {
        f".sub.h5.{gone}.old.tmp": False,  # an orphan: removed
        f".sub.h5.{gone}.new.tmp": True,  # its process is gone, but it was written to a moment ago
        f".sub.h5.{os.getppid()}.live.tmp": True,  # a live writer's
        f".sub.h5.{os.getpid()}.mine.tmp": True,  # another thread of this process
        ".sub.h5.abc.tmp": True,  # not named by a writer of this version
        f".other.h5.{gone}.x.tmp": True,  # another file's
    }
    for name in names:
        (tmp_path / name).write_text("being written")
        if not name.endswith(".new.tmp"):
            _old(tmp_path / name)

    write_text_atomic(path, "whole")

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["sub.h5", *(n for n, kept in names.items() if kept)])
