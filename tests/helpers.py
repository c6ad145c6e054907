"""Test helpers shared by the test modules: small data sets, JAX's compile log, training alone."""

from __future__ import annotations

import contextlib
import functools

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

import sweeps
from models import MLP, loss_fn
from sweeps.driver.compiling import BACKEND_COMPILE_EVENT
from sweeps.engine import batch_indices, keys
from sweeps.engine.compiler import compiler_options
from sweeps.engine.hparams import HPARAMS


def synthetic(task: str, rows: int = 600, features: int = 8, classes: int = 3, seed: int = 0) -> sweeps.Dataset:
    """A learnable data set of `rows` rows, 80/20 split, built with numpy."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=(features, classes))
    logits = x @ w + 0.3 * rng.normal(size=(rows, classes))
    if task == "binary":
        y = (logits[:, 0] > 0).astype(np.float32)
    elif task == "multiclass":
        y = logits.argmax(1).astype(np.int32)
    else:
        y = logits[:, 0].astype(np.float32)
    cut = int(rows * 0.8)
    return sweeps.Dataset.from_arrays(x[:cut], y[:cut], x[cut:], y[cut:], task=task)


class Compilations(list):
    """Names of the programs XLA compiled, e.g. 'jit(train_epoch)', in order."""

    def count(self, name: str | None = None) -> int:  # noqa: D102 - list.count with a default
        return len(self) if name is None else sum(1 for n in self if n == name)


@contextlib.contextmanager
def log_compilations(fresh: bool = False):
    """Collects the compilations JAX reports while open, like optax's test helper, from every thread.

    `fresh=True` first empties JAX's in-memory caches, for a test that counts how many programs a sweep builds:
    tests share structures to save compiles, so without it the count would depend on what other tests on the
    same worker built before. A program then loaded from the session's disk cache (conftest) still counts: JAX
    reports it as a compilation.

    JAX's compile events (`jax.monitoring`, the backend compile duration with the function's name)
    rather than `jax.log_compiles`, whose switch is per thread: the sweep loop compiles the next
    structure's programs in a background thread.

    Examples:
      with log_compilations() as compiled:
          sweeps.run(...)
      assert compiled.count("jit(train_epoch)") == 0
    """
    if fresh:
        jax.clear_caches()
    compiled = Compilations()

    def listener(event, duration, **kwargs):
        if event == BACKEND_COMPILE_EVENT:
            compiled.append(str(kwargs.get("fun_name", "?")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiled
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


EPOCH = "jit(train_epoch)"


class Stop(Exception):
    """Stands for a crash at a chosen checkpoint."""


def crash_after_saves(monkeypatch, count):
    """The next run raises Stop right after its `count`-th checkpoint is on disk."""
    from sweeps.driver import checkpoints

    original, saves = checkpoints.Checkpoints.save, []

    def save(self, snapshot):
        step = original(self, snapshot)
        saves.append(step)
        if len(saves) == count:
            self.wait()
            raise Stop()
        return step

    monkeypatch.setattr(checkpoints.Checkpoints, "save", save)
    return lambda: monkeypatch.setattr(checkpoints.Checkpoints, "save", original)


def optax_schedule(name, lr, warmup, decay, final, epochs, steps_per_epoch):
    """optax's own schedule for one member's values."""
    total = epochs * steps_per_epoch
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, total, alpha=final)
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, int(warmup * total), total, end_value=final * lr)
    if name == "exponential":
        return optax.exponential_decay(lr, transition_steps=steps_per_epoch, decay_rate=decay)
    if name == "onecycle":
        return optax.cosine_onecycle_schedule(total, lr, pct_start=warmup)
    raise AssertionError(name)


def reference_optimizer(p, schedule):
    """The member's optimizer, built by optax alone from its concrete values."""
    family = p["optimizer"]
    opt = {
        "sgd": lambda: optax.sgd(schedule),
        "momentum": lambda: optax.sgd(schedule, momentum=p["momentum"]),
        "nesterov": lambda: optax.sgd(schedule, momentum=p["momentum"], nesterov=True),
        "adam": lambda: optax.adam(schedule, b1=p["b1"], b2=p["b2"], eps=p["eps"]),
        "adamw": lambda: optax.adamw(schedule, b1=p["b1"], b2=p["b2"], eps=p["eps"], weight_decay=p["weight_decay"]),
        "rmsprop": lambda: optax.rmsprop(schedule, decay=0.9, eps=p["eps"]),
        "adagrad": lambda: optax.adagrad(schedule, eps=p["eps"]),
    }[family]()
    if p["clip_norm"] is not None:
        opt = optax.chain(optax.clip_by_global_norm(p["clip_norm"]), opt)
    return opt


def train_alone(data, p, key_index, seed, epochs=None, first_epoch=0, module=None, loss=None):
    """Reference: one trial with plain Flax + optax, the same init key, dropout keys and minibatch order.

    Args:
      module: a user's Flax Linen module, or what builds an NNX module from rngs (its `__call__` takes `train`
        and its call hyperparameters, the names of `p` the engine does not know; an NNX one takes its dropout
        key as `rngs`), None for the built-in MLP.
      p: the trial's resolved hyperparameters.
      key_index: the number its keys derive from (`keys.init_keys(seed, [key_index])`).
      epochs: epochs to train (default p["epochs"]).
      first_epoch: the population epoch it starts at (a recycled slot): its minibatch orders are
        those of population epochs first_epoch, first_epoch + 1, ...
      loss: a user's per-example loss `(outputs, y) -> (batch,)`, None for the task's (`models.loss_fn`).
    """
    per_example = loss_fn(data.task) if loss is None else loss
    epochs = p["epochs"] if epochs is None else epochs
    own = {name: value for name, value in p.items() if name not in HPARAMS}  # the module's call hyperparameters
    model = MLP(hidden=p["hidden"], activation=p["activation"], outputs=data.n_outputs) if module is None else module
    init_key, rows = keys.init_keys(seed, np.array([key_index]))[0], jnp.zeros((1, *data.input_shape))
    if isinstance(module, flax.linen.Module) or module is None:
        tree = model.init(init_key, rows)["params"] if module is None else module.init(init_key, rows, **own)["params"]
    else:  # NNX: the member built from its key, its parameters as a plain dict; merged again for every call
        graphdef, param_state = nnx.split(module(rngs=nnx.Rngs(init_key)), nnx.Param)
        tree = nnx.to_pure_dict(param_state)

        def call(tree, x, rngs):
            copy = jax.tree.map(lambda leaf: leaf, param_state)
            nnx.replace_by_pure_dict(copy, tree)
            return nnx.merge(graphdef, copy)(x, train=True, rngs=rngs, **own)

    tree = jax.tree.map(lambda w: w * p["init_scale"], tree)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    steps_per_epoch = -(-len(x) // p["batch_size"])
    schedule = optax_schedule(
        p["schedule"],
        p["learning_rate"],
        p["warmup_fraction"],
        p["decay_rate"],
        p["final_lr_fraction"],
        p["epochs"],
        steps_per_epoch,
    )
    opt = reference_optimizer(p, schedule)
    state = opt.init(tree)
    dropout_key = keys.dropout_keys(seed, np.array([key_index]))[0]

    # compiled with the engine's compiler options (on a CPU: LLVM at -O1, XLA's elemental emitters), which change
    # no float32 operation: about 40% less compile time per reference, the same largest differences (1.8e-6)
    @functools.partial(jax.jit, compiler_options=compiler_options(jax.default_backend()))
    def step(tree, state, xb, yb, wb, t):
        def loss(tree):
            rngs = {"dropout": jax.random.fold_in(dropout_key, t)}
            if module is None:
                out = model.apply({"params": tree}, xb, p["dropout"], deterministic=p["dropout"] == 0, rngs=rngs)
            elif isinstance(module, flax.linen.Module):
                out = module.apply({"params": tree}, xb, train=True, **own, rngs=rngs)
            else:
                out = call(tree, xb, rngs["dropout"])
            data_loss = jnp.sum(per_example(out, yb) * wb) / jnp.sum(wb)
            kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree) if path[-1].key == "kernel"]
            return data_loss + p["l2"] * sum(jnp.sum(k**2) for k in kernels)

        updates, state = opt.update(jax.grad(loss)(tree), state, tree)
        return optax.apply_updates(tree, updates), state

    t = 0
    for epoch in range(epochs):
        order_key = keys.batch_order_key(seed, first_epoch + epoch)
        indices, weights = batch_indices(order_key, len(x), p["batch_size"])
        for idx, w in zip(indices, weights):
            tree, state = step(tree, state, x[idx], y[idx], w, t)
            t += 1
    return np.asarray(ravel_pytree(tree)[0])


def device_sweep(**overrides) -> dict:
    """`sweeps.run` arguments of the device tests: 10 trials in two structures of 5 (padded to 8 on 8 devices; not
    fused, unless `fuse=True` is among the overrides), learning rates 1e-4 to 1e-1, early stopping; fast on a CPU."""
    from sweeps import space

    return {
        "space": {"learning_rate": space.loguniform(1e-4, 1e-1), "batch_size": [16, 32]},
        "strategy": sweeps.Grid(n=5),
        "epochs": 3,
        "early_stopping": {"patience": 2},
        "fuse": False,
        **overrides,
    }


def assert_same_table(a, b, lr_max: float = 1e-2, atol: float = 1e-5) -> None:
    """Two sweeps' tables agree: the same trials, hyperparameters and states; metrics within `atol` and the
    same epochs for every trial with a learning rate up to `lr_max` (above it training is chaotic)."""
    import pandas as pd

    assert list(a.columns) == list(b.columns)
    exact = ["number", "config", "seed", "state"] + [c for c in a.columns if c.startswith("params_")]
    pd.testing.assert_frame_equal(a[exact].reset_index(drop=True), b[exact].reset_index(drop=True))
    calm = (a["params_learning_rate"] <= lr_max).to_numpy()
    assert calm.any()
    for column in ("epochs", "stopped_early", "best_epoch"):
        np.testing.assert_array_equal(a[column][calm], b[column][calm], err_msg=column)
    metrics = [c for c in a.columns if c == "value" or (c.startswith(("final_", "best_")) and c != "best_epoch")]
    for column in metrics:
        np.testing.assert_allclose(a[column][calm], b[column][calm], rtol=0, atol=atol, err_msg=column)
