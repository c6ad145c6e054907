"""The work in one member's epoch: FLOPs and bytes, from XLA's cost analysis or counted by hand.

The throughput table turns a rate of model-epochs per second into GFLOP/s and a share of the
machine's matmul peak and copy bandwidth with these counts.

Part of `benchmarks/throughput.py`; never imported by the library.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from workloads import Workload

from sweeps.engine import Population, Split, Structure, epoch_parts, memory
from sweeps.engine import n_params as n_params_of

COST_KEYS = ("flops", "flops_source", "flops_analytic", "bytes", "bytes_source", "bytes_analytic")


def analytic_cost(workload: Workload) -> tuple[float, float]:
    """(FLOPs, bytes) of one member's epoch, counted by hand.

    FLOPs: 2*rows*(in*out) per dense layer forward, x3 for forward + backward
    on every (padded) training row, plus the validation forward. Bytes: each
    step reads and writes the parameters, gradients and Adam's two moments
    once (8 x 4 bytes per parameter) and writes and reads each activation and
    its gradient once; validation reads the parameters and the activations.

    A user's model (`workload.model`) is counted by the same rules, its layers
    read from the jaxpr of one row's forward (`forward_flops`: every matrix
    product and convolution; their outputs are the activations,
    `sweeps.engine.memory.activation_values`).
    """
    data = workload.data
    if workload.model is None:
        widths = workload.widths()
        dense = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        forward, n_params = 2 * dense, dense + sum(widths[1:])  # per row; kernels and biases
        inputs, outputs = widths[0], sum(widths[1:])  # values per row: the input, every layer's output
    else:
        structure = workload.structure()
        forward, n_params = forward_flops(structure), n_params_of(structure)
        inputs, outputs = data.n_features, memory.activation_values(structure)[0]
    rows = workload.steps_per_epoch * workload.batch_size
    n_val = data.n_val
    flops = 3 * rows * forward + n_val * forward
    step_bytes = 32 * n_params + 16 * workload.batch_size * outputs
    val_bytes = 4 * n_params + 4 * n_val * (inputs + outputs)
    return float(flops), float(workload.steps_per_epoch * step_bytes + val_bytes)


def forward_flops(structure: Structure) -> int:
    """FLOPs of one row's forward through one member of `structure`: 2 x the multiply-adds of every matrix product
    and convolution of its forward (`Network.layers`: traced, nothing is computed)."""
    return sum(_layer_flops(eqn) for eqn in structure.network.layers())


def _layer_flops(eqn) -> int:
    """2 x the multiply-adds of one `dot_general` or `conv_general_dilated` equation."""
    out = math.prod(eqn.outvars[0].aval.shape)
    if eqn.primitive.name == "dot_general":
        (contracting, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        return 2 * out * math.prod(lhs[d] for d in contracting)
    if eqn.params["batch_group_count"] != 1:
        raise ValueError("a convolution with batch_group_count > 1 is not counted")
    kernel = eqn.invars[1].aval.shape  # its input features are already per group
    out_features = kernel[eqn.params["dimension_numbers"].rhs_spec[0]]
    return 2 * out * math.prod(kernel) // out_features


def xla_cost(
    workload: Workload, pop: Population, train: Split, val: Split, traffic: bool
) -> tuple[float, float | None]:
    """(FLOPs, bytes accessed or None) of one epoch of `pop`, from XLA's cost analysis.

    XLA counts a loop's body once, so the epoch is costed in parts (`sweeps.engine.epoch_parts`): the
    minibatch step times the steps per epoch, plus one validation forward
    pass over all members and all validation rows. FLOPs come from the
    lowered programs (cheap: no compile; fusion does not change FLOPs).
    With `traffic`, the parts are also compiled for their post-fusion bytes
    accessed; XLA charges a gather with its whole operand, so each step's
    minibatch gather is charged for the rows it reads instead of the whole
    training set.
    """
    steps = workload.steps_per_epoch
    step_fn, forward = epoch_parts(workload.structure(), steps)
    batch = (jnp.zeros(workload.batch_size, jnp.int32), jnp.ones(workload.batch_size, jnp.float32))
    step = jax.jit(step_fn).lower(pop, train, batch)
    evaluation = jax.jit(forward).lower(pop.params, pop.hparams, val.x)
    flops = steps * _analysis(step)["flops"] + _analysis(evaluation)["flops"]
    if not flops > 0:
        raise ValueError("cost analysis reported no FLOPs")
    if not traffic:
        return flops, None
    whole = train.x.nbytes + train.y.nbytes
    rows = workload.batch_size * (train.x.nbytes + train.y.nbytes) / train.x.shape[0]
    step_bytes = _analysis(step.compile())["bytes accessed"] - whole + rows
    return flops, steps * step_bytes + _analysis(evaluation.compile())["bytes accessed"]


def _analysis(stage) -> dict[str, float]:
    analysis = stage.cost_analysis()
    if not analysis and hasattr(stage, "compile"):
        analysis = stage.compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return analysis


def epoch_cost(workload: Workload, pop: Population, train: Split, val: Split, traffic: bool) -> dict[str, Any]:
    """FLOPs and bytes of one member's epoch: XLA's counts where they work, else the analytic ones."""
    flops_a, bytes_a = analytic_cost(workload)
    cost = {"flops_analytic": flops_a, "bytes_analytic": bytes_a}
    try:
        flops, accessed = xla_cost(workload, pop, train, val, traffic)
        cost.update(flops=flops / pop.size, flops_source="xla_cost_analysis")
    except Exception as error:  # an internal API moved, or no cost analysis on this backend
        print(f"note: XLA cost analysis unavailable ({type(error).__name__}: {error}); counting by hand")
        accessed = None
        cost.update(flops=flops_a, flops_source="analytic")
    if accessed is not None:
        cost.update(bytes=accessed / pop.size, bytes_source="xla_cost_analysis (compiled, after fusion)")
    else:
        cost.update(bytes=bytes_a, bytes_source="analytic (minimum traffic)")
    return cost
