"""Where a member's forward runs in its precision: the one cast between the float32 master state and the model.

A structure's `precision` decides the dtype of the model's arithmetic. "float32" (the default) applies the model
to the parameters and rows as they are. "bfloat16" is mixed precision: the population's parameters and optimizer
state stay float32 (the master copy the optimizer updates); `network_outputs` casts one member's parameters and
its input rows to bfloat16, so the model's matrix products, convolutions and activations run in bfloat16 (a Flax
layer computes in its inputs' dtype), and casts the model's outputs back to float32 before any loss or metric
reads them. The gradient comes back through the cast as float32, so the update, the L2 penalty and the divergence
check are float32 as before. Training (`sweeps.engine.epoch.member_loss`) and validation (`forward`) both call
`network_outputs`: no path applies a model past it.

The call hyperparameters a user's module reads (a dropout rate) stay float32 arrays: an operation that mixes one
with a bfloat16 activation computes in float32 (JAX's promotion); the built-in MLP's dropout keeps its activations
in bfloat16 (`models.mlp.dropout`).

Examples:
  >>> import jax.numpy as jnp
  >>> compute_dtype("bfloat16")
  dtype(bfloat16)
  >>> lowered({"kernel": jnp.ones((2, 2)), "steps": jnp.int32(3)}, "bfloat16")["kernel"].dtype
  dtype(bfloat16)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PRECISIONS = ("float32", "bfloat16")  # the first is the default
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def check_precision(precision: Any) -> None:
    """Refuses a precision that is not one of `PRECISIONS`, naming the rule, the value and the fix."""
    if not (isinstance(precision, str) and precision in PRECISIONS):
        raise ValueError(
            f"precision must be one of {list(PRECISIONS)}, but got precision={precision!r}; pass "
            "precision='bfloat16' for bfloat16 matrix products and activations (float32 master weights and "
            "optimizer state), or 'float32' (the default)"
        )


def compute_dtype(precision: str) -> jnp.dtype:
    """The dtype a model computes in under `precision`."""
    check_precision(precision)
    return jnp.dtype(_DTYPES[precision])


def lowered(tree: Any, precision: str) -> Any:
    """`tree`'s floating-point leaves in `precision`'s compute dtype; other leaves (integers, keys) as they are."""
    dtype = compute_dtype(precision)

    def cast(leaf):
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    return jax.tree.map(cast, tree)


def network_outputs(structure, params: Any, x: jax.Array, hp: dict[str, jax.Array], *, train: bool, key=None):
    """One member's outputs (batch, outputs) float32 on rows `x` (batch, *input_shape), its model computing in
    `structure.precision`: float32 applies it as it is; bfloat16 applies it to bfloat16 copies of `params` and `x`
    and casts its outputs to float32 (the gradient reaches the float32 `params` through the cast, as float32).

    Args:
      structure: a `Structure` (its `network` and `precision`).
      params: one member's float32 parameter tree in the population's layout.
      x: (batch, *input_shape) float32 rows.
      hp: the member's hyperparameters, name -> () array (the call hyperparameters its model reads).
      train: training (dropout drawn from `key`) or evaluating.
      key: the member's dropout key while training.
    """
    network = structure.network
    if structure.precision == "float32":
        return network.apply(params, x, hp, train=train, key=key)
    outputs = network.apply(
        lowered(params, structure.precision), lowered(x, structure.precision), hp, train=train, key=key
    )
    return outputs.astype(jnp.float32)
