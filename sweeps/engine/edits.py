"""Population edits between epochs: small jitted functions over the trial axis.

Strategies that act inside a training population (halving, slot recycling,
population based training) decide *which* members change; these functions
apply the decisions. Every argument has the population's shape, (trials,) or
(trials, ...), so each edit compiles once per population size, whatever the
decision, and the compiled epoch never learns that strategies exist. Each
edit consumes (donates) the population it is given and returns the new one.
On several devices, apply an edit through `sweeps.driver.devices.Devices.edit`, which
splits its arguments like the population, so the result stays sharded.

Examples:
  >>> import numpy as np
  >>> source = np.array([0, 1, 0, 3])  # member 2 takes member 0's weights and optimizer state
  >>> source[2], source[3]  # copy_members(pop, source) leaves members 0, 1 and 3 as they are
  (np.int64(0), np.int64(3))
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from sweeps.engine.population import Population, select_members

# What a member's training has produced; `copy_members` moves these and nothing else. The best-so-far
# (`best`, `since_best`, `best_params`, `best_objective`) is not among them: it belongs to the member's
# trial, whose history is recorded by trial number, so it stays the trial's own (the table's best epoch).
TRAINING_STATE = (
    "params",
    "opt_state",
    "step",
    "epochs_done",
    "active",
    "diverged",
)


@functools.partial(jax.jit, donate_argnums=(0,))
def place(pop: Population, fresh: Population, where: jax.Array) -> Population:
    """Puts fresh trials into slots: member i becomes `fresh`'s member i wherever `where[i]`.

    Args:
      pop: the population being trained.
      fresh: a population of the same size and structure from `init_population` (initialisation
        is separate from placement; rows of `fresh` outside `where` are ignored).
      where: (trials,) bool, the slots that take a new trial.
    """
    return select_members(where, fresh, pop)


@functools.partial(jax.jit, donate_argnums=(0,))
def copy_members(pop: Population, source: jax.Array) -> Population:
    """Member i takes the training state of member `source[i]` (`source[i] == i` keeps its own).

    Copies parameters, optimizer state, step and epoch counts and masks (`TRAINING_STATE`); a member
    keeps its trial number, hyperparameters, dropout key and best-so-far: its best epoch and the
    parameters saved there stay those of its own trial's history (what the table reports), so the
    model kept for a trial is the one at the epoch its row calls `best_epoch`, not its source's.

    Args:
      source: (trials,) int32 indices into the population.
    """
    copied = {name: jax.tree.map(lambda leaf: leaf[source], getattr(pop, name)) for name in TRAINING_STATE}
    return pop.replace(**copied)


@functools.partial(jax.jit, donate_argnums=(0,))
def set_hparams(pop: Population, where: jax.Array, values: Mapping[str, jax.Array]) -> Population:
    """Member i takes `values[name][i]` for each named hyperparameter wherever `where[i]`.

    Args:
      where: (trials,) bool.
      values: name -> (trials,) new values (a subset of the traced hyperparameters);
        cast to the population's dtypes, so the epoch sees the same types and does not recompile.
    """
    unknown = set(values) - set(pop.hparams)
    if unknown:
        raise ValueError(f"set_hparams got unknown hyperparameters {sorted(unknown)}; known: {sorted(pop.hparams)}")
    return pop.replace(
        hparams={**pop.hparams, **select_members(where, dict(values), {n: pop.hparams[n] for n in values})}
    )


@functools.partial(jax.jit, donate_argnums=(0,))
def mask_out(pop: Population, where: jax.Array) -> Population:
    """Stops the members where `where` (trials,) holds: they train no further (pruned)."""
    return pop.replace(active=pop.active & ~where)


@functools.partial(jax.jit, donate_argnums=(0,))
def exploit_explore(
    pop: Population, source: jax.Array, where: jax.Array, values: Mapping[str, jax.Array]
) -> Population:
    """Population based training's step, as one program: `copy_members(pop, source)`, then
    `set_hparams(pop, where, values)` (see both)."""
    return set_hparams(copy_members(pop, source), where, values)  # traced inline: one program


@jax.jit  # no donation: the smaller outputs cannot reuse the larger buffers
def repack(pop: Population, index: jax.Array, keep: jax.Array) -> Population:
    """A smaller population: member j is member `index[j]` where `keep[j]`, padding elsewhere.

    Args:
      index: (new_size,) int32 slots of `pop` to keep (any valid slot where `keep` is False).
      keep: (new_size,) bool; the others become padding (number -1, inactive).
    """
    small = jax.tree.map(lambda leaf: leaf[index], pop)
    return small.replace(numbers=jnp.where(keep, small.numbers, -1), active=small.active & keep)
