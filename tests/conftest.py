"""Shared fixtures: small data sets made here, and the shipped churn CSV."""

import os
from pathlib import Path

import jax
import numpy as np
import pytest

import sweeps

# Silent rank promotion hides shape bugs in vectorized code: make it an error in tests.
jax.config.update("jax_numpy_rank_promotion", "raise")
# The CLI keeps compiled programs on disk; tests compile afresh and write nothing outside tmp.
os.environ["SWEEPS_CACHE_DIR"] = "off"

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "data" / "telco_customer_churn.csv"


def synthetic(task: str, rows: int = 600, features: int = 8, classes: int = 3, seed: int = 0) -> sweeps.Dataset:
    """A learnable data set of `rows` rows, 80/20 split, built with numpy."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=(features, classes))
    logits = x @ w + 0.3 * rng.normal(size=(rows, classes))
    if task == "binary":
        y = (logits[:, 0] > 0).astype(np.float32)
    elif task == "multiclass":
        y = logits.argmax(1).astype(np.int32)
    else:
        y = logits[:, 0].astype(np.float32)
    cut = int(rows * 0.8)
    return sweeps.Dataset.from_arrays(x[:cut], y[:cut], x[cut:], y[cut:], task=task)


@pytest.fixture(scope="session")
def binary_data():
    return synthetic("binary")


@pytest.fixture(scope="session")
def churn():
    return sweeps.load_csv(CHURN, target="Churn")
