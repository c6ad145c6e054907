"""Compile seconds per structure in config.json, and the next group compiled while the current one trains."""

import json

import pandas as pd
import pytest

import sweeps
from models import MLP
from sweeps.driver import compiling
from sweeps.driver.compiling import Ahead

from helpers import EPOCH, log_compilations, synthetic

# hidden=(7,) on 5 features: structures no other test compiles, so their programs are compiled here; SGD on a
# regression target, the programs that compile fastest (what they compute is not what these tests are about)
SPACE = {"learning_rate": [1e-3, 1e-2], "batch_size": [16, 32, 64]}


def sweep(data, run_dir=None):  # three programs, not fused: compiling one while another trains is the subject
    return sweeps.run(data, model=MLP(hidden=(7,)), optimizer="sgd", space=SPACE, epochs=2, run_dir=run_dir, fuse=False)


@pytest.fixture(scope="module")
def data():
    return synthetic("regression", rows=200, features=5)


def test_config_json_records_compile_seconds_per_structure_and_compiling_ahead_changes_nothing(
    data, tmp_path, monkeypatch
):
    monkeypatch.setenv("SWEEPS_LANES", "1")  # compiling ahead is for one work item at a time (lanes: test_lanes.py)
    with log_compilations(fresh=True) as compiled:
        result = sweep(data, tmp_path / "ahead")
    config = json.loads((tmp_path / "ahead" / "config.json").read_text())
    by_structure = config["compile_by_structure"]
    groups = config["groups"]
    assert [s["structure"] for s in by_structure] == [g["structure"] for g in groups]
    assert [s["structure"].split(", ")[1] for s in by_structure] == ["batch 16", "batch 32", "batch 64"]
    for entry, group in zip(by_structure, groups):
        programs = {p["program"]: p for p in entry["programs"]}
        assert set(programs) == {"initialisation", "epoch"}, entry
        assert all(p["population"] == group["population"] for p in programs.values()), entry
        assert programs["epoch"]["compilations"] >= 1 and programs["epoch"]["compile_s"] > 0, entry
        assert entry["compile_s"] == pytest.approx(sum(p["compile_s"] for p in programs.values()), abs=2e-3)
        assert entry["waited_s"] >= 0
    # the first structure compiles in the main thread; the later ones while the one before trained
    assert [p["ahead"] for s in by_structure for p in s["programs"]] == [False, False, True, True, True, True]
    # each program compiled once: the background compilation is the one the group ran
    assert compiled.count(EPOCH) == 3 and config["compilations"] == 3, compiled
    # groups that differ only in batch size share one initialisation program: compiled for the first
    inits = [p for s in by_structure for p in s["programs"] if p["program"] == "initialisation"]
    assert [p["compilations"] for p in inits] == [1, 0, 0] and inits[0]["compile_s"] > 0, by_structure
    assert config["compile_s"] >= sum(s["compile_s"] for s in by_structure) - 0.01

    monkeypatch.setattr(compiling.Programs, "ahead", lambda self, later: None)  # everything in the main thread
    alone = sweep(data)
    pd.testing.assert_frame_equal(result.table, alone.table)
    pd.testing.assert_frame_equal(result.history, alone.history)
    reused = alone.config["compile_by_structure"]
    assert all(p["compilations"] == 0 and not p["ahead"] for s in reused for p in s["programs"]), "compiled above"


def test_a_failed_background_compilation_is_raised_in_the_main_thread(data, monkeypatch):
    def fail(*args, **kwargs):
        raise ValueError("no such layout")

    monkeypatch.setenv("SWEEPS_LANES", "1")
    monkeypatch.setattr(compiling, "compile_population", fail)
    message = r"compiling the programs of hidden=\[7\] relu, batch 32.* ahead of time"
    with pytest.raises(RuntimeError, match=message) as e:
        sweep(data)
    assert "ValueError: no such layout" in str(e.value) and isinstance(e.value.__cause__, ValueError)


def test_ahead_runs_one_compilation_at_a_time():
    ahead = Ahead()
    ahead.start("a", lambda: None)
    with pytest.raises(RuntimeError, match="pending"):
        ahead.start("b", lambda: None)
    assert ahead.wait("b", "b") == 0.0 and ahead.pending, "another key does not wait"
    ahead.wait("a", "a")
    assert not ahead.pending
    ahead.close()


def test_compiler_options_leave_out_what_this_xla_does_not_know(monkeypatch):
    """XLA refuses a program with an unknown option: the engine keeps only the options this version takes."""
    import jax
    import jax.numpy as jnp

    from sweeps.engine import compiler as compiles

    known = dict(compiles.CPU_COMPILER_OPTIONS)
    monkeypatch.setattr(compiles, "CPU_COMPILER_OPTIONS", {**known, "xla_option_that_does_not_exist": 1})
    compiles.compiler_options.cache_clear()
    try:
        taken = compiles.compiler_options("cpu") or {}
        assert "xla_option_that_does_not_exist" not in taken and set(taken) <= set(known)
        assert compiles.compiler_options("gpu") is None
        if jax.default_backend() == "cpu":
            assert float(compiles.jit(lambda x: x * 2.0)(jnp.float32(1.5))) == 3.0
    finally:
        compiles.compiler_options.cache_clear()


def test_threads_that_ask_for_a_structures_epoch_at_once_share_one_compiled_program(data):
    """Lanes and the compile-ahead thread ask for runners concurrently; two jitted epochs for one structure would
    compile it twice (seen as 7-9 epoch compilations for 6 structures before the runners were made under a lock)."""
    import threading

    from sweeps.driver.compiling import Programs

    first = sweeps.dry_run(data, model=MLP(hidden=(3,)), space={"learning_rate": [1e-3], "batch_size": [16]}, epochs=1)
    programs, barrier, got = Programs(first.plan), threading.Barrier(8), []

    def ask():
        barrier.wait()
        got.append(programs.runner(first.groups[0]))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(runner) for runner in got}) == 1 and len({id(r.epoch_fn) for r in got}) == 1
