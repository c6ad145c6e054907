"""The work in one member's epoch: FLOPs and bytes, from XLA's cost analysis or counted by hand.

The throughput table turns a rate of model-epochs per second into GFLOP/s and a share of the
machine's matmul peak and copy bandwidth with these counts.

The roofline (issue 25) uses counts from the shapes alone, never XLA's (`roofline`): XLA's bytes
accessed include traffic that stays in cache, so its "share of bandwidth" passed 100% on an H200.
The traffic that bounds an *unfused* member step is the optimizer update's
(`unfused_step_bytes`): it reads the parameters, the gradient and the optimizer state and writes
the parameters and the optimizer state, each from and to memory, once per step.

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

WORD = 4  # bytes: float32 parameters, gradients and optimizer state
ROOFLINE_KEYS = (
    "roofline_params",
    "roofline_opt_state_words",
    "unfused_step_words",
    "unfused_step_bytes",
    "unfused_epoch_bytes",
    "roofline_flops",
)
COST_KEYS = ("flops", "flops_source", "flops_analytic", "bytes", "bytes_source", "bytes_analytic", *ROOFLINE_KEYS)


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


def unfused_step_words(structure: Structure) -> int:
    """Words (float32 values) one member's optimizer update moves when it runs unfused, counted from the shapes.

    The update reads the parameters (P), the gradient (P) and the optimizer state (S) and writes the
    parameters (P) and the optimizer state (S): 3P + 2S, with P = `sweeps.engine.n_params(structure)` and
    S = the optimizer's state size from `jax.eval_shape` of its `init` (`state_size`; Adam: 2P + 1, two
    moments and a step count, so 7P + 2 words). Activations, the minibatch and validation are left out:
    for the lesson's member they are under 10% of this at batch 32 (a floor, not a total).

    Examples:
      >>> from sweeps.engine import Structure
      >>> lesson = Structure((64,), "relu", 32, "adam", "constant", False, False, "binary", 45, 1)
      >>> unfused_step_words(lesson)  # P = 45*64 + 64 + 64 + 1 = 3,009: 7P + 2
      21065
    """
    p = n_params_of(structure)
    s = memory.state_size(structure.optimizer, structure.clip, p)
    return 2 * p + p + 2 * s  # parameters read and written, the gradient read, the state read and written


def unfused_step_bytes(structure: Structure) -> int:
    """Bytes one member's unfused optimizer update moves per step: `unfused_step_words` x 4 (float32)."""
    return WORD * unfused_step_words(structure)


def roofline(workload: Workload) -> dict[str, Any]:
    """One member's epoch counted from the shapes, for the roofline: the row fields of `ROOFLINE_KEYS`.

    `unfused_epoch_bytes` is `unfused_step_bytes` x the steps per epoch (ceil(train rows / batch));
    `roofline_flops` is the hand count of `analytic_cost` (forward and backward over the padded training
    rows, the validation forward). For the lesson (45 -> 64 -> 1, Adam, batch 32, 177 steps): P = 3,009,
    21,065 words = 84,260 bytes a step, 14.91 MB and 108.3 MFLOP a model-epoch.
    """
    structure = workload.structure()
    p = n_params_of(structure)
    step_bytes = unfused_step_bytes(structure)
    return {
        "roofline_params": p,
        "roofline_opt_state_words": memory.state_size(structure.optimizer, structure.clip, p),
        "unfused_step_words": step_bytes // WORD,
        "unfused_step_bytes": step_bytes,
        "unfused_epoch_bytes": step_bytes * workload.steps_per_epoch,
        "roofline_flops": analytic_cost(workload)[0],
    }


def roofline_rates(row: dict[str, Any], matmul_gflops: float, copy_gbs: float) -> dict[str, float]:
    """What a row's measured rate means against the machine, by the shapes' counts (`roofline`).

    `unfused_gbs`: model-epochs/s x `unfused_epoch_bytes`, the traffic an unfused step must move;
    `unfused_bandwidth_fraction`: that over the measured copy bandwidth (`machine.memory_bandwidth_gbs`, bytes
    read + written); `roofline_gflops` and `roofline_peak_fraction`: `roofline_flops` x the rate, over the
    measured float32 matmul peak; `unfused_roof_model_epochs_per_s`: copy bandwidth / `unfused_epoch_bytes`, the
    most model-epochs/s an unfused step can reach; `matmul_roof_model_epochs_per_s`: the same bound by FLOPs.

    Examples:
      >>> row = {"model_epochs_per_s": 100.0, "unfused_epoch_bytes": 2e7, "roofline_flops": 1e8}
      >>> rates = roofline_rates(row, matmul_gflops=100.0, copy_gbs=40.0)
      >>> rates["unfused_gbs"], rates["unfused_bandwidth_fraction"], rates["unfused_roof_model_epochs_per_s"]
      (2.0, 0.05, 2000.0)
      >>> rates["roofline_peak_fraction"], rates["matmul_roof_model_epochs_per_s"]
      (0.1, 1000.0)
    """
    rate, epoch_bytes, flops = row["model_epochs_per_s"], row["unfused_epoch_bytes"], row["roofline_flops"]
    return {
        "unfused_gbs": rate * epoch_bytes / 1e9,
        "unfused_bandwidth_fraction": rate * epoch_bytes / 1e9 / copy_gbs,
        "unfused_roof_model_epochs_per_s": copy_gbs * 1e9 / epoch_bytes,
        "roofline_gflops": rate * flops / 1e9,
        "roofline_peak_fraction": rate * flops / 1e9 / matmul_gflops,
        "matmul_roof_model_epochs_per_s": matmul_gflops * 1e9 / flops,
    }


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
    """FLOPs and bytes of one member's epoch: XLA's counts where they work, else the analytic ones; and the
    roofline's counts from the shapes (`roofline`)."""
    flops_a, bytes_a = analytic_cost(workload)
    cost = {"flops_analytic": flops_a, "bytes_analytic": bytes_a, **roofline(workload)}
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
