"""Leslie Smith's learning-rate range test: one member, its rate growing geometrically every minibatch.

`make_range_test(structure)` returns one jitted function that scans the
member's minibatch update (`member_update`, the engine's own) over a given
sequence of rates, one per step, and records the loss of every minibatch
before its update. The rates are an array, not constants, so another range
or length of the same structure reuses the compiled program.

The run stops itself where the loss explodes: once the debiased exponential
moving average of the loss (`beta`) rises above `factor` times its best
value, or a loss or a parameter stops being finite, the member is frozen
(the same `active` mask the sweep uses) and the remaining steps record NaN.
No Python loop runs inside the scan.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from models.losses import loss_fn
from sweeps.engine import compiler
from sweeps.engine.epoch import Split, member_update, predict
from sweeps.engine.structure import Structure


class RangeCarry(NamedTuple):
    params: Any  # the member's parameter tree
    opt_state: Any
    step: jax.Array  # () int32 updates applied
    active: jax.Array  # () bool, not stopped yet
    average: jax.Array  # () float32 exponential moving average of the loss, biased
    best: jax.Array  # () float32 best debiased average so far
    seen: jax.Array  # () int32 losses averaged so far


def geometric_rates(min_lr: float, max_lr: float, steps: int) -> jax.Array:
    """(steps,) float32 rates from `min_lr` to `max_lr`, each step the same factor above the last."""
    fraction = jnp.arange(steps, dtype=jnp.float32) / max(steps - 1, 1)
    return jnp.float32(min_lr) * (jnp.float32(max_lr) / jnp.float32(min_lr)) ** fraction


def range_step(structure: Structure, steps_per_epoch: int, hp, dropout_key, train: Split, beta, factor, carry, batch):
    """`(carry, (indices (batch,), weights (batch,), rate ())) -> (carry, loss ())`: one update at `rate`.

    The loss is the minibatch's data loss before the update; NaN once the run has stopped.
    """
    indices, weights, rate = batch
    x, y = train.x[indices], train.y[indices]
    whole = jnp.arange(steps_per_epoch + 1, dtype=jnp.float32) * structure.batch_size  # whole minibatches
    params, opt_state, _, step, finite, loss, _ = member_update(
        structure,
        carry.params,
        carry.opt_state,
        None,
        {**hp, "learning_rate": rate},
        carry.step,
        dropout_key,
        carry.active,
        carry.step,
        whole,
        x,
        y,
        weights,
    )
    seen = carry.seen + carry.active.astype(jnp.int32)
    average = jnp.where(carry.active, beta * carry.average + (1 - beta) * loss, carry.average)
    smoothed = average / (1 - beta ** jnp.maximum(seen, 1).astype(jnp.float32))
    best = jnp.where(carry.active & finite, jnp.minimum(carry.best, smoothed), carry.best)
    exploded = ~finite | ~(smoothed <= factor * best)  # NaN counts as exploded
    recorded = jnp.where(carry.active, loss, jnp.nan)
    carry = RangeCarry(params, opt_state, step, carry.active & ~exploded, average, best, seen)
    return carry, recorded


def range_test(
    structure: Structure, params, opt_state, hp, dropout_key, train: Split, indices, weights, rates, beta, factor
):
    """One member trained at a rate that changes every step.

    Args:
      structure: the member's structure (static; its schedule must be "constant": the rates are given).
      params: the member's initial parameter tree; opt_state: the optimizer's initial state.
      hp: name -> () the member's traced hyperparameters (`learning_rate` is replaced by each step's rate).
      dropout_key: (2,) uint32.
      train: the training split on the device.
      indices, weights: (steps, batch) the minibatches in order (`batch_indices`, epochs concatenated).
      rates: (steps,) float32 the rate of each step.
      beta: () smoothing of the stopping rule's moving average; factor: () its explosion factor.

    Returns:
      (steps,) float32 losses, NaN after the run stopped.
    """
    if structure.schedule != "constant":
        raise ValueError(f"the range test sets the rate of every step itself; got schedule={structure.schedule!r}")
    steps_per_epoch = -(-train.x.shape[0] // structure.batch_size)
    carry = RangeCarry(
        params=params,
        opt_state=opt_state,
        step=jnp.int32(0),
        active=jnp.bool_(True),
        average=jnp.float32(0.0),
        best=jnp.float32(jnp.inf),
        seen=jnp.int32(0),
    )
    step = functools.partial(range_step, structure, steps_per_epoch, hp, dropout_key, train, beta, factor)
    _, losses = jax.lax.scan(step, carry, (indices, weights, rates))
    return losses


@functools.cache
def make_range_test(structure: Structure):
    """The jitted range test of `structure`, built once per structure."""
    return compiler.jit(functools.partial(range_test, structure))


@functools.cache
def make_mean_loss(structure: Structure):
    """Jitted `(params (one member's tree), split) -> ()`: one member's mean data loss over a whole split."""

    def mean_loss(params, split: Split):
        outputs = predict(structure, jax.tree.map(lambda leaf: leaf[None], params), {}, split.x)[0]
        return jnp.mean(loss_fn(structure.task)(outputs, split.y))

    return compiler.jit(mean_loss)
