"""Checkpoints of a running sweep, written with orbax-checkpoint into RUN_DIR/checkpoints/.

One numbered folder per save (orbax's `CheckpointManager` layout), the last
`keep` kept. A checkpoint holds everything the scheduler needs to continue
exactly where it stopped:

  meta        JSON: the format version, the scheduler's position (round, next work item, the
              items in flight with their epochs),
              every round's configurations, the strategy's state, the fingerprints of
              the configuration and the data, what the array items hold, a checksum of
              each array item (taken from host copies when it is written, compared when
              it is read), and a copy of the run folder's manifest (`restore_manifest`)
  records     the per-epoch metrics of every trial so far (flat arrays, by trial number)
  population  the populations of the work items in flight, by work index (parameters, optimizer
              state, hyperparameters, steps, keys, masks, best-so-far), absent between items
  kept        the best-epoch parameters of the best trials so far (the models a user keeps)

Saves are asynchronous: `save` returns once orbax has copied the arrays off
the device, so the next epoch may consume (donate) the population's buffers
while the files are written. A save killed half-way leaves a temporary folder
that restore ignores; a damaged newest checkpoint (unreadable, or arrays
that no longer match their checksum) is reported and the previous one used;
when none is left, restore says so and changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from sweeps.driver import run_folder
from sweeps.driver.evidence import checksum, reason

FORMAT = "sweepax-checkpoint/3"  # 3: the scheduler's state, one shape whatever the lanes (2: kernels stored (out, in))
FOLDER = "checkpoints"
DEFAULT_EVERY_SECONDS = 60.0

# orbax logs every save at INFO and warns about things a user cannot act on.
logging.getLogger("absl").setLevel(logging.WARNING)


class CheckpointError(ValueError):
    """A checkpoint could not be written or read; the message says what to do."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint that reads back whole but belongs to another run or other settings: refused, never skipped."""


@dataclasses.dataclass
class Snapshot:
    """What one checkpoint holds, as the scheduler gives and takes it."""

    meta: dict[str, Any]
    records: dict[str, np.ndarray]
    population: Any = None
    kept: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    step: int | None = None


def _abstract(arrays: dict[str, np.ndarray] | None) -> dict[str, list]:
    """Shapes and dtypes of flat arrays, for the restore target (JSON)."""
    return {name: [list(a.shape), str(a.dtype)] for name, a in (arrays or {}).items()}


def _target(shapes: dict[str, list]) -> dict[str, jax.ShapeDtypeStruct]:
    return {name: jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in shapes.items()}


class Checkpoints:
    """The checkpoints of one run folder.

    Args:
      run_dir: the run folder; checkpoints go into `run_dir/checkpoints`.
      keep: how many checkpoints to keep (the newest).
      every: save every `every` epochs; None saves at least every 60 seconds of training.
        The scheduler also saves at the end of every round (and of a work item that trained alone), and on
        an interrupt.
    """

    def __init__(self, run_dir: str | Path, keep: int = 2, every: int | None = None):
        self.folder = Path(run_dir).absolute() / FOLDER
        self.keep, self.every = keep, every
        self.epochs_since, self.last_save = 0, time.monotonic()
        self.last_saved_at: float | None = None  # wall time of the newest save, for the progress bar
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=True, cleanup_tmp_directories=True, create=True
        )
        self.manager = ocp.CheckpointManager(self.folder, options=options)

    def due(self) -> bool:
        """After an epoch: whether `every` epochs (or 60 seconds, when `every` is None) have passed."""
        self.epochs_since += 1
        if self.every is not None:
            return self.epochs_since >= self.every
        return time.monotonic() - self.last_save >= DEFAULT_EVERY_SECONDS

    def due_next(self) -> bool:
        """Whether a checkpoint will be due after the next epoch is read (`due` then): the scheduler dispatches
        no epoch ahead of it, so that the checkpoint holds the population after that epoch."""
        if self.every is not None:
            return self.epochs_since + 1 >= self.every
        return time.monotonic() - self.last_save >= DEFAULT_EVERY_SECONDS

    def save(self, snapshot: Snapshot) -> int:
        """Writes a checkpoint (asynchronously); returns its step number.

        Raises:
          CheckpointError: when the disk is full or the folder cannot be written; the previous
            checkpoint stays usable.
        """
        step = (self.manager.latest_step() or 0) + 1
        meta = dict(
            snapshot.meta,
            format=FORMAT,
            records_shapes=_abstract(snapshot.records),
            kept_shapes=_abstract(snapshot.kept),
            has_population=snapshot.population is not None,
            checksums=_checksums(snapshot),
            manifest=self._manifest(),
        )
        items = {"meta": ocp.args.JsonSave(meta)}
        if snapshot.records and next(iter(snapshot.records.values())).size:
            items["records"] = ocp.args.StandardSave(snapshot.records)
        else:
            meta["records_shapes"] = {}
        if snapshot.kept:
            items["kept"] = ocp.args.StandardSave(snapshot.kept)
        if snapshot.population is not None:
            items["population"] = ocp.args.StandardSave(snapshot.population)
        try:
            self.manager.save(step, args=ocp.args.Composite(**items))  # raises an earlier save's error, too
        except Exception as e:
            raise self._write_error(e) from e
        self.epochs_since, self.last_save, self.last_saved_at = 0, time.monotonic(), time.time()
        return step

    def wait(self) -> None:
        """Blocks until every asynchronous save is on disk."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise self._write_error(e) from e

    def _write_error(self, e: Exception) -> Exception:
        """A failed write as one CheckpointError that says what to do (other errors are returned unchanged)."""
        if disk_full(e):
            what = "the disk is full (no space left on device)"
        elif isinstance(e, OSError):
            what = f"{e.strerror or e}"
        else:
            return e
        with contextlib.suppress(Exception):  # the saves still under way finish (or fail): then look
            self.manager.wait_until_finished()
        previous = max((s for s in self.steps() if (self.folder / str(s)).is_dir()), default=None)  # whole ones
        kept = f"checkpoint {previous} in {self.folder} stays usable" if previous else "no earlier checkpoint exists"
        return CheckpointError(
            f"could not write a checkpoint into {self.folder}: {what}; {kept}. Free space (or fix the folder), "
            f"then continue with `sweeps resume {self.folder.parent}`"
        )

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore_latest(
        self, population_target: Callable[[dict], Any], check: Callable[[dict, int], None] | None = None
    ) -> Snapshot | None:
        """The newest checkpoint that reads back whole; None when there is none.

        A damaged checkpoint (truncated, corrupted, half written) is named in a warning and the
        previous one is tried. `population_target(meta)` gives the abstract population
        (`jax.eval_shape`) to restore into, so optimizer states keep their types. `check(meta, step)`
        runs on each checkpoint's meta before its arrays are read; a `CheckpointMismatch` it (or
        `population_target`) raises refuses the checkpoint outright.
        """
        quiet_abandoned_reads()
        damaged = []
        for step in reversed(self.steps()):
            try:
                snapshot = self._restore(step, population_target, check)
            except CheckpointMismatch:
                raise
            except Exception as e:  # noqa: BLE001 - any failure to read means this checkpoint is unusable
                damaged.append((step, reason(e)))
                continue
            for bad, why in damaged:
                warnings.warn(
                    f"checkpoint {bad} in {self.folder} is damaged and was skipped ({why}); resuming from "
                    f"checkpoint {step}, the newest that reads back whole",
                    stacklevel=2,
                )
            return snapshot
        if damaged:
            what = "; ".join(f"checkpoint {bad}: {why}" for bad, why in damaged)
            run_dir = self.folder.parent
            raise CheckpointError(
                f"no usable checkpoint is left in {self.folder}: every one is damaged ({what}). Nothing was "
                f"changed and nothing trained. To train this run again from its first epoch, delete {self.folder} "
                f"and continue with `sweeps resume {run_dir}` (Python: sweeps.run(..., run_dir={str(run_dir)!r}, "
                f"resume=True))"
            )
        return None

    def _restore(
        self, step: int, population_target: Callable[[dict], Any], check: Callable[[dict, int], None] | None = None
    ) -> Snapshot:
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if not isinstance(meta, dict) or not isinstance(meta.get("format"), str):
            raise CheckpointError(f"no format recorded, not {FORMAT}")
        if meta["format"] != FORMAT:
            raise CheckpointMismatch(
                f"checkpoint {step} in {self.folder} was written by another version of sweepax (format "
                f"{meta['format']!r}; this one reads {FORMAT!r}) and is not continued: finish the run with the version "
                f"that started it, or start it again in a new folder"
            )
        if check is not None:
            check(meta, step)
        items = {}
        if meta["records_shapes"]:
            items["records"] = ocp.args.StandardRestore(_target(meta["records_shapes"]))
        if meta["kept_shapes"]:
            items["kept"] = ocp.args.StandardRestore(_target(meta["kept_shapes"]))
        if meta["has_population"]:
            items["population"] = ocp.args.StandardRestore(population_target(meta))
        restored = self.manager.restore(step, args=ocp.args.Composite(**items)) if items else {}
        snapshot = Snapshot(
            meta=meta,
            records={k: np.asarray(v) for k, v in (restored.get("records") or {}).items()},
            population=restored.get("population"),
            kept={k: np.asarray(v) for k, v in (restored.get("kept") or {}).items()},
            step=step,
        )
        written, now = meta.get("checksums") or {}, _checksums(snapshot)
        for item in items:
            if written.get(item) is not None and now[item] is not None and written[item] != now[item]:
                raise CheckpointError(
                    f"its {item} arrays do not match the checksum written with them ({now[item]}, not "
                    f"{written[item]}): they changed on disk since"
                )
        return snapshot

    def _manifest(self) -> dict[str, Any] | None:
        """The run folder's manifest as it is now: every checkpoint keeps a copy (`restore_manifest`)."""
        try:
            manifest = json.loads((self.folder.parent / run_folder.MANIFEST).read_text())
        except (OSError, ValueError):  # missing or unreadable now: an older checkpoint's copy stays
            return None
        return manifest if isinstance(manifest, dict) else None

    def close(self) -> None:
        """Waits for the saves and closes orbax's manager, also after a failed save (see `close_orbax`)."""
        try:
            close_orbax(self.manager)
        except Exception as e:
            raise self._write_error(e) from e


def close_orbax(closable: Any) -> None:
    """Closes an orbax checkpointer or checkpoint manager, also after a failed save.

    orbax's `close` first waits for the background save and re-raises its error (once), and then
    closes nothing: the threads left open keep the interpreter from exiting (a hang at the end of the
    command). Here a second `close` closes them, then the error is raised.
    """
    try:
        closable.close()
    except BaseException:
        with contextlib.suppress(Exception):
            closable.close()
        raise


def disk_full(error: BaseException | None) -> bool:
    """Whether an error, or one it came from, says the disk is full (errno ENOSPC, as Python or tensorstore says it)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(error) or "os_error_code='28'" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _checksums(snapshot: Snapshot) -> dict[str, str | None]:
    """`sweeps.driver.evidence.checksum` of each array item, from host copies (None: a population spread over
    several processes, which no one process holds whole, is not checked)."""
    population = snapshot.population
    spread = any(isinstance(leaf, jax.Array) and not leaf.is_fully_addressable for leaf in jax.tree.leaves(population))
    return {
        "records": checksum(snapshot.records),
        "kept": checksum(snapshot.kept),
        "population": None if population is None or spread else checksum(jax.device_get(population)),
    }


def restore_manifest(run_dir: str | Path) -> str | None:
    """Puts back a run folder's missing or unreadable manifest (run.json) from its newest checkpoint's copy.

    Returns a note saying what was done, or None when the manifest reads (nothing done) or no
    checkpoint holds a copy (then reading the manifest raises its own error).
    """
    run_dir = Path(run_dir)
    folder, path = run_dir.absolute() / FOLDER, run_dir / run_folder.MANIFEST
    try:
        run_folder.read_manifest(run_dir)
        return None
    except ValueError:
        problem = "was damaged" if path.is_file() else "was missing"
    if not folder.is_dir():
        return None
    manager = ocp.CheckpointManager(folder, options=ocp.CheckpointManagerOptions(create=False))
    try:
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            except Exception:  # noqa: BLE001 - a damaged checkpoint: try the one before it
                continue
            copy = meta.get("manifest") if isinstance(meta, dict) else None
            if isinstance(copy, dict) and copy.get("format") == run_folder.FORMAT:
                run_folder.write_manifest(run_dir, copy)
                return f"{path} {problem}: put back from the copy in checkpoint {step} of {folder}"
    finally:
        manager.close()
    return None


class _AbandonedReads(logging.Filter):
    """asyncio's reports about a damaged checkpoint's reads that orbax abandoned (see `quiet_abandoned_reads`)."""

    MARKS = ("orbax", "tensorstore", "OCDBT")  # in the future's repr, or in its traceback's file names

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "exception was never retrieved" not in message:
            return True
        tb = record.exc_info[2] if record.exc_info else None
        files = " ".join(entry.filename for entry in traceback.extract_tb(tb)) if tb is not None else ""
        return not any(mark.lower() in f"{message} {files}".lower() for mark in self.MARKS)


_NEVER_AWAITED = r"coroutine '_read_\w*' was never awaited"


def quiet_abandoned_reads() -> None:
    """Silences the noise a damaged checkpoint's read leaves behind (the damage itself is reported); call it
    before reading arrays with orbax. What is already in place is not added twice.

    When one array of a checkpoint fails to read, orbax closes its event loop while tensorstore is
    still reading the others; each of those then reports "Event loop is closed" (up to hundreds of
    tracebacks, through `sys.unraisablehook`, arriving after the error), the abandoned read coroutines
    report their error when they are collected, asyncio logs the tasks' unretrieved exceptions, and
    Python warns about coroutines never awaited. Exactly these are dropped; anything else passes.
    """
    previous = sys.unraisablehook
    if not getattr(previous, "quiets_abandoned_reads", False):

        def hook(unraisable):
            code = getattr(unraisable.object, "cr_code", None)  # an orbax read coroutine closed unfinished
            error = unraisable.exc_value
            closed = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
            if not closed and not (code is not None and "orbax" in code.co_filename):
                previous(unraisable)

        hook.quiets_abandoned_reads = True
        sys.unraisablehook = hook
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, _AbandonedReads) for f in asyncio_log.filters):
        asyncio_log.addFilter(_AbandonedReads())
    if not any(f[1] is not None and f[1].pattern == _NEVER_AWAITED for f in warnings.filters):
        warnings.filterwarnings("ignore", message=_NEVER_AWAITED, category=RuntimeWarning)
