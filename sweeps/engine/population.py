"""A population: the trials of one structure, every array with the trial axis first.

Trials that share a `Structure` (sweeps/engine/structure.py) train together.
`Population` is the state
the compiled epoch carries: parameters (one flat vector per member),
optimizer state, traced hyperparameters, step counts, keys and masks.
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
from jax.flatten_util import ravel_pytree

from models import MLP
from sweeps.engine import keys
from sweeps.engine.hparams import TRACED
from sweeps.engine.optimizers import make_optimizer
from sweeps.engine.structure import Structure

PADDING = -1  # the trial number of a padding member


@flax.struct.dataclass
class Population:
    """The carried state of one population; every field has the trial axis first.

    Attributes:
      params: (trials, n_params) float32, each member's parameters as one flat vector.
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
      best_params: (trials, n_params) float32, the parameters at the member's best epoch by the
        sweep's objective (the model a user keeps).
      best_objective: (trials,) float32, that epoch's objective, sign-adjusted so lower is better.
    """

    params: jax.Array
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
    best_params: jax.Array
    best_objective: jax.Array

    @property
    def size(self) -> int:
        return int(self.numbers.shape[0])


def stack_hparams(trial_hparams: list[Mapping[str, Any]], size: int) -> dict[str, np.ndarray]:
    """Traced hyperparameters of the trials as (size,) arrays; rows past the trials repeat the first (padding)."""
    rows = list(trial_hparams) + [trial_hparams[0]] * (size - len(trial_hparams))
    out = {}
    for name in TRACED:
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
    hparams = {name: jnp.asarray(value) for name, value in hparams.items()}
    numbers = jnp.asarray(numbers, jnp.int32)
    safe_numbers = jnp.maximum(numbers if key_indices is None else jnp.asarray(key_indices, jnp.int32), 0)
    init = _init_members(
        structure.hidden,
        structure.activation,
        structure.n_features,
        structure.n_outputs,
        structure.optimizer,
        structure.clip,
    )
    params, opt_state = init(keys.init_keys(seed, safe_numbers), hparams)
    size = numbers.shape[0]
    return Population(
        params=params,
        opt_state=opt_state,
        hparams=hparams,
        numbers=numbers,
        dropout_key=keys.dropout_keys(seed, safe_numbers),
        step=jnp.zeros(size, jnp.int32),
        epochs_done=jnp.zeros(size, jnp.int32),
        active=numbers != PADDING,
        diverged=jnp.zeros(size, bool),
        best=jnp.full(size, jnp.inf, jnp.float32),
        since_best=jnp.zeros(size, jnp.int32),
        best_params=jnp.copy(params),  # its own buffer: the epoch donates both
        best_objective=jnp.full(size, jnp.inf, jnp.float32),
    )


@functools.cache
def _init_members(
    hidden: tuple[int, ...], activation: str, n_features: int, n_outputs: int, optimizer: str, clip: bool
):
    """The jitted, vmapped initialisation: (keys (trials, 2), hparams) -> (params, opt_state).

    Keyed by what the initial state depends on (the model's shapes and the optimizer's state),
    not the whole structure: groups that differ only in batch size or schedule share it.
    """
    model = MLP(hidden=hidden, activation=activation, outputs=n_outputs)

    def init_member(key, hp):
        tree = model.init(key, jnp.zeros((1, n_features), jnp.float32))["params"]
        flat = ravel_pytree(tree)[0] * hp["init_scale"]
        opt = make_optimizer(optimizer, hp, hp["learning_rate"], clip)
        return flat, opt.init(flat)

    return jax.jit(jax.vmap(init_member))
