"""Checkpoints: a sweep killed anywhere resumes to the same table, history and saved models."""

import copy
import errno
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import forked
import jax
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
import pytest

import sweeps
from sweeps import space
from sweeps.driver.checkpoints import CheckpointError
from sweeps.results.trained import load_model

from helpers import Stop, crash_after_saves, synthetic

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "data" / "telco_customer_churn.csv"
# Two structures (batch sizes), two chunks each (max_population 3 over 5 rates, padded), early stopping, two epochs
# and a checkpoint after each: every kind of position a checkpoint can hold.
SWEEP = dict(
    space={"learning_rate": space.loguniform(1e-3, 1e-1), "batch_size": [16, 32]},
    strategy=sweeps.Grid(n=5),
    epochs=2,
    max_population=3,
    early_stopping={"patience": 2},
    checkpoint_every=1,
    keep_models=2,
    plots=False,  # no test here reads them (test_run_folder's final write draws them)
)
# Population strategies with two structures (batch sizes, not fused: tests/test_fused_shapes.py fuses them): halving
# and PBT edit their populations between epochs, so they train one work item at a time whatever SWEEPS_LANES asks
# (`lane_plan.ONE_LANE`).
POPULATION_SWEEPS = {
    "halving": dict(
        space={"learning_rate": space.loguniform(1e-3, 1e-1), "batch_size": [16, 32]},
        strategy=sweeps.Halving(n=4, min_epochs=1, eta=2, seed=0),
        epochs=2,
        fuse=False,
        checkpoint_every=1,
        keep_models=2,
        plots=False,
    ),
    "pbt": dict(
        space={"learning_rate": space.loguniform(1e-3, 1e-1), "batch_size": [16, 32]},
        strategy=sweeps.PBT(population=4, interval=1, seed=0),
        epochs=2,
        fuse=False,
        checkpoint_every=1,
        keep_models=2,
        plots=False,
    ),
}
SCRIPT = """
import copy, importlib, os, signal, sys
sys.path.insert(0, {tests!r})
import sweeps
from sweeps.driver import checkpoints
from helpers import synthetic
from test_checkpoints import POPULATION_SWEEPS, SWEEP

KILL_AT, MODE, NAME = int(sys.argv[2]), sys.argv[3], sys.argv[4]
saves = 0
original = checkpoints.Checkpoints.save

def save(self, snapshot):
    global saves
    step = original(self, snapshot)  # asynchronous: the files are still being written when it returns
    saves += 1
    at_chunk_end = snapshot.population is None
    if saves >= KILL_AT and (MODE != "between_chunks" or at_chunk_end):
        if MODE != "during_write":
            self.wait()
        os.kill(os.getpid(), signal.SIGKILL)
    return step

checkpoints.Checkpoints.save = save
owner, _, key = NAME.rpartition(":")  # "module:name": another test module's KILLABLE sweeps
named = importlib.import_module(owner).KILLABLE if owner else {{"grid": SWEEP, **POPULATION_SWEEPS}}
sweep = copy.deepcopy(named[key])
sweeps.run(synthetic("binary", rows=400), run_dir=sys.argv[1], **sweep)
"""


@pytest.fixture(scope="module")
def data():
    return synthetic("binary", rows=400)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full") / "run"
    return sweeps.run(data, run_dir=run_dir, **SWEEP), run_dir


@pytest.fixture(scope="module")
def uninterrupted_population(data, tmp_path_factory):
    """name -> the run folder of each population sweep trained without a kill (made when first asked for)."""
    made = {}

    def get(name):
        if name not in made:
            made[name] = tmp_path_factory.mktemp(name) / "run"
            sweeps.run(data, run_dir=made[name], **copy.deepcopy(POPULATION_SWEEPS[name]))
        return made[name]

    return get


def assert_same_run(a_dir: Path, b_dir: Path) -> None:
    a, b = sweeps.load_result(a_dir), sweeps.load_result(b_dir)
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.history, b.history)
    assert a.config["models"] == b.config["models"]
    for entry in a.config["models"]:
        pa, pb = load_model(a_dir, entry["trial"]).params, load_model(b_dir, entry["trial"]).params
        jax.tree.map(np.testing.assert_array_equal, pa, pb)


# (lanes, lanes resumed, stop at the n-th save): one work item at a time saves 8 times (after each item's first epoch,
# with its population, and at its end), two lanes 4 times (one checkpoint holds both items in flight): mid-item,
# between chunks, mid-item in lanes, in the second item; a checkpoint of either kind resumes in the other.
# In-process: the run raises right after the checkpoint is on disk (`crash_after_saves`), and its programs are
# compiled once for all.
CRASHES = [(1, 1, 1), (2, 2, 2), (2, 1, 1), (1, 2, 3)]
# The same with SIGKILL in a process of its own, where only a real kill gets: during an asynchronous write, and
# between chunks (each a fresh process, compiling everything: a few of them): in lanes, mid-item in the second pair of
# items; one item at a time, at the end of the second.
KILLS = [(2, 2, 3, "during_write"), (1, 2, 3, "between_chunks")]


def kill(tmp_path: Path, name: str, lanes: int, kill_at: int, mode: str) -> Path:
    """Runs sweep `name` (grid, a POPULATION_SWEEPS name, or `module:name` of that test module's `KILLABLE`) on
    `synthetic("binary", rows=400)` in a process that SIGKILLs itself at its `kill_at`-th checkpoint; returns its
    folder."""
    run_dir = tmp_path / "run"
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT.format(tests=str(ROOT / "tests")))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEPS_LANES": str(lanes)}
    command = [sys.executable, str(script), str(run_dir), str(kill_at), mode, name]
    done = forked.run(command, env=env, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert not (run_dir / "config.json").exists(), "the run was killed before it finished"
    return run_dir


@pytest.mark.parametrize(("lanes", "resume_lanes", "stop_at"), CRASHES)
def test_a_sweep_stopped_at_any_checkpoint_resumes_to_the_same_result_in_either_lane_setting(
    data, uninterrupted, tmp_path, monkeypatch, lanes, resume_lanes, stop_at
):
    monkeypatch.setenv("SWEEPS_LANES", str(lanes))
    undo = crash_after_saves(monkeypatch, stop_at)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=tmp_path / "run", **SWEEP)
    undo()
    monkeypatch.setenv("SWEEPS_LANES", str(resume_lanes))
    sweeps.run(data, run_dir=tmp_path / "run", resume=True, **SWEEP)
    assert_same_run(uninterrupted[1], tmp_path / "run")


@pytest.mark.parametrize(("lanes", "resume_lanes", "kill_at", "mode"), KILLS)
def test_a_sweep_killed_with_sigkill_resumes_to_the_same_result(
    data, uninterrupted, tmp_path, monkeypatch, lanes, resume_lanes, kill_at, mode
):
    run_dir = kill(tmp_path, "grid", lanes, kill_at, mode)
    monkeypatch.setenv("SWEEPS_LANES", str(resume_lanes))
    sweeps.run(data, run_dir=run_dir, resume=True, **SWEEP)
    assert_same_run(uninterrupted[1], run_dir)


# (strategy, lanes, lanes resumed, stop at the n-th save): halving saves 3 times (its first item is repacked from two
# members to one after its first epoch, the second is pruned whole after its first epoch), PBT 4 (after each item's
# first epoch and at its end): halving mid-item (a repacked population), PBT in its second item (and SIGKILLed
# mid-item, in its first, below)
POPULATION_STOPS = [("halving", 2, 1, 1), ("pbt", 1, 2, 3)]


@pytest.mark.parametrize(("name", "lanes", "resume_lanes", "stop_at"), POPULATION_STOPS)
def test_population_strategies_stopped_in_either_lane_setting_resume_to_the_same_result(
    data, uninterrupted_population, tmp_path, monkeypatch, name, lanes, resume_lanes, stop_at
):
    monkeypatch.setenv("SWEEPS_LANES", str(lanes))
    undo = crash_after_saves(monkeypatch, stop_at)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=tmp_path / "run", **copy.deepcopy(POPULATION_SWEEPS[name]))
    undo()
    monkeypatch.setenv("SWEEPS_LANES", str(resume_lanes))
    resumed = sweeps.run(data, run_dir=tmp_path / "run", resume=True, **copy.deepcopy(POPULATION_SWEEPS[name]))
    assert resumed.config["lanes"] == 1, "a strategy that acts between epochs trains one item at a time"
    assert_same_run(uninterrupted_population(name), tmp_path / "run")


def test_pbt_killed_with_sigkill_in_lanes_resumes_to_the_same_result(
    data, uninterrupted_population, tmp_path, monkeypatch
):
    run_dir = kill(tmp_path, "pbt", 2, 1, "early")
    monkeypatch.setenv("SWEEPS_LANES", "1")
    sweeps.run(data, run_dir=run_dir, resume=True, **copy.deepcopy(POPULATION_SWEEPS["pbt"]))
    assert_same_run(uninterrupted_population("pbt"), run_dir)


def test_a_checkpoint_of_an_earlier_format_is_refused_with_what_to_do(data, tmp_path, monkeypatch):
    import json

    undo = crash_after_saves(monkeypatch, 2)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=tmp_path / "run", **SWEEP)
    undo()
    for meta in (tmp_path / "run" / "checkpoints").glob("*/meta/metadata"):  # as sweepax before issue 21 wrote them
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": "sweepax-checkpoint/2"}))
    with pytest.raises(
        CheckpointError, match=r"another version of sweepax \(format 'sweepax-checkpoint/2'.*new folder"
    ):
        sweeps.run(data, run_dir=tmp_path / "run", resume=True, **SWEEP)


def test_a_damaged_newest_checkpoint_is_named_and_the_one_before_it_used(data, uninterrupted, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    undo = crash_after_saves(monkeypatch, 3)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=run_dir, **SWEEP)
    undo()
    newest = max(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    for path in (run_dir / "checkpoints" / str(newest)).rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])  # truncated
    with pytest.warns(UserWarning, match=rf"checkpoint {newest} in .* is damaged and was skipped"):
        sweeps.run(data, run_dir=run_dir, resume=True, **SWEEP)
    assert_same_run(uninterrupted[1], run_dir)


def test_a_full_disk_during_a_save_says_so_and_the_previous_checkpoint_stays_usable(
    data, uninterrupted, tmp_path, monkeypatch
):
    run_dir = tmp_path / "run"
    original, calls = ocp.CheckpointManager.save, []

    def save(self, step, *args, **kwargs):
        calls.append(step)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    with pytest.raises(CheckpointError, match=r"the disk is full .*checkpoint 3 in .* stays usable.*sweeps resume"):
        sweeps.run(data, run_dir=run_dir, **SWEEP)
    monkeypatch.setattr(ocp.CheckpointManager, "save", original)
    sweeps.run(data, run_dir=run_dir, resume=True, **SWEEP)
    assert_same_run(uninterrupted[1], run_dir)


def test_resuming_under_changed_settings_or_data_lists_what_differs(data, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    undo = crash_after_saves(monkeypatch, 1)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=run_dir, **SWEEP)
    undo()
    with pytest.raises(ValueError, match=r"(?s)started with other settings.*\n  epochs: 2 -> 3\n.*start a new run"):
        sweeps.run(data, run_dir=run_dir, resume=True, **{**SWEEP, "epochs": 3})
    other = synthetic("binary", rows=400, seed=1)
    with pytest.raises(ValueError, match=r"data: the arrays differ"):
        sweeps.run(other, run_dir=run_dir, resume=True, **SWEEP)
    # a fork continues the checkpoint under the new settings, in a new folder, and leaves the old one alone
    fork = sweeps.run(data, run_dir=tmp_path / "fork", resume=run_dir, **{**SWEEP, "divergence_threshold": 20.0})
    assert len(fork.table) == 10 and fork.config["divergence_threshold"] == 20.0
    assert not (run_dir / "config.json").exists()


def test_resume_refuses_a_folder_that_is_not_a_run_and_returns_a_finished_one(data, uninterrupted, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is not a sweepax run folder that can be resumed"):
        sweeps.run(data, run_dir=tmp_path / "empty", resume=True, **SWEEP)
    with pytest.raises(ValueError, match="does not exist"):
        sweeps.run(data, run_dir=tmp_path / "nothing", resume=True, **SWEEP)
    result, run_dir = uninterrupted
    again = sweeps.run(data, run_dir=run_dir, resume=True, **SWEEP)
    pd.testing.assert_frame_equal(again.table, result.table)


def test_a_folder_holding_a_run_is_refused_and_overwrite_leaves_nothing_of_the_old_run(data, tmp_path):
    run_dir = tmp_path / "run"
    sweeps.run(data, space={"learning_rate": [1e-3, 1e-2], "batch_size": [16, 32]}, epochs=1, run_dir=run_dir)
    assert (run_dir / "plots" / "marginal_batch_size.png").is_file()
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"already holds a finished run.*overwrite=True"):
        sweeps.run(data, space={"learning_rate": [1e-3]}, epochs=1, run_dir=run_dir)
    assert len(sweeps.load_result(run_dir).table) == 4, "the refused run changed nothing"
    sweeps.run(data, space={"learning_rate": [1e-3]}, epochs=1, run_dir=run_dir, overwrite=True)
    assert len(sweeps.load_result(run_dir).table) == 1
    assert not (run_dir / "plots" / "marginal_batch_size.png").exists(), "the old run's plots are gone"
    assert (run_dir / "notes.txt").read_text() == "mine", "files a run did not write are left alone"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc: a folder nobody can write into")
def test_an_unwritable_run_dir_is_refused_before_training(data, tmp_path):
    from helpers import log_compilations

    with log_compilations() as compiled:
        with pytest.raises(ValueError, match="cannot create run_dir /proc/sweepax-run"):
            sweeps.run(data, space={"learning_rate": [1e-3]}, epochs=1, run_dir="/proc/sweepax-run")
        with pytest.raises(ValueError, match="/proc is not a sweepax run folder"):  # and not an empty one either
            sweeps.run(data, space={"learning_rate": [1e-3]}, epochs=1, run_dir="/proc")
    assert not compiled.count("jit(train_epoch)"), "refused before anything compiled"


def test_results_that_cannot_be_written_at_the_end_are_saved_elsewhere(data, tmp_path, monkeypatch):
    from sweeps.results.result import Result

    original = Result.save

    def save(self, run_dir):
        if Path(run_dir) == tmp_path / "run":
            raise PermissionError(errno.EACCES, "Permission denied")
        return original(self, run_dir)

    monkeypatch.setattr(Result, "save", save)
    with pytest.raises(ValueError, match=r"could not write the results into .*saved in (\S+) instead") as error:
        sweeps.run(data, space={"learning_rate": [1e-3, 1e-2]}, epochs=1, run_dir=tmp_path / "run")
    rescue = str(error.value).split("saved in ")[1].split(" instead")[0]
    assert len(pd.read_csv(Path(rescue) / "table.csv")) == 2


@pytest.fixture(scope="module")
def churn_rows(tmp_path_factory):
    """The first 400 rows of the churn CSV. The saved models and then the signalled runs (the file's last tests)
    train on them with the same structure and population size (4): their programs are compiled once, here, and the
    signalled processes load them from the session's compilation cache. 80 rows each to validate and to test, as
    many as the rows predicted below: the predictions' operations are compiled once too."""
    path = tmp_path_factory.mktemp("rows") / "churn.csv"
    pd.read_csv(CHURN, dtype=str, keep_default_na=False).head(400).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def churn_models(tmp_path_factory, churn_rows):
    data = sweeps.load_csv(churn_rows, target="Churn", test_fraction=0.2)
    run_dir = tmp_path_factory.mktemp("churn") / "run"
    space = {"learning_rate": [1e-3, 3e-3, 1e-2, 3e-2]}  # one population of 4, as the signalled runs train
    result = sweeps.run(data, space=space, epochs=3, run_dir=run_dir, keep_models=2)
    return run_dir, data, result


def test_the_saved_model_reproduces_its_recorded_metrics_and_predicts_new_rows(churn_models):
    run_dir, data, result = churn_models
    best = result.best()
    model = sweeps.load_model(run_dir)
    assert model.trial == int(best["number"])
    p = model.predict_proba(np.asarray(data.x_val))
    y = np.asarray(data.y_val)
    loss = -np.mean(y * np.log(p[:, 1]) + (1 - y) * np.log(p[:, 0]))
    accuracy = np.mean((p[:, 1] > 0.5) == (y > 0.5))
    assert loss == pytest.approx(best["best_val_loss"], abs=1e-5)
    assert accuracy == pytest.approx(best["best_val_accuracy"], abs=1e-5)
    assert set(result.config["test_metrics"]) >= {"test_loss", "test_accuracy", "test_auc"}


def test_predictions_ignore_column_order_and_bad_rows_get_clear_errors(churn_models, tmp_path):
    run_dir, _, _ = churn_models
    model = sweeps.load_model(run_dir)
    rows = pd.read_csv(CHURN).head(80)
    shuffled = rows[list(reversed(rows.columns))]
    np.testing.assert_array_equal(model.predict(rows), model.predict(shuffled))
    with pytest.raises(ValueError, match="Contract"):
        model.predict(rows.drop(columns=["Contract"]))
    unseen = rows.assign(Contract="Decade-long")
    model.predict(unseen)
    assert "Contract" in model.last_report.summary()
    with pytest.raises(ValueError, match=r"tenure.*lots"):
        model.predict(rows.assign(tenure=["lots"] + list(rows["tenure"][1:])))
    with pytest.raises(ValueError, match="trial 999 was not saved"):
        sweeps.load_model(run_dir, trial=999)
    with pytest.raises(ValueError, match="has no saved models"):
        sweeps.load_model(tmp_path)


def test_sweeps_predict_writes_predictions_and_scores_them(churn_models, tmp_path, capsys):
    from sweeps.cli.main import main

    run_dir, _, _ = churn_models
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run_dir), str(CHURN), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    predictions = pd.read_csv(out)
    assert list(predictions.columns) == ["prediction", "p_No", "p_Yes"] and len(predictions) == 7043
    assert "accuracy 0." in printed


CLI_CONFIG = """
[data]
path = "{csv}"
target = "Churn"
test_fraction = 0.2
[space]
learning_rate = {{loguniform = [1e-4, 1e-1]}}
[strategy]
name = "grid"
n = 8
[train]
epochs = 3
max_population = 4
[run]
checkpoint_every = 1
"""
# `python -m sweeps`, held at its first checkpoint until the test's signal has arrived (a minute at most): however
# fast its epochs are, the run is signalled mid-run, between epochs; what it does then is the command's own.
SIGNALLED = """
import sys, time
from sweeps.cli.main import command
from sweeps.driver import checkpoints, signals

caught, held, save, init = [], [], checkpoints.Checkpoints.save, signals.Signals.__init__

def noting(self):
    init(self)
    caught.append(self)

def save_and_hold(self, snapshot):
    step = save(self, snapshot)
    if not held:
        held.append(step)
        print("checkpoint", step, flush=True)
        deadline = time.monotonic() + 60
        while caught[-1].received is None and time.monotonic() < deadline:
            time.sleep(0.01)
    return step

signals.Signals.__init__, checkpoints.Checkpoints.save = noting, save_and_hold
command()
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_finishes_the_epoch_saves_and_names_the_resume_command(tmp_path, churn_rows, signum, code):
    config = tmp_path / "sweep.toml"
    config.write_text(CLI_CONFIG.format(csv=churn_rows.as_posix()))
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEPS_CACHE_DIR": "off"}
    command = [sys.executable, "-c", SIGNALLED, "run", str(config), "--out", str(run_dir), "--quiet"]
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        process = forked.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        ready, _, _ = select.select([process.stdout], [], [], 120)
        held = process.stdout.readline() if ready else ""  # its first checkpoint is saved (or it ended)
        process.send_signal(signum)
        process.communicate(timeout=120)
        err = Path(stderr.name).read_text()
    assert held.startswith("checkpoint "), err[-2000:]
    assert process.returncode == code, err[-2000:]
    assert f"sweeps resume {run_dir}" in err
    assert not (run_dir / "config.json").exists()
    from sweeps.cli.main import main

    assert main(["resume", str(run_dir), "--quiet"]) == 0
    table = pd.read_csv(run_dir / "table.csv")
    assert len(table) == 8 and set(table["state"]) <= {"complete", "diverged"}
    assert main(["resume", str(run_dir)]) == 0, "a finished run: resume says so and exits 0"
