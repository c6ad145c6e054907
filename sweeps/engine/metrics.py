"""Validation metrics of one member, computed inside the compiled epoch.

Each function takes one member's raw model outputs over the validation split
(rows, outputs) and the targets (rows,) and returns a () array; the epoch
vmaps them over the population. Names follow the table's columns:
`val_loss`, `val_accuracy`, `val_auc` (binary), `val_rmse`, `val_mae`
(regression, in the target's own units).

A user's own metrics (`Metric`: a function and its direction) are computed the
same way beside them, as `val_<name>`; a user's own loss replaces the task's in
`val_loss`. Which way a metric is better is decided here alone (`direction`),
from its name and the user's metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from models.losses import loss_fn

METRICS = {
    "binary": ("loss", "accuracy", "auc"),
    "multiclass": ("loss", "accuracy"),
    "regression": ("loss", "rmse", "mae"),
}
MAXIMIZE = frozenset({"accuracy", "auc"})
OWN_NAMES = frozenset(name for names in METRICS.values() for name in names)  # a user's metric may not take these
DIRECTIONS = ("maximize", "minimize")

# A user's metrics as a compiled program's key holds them: ((name, fn, direction), ...), in the order given.
OwnMetrics = tuple[tuple[str, Callable[[jax.Array, jax.Array], jax.Array], str], ...]


@dataclasses.dataclass(frozen=True)
class Metric:
    """A validation metric of your own, and which way it is better.

    `fn(outputs, targets) -> ()`: one member's raw model outputs over the validation split (rows, outputs) and
    the targets (rows,) as the model trains on them (integer classes; 0.0/1.0; a regression target
    standardized) to one number. It runs inside the compiled epoch, under `jax.vmap` over the members: write it
    in `jax.numpy`. Hashable (a function by its identity): it is part of the compiled program's key.

    Examples:
      >>> import jax.numpy as jnp
      >>> def recall(outputs, y):
      ...     hits = (outputs[:, 0] > 0) & (y > 0.5)
      ...     return jnp.sum(hits) / jnp.maximum(jnp.sum(y > 0.5), 1)
      >>> Metric(recall, "maximize").direction
      'maximize'
      >>> Metric(recall, "max")
      Traceback (most recent call last):
      ...
      ValueError: a Metric's direction must be 'maximize' or 'minimize', but got direction='max'
    """

    fn: Callable[[jax.Array, jax.Array], jax.Array]
    direction: str

    def __post_init__(self):
        if not callable(self.fn):
            raise TypeError(
                f"Metric(fn, direction) takes a function fn(outputs, targets) -> (), but got fn={self.fn!r:.80}"
            )
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"a Metric's direction must be 'maximize' or 'minimize', but got direction={self.direction!r}"
            )


def metric_names(task: str, own: OwnMetrics = ()) -> list[str]:
    """Every metric name a `task`'s sweep records: the objectives and early-stopping metrics one may name;
    `own`: the user's metrics (recorded as `val_<name>` after the task's).

    Examples:
      >>> metric_names("binary")
      ['train_loss', 'val_loss', 'val_accuracy', 'val_auc']
    """
    return ["train_loss"] + [f"val_{m}" for m in METRICS[task]] + [f"val_{name}" for name, *_ in own]


def direction(metric: str, own: Mapping[str, str] | None = None) -> str:
    """Which way `metric` is better: a user's metric as its `Metric` says (`own`: name -> direction, the names
    without `val_`), else "maximize" for accuracy and AUC and "minimize" for losses and errors (prefix
    `val_`/`train_`/`test_` ignored). Every reader of a direction asks here.

    Examples:
      >>> direction("val_auc"), direction("val_loss"), direction("val_f1", {"f1": "maximize"})
      ('maximize', 'minimize', 'maximize')
    """
    name = metric.split("_", 1)[-1]
    if own and name in own:
        return own[name]
    return "maximize" if name in MAXIMIZE else "minimize"


def directions(own: OwnMetrics) -> dict[str, str]:
    """name -> direction of a user's metrics (what `direction` takes)."""
    return {name: way for name, _, way in own}


def function_path(fn: Any) -> str:
    """`package.module:qualname` of a function, as config.json records a user's loss and metrics (never imported)."""
    module = getattr(fn, "__module__", None) or type(fn).__module__
    return f"{module}:{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def metrics_record(own: OwnMetrics) -> dict[str, dict[str, str]]:
    """A user's metrics as config.json and models.json record them: name -> {"function", "direction"}."""
    return {name: {"function": function_path(fn), "direction": way} for name, fn, way in own}


def order_keys(values: jax.Array) -> jax.Array:
    """int32 keys in the order of float32 `values`, equal exactly where the values are equal.

    XLA:CPU sorts int32 faster than floats (benchmarks/README.md, "Issue 13", item 4).
    Positive floats order like their bit patterns; negative ones in reverse, so their magnitude
    bits are flipped. Adding 0.0 first turns -0.0 into +0.0 (they are equal as floats).

    Examples:
      >>> import jax.numpy as jnp
      >>> values = jnp.array([1.5, -2.0, 0.0, -0.0, -1e-30, 3e38])
      >>> keys = order_keys(values)
      >>> bool((jnp.argsort(keys, stable=True) == jnp.argsort(values, stable=True)).all()), int(keys[2] - keys[3])
      (True, 0)
    """
    bits = jax.lax.bitcast_convert_type(values + 0.0, jnp.int32)
    return jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)


def roc_auc(scores: jax.Array, y: jax.Array) -> jax.Array:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) formula, ties averaged.

    Args:
      scores: (rows,) any monotone score of the positive class (logits).
      y: (rows,) 0.0 or 1.0.
    """
    keys = jax.lax.optimization_barrier(order_keys(scores))  # the barrier stops XLA recomputing them per search step
    ordered = jnp.sort(keys)
    low = jnp.searchsorted(ordered, keys, side="left")
    high = jnp.searchsorted(ordered, keys, side="right")
    ranks = (low + high + 1) / 2.0  # 1-based, averaged over ties
    positives = jnp.sum(y)
    negatives = y.shape[0] - positives
    rank_sum = jnp.sum(jnp.where(y > 0.5, ranks, 0.0))
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def evaluate(
    task: str,
    outputs: jax.Array,
    y: jax.Array,
    y_std: jax.Array,
    loss: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    own: OwnMetrics = (),
) -> dict[str, jax.Array]:
    """One member's validation metrics: the task's, then the user's.

    Args:
      task: "binary", "multiclass" or "regression" (static).
      outputs: (rows, outputs) raw model outputs.
      y: (rows,) targets (standardized for regression).
      y_std: () the target's train standard deviation (regression errors are reported unscaled).
      loss: the user's per-example loss, (rows, outputs), (rows,) -> (rows,), in place of the task's; None: the
        task's (`models.losses.loss_fn`).
      own: the user's metrics, each `fn(outputs, y) -> ()`, returned under their names as float32.
    """
    per_example = loss_fn(task) if loss is None else loss
    metrics = {"loss": jnp.mean(per_example(outputs, y))}
    if task == "binary":
        logits = outputs[:, 0]
        metrics["accuracy"] = jnp.mean((logits > 0) == (y > 0.5))
        metrics["auc"] = roc_auc(logits, y)
    elif task == "multiclass":
        metrics["accuracy"] = jnp.mean(jnp.argmax(outputs, axis=-1) == y)
    else:
        error = (outputs[:, 0] - y) * y_std
        metrics["rmse"] = jnp.sqrt(jnp.mean(jnp.square(error)))
        metrics["mae"] = jnp.mean(jnp.abs(error))
    for name, fn, _ in own:
        metrics[name] = jnp.asarray(fn(outputs, y), jnp.float32)
    return metrics
