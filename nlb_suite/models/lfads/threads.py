"""Two tasks at once on two CPU threads, each with one intra-op thread.

Used where a piece of LFADS runs in C++ without Python's lock and splits in two independent
halves: the IC and CI encoders (side_by_side.py) and the two halves of the batch in the
unroll's time loops (unroll.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

import torch

T = TypeVar("T")
U = TypeVar("U")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def concurrently(here: Callable[[], T], there: Callable[[], U], grad: bool) -> tuple[T, U]:
    """Run `there` on the worker thread and `here` on this one, both with one intra-op thread
    and grad mode `grad`; the thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        future = _worker().submit(_one_thread, there, grad)
        try:
            with torch.set_grad_enabled(grad):
                result = here()
        except BaseException:
            wait([future])  # not left running behind the error (nor behind the thread count's restore)
            raise
        return result, future.result()
    finally:
        torch.set_num_threads(threads)


def _one_thread(task: Callable[[], U], grad: bool) -> U:
    torch.set_num_threads(1)  # the intra-op setting is per thread for OpenMP
    with torch.set_grad_enabled(grad):
        return task()


def _worker() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lfads-worker")
        return _executor
