"""`Grid`: every combination of the axes' values, in one round.

Examples:
  >>> from sweeps import Grid, space
  >>> trials = Grid(n=3).ask({"learning_rate": space.loguniform(1e-3, 1e-1)})
  >>> [round(t["learning_rate"], 4) for t in trials]
  [0.001, 0.01, 0.1]
"""

from __future__ import annotations

import dataclasses
import itertools

from sweeps.space import Float, as_space
from sweeps.strategies.base import Strategy


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

    def asks_for(self, space) -> int | None:
        """The number of combinations, counted (None where a continuous axis has no `n`: `ask` says so)."""
        count = 1
        for axis in as_space(space).values():
            if isinstance(axis, Float) and self.n is None:
                return None
            count *= int(self.n) if isinstance(axis, Float) else len(axis.values)
        return count

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
