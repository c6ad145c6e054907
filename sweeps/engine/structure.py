"""A structure: everything that decides a compiled program's shapes and code paths.

Trials that share a `Structure` train together in one population under one
compiled epoch; every other hyperparameter is a traced array (design item 1).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax

from sweeps.engine.network import Network, builtin_network, n_values, network_of


@dataclasses.dataclass(frozen=True)
class Structure:
    """What one compiled program is specialised to; hashable, so it keys the program cache.

    `clip` and `dropout` say whether the program contains gradient clipping and dropout at
    all: random masks cost as much as the matrix products on a CPU, so a group in which no
    member uses dropout draws none. Within a group the values themselves are traced.

    `module` is the user's own Flax module (its attributes are part of the key), None for the built-in
    MLP built from `hidden` and `activation`; `input_shape` is one row's shape, None for a table's
    (n_features,).

    `loss` is the user's per-example loss (None: the task's) and `metrics` the user's validation metrics as
    ((name, fn, direction), ...) (`sweeps.engine.metrics.OwnMetrics`): code the program runs, so part of the
    key (a function by its identity).
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
    module: nn.Module | None = None
    input_shape: tuple[int, ...] | None = None
    loss: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    metrics: tuple[tuple[str, Callable[[jax.Array, jax.Array], jax.Array], str], ...] = ()

    @property
    def network(self) -> Network:
        """The model one member trains, as the engine initialises and applies it."""
        return _network(self)

    def label(self) -> str:
        """A short human-readable name, for progress bars and dry runs."""
        extras = "".join(f", {name}" for name, on in (("clip", self.clip), ("dropout", self.dropout)) if on)
        return f"{self.network.label()}, batch {self.batch_size}, {self.optimizer}/{self.schedule}{extras}"


@functools.cache
def _network(structure: Structure) -> Network:
    if structure.module is None:
        return builtin_network(
            structure.hidden, structure.activation, structure.n_features, structure.n_outputs, structure.dropout
        )
    return network_of(structure.module, structure.input_shape)


def structure_of(
    hparams: Mapping[str, Any], data, module: nn.Module | None = None, loss: Callable | None = None, metrics: tuple = ()
) -> Structure:
    """The structure key of one trial's resolved hyperparameters on `data` (n_features, n_outputs, task),
    training the user's `module` (None: the built-in MLP) on the user's `loss` (None: the task's), its
    validation computing the user's `metrics` ((name, fn, direction), ...) too."""
    return Structure(
        *trial_fields(hparams, module),
        task=data.task,
        n_features=int(data.n_features),
        n_outputs=int(data.n_outputs),
        module=module,
        input_shape=None if module is None else tuple(int(n) for n in data.input_shape),
        loss=loss,
        metrics=tuple(metrics),
    )


def trial_fields(hparams: Mapping[str, Any], module: nn.Module | None = None) -> tuple:
    """The fields of a `Structure` that a trial's hyperparameters decide, in order (hidden .. dropout): a plain
    tuple, cheaper than a `Structure` to build and hash when a million trials are grouped. A user's `module`
    fixes its own shapes and draws its own dropout: `hidden`, `activation` and `dropout` are not its fields."""
    if module is not None:
        return (
            (),
            "",
            int(hparams["batch_size"]),
            hparams["optimizer"],
            hparams["schedule"],
            hparams["clip_norm"] is not None,
            False,
        )
    return (
        tuple(hparams["hidden"]),
        hparams["activation"],
        int(hparams["batch_size"]),
        hparams["optimizer"],
        hparams["schedule"],
        hparams["clip_norm"] is not None,
        hparams["dropout"] > 0,
    )


def init_structure(structure: Structure) -> Structure:
    """The part of `structure` a fresh population depends on (the model's shapes, the optimizer's state),
    the rest set to fixed values: groups that differ only in batch size, schedule, dropout, loss or metrics
    share one compiled initialisation."""
    return dataclasses.replace(
        structure, batch_size=1, schedule="constant", dropout=False, task="binary", loss=None, metrics=()
    )


@functools.cache
def param_shapes(structure: Structure) -> Any:
    """One member's parameter tree in the module's own layout as `jax.ShapeDtypeStruct`s (nothing is computed)."""
    return structure.network.param_shapes()


def n_params(structure: Structure) -> int:
    """Parameters of one member."""
    return n_values(param_shapes(structure))


def kernels(params: Any) -> list[jax.Array]:
    """The dense kernels of a parameter tree (the leaves the L2 penalty reaches; biases are not)."""
    return [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params) if path[-1].key == "kernel"]
