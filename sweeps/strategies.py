"""Search strategies: which trials to train.

A strategy is a small object with `ask(space) -> list of params dicts` and
`tell(table)`, which sees the results of what it asked for. `Grid` and
`Random` ask once; strategies that act between rounds or between epochs
(Bayesian rounds, halving, population based training) extend the same shape.

Examples:
  >>> from sweeps import Grid, space
  >>> trials = Grid(n=3).ask({"learning_rate": space.loguniform(1e-3, 1e-1)})
  >>> [round(t["learning_rate"], 4) for t in trials]
  [0.001, 0.01, 0.1]
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Mapping

import numpy as np

from sweeps.space import Axis, Float, as_space


class Strategy:
    """The interface: `ask` returns the trials' hyperparameters, `tell` receives their results."""

    def ask(self, space: Mapping[str, Axis]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def tell(self, table) -> None:
        """Called with the results table once the asked trials have trained."""


@dataclasses.dataclass(frozen=True)
class Grid(Strategy):
    """Every combination of the axes' values.

    Args:
      n: points per continuous axis (log-spaced on a log axis). Needed only
        when the space has a continuous axis; discrete axes give all values.
    """

    n: int | None = None

    def __post_init__(self):
        if self.n is not None and (isinstance(self.n, bool) or int(self.n) != self.n or self.n < 1):
            raise ValueError(f"Grid(n=...) must be an integer >= 1, but got n={self.n!r}")

    def ask(self, space):
        space = as_space(space)
        values = []
        for name, axis in space.items():
            if isinstance(axis, Float):
                if self.n is None:
                    raise ValueError(
                        f"Grid needs n= (points per continuous axis) for the continuous axis {name!r}; "
                        f"use Grid(n=8) or give {name!r} a list of values"
                    )
                values.append([float(v) for v in axis.grid(int(self.n))])
            else:
                values.append(list(axis.values))
        return [dict(zip(space, combo)) for combo in itertools.product(*values)]


@dataclasses.dataclass(frozen=True)
class Random(Strategy):
    """`n` trials, every axis sampled independently from `seed`.

    Continuous axes are sampled uniformly (in log space on a log axis);
    discrete axes uniformly among their values.
    """

    n: int = 16
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.n, bool) or int(self.n) != self.n or self.n < 1:
            raise ValueError(f"Random(n=...) must be an integer >= 1, but got n={self.n!r}")

    def ask(self, space):
        space = as_space(space)
        rng = np.random.default_rng(self.seed)
        return [{name: axis.sample(rng) for name, axis in space.items()} for _ in range(int(self.n))]


STRATEGIES = {"grid": Grid, "random": Random}


def make_strategy(name: str, **options) -> Strategy:
    """A strategy from its name, as written in a config file."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy {name!r} is not known; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[name](**options)
