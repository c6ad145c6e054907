"""Continuing a run folder: resumed under the settings and data it started with, or forked into a new folder.

A resume compares the settings that decide the results (`comparable`: without where the data file
lies) and the data's fingerprint with the run's manifest and refuses any difference, naming each
(`SettingsChanged`) and the way out: the old settings, or a fork (`FORKABLE` settings only) that
continues the newest checkpoint in a new folder. A run's chunks were cut for the devices it started
on, so it resumes on as many.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax

from sweeps.driver import checkpoints as checkpoints_lib
from sweeps.driver import distributed, run_folder, run_lock
from sweeps.driver.devices import resume_advice
from sweeps.settings import SweepConfig
from sweeps.tracking.callbacks import new_run_id


def comparable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that decide a sweep's results, without where its data file lies: the data is known by its
    fingerprint, so a run whose CSV moved resumes (`sweeps resume RUN_DIR --set data.path=...`). A record made
    before `precision` existed trained in float32 and compares as such."""
    data = {k: v for k, v in settings["data"].items() if k != "source"}
    return {**settings, "precision": SweepConfig.recorded_precision(settings), "data": data}


# Settings a fork may change and still continue a checkpoint's trials (the others change the trials or their chunks).
FORKABLE = ("early_stopping", "divergence_threshold", "seed")


class SettingsChanged(ValueError):
    """Resuming under other settings or data than the run started with: `changed` lists them (`key: old -> new`)."""

    def __init__(self, run_dir: Path, changed: list[str], data_changed: bool):
        self.run_dir, self.changed, self.data_changed = run_dir, changed, data_changed
        self.forkable = all(line.split(":")[0].split(".")[0] in FORKABLE for line in changed)
        if data_changed:
            way = "pass the data it was started with (the same arrays) to continue it"
        else:
            way = "pass the settings it was started with (run.json records them) to continue it"
        if self.forkable:
            new = (
                f"to go on under the new ones from its newest checkpoint, fork it into a new folder: run_dir=NEW_DIR, "
                f"resume={str(run_dir)!r} (shell: sweeps resume {run_dir} --fork NEW_DIR)"
            )
        else:
            new = (
                f"to train under the new ones, start a new run in another folder (run_dir=NEW_DIR): a fork continues "
                f"a checkpoint only under settings that keep its trials ({', '.join(FORKABLE)})"
            )
        listed = "\n  ".join(changed)
        super().__init__(f"{run_dir} was started with other settings; what differs now:\n  {listed}\n{way}; {new}")


def refuse_changes(manifest: Mapping[str, Any], now: Mapping[str, Any], fingerprints, run_dir: Path) -> None:
    """Resuming under other settings or other data would mix two sweeps: name what differs, and the ways out."""
    changed = run_folder.differences(comparable(manifest["settings"]), comparable(now))
    data_changed = manifest["fingerprints"]["data"] != fingerprints["data"]
    if data_changed:
        changed.append(
            f"data: the arrays differ (fingerprint {manifest['fingerprints']['data']} -> {fingerprints['data']})"
        )
    if changed:
        raise SettingsChanged(run_dir, changed, data_changed)


def start_run_folder(
    run_dir: Path, overwrite: bool, manifest: Mapping[str, Any], fork: bool | str | Path, lock: run_lock.RunLock
) -> None:
    """Claims `run_dir` for a new run (taking its lock), writes the manifest and copies a forked run's checkpoints in
    (under a partial name first, so a folder never holds half of them)."""
    run_lock.claim(run_dir, overwrite, lock)
    partial = run_dir / f".{checkpoints_lib.FOLDER}{run_folder.PARTIAL}"
    if fork:
        shutil.rmtree(partial, ignore_errors=True)  # left by a fork killed while copying
        shutil.copytree(Path(fork) / checkpoints_lib.FOLDER, partial)
    run_folder.write_manifest(run_dir, manifest)
    if fork:
        partial.rename(run_dir / checkpoints_lib.FOLDER)


def refuse_other_device_count(manifest: Mapping[str, Any], count: int, run_dir: Path) -> None:
    """A checkpoint's chunks were cut and padded for the devices the run started on: resume on as many."""
    started = manifest.get("resources", {}).get("devices", count)
    if started != count:
        every = jax.devices()
        advice = resume_advice(started, len(every), every[0].platform, jax.process_count())
        raise ValueError(
            f"{run_dir} was started on {started} devices and this run has {count}: its chunks and checkpointed "
            f"populations are cut and padded for {started}; {advice}"
        )


def open_run_folder(
    run_dir: Path,
    resume: bool | str | Path,
    overwrite: bool,
    lock: Any,
    settings: Mapping[str, Any],
    fingerprints: Mapping[str, str],
    resources: Any,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """The run folder's manifest: a resumed run's, read and compared with these settings and data (None when the
    run had finished), or a new run's (a fork's: continuing another run's newest checkpoint), written after process
    0 claims the folder. With several processes, process 0 reads and writes; every process checks.

    Raises:
      SettingsChanged: resuming under other settings or data.
      ValueError: another device count than the run started on; a folder that cannot be claimed.
    """
    count = resources.devices.count
    if resume is True:
        restored = distributed.on_writer(checkpoints_lib.restore_manifest, run_dir)  # run.json lost: a copy
        if restored:
            warnings.warn(restored, stacklevel=3)
        manifest = run_folder.read_manifest(run_dir)
        distributed.on_writer(lock.acquire)  # one process at a time: a live run is not resumed twice
        if run_folder.is_finished(run_dir):
            return None
        refuse_changes(manifest, settings, fingerprints, run_dir)
    else:
        manifest = {"run_id": new_run_id(), "settings": settings, "fingerprints": fingerprints}
        manifest["metadata"] = dict(metadata or {})
        manifest["resources"] = resources.record()
        manifest["restores"] = [fingerprints]
        if resume:  # a fork: continue another run's newest checkpoint under these settings
            old = run_folder.read_manifest(Path(resume))
            run_lock.refuse_in_use(Path(resume))  # its checkpoints are copied: not while they are written
            manifest["forked_from"] = str(Path(resume).absolute())
            manifest["restores"] = [fingerprints, *old.get("restores", [old["fingerprints"]])]
            manifest["resources"] = old["resources"]
            refuse_other_device_count(old, count, Path(resume))  # before NEW_DIR is made
        # process 0 claims the folder (failing now, not after the training) and writes the manifest
        distributed.on_writer(start_run_folder, run_dir, overwrite, manifest, resume, lock)
    refuse_other_device_count(manifest, count, run_dir)
    return manifest
