"""The life of a run folder (issue 20): how it is written, claimed, locked, cleared, resumed.

Item 8: a checkpoint is continued only by the run that wrote it (or a fork of that run, under settings that keep
its trials); anything else is refused, never adopted and never silently started over.
"""

import json
import shutil

import pytest

import sweeps
from sweeps.checkpoints import CheckpointMismatch

from helpers import Stop, crash_after_saves, synthetic

# One structure, three trials, two epochs, a checkpoint every epoch, two kept models: small, and a final write of
# every kind of file.
SWEEP = dict(space={"learning_rate": [1e-3, 1e-2, 3e-2]}, epochs=2, checkpoint_every=1, keep_models=2)


@pytest.fixture(scope="module")
def data():
    return synthetic("binary", rows=200)


# --- 8: a new run never adopts checkpoints it did not write ---------------------------------------------------


def test_resume_refuses_a_checkpoint_another_run_wrote_naming_both(data, tmp_path, monkeypatch):
    mine, other = tmp_path / "mine", tmp_path / "other"
    for run_dir, seed in ((mine, 1), (other, 0)):
        undo = crash_after_saves(monkeypatch, 1)
        with pytest.raises(Stop):
            sweeps.run(data, run_dir=run_dir, seed=seed, **SWEEP)
        undo()
    shutil.rmtree(mine / "checkpoints")
    shutil.copytree(other / "checkpoints", mine / "checkpoints")
    theirs, ours = (json.loads((d / "run.json").read_text())["fingerprints"] for d in (other, mine))
    assert theirs["data"] == ours["data"] and theirs["settings"] != ours["settings"]
    with pytest.raises(
        CheckpointMismatch,
        match=rf"not written by this run: it records settings {theirs['settings']} and data {theirs['data']}, "
        rf"this run is settings {ours['settings']} and data {ours['data']}",
    ):
        sweeps.run(data, run_dir=mine, seed=1, resume=True, **SWEEP)


def test_a_fork_under_other_trials_is_refused_not_started_over(data, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    undo = crash_after_saves(monkeypatch, 1)  # mid-chunk: the population is in the checkpoint
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=run_dir, **SWEEP)
    undo()
    with pytest.raises(CheckpointMismatch, match="the trials of the first round differ from the checkpoint's"):
        sweeps.run(data, run_dir=tmp_path / "fork", resume=run_dir, **{**SWEEP, "epochs": 3})
