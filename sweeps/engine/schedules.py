"""Learning-rate schedules whose parameters are traced arrays.

optax's schedule constructors take Python numbers for their step counts, so
one optax schedule serves one trial. Here the same formulas take every
parameter, the trial's total step count included, as an array, so members
with different peaks, warm-ups or epoch budgets share one compiled program.
`tests/test_schedules.py` checks each against optax's own schedule built
with a member's values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Each schedule and the traced hyperparameters it reads besides `learning_rate`.
SCHEDULES: dict[str, tuple[str, ...]] = {
    "constant": (),
    "cosine": ("final_lr_fraction",),
    "warmup_cosine": ("warmup_fraction", "final_lr_fraction"),
    "exponential": ("decay_rate",),
    "onecycle": ("warmup_fraction",),
}

# optax.cosine_onecycle_schedule's defaults.
ONECYCLE_DIV_FACTOR = 25.0
ONECYCLE_FINAL_DIV_FACTOR = 1e4


def _cosine_interpolate(start, end, pct):
    return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)


def _cosine_decay(peak, count, decay_steps, alpha):
    """optax.cosine_decay_schedule(peak, decay_steps, alpha) at `count`."""
    decay_steps = jnp.maximum(decay_steps, 1.0)
    count = jnp.minimum(count, decay_steps)
    decayed = (1 - alpha) * 0.5 * (1 + jnp.cos(jnp.pi * count / decay_steps)) + alpha
    return peak * decayed


def learning_rate_at(
    schedule: str, count: jax.Array, hp: dict[str, jax.Array], steps_per_epoch: int, total_steps: jax.Array
) -> jax.Array:
    """The learning rate of one member's update number `count` (0 for the first update).

    Args:
      schedule: "constant", "cosine", "warmup_cosine", "exponential" or "onecycle"
        (static: it picks the code).
      count: () the number of updates this member has applied so far.
      hp: the member's traced hyperparameters, each ().
      steps_per_epoch: minibatches per epoch (static).
      total_steps: () the member's epochs times steps_per_epoch.

    Returns:
      () float32: the equivalent of `optax.<schedule>(...)(count)`:
        cosine: cosine_decay_schedule(lr, total_steps, alpha=final_lr_fraction);
        warmup_cosine: warmup_cosine_decay_schedule(0, lr, floor(warmup_fraction * total_steps),
          total_steps, end_value=final_lr_fraction * lr);
        exponential: exponential_decay(lr, transition_steps=steps_per_epoch, decay_rate);
        onecycle: cosine_onecycle_schedule(total_steps, lr, pct_start=warmup_fraction).
    """
    lr = hp["learning_rate"]
    count = jnp.asarray(count, jnp.float32)
    total = jnp.asarray(total_steps, jnp.float32)
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return _cosine_decay(lr, count, total, hp["final_lr_fraction"])
    if schedule == "warmup_cosine":
        warmup = jnp.floor(hp["warmup_fraction"] * total)
        rising = lr * count / jnp.maximum(warmup, 1.0)
        falling = _cosine_decay(lr, count - warmup, total - warmup, hp["final_lr_fraction"])
        return jnp.where(count < warmup, rising, falling)
    if schedule == "exponential":
        return lr * hp["decay_rate"] ** (count / steps_per_epoch)
    if schedule == "onecycle":
        start = lr / ONECYCLE_DIV_FACTOR
        end = start / ONECYCLE_FINAL_DIV_FACTOR
        turn = jnp.floor(hp["warmup_fraction"] * total)
        rising = _cosine_interpolate(start, lr, count / jnp.maximum(turn, 1.0))
        falling = _cosine_interpolate(lr, end, (count - turn) / jnp.maximum(total - turn, 1.0))
        return jnp.where(count < turn, rising, jnp.where(count < total, falling, end))
    raise ValueError(f"schedule={schedule!r} is not known")
