"""A residual MLP of feature rows: an example of your own model for tabular data, by import path in a config file
(`[model] class = "models.residual:ResidualMLP"`: data/examples/churn_own_model.toml)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.mlp import dropout


class ResidualMLP(nn.Module):
    """A dense layer to `width` features, `blocks` pre-norm residual blocks (LayerNorm, ReLU, dropout, Dense added
    back), a LayerNorm and a linear head.

    Takes rows (batch, features) and returns (batch, outputs). Its attributes are ints: they fix the shapes
    (one compiled program per value) and are what a kept model records and rebuilds from.

    Attributes:
      width: the features every block keeps.
      blocks: how many residual blocks.
      outputs: the head's width: 1 for a binary task or a regression, one per class for a multiclass one.

    `dropout_rate`, a keyword of `__call__` with a number as default, is a call hyperparameter: a sweep may set
    or sweep it (`[space] dropout_rate = [0.0, 0.2]`), each member with its own traced value; it applies only
    while training.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = ResidualMLP(width=32, blocks=2)
      >>> params = model.init(jax.random.key(0), jnp.zeros((1, 45)))
      >>> model.apply(params, jnp.zeros((4, 45))).shape
      (4, 1)
      >>> key = {"dropout": jax.random.key(1)}
      >>> model.apply(params, jnp.ones((4, 45)), train=True, dropout_rate=0.5, rngs=key).shape
      (4, 1)
    """

    width: int = 64
    blocks: int = 2
    outputs: int = 1

    def __post_init__(self):
        for name, low in (("width", 1), ("blocks", 0), ("outputs", 1)):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
                raise ValueError(f"{name} must be an integer >= {low}, but got {name}={value!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False, dropout_rate: float = 0.0) -> jax.Array:
        h = nn.Dense(self.width)(x)
        for _ in range(self.blocks):
            branch = nn.relu(nn.LayerNorm()(h))
            if train:
                branch = dropout(branch, jnp.asarray(dropout_rate), self.make_rng("dropout"))
            h = h + nn.Dense(self.width)(branch)
        return nn.Dense(self.outputs)(nn.relu(nn.LayerNorm()(h)))
