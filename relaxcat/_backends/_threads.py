"""A thread pool made on first use, for kernels that fill blocks of an array in parallel.

NumPy releases the GIL inside its loops, so a few Python threads filling disjoint blocks run
in parallel. Each kernel module keeps one :class:`LazyPool`: no thread starts before a
large draw needs it, and a forked child, which inherits the pool's object but not its
threads, starts a new one.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

_ALL: weakref.WeakSet[LazyPool] = weakref.WeakSet()


class LazyPool:
    """A ``ThreadPoolExecutor`` of ``workers()`` threads, made on the first :meth:`get`.

    ``executor`` is None until then, and again in a forked child; tests may set it to None
    to make the next :meth:`get` start a new pool (with the worker count of that moment).
    """

    def __init__(self, workers: Callable[[], int], name: str) -> None:
        self.workers = workers
        self.name = name
        self.executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        _ALL.add(self)

    def get(self) -> ThreadPoolExecutor:
        executor = self.executor
        if executor is None:
            with self._lock:
                executor = self.executor
                if executor is None:
                    executor = ThreadPoolExecutor(
                        max_workers=max(1, self.workers()), thread_name_prefix=self.name
                    )
                    self.executor = executor
        return executor


def _forget_all() -> None:  # a forked child has no worker threads (and a fresh lock)
    for pool in _ALL:
        pool.executor = None
        pool._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all)
