"""The C++ time loops of the unroll (unroll.cpp), compiled on first use and cached.

The extension is built once per machine, PyTorch version and source (a hash of both names its
folder under ~/.cache/nlb_suite/torch_extensions, or $NLB_SUITE_EXTENSIONS), with the C++ compiler
and ninja that torch.utils.cpp_extension needs; that takes about half a minute. Processes that
start at once (Ray Tune's trials) wait for the one that builds it (torch's lock in that folder).
Where it cannot be built (no compiler, a read-only cache), LFADS says so once and runs the same
loops in Python: the same numbers, a slower epoch. NLB_SUITE_NATIVE=0 skips the build.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("unroll.cpp")
_lock = threading.Lock()
_loaded: list[Any] = []  # [module or None] once tried


def unroll_extension() -> Any | None:
    """The compiled module (functions `forward_steps`, `backward_steps`), or None where it is
    switched off or cannot be built (logged once, with the reason)."""
    with _lock:
        if not _loaded:
            _loaded.append(_load())
        return _loaded[0]


def _load() -> Any | None:
    if os.environ.get("NLB_SUITE_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + torch.__version__.encode()).hexdigest()[:12]
    root = Path(os.environ.get("NLB_SUITE_EXTENSIONS") or Path.home() / ".cache" / "nlb_suite" / "torch_extensions")
    folder = root / f"unroll_{digest}"
    try:
        _ninja_on_path()
        from torch.utils.cpp_extension import load

        folder.mkdir(parents=True, exist_ok=True)
        if not any(folder.glob("*.so")) and not any(folder.glob("*.pyd")):
            log.info("LFADS: building its C++ time loops once for this machine in %s (about half a minute)", folder)
        return load(name=f"nlb_suite_unroll_{digest}", sources=[str(SOURCE)], build_directory=str(folder),
                    extra_cflags=["-O3"], verbose=False)
    except Exception as error:  # a missing compiler or ninja, a read-only folder, a failed build
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        log.warning("LFADS: the C++ unroll could not be built in %s (%s); its loops run in Python instead "
                    "(same numbers, slower epochs). Install a C++ compiler (g++) to build it, or set "
                    "NLB_SUITE_NATIVE=0 to skip the attempt.", folder, reason)
        return None


def _ninja_on_path() -> None:
    """torch.utils.cpp_extension runs `ninja` from PATH; the `ninja` package installs it beside
    this Python, which is not on PATH when the suite is run as .venv/bin/python."""
    if shutil.which("ninja"):
        return
    try:
        import ninja
    except ImportError:
        return
    os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])



def build() -> None:
    """Build the extension now and say where, or why not: `make install` runs this, so that no
    first fit waits for the compiler."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    built = unroll_extension()
    print("LFADS's C++ unroll: " + (f"built ({built.__file__})" if built is not None else "not built (see above)"))
