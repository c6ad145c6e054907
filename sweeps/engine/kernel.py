"""The member step fused across the epoch: one Pallas kernel trains a block of members through a whole epoch.

The XLA path (`sweeps.engine.epoch.minibatch_step` under `lax.scan`) reads and writes every member's parameters,
gradient and optimizer state in device memory at every step: on a GPU an unfused Adam step of the lesson's
member moves about 84 kB, which bounds the epoch by the memory's bandwidth (benchmarks/README.md, "Roofline").
Here one program instance of a Pallas kernel takes a block of members, keeps their parameters and optimizer
state on chip (registers, spilled to on-chip memory) for the whole scan over the epoch's minibatches, and
writes them back once. The minibatch is shared by every member (design item 4), gathered once per epoch.

What runs inside is the engine's own code, not a copy: each member's loss and gradient are `member_loss` of the
built-in MLP and its update is `member_apply` (the optax optimizer, the schedule, the divergence and activity
masks), so a member trained by the kernel is the member the XLA path trains, to float rounding (the order of
a matrix product's sums can differ). The kernel's GPU backend (Triton) takes arrays whose every dimension is
a power of two: the network is the padded `MLP` (`min_depth`, each member's own widths masking the rest),
features, widths and outputs padded with zeros that stay zero (nothing reaches them: their gradients are
exactly zero), and padded logits masked out of the loss (`padded_loss`).

`unsupported(structure)` says why a structure trains on the XLA path instead (dropout, gradient accumulation,
a user's model or loss, ...); the XLA path stays the reference and the fallback. On a CPU the kernel runs in
Pallas's interpreter (`interpret=True`), which is how its equivalence to the XLA path is tested without a GPU
(tests/test_kernel.py); `lowers_for_gpu` lowers it for CUDA on any machine.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from models.losses import loss_fn
from sweeps.engine.member import StepCarry, member_apply, member_loss
from sweeps.engine.optimizers import OPTIMIZERS, make_optimizer
from sweeps.engine.structure import Structure

KERNELS = ("xla", "pallas")  # the `kernel` setting: the epoch's steps on the XLA path, or in this kernel
MIN_DOT = 16  # Triton's smallest matrix-product dimension
MASKED_LOGIT = -1e30  # a padded class's logit: exp() of it is 0, so it takes no probability and no gradient


class KernelPlan(NamedTuple):
    """How a structure's epoch runs in the kernel (hashable: part of the compiled epoch's key).

    Attributes:
      block: members per program instance (a power of two).
      interpret: run in Pallas's interpreter (any backend; how a CPU runs it).
      warps: Triton's warps per program instance (more warps: fewer registers per thread for the same state).
    """

    block: int = 1
    interpret: bool = False
    warps: int = 4


def unsupported(structure: Structure) -> str | None:
    """Why `structure`'s members cannot train in the kernel (None: they can).

    The kernel trains the built-in MLP without dropout (its masks would need the XLA path's random bits inside
    the kernel), one update per minibatch (no gradient accumulation), on the task's own loss.
    """
    if structure.module is not None:
        return "a user's model trains on the XLA path"
    if structure.loss is not None:
        return "a user's loss trains on the XLA path"
    if structure.dropout:
        return "dropout draws its masks on the XLA path"
    if structure.accumulate > 1:
        return "members that accumulate gradients over micro-batches train on the XLA path"
    if structure.clip:
        return "gradient clipping (optax's clip_by_global_norm copies an array, which the GPU backend lacks)"
    return None


def kernel_plan(setting: str, structure: Structure, devices: int, platform: str) -> tuple[KernelPlan | None, str]:
    """Where `structure`'s steps run under the `kernel` setting: (the kernel's plan, or None for the XLA path; why
    the kernel was not taken, "" where it was or was not asked for).

    The kernel takes one device's population (it is not partitioned over a mesh); off a GPU it is interpreted.
    """
    if setting == "xla":
        return None, ""
    reason = unsupported(structure) or ("" if devices == 1 else "a population sharded over several devices")
    if reason:
        return None, reason
    return KernelPlan(block=1, interpret=platform != "gpu"), ""


def power_of_two(n: int, least: int = 1) -> int:
    """The smallest power of two >= max(n, least)."""
    n = max(int(n), least)
    return 1 << (n - 1).bit_length()


@functools.cache
def padded_loss(task: str, n_outputs: int):
    """The task's per-example loss on outputs padded past `n_outputs` (batch, padded): binary and regression
    read the first output as the task's loss does; multiclass masks the padded logits out of the softmax
    (the same cross-entropy as `optax.softmax_cross_entropy_with_integer_labels`, with a one-hot instead of a
    gather, which the GPU backend lacks)."""
    if task != "multiclass":
        return loss_fn(task)

    def softmax_cross_entropy(outputs: jax.Array, y: jax.Array) -> jax.Array:
        classes = jnp.arange(outputs.shape[-1])[None, :]
        log_p = jax.nn.log_softmax(jnp.where(classes < n_outputs, outputs, MASKED_LOGIT), axis=-1)
        return -jnp.sum(jnp.where(classes == y[:, None].astype(jnp.int32), log_p, 0.0), axis=-1)

    return softmax_cross_entropy


@functools.cache
def padded_structure(structure: Structure) -> Structure:
    """The structure the kernel trains: the built-in MLP padded to powers of two (features, every hidden
    width, outputs), as a padded `MLP` whose members pass their own widths (`min_depth`), on the task's loss
    with padded logits masked (`padded_loss`)."""
    return dataclasses.replace(
        structure,
        hidden=tuple(power_of_two(width, MIN_DOT) for width in structure.hidden),
        n_features=power_of_two(structure.n_features, MIN_DOT),
        n_outputs=power_of_two(structure.n_outputs, MIN_DOT),
        min_depth=structure.min_depth or len(structure.hidden),
        loss=padded_loss(structure.task, structure.n_outputs),
    )


def pad_to(tree: Any, shapes: Any) -> Any:
    """Each leaf of `tree` padded with zeros at its ends to the shape of the same leaf of `shapes` (the same rank:
    a population's parameters or optimizer state, trial axis first)."""
    return jax.tree.map(lambda leaf, s: jnp.pad(leaf, [(0, p - n) for n, p in zip(leaf.shape, s.shape)]), tree, shapes)


def cut_to(padded: Any, like: Any) -> Any:
    """`pad_to`'s inverse: each leaf cut back to the shape of `like`'s."""
    return jax.tree.map(lambda leaf, own: leaf[tuple(slice(0, n) for n in own.shape)], padded, like)


def member_widths(structure: Structure, hp: dict[str, Any]) -> tuple[Any, ...]:
    """A member's hidden widths as the padded `MLP` takes them: its own (the traced `hidden`, one value a
    layer) in a fused population, else the structure's."""
    if structure.min_depth is None:
        return structure.hidden
    return tuple(hp[f"hidden_{layer}"] for layer in range(len(structure.hidden)))


def kernel_hparams(hparams: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The population's hyperparameters as the kernel reads them: every one (trials,); a fused population's
    widths `hidden` (trials, layers) one (trials,) array a layer (`hidden_0`, ...), since the GPU backend
    takes no array of a length that is not a power of two."""
    flat = {name: value for name, value in hparams.items() if name != "hidden"}
    if "hidden" in hparams:
        flat |= {f"hidden_{layer}": hparams["hidden"][:, layer] for layer in range(hparams["hidden"].shape[1])}
    return flat


def member_step(structure: Structure, padded: Structure, steps: int, hp, state: StepCarry, x, y, w) -> StepCarry:
    """One member's update on one minibatch inside the kernel: `member_loss`'s gradient and `member_apply`, the
    XLA path's step for a member that does not accumulate (`sweeps.engine.epoch.minibatch_step`)."""
    hp = {**hp, "hidden": member_widths(structure, hp)}
    grads, data_loss = jax.grad(lambda p: member_loss(padded, p, hp, x, y, w, None), has_aux=True)(state.params)
    params, opt_state, step, finite = member_apply(
        padded, state.params, state.opt_state, hp, state.step, state.active, grads, data_loss, None, steps
    )
    counted = state.active
    return StepCarry(
        params=params,
        opt_state=opt_state,
        step=step,
        active=state.active & finite,
        diverged=state.diverged | (state.active & ~finite),
        loss_sum=state.loss_sum + jnp.where(counted, data_loss, 0.0),
        loss_steps=state.loss_steps + counted.astype(jnp.int32),
    )


def train_steps(structure: Structure, plan: KernelPlan, carry, hparams: dict[str, jax.Array], x, y, w):
    """Every member's epoch of updates in the kernel: what `lax.scan` of `minibatch_step` over the epoch's
    minibatches computes on the XLA path.

    Args:
      structure: the population's structure (`unsupported(structure)` is None).
      plan: the block of members per program instance, and whether to interpret.
      carry: the `StepCarry` the scan starts from (leaves (trials, ...); no accumulated gradient).
      hparams: name -> (trials,) the members' traced hyperparameters (a fused population's `hidden` (trials,
        layers)).
      x: (steps, batch, features) the epoch's minibatches, gathered; y: (steps, batch); w: (steps, batch) row
        weights (0 for the last minibatch's padding rows).

    Returns:
      The carry the scan ends with.
    """
    padded = padded_structure(structure)
    steps, batch, features = x.shape
    members = carry.step.shape[0]
    blocks = -(-members // plan.block)
    size = blocks * plan.block

    member = jax.eval_shape(padded.network.stored, padded.network.param_shapes())  # one member's, padded
    params = pad_to(carry.params, jax.tree.map(lambda s: jax.ShapeDtypeStruct((members, *s.shape), s.dtype), member))
    opt_state = pad_to(carry.opt_state, jax.eval_shape(jax.vmap(opt_init(padded)), params))
    state = StepCarry(
        params=params,
        opt_state=opt_state,
        step=carry.step,
        active=carry.active.astype(jnp.int32),
        diverged=carry.diverged.astype(jnp.int32),
        loss_sum=carry.loss_sum,
        loss_steps=carry.loss_steps,
    )
    hp = kernel_hparams(hparams)
    # padding members (a population not a multiple of the block) repeat the last member, inactive
    state, hp = jax.tree.map(lambda leaf: _pad_members(leaf, size), (state, hp))
    state = state._replace(active=state.active.at[members:].set(0))
    x = jnp.pad(x, ((0, 0), (0, 0), (0, padded.n_features - features)))

    def block_spec(leaf):
        return pl.BlockSpec((plan.block, *leaf.shape[1:]), lambda i, rank=leaf.ndim: (i,) + (0,) * (rank - 1))

    def whole(leaf):
        return pl.BlockSpec(leaf.shape, lambda i, rank=leaf.ndim: (0,) * rank)

    def kernel(state_ref, hp_ref, x_ref, y_ref, w_ref, *out_ref):  # the outputs come as the fields of a tuple
        epoch_kernel(structure, padded, plan.block, steps, state_ref, hp_ref, x_ref, y_ref, w_ref, StepCarry(*out_ref))

    out = pl.pallas_call(
        kernel,
        out_shape=jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), state),
        grid=(blocks,),
        in_specs=(jax.tree.map(block_spec, state), jax.tree.map(block_spec, hp), whole(x), whole(y), whole(w)),
        out_specs=jax.tree.map(block_spec, state),
        interpret=plan.interpret,
        compiler_params=_gpu_params(plan.warps),
        name="sweepax_member_epoch",
    )(state, hp, x, y, w)
    out = jax.tree.map(lambda leaf: leaf[:members], out)
    return carry._replace(
        params=cut_to(out.params, carry.params),
        opt_state=cut_to(out.opt_state, carry.opt_state),
        step=out.step,
        active=out.active != 0,
        diverged=out.diverged != 0,
        loss_sum=out.loss_sum,
        loss_steps=out.loss_steps,
    )


def epoch_kernel(
    structure: Structure, padded: Structure, block: int, steps: int, state_ref, hp_ref, x_ref, y_ref, w_ref, out_ref
):
    """The kernel: a block of members loaded once, `member_step` for each over every minibatch, stored once."""
    members = [jax.tree.map(lambda ref, m=m: ref[m], state_ref) for m in range(block)]
    hps = [{name: ref[m] for name, ref in hp_ref.items()} for m in range(block)]
    members = [s._replace(active=s.active != 0, diverged=s.diverged != 0) for s in members]

    def minibatch(t, members):
        x, y, w = x_ref[t], y_ref[t], w_ref[t]
        return [member_step(structure, padded, steps, hp, s, x, y, w) for hp, s in zip(hps, members)]

    members = jax.lax.fori_loop(0, steps, minibatch, members)
    for m, s in enumerate(members):
        s = s._replace(active=s.active.astype(jnp.int32), diverged=s.diverged.astype(jnp.int32))
        jax.tree.map(lambda ref, value, m=m: ref.__setitem__(m, value), out_ref, s)


def opt_init(structure: Structure):
    """One member's optimizer `init` (its state's shapes do not depend on the hyperparameters' values)."""
    names = ("learning_rate", "clip_norm", *OPTIMIZERS[structure.optimizer].reads)
    return make_optimizer(
        structure.optimizer, {n: jnp.float32(0.5) for n in names}, jnp.float32(0.1), structure.clip
    ).init


def _pad_members(leaf: jax.Array, size: int) -> jax.Array:
    extra = size - leaf.shape[0]
    if extra == 0:
        return leaf
    return jnp.concatenate([leaf, jnp.repeat(leaf[-1:], extra, axis=0)])


def _gpu_params(warps: int):
    """Triton's settings for the kernel (read only when it is compiled for a GPU)."""
    from jax.experimental.pallas import triton as plt

    return plt.CompilerParams(num_warps=warps, num_stages=1)
