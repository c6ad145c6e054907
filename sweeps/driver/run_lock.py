"""One process at a time owns a run folder: its lock, the message others get, and claiming a folder for a run.

A run holds `RunLock` on RUN_DIR/.sweepax.lock from claiming the folder (`claim`) to its last write;
another process that wants the folder is refused with the holder's pid, host and start time.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeps.driver.run_folder import (
    FINISHED,
    LOCK_FILE,
    _now,
    _read_json,
    check_writable,
    clear,
    holds_run,
    is_finished,
    refuse_foreign,
)


class RunFolderInUse(ValueError):
    """Another process holds the run folder's lock."""


class RunLock:
    """The lock a run holds on its folder from claiming it to its last write: one process at a time owns it.

    `fcntl.flock(LOCK_EX | LOCK_NB)` on `RUN_DIR/.sweepax.lock`. The OS releases it when the holder's
    file is closed or its process ends, however it ends (`kill -9`, a crash), so a dead run never
    leaves a stale lock and the file itself may stay. The holder writes its pid, host and start time
    into the file, for the message others get (`RunFolderInUse`).

    On NFS, Linux clients since 2.6.12 emulate flock with byte-range locks that hold across hosts
    (given a working lock manager); older kernels, or a mount with `local_lock=flock`, lock only on
    the local host, so two hosts could both run in one folder: the message names the holder's host
    so a user can check it.

    Only the writer process (process 0) of a run over several processes locks.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock; raises RunFolderInUse (naming the holder) when another process holds it.

        Raises:
          RunFolderInUse: another process holds it.
          ValueError: the folder cannot be written (or locked).
        """
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ValueError(
                f"cannot write into run_dir {self.run_dir}: {e.strerror}; pass a folder you can write to (--out DIR)"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunFolderInUse(in_use_message(self.run_dir, read_holder(self.path))) from None
            raise ValueError(
                f"cannot lock run_dir {self.run_dir} ({self.path}: {e.strerror}); a filesystem without locks cannot "
                f"keep two runs out of one folder: pass a folder on a local disk (--out DIR)"
            ) from e
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now(), "command": sys.argv}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())
        self._fd = fd

    def release(self) -> None:
        """Lets the folder go (the holder's details are cleared first). Does nothing when not held."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)  # closing the file releases the lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_holder(path: Path) -> dict[str, Any]:
    """The pid, host and start time a lock's holder wrote (empty when it has not written them yet)."""
    return _read_json(path) or {}


def holder(run_dir: Path) -> dict[str, Any] | None:
    """The holder of the folder's lock (its pid, host, since), or None when no process holds it."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return read_holder(path)
    finally:
        os.close(fd)
    return None


def in_use_message(run_dir: Path, info: Mapping[str, Any]) -> str:
    if info.get("pid"):
        who = f"pid {info['pid']} on host {info.get('host', '?')} since {info.get('since', '?')}"
    else:
        who = "another process (starting: it has not written its pid yet)"
    return (
        f"{run_dir} is in use by {who}; wait for it to finish, or stop it (Ctrl-C saves a checkpoint) and "
        f"continue it with `sweeps resume {run_dir}`; to run something else now, choose another folder (--out DIR)"
    )


def unfinished_message(run_dir: Path) -> str:
    """Why a run folder cannot be read as a finished run: still running (whose), or stopped before its marker."""
    info = holder(run_dir)
    if info is not None:
        return f"{run_dir} holds a run that has not finished: " + in_use_message(run_dir, info)
    return (
        f"{run_dir} holds a run that has not finished (no {FINISHED}: it stopped before or during its final "
        f"write); continue it with `sweeps resume {run_dir}` (API: resume=True), which writes its results from "
        f"its newest checkpoint"
    )


def refuse_in_use(run_dir: Path) -> None:
    """Raises RunFolderInUse when another process holds the folder (a check before the lock is taken)."""
    info = holder(run_dir)
    if info is not None:
        raise RunFolderInUse(in_use_message(run_dir, info))


def claim(run_dir: Path, overwrite: bool, lock: RunLock) -> None:
    """Makes `run_dir` ready for a new run and takes its lock: created, writable, not another process's,
    not a folder of someone else's files, and not holding another run (unless `overwrite`).

    Raises:
      RunFolderInUse: another process holds the folder (even with `overwrite`: a live run is never cleared).
      ValueError: a file in the way, a folder that cannot be created or written, a folder holding files
        sweepax did not write (named), or a folder that holds a run and `overwrite` is False.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run_dir {run_dir} is a file; pass a folder path (it is created if missing)")
    refuse_foreign(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create run_dir {run_dir}: {e.strerror}; pass a folder you can write to") from e
    lock.acquire()
    try:
        if holds_run(run_dir):
            if not overwrite:
                if is_finished(run_dir):
                    state, way = "a finished run", "sweeps.load_result reads it"
                else:
                    state, way = "an unfinished run", f"continue it with resume=True (shell: sweeps resume {run_dir})"
                raise ValueError(
                    f"{run_dir} already holds {state}; {way}; replace it with overwrite=True (shell: --overwrite), "
                    f"or choose another folder"
                )
            clear(run_dir)
        check_writable(run_dir)
    except BaseException:
        lock.release()
        raise
