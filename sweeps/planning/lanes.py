"""How many lanes a sweep's work items train in, and how a group is cut for them (`sweeps.driver.lanes` runs them).

On a CPU a small population's epoch keeps about one core busy: XLA splits an operation over the
cores only when it is large. So a round's work items train side by side, one lane (thread) per
core.

Lanes pay while a population leaves cores idle: for populations of up to about `LANE_PARAMETERS`
parameters (members x parameters of one member), and cost nothing measurable above
(`benchmarks/README.md`, "2026-11-28, second session", item 13). So a sweep planned for lanes
(`planned_lanes`: one per core, or `SWEEPS_LANES`) trains its work items that many at a time, each
chunk sized within that share of the memory budget.

A large group is cut for the lanes too (`lane_chunk_size`, planned with the other chunking): into
chunks of at most `LANE_PARAMETERS` parameters, as many as a multiple of the lanes, none smaller than
`LANE_FEWEST` members (for members too big for that, chunks of `LANE_FEWEST` or more, still as many
as a multiple of the lanes). The gain is the lanes', not the smaller populations' (the same chunks one
after the other in one thread are as slow as the whole group; "2026-11-28, third session", items 16-17).

Lanes need one process and one device (a mesh already spreads a population) on a CPU
(`machine_lanes`), and work items that nothing between epochs reaches into (`planned_lanes`: a strategy
that acts between epochs trains one item at a time, `ONE_LANE` says why). `SWEEPS_LANES=N` sets the
number of lanes (1 turns them off, and with them the cut), at most one per core.

Examples:
  >>> from sweeps.engine import Structure
  >>> lesson = Structure((64,), "relu", 32, "adam", "constant", False, False, "binary", 45, 1)
  >>> LANE_PARAMETERS // 3009, lane_chunk_size(lesson, 256, 256, lanes=2)  # 87 members at most; 4 chunks of 64
  (87, 64)
"""

from __future__ import annotations

import math
import os
from typing import Any

from sweeps.engine import n_params
from sweeps.strategies.base import Strategy

LANE_PARAMETERS = 2**18  # the largest chunk a group is cut into, where LANE_FEWEST members fit (module docstring)
LANE_FEWEST = 16  # a group is not cut for lanes into chunks of fewer members (dispatch would dominate them)
LANES_VARIABLE = "SWEEPS_LANES"
# Why a strategy that acts between epochs trains one work item at a time, as the dry run says it. The one place
# this rule is made is `planned_lanes`.
ONE_LANE = (
    "the strategy acts between epochs (halving, PBT): its decisions about one population read state that spans "
    "every population (halving's rungs rank trials of all chunks, PBT draws from one generator), so the order "
    "in which lanes finish their epochs would change its decisions and the table; its work items train one at "
    "a time and its populations are not cut for lanes"
)


def cpu_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def lanes_from_environment() -> int | None:
    """`SWEEPS_LANES` as a count, at most one per core (`cpu_cores`: more lanes than cores would only take
    turns, each with a smaller share of the memory budget), or None when it is not set.

    Raises:
      ValueError: it is set to something that is not a whole number of at least 1.
    """
    text = os.environ.get(LANES_VARIABLE, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"{LANES_VARIABLE}={text!r} is not a number of lanes: set it to a whole number of at least 1 "
            f"(1 trains one work item at a time), or unset it to let the sweep choose"
        )
    return min(int(text), cpu_cores())


def lanes_reason() -> str:
    """Why a sweep trains in the lanes it does, as the dry run says it: one per core, or as `SWEEPS_LANES` sets
    (capped at the cores)."""
    chosen = lanes_from_environment()
    if chosen is None:
        return "one per CPU core"
    text = os.environ[LANES_VARIABLE].strip()
    if int(text) > chosen:
        return f"one per CPU core: {LANES_VARIABLE}={text} is capped at the {chosen} cores this process may use"
    return f"as {LANES_VARIABLE}={text} sets"


def machine_lanes(devices: Any) -> int:
    """The work items this machine can train side by side: one per core (`SWEEPS_LANES` sets it, at most one
    per core) with one process and one CPU device; 1 elsewhere (a mesh already spreads a population)."""
    if devices.processes != 1 or devices.count != 1 or devices.devices[0].platform != "cpu":
        return 1
    chosen = lanes_from_environment()
    return cpu_cores() if chosen is None else chosen


def planned_lanes(strategy: Strategy, lanes: int) -> int:
    """The lanes a sweep's work items train in (and its groups are cut for) on a machine that offers `lanes`:
    1 for a strategy that acts between epochs or changes hyperparameters as members train (`ONE_LANE` says why),
    else `lanes`."""
    if strategy.acts_between_epochs or strategy.tracks_hparams:
        return 1
    return lanes


def lane_chunk_size(structure: Any, total: int, size: int, lanes: int) -> int:
    """Members per chunk of a group of `total` trials, chunked `size` by memory and cache, cut for `lanes` lanes.

    Chunks of at most LANE_PARAMETERS parameters, equal in size, as many as a multiple of `lanes` (no lane
    idles at a group's end), each of at least LANE_FEWEST members; where the parameter bound would leave
    fewer, chunks of LANE_FEWEST members or more, as many as a multiple of `lanes` (or as many as keep that
    many); `size` unchanged where fewer than two chunks keep LANE_FEWEST members.

    Examples:
      >>> from sweeps.engine import Structure
      >>> lesson = Structure((64,), "relu", 32, "adam", "constant", False, False, "binary", 45, 1)
      >>> [lane_chunk_size(lesson, n, min(n, 256), 2) for n in (20, 32, 64, 128, 256, 300)]
      [20, 16, 32, 64, 64, 75]
      >>> [lane_chunk_size(lesson, n, n, 4) for n in (32, 48, 64)]  # four lanes: 2, 3 and 4 chunks
      [16, 16, 16]
      >>> wider = Structure((256, 256), "relu", 32, "adam", "constant", False, False, "binary", 45, 1)
      >>> lane_chunk_size(wider, 64, 64, 2)  # 77,825 parameters a member: 4 chunks of 16
      16
    """
    fewest = max(2, math.ceil(total / size))  # the chunks memory and cache need, and at least two
    most = total // LANE_FEWEST  # the most chunks that keep LANE_FEWEST members
    if lanes < 2 or most < fewest:
        return size
    needed = math.ceil(total / max(1, min(size, LANE_PARAMETERS // n_params(structure))))
    chunks = math.ceil(needed / lanes) * lanes
    if chunks > most:  # the parameter bound would cut below LANE_FEWEST members: as many as keep them
        in_whole_lanes = most // lanes * lanes
        chunks = in_whole_lanes if in_whole_lanes >= fewest else most
    return math.ceil(total / chunks)


def lane_count(items: int, lanes: int) -> int:
    """How many of a round's `items` (work items left) train side by side in `lanes` lanes."""
    return max(1, min(lanes, items))
