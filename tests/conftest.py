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
