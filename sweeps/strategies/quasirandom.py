"""`QuasiRandom`: `n` configurations from a scrambled Sobol sequence, in one round.

Random points clump and leave holes; a Sobol sequence fills the unit cube
evenly (low discrepancy), and scrambling it with a seed keeps it unbiased.
Each swept axis is one dimension of the cube: a log axis is spread evenly in
log space, a linear one linearly, and an integer or categorical axis of `k`
values gives each value an equal slice `[i/k, (i+1)/k)` of its unit interval.
A fixed value takes no dimension.

Examples:
  >>> from sweeps import QuasiRandom, space
  >>> trials = QuasiRandom(n=4, seed=0).ask({"learning_rate": space.loguniform(1e-4, 1e-1), "batch_size": [16, 32]})
  >>> len(trials), sorted({t["batch_size"] for t in trials})
  (4, [16, 32])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sweeps.space import Axis, Float, as_space
from sweeps.strategies.base import Strategy


@dataclasses.dataclass(frozen=True)
class QuasiRandom(Strategy):
    """`n` trials from a scrambled Sobol sequence over the swept axes (`scipy.stats.qmc.Sobol`).

    Args:
      n: how many configurations. A power of two (8, 16, 64, ...) keeps the Sobol sequence's
        balance properties whole; other counts take the first `n` points of the next power of two.
      seed: the scrambling's seed: another seed gives another, equally even, set of points.
    """

    n: int = 16
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.n, bool) or int(self.n) != self.n or self.n < 1:
            raise ValueError(f"QuasiRandom(n=...) must be an integer >= 1, but got n={self.n!r}")

    def asks_for(self, space) -> int:
        return int(self.n)

    def ask(self, space):
        space = as_space(space)
        swept = [name for name, axis in space.items() if isinstance(axis, Float) or len(axis.values) > 1]
        units = sobol(int(self.n), len(swept), self.seed)  # (n, swept axes) in [0, 1)
        configs = []
        for row in units:
            config = {name: axis.values[0] for name, axis in space.items() if name not in swept}
            config.update({name: from_unit(space[name], u) for name, u in zip(swept, row)})
            configs.append({name: config[name] for name in space})  # the space's order
        return configs


def sobol(n: int, dims: int, seed: int) -> np.ndarray:
    """(n, dims) points of a scrambled Sobol sequence in [0, 1)."""
    if dims == 0:
        return np.zeros((n, 0))
    from scipy.stats import qmc

    sampler = qmc.Sobol(d=dims, scramble=True, seed=seed)
    points = sampler.random_base2(max(0, math.ceil(math.log2(n))))
    return points[:n]


def from_unit(axis: Axis, u: float) -> Any:
    """The axis's value at `u` in [0, 1): even in log space on a log axis; equal slices for discrete values."""
    if isinstance(axis, Float):
        if axis.log:
            low, high = math.log(axis.low), math.log(axis.high)
            return float(min(max(math.exp(low + u * (high - low)), axis.low), axis.high))
        return float(axis.low + u * (axis.high - axis.low))
    k = len(axis.values)
    return axis.values[min(int(u * k), k - 1)]


def to_unit(axis: Axis, value: Any) -> float:
    """The inverse of `from_unit` (a discrete value maps to the middle of its slice): for discrepancy checks."""
    if isinstance(axis, Float):
        if axis.high == axis.low:
            return 0.5
        if axis.log:
            return (math.log(value) - math.log(axis.low)) / (math.log(axis.high) - math.log(axis.low))
        return (value - axis.low) / (axis.high - axis.low)
    return (axis.values.index(value) + 0.5) / len(axis.values)


def unit_points(configs: list[Mapping[str, Any]], space: Mapping[str, Any]) -> np.ndarray:
    """(configurations, swept axes) coordinates in [0, 1] of configurations over a space.

    Examples:
      >>> from sweeps import space
      >>> unit_points([{"dropout": 0.25}], {"dropout": space.uniform(0.0, 0.5)})
      array([[0.5]])
    """
    axes = {name: axis for name, axis in as_space(space).items() if isinstance(axis, Float) or len(axis.values) > 1}
    return np.array([[to_unit(axis, c[name]) for name, axis in axes.items()] for c in configs])
