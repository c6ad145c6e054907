"""The compiled training epoch of a population.

`make_train_epoch(structure, stop_metric)` settles everything static and
returns one jitted function, cached, so a later population with the same
structure reuses the compiled program (design item 1). Inside it:

- `minibatch_step` is one update of every member, `jax.vmap` of
  `member_update` over the trial axis; all members read the same minibatch
  (design item 4), gathered once, outside the vmap;
- `train_epoch` scans the step over one shuffled epoch, then evaluates every
  member on the validation split and applies the masks: divergence, epoch
  budgets and early stopping;
- `epoch_function` is that epoch with its static arguments settled, the
  function `make_train_epoch` jits; `epoch_parts` gives its step and its
  validation forward apart, for cost analyses.

A member's update is applied only where the member is active and its loss is
finite; otherwise the member keeps its parameters and optimizer state and
leaves training (`jnp.where`, never Python control flow). The mask is known
before the optimizer runs, so XLA folds it into the optimizer's own passes, and
no step reads the gradients a second time to check them: a non-finite gradient
makes the next step's loss non-finite (Adam's update becomes NaN, which every
layer passes on), and a member whose parameters are not finite at the end of an
epoch is marked diverged there (benchmarks/README.md, "Issue 13").
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from sweeps.engine import compiler
from sweeps.engine.kernel import KernelPlan, train_steps, unsupported
from sweeps.engine.member import StepCarry, member_apply, member_loss
from sweeps.engine.metrics import direction, directions, evaluate, metric_names
from sweeps.engine.population import Population, select_members
from sweeps.engine.precision import network_outputs
from sweeps.engine.structure import Structure

EVAL_ROWS = 1024  # validation rows per forward pass; bounds activation memory


class Split(NamedTuple):
    """One split on the device: x (rows, features) float32, y (rows,)."""

    x: jax.Array
    y: jax.Array


class Controls(NamedTuple):
    """Run-wide numbers the epoch reads as arrays (changing them does not recompile)."""

    divergence_limit: jax.Array  # () train loss above this marks a member diverged
    patience: jax.Array  # () int32 epochs without improvement before early stopping
    min_delta: jax.Array  # () improvement smaller than this does not count
    y_std: jax.Array  # () regression target scale, for errors in the target's units


def batch_indices(key: jax.Array, n_rows: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """One epoch's shuffled minibatches: indices (steps, batch) int32 and weights (steps, batch).

    The last minibatch is completed with weight-0 rows, so every row is seen
    once per epoch and every minibatch has the same shape.
    """
    steps = -(-n_rows // batch_size)
    order = jax.random.permutation(key, n_rows)
    padded = jnp.zeros(steps * batch_size, jnp.int32).at[:n_rows].set(order)
    weights = (jnp.arange(steps * batch_size) < n_rows).astype(jnp.float32)
    return padded.reshape(steps, batch_size), weights.reshape(steps, batch_size)


class Window(NamedTuple):
    """Where one micro-step falls in a member's minibatch (`Structure.accumulate` > 1): its position `micro`
    in it, whether it is the last (`last`: the update is applied), and the minibatch's total row weight."""

    micro: jax.Array
    last: jax.Array
    weight: jax.Array


def window_of(structure: Structure, hp, t, weight_ends) -> tuple[jax.Array, Window | None]:
    """A member's minibatches per epoch and, when it accumulates, where micro-step `t` falls in its minibatch.

    `weight_ends`: (micro-steps + 1,) the cumulative row weight of the epoch's micro-batches; a member's
    minibatch is k = batch_size / micro-batch consecutive micro-batches (the epoch's last holds what is left).
    """
    micro_steps = weight_ends.shape[0] - 1
    if structure.accumulate == 1:
        return jnp.int32(micro_steps), None
    k = hp["batch_size"] // structure.batch_size
    micro = t % k
    end = jnp.minimum(t - micro + k, micro_steps)
    window = Window(micro=micro, last=t == end - 1, weight=weight_ends[end] - weight_ends[t - micro])
    return (micro_steps + k - 1) // k, window


def member_gradient(structure: Structure, params, accumulated, hp, step, key, t, weight_ends, x, y, w):
    """One member's gradient on one minibatch, or, when it accumulates (`Structure.accumulate`), on one
    micro-batch of it, added to the minibatch's so far.

    Returns (gradient, data loss) of its minibatch so far, the state to carry to its next micro-batch (None
    without accumulation), whether this step ends its minibatch (its update is due), and its minibatches per
    epoch."""
    steps_per_epoch, window = window_of(structure, hp, t, weight_ends)
    step_key = jax.random.fold_in(key, step)
    if window is None:
        total_weight, penalized, last = None, True, jnp.bool_(True)
    else:  # a minibatch's first micro-batch draws dropout as a whole minibatch does, the others from their own keys
        step_key = jnp.where(window.micro == 0, step_key, jax.random.fold_in(step_key, window.micro))
        total_weight, penalized, last = window.weight, window.micro == 0, window.last
    grads, data_loss = jax.grad(
        lambda p: member_loss(structure, p, hp, x, y, w, step_key, total_weight, penalized), has_aux=True
    )(params)
    if window is not None:
        grads = jax.tree.map(jnp.add, accumulated[0], grads)
        data_loss = accumulated[1] + data_loss
        accumulated = (jax.tree.map(lambda g: jnp.where(last, 0.0, g), grads), jnp.where(last, 0.0, data_loss))
    return (grads, data_loss), accumulated, last, steps_per_epoch


def member_update(structure: Structure, params, opt_state, accumulated, hp, step, key, active, t, weight_ends, x, y, w):
    """One member's step: its gradient (`member_gradient`) and its update (`member_apply`).

    Returns its new state (parameters, optimizer state, accumulated (gradient, data loss) or None, update count),
    whether it stayed finite, its minibatch's data loss, and whether this step ended its minibatch."""
    (grads, data_loss), accumulated, last, steps_per_epoch = member_gradient(
        structure, params, accumulated, hp, step, key, t, weight_ends, x, y, w
    )
    params, opt_state, step, finite = member_apply(
        structure, params, opt_state, hp, step, active, grads, data_loss, last, steps_per_epoch
    )
    return params, opt_state, accumulated, step, finite, data_loss, last


def first_carry(pop: Population, active: jax.Array, structure: Structure | None = None) -> StepCarry:
    """The carry an epoch's scan starts from: the population's training state, no loss summed yet (and no
    gradient, where `structure` accumulates)."""
    accumulated = None
    if structure is not None and structure.accumulate > 1:
        accumulated = (jax.tree.map(jnp.zeros_like, pop.params), jnp.zeros(pop.size, jnp.float32))
    return StepCarry(
        params=pop.params,
        opt_state=pop.opt_state,
        step=pop.step,
        active=active,
        diverged=pop.diverged,
        loss_sum=jnp.zeros(pop.size, jnp.float32),
        loss_steps=jnp.zeros(pop.size, jnp.int32),
        accumulated=accumulated,
    )


def minibatch_step(structure: Structure, weight_ends, hparams, dropout_key, train: Split, carry, batch):
    """`(carry, (indices, weights, t)) -> (carry, None)`: one update (or micro-step) of every member on one shared
    minibatch, the epoch's `t`-th.

    Members that accumulate (`Structure.accumulate`) sum their gradient over micro-steps; the optimizer runs at
    every micro-step and a member's update is kept only at the last of its minibatch (masked, as divergence is).
    Running it only where some member's minibatch ends (`lax.cond`) was slower: the branch copied the state,
    2x a batch-16 program's epoch where members update every micro-step (benchmarks/README.md, "Fused
    shapes")."""
    indices, weights, t = batch
    x, y = train.x[indices], train.y[indices]  # gathered once for the whole population
    gradient = functools.partial(member_gradient, structure)
    (grads, loss), accumulated, last, steps_per_epoch = jax.vmap(
        gradient, in_axes=(0, 0, 0, 0, 0, None, None, None, None, None)
    )(carry.params, carry.accumulated, hparams, carry.step, dropout_key, t, weight_ends, x, y, weights)

    params, opt_state, step, finite = jax.vmap(functools.partial(member_apply, structure))(
        carry.params, carry.opt_state, hparams, carry.step, carry.active, grads, loss, last, steps_per_epoch
    )
    counted = carry.active & last
    return (
        StepCarry(
            params=params,
            opt_state=opt_state,
            step=step,
            active=carry.active & finite,
            diverged=carry.diverged | (carry.active & ~finite),
            loss_sum=carry.loss_sum + jnp.where(counted, loss, 0.0),
            loss_steps=carry.loss_steps + counted,
            accumulated=accumulated,
        ),
        None,
    )


def epoch_batches(order_key, n_rows: int, batch_size: int):
    """The scan's inputs of one epoch, `(indices, weights, t)`, and the cumulative row weight of its minibatches
    ((steps + 1,), what an accumulating member's minibatch weight is read from: `window_of`)."""
    indices, weights = batch_indices(order_key, n_rows, batch_size)
    weight_ends = jnp.concatenate([jnp.zeros(1, jnp.float32), jnp.cumsum(jnp.sum(weights, axis=1))])
    return (indices, weights, jnp.arange(indices.shape[0], dtype=jnp.int32)), weight_ends


def all_finite(params) -> jax.Array:
    """(trials,) bool: every parameter of the member is finite; `params` leaves are (trials, ...)."""
    finite = [jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1) for leaf in jax.tree.leaves(params)]
    return functools.reduce(jnp.logical_and, finite)


def forward(structure: Structure, params, hparams, x: jax.Array) -> jax.Array:
    """Every member's outputs on all of `x` (rows, *input_shape) in one pass -> (trials, rows, outputs) float32, the
    model computing in `structure.precision` as in training (`sweeps.engine.precision.network_outputs`)."""
    return jax.vmap(lambda member, hp: network_outputs(structure, member, x, hp, train=False))(params, hparams)


def predict(structure: Structure, params, hparams, x: jax.Array) -> jax.Array:
    """Every member's outputs on `x` (rows, *input_shape) -> (trials, rows, outputs); params: leaves (trials, ...),
    hparams: name -> (trials,) (the call hyperparameters a user's model reads).

    Rows go through in blocks of EVAL_ROWS so activation memory stays bounded.
    """
    rows = x.shape[0]
    members = jax.tree.leaves(params)[0].shape[0]
    blocks = -(-rows // EVAL_ROWS)
    block = -(-rows // blocks)
    padded = jnp.zeros((blocks * block, *x.shape[1:]), x.dtype).at[:rows].set(x)
    # (blocks, trials, block, outputs)
    outputs = jax.lax.map(
        functools.partial(forward, structure, params, hparams), padded.reshape(blocks, block, *x.shape[1:])
    )
    return jnp.moveaxis(outputs, 0, 1).reshape(members, blocks * block, -1)[:, :rows]


def train_epoch(
    structure: Structure,
    stop_metric: str | None,
    objective: str,
    kernel: KernelPlan | None,
    pop: Population,
    train: Split,
    val: Split,
    order_key,
    controls,
):
    """One epoch of every member: `(population, data, key) -> (population, metrics)`.

    Returns:
      The new population and a dict of (trials,) arrays: `train_loss`, `val_<metric>`
      for the task's metrics and the user's (`structure.metrics`), bools `trained` (the member trained in this epoch),
      `diverged`, `active` (it will train in the next epoch), and `number`, the trial each
      slot holds (records are kept by trial number, never by position).
    """
    batches, weight_ends = epoch_batches(order_key, train.x.shape[0], structure.batch_size)
    trains = pop.active & (pop.epochs_done < pop.hparams["epochs"])
    carry = first_carry(pop, trains, structure)
    if kernel is None:
        step = functools.partial(minibatch_step, structure, weight_ends, pop.hparams, pop.dropout_key, train)
        carry, _ = jax.lax.scan(step, carry, batches)
    else:  # the same steps, every member's state kept on chip through the epoch (`sweeps.engine.kernel`)
        indices, weights, _ = batches
        carry = train_steps(structure, kernel, carry, pop.hparams, train.x[indices], train.y[indices], weights)
    train_loss = carry.loss_sum / jnp.maximum(carry.loss_steps, 1)
    train_loss = jnp.where(carry.loss_steps > 0, train_loss, jnp.nan)

    outputs = predict(structure, carry.params, pop.hparams, val.x)
    val_metrics = jax.vmap(
        lambda out: evaluate(structure.task, out, val.y, controls.y_std, structure.loss, structure.metrics)
    )(outputs)
    metrics = {"train_loss": train_loss, **{f"val_{name}": value for name, value in val_metrics.items()}}

    # NaN counts as exploded; so do parameters that stopped being finite while the loss stayed finite
    # (an activation such as relu can map an infinite weight to a finite output).
    exploded = trains & ~((train_loss <= controls.divergence_limit) & all_finite(carry.params))
    diverged = carry.diverged | exploded
    active = carry.active & ~exploded
    epochs_done = pop.epochs_done + trains.astype(jnp.int32)
    active = active & (epochs_done < pop.hparams["epochs"])

    best, since_best = pop.best, pop.since_best
    own = directions(structure.metrics)
    if stop_metric is not None:
        sign = -1.0 if direction(stop_metric, own) == "maximize" else 1.0
        value = sign * metrics[stop_metric]
        improved = trains & (value < best - controls.min_delta)
        best = jnp.where(improved, value, best)
        since_best = jnp.where(improved, 0, since_best + trains.astype(jnp.int32))
        active = active & (since_best < controls.patience)

    # The model a user keeps: each member's parameters at its best epoch by the objective, a masked
    # copy on the device (the same epoch the table reports as best_epoch: the first of equal values).
    score = (-1.0 if direction(objective, own) == "maximize" else 1.0) * metrics[objective]
    better = trains & (score < pop.best_objective)

    pop = pop.replace(
        best_params=select_members(better, carry.params, pop.best_params),
        best_objective=jnp.where(better, score, pop.best_objective),
        params=carry.params,
        opt_state=carry.opt_state,
        step=carry.step,
        epochs_done=epochs_done,
        active=active,
        diverged=diverged,
        best=best,
        since_best=since_best,
    )
    return pop, {**metrics, "trained": trains, "diverged": diverged, "active": active, "number": pop.numbers}


def epoch_function(
    structure: Structure, stop_metric: str | None = None, objective: str = "val_loss", kernel: KernelPlan | None = None
):
    """The epoch of `structure` as a function to trace, `(pop, train, val, order_key, controls) -> (pop,
    metrics)` (`train_epoch` with the static arguments settled and checked). `make_train_epoch` jits it with
    the engine's compiler options; a caller that compiles it with options of its own jits it itself
    (benchmarks/compiler_options.py)."""
    valid = metric_names(structure.task, structure.metrics)
    for what, metric in (("early_stopping metric", stop_metric), ("objective", objective)):
        if metric is not None and metric not in valid:
            raise ValueError(f"{what} {metric!r} is not computed for a {structure.task} task; use one of {valid}")
    if kernel is not None and (reason := unsupported(structure)) is not None:
        raise ValueError(f"{structure.label()} cannot train in the Pallas kernel: {reason}")
    return functools.partial(train_epoch, structure, stop_metric, objective, kernel)


@functools.cache
def make_train_epoch(
    structure: Structure, stop_metric: str | None = None, objective: str = "val_loss", kernel: KernelPlan | None = None
):
    """The jitted epoch of `structure`, built once per (structure, early-stopping metric, objective, kernel):
    `kernel` None steps on the XLA path, a `KernelPlan` in the Pallas kernel (`sweeps.engine.kernel`).

    The population's buffers are donated: the old state is consumed by the call.
    """
    return compiler.jit(epoch_function(structure, stop_metric, objective, kernel), donate_argnums=(0,))


def epoch_parts(structure: Structure, steps_per_epoch: int):
    """An epoch's work in its two parts, as functions to lower and cost one at a time: XLA's cost analysis
    counts a loop's body once, so the whole epoch's undercounts its steps (benchmarks/throughput.py).

    Returns:
      `(step, forward)`: `step(pop, train, batch)`, one update of every member on one minibatch (indices
      (batch,) int32, weights (batch,)), what an epoch scans `steps_per_epoch` times; and `forward(params,
      hparams, x)`, every member's outputs on all of `x`, what validation computes in blocks.
    """

    def step(pop: Population, train: Split, batch):
        carry = first_carry(pop, pop.active, structure)
        weight_ends = jnp.arange(steps_per_epoch + 1, dtype=jnp.float32) * batch[0].shape[0]  # whole minibatches
        batch = (*batch, jnp.int32(0))
        return minibatch_step(structure, weight_ends, pop.hparams, pop.dropout_key, train, carry, batch)

    return step, functools.partial(forward, structure)
