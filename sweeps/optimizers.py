"""Where the learning rate is applied: optax optimizers built from traced values.

`make_optimizer` is called inside the compiled, vmapped step with one
member's hyperparameters (scalars traced from the population state) and the
learning rate its schedule gives at this step. The optimizer's state (moments,
counts) does not depend on those values, so one `init` serves every member
and changing a value between epochs (population based training) is an update
of the population's `hparams`, not a rebuild.
"""

from __future__ import annotations

import jax
import optax

RMSPROP_DECAY = 0.9


def make_optimizer(
    family: str, hp: dict[str, jax.Array], learning_rate: jax.Array, clip: bool
) -> optax.GradientTransformation:
    """One member's optax optimizer.

    Args:
      family: "sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop" or "adagrad" (static).
      hp: the member's traced hyperparameters, each a () array: `b1`, `b2`, `eps`
        (adam, adamw; `eps` also rmsprop, adagrad), `weight_decay` (adamw, decoupled),
        `momentum` (momentum, nesterov), `clip_norm` (used when `clip`).
      learning_rate: () the rate for this step.
      clip: whether the structure clips gradients by their global norm (static).
    """
    if family == "sgd":
        opt = optax.sgd(learning_rate)
    elif family == "momentum":
        opt = optax.sgd(learning_rate, momentum=hp["momentum"])
    elif family == "nesterov":
        opt = optax.sgd(learning_rate, momentum=hp["momentum"], nesterov=True)
    elif family == "adam":
        opt = optax.adam(learning_rate, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])
    elif family == "adamw":
        opt = optax.adamw(learning_rate, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], weight_decay=hp["weight_decay"])
    elif family == "rmsprop":
        opt = optax.rmsprop(learning_rate, decay=RMSPROP_DECAY, eps=hp["eps"])
    elif family == "adagrad":
        opt = optax.adagrad(learning_rate, eps=hp["eps"])
    else:
        raise ValueError(f"optimizer={family!r} is not known")
    if clip:
        opt = optax.chain(optax.clip_by_global_norm(hp["clip_norm"]), opt)
    return opt
