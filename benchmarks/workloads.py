"""The throughput benchmark's workloads: a model shape, a batch size and the data it trains on.

`lesson` is the churn MLP 45 -> 64 -> 1 at batch 32 (the lesson's model); `wide` is
64 -> 512 -> 512 -> 512 -> 1 at batch 256 on 100k synthetic rows. Every mode trains the same
log-spaced learning rates (`learning_rates`) from the same seed.

Part of `benchmarks/throughput.py`; never imported by the library.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import sweeps
from sweeps.engine import structure_of
from sweeps.engine.hparams import resolve

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "data" / "telco_customer_churn.csv"
WORKLOADS = ("lesson", "wide")
LR_LOW, LR_HIGH = 1e-4, 1e-1  # learning rates log-spaced over this range
SEED = 0


class Workload:
    """A model shape, a batch size and the data it trains on."""

    def __init__(self, name: str, hidden: tuple[int, ...], batch_size: int, load: Callable[[], sweeps.Dataset]):
        self.name, self.hidden, self.batch_size, self._load = name, hidden, batch_size, load
        self._data = None

    @property
    def data(self) -> sweeps.Dataset:
        if self._data is None:
            self._data = self._load()
        return self._data

    def trial_params(self, learning_rates) -> list[dict[str, Any]]:
        return [
            resolve({"learning_rate": float(lr), "batch_size": self.batch_size, "epochs": 10**6, "hidden": self.hidden})
            for lr in learning_rates
        ]

    def structure(self):
        return structure_of(self.trial_params([1e-3])[0], self.data)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.data.n_train // self.batch_size)

    def widths(self) -> list[int]:
        return [self.data.n_features, *self.hidden, self.data.n_outputs]


def lesson_data() -> sweeps.Dataset:
    return sweeps.load_csv(CHURN, target="Churn")


def wide_data(rows: int = 100_000, features: int = 64, seed: int = 0) -> sweeps.Dataset:
    """100k x 64 synthetic rows, labels from a fixed random linear rule plus noise, 80/20 split."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=features) / np.sqrt(features)
    y = (x @ w + 0.5 * rng.normal(size=rows) > 0).astype(np.float32)
    cut = int(rows * 0.8)
    return sweeps.Dataset.from_arrays(x[:cut], y[:cut], x[cut:], y[cut:], task="binary", source="synthetic-wide")


def make_workloads() -> dict[str, Workload]:
    return {
        "lesson": Workload("lesson", (64,), 32, lesson_data),
        "wide": Workload("wide", (512, 512, 512), 256, wide_data),
    }


def learning_rates(n: int) -> np.ndarray:
    return np.logspace(math.log10(LR_LOW), math.log10(LR_HIGH), n)
