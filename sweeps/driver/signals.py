"""Ctrl-C and SIGTERM during a sweep: finish the epoch, save a checkpoint, stop; a second Ctrl-C stops at once."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


class Interrupted(Exception):
    """The sweep stopped on a signal (Ctrl-C, SIGTERM) after saving a checkpoint; `sweeps resume` continues it."""

    def __init__(self, signum: int, run_dir: str | None, step: int | None):
        self.signum, self.run_dir, self.step = signum, run_dir, step
        name = signal.Signals(signum).name
        where = f"checkpoint {step} saved; continue with: sweeps resume {run_dir}" if step else "no checkpoint"
        super().__init__(f"interrupted by {name} after the current epoch: {where}")


class Signals:
    """While `catching()` is open (in the main thread), the first Ctrl-C or SIGTERM is only noted (`received`):
    the scheduler finishes the epoch, saves and stops; a second one raises KeyboardInterrupt at once, leaving
    the newest checkpoint intact."""

    def __init__(self) -> None:
        self.received: int | None = None

    @contextlib.contextmanager
    def catching(self, enabled: bool = True) -> Iterator[None]:
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.received is not None:
                raise KeyboardInterrupt
            self.received = signum
            print(
                f"\n{signal.Signals(signum).name}: finishing the epoch and saving a checkpoint "
                "(press Ctrl-C again to stop at once)",
                file=sys.stderr,
                flush=True,
            )

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
