"""Shared fixtures: small data sets made here, and the shipped churn CSV."""

import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

import sweeps

from helpers import synthetic

# Silent rank promotion hides shape bugs in vectorized code: make it an error in tests.
jax.config.update("jax_numpy_rank_promotion", "raise")
# One compilation cache for the whole session, shared by the xdist workers and every `sweeps` process a test
# starts (they inherit the environment): a program two tests (or two processes) build identically is compiled once.
# It starts empty, lives in the temp folder and is removed at the end (`pytest_sessionfinish`); the user's cache
# (~/.cache/sweepax) is never touched: SWEEPS_CACHE_DIR=off keeps the CLI from pointing JAX at it. JAX still
# reports a program loaded from it as a compilation (so compile counts hold), with its own short seconds.
SESSION = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
XLA_CACHE = Path(tempfile.gettempdir()) / f"sweepax-tests-xla-{SESSION}"
os.environ["SWEEPS_CACHE_DIR"] = "off"
os.environ["JAX_COMPILATION_CACHE_DIR"] = str(XLA_CACHE)
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
jax.config.update("jax_compilation_cache_dir", str(XLA_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "data" / "telco_customer_churn.csv"


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist), once every worker is done
        shutil.rmtree(XLA_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def binary_data():
    return synthetic("binary")


@pytest.fixture(scope="session")
def churn():
    return sweeps.load_csv(CHURN, target="Churn")


@pytest.fixture(scope="session")
def finished_cli_run(tmp_path_factory):
    """One small finished `sweeps run` of test_cli's SMALL config (4 trials, 2 epochs, churn CSV), made once for
    every test that only reads a finished run: (config file, run folder, exit code, stdout, stderr). A test that
    changes the folder copies it first."""
    from test_cli import run_cli, write_config

    base = tmp_path_factory.mktemp("finished")
    config = write_config(base)
    run_dir = base / "run"
    code, out, err = run_cli(["run", config, "--out", run_dir])
    return config, run_dir, code, out, err
