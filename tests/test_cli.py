"""Tests of the `sweeps` command line (sweeps.cli) and of config files (sweeps.cli.config).

The sweeps here are small (4 learning rates, 2 epochs, batch 256, 8 hidden
units) and few: one finished run serves most tests, and each test that trains
checks more than one thing. One test runs the shipped example with fewer
trials and epochs.
"""

import contextlib
import io
import json
import os
import pathlib
import re
import shutil
import sys

import forked
import jax
import pandas as pd
import pytest

import sweeps.cli.config_schema
from sweeps.cli.config import apply_override, load_config, parse_value, resolve_saved
from sweeps.cli.config_schema import settings_from_config
from sweeps.cli.main import main

from helpers import EPOCH, log_compilations

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHURN = ROOT / "data" / "telco_customer_churn.csv"
EXAMPLE = ROOT / "data" / "examples" / "churn_lr.toml"

SMALL = """\
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
epochs = 2
batch_size = 256
"""

RUN_FILES = ["config.json", "table.parquet", "table.csv", "history.parquet", "history.csv"]
PLOTS = ["plots/learning_curves.png", "plots/val_loss_vs_learning_rate.png"]


def write_config(folder, extra="", name="small.toml", path=CHURN):
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / name
    config.write_text(SMALL.format(path=pathlib.Path(path).as_posix()) + extra)
    return config


def run_cli(argv):
    """main(argv) with stdout and stderr captured (for module-scoped fixtures, where capsys is not available)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def table_of(run_dir):
    return pd.read_csv(pathlib.Path(run_dir) / "table.csv")


@pytest.fixture
def finished(finished_cli_run):
    """One small finished run (conftest's, shared with other modules): (config file, run folder, exit code, stdout,
    stderr)."""
    return finished_cli_run


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if the data is loaded (the step before training)."""
    calls = []
    monkeypatch.setattr(
        sweeps.cli.config_schema, "load_csv", lambda *a, **k: calls.append(a) or pytest.fail("data loaded")
    )
    return calls


# --- sweeps run ------------------------------------------------------------------------


def test_run_writes_the_run_folder_and_prints_a_summary(finished):
    _, run_dir, code, out, err = finished
    assert code == 0, err
    for name in RUN_FILES + PLOTS:
        assert (run_dir / name).is_file(), name
    lines = out.rstrip().splitlines()
    assert lines[-1] == f"run folder: {run_dir}"
    assert "top 4 of 4 trials by val_loss" in out
    assert "4 trials: " in out and " complete, " in out and " diverged" in out
    assert "best: trial " in out and "learning_rate " in out and "val_accuracy " in out and "val_auc " in out
    assert "always predicting the most common class would give val_accuracy 0.7" in out
    assert "wall time: " in out
    assert "Traceback" not in err


def test_run_folder_config_records_the_config_file(finished):
    config_file, run_dir, *_ = finished
    recorded = json.loads((run_dir / "config.json").read_text())
    assert recorded["config_file"] == str(config_file.resolve())
    assert recorded["sweep_config"]["strategy"] == {"name": "grid", "n": 4}
    assert recorded["sweep_config"]["run"]["dir"] == str(run_dir)
    assert 0.5 < recorded["data"]["majority_class_fraction"] < 1
    assert len(table_of(run_dir)) == 4


def test_set_epochs_quiet_and_the_numbered_default_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "configs", name="lr.toml")
    taken = tmp_path / "runs" / "lr"
    taken.mkdir(parents=True)
    (taken / "config.json").write_text("{}")  # runs/lr is not empty: the default moves on
    assert main(["run", str(config), "--set", "train.epochs=1", "--quiet"]) == 0
    assert capsys.readouterr().out == "runs/lr-2\n"  # --quiet prints only the folder
    assert (table_of(tmp_path / "runs" / "lr-2")["epochs"] == 1).all()
    assert (taken / "config.json").read_text() == "{}"


@pytest.fixture(scope="module")
def seeded(finished_cli_run, tmp_path_factory):
    """A copy of the finished run overwritten by 2 configurations x 4 seeds, one epoch: 8 trials in chunks of 4,
    the finished run's compiled program. (run folder, exit code, stdout, stderr), read by the seeds test and the
    overwrite test."""
    config, run_dir, *_ = finished_cli_run
    copy = tmp_path_factory.mktemp("seeded") / "copy"
    shutil.copytree(run_dir, copy)
    argv = ["run", config, "--out", copy, "--overwrite"]
    for setting in ("train.seeds=4", "strategy.n=2", "train.epochs=1", "train.max_population=4"):
        argv += ["--set", setting]
    code, out, err = run_cli(argv)
    return copy, code, out, err


def test_seeds_print_the_configuration_summary(seeded):
    _, code, out, err = seeded
    assert code == 0, err
    assert "8 trials (2 configurations x 4 seeds)" in out
    assert "top 2 configurations by mean val_loss over 4 seeds" in out


@pytest.mark.parametrize(
    "extra, overrides, expected",
    [
        ("epoch = 3\n", [], "unknown key 'train.epoch' in {config}; did you mean 'train.epochs'?"),
        ("", ["train.epoch=3"], "unknown key 'train.epoch' in --set train.epoch=3; did you mean 'train.epochs'?"),
        ("[trian]\n", [], "unknown section [trian] in {config}; did you mean [train]?"),
        ("learning_rate = 0.1\n", [], "did you mean 'space.learning_rate'?"),
        ("", ["space.lerning_rate=0.1"], "unknown hyperparameter 'lerning_rate'"),
        ("", ["strategy.name=grdi"], "unknown strategy 'grdi'"),
        ("", ["train.early_stopping.patince=2"], "did you mean 'train.early_stopping.patience'?"),
        ("", ["train.epochs"], "--set needs section.key=value"),
    ],
    ids=["file-key", "set-key", "file-section", "hparam-in-train", "set-space", "strategy", "nested", "no-equals"],
)
def test_unknown_names_exit_2_with_a_suggestion(tmp_path, capsys, no_training, extra, overrides, expected):
    config = write_config(tmp_path, extra=extra)
    argv = ["run", str(config), "--out", str(tmp_path / "run")]
    for text in overrides:
        argv += ["--set", text]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert expected.format(config=config) in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_missing_config_file_exits_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config file ") and "nope.toml" in err and "does not exist" in err


def test_toml_syntax_error_names_the_file(tmp_path, capsys):
    config = tmp_path / "broken.toml"
    config.write_text("[data\npath = 1\n")
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"error: {config} is not valid TOML: " in err and "line 1" in err


def test_a_user_error_from_the_engine_exits_2(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["run", str(config), "--set", "train.objective=val_rmse", "--out", str(tmp_path / "r")]) == 2
    assert "error: objective 'val_rmse' is not computed for a binary task" in capsys.readouterr().err


def test_existing_out_folder_is_refused_before_training(finished, capsys, no_training):
    config, run_dir, *_ = finished
    assert main(["run", str(config), "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert str(run_dir) in err and "already holds a finished run" in err
    assert "--overwrite" in err and "--out" in err
    assert no_training == []


def test_existing_run_dir_from_the_config_is_refused(finished, tmp_path, capsys, no_training):
    _, run_dir, *_ = finished
    config = write_config(tmp_path, extra=f'\n[run]\ndir = "{run_dir.as_posix()}"\n')
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert "already holds a finished run" in err and "[run] dir" in err


def test_overwrite_replaces_a_finished_run_and_set_strategy_n(seeded):
    copy, code, _, err = seeded  # a copy of the finished run (4 trials), run again with --overwrite
    assert code == 0, err
    assert len(table_of(copy)) == 8  # the new sweep's 2 configurations (--set strategy.n=2) x 4 seeds, not the old 4


def test_the_shipped_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its data path is relative to its own folder: it runs from anywhere
    out_dir = tmp_path / "example"
    code, out, err = run_cli(["run", EXAMPLE, "--set", "train.epochs=2", "--set", "strategy.n=8", "--out", out_dir])
    assert code == 0, err
    table = table_of(out_dir)
    assert len(table) == 8 and (table["epochs"] <= 2).all()
    assert "top 8 of 8 trials by val_loss" in out


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    example = ROOT / "data" / "examples" / "churn_three.toml"
    out_dir = tmp_path / "never"
    with log_compilations() as compiled:
        code, out, err = run_cli(["run", example, "--dry-run", "--out", out_dir])
    assert code == 0, err
    # five batch sizes in one program: micro-batches of 16, the larger ones accumulated (tests/test_fused_shapes.py)
    assert "90 trials in 1 structure groups: 1 compiled programs to build" in out
    assert "hidden=[64] relu, batch 16 (x1-16 accumulated), adam/constant" in out
    assert (
        "fused: group 0 trains 5 structures in one program ("
        + ", ".join(f"hidden [64] batch {batch}" for batch in (16, 32, 64, 128, 256))
        in out
    )
    code, apart, err = run_cli(["run", example, "--dry-run", "--set", "train.fuse=false", "--out", out_dir])
    assert code == 0, err
    assert "90 trials in 5 structure groups: 5 compiled programs to build" in apart and "fused:" not in apart
    for batch in (16, 32, 64, 128, 256):
        assert f"batch {batch}," in apart
    assert "memory_mb" in out and "per_device" in out and "dry run: nothing trained" in out
    assert f"devices: {len(jax.devices())} device" in out and "MB per device" in out
    assert "compile seconds: not measured by a plain dry run; `--dry-run --compile`" in out
    assert compiled.count(EPOCH) == 0 and not out_dir.exists()


def test_dry_run_compile_measures_each_structure_and_the_run_reuses_the_programs(tmp_path):
    config = write_config(tmp_path)
    fresh = ["--set", "model.hidden=[5]", "--set", "space.batch_size=[128, 256]", "--set", "train.fuse=false"]
    # programs no other test compiles, one per structure
    out_dir = tmp_path / "run"
    with log_compilations() as compiled:
        code, out, err = run_cli(["run", config, "--dry-run", "--compile", "--out", out_dir, *fresh])
    assert code == 0, err
    assert compiled.count(EPOCH) == 2 and not out_dir.exists()
    assert "compiled ahead of time, nothing trained; XLA's compile seconds per structure" in out
    rows = [line for line in out.splitlines() if line.lstrip().startswith("hidden=[5] relu, batch")]
    assert len(rows) == 2 and "batch 128" in rows[0] and "batch 256" in rows[1], out
    assert all(float(row.split()[-2]) > 0 for row in rows), "compile_s of each structure"
    # two epochs and one initialisation: the batch sizes share it
    assert "compiled 3 programs in " in out and "dry run: nothing trained, no run folder written" in out
    assert f"the compilation cache ({jax.config.jax_compilation_cache_dir}" in out, out  # the session's (conftest)

    with log_compilations() as compiled:
        code, out, err = run_cli(["run", config, "--out", out_dir, *fresh])
    assert code == 0, err
    assert compiled.count(EPOCH) == 0, "the dry run compiled them"
    by_structure = json.loads((out_dir / "config.json").read_text())["compile_by_structure"]
    assert [s["structure"] for s in by_structure] == [r.strip().split("  ")[0] for r in rows]


def test_compile_without_dry_run_is_refused(tmp_path):
    code, _, err = run_cli(["run", write_config(tmp_path), "--compile"])
    assert code == 2 and "--compile goes with --dry-run" in err


# --- sweeps report ---------------------------------------------------------------------


def test_report_redraws_the_plots(finished, tmp_path, capsys):
    _, run_dir, *_ = finished
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "plots")
    assert main(["report", str(copy)]) == 0
    out = capsys.readouterr().out
    for name in PLOTS:
        assert (copy / name).is_file()
        assert str(copy / name) in out
    assert "top 4 of 4 trials by val_loss" in out and "best: trial " in out
    assert out.rstrip().splitlines()[-1] == f"run folder: {copy}"


def test_a_run_without_plots_draws_none_and_report_draws_them(finished, tmp_path):
    config, run_dir, *_ = finished
    code, out, err = run_cli(["run", config, "--set", "run.plots=false", "--out", tmp_path / "bare"])
    assert code == 0, err
    assert not (tmp_path / "bare" / "plots").exists() and "plots/" not in out
    pd.testing.assert_frame_equal(table_of(tmp_path / "bare"), table_of(run_dir))
    code, out, _ = run_cli(["report", tmp_path / "bare"])
    assert code == 0 and all((tmp_path / "bare" / name).is_file() for name in PLOTS)


def test_report_on_a_folder_without_a_run_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a finished sweepax run folder" in capsys.readouterr().err


def test_help_describes_the_commands(capsys):
    assert main(["--help"]) == 0
    assert "sweeps run data/examples/churn_lr.toml" in capsys.readouterr().out
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for word in ("--set", "--out", "--overwrite", "--quiet", "[space]", "[train]", "fuse", "examples:"):
        assert word in out


COMMAND = """
import atexit, sys, threading, time
from pathlib import Path
from sweeps.cli import main as cli

out = Path(sys.argv[1])

def main():
    def write():
        time.sleep(0.3)
        (out / "thread.txt").write_text("written")

    threading.Thread(target=write).start()
    atexit.register(lambda: (out / "atexit.txt").write_text((out / "thread.txt").read_text()))
    print("printed", end="")  # left in stdout's buffer
    return 3

cli.main = main
cli.command()
print("after the exit")
"""


def test_the_command_exits_with_mains_status_after_its_threads_and_exit_handlers(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = forked.run([sys.executable, "-c", COMMAND, str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stdout == "printed", "stdout flushed, nothing runs after the exit"
    assert (tmp_path / "atexit.txt").read_text() == "written", "the thread finished before the exit handlers ran"


# --- load_config and overrides ----------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("5", 5),
        ("1e-3", 1e-3),
        ("true", True),
        ("[128, 64]", [128, 64]),
        ("[128,64]", [128, 64]),
        ("{loguniform=[1e-3,1]}", {"loguniform": [1e-3, 1]}),
        ('"quoted"', "quoted"),
        ("runs/x", "runs/x"),
        ("adam", "adam"),
        ("5\nw = 3", "5\nw = 3"),
    ],
)
def test_parse_value_reads_toml_else_text(text, expected):
    assert parse_value(text) == expected


def test_apply_override_sets_a_copy():
    config = {"train": {"epochs": 20}, "model": {"hidden": [64]}}
    out = apply_override(config, "model.hidden=[128,64]")
    out = apply_override(out, "space.learning_rate={loguniform=[1e-3,1]}")
    out = apply_override(out, "run.dir=runs/x")
    out = apply_override(out, "train.early_stopping.patience=3")
    assert out == {
        "train": {"epochs": 20, "early_stopping": {"patience": 3}},
        "model": {"hidden": [128, 64]},
        "space": {"learning_rate": {"loguniform": [1e-3, 1]}},
        "run": {"dir": "runs/x"},
    }
    assert config == {"train": {"epochs": 20}, "model": {"hidden": [64]}}


def test_apply_override_refuses_a_path_through_a_value():
    with pytest.raises(ValueError, match="train.epochs is 20, not a table"):
        apply_override({"train": {"epochs": 20}}, "train.epochs.x=1")


def test_load_config_fills_defaults_and_is_json(tmp_path):
    config = load_config(write_config(tmp_path), ["train.divergence_threshold=false", "strategy.name=random"])
    assert set(config) == {"config_file", "overrides", "data", "model", "space", "strategy", "train", "run"}
    assert config["overrides"] == ["train.divergence_threshold=false", "strategy.name=random"]
    assert config["data"]["val_fraction"] == 0.2 and config["data"]["drop"] == [] and config["data"]["task"] is None
    assert config["model"] == {"hidden": [8], "activation": "relu"}
    assert config["strategy"] == {"name": "random", "n": 4, "seed": 0}
    assert config["train"]["objective"] == "val_loss" and config["train"]["seeds"] == 1
    assert config["train"]["divergence_threshold"] is None
    assert config["train"]["fuse"] is True
    assert config["run"] == {
        "dir": None,
        "checkpoint_every": None,
        "keep_checkpoints": 2,
        "keep_models": 5,
        "plots": True,
        "devices": None,
        "log": [],
        "mlflow_uri": None,
        "mlflow_experiment": None,
        "tensorboard_dir": None,
    }
    assert json.loads(json.dumps(config)) == config


def test_data_path_is_found_next_to_the_config(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    shutil.copy(CHURN, folder / "churn.csv")
    config = write_config(folder, path="churn.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_config(config)["data"]["path"] == str((folder / "churn.csv").resolve())
    (elsewhere / "churn.csv").write_text("a,Churn\n1,Yes\n")  # the config file's folder, not the working directory
    assert load_config(config)["data"]["path"] == str((folder / "churn.csv").resolve())


def test_data_path_found_nowhere_names_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "configs", path="missing.csv")
    with pytest.raises(ValueError, match="looked for .*configs.*missing.csv .relative to small.toml's folder"):
        load_config(config)


@pytest.mark.parametrize(
    "text, message",
    [
        ('[data]\ntarget = "Churn"\n', r"\[data\] path is missing"),
        (f'[data]\npath = "{CHURN.as_posix()}"\n', r"\[data\] target is missing"),
        (f'[data]\npath = "{CHURN.as_posix()}"\ntarget = "Churn"\n[model]\nhidden = "wide"\n', "list of layer widths"),
        (
            f'[data]\npath = "{CHURN.as_posix()}"\ntarget = "Churn"\n'
            "[space]\nlearning_rate = {loguniform = [1, 0.1]}\n",
            r"\[space\] learning_rate .*low <= high",
        ),
        (
            f'[data]\npath = "{CHURN.as_posix()}"\ntarget = "Churn"\n[strategy]\nseed = 1\n',
            "strategy 'grid' has no option 'seed'",
        ),
        (f'[data]\npath = "{CHURN.as_posix()}"\ntarget = "Churn"\n[run]\ndir = 2024-01-01\n', r"\[run\] dir"),
    ],
    ids=["no-path", "no-target", "hidden", "axis", "strategy-option", "date"],
)
def test_load_config_refuses_bad_values(tmp_path, text, message):
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(config)


def test_train_fuse_from_the_file_or_set_is_a_bool_and_an_older_saved_config_reads_as_true(tmp_path):
    off = tmp_path / "off.toml"
    off.write_text(SMALL.format(path=CHURN.as_posix()).replace("[train]\n", "[train]\nfuse = false\n"))
    assert settings_from_config(load_config(off)).fuse is False
    assert settings_from_config(load_config(write_config(tmp_path), ["train.fuse=false"])).fuse is False
    assert settings_from_config(load_config(off, ["train.fuse=true"])).fuse is True
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.format(path=CHURN.as_posix()).replace("[train]\n", '[train]\nfuse = "no"\n'))
    with pytest.raises(
        ValueError, match=rf"\[train\] fuse in {re.escape(str(bad))} must be true or false, but got 'no'"
    ):
        load_config(bad)
    with pytest.raises(ValueError, match=r"\[train\] fuse in --set train.fuse=no must be true or false, but got 'no'"):
        load_config(off, ["train.fuse=no"])
    saved = load_config(write_config(tmp_path))  # as config.json's sweep_config holds it ...
    del saved["train"]["fuse"]  # ... written before [train] fuse existed
    assert resolve_saved(saved, [], where="the saved configuration")["train"]["fuse"] is True


def test_run_log_names_trackers_and_a_misspelt_one_is_refused_with_the_nearest(tmp_path):
    config = load_config(write_config(tmp_path), ['run.log=["mlflow", "tensorboard"]', "run.tensorboard_dir=tb"])
    assert config["run"]["log"] == ["mlflow", "tensorboard"] and config["run"]["tensorboard_dir"] == "tb"
    with pytest.raises(ValueError, match=r"unknown tracker 'tensorbord' \(did you mean 'tensorboard'\?\)"):
        load_config(write_config(tmp_path), ['run.log=["tensorbord"]'])
    with pytest.raises(ValueError, match=r"\[run\] log takes a list of tracker names"):
        load_config(write_config(tmp_path), ['run.log="mlflow"'])
    with pytest.raises(ValueError, match=r"\[run\] mlflow_uri in .* must be a string, but got 5"):
        load_config(write_config(tmp_path), ["run.mlflow_uri=5"])
