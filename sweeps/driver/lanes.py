"""Lanes: where a work item's epochs run. One lane runs them in the calling thread; several, one thread each.

JAX releases the Python lock while a program runs, so on a CPU the work items of a round train side by
side in threads, one per lane (`sweeps.planning.lanes` decides how many). Nothing is shared between lanes but
the data on the device, so an item computes exactly what it computes alone. With one lane the same
scheduler runs the same steps in its own thread: one code path, whatever the count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Lanes:
    """Runs steps in `count` lanes: `submit(fn, *args)` returns a future (already done with one lane).

    `first(key)` is a lock per compiled program: a program's first call in any lane holds it, so two lanes
    that need the same program (two chunks of a group) compile it once.
    """

    def __init__(self, count: int):
        self.count = count
        self._pool = ThreadPoolExecutor(count, thread_name_prefix="sweeps-lane") if count > 1 else None
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as error:  # noqa: BLE001 - raised where the result is read, as a thread's would be
            future.set_exception(error)
        return future

    def first(self, key: Hashable) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def close(self, running: list[Future]) -> None:
        """Cancels what has not started and waits for what runs (a program cannot be stopped midway)."""
        for future in running:
            future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
