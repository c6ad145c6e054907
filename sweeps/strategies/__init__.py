"""Search strategies: which trials to train, one module per strategy.

A strategy is asked for a round of configurations, told their results, and
decides whether another round follows (`sweeps/strategies/base.py`).
"""

from __future__ import annotations

from sweeps.strategies.base import Strategy
from sweeps.strategies.bayes import Bayes
from sweeps.strategies.grid import Grid
from sweeps.strategies.halving import Halving
from sweeps.strategies.pbt import PBT
from sweeps.strategies.quasirandom import QuasiRandom
from sweeps.strategies.random import Random

STRATEGIES = {
    "grid": Grid,
    "random": Random,
    "quasirandom": QuasiRandom,
    "bayes": Bayes,
    "halving": Halving,
    "pbt": PBT,
}


def make_strategy(name: str, **options) -> Strategy:
    """A strategy from its name, as written in a config file."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy {name!r} is not known; choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[name](**options)


__all__ = ["PBT", "STRATEGIES", "Bayes", "Grid", "Halving", "QuasiRandom", "Random", "Strategy", "make_strategy"]
