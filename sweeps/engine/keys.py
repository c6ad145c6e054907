"""Where a trial id becomes a random key.

Every key is derived from the sweep seed and a number that belongs to the
trial or the epoch, never from a member's position in a population. So a
trial's initialisation and dropout masks, and the shared minibatch order,
are the same however the sweep is grouped, chunked, resumed or sharded
(design item 3).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Separate streams, so that no trial number collides with another use.
_INIT, _DROPOUT, _BATCH_ORDER = 0, 1, 2


def _stream(seed: int, stream: int) -> jax.Array:
    return jax.random.fold_in(jax.random.PRNGKey(seed), stream)


def init_keys(seed: int, numbers: jax.Array) -> jax.Array:
    """Parameter-initialisation keys, (trials, 2) uint32, one per trial number."""
    base = _stream(seed, _INIT)
    return jax.vmap(lambda n: jax.random.fold_in(base, n))(jnp.asarray(numbers, jnp.uint32))


def dropout_keys(seed: int, numbers: jax.Array) -> jax.Array:
    """Per-trial dropout keys, (trials, 2) uint32; a step's mask key is `fold_in(key, step)`."""
    base = _stream(seed, _DROPOUT)
    return jax.vmap(lambda n: jax.random.fold_in(base, n))(jnp.asarray(numbers, jnp.uint32))


def batch_order_key(seed: int, epoch: int) -> jax.Array:
    """The key of one epoch's minibatch order, shared by every member whatever its batch size: members of
    different batch sizes step through the same shuffled rows, so a member that accumulates micro-batches into
    its minibatch (a fused population, `sweeps.engine.epoch`) sees the minibatches it would see alone."""
    return _batch_order_key(seed, np.uint32(epoch))


@functools.partial(jax.jit, static_argnums=0)  # one small program for every epoch of a sweep
def _batch_order_key(seed: int, epoch: jax.Array) -> jax.Array:
    return jax.random.fold_in(_stream(seed, _BATCH_ORDER), epoch)
