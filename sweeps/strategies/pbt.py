"""`PBT`: population based training inside one compiled population.

Every `interval` epochs the members are ranked by the objective; each member in the bottom
`quantile` copies the weights and optimizer state of a member drawn from the top `quantile` of the
members still training (exploit; never after the last epoch, and never the best-so-far: a member's
best epoch and kept model stay its own trial's) and then changes its continuous hyperparameters
(explore): with probability `resample_probability` a value is drawn afresh from the space, else it
is multiplied by one of the `perturb` factors and kept inside the space's bounds. Structural
hyperparameters (batch size, layer widths, optimizer, schedule) stay fixed: they would change the
compiled program. Exploit and explore are one jitted edit of the stacked population state
(`sweeps.engine.edits.exploit_explore`); the history records each member's hyperparameters and the
trial whose weights it carries at every epoch (`split` "hparam" and "lineage").

Examples:
  >>> from sweeps import space
  >>> strategy = PBT(population=4, interval=2, seed=0)
  >>> len(strategy.ask({"learning_rate": space.loguniform(1e-4, 1e-1)}))
  4
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sweeps.engine.hparams import HPARAMS
from sweeps.space import Float, as_space
from sweeps.strategies.base import Decisions, EpochView, Strategy
from sweeps.strategies.random import Random

PADDING = -1
NOT_EXPLORED = ("epochs",)  # a member's budget is not a training hyperparameter to perturb


@dataclasses.dataclass
class PBT(Strategy):
    """Population based training.

    Args:
      population: members training together.
      interval: epochs between exploit-and-explore steps.
      quantile: the share of members replaced (bottom) and copied from (top) at each step.
      perturb: the factors a continuous value is multiplied by (one drawn per value).
      resample_probability: the chance a value is drawn afresh from the space instead.
      seed: the seed of the initial sample and of every draw.
    """

    population: int = 16
    interval: int = 2
    quantile: float = 0.25
    perturb: tuple[float, ...] = (0.8, 1.2)
    resample_probability: float = 0.25
    seed: int = 0

    acts_between_epochs = True
    tracks_hparams = True
    copies_members = True

    def __post_init__(self):
        for name, low in (("population", 2), ("interval", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"PBT({name}=...) must be an integer >= {low}, but got {name}={value!r}")
        if not 0 < self.quantile <= 0.5:
            raise ValueError(f"PBT(quantile=...) must be in (0, 0.5], but got quantile={self.quantile!r}")
        if not 0 <= self.resample_probability <= 1:
            raise ValueError(f"PBT(resample_probability=...) must be in [0, 1], but got {self.resample_probability!r}")
        self.perturb = tuple(float(f) for f in self.perturb)
        if not self.perturb or any(f <= 0 for f in self.perturb):
            raise ValueError(f"PBT(perturb=...) must be positive factors, but got {self.perturb!r}")
        self.start("val_loss", "minimize")

    def start(self, objective: str, direction: str) -> None:
        """A sweep starts afresh: its random numbers from `seed` again (one instance may serve several sweeps, each
        as if it were new)."""
        self._space: dict = {}
        self._rng = np.random.default_rng(self.seed)

    def asks_for(self, space) -> int:
        return self.population

    def ask(self, space):
        self._space = as_space(space)
        return Random(n=self.population, seed=self.seed).ask(self._space)

    def explored(self) -> list[str]:
        """The space's traced, numeric hyperparameters: what explore changes."""
        return [
            name
            for name, axis in self._space.items()
            if (name not in HPARAMS or HPARAMS[name].traced)  # not in it: a call hyperparameter of the user's model
            and name not in NOT_EXPLORED
            and (isinstance(axis, Float) or all(isinstance(v, int | float) and v is not None for v in axis.values))
        ]

    def decide(self, view: EpochView) -> Decisions | None:
        # After the last epoch nobody trains on: a copy then would only overwrite what the finished members
        # hold (a member that diverged in its last epoch would look healthy to the models the sweep keeps).
        if view.epoch % self.interval or not view.active.any():
            return None
        members = np.flatnonzero(view.numbers != PADDING)
        if len(members) < 2:
            return None
        score = np.where(np.isfinite(view.score), view.score, math.inf)[members]
        order = members[np.lexsort((view.numbers[members], score))]  # best first; ties to the lower number
        count = max(1, int(self.quantile * len(members)))
        bottom = order[-count:]
        rest = order[:-count]
        top = rest[view.active[rest]][:count]  # sources train on: not diverged, stopped or finished
        if not len(top):
            return None
        source = np.arange(len(view.numbers), dtype=np.int32)
        change = np.zeros(len(view.numbers), bool)
        values = {name: view.hparams[name].astype(np.float64).copy() for name in self.explored()}
        for slot in bottom:
            source[slot] = self._rng.choice(top)
            change[slot] = True
            for name, value in values.items():
                value[slot] = self._explore(name, float(view.hparams[name][source[slot]]))
        return Decisions(copy_from=source, hparams=values, change=change)

    def _explore(self, name: str, value: float) -> float:
        axis = self._space[name]
        if self._rng.random() < self.resample_probability:
            return float(axis.sample(self._rng))
        factor = float(self._rng.choice(self.perturb))
        if isinstance(axis, Float):
            return float(np.clip(value * factor, axis.low, axis.high))
        options = sorted(float(v) for v in axis.values)  # a discrete axis moves one value up or down
        here = int(np.argmin([abs(v - value) for v in options]))
        step = 1 if factor > 1 else -1 if factor < 1 else 0
        return options[int(np.clip(here + step, 0, len(options) - 1))]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
