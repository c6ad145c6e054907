"""Run folders someone else gave you: damaged or edited files are caught, named and refused, never used.

One small finished run and one interrupted run (both from a config file, so `sweeps resume` can
continue them) are made once; each test damages a copy of one file and checks the message a user
gets (one line, naming the file, what is wrong and what still works) and that what still works does.
"""

import os
import shutil
import sys
from pathlib import Path

import forked
import jax
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
import pytest

import sweeps
from sweeps.cli.main import main
from sweeps.driver.checkpoints import CheckpointError, Checkpoints
from sweeps.driver.evidence import DamagedRunFolder, file_name
from sweeps.results.plots import plot_run

from helpers import Stop, crash_after_saves

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
[data]
path = "{path}"
target = "Churn"
[model]
hidden = [8]
[space]
learning_rate = {{ loguniform = [1e-3, 1e-1] }}
[strategy]
name = "grid"
n = 4
[train]
epochs = 3
batch_size = 64
max_population = 2
[run]
checkpoint_every = 1
keep_models = 2
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(config file, a finished run folder, the same run killed after its 2nd checkpoint, with a population)."""
    folder = tmp_path_factory.mktemp("damaged")
    rows = pd.read_csv(ROOT / "data" / "telco_customer_churn.csv").head(400)
    rows.to_csv(folder / "rows.csv", index=False)
    config = folder / "sweep.toml"
    config.write_text(CONFIG.format(path=(folder / "rows.csv").as_posix()))
    finished, interrupted = folder / "finished", folder / "interrupted"
    assert main(["run", str(config), "--out", str(finished), "--quiet"]) == 0
    with pytest.MonkeyPatch.context() as patch:
        crash_after_saves(patch, 2)
        with pytest.raises(Stop):
            main(["run", str(config), "--out", str(interrupted), "--quiet"])
    assert newest_checkpoint(interrupted).joinpath("population").is_dir()
    return config, finished, interrupted


def copy(source: Path, tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    shutil.copytree(source, target)
    return target


def newest_checkpoint(run_dir: Path) -> Path:
    return max((p for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def data_files(folder: Path) -> list[Path]:
    """The tensorstore (OCDBT) files that hold an orbax item's array bytes, largest first."""
    return sorted(folder.glob("ocdbt.process_*/d/*"), key=lambda p: -p.stat().st_size)


def flip_silently(folder: Path, read, count: int = 16) -> None:
    """Inverts `count` bytes of the largest array file in `folder`, keeping its size (a disk or copy error),
    at the first place from its middle on where `read()` still reads the arrays back, but changed: damage
    nothing notices without a checksum. (Where the arrays lie in the file differs from run to run: a flip
    elsewhere may break the compression, which reading notices anyway, or hit bytes no array uses.)"""
    path = data_files(folder)[0]
    original, before = path.read_bytes(), jax.tree.leaves(read())
    for start in range(len(original) // 2, len(original) - count, 7):
        data = bytearray(original)
        data[start : start + count] = bytes(b ^ 0xFF for b in data[start : start + count])
        path.write_bytes(bytes(data))
        try:
            after = jax.tree.leaves(read())
        except Exception:  # noqa: BLE001 - the compression broke: not the silent kind
            continue
        if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after)):
            return
    raise AssertionError(f"no flip in {path} changes the arrays silently")


def read_model(folder: Path):
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(folder.absolute())


def read_population(step: Path):
    with ocp.CheckpointManager(step.parent.absolute()) as manager:
        args = ocp.args.Composite(population=ocp.args.StandardRestore())
        return manager.restore(int(step.name), args=args)["population"]


def assert_same_table(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_csv(a / "table.csv"), pd.read_csv(b / "table.csv"))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def files_outside(root: Path, run_dir: Path) -> set[Path]:
    return {p for p in root.rglob("*") if run_dir not in p.parents and p != run_dir}


# --- item 14: checksums of every saved array -----------------------------------------------


def test_a_model_file_changed_on_disk_is_refused_naming_it_and_the_trials_that_still_load(runs, tmp_path, capsys):
    _, finished, _ = runs
    run_dir = copy(finished, tmp_path)
    best = sweeps.load_model(run_dir)
    other = next(n for n in (e["trial"] for e in sweeps.load_result(run_dir).config["models"]) if n != best.trial)
    folder = run_dir / "models" / f"trial_{best.trial}"
    flip_silently(folder, lambda: read_model(folder))
    with pytest.raises(
        DamagedRunFolder, match=rf"trial {best.trial} .*trial_{best.trial}.*checksum.*\[{other}\] still"
    ):
        sweeps.load_model(run_dir)
    kept = sweeps.load_model(run_dir, trial=other)  # the other saved model is whole
    np.testing.assert_array_equal(
        kept.params["Dense_0"]["kernel"], sweeps.load_model(finished, other).params["Dense_0"]["kernel"]
    )
    assert main(["predict", str(run_dir), str(runs[0].parent / "rows.csv"), "--out", str(tmp_path / "p.csv")]) == 2
    assert f"trial_{best.trial}" in one_line_error(capsys)
    assert not (tmp_path / "p.csv").exists()


def test_a_checkpoint_changed_on_disk_is_skipped_and_the_one_before_gives_the_same_table(runs, tmp_path):
    _, finished, interrupted = runs
    run_dir = copy(interrupted, tmp_path)
    newest = newest_checkpoint(run_dir)
    flip_silently(newest / "population", lambda: read_population(newest))
    with pytest.warns(UserWarning, match=rf"checkpoint {newest.name} in .* is damaged .*checksum.*resuming from"):
        assert main(["resume", str(run_dir), "--quiet"]) == 0
    assert_same_table(finished, run_dir)


# --- item 15: names read from a run folder never build a path -----------------------------


def test_a_tampered_objective_is_refused_and_report_writes_nothing_outside_the_run_folder(runs, tmp_path, capsys):
    root = tmp_path / "root"
    run_dir = copy(runs[1], root / "a" / "b")
    config = run_dir / "config.json"
    config.write_text(config.read_text().replace('"objective": "val_loss"', '"objective": "../../PWNED_BY_REPORT"'))
    table = pd.read_parquet(run_dir / "table.parquet")
    table.assign(**{"best_../../PWNED_BY_REPORT": table["best_val_loss"]}).to_parquet(run_dir / "table.parquet")
    before = files_outside(root, run_dir)
    assert main(["report", str(run_dir)]) == 2
    line = one_line_error(capsys)
    assert "config.json" in line and "'../../PWNED_BY_REPORT'" in line
    assert files_outside(root, run_dir) == before
    with pytest.raises(DamagedRunFolder, match="objective"):
        sweeps.load_result(run_dir)


def test_a_hyperparameter_name_with_a_path_separator_is_refused(runs, tmp_path, capsys):
    root = tmp_path / "root"
    run_dir = copy(runs[1], root / "a" / "b")
    table = pd.read_parquet(run_dir / "table.parquet")
    table["params_../../evil"] = np.arange(len(table), dtype=float)
    table.to_parquet(run_dir / "table.parquet")
    before = files_outside(root, run_dir)
    assert main(["report", str(run_dir)]) == 2
    assert "'../../evil'" in one_line_error(capsys)
    assert files_outside(root, run_dir) == before


def test_plots_write_inside_their_folder_whatever_the_names(runs, tmp_path):
    result = sweeps.load_result(runs[1])
    result.table["params_../../evil"] = np.arange(len(result.table), dtype=float)
    result.config = {**result.config, "objective": "../../val_loss"}
    result.table["best_../../val_loss"] = result.table["best_val_loss"]
    folder = tmp_path / "x" / "plots"
    written = plot_run(result, folder)
    assert all(path.parent == folder and path.is_file() for path in written)
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == sorted(p.name for p in written)
    assert file_name("../../evil.png") == "evil.png" and file_name("a/b\\c d.png") == "a_b_c_d.png"


def test_a_trial_label_in_models_json_that_is_not_a_number_is_refused(runs, tmp_path):
    run_dir = copy(runs[1], tmp_path)
    index = run_dir / "models" / "models.json"
    first = sweeps.load_model(run_dir).trial
    index.write_text(index.read_text().replace(f'"trial": {first},', '"trial": "../../../etc",', 1))
    with pytest.raises(DamagedRunFolder, match=r"models\.json.*'\.\./\.\./\.\./etc'"):
        sweeps.load_model(run_dir)


# --- item 16: one clear message per damaged file ----------------------------------------------


def test_resume_after_the_newest_population_was_zero_filled_uses_the_one_before(runs, tmp_path):
    _, finished, interrupted = runs
    run_dir = copy(interrupted, tmp_path)
    newest = newest_checkpoint(run_dir)
    for path in data_files(newest / "population"):
        path.write_bytes(bytes(path.stat().st_size))
    with pytest.warns(UserWarning, match=rf"checkpoint {newest.name} in .* is damaged and was skipped") as caught:
        assert main(["resume", str(run_dir), "--quiet"]) == 0
    message = str(caught[0].message)  # one line: which checkpoint, which item, which one is used instead
    assert "population" in message and "resuming from checkpoint" in message
    assert "\n" not in message and "TensorStore details" not in message and len(message) < 800
    assert_same_table(finished, run_dir)


def test_a_damaged_checkpoint_leaves_no_event_loop_tracebacks(runs, tmp_path):
    run_dir = copy(runs[2], tmp_path)
    for step in (run_dir / "checkpoints").iterdir():
        for path in data_files(step / "population"):
            path.write_bytes(bytes(path.stat().st_size))
    script = (  # each failed read abandons tensorstore's others: they used to report a closed event loop
        "import sys, gc, time, warnings\n"
        "from sweeps.driver.checkpoints import Checkpoints\n"
        "warnings.simplefilter('ignore', UserWarning)\n"
        "for _ in range(8):\n"
        "    checkpoints = Checkpoints(sys.argv[1])\n"
        "    try:\n"
        "        checkpoints.restore_latest(lambda meta: None)\n"
        "    except ValueError:\n"
        "        pass\n"
        "    checkpoints.close()\n"
        "gc.collect(); time.sleep(1); gc.collect()\n"
        "print('done')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = forked.run([sys.executable, "-c", script, str(run_dir)], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-2000:]
    for noise in ("Traceback", "Exception ignored", "Event loop is closed", "never retrieved", "never awaited"):
        assert noise not in done.stderr, done.stderr[-2000:]


def test_predict_on_a_truncated_model_file_names_it(runs, tmp_path, capsys):
    run_dir = copy(runs[1], tmp_path)
    trial = sweeps.load_model(run_dir).trial
    path = data_files(run_dir / "models" / f"trial_{trial}")[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert main(["predict", str(run_dir), str(runs[0].parent / "rows.csv"), "--out", str(tmp_path / "p.csv")]) == 2
    line = one_line_error(capsys)
    assert f"trial_{trial}" in line and "cannot be read" in line and "still load" in line


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda index: index.update(trials=[]), "lists no saved trials"),
        (lambda index: index.pop("preprocessing"), "'preprocessing' entry is missing"),
        (lambda index: index["trials"][0]["structure"].pop("hidden"), "'hidden' entry is missing"),
    ],
    ids=["empty trials", "no preprocessing", "no hidden"],
)
def test_predict_on_an_edited_models_json_names_the_entry(runs, tmp_path, capsys, edit, message):
    import json

    run_dir = copy(runs[1], tmp_path)
    path = run_dir / "models" / "models.json"
    index = json.loads(path.read_text())
    edit(index)
    path.write_text(json.dumps(index))
    assert main(["predict", str(run_dir), str(runs[0].parent / "rows.csv"), "--out", str(tmp_path / "p.csv")]) == 2
    line = one_line_error(capsys)
    assert "models.json" in line and message in line and "sweeps report" in line


def test_a_garbled_models_json_is_named(runs, tmp_path):
    run_dir = copy(runs[1], tmp_path)
    (run_dir / "models" / "models.json").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DamagedRunFolder, match=r"models/models\.json is damaged.*cannot be read.*utf-8"):
        sweeps.load_model(run_dir)


def test_report_on_a_garbled_table_names_it_and_its_csv_copy(runs, tmp_path, capsys):
    run_dir = copy(runs[1], tmp_path)
    path = run_dir / "table.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 4 : len(data) // 2] = bytes(b ^ 0x5A for b in data[len(data) // 4 : len(data) // 2])
    path.write_bytes(bytes(data))
    assert main(["report", str(run_dir)]) == 2
    line = one_line_error(capsys)
    assert "table.parquet is damaged" in line and "table.csv" in line


def test_predict_out_naming_a_folder_is_refused_before_predicting(runs, tmp_path, capsys):
    assert main(["predict", str(runs[1]), str(runs[0].parent / "rows.csv"), "--out", str(tmp_path)]) == 2
    assert "is a folder" in one_line_error(capsys)


@pytest.mark.parametrize("storage", ["nosuchdb://x/y", "not a url"])
def test_report_with_a_bad_optuna_storage_says_so(runs, tmp_path, capsys, storage):
    pytest.importorskip("optuna")
    run_dir = copy(runs[1], tmp_path)
    assert main(["report", str(run_dir), "--optuna", storage]) == 2
    assert f"cannot open the Optuna storage {storage!r}" in one_line_error(capsys)


def test_load_model_takes_a_trial_number_as_digits_and_refuses_other_types(runs):
    saved = sorted(e["trial"] for e in sweeps.load_result(runs[1]).config["models"])
    assert sweeps.load_model(runs[1], trial=str(saved[-1])).trial == saved[-1]
    with pytest.raises(TypeError, match=r"trial must be .* not 1\.5"):
        sweeps.load_model(runs[1], trial=1.5)


def test_when_every_checkpoint_is_damaged_resume_says_so_and_the_way_out_works(runs, tmp_path, capsys):
    _, finished, interrupted = runs
    run_dir = copy(interrupted, tmp_path)
    for step in (run_dir / "checkpoints").iterdir():
        for path in data_files(step / "population"):
            path.write_bytes(bytes(path.stat().st_size))
    assert main(["resume", str(run_dir), "--quiet"]) == 2
    line = one_line_error(capsys)
    assert "no usable checkpoint is left" in line and "delete" in line
    assert not (run_dir / "table.csv").exists(), "nothing trained"
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        Checkpoints(run_dir).restore_latest(lambda meta: None)
    shutil.rmtree(run_dir / "checkpoints")  # the way out the message gives
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    assert_same_table(finished, run_dir)


@pytest.mark.parametrize("damage", ["deleted", "garbled"])
def test_a_lost_run_json_is_put_back_from_the_checkpoints_and_the_run_continues(runs, tmp_path, capsys, damage):
    _, finished, interrupted = runs
    run_dir = copy(interrupted, tmp_path)
    manifest = run_dir / "run.json"
    if damage == "deleted":
        manifest.unlink()
    else:
        manifest.write_bytes(bytes(range(256)))
    assert main(["resume", str(run_dir)]) == 0
    assert "run.json was" in capsys.readouterr().err
    assert_same_table(finished, run_dir)


def test_a_second_ctrl_c_exits_130_with_one_line(runs, tmp_path):
    config = runs[0]
    script = (
        "import sys, threading\n"
        "start = threading.Thread.start\n"
        "def interrupted_start(self):\n"
        "    if self.name == 'async_save':\n"
        "        threading.Thread.start = start\n"
        "        raise KeyboardInterrupt  # the second Ctrl-C, as orbax starts its save thread\n"
        "    return start(self)\n"
        "threading.Thread.start = interrupted_start\n"
        "from sweeps.cli.main import command\n"
        "sys.argv = ['sweeps', 'run', sys.argv[1], '--out', sys.argv[2], '--quiet']\n"
        "command()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWEEPS_CACHE_DIR": "off"}
    command = [sys.executable, "-c", script, str(config), str(tmp_path / "run")]
    done = forked.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 130, done.stderr[-2000:]
    assert done.stderr.strip() == "interrupted", done.stderr[-2000:]
