"""`Random`: `n` configurations, every axis sampled independently, in one round.

Examples:
  >>> from sweeps import Random, space
  >>> trials = Random(n=2, seed=0).ask({"batch_size": [16, 32]})
  >>> len(trials)
  2
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sweeps.space import as_space
from sweeps.strategies.base import Strategy


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

    def asks_for(self, space) -> int:
        return int(self.n)

    def ask(self, space):
        space = as_space(space)
        rng = np.random.default_rng(self.seed)
        return [{name: axis.sample(rng) for name, axis in space.items()} for _ in range(int(self.n))]
