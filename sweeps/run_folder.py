"""The run folder: what marks it as a sweepax run, how it is claimed, cleared, checked and compared.

A run writes `run.json` (its manifest) when it starts: the resolved settings,
the fingerprints of the settings and of the data, the memory budget its chunks
were planned with, and what the command line ran. `config.json`, the table,
the history, the plots and `models/` follow when it finishes;
`checkpoints/` fills while it trains. A folder holding a run is never
silently replaced: `overwrite=True` clears what a run wrote (and nothing
else), `resume=True` continues it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "run.json"
FORMAT = "sweepax-run/1"
CONFIG_FILE = "config.json"
# Everything a run writes into its folder: cleared by overwrite, and nothing else is.
RUN_FILES = (MANIFEST, CONFIG_FILE, "table.parquet", "table.csv", "history.parquet", "history.csv")
RUN_FOLDERS = ("plots", "checkpoints", "models")


def holds_run(run_dir: Path) -> bool:
    return (run_dir / MANIFEST).is_file() or (run_dir / CONFIG_FILE).is_file()


def is_finished(run_dir: Path) -> bool:
    return (run_dir / CONFIG_FILE).is_file() and (run_dir / "table.parquet").is_file()


def claim(run_dir: Path, overwrite: bool) -> None:
    """Makes `run_dir` ready for a new run: created, writable, and not holding another run (unless `overwrite`).

    Raises:
      ValueError: a file in the way, a folder that cannot be created or written, or a folder that
        holds a run and `overwrite` is False.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run_dir {run_dir} is a file; pass a folder path (it is created if missing)")
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
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create run_dir {run_dir}: {e.strerror}; pass a folder you can write to") from e
    check_writable(run_dir)


def clear(run_dir: Path) -> None:
    """Removes what a run wrote into `run_dir` (manifest, results, plots, checkpoints, models), nothing else."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(run_dir / name, ignore_errors=True)


def check_writable(run_dir: Path) -> None:
    """Refuses a folder that cannot be written, before any training it would have to hold."""
    probe = run_dir / ".sweepax-write-test"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ValueError(
            f"cannot write into run_dir {run_dir}: {e.strerror}; pass a folder you can write to (--out DIR)"
        ) from e


def write_manifest(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    body = {"format": FORMAT, "started": _now(), **manifest}
    tmp = run_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, run_dir / MANIFEST)


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
