"""Flax models that sweepax trains, one population member at a time under `jax.vmap`."""

from models.losses import LOSSES, loss_fn
from models.mlp import ACTIVATIONS, MLP

__all__ = ["ACTIVATIONS", "LOSSES", "MLP", "loss_fn"]
