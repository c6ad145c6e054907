"""The life of a run folder (issue 20, items 6-9 and 11-13): how it is written, claimed, locked, cleared, resumed.

Each file is written whole or not at all and `finished.json` last, so a run killed during its final write is
unfinished and resumes to the same results; one process at a time holds a folder, and a killed one leaves no
stale lock; a checkpoint is continued only by the run that wrote it; a new run never adopts checkpoints, nor
deletes files, it did not write; a dry run takes any folder; a refused resume names commands that work; a full
disk gives one message and never hangs.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import forked
import pandas as pd
import pytest
from test_checkpoints import assert_same_run
from test_cli import CHURN, run_cli, table_of, write_config

import sweeps
from models import MLP
from sweeps.cli.main import main
from sweeps.driver import run_folder
from sweeps.driver.checkpoints import CheckpointMismatch
from sweeps.driver.run_lock import RunFolderInUse

from helpers import Stop, crash_after_saves

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEPS_CACHE_DIR": "off"}
# One structure, four trials, two epochs, a checkpoint every epoch, two kept models: small, and a final write of
# every kind of file. The structure and population are those of test_cli's SMALL config, which the config files here
# run on the same rows (`data`, `rows`): both compile their programs once.
SWEEP = dict(
    model=MLP(hidden=(8,)),
    batch_size=256,
    space={"learning_rate": [1e-3, 1e-2, 3e-2, 1e-1]},
    epochs=2,
    checkpoint_every=1,
    keep_models=2,
)
# After run.json, the final write: models/models.json, two plots, config.json, the table and the history (Parquet,
# CSV), finished.json.
FINAL_WRITE = 9
RESULTS = ("table.parquet", "table.csv", "history.parquet", "history.csv")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """The first 800 rows of the churn CSV: the config files here train on it (test_cli's SMALL, 4 trials), and
    SWEEP too (`data`)."""
    path = tmp_path_factory.mktemp("rows") / "churn.csv"
    pd.read_csv(CHURN, dtype=str, keep_default_na=False).head(800).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def data(rows):
    """The rows as a config file's `[data]` loads them."""
    return sweeps.load_csv(rows, target="Churn")


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted run of SWEEP."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    sweeps.run(data, run_dir=run_dir, **SWEEP)
    return run_dir


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what a refused command must leave as it was."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_results(reference: Path, run_dir: Path) -> None:
    assert_same_run(reference, run_dir)
    for name in RESULTS:
        assert (run_dir / name).read_bytes() == (reference / name).read_bytes(), name
    assert not list(run_dir.rglob("*.partial")), "no partial file is left"


# --- 6: a kill during the final write leaves an unfinished run, and resuming it gives the same results ---------


def stop_at_file(monkeypatch, k: int) -> list[str]:
    """The next run stops as a kill would while its k-th file after run.json is being written: the files before
    it whole, a partial of it left behind. Returns the names written, in order."""
    original, names = run_folder.atomic_write, []

    @contextlib.contextmanager
    def atomic_write(path):
        path = Path(path)
        names.append(path.name)
        if len(names) == k + 1:  # the first is run.json, at the start
            path.with_name(f".{path.name}{run_folder.PARTIAL}").write_bytes(b"half of it")
            raise Stop(path.name)
        with original(path) as f:
            yield f

    monkeypatch.setattr(run_folder, "atomic_write", atomic_write)
    return names


@pytest.mark.parametrize("k", range(1, FINAL_WRITE + 1))
def test_a_run_stopped_at_any_file_of_its_final_write_is_unfinished_and_resumes_to_the_same_results(
    data, reference, tmp_path, monkeypatch, k
):
    run_dir = tmp_path / "run"
    names = stop_at_file(monkeypatch, k)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=run_dir, **SWEEP)
    monkeypatch.undo()
    assert names[0] == "run.json" and (names[-1] == "finished.json") == (k == FINAL_WRITE)
    assert not run_folder.is_finished(run_dir)
    with pytest.raises(ValueError, match=r"has not finished \(no finished.json.*sweeps resume"):
        sweeps.load_result(run_dir)
    sweeps.run(data, run_dir=run_dir, resume=True, **SWEEP)
    assert run_folder.is_finished(run_dir)
    assert_same_results(reference, run_dir)


KILL_IN_THE_TABLE = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import pandas as pd
import sweeps
from test_run_folder import SWEEP

def to_csv(self, *args, **kwargs):  # the first CSV of the final write is the table's: table.parquet is there
    os.kill(os.getpid(), signal.SIGKILL)

data = sweeps.load_csv(sys.argv[2], target="Churn")
pd.DataFrame.to_csv = to_csv
sweeps.run(data, run_dir=sys.argv[1], **SWEEP)
"""


def test_a_run_killed_with_sigkill_while_writing_its_table_resumes_and_report_says_so(
    data, reference, tmp_path, capsys, rows
):
    run_dir = tmp_path / "run"
    script = KILL_IN_THE_TABLE.format(tests=str(ROOT / "tests"))
    argv = [sys.executable, "-c", script, str(run_dir), str(rows)]
    done = forked.run(argv, env=ENV, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert (run_dir / "table.parquet").is_file() and not run_folder.is_finished(run_dir)
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "has not finished" in err and f"sweeps resume {run_dir}" in err
    sweeps.run(data, run_dir=run_dir, resume=True, **SWEEP)  # not "already finished": the results are written
    assert_same_results(reference, run_dir)


# --- 7: one process at a time ------------------------------------------------------------------------------------

# run_lock.py and the run_folder.py it imports (numpy, no other module of the library) loaded without the package's
# __init__ (which imports JAX): the holder starts in a fraction of a second.
HOLD = """
import sys, time, types
from pathlib import Path

for name in ("sweeps", "sweeps.driver"):
    package = types.ModuleType(name)
    package.__path__ = [str(Path(sys.argv[2]).joinpath(*name.split(".")[1:]))]
    sys.modules[name] = package
from sweeps.driver.run_lock import RunLock

RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(300)
"""


@contextlib.contextmanager
def held(run_dir: Path):
    """Another process holds `run_dir`'s lock until the block ends; then it is killed with SIGKILL."""
    argv = [sys.executable, "-c", HOLD, str(run_dir), str(ROOT / "sweeps")]
    process = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_folder_another_process_holds_is_refused_with_its_pid_and_host_and_kill_9_frees_it(
    data, reference, tmp_path, rows
):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    config = write_config(tmp_path, path=rows)
    with held(run_dir) as other:
        before = snapshot(run_dir)
        who = rf"{re.escape(str(run_dir))} is in use by pid {other.pid} on host {re.escape(socket.gethostname())} "
        for options in ({"overwrite": True}, {"resume": True}):
            with pytest.raises(RunFolderInUse, match=who + "since .*; wait for it to finish"):
                sweeps.run(data, run_dir=run_dir, **options, **SWEEP)
        with pytest.raises(RunFolderInUse, match=who):  # a fork into it
            sweeps.run(data, run_dir=run_dir, resume=reference, **SWEEP)
        for argv in (["run", config, "--out", run_dir, "--overwrite"], ["resume", run_dir]):
            code, _, err = run_cli(argv)
            assert code == 2 and re.search(who, err) and len(err.splitlines()) == 1, err
        assert snapshot(run_dir) == before, "a refused command changed nothing, --overwrite deleted nothing"
    # the holder died by SIGKILL: the OS let its lock go, nothing stale is left
    sweeps.run(data, run_dir=run_dir, overwrite=True, **SWEEP)
    assert_same_results(reference, run_dir)


# --- 8: a new run never adopts checkpoints it did not write ---------------------------------------------------


def test_a_new_run_in_a_folder_whose_run_json_was_deleted_does_not_adopt_its_checkpoints(data, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    undo = crash_after_saves(monkeypatch, 1)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=run_dir, **SWEEP)  # seed 0, killed
    undo()
    (run_dir / "run.json").unlink()
    before = snapshot(run_dir)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"is not a sweepax run folder .*it holds checkpoints/;"):
            sweeps.run(data, run_dir=run_dir, seed=1, overwrite=overwrite, **SWEEP)
    assert snapshot(run_dir) == before, "the checkpoints are neither used nor deleted"


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


# --- 9: a run deletes only what it wrote, and refuses a folder of someone else's files ----------------------------


def test_a_folder_of_someone_elses_files_is_refused_and_nothing_in_it_is_deleted(data, tmp_path, rows):
    user = tmp_path / "mine"
    for step in (1, 2):
        (user / "checkpoints" / str(step)).mkdir(parents=True)
        (user / "checkpoints" / str(step) / "state.bin").write_bytes(b"my step")
    (user / "models").mkdir()
    (user / "models" / "model.bin").write_bytes(b"my model")
    (user / "config.json").write_text('{"mine": true}')
    (user / "history.csv").write_text("epoch,loss\n1,0.5\n")
    before = snapshot(user)
    refused = r"is not a sweepax run folder \(it has no run.json of ours\) and is not empty: it holds checkpoints/, "
    refused += r"config.json, history.csv, models/; .*never deletes what it did not write"
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=refused):
            sweeps.run(data, run_dir=user, overwrite=overwrite, **SWEEP)
    code, _, err = run_cli(["run", write_config(tmp_path, path=rows), "--out", user, "--overwrite"])
    assert code == 2 and re.search(refused, err), err
    assert snapshot(user) == before


def test_overwrite_deletes_only_names_a_run_writes_whatever_its_manifest_says(data, reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    (tmp_path / "outside.txt").write_text("mine")
    (run_dir / "notes.txt").write_text("mine")
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest["writes"] += ["../outside.txt", "notes.txt"]  # a tampered manifest
    (run_dir / "run.json").write_text(json.dumps(manifest))
    sweeps.run(data, run_dir=run_dir, overwrite=True, **SWEEP)
    assert (tmp_path / "outside.txt").read_text() == "mine" and (run_dir / "notes.txt").read_text() == "mine"
    assert_same_results(reference, run_dir)


# --- 11: a dry run into a folder that holds a run -------------------------------------------------------------


def test_a_dry_run_into_a_folder_holding_a_live_run_writes_nothing_and_needs_no_lock(reference, tmp_path, rows):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    config = write_config(tmp_path, path=rows)
    with held(run_dir):
        before = snapshot(run_dir)
        code, out, err = run_cli(["run", config, "--dry-run", "--out", run_dir])
        assert code == 0, err
        assert snapshot(run_dir) == before
    assert "dry run: nothing trained, nothing written" in out
    assert "note: the run itself would stop here:" in out and "is in use by pid" in out
    code, out, err = run_cli(["run", config, "--dry-run", "--out", run_dir])  # no holder now
    assert code == 0 and "note: the run itself would stop here:" in out and "already holds a finished run" in out


# --- 12: a refused resume advises commands that work ------------------------------------------------------------


def test_a_resume_refused_for_an_edited_config_advises_commands_that_work(tmp_path, monkeypatch, rows):
    config = write_config(tmp_path, extra="\n[run]\ncheckpoint_every = 1\n", path=rows)
    original = config.read_text()
    run_dir = tmp_path / "run"
    undo = crash_after_saves(monkeypatch, 2)
    with pytest.raises(Stop):
        run_cli(["run", config, "--out", run_dir, "--quiet"])
    undo()
    never = f"`sweeps resume {run_dir}`"  # the command that fails

    # a change a fork can continue: resume as saved, or fork
    config.write_text(original.replace("batch_size = 256", "batch_size = 256\ndivergence_threshold = 20"))
    code, _, err = run_cli(["resume", run_dir])
    assert code == 2 and "divergence_threshold: 10.0 -> 20" in err and never not in err, err
    assert f"`sweeps resume {run_dir} --saved-config`" in err and f"`sweeps resume {run_dir} --fork NEW_DIR`" in err
    code, _, err = run_cli(["resume", run_dir, "--fork", tmp_path / "fork", "--quiet"])
    assert code == 0, err
    assert json.loads((tmp_path / "fork" / "config.json").read_text())["divergence_threshold"] == 20

    # a change of the trials: resume as saved, or a new run (a fork cannot continue other trials)
    config.write_text(original.replace("epochs = 2", "epochs = 3"))
    code, _, err = run_cli(["resume", run_dir])
    assert code == 2 and "epochs: 2 -> 3" in err and never not in err and "--fork" not in err, err
    assert f"`sweeps run {config} --out NEW_DIR`" in err
    code, _, err = run_cli(["run", config, "--out", tmp_path / "new", "--quiet"])
    assert code == 0 and table_of(tmp_path / "new")["epochs"].max() == 3, err
    code, _, err = run_cli(["resume", run_dir, "--saved-config", "--quiet"])
    assert code == 0, err
    table = table_of(run_dir)
    assert len(table) == 4 and table["epochs"].max() == 2


# --- 13: a full disk: one message, the way on, no hang --------------------------------------------------------

FULL_DISK = """
import sys
from orbax.checkpoint._src.serialization import serialization, type_handlers
from sweeps.cli import main as cli

WHERE = "/" + sys.argv.pop(1) + "/"
FULL = "RESOURCE_EXHAUSTED: Failed writing: No space left on device [os_error_code='28']"  # as tensorstore says it
arrays, numpy_arrays = serialization.async_serialize_from_host, type_handlers.NumpyHandler._open_and_write

async def write_arrays(slices, spec, **kwargs):  # checkpoints: jax arrays, in orbax's background thread
    if WHERE in str(spec):
        raise ValueError(FULL)
    return await arrays(slices, spec, **kwargs)

async def write_numpy(self, value, spec, context):  # the kept models: numpy arrays
    if WHERE in str(spec):
        raise ValueError(FULL)
    return await numpy_arrays(self, value, spec, context)

serialization.async_serialize_from_host = write_arrays
type_handlers.NumpyHandler._open_and_write = write_numpy
sys.argv = ["sweeps", *sys.argv[1:]]
cli.command()
"""


@pytest.mark.parametrize("where", ["checkpoints", "models"])
def test_a_full_disk_gives_one_message_that_says_how_to_go_on_and_never_hangs(tmp_path, where, rows):
    from orbax.checkpoint._src.serialization import serialization, type_handlers

    if not hasattr(serialization, "async_serialize_from_host") or not hasattr(
        type_handlers.NumpyHandler, "_open_and_write"
    ):
        pytest.skip("this orbax writes arrays elsewhere: the full disk cannot be staged here")
    config = write_config(tmp_path, extra="\n[run]\ncheckpoint_every = 1\n", path=rows)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-c", FULL_DISK, where, "run", str(config), "--out", str(run_dir), "--quiet"]
    done = forked.run(command, env=ENV, capture_output=True, text=True, timeout=240)  # a hang fails here
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr[-3000:]
    assert "disk is full" in done.stderr
    assert re.search(rf"[Ff]ree space.*, then .*`sweeps resume {run_dir}`", done.stderr), done.stderr
    code, _, err = run_cli(["resume", run_dir, "--quiet"])  # space freed: the advised command finishes the run
    assert code == 0, err
    assert run_folder.is_finished(run_dir) and len(pd.read_csv(run_dir / "table.csv")) == 4


def test_verbose_shows_the_traceback_of_an_error(tmp_path):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    with pytest.raises(ValueError, match="nope.toml"):
        main(["run", str(tmp_path / "nope.toml"), "--verbose"])
