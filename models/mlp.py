"""A multilayer perceptron whose dropout rate is data, not a constant.

The sweep vmaps one member's forward pass over the population, so every
hyperparameter that can differ between members must be an argument of
`__call__` (a traced array), never a module attribute. The module's
attributes (`hidden`, `activation`, `outputs`) fix the shapes and so belong
to the structure key: members that differ there train in different programs.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "elu": nn.elu,
    "leaky_relu": nn.leaky_relu,
    "selu": nn.selu,
    "softplus": nn.softplus,
}


def dropout(x: jax.Array, rate: jax.Array, key: jax.Array) -> jax.Array:
    """Inverted dropout with a traced `rate` in [0, 1).

    `rate == 0` returns `x` unchanged bit for bit: `bernoulli(key, 1.0)` keeps
    every unit (uniform samples lie in [0, 1)) and `x / 1.0 == x`.
    """
    keep_prob = 1.0 - rate
    keep = jax.random.bernoulli(key, keep_prob, x.shape)
    return jnp.where(keep, x / keep_prob, jnp.zeros_like(x))


class Dense(nn.Module):
    """`flax.linen.Dense`'s parameters (kernel (in, out), lecun-normal; bias (out,), zeros) applied to
    activations laid out features first: (in, batch) -> (out, batch).

    Under `jax.vmap` over a population whose kernels are stored (trials, out, in)
    (`sweeps.engine.network.stored`), every product is then one (trials * out, in) x (in, batch)
    matrix product, and its weight gradient comes out as (trials * out, in): no transposes in the
    step (benchmarks/README.md, "Issue 13"). Same parameters and initial values as `nn.Dense`; outputs
    equal to float rounding (tests/test_hparams.py).
    """

    features: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (h.shape[0], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return jnp.dot(kernel.T, h) + bias[:, None]


class MLP(nn.Module):
    """Dense layers with one activation, dropout after each hidden layer; the parameter tree of a
    stack of `nn.Dense` (`Dense_0`, `Dense_1`, ...), computed features first (`Dense`).

    Attributes:
      hidden: widths of the hidden layers, e.g. `(64,)` for the lesson's model.
      activation: a name in `ACTIVATIONS`.
      outputs: width of the head; the engine sets it from the task (1 logit for
        binary, K logits for multiclass, 1 value for regression).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = MLP(hidden=(64,), outputs=1)
      >>> params = model.init(jax.random.key(0), jnp.zeros((1, 45)))
      >>> model.apply(params, jnp.zeros((32, 45))).shape
      (32, 1)
    """

    hidden: tuple[int, ...] = (64,)
    activation: str = "relu"
    outputs: int = 1

    def __post_init__(self):
        # Flax modules are dataclasses: check the structure before anything traces.
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
        if not all(w >= 1 for w in self.hidden):
            raise ValueError(f"hidden widths must be >= 1, but got hidden={self.hidden}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} is not known; choose one of {sorted(ACTIVATIONS)}")
        if self.outputs < 1:
            raise ValueError(f"outputs must be >= 1, but got outputs={self.outputs}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, dropout_rate: jax.Array | float = 0.0, deterministic: bool = True) -> jax.Array:
        """Maps `x` of shape (batch, features) to (batch, outputs).

        With `deterministic=False` the caller passes a `'dropout'` rng
        (`apply(..., rngs={"dropout": key})`).
        """
        act = ACTIVATIONS[self.activation]
        h = x.T  # features first through the layers (`Dense`), back to (batch, outputs) at the end
        for layer, width in enumerate(self.hidden):
            h = act(Dense(width, name=f"Dense_{layer}")(h))
            if not deterministic:
                h = dropout(h, dropout_rate, self.make_rng("dropout"))
        return Dense(self.outputs, name=f"Dense_{len(self.hidden)}")(h).T
