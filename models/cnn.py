"""A small convolutional network of images, for sweeps of your own model (scikit-learn's 8x8 digits, say).

Every attribute is an int or a tuple of ints: they fix the shapes (one compiled program per value, as the
MLP's `hidden` does), and they are what a kept model records (config.json, models.json) and what
`sweeps.load_model` and `[model.args]` of a config file rebuild it from.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class Conv3x3(nn.Module):
    """`nn.Conv(features, (3, 3))` ('SAME' padding, stride 1): the same parameters (kernel (3, 3, in, out),
    lecun-normal; bias (out,), zeros) and outputs equal to float rounding, computed as one matrix product of
    the nine shifted copies of the input (im2col).

    Under `jax.vmap` over a population, a convolution whose kernel differs per member becomes one grouped
    convolution (`feature_group_count` = members), which XLA's CPU backend runs slowly: an epoch of 8 members
    of `CNN()` on the digits (1,437 images, batch 32) took 41.7 s with `nn.Conv` and `nn.max_pool`, 2.2 s
    with this convolution and 1.0 s with `max_pool_2x2` too (a plain jax.vmap/lax.scan epoch with optax's
    Adam, 2-core development machine under other jobs' load). Here it is a batched matrix product, and the
    shifted copies of the shared first input are made once for every member.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
      >>> params = Conv3x3(4).init(jax.random.key(0), x)
      >>> ours, flax_conv = Conv3x3(4).apply(params, x), nn.Conv(4, (3, 3)).apply(params, x)
      >>> bool(np.allclose(ours, flax_conv, atol=1e-5))
      True
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        height, width = x.shape[-3:-1]
        padded = jnp.pad(x, ((0, 0),) * (x.ndim - 3) + ((1, 1), (1, 1), (0, 0)))
        shifted = [padded[..., i : i + height, j : j + width, :] for i in range(3) for j in range(3)]
        out = jnp.concatenate(shifted, axis=-1) @ kernel.reshape(9 * channels, self.features)
        return out + bias.reshape((1,) * (out.ndim - 1) + bias.shape)  # explicit: no silent rank promotion


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """`nn.max_pool(x, (2, 2), strides=(2, 2))` of (batch, height, width, channels) as a reshape and a max (an odd
    last row or column is dropped, as there): its gradient is a select, not XLA's slower select-and-scatter."""
    batch, height, width, channels = x.shape
    x = x[:, : height // 2 * 2, : width // 2 * 2, :]
    return x.reshape(batch, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))


class CNN(nn.Module):
    """3x3 convolutions with ReLU, one 2x2 max pooling, a dense layer with ReLU and a linear head.

    The convolutions are `nn.Conv(width, (3, 3))` computed as matrix products (`Conv3x3`: same parameters,
    outputs equal to float rounding), which a vmapped population trains far faster on a CPU.

    Takes images (batch, height, width, channels), e.g. (batch, 8, 8, 1), and returns one logit per class
    (batch, classes). The convolutions keep the image size ('SAME' padding); the pooling halves it.

    Attributes:
      channels: the output channels of each convolution, e.g. `(16, 32)` for two.
      dense: the width of the dense layer between the convolutions and the head.
      classes: the head's width: one logit per class (1 for a binary task).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = CNN(channels=(16, 32), dense=64, classes=10)
      >>> params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
      >>> model.apply(params, jnp.zeros((5, 8, 8, 1))).shape
      (5, 10)
      >>> model == CNN(channels=[16, 32])  # a list (JSON, TOML) becomes the tuple
      True

      A sweep of 64 learning rates (examples/digits_cnn.py on scikit-learn's digits):

      >>> import sweeps  # doctest: +SKIP
      >>> data = sweeps.Dataset.from_arrays(x, y, task="multiclass")  # x: (rows, 8, 8, 1)  # doctest: +SKIP
      >>> sweeps.run(data, model=CNN(), space={"learning_rate": sweeps.space.loguniform(1e-4, 1e-1)},
      ...            strategy=sweeps.Grid(n=64), epochs=10)  # doctest: +SKIP
    """

    channels: tuple[int, ...] = (16, 32)
    dense: int = 64
    classes: int = 10

    def __post_init__(self):
        # Flax modules are hashed (the engine's structure key): a list from JSON or TOML becomes a tuple.
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or not all(c >= 1 for c in self.channels):
            raise ValueError(f"channels must be one or more widths >= 1, like (16, 32), but got {self.channels}")
        for name in ("dense", "classes"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, but got {name}={value!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """(batch, height, width, channels) -> (batch, classes); `train` is unused (no dropout or batch norm)."""
        h = x
        for layer, width in enumerate(self.channels):
            h = nn.relu(Conv3x3(width, name=f"Conv_{layer}")(h))  # nn.Conv's parameter names and values
        h = max_pool_2x2(h)
        h = nn.relu(nn.Dense(self.dense)(h.reshape(h.shape[0], -1)))
        return nn.Dense(self.classes)(h)
