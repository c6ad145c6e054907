"""A population: the trials of one structure, every array with the trial axis first.

Trials that share a `Structure` (sweeps/engine/structure.py) train together.
`Population` is the state
the compiled epoch carries: parameters (the flax parameter tree, each leaf
with the trial axis added in front), optimizer state, traced hyperparameters, step counts, keys and masks.
Members are never removed: finished, diverged and padding members are
masked, so a population keeps its shape and its program (design item 5).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from models.mlp import member_params
from sweeps.engine import compiler, keys
from sweeps.engine.hparams import HPARAMS, TRACED
from sweeps.engine.network import Network, flax_layout
from sweeps.engine.optimizers import make_optimizer
from sweeps.engine.structure import Structure, init_structure

PADDING = -1  # the trial number of a padding member


@flax.struct.dataclass
class Population:
    """The carried state of one population; every field has the trial axis first.

    Attributes:
      params: the flax parameter tree of `structure.network`, each leaf (trials, *shape) float32; the
        built-in MLP's dense kernels are stored transposed, (trials, out, in) (`Network.stored`; `flat_params`
        and `Network.own_layout` give flax's layout). A tree, not one flat vector per member:
        slicing kernels out of flat rows costs a strided copy per layer per step
        (benchmarks/README.md, "Issue 13").
      opt_state: optax state of the structure's optimizer, leaves (trials, ...).
      hparams: name -> (trials,) array, one entry for every traced hyperparameter.
      numbers: (trials,) int32 trial numbers; PADDING for padding members.
      dropout_key: (trials, 2) uint32, from (sweep seed, trial number).
      step: (trials,) int32 updates applied.
      epochs_done: (trials,) int32 epochs trained.
      active: (trials,) bool, still training (not finished, stopped, diverged or padding).
      diverged: (trials,) bool.
      best: (trials,) float32, best value so far of the early-stopping metric (minimized).
      since_best: (trials,) int32, epochs since `best` last improved.
      best_params: a tree like `params`, the parameters at the member's best epoch by the
        sweep's objective (the model a user keeps).
      best_objective: (trials,) float32, that epoch's objective, sign-adjusted so lower is better.
    """

    params: Any
    opt_state: Any
    hparams: dict[str, jax.Array]
    numbers: jax.Array
    dropout_key: jax.Array
    step: jax.Array
    epochs_done: jax.Array
    active: jax.Array
    diverged: jax.Array
    best: jax.Array
    since_best: jax.Array
    best_params: Any
    best_objective: jax.Array

    @property
    def size(self) -> int:
        return int(self.numbers.shape[0])


def stack_hparams(
    trial_hparams: list[Mapping[str, Any]], size: int, structure: Structure | None = None
) -> dict[str, np.ndarray]:
    """Traced hyperparameters of the trials as (size,) arrays; rows past the trials repeat the first (padding).

    Names the registry does not know are a user's model's call hyperparameters (`Network.call_hparams`):
    float32, like the engine's. A fused `structure` traces what its members differ in: `hidden` (size, layers)
    int32, each member's widths with zeros past its depth, where the network is padded; `batch_size` (size,)
    int32 where members accumulate micro-batches."""
    rows = list(trial_hparams) + [trial_hparams[0]] * (size - len(trial_hparams))
    out = {}
    if structure is not None and structure.network.padded:
        layers = len(structure.hidden)
        out["hidden"] = np.array([tuple(p["hidden"]) + (0,) * (layers - len(p["hidden"])) for p in rows], np.int32)
    if structure is not None and structure.accumulate > 1:
        out["batch_size"] = np.array([p["batch_size"] for p in rows], np.int32)
    for name in TRACED + tuple(name for name in rows[0] if name not in HPARAMS):
        if name == "epochs":
            out[name] = np.array([p[name] for p in rows], np.int32)
        elif name == "clip_norm":
            out[name] = np.array([np.inf if p[name] is None else p[name] for p in rows], np.float32)
        else:
            out[name] = np.array([p[name] for p in rows], np.float32)
    return out


def init_population(
    structure: Structure,
    hparams: Mapping[str, np.ndarray],
    numbers: np.ndarray,
    seed: int,
    key_indices: np.ndarray | None = None,
) -> Population:
    """A fresh population: parameters from (seed, key index), optimizer state, all masks.

    Args:
      structure: the shared structure.
      hparams: name -> (trials,) values of every traced hyperparameter.
      numbers: (trials,) trial numbers, PADDING for padding members.
      seed: the sweep seed.
      key_indices: (trials,) the numbers the initialisation and dropout keys derive from: each
        trial's seed index for common random numbers (the sweep's default), or its trial number
        (per-trial keys, also the default here when None).
    """
    numbers = jnp.asarray(numbers, jnp.int32)
    key_indices = numbers if key_indices is None else jnp.asarray(key_indices, jnp.int32)
    return _init_program(init_structure(structure))(dict(hparams), numbers, key_indices, int(seed))


def flat_params(params: Any, network: Network | None = None, widths: Any = None) -> np.ndarray | list[np.ndarray]:
    """(trials, n_params) on the host: each member's parameters in its module's layout as one vector, leaves in
    tree order (`jax.flatten_util.ravel_pytree`'s order): for comparisons and for the models a sweep keeps.

    `network`: the structure's (`Structure.network`); None for the built-in MLP's. A padded network's members
    (`Network.padded`) have their own sizes: `widths` (trials, layers), the population's traced `hidden`, cuts
    each member's own parameters out of the padding (`models.mlp.member_params`), one vector per member in a
    list."""
    own = flax_layout(jax.device_get(params)) if network is None else network.own_layout(jax.device_get(params))
    if network is not None and network.padded:
        leaves, treedef = jax.tree.flatten(own)
        rows = [
            member_params(treedef.unflatten([leaf[i] for leaf in leaves]), w) for i, w in enumerate(np.asarray(widths))
        ]
        return [np.concatenate([np.asarray(leaf).ravel() for leaf in jax.tree.leaves(row)]) for row in rows]
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(own)]
    return np.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], axis=1)


def select_members(where: jax.Array, new: Any, old: Any) -> Any:
    """Per member: `new` where `where` (trials,) holds, else `old`; trees whose leaves are (trials, ...)."""

    def select(n, o):
        return jnp.where(where.reshape(where.shape + (1,) * (o.ndim - 1)), n.astype(o.dtype), o)

    return jax.tree.map(select, new, old)


@functools.cache
def _init_program(structure: Structure):
    """The whole initialisation as one jitted program: (hparams, numbers, key indices, seed) -> Population.

    The seed is static (keys derive from it exactly as `jax.random.PRNGKey(seed)` does).
    One program, not a dozen small eager ones (keys, zeros, fills): a first run pays one compilation,
    and the groups that share an `init_structure` (batch size, schedule, dropout aside) share it.
    """
    return compiler.jit(population_builder(structure), static_argnums=3)


def population_builder(structure: Structure):
    """The initialisation as a function to trace, `(hparams, numbers, key_indices, seed) -> Population`
    (numbers and key indices int32): `_init_program` jits it, `Devices` jits it with a sharded output."""
    network = structure.network

    def init_member(key, hp):
        params = network.init(key, hp)
        opt = make_optimizer(structure.optimizer, hp, hp["learning_rate"], structure.clip)
        return params, opt.init(params)

    def init_population(hparams, numbers, key_indices, seed):  # its name is what JAX's compile log shows
        safe = jnp.maximum(key_indices, 0)
        params, opt_state = jax.vmap(init_member)(keys.init_keys(seed, safe), hparams)
        size = numbers.shape[0]
        return Population(
            params=params,
            opt_state=opt_state,
            hparams=hparams,
            numbers=numbers,
            dropout_key=keys.dropout_keys(seed, safe),
            step=jnp.zeros(size, jnp.int32),
            epochs_done=jnp.zeros(size, jnp.int32),
            active=numbers != PADDING,
            diverged=jnp.zeros(size, bool),
            best=jnp.full(size, jnp.inf, jnp.float32),
            since_best=jnp.zeros(size, jnp.int32),
            best_params=jax.tree.map(jnp.copy, params),  # its own buffers: the epoch donates both
            best_objective=jnp.full(size, jnp.inf, jnp.float32),
        )

    return init_population
