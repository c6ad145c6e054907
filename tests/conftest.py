"""Shared fixtures: small data sets made here, and the shipped churn CSV."""

import os
from pathlib import Path

import jax
import pytest

import sweeps

from helpers import synthetic

# Silent rank promotion hides shape bugs in vectorized code: make it an error in tests.
jax.config.update("jax_numpy_rank_promotion", "raise")
# The CLI keeps compiled programs on disk; tests compile afresh and write nothing outside tmp.
os.environ["SWEEPS_CACHE_DIR"] = "off"

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "data" / "telco_customer_churn.csv"


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
