"""One member's loss and update: what the XLA path's step (`sweeps.engine.epoch.minibatch_step`, vmapped over the
population) and the Pallas kernel (`sweeps.engine.kernel`, member by member on chip) are both made of, so the two
train the same member.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from models.losses import loss_fn
from sweeps.engine.optimizers import make_optimizer
from sweeps.engine.precision import network_outputs
from sweeps.engine.schedules import learning_rate_at
from sweeps.engine.structure import Structure, kernels


def per_example_loss(structure: Structure):
    """The loss a structure trains on, `(outputs (batch, outputs), y (batch,)) -> (batch,)`: the user's, else the
    task's (`models.losses.loss_fn`)."""
    return loss_fn(structure.task) if structure.loss is None else structure.loss


def member_loss(structure: Structure, params, hp, x, y, w, dropout_key, total_weight=None, penalized=True):
    """(penalized loss, data loss) of one member (its parameter tree) on one weighted minibatch.

    The model computes in `structure.precision` (`sweeps.engine.precision.network_outputs`); the loss, the
    penalty and so the gradient are float32.

    `total_weight`: what the weighted sum is divided by, the weight of the member's whole minibatch when `x` is
    one micro-batch of it (default: `w`'s sum); `penalized`: whether the L2 penalty is added (once per update:
    a traced bool for the micro-batches of an accumulated one)."""
    outputs = network_outputs(structure, params, x, hp, train=True, key=dropout_key)  # float32, whatever precision
    weighted = jnp.sum(per_example_loss(structure)(outputs, y) * w)
    data_loss = weighted / (jnp.sum(w) if total_weight is None else total_weight)
    penalty = hp["l2"] * sum(jnp.sum(jnp.square(kernel)) for kernel in kernels(params))
    if total_weight is not None:
        penalty = jnp.where(penalized, penalty, 0.0)
    return data_loss + penalty, data_loss


def member_apply(structure: Structure, params, opt_state, hp, step, active, grads, data_loss, last, steps_per_epoch):
    """One member's optimizer update from its minibatch's gradient, applied where it is active, its loss finite
    and its minibatch complete (`last`; None: every step completes one, as in the Pallas kernel). Returns its
    parameters, optimizer state, update count and whether it stayed finite."""
    total_steps = hp["epochs"] * steps_per_epoch
    lr = learning_rate_at(structure.schedule, step, hp, steps_per_epoch, total_steps)
    opt = make_optimizer(structure.optimizer, hp, lr, structure.clip)
    # Judged from the loss alone, before the update: the mask is known while the optimizer runs and XLA
    # folds it into the update's own passes; checking every gradient cost one more pass over them per step.
    finite = jnp.isfinite(data_loss) if last is None else jnp.isfinite(data_loss) | ~last
    keep = active & finite if last is None else active & finite & last
    updates, new_opt_state = opt.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    params = jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_params, params)
    opt_state = jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_opt_state, opt_state)
    return params, opt_state, step + keep.astype(step.dtype), finite


class StepCarry(NamedTuple):
    """The state an epoch's steps carry, every field (trials, ...) on the XLA path (`sweeps.engine.epoch`), one
    member's in the Pallas kernel (`sweeps.engine.kernel`, which never accumulates)."""

    params: Any
    opt_state: Any
    step: jax.Array
    active: jax.Array
    diverged: jax.Array
    loss_sum: jax.Array
    loss_steps: jax.Array
    accumulated: Any = None  # (gradient tree, data loss) summed over a minibatch's micro-batches so far
