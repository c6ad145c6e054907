"""A structure: everything that decides a compiled program's shapes and code paths.

Trials that share a `Structure` train together in one population under one
compiled epoch; every other hyperparameter is a traced array (design item 1).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from models import MLP


@dataclasses.dataclass(frozen=True)
class Structure:
    """What one compiled program is specialised to; hashable, so it keys the program cache.

    `clip` and `dropout` say whether the program contains gradient clipping and dropout at
    all: random masks cost as much as the matrix products on a CPU, so a group in which no
    member uses dropout draws none. Within a group the values themselves are traced.
    """

    hidden: tuple[int, ...]
    activation: str
    batch_size: int
    optimizer: str
    schedule: str
    clip: bool
    dropout: bool
    task: str
    n_features: int
    n_outputs: int

    @property
    def model(self) -> MLP:
        return MLP(hidden=self.hidden, activation=self.activation, outputs=self.n_outputs)

    def label(self) -> str:
        """A short human-readable name, for progress bars and dry runs."""
        extras = "".join(f", {name}" for name, on in (("clip", self.clip), ("dropout", self.dropout)) if on)
        return (
            f"hidden={list(self.hidden)} {self.activation}, batch {self.batch_size}, "
            f"{self.optimizer}/{self.schedule}{extras}"
        )


def structure_of(hparams: Mapping[str, Any], data) -> Structure:
    """The structure key of one trial's resolved hyperparameters on `data` (n_features, n_outputs, task)."""
    return Structure(
        hidden=tuple(hparams["hidden"]),
        activation=hparams["activation"],
        batch_size=int(hparams["batch_size"]),
        optimizer=hparams["optimizer"],
        schedule=hparams["schedule"],
        clip=hparams["clip_norm"] is not None,
        dropout=hparams["dropout"] > 0,
        task=data.task,
        n_features=int(data.n_features),
        n_outputs=int(data.n_outputs),
    )


@functools.cache
def flat_layout(structure: Structure) -> tuple[int, Callable, jax.Array]:
    """(parameter count, unravel: (n_params,) -> param tree, kernel mask (n_params,)).

    The mask is 1.0 on dense kernels and 0.0 on biases; the L2 penalty uses it.
    """
    shapes = jax.eval_shape(structure.model.init, jax.random.PRNGKey(0), jnp.zeros((1, structure.n_features)))
    with jax.ensure_compile_time_eval():  # may be first called while tracing: keep these concrete
        template = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["params"])
        flat, unravel = ravel_pytree(template)
        mask_tree = jax.tree_util.tree_map_with_path(
            lambda path, leaf: jnp.full(leaf.shape, path[-1].key == "kernel", jnp.float32), template
        )
        kernel_mask = ravel_pytree(mask_tree)[0]
    return int(flat.size), unravel, kernel_mask
