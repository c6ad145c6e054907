"""How much device memory a population needs, and how many members fit.

The estimate is made before anything compiles, from the structure's shapes:
the carried state (parameters and optimizer slots), the step's temporaries
(gradients, updates, the masked copies), the minibatch activations, and the
validation pass. `tests/test_memory.py` holds it against XLA's own
accounting of the compiled program.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import jax

from sweeps.engine.epoch import EVAL_ROWS
from sweeps.engine.optimizers import state_size
from sweeps.engine.structure import Structure, n_params

BYTES = 4  # float32 everywhere
MEMORY_FRACTION = 0.5  # the share of the device's memory a population may plan to use
CACHE_FALLBACK = 32 * 2**20  # bytes, where the CPU's cache size cannot be read
FEWEST_FASTEST = 8  # the speed cap never goes below this many members (vmap still pays for big models)


def population_bytes(structure: Structure, members: int, n_train: int, n_val: int) -> int:
    """Estimated peak bytes of one compiled epoch over `members` members, data included."""
    count = n_params(structure)
    slots = state_size(structure.optimizer, structure.clip, count) // count  # moments per parameter
    state = members * count * (2 + slots)  # parameters, best-epoch parameters, optimizer moments
    step_temporaries = members * count * (3 + slots)  # grads, updates, new params, new slots
    if structure.accumulate > 1:
        step_temporaries += members * count  # the gradient summed over a minibatch's micro-batches
    widths, widest = activation_values(structure)
    activations = 4 * members * structure.batch_size * widths  # pre-activation, activation, mask, gradient
    block = min(n_val, EVAL_ROWS)
    evaluation = members * (2 * block * widest + 6 * n_val * structure.n_outputs)
    data = (n_train + n_val) * (structure.n_features + 1) + n_train  # splits and the epoch's order
    return BYTES * int(state + step_temporaries + activations + evaluation + data)


@functools.cache
def activation_values(structure: Structure) -> tuple[int, int]:
    """Values one row makes on its way through a member's network: every layer's output summed, and the
    largest one. The built-in MLP's from its widths; a user's model's from the jaxpr of its forward on one row
    (`jax.make_jaxpr` traces, nothing is computed): the outputs of its matrix products and convolutions."""
    if structure.module is None:
        return sum(structure.hidden) + structure.n_outputs, max(structure.hidden + (structure.n_outputs,))
    sizes = [math.prod(eqn.outvars[0].aval.shape) for eqn in structure.network.layers()]
    sizes = [n for n in sizes if n > 0] or [structure.n_outputs]
    return sum(sizes), max(sizes)


def available_bytes(device: jax.Device | None = None) -> int:
    """The memory free for a new population on `device` (default: the first).

    On an accelerator: what its allocator can still hand out, `bytes_limit -
    bytes_in_use` from `device.memory_stats()` (the limit alone would count
    buffers already live, data and other populations included, as free). On
    CPU, or where the device reports no limit: the host's available RAM.
    """
    device = device or jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return max(int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), 0)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def members_that_fit(structure: Structure, n_train: int, n_val: int, budget_bytes: int) -> int:
    """The largest population whose estimate stays within `budget_bytes` (at least 1)."""
    one = population_bytes(structure, 1, n_train, n_val)
    fixed = population_bytes(structure, 0, n_train, n_val)
    per_member = max(one - fixed, 1)
    return max(1, (budget_bytes - fixed) // per_member)


def chunk_size(total: int, fits: int) -> int:
    """Members per chunk: as few chunks as fit, of equal size, so only the last is padded."""
    chunks = math.ceil(total / max(fits, 1))
    return math.ceil(total / chunks)


def cache_bytes() -> int:
    """The size of the CPU's largest cache (the last level: L3 on most machines), from Linux's sysfs.

    CACHE_FALLBACK where it cannot be read (another OS, a container hiding /sys).
    """
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes, default=CACHE_FALLBACK)


def step_bytes(structure: Structure) -> int:
    """Bytes one member's update reads and writes per step: parameters, gradients, optimizer slots, new values."""
    count = n_params(structure)
    slots = state_size(structure.optimizer, structure.clip, count) // count
    return BYTES * count * (3 + 2 * slots)


def fastest_members(structure: Structure, cache: int) -> int:
    """The population size past which each member trains slower on a CPU whose last-level cache holds `cache` bytes.

    A step streams every member's parameters and optimizer state; once they outgrow the
    last-level cache (`cache_bytes()`) each member-step costs main-memory bandwidth instead: the
    lesson model trained fastest at the largest population whose step state fits a 32 MiB L3
    (benchmarks/README.md, "Chunk size by speed").
    The cap is the largest power of two whose step state fits the cache, at least FEWEST_FASTEST.
    (On an accelerator throughput per member kept rising up to the largest population that fitted,
    so the planner applies no such cap there: "The H200 again (this engine)".)

    Examples:
      >>> from sweeps.engine.structure import Structure
      >>> lesson = Structure((64,), "relu", 32, "adam", "constant", False, False, "binary", 45, 1)
      >>> step_bytes(lesson), fastest_members(lesson, 32 * 2**20)
      (84252, 256)
    """
    fits = cache // step_bytes(structure)
    return max(FEWEST_FASTEST, 2 ** int(math.log2(max(fits, 1))))
