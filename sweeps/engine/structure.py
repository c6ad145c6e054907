"""A structure: everything that decides a compiled program's shapes and code paths.

Trials that share a `Structure` train together in one population under one
compiled epoch; every other hyperparameter is a traced array (design item 1).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
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

    A *fused* structure holds members of several (`fuse`): `min_depth` set, `hidden` is the padded built-in
    MLP that members of those widths and depths share (each member's own widths are the traced `hidden`,
    `MLP`); `accumulate` > 1, `batch_size` is the micro-batch every member steps through and a member of batch
    size k x `batch_size` (k <= `accumulate`, its traced `batch_size`) sums the gradients of k micro-batches
    into one update (`sweeps.engine.epoch`).

    `precision` is what the model computes in: "float32", or "bfloat16" (mixed precision: float32 parameters and
    optimizer state, the forward and backward in bfloat16: `sweeps.engine.precision`).
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
    min_depth: int | None = None
    accumulate: int = 1
    precision: str = "float32"

    @property
    def network(self) -> Network:
        """The model one member trains, as the engine initialises and applies it."""
        return _network(self)

    def label(self) -> str:
        """A short human-readable name, for progress bars and dry runs."""
        extras = "".join(f", {name}" for name, on in (("clip", self.clip), ("dropout", self.dropout)) if on)
        batch = f"batch {self.batch_size}" + (f" (x1-{self.accumulate} accumulated)" if self.accumulate > 1 else "")
        precision = "" if self.precision == "float32" else f", {self.precision}"
        return f"{self.network.label()}, {batch}, {self.optimizer}/{self.schedule}{extras}{precision}"


@functools.cache
def _network(structure: Structure) -> Network:
    if structure.module is None:
        return builtin_network(
            structure.hidden,
            structure.activation,
            structure.n_features,
            structure.n_outputs,
            structure.dropout,
            structure.min_depth,
        )
    return network_of(structure.module, structure.input_shape)


def structure_of(
    hparams: Mapping[str, Any],
    data,
    module: nn.Module | None = None,
    loss: Callable | None = None,
    metrics: tuple = (),
    precision: str = "float32",
) -> Structure:
    """The structure key of one trial's resolved hyperparameters on `data` (n_features, n_outputs, task),
    training the user's `module` (None: the built-in MLP) on the user's `loss` (None: the task's), its
    validation computing the user's `metrics` ((name, fn, direction), ...) too, its model computing in
    `precision` (the sweep's `SweepConfig.precision`)."""
    return Structure(
        *trial_fields(hparams, module),
        task=data.task,
        n_features=int(data.n_features),
        n_outputs=int(data.n_outputs),
        module=module,
        input_shape=None if module is None else tuple(int(n) for n in data.input_shape),
        loss=loss,
        metrics=tuple(metrics),
        precision=precision,
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
    the rest set to fixed values: groups that differ only in batch size, schedule, dropout, loss, metrics or
    precision (parameters start float32 in any) share one compiled initialisation."""
    return dataclasses.replace(
        structure,
        batch_size=1,
        schedule="constant",
        dropout=False,
        task="binary",
        loss=None,
        metrics=(),
        accumulate=1,
        precision="float32",
    )


def fuse(structures: Sequence[Structure]) -> Structure | None:
    """The one structure whose program trains the members of all of `structures` exactly as their own would,
    or None where no program can: they differ in more than the built-in MLP's hidden widths and depths and
    the batch size (the optimizer family, schedule, activation, model, clipping or dropout at all).

    Widths: each layer padded to the widest member's; from the shallowest member's last hidden layer on, one
    width for every layer (a member past its depth passes that layer's input on, `MLP`). Batch sizes: the
    micro-batch is their greatest common divisor, `accumulate` the largest multiple of it. A single structure
    is returned as it is.

    Examples:
      >>> s = Structure(hidden=(64,), activation="relu", batch_size=32, optimizer="adam", schedule="constant",
      ...               clip=False, dropout=False, task="binary", n_features=45, n_outputs=1)
      >>> f = fuse([s, dataclasses.replace(s, hidden=(16, 16), batch_size=128)])
      >>> f.hidden, f.min_depth, f.batch_size, f.accumulate
      ((64, 64), 1, 32, 4)
    """
    first = structures[0]
    if all(s == first for s in structures):
        return first
    common = {dataclasses.replace(s, hidden=(), batch_size=1, min_depth=None, accumulate=1) for s in structures}
    hiddens = {h for s in structures for h in members_hidden(s)}
    if len(common) > 1 or (len(hiddens) > 1 and (first.module is not None or () in hiddens)):
        return None
    micro = math.gcd(*(s.batch_size for s in structures))
    accumulate = max(s.batch_size * s.accumulate for s in structures) // micro
    if len(hiddens) == 1:
        return dataclasses.replace(first, batch_size=micro, accumulate=accumulate)
    min_depth = min(len(h) for h in hiddens)
    padded = [max(h[layer] for h in hiddens if len(h) > layer) for layer in range(max(map(len, hiddens)))]
    shared = max(padded[min_depth - 1 :])
    padded[min_depth - 1 :] = [shared] * (len(padded) - min_depth + 1)
    return dataclasses.replace(
        first, hidden=tuple(padded), min_depth=min_depth, batch_size=micro, accumulate=accumulate
    )


def members_hidden(structure: Structure) -> tuple[tuple[int, ...], ...]:
    """The hidden widths a structure's members have: its own, or for a padded one, those it can hold (its
    prefixes of every depth from `min_depth`, each a bound: `holds` says which members fit)."""
    if structure.min_depth is None:
        return (structure.hidden,)
    return tuple(structure.hidden[:depth] for depth in range(structure.min_depth, len(structure.hidden) + 1))


def holds(fused: Structure, structure: Structure) -> bool:
    """Whether a member of `structure` (one trial's, unfused) can train in a population of `fused` exactly as it
    would alone: the same program but for padding, widths and depth within the padded network's, a batch
    size a multiple of the micro-batch within `accumulate` of it."""
    if fused == structure:
        return True
    hidden, depth = structure.hidden, len(structure.hidden)
    if fused.min_depth is None:
        shapes_fit = hidden == fused.hidden
    else:
        # from layer min_depth - 1 on the padded widths are one, so a shallower member's last layer carries on
        shapes_fit = fused.min_depth <= depth <= len(fused.hidden) and all(w <= p for w, p in zip(hidden, fused.hidden))
    multiple, rest = divmod(structure.batch_size, fused.batch_size)
    return (
        shapes_fit
        and rest == 0
        and 1 <= multiple <= fused.accumulate
        and dataclasses.replace(structure, hidden=(), batch_size=1)
        == dataclasses.replace(fused, hidden=(), batch_size=1, min_depth=None, accumulate=1)
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
