"""Where the learning rate is applied: the registry of optimizers, built from traced values.

One entry per optimizer family: its name, the traced hyperparameters it reads
and its optax constructor. The registry serves the checks (`hparams`), the
memory estimate (`state_size`, derived with `jax.eval_shape`) and the
compiled step alike.

`make_optimizer` is called inside the compiled, vmapped step with one
member's hyperparameters (scalars traced from the population state) and the
learning rate its schedule gives at this step. The optimizer's state (moments,
counts) does not depend on those values, so one `init` serves every member
and changing a value between epochs (population based training) is an update
of the population's `hparams`, not a rebuild.

Examples:
  >>> from sweeps.engine.optimizers import OPTIMIZERS, state_size
  >>> OPTIMIZERS["adamw"].reads
  ('b1', 'b2', 'eps', 'weight_decay')
  >>> state_size("adam", clip=False, n_params=10)  # two moments of 10 and a step count
  21
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

RMSPROP_DECAY = 0.9


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """One optimizer family.

    Attributes:
      name: the value of the `optimizer` hyperparameter.
      reads: the traced hyperparameters it reads besides `learning_rate` (and `clip_norm`).
      build: (hp: name -> () array, learning_rate: () array) -> optax.GradientTransformation.
    """

    name: str
    reads: tuple[str, ...]
    build: Callable[[dict[str, jax.Array], jax.Array], optax.GradientTransformation]


_FAMILIES = (
    Optimizer("sgd", (), lambda hp, lr: optax.sgd(lr)),
    Optimizer("momentum", ("momentum",), lambda hp, lr: optax.sgd(lr, momentum=hp["momentum"])),
    Optimizer("nesterov", ("momentum",), lambda hp, lr: optax.sgd(lr, momentum=hp["momentum"], nesterov=True)),
    Optimizer("adam", ("b1", "b2", "eps"), lambda hp, lr: optax.adam(lr, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])),
    Optimizer(
        "adamw",
        ("b1", "b2", "eps", "weight_decay"),
        lambda hp, lr: optax.adamw(lr, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], weight_decay=hp["weight_decay"]),
    ),
    Optimizer("rmsprop", ("eps",), lambda hp, lr: optax.rmsprop(lr, decay=RMSPROP_DECAY, eps=hp["eps"])),
    Optimizer("adagrad", ("eps",), lambda hp, lr: optax.adagrad(lr, eps=hp["eps"])),
)
OPTIMIZERS: dict[str, Optimizer] = {family.name: family for family in _FAMILIES}


def make_optimizer(
    family: str, hp: dict[str, jax.Array], learning_rate: jax.Array, clip: bool
) -> optax.GradientTransformation:
    """One member's optax optimizer.

    Args:
      family: a name in `OPTIMIZERS` (static).
      hp: the member's traced hyperparameters, each a () array (see `OPTIMIZERS[family].reads`;
        `clip_norm` when `clip`).
      learning_rate: () the rate for this step.
      clip: whether the structure clips gradients by their global norm (static).
    """
    if family not in OPTIMIZERS:
        raise ValueError(f"optimizer={family!r} is not known; choose one of {list(OPTIMIZERS)}")
    opt = OPTIMIZERS[family].build(hp, learning_rate)
    if clip:
        opt = optax.chain(optax.clip_by_global_norm(hp["clip_norm"]), opt)
    return opt


@functools.cache
def state_size(family: str, clip: bool, n_params: int) -> int:
    """Elements in one member's optimizer state for `n_params` parameters, from `jax.eval_shape`.

    The optimizer is built from the hyperparameters its registry entry reads, so this module needs
    no other registry (`hparams` imports this one, never the other way).
    """
    names = ("learning_rate", *(("clip_norm",) if clip else ()), *OPTIMIZERS[family].reads)
    hp = {name: jax.ShapeDtypeStruct((), jnp.float32) for name in names}
    params = jax.ShapeDtypeStruct((n_params,), jnp.float32)
    state = jax.eval_shape(lambda hp, p: make_optimizer(family, hp, hp["learning_rate"], clip).init(p), hp, params)
    return int(sum(leaf.size for leaf in jax.tree.leaves(state)))
