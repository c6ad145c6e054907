"""A multilayer perceptron whose dropout rate is data, not a constant.

The sweep vmaps one member's forward pass over the population, so every
hyperparameter that can differ between members must be an argument of
`__call__` (a traced array), never a module attribute. The module's
attributes (`hidden`, `activation`, `outputs`) fix the shapes and so belong
to the structure key; members of different widths and depths may still train
in one program, padded to the widest and masked (`MLP`'s `min_depth`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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
TRUNCATED_STD = 0.87962566103423978  # standard deviation of a standard normal truncated to [-2, 2]
HEAD = 2**31 - 1  # the head's key index among the layers (`MLP`): a member's head is drawn alike at any depth


def dropout(x: jax.Array, rate: jax.Array, key: jax.Array) -> jax.Array:
    """Inverted dropout with a traced `rate` in [0, 1).

    `rate == 0` returns `x` unchanged bit for bit: `bernoulli(key, 1.0)` keeps
    every unit (uniform samples lie in [0, 1)) and `x / 1.0 == x`.
    """
    keep_prob = 1.0 - rate
    keep = jax.random.bernoulli(key, keep_prob, x.shape)
    # a float32 rate would promote bfloat16 activations (mixed precision): scaled in float32, kept in x's dtype
    return jnp.where(keep, x / keep_prob, jnp.zeros_like(x)).astype(x.dtype)


class Dense(nn.Module):
    """A dense layer's parameters (kernel (in, out), bias (out,), zeros) applied to activations laid out features
    first: (in, batch) -> (out, batch).

    Under `jax.vmap` over a population whose kernels are stored (trials, out, in)
    (`sweeps.engine.network.stored`), every product is then one (trials * out, in) x (in, batch)
    matrix product, and its weight gradient comes out as (trials * out, in): no transposes in the
    step (benchmarks/README.md, "Issue 13"). The parameters of `nn.Dense`; outputs equal to float rounding
    (tests/test_hparams.py). The kernel is drawn by `lecun_rows` from the key its `MLP` gives it.
    """

    features: int

    @nn.compact
    def __call__(self, h: jax.Array, key: jax.Array | None, real: tuple[Any, Any] | None = None) -> jax.Array:
        """`key`: the kernel's initialisation key (None when applying); `real`: (fan-in, outputs) of the member
        this padded layer holds (None: the layer's own)."""
        # applying, flax only checks the init's shapes (abstractly): any key does
        drawn = jax.random.PRNGKey(0) if key is None else key
        kernel = self.param("kernel", lambda _, shape: lecun_rows(drawn, shape, real), (h.shape[0], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return jnp.dot(kernel.T, h) + bias[:, None]


def lecun_rows(key: jax.Array, shape: tuple[int, int], real: tuple[Any, Any] | None = None) -> jax.Array:
    """A (in, out) kernel drawn as flax's `lecun_normal` draws one (truncated normal, standard deviation
    sqrt(1 / fan-in) / .8796), each output unit's column from its own key `fold_in(key, unit)`.

    Keyed by unit, a value depends on the key, its unit and its input position only, never on how wide the
    array is (threefry draws a prefix of a longer array alike: `jax_threefry_partitionable`, JAX's default). A
    member padded into a wider layer (`real`: its fan-in and outputs, traced) therefore starts from exactly
    the values it has alone; its padding is zero.
    """
    fan_in, outputs = shape
    columns = _unit_columns(key, fan_in, outputs)
    real_in, real_out = shape if real is None else real
    kernel = (columns * (jnp.sqrt(1.0 / jnp.maximum(real_in, 1)) / TRUNCATED_STD)).T
    if real is None:
        return kernel
    inside = (jnp.arange(fan_in) < real_in)[:, None] & (jnp.arange(outputs) < real_out)[None, :]
    return jnp.where(inside, kernel, 0.0)


class MLP(nn.Module):
    """Dense layers with one activation, dropout after each hidden layer; the parameter tree of a
    stack of `nn.Dense` (`Dense_0`, `Dense_1`, ...), computed features first (`Dense`).

    One module also trains members of different widths and depths together (`min_depth` set): `hidden` is then
    the padded network, each member passes its own widths (`widths`, zero past its depth), its padded units
    output zero (masked), and a layer past a member's depth passes its input on unchanged, so its head reads its
    last layer. Its parameters start as they would alone (`lecun_rows`), its padding stays zero (nothing reaches
    it: its gradients are exactly zero), and it computes exactly its own network.

    Attributes:
      hidden: widths of the hidden layers, e.g. `(64,)` for the lesson's model.
      activation: a name in `ACTIVATIONS`.
      outputs: width of the head; the engine sets it from the task (1 logit for
        binary, K logits for multiclass, 1 value for regression).
      min_depth: None for one network; for a padded population, the fewest hidden layers a member has (from
        layer `min_depth - 1` on the padded widths are equal, so a skipped layer passes its input on).

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
    min_depth: int | None = None

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
    def __call__(
        self,
        x: jax.Array,
        dropout_rate: jax.Array | float = 0.0,
        deterministic: bool = True,
        widths: jax.Array | None = None,
    ) -> jax.Array:
        """Maps `x` of shape (batch, features) to (batch, outputs).

        With `deterministic=False` the caller passes a `'dropout'` rng
        (`apply(..., rngs={"dropout": key})`). `widths`: (len(hidden),) int, the member's own widths, zero past
        its depth (only with `min_depth`).
        """
        padded = self.min_depth is not None
        if padded != (widths is not None):
            raise ValueError("an MLP with min_depth takes each member's widths, and only such an MLP does")
        base = self.make_rng("params") if self.is_initializing() else None  # every layer's key derives from it
        act = ACTIVATIONS[self.activation]
        h, fan_in = x.T, x.shape[-1]  # features first through the layers (`Dense`), back to (batch, outputs) at the end
        for layer, width in enumerate(self.hidden):
            real = None if widths is None else (fan_in, widths[layer])
            out = act(Dense(width, name=f"Dense_{layer}")(h, _layer_key(base, layer), real))
            if widths is not None:
                out = jnp.where((jnp.arange(width) < widths[layer])[:, None], out, 0.0)
            if not deterministic:
                out = dropout(out, dropout_rate, self.make_rng("dropout"))
            if widths is None or layer < self.min_depth:
                h, fan_in = out, (width if widths is None else widths[layer])
            else:  # past a member's depth the layer is skipped: its input goes on to the head
                h = jnp.where(widths[layer] > 0, out, h)
                fan_in = jnp.where(widths[layer] > 0, widths[layer], fan_in)
        real = None if widths is None else (fan_in, self.outputs)
        return Dense(self.outputs, name=f"Dense_{len(self.hidden)}")(h, _layer_key(base, HEAD), real).T


@functools.partial(jax.jit, static_argnums=(1, 2))  # one small program per shape, not a few hundred eager operations
def _unit_columns(key: jax.Array, fan_in: int, outputs: int) -> jax.Array:
    """(outputs, fan_in) standard normals truncated to [-2, 2], row `unit` drawn from `fold_in(key, unit)`."""
    units = jnp.arange(outputs, dtype=jnp.uint32)
    return jax.vmap(lambda unit: jax.random.truncated_normal(jax.random.fold_in(key, unit), -2.0, 2.0, (fan_in,)))(
        units
    )


def _layer_key(base: jax.Array | None, layer: int) -> jax.Array | None:
    return None if base is None else jax.random.fold_in(base, layer)


def member_params(params: Mapping[str, Any], widths: Any) -> dict[str, Any]:
    """One member's own parameter tree (flax's layout, numpy or jax arrays) out of a padded MLP's: its widths
    `widths` (zero past its depth, as `MLP` takes them) cut out, its head renamed after its depth."""
    depth = int(np.count_nonzero(np.asarray(widths)))
    own = [int(w) for w in np.asarray(widths)[:depth]]
    fan_ins = [params["Dense_0"]["kernel"].shape[0], *own]
    tree = {}
    for layer, width in enumerate(own):
        kernel, bias = params[f"Dense_{layer}"]["kernel"], params[f"Dense_{layer}"]["bias"]
        tree[f"Dense_{layer}"] = {"kernel": kernel[: fan_ins[layer], :width], "bias": bias[:width]}
    head = params[f"Dense_{len(params) - 1}"]
    tree[f"Dense_{depth}"] = {"kernel": head["kernel"][: fan_ins[depth]], "bias": head["bias"]}
    return tree
