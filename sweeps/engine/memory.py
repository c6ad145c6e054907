"""How much device memory a population needs, and how many members fit.

The estimate is made before anything compiles, from the structure's shapes:
the carried state (parameters and optimizer slots), the step's temporaries
(gradients, updates, the masked copies), the minibatch activations, and the
validation pass. `tests/test_memory.py` holds it against XLA's own
accounting of the compiled program.
"""

from __future__ import annotations

import math
import os

import jax

from sweeps.engine.epoch import EVAL_ROWS
from sweeps.engine.optimizers import state_size
from sweeps.engine.structure import Structure, flat_layout

BYTES = 4  # float32 everywhere
MEMORY_FRACTION = 0.5  # the share of the device's memory a population may plan to use


def population_bytes(structure: Structure, members: int, n_train: int, n_val: int) -> int:
    """Estimated peak bytes of one compiled epoch over `members` members, data included."""
    n_params = flat_layout(structure)[0]
    slots = state_size(structure.optimizer, structure.clip, n_params) // n_params  # moments per parameter
    state = members * n_params * (2 + slots)  # parameters, best-epoch parameters, optimizer moments
    step_temporaries = members * n_params * (3 + slots)  # grads, updates, new params, new slots
    widths = sum(structure.hidden) + structure.n_outputs
    activations = 4 * members * structure.batch_size * widths  # pre-activation, activation, mask, gradient
    block = min(n_val, EVAL_ROWS)
    evaluation = members * (
        2 * block * max(structure.hidden + (structure.n_outputs,)) + 6 * n_val * structure.n_outputs
    )
    data = (n_train + n_val) * (structure.n_features + 1) + n_train  # splits and the epoch's order
    return BYTES * int(state + step_temporaries + activations + evaluation + data)


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
