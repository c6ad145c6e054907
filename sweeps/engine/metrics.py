"""Validation metrics of one member, computed inside the compiled epoch.

Each function takes one member's raw model outputs over the validation split
(rows, outputs) and the targets (rows,) and returns a () array; the epoch
vmaps them over the population. Names follow the table's columns:
`val_loss`, `val_accuracy`, `val_auc` (binary), `val_rmse`, `val_mae`
(regression, in the target's own units).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from models.losses import loss_fn

METRICS = {
    "binary": ("loss", "accuracy", "auc"),
    "multiclass": ("loss", "accuracy"),
    "regression": ("loss", "rmse", "mae"),
}
MAXIMIZE = frozenset({"accuracy", "auc"})


def metric_names(task: str) -> list[str]:
    """Every metric name a `task`'s sweep records: the objectives and early-stopping metrics one may name.

    Examples:
      >>> metric_names("binary")
      ['train_loss', 'val_loss', 'val_accuracy', 'val_auc']
    """
    return ["train_loss"] + [f"val_{m}" for m in METRICS[task]]


def direction(metric: str) -> str:
    """ "maximize" for accuracy and AUC, "minimize" for losses and errors (prefix `val_`/`train_` ignored)."""
    return "maximize" if metric.split("_", 1)[-1] in MAXIMIZE else "minimize"


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


def evaluate(task: str, outputs: jax.Array, y: jax.Array, y_std: jax.Array) -> dict[str, jax.Array]:
    """One member's validation metrics.

    Args:
      task: "binary", "multiclass" or "regression" (static).
      outputs: (rows, outputs) raw model outputs.
      y: (rows,) targets (standardized for regression).
      y_std: () the target's train standard deviation (regression errors are reported unscaled).
    """
    metrics = {"loss": jnp.mean(loss_fn(task)(outputs, y))}
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
    return metrics
