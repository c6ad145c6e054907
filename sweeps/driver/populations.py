"""One chunk of a sweep: its fresh population, its compiled epoch with the data on the device, the controls.

The scheduler (`sweeps.driver.scheduler`) trains work items (chunks) with these pieces. `train_chunk` runs a whole
chunk alone (tests and benchmarks use it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sweeps.data import Dataset
from sweeps.driver.devices import Devices
from sweeps.engine import (
    PADDING,
    Controls,
    Population,
    Split,
    Structure,
    init_population,
    keys,
    make_train_epoch,
    stack_hparams,
)
from sweeps.engine.kernel import KernelPlan
from sweeps.planning.planner import Trial


def baseline_loss(data: Dataset, loss: Callable | None = None) -> float:
    """The training loss a model starts from, the unit of the divergence limit: the larger of the loss of
    predicting the training prior and the loss of the untrained network's output, zero.

    A user's own `loss` (per example, `(outputs, y) -> (rows,)`): its mean over the training rows at zero
    outputs, where that is finite and positive (else the task's unit below, so the limit is never zero).

    Regression: the mean square of the target, `var(y) + mean(y)**2` (1.0 on a target `load_csv` or
    `Dataset.from_arrays` standardized; on one given unstandardized, its own scale, so a trial that has not
    moved yet is never past the limit). Classification: log(classes), the loss of zero logits, never
    below the class entropy (a rare positive class makes the prior's loss small, not the start's).

    Examples:
      >>> import numpy as np
      >>> from sweeps.data import Dataset
      >>> x = np.zeros((100, 1))
      >>> rare = (np.arange(100) < 2).astype(float)  # 2% positives: entropy 0.098, zero logits 0.693
      >>> round(baseline_loss(Dataset.from_arrays(x, rare, x, rare, task="binary")), 4)
      0.6931
      >>> prices = 500.0 + np.arange(100)
      >>> raw = Dataset.from_arrays(x, prices, x, prices, task="regression", y_mean=0.0, y_std=1.0)
      >>> baseline_loss(raw) == float(np.mean(np.asarray(raw.y_train, np.float64) ** 2))
      True
    """
    if loss is not None:
        zeros = jnp.zeros((data.n_train, data.n_outputs), jnp.float32)
        start = float(jnp.mean(loss(zeros, jnp.asarray(data.y_train))))
        if math.isfinite(start) and start > 0:
            return start
    y = np.asarray(data.y_train, np.float64)
    if data.task == "regression":
        return float(max(np.mean(y**2), 1e-12))
    classes = max(len(data.class_names), 2)
    return float(np.log(classes))  # >= the entropy of any prior over `classes` classes


def controls_for(
    data: Dataset, stop: Mapping[str, Any] | None, divergence_threshold: float | None, loss: Callable | None = None
) -> Controls:
    """The run-wide numbers every compiled epoch reads; `loss`: the user's (None: the task's), the divergence
    limit's unit (`baseline_loss`)."""
    limit = math.inf if divergence_threshold is None else divergence_threshold * baseline_loss(data, loss)
    return Controls(  # numpy scalars: jnp's would each compile a conversion on a first run
        divergence_limit=np.float32(limit),
        patience=np.int32(stop["patience"] if stop else 0),
        min_delta=np.float32(stop["min_delta"] if stop else 0.0),
        y_std=np.float32(data.y_std),
    )


def new_population(
    structure: Structure,
    chunk: tuple[Trial, ...],
    size: int,
    seed: int,
    init: str = "shared",
    devices: Devices | None = None,
) -> Population:
    """A fresh population of `size` members for the chunk's trials (padding members past them).

    `init="shared"`: keys from each trial's seed index (common random numbers: configurations with
    the same seed index start from the same weights and draw the same dropout masks);
    `"per_trial"`: keys from the trial number. With `devices`, the population is built directly
    into their sharding (`size` a multiple of their count).
    """
    hparams, numbers, key_indices = population_inputs(structure, chunk, size, init)
    if devices is not None:
        return devices.init_population(structure, hparams, numbers, seed, key_indices)
    return init_population(structure, hparams, numbers, seed, key_indices)


def population_inputs(structure: Structure, chunk: tuple[Trial, ...], size: int, init: str = "shared"):
    """The initialisation's inputs: hparams (name -> (size,), `stack_hparams`), trial numbers (size,), key
    indices (size,)."""
    numbers = np.full(size, PADDING, np.int64)
    numbers[: len(chunk)] = [t.number for t in chunk]
    key_indices = np.zeros(size, np.int64)
    key_indices[: len(chunk)] = [t.seed if init == "shared" else t.number for t in chunk]
    return stack_hparams([t.hparams for t in chunk], size, structure), numbers, key_indices


def compile_population(
    structure: Structure, chunk: tuple[Trial, ...], size: int, seed: int, init: str, devices: Devices
) -> Any:
    """Compiles, without running it, the initialisation `new_population(..., devices)` runs; returns the
    population's shapes with the members' sharding (what the epoch is compiled for)."""
    hparams, numbers, key_indices = population_inputs(structure, chunk, size, init)
    devices.init_program(structure, seed).lower(dict(hparams), numbers, key_indices).compile()
    return population_shapes(structure, chunk, size, seed, init, devices)


def population_shapes(
    structure: Structure, chunk: tuple[Trial, ...], size: int, seed: int, init: str, devices: Devices
) -> Any:
    """The shapes `new_population(..., devices)` returns, with the members' sharding; nothing runs."""
    hparams, numbers, key_indices = population_inputs(structure, chunk, size, init)
    return devices.abstract(jax.eval_shape(devices.init_program(structure, seed), dict(hparams), numbers, key_indices))


def train_chunk(
    structure: Structure,
    chunk: tuple[Trial, ...],
    size: int,
    data: Dataset,
    seed: int,
    stop_metric: str | None,
    controls: Controls,
    after_epoch: Callable[[dict[str, np.ndarray]], None] | None = None,
    init: str = "shared",
) -> tuple[Population, list[dict[str, np.ndarray]]]:
    """Trains one chunk as a population of `size` members (padded) until every member is done.

    The scheduler's inner part, usable alone (tests): returns the final population and the
    per-epoch metrics ((size,) arrays per name, `number` among them).
    """
    loop = ChunkRunner(structure, data, seed, stop_metric, controls)
    pop = new_population(structure, chunk, size, seed, init)
    history = []
    for epoch in range(epochs_of(chunk)):
        pop, metrics = loop.epoch(pop, epoch)
        history.append(metrics)
        if after_epoch is not None:
            after_epoch(metrics)
        if not metrics["active"].any():
            break
    return pop, history


def epochs_of(chunk: tuple[Trial, ...]) -> int:
    """The epochs a chunk's population trains at most: its longest trial's."""
    return max(t.hparams["epochs"] for t in chunk)


def device_splits(data: Dataset) -> tuple[Split, Split]:
    """The training and validation splits as arrays (the default device's, unless placed otherwise)."""
    return (
        Split(jnp.asarray(data.x_train), jnp.asarray(data.y_train)),
        Split(jnp.asarray(data.x_val), jnp.asarray(data.y_val)),
    )


class ChunkRunner:
    """One structure's compiled epoch with the data on the device (its steps in the Pallas kernel where `kernel`
    is a plan: `sweeps.engine.kernel`).

    `splits` are the data already placed (the scheduler replicates them over its devices once);
    `fetch` brings the epoch's metrics to the host (`Devices.fetch` across processes).
    """

    def __init__(
        self,
        structure: Structure,
        data: Dataset,
        seed: int,
        stop_metric: str | None,
        controls: Controls,
        objective: str = "val_loss",
        splits: tuple[Split, Split] | None = None,
        fetch: Callable[[Any], Any] = jax.device_get,
        kernel: KernelPlan | None = None,
        steps: str = "xla",
    ):
        self.structure, self.seed, self.controls, self.fetch = structure, seed, controls, fetch
        self.stop_metric, self.objective, self.kernel = stop_metric, objective, kernel
        self.train, self.val = device_splits(data) if splits is None else splits
        self.epoch_fn = make_train_epoch(structure, stop_metric, objective, kernel)
        self.steps = "pallas" if kernel is not None else steps  # where the steps run, as config.json says
        self._checked: set[int] = set()  # population sizes whose kernel compiled

    def compile(self, shapes: Any) -> None:
        """Compiles, without running it, the epoch for a population of `shapes` (`compile_population`'s)."""
        order_key = keys.batch_order_key(self.seed, 0)
        self._check_kernel(shapes, order_key)
        self.epoch_fn.lower(shapes, self.train, self.val, order_key, self.controls).compile()

    def _check_kernel(self, pop: Any, order_key: jax.Array) -> None:
        """Compiles the Pallas kernel's epoch for `pop`'s size (a population or its shapes) once, before it runs:
        where the kernel's backend cannot compile it (its GPU path is young), the structure trains on the XLA path
        from then on, with a warning, and nothing computed so far is lost (the population is not yet donated)."""
        if self.kernel is None or pop.size in self._checked:
            return
        try:
            self.epoch_fn.lower(pop, self.train, self.val, order_key, self.controls).compile()
        except Exception as error:  # noqa: BLE001 - any failure of the kernel's compiler sends it to the XLA path
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            warnings.warn(
                f"kernel='pallas': {self.structure.label()} did not compile in the Pallas kernel ({first}); it "
                "trains on the XLA path",
                stacklevel=3,
            )
            self.kernel, self.steps = None, f"xla: the kernel did not compile ({first})"
            self.epoch_fn = make_train_epoch(self.structure, self.stop_metric, self.objective)
            return
        self._checked.add(pop.size)

    def start(self, pop: Population, epoch: int) -> tuple[Population, dict[str, jax.Array]]:
        """Dispatches one epoch and returns at once: the new population and the metrics, still on the device.

        `pop` is donated to the epoch (its buffers are consumed).
        """
        order_key = keys.batch_order_key(self.seed, epoch)
        self._check_kernel(pop, order_key)  # the kernel's first epoch at this size: compiled, or the XLA path
        return self.epoch_fn(pop, self.train, self.val, order_key, self.controls)

    def epoch(self, pop: Population, epoch: int) -> tuple[Population, dict[str, np.ndarray]]:
        """One epoch, its metrics brought to the host."""
        pop, metrics = self.start(pop, epoch)
        return pop, self.fetch(metrics)
