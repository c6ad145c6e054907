"""The run folder: what marks it as a sweepax run, how it is written, cleared, checked and compared.

A run writes `run.json` (its manifest) when it starts: the resolved settings,
the fingerprints of the settings and of the data, the memory budget its chunks
were planned with, what the command line ran, and the names it writes into the
folder (`writes`). `checkpoints/` fills while it trains. When it finishes it
writes `models/`, the plots, `config.json`, the table and the history, and
last `finished.json`, the marker that makes the folder a finished run (with
the size and sha256 of each file it vouches for). Every file goes through
`atomic_write` (a temporary name in the same folder, flushed to disk, then
renamed), so a file is whole or absent; a run killed during its final write
has no marker, is unfinished, and resuming it writes its results again from
its newest checkpoint, which holds every record and the kept models.

One process at a time owns a folder (`RunLock`, held for the life of a run).
A new run takes only a new or empty folder, or with `overwrite=True` one of its
own (its `run.json` says so), and then clears only what that run wrote: a
folder holding files sweepax did not write is refused, naming them, and
nothing in it is touched. `resume=True` continues a run in its own folder.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

MANIFEST = "run.json"
FORMAT = "sweepax-run/1"
CONFIG_FILE = "config.json"
FINISHED = "finished.json"  # written last: the folder holds a finished run
FINISHED_FORMAT = "sweepax-finished/1"
LOCK_FILE = ".sweepax.lock"
WRITE_TEST = ".sweepax-write-test"
PARTIAL = ".partial"  # `.NAME.partial`: NAME being written (`atomic_write`)
# Everything a run writes into its folder: cleared by overwrite, and nothing else is.
RUN_FILES = (MANIFEST, CONFIG_FILE, "table.parquet", "table.csv", "history.parquet", "history.csv", FINISHED)
RUN_FOLDERS = ("plots", "checkpoints", "models", "tensorboard")  # tensorboard: `[run] log`'s default logdir
WRITES = (*RUN_FILES, *RUN_FOLDERS, LOCK_FILE)
# The results the finished marker vouches for (the plots are drawn from the table: `sweeps report` redraws them).
VOUCHED = (CONFIG_FILE, "table.parquet", "table.csv", "history.parquet", "history.csv", "models/models.json")
SHOWN = 8  # the most names a message lists


# --- writing -------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at `path` whole or not at all: the only way a run writes its files.

    Written under `.NAME.partial` in the same folder, flushed and synced to disk, then renamed onto
    `path` (`os.replace`, atomic on POSIX filesystems); a failure removes the partial file and leaves
    what was at `path` before. A process killed while writing leaves at most the partial file.

    Examples:
      >>> with atomic_write(folder / "table.csv") as f:  # doctest: +SKIP
      ...     table.to_csv(f, index=False)
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}{PARTIAL}")
    try:
        with open(partial, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def write_json(path: str | Path, value: Any, default=None) -> None:
    write_bytes(path, (json.dumps(value, indent=2, default=default or _jsonable) + "\n").encode())


def _sync_folder(folder: Path) -> None:
    """Makes a rename in `folder` durable (its entry on disk), where the OS allows opening a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def mark_finished(run_dir: Path) -> None:
    """Writes `finished.json`, last: the run's results are complete. Records each result file's size and sha256."""
    files = {}
    for name in VOUCHED:
        path = run_dir / name
        if path.is_file():
            data = path.read_bytes()
            files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    write_json(run_dir / FINISHED, {"format": FINISHED_FORMAT, "finished": _now(), "files": files})


def is_finished(run_dir: Path) -> bool:
    """Whether the folder's final write completed: its `finished.json` marker exists and reads."""
    marker = _read_json(run_dir / FINISHED)
    return marker is not None and marker.get("format") == FINISHED_FORMAT


def holds_run(run_dir: Path) -> bool:
    """Whether the folder is one of ours: its manifest (`run.json`) or finished marker is sweepax's."""
    manifest = _read_json(run_dir / MANIFEST)
    return (manifest is not None and manifest.get("format") == FORMAT) or is_finished(run_dir)


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object read from `path`; None when absent, unreadable or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# --- claiming and clearing ---------------------------------------------------------------


def foreign_entries(run_dir: Path) -> list[str]:
    """What a folder that is not one of ours holds (beyond a lock or partial file of ours); [] for ours or empty."""
    if not run_dir.is_dir() or holds_run(run_dir):
        return []
    ours = {LOCK_FILE, WRITE_TEST} | {f".{name}{PARTIAL}" for name in WRITES}
    return sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir() if p.name not in ours)


def refuse_foreign(run_dir: Path, shown: str | None = None) -> None:
    """Refuses a folder that holds files sweepax did not write (a user's folder, or a run whose run.json is gone).

    Raises:
      ValueError: naming the entries; nothing in the folder is touched.
    """
    foreign = foreign_entries(run_dir)
    if not foreign:
        return
    listed = ", ".join(foreign[:SHOWN]) + (f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else "")
    raise ValueError(
        f"{shown or run_dir} is not a sweepax run folder (it has no {MANIFEST} of ours) and is not empty: it holds "
        f"{listed}; a run writes only into a new or empty folder, or replaces a run of its own, and never "
        f"deletes what it did not write: choose another folder (--out DIR), or move those files away yourself"
    )


def clear(run_dir: Path) -> None:
    """Removes what the run in `run_dir` wrote (its manifest's `writes`: results, plots, checkpoints, models,
    partial files), nothing else; the lock file stays (its holder is the caller). Only names sweepax writes
    are honoured, whatever the manifest says."""
    manifest = _read_json(run_dir / MANIFEST) or {}
    recorded = manifest.get("writes", WRITES) if manifest.get("format") == FORMAT else (FINISHED, *VOUCHED[:-1])
    names = [name for name in WRITES if name in recorded and name != LOCK_FILE]
    for name in names:
        for path in (run_dir / name, run_dir / f".{name}{PARTIAL}"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def check_writable(run_dir: Path) -> None:
    """Refuses a folder that cannot be written, before any training it would have to hold."""
    probe = run_dir / WRITE_TEST
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ValueError(
            f"cannot write into run_dir {run_dir}: {e.strerror}; pass a folder you can write to (--out DIR)"
        ) from e


def write_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Writes `run.json`: the run's settings and fingerprints, and `writes`, the names it writes into the folder
    (what `clear` removes)."""
    write_json(run_dir / MANIFEST, {"format": FORMAT, "started": _now(), "writes": list(WRITES), **manifest})


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a run folder.

    Raises:
      ValueError: the folder does not exist, is not a sweepax run, or its manifest is unreadable.
    """
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} does not exist; pass the folder of a run started with `sweeps run`")
    path = run_dir / MANIFEST
    if not path.is_file():
        raise ValueError(
            f"{run_dir} is not a sweepax run folder that can be resumed: it has no {MANIFEST}; "
            f"pass the folder a `sweeps run` (or sweeps.run(..., run_dir=...)) wrote"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is damaged and cannot be read ({e}); the run cannot be resumed from it") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a sweepax run manifest (format {manifest.get('format')!r}, not {FORMAT!r})")
    return manifest


def fingerprint(value: Any) -> str:
    """A short hash of a JSON-serialisable value (keys sorted)."""
    text = json.dumps(value, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_fingerprint(data) -> str:
    """A short hash of every array the sweep trains and validates on (features and targets, all splits)."""
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        array = np.ascontiguousarray(getattr(data, name))
        digest.update(f"{name}{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The settings that differ between two JSON-like values, one `key: old -> new` line each."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            where = f"{prefix}.{key}" if prefix else str(key)
            out += differences(old.get(key, "<absent>"), new.get(key, "<absent>"), where)
        return out
    if json.dumps(old, sort_keys=True, default=_jsonable) == json.dumps(new, sort_keys=True, default=_jsonable):
        return []
    return [f"{prefix}: {old!r} -> {new!r}"]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
