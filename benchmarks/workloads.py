"""The throughput benchmark's workloads: a model, a batch size and the data it trains on.

`lesson` is the churn MLP 45 -> 64 -> 1 at batch 32 (the lesson's model); `wide` is
64 -> 512 -> 512 -> 512 -> 1 at batch 256 on 100k synthetic rows; `digits-cnn` is a user's own
Flax model, `models.cnn.CNN()` (two 3x3 convolutions, a 2x2 max pool, dense 64, 10 logits), at
batch 32 on scikit-learn's 8x8 digits. Every mode trains the same log-spaced learning rates
(`learning_rates`) with Adam from the same seed.

Part of `benchmarks/throughput.py`; never imported by the library.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import numpy as np

import sweeps
from models.cnn import CNN
from sweeps.engine import call_signature, structure_of
from sweeps.engine.hparams import resolve

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "data" / "telco_customer_churn.csv"
WORKLOADS = ("lesson", "wide", "digits-cnn")
MLP_WORKLOADS = ("lesson", "wide")  # what `--workload all` runs: the recorded campaigns' command
LR_LOW, LR_HIGH = 1e-4, 1e-1  # learning rates log-spaced over this range
SEED = 0


class Workload:
    """A model, a batch size and the data it trains on.

    The model is the built-in MLP of `hidden` widths (`model` None), or the user's own Flax module
    `model` (then `hidden` is empty): the engine trains it as `sweeps.run(model=...)` does, through
    `sweeps.engine.structure_of(hparams, data, model)`.
    """

    def __init__(
        self,
        name: str,
        hidden: tuple[int, ...],
        batch_size: int,
        load: Callable[[], sweeps.Dataset],
        model: nn.Module | None = None,
        precision: str = "float32",
    ):
        if model is not None and hidden:
            raise ValueError(f"a workload of a user's model has no hidden widths, but got hidden={hidden}")
        self.name, self.hidden, self.batch_size, self._load, self.model = name, hidden, batch_size, load, model
        self.precision = precision  # what the model computes in (`sweeps.engine.precision`)
        self._data = None

    @property
    def data(self) -> sweeps.Dataset:
        if self._data is None:
            self._data = self._load()
        return self._data

    def trial_params(self, learning_rates) -> list[dict[str, Any]]:
        if self.model is None:
            fixed = {"batch_size": self.batch_size, "epochs": 10**6, "hidden": self.hidden}
            return [resolve({"learning_rate": float(lr), **fixed}) for lr in learning_rates]
        own = dict(call_signature(self.model)[0])  # the model's call hyperparameters at their defaults
        fixed = {"batch_size": self.batch_size, "epochs": 10**6}
        return [resolve({"learning_rate": float(lr), **fixed}, own) for lr in learning_rates]

    def structure(self):
        structure = structure_of(self.trial_params([1e-3])[0], self.data, self.model)
        return dataclasses.replace(structure, precision=self.precision)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.data.n_train // self.batch_size)

    def widths(self) -> list[int]:
        """[features, *hidden, outputs] of the built-in MLP; a user's model has none."""
        if self.model is not None:
            raise ValueError(f"workload {self.name!r} trains a user's model ({self.label()}): it has no MLP widths")
        return [self.data.n_features, *self.hidden, self.data.n_outputs]

    def label(self) -> str:
        """What trains: `hidden=[64] relu` for the built-in MLP, `CNN(channels=(16, 32), dense=64, classes=10)`
        for a user's model (`sweeps.engine.Network.label`)."""
        return self.structure().network.label()


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


def digits_data() -> sweeps.Dataset:
    """scikit-learn's bundled 8x8 digits: 1,797 images scaled to [0, 1] as (rows, 8, 8, 1), 10 classes, split by
    `Dataset.from_arrays` (stratified, 20% validation, seed 0). Needs scikit-learn (not a project dependency)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return sweeps.Dataset.from_arrays(x, digits.target, task="multiclass", seed=SEED, source="sklearn-digits")


def make_workloads() -> dict[str, Workload]:
    return {
        "lesson": Workload("lesson", (64,), 32, lesson_data),
        "wide": Workload("wide", (512, 512, 512), 256, wide_data),
        "digits-cnn": Workload("digits-cnn", (), 32, digits_data, model=CNN()),
    }


def learning_rates(n: int) -> np.ndarray:
    return np.logspace(math.log10(LR_LOW), math.log10(LR_HIGH), n)
