"""Issue 20's rough edges: the compilation cache switch (item 21), resuming on another device count (item 23),
`sweeps run --help`'s strategy keys and a closed stdout (item 24)."""

import json
import os
import re
import subprocess
import sys

import forked
import jax
import numpy as np
import pandas as pd
import pytest
from test_cli import CHURN, ROOT, run_cli, write_config

from sweeps.cli.config_schema import strategy_options
from sweeps.cli.main import main
from sweeps.driver.compiling import enable_compilation_cache
from sweeps.strategies import STRATEGIES

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "SWEEPS_CACHE_DIR": "off"}

# --- 21: SWEEPS_CACHE_DIR=off in any case ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["off", "OFF", "Off", " none ", "false", "0", "No"])
def test_the_compilation_cache_turns_off_in_any_case(value, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWEEPS_CACHE_DIR", value)
    before = jax.config.jax_compilation_cache_dir
    try:
        assert enable_compilation_cache() is None
        assert jax.config.jax_compilation_cache_dir == before, "the cache stays as it was: off"
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


# --- 24: the strategies' keys in `sweeps run --help`; a reader of stdout that goes away ---------------------


def test_run_help_lists_every_strategys_options(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("[strategy]") : out.index("[train]")]
    for name in STRATEGIES:
        assert f'"{name}"' in block, name
        for key in strategy_options(name):
            assert re.search(rf"\b{key}\b", block), (name, key, block)


@pytest.fixture
def finished(finished_cli_run):
    _, run_dir, code, _, err = finished_cli_run  # conftest's small finished run: it keeps models
    assert code == 0, err
    return run_dir


def test_predict_into_a_closed_pipe_stops_quietly(finished, tmp_path):
    rows = tmp_path / "rows.csv"
    pd.read_csv(CHURN).head(200).to_csv(rows, index=False)  # new rows to predict: 200 of the churn data's
    read, write = os.pipe()
    os.close(read)  # `| head` that has already gone: every write to stdout fails with EPIPE
    out = tmp_path / "predictions.csv"
    argv = [sys.executable, "-m", "sweeps", "predict", finished, rows, "--out", out]
    try:
        done = forked.run([str(a) for a in argv], stdout=write, stderr=subprocess.PIPE, env=ENV, text=True)
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 128 + 13, "as a command stopped by SIGPIPE"
    assert len(pd.read_csv(out)) == len(pd.read_csv(rows)), "the predictions were written before the output"


# --- 23: resuming on another device count ------------------------------------------------------------------

STOP_AFTER_FIRST_CHECKPOINT = """
import os, sys
from sweeps.driver import checkpoints
from sweeps.cli.main import main

original = checkpoints.Checkpoints.save
def save(self, snapshot):
    step = original(self, snapshot)
    self.wait()
    os._exit(9)  # killed right after the first checkpoint is on disk
checkpoints.Checkpoints.save = save
main(sys.argv[1:])
"""


def two_devices(*argv):
    env = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    return forked.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=600)


def small_churn(path, rows=400, seed=0):
    """A CSV of `rows` rows with a Churn column (Yes/No) learnable from 4 numeric columns: test_cli's small config
    (batch 256) runs on it as on the churn data, and each process reads it at once."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    churn = x @ rng.normal(size=4) + 0.3 * rng.normal(size=rows) > 0
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(4)]).assign(Churn=np.where(churn, "Yes", "No"))
    frame.to_csv(path, index=False)
    return path


def test_a_run_started_on_two_devices_says_how_to_resume_on_one_cpu_and_the_advice_works(tmp_path):
    rows = small_churn(tmp_path / "churn.csv")
    config = write_config(tmp_path, extra="[run]\ncheckpoint_every = 1\n", path=rows)
    run_dir, fork = tmp_path / "run", tmp_path / "fork"
    killed = two_devices(sys.executable, "-c", STOP_AFTER_FIRST_CHECKPOINT, "run", config, "--out", run_dir)
    assert killed.returncode == 9, killed.stderr[-2000:]
    assert json.loads((run_dir / "run.json").read_text())["resources"]["devices"] == 2

    code, _, err = run_cli(["resume", run_dir])  # here: one CPU device
    assert code == 2 and f"{run_dir} was started on 2 devices and this run has 1" in err, err
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=2" in err, err
    assert "[run] devices = 2" not in err and "devices=2" not in err, "advice this machine cannot follow"
    code, _, err = run_cli(["resume", run_dir, "--fork", fork])
    assert code == 2 and f"{run_dir} was started on 2 devices" in err and str(fork) not in err, err
    assert not fork.exists(), "a refused fork leaves no half-made folder"

    resumed = two_devices(sys.executable, "-m", "sweeps", "resume", run_dir, "--quiet")  # the advice, followed
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(pd.read_csv(run_dir / "table.csv")) == 4


@pytest.mark.parametrize(
    ("started", "here", "platform", "processes", "expected", "absent"),
    [
        (2, 8, "gpu", 1, "devices=2 (shell: --set run.devices=2)", "XLA_FLAGS"),
        (4, 2, "cpu", 1, "XLA_FLAGS=--xla_force_host_platform_device_count=4", "run.devices"),
        (8, 4, "gpu", 1, "cannot continue here: resume it where 8 devices are available", "XLA_FLAGS"),
        (4, 2, "cpu", 2, "over 2 processes", "XLA_FLAGS"),
    ],
    ids=["fewer-here", "cpu-more", "gpu-more", "processes"],
)
def test_resume_advice_offers_only_what_this_machine_can_do(started, here, platform, processes, expected, absent):
    from sweeps.driver.devices import resume_advice

    advice = resume_advice(started, here, platform, processes)
    assert expected in advice and absent not in advice, advice
