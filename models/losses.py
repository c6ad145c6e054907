"""The training loss of each task, per example.

Every loss takes the model's raw output (batch, outputs) and the targets
(batch,) and returns per-example losses (batch,), so the caller can weight
padded rows out of a minibatch.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax


def first_output(outputs: jax.Array) -> jax.Array:
    """(batch, outputs) -> (batch,): each row's first output. A masked sum, equal to `outputs[..., 0]` (adding
    zeros is exact) in operations the GPU kernel's backend has (Pallas's Triton lowering has no slice), so the
    kernel trains on this loss as it is (`sweeps.engine.kernel`)."""
    return jnp.sum(jnp.where(jnp.arange(outputs.shape[-1]) == 0, outputs, 0.0), axis=-1)


def binary_cross_entropy(outputs: jax.Array, y: jax.Array) -> jax.Array:
    """Sigmoid cross-entropy on one logit; `y` holds 0.0 or 1.0."""
    return optax.sigmoid_binary_cross_entropy(first_output(outputs), y)


def softmax_cross_entropy(outputs: jax.Array, y: jax.Array) -> jax.Array:
    """Softmax cross-entropy on K logits; `y` holds integer classes."""
    return optax.softmax_cross_entropy_with_integer_labels(outputs, y)


def squared_error(outputs: jax.Array, y: jax.Array) -> jax.Array:
    """Squared error of one output against a (standardized) target."""
    return jnp.square(first_output(outputs) - y)


LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "binary": binary_cross_entropy,
    "multiclass": softmax_cross_entropy,
    "regression": squared_error,
}


def loss_fn(task: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The per-example loss for `task` ("binary", "multiclass" or "regression")."""
    if task not in LOSSES:
        raise ValueError(f"task={task!r} is not known; choose one of {sorted(LOSSES)}")
    return LOSSES[task]
