"""Flax models that sweepax trains, one population member at a time under `jax.vmap`.

`MLP` is the built-in network; `CNN` (images) and `ResidualMLP` (feature rows) are Flax Linen modules of the kind
you would write yourself, for `sweeps.run(data, model=...)` or a config file's `[model] class`.
"""

from models.cnn import CNN
from models.losses import LOSSES, loss_fn
from models.mlp import ACTIVATIONS, MLP
from models.residual import ResidualMLP

__all__ = ["ACTIVATIONS", "CNN", "LOSSES", "MLP", "ResidualMLP", "loss_fn"]
