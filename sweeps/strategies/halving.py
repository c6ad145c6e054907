"""`Halving`: successive halving in rungs on epochs, inside one training population.

Every trial is given the sweep's `epochs` (`max_epochs`, which may be left out: one budget, stated
once); at each rung (`min_epochs`, `min_epochs * eta`, ... below that budget) a member is compared
with every trial that reached the same rung, and only the best `1/eta` of them (rounded up; ties to
the lower trial number) train on: the rest are pruned between epochs by the engine's masks, without
recompiling. Without `refill`, all members start together, so this is synchronous successive
halving, and the population is repacked into the next smaller power of two as it empties (one
compilation per size). With `refill=True` (asynchronous successive halving, in the spirit of ASHA)
a slot whose trial was pruned, finished or diverged starts the next sampled trial at once, so the
population stays full until `samples` trials have started.

With `brackets=True`, Hyperband: the sweep runs one round per bracket, from the most aggressive
(many trials, the first rung at `epochs / eta**s_max`) to plain training (few trials, no
pruning), so no single choice of `min_epochs` decides; `n` is then ignored (each bracket's size
follows Hyperband's formula).

A recycled trial counts its own epochs and schedule steps from its own start; its minibatch order
at each step is the sweep's shared order for the population's epoch at that time (sweep seed,
population epoch, batch size), so a sweep is reproducible from its seed and settings.

Examples:
  >>> Halving(n=27, min_epochs=1, max_epochs=9).rungs()  # sweeps.run(..., epochs=9) gives the same
  [1, 3]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sweeps.strategies.base import Decisions, EpochView, Strategy
from sweeps.strategies.quasirandom import QuasiRandom
from sweeps.strategies.random import Random

PADDING = -1
SAMPLERS = {"random": Random, "quasirandom": QuasiRandom}


@dataclasses.dataclass
class Halving(Strategy):
    """Successive halving (rungs on epochs), optionally with slot recycling.

    Args:
      n: trials training at once (the population).
      min_epochs: the first rung.
      max_epochs: every trial's budget; reaching it completes a trial. Default: the sweep's `epochs`
        (`sweeps.run(..., epochs=...)`, config `[train] epochs`); when given, it must equal them.
      eta: the reduction factor: one in `eta` trials goes on at each rung.
      refill: recycle a pruned, finished or diverged member's slot for the next sampled trial.
      samples: with `refill`, how many trials start in all (default `n * eta`).
      brackets: Hyperband: one round per bracket of successive halving (not with `refill`).
      sampler: where configurations come from: "random" (`Random`) or "quasirandom" (`QuasiRandom`,
        a scrambled Sobol sequence: the space covered evenly).
      seed: the sampler's seed.
    """

    n: int = 27
    min_epochs: int = 1
    max_epochs: int | None = None
    eta: int = 3
    refill: bool = False
    samples: int | None = None
    brackets: bool = False
    sampler: str = "random"
    seed: int = 0

    acts_between_epochs = True

    def __post_init__(self):
        for name, low in (("n", 1), ("min_epochs", 1), ("max_epochs", 1), ("eta", 2)):
            value = getattr(self, name)
            if name == "max_epochs" and value is None:
                continue  # the sweep's epochs (use_epochs)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Halving({name}=...) must be an integer >= {low}, but got {name}={value!r}")
        if self.max_epochs is not None and self.min_epochs > self.max_epochs:
            raise ValueError(
                f"Halving needs min_epochs <= max_epochs, but got min_epochs={self.min_epochs}, "
                f"max_epochs={self.max_epochs}"
            )
        if self.samples is not None and (not isinstance(self.samples, int) or self.samples < self.n):
            raise ValueError(f"Halving(samples=...) must be an integer >= n={self.n}, but got {self.samples!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"Halving(sampler=...) must be one of {list(SAMPLERS)}, but got sampler={self.sampler!r}")
        if self.brackets and self.refill:
            raise ValueError("Halving(brackets=True) runs Hyperband's rounds; it does not combine with refill=True")
        self._budget = self.max_epochs  # every trial's epochs: max_epochs, else the sweep's (use_epochs)
        self.start("val_loss", "minimize")

    def start(self, objective: str, direction: str) -> None:
        """A sweep starts afresh: no queue, no rung scores, the first bracket (one instance may serve several
        sweeps, each as if it were new)."""
        self._queue: list[dict[str, Any]] = []
        self._rungs: dict[int, dict[int, float]] = {}  # rung epoch -> trial number -> score there
        self._bracket = 0  # Hyperband: the round being trained

    def use_epochs(self, epochs: int) -> None:
        """The sweep's epochs are every trial's budget; a `max_epochs` that differs is refused, naming both."""
        if self.max_epochs is not None and self.max_epochs != epochs:
            raise ValueError(
                f"Halving(max_epochs={self.max_epochs}) and the sweep's epochs={epochs} disagree: a halving trial "
                f"trains the sweep's epochs at most; state the budget once: epochs={self.max_epochs} (config: [train] "
                f"epochs = {self.max_epochs}) and leave max_epochs out"
            )
        if self.min_epochs > epochs:
            raise ValueError(
                f"Halving needs min_epochs <= the sweep's epochs (every trial's budget), but got "
                f"min_epochs={self.min_epochs}, epochs={epochs}"
            )
        self._budget = epochs

    @property
    def budget(self) -> int:
        """Every trial's epochs: `max_epochs`, else the sweep's (known once the sweep has started)."""
        if self._budget is None:
            raise ValueError("Halving(max_epochs=None) takes the sweep's epochs: run it in a sweep, or give max_epochs")
        return self._budget

    def bracket_sizes(self) -> list[tuple[int, int]]:
        """Hyperband's brackets, most aggressive first: (trials, first rung) for s = s_max .. 0."""
        s_max = int(math.floor(math.log(self.budget / self.min_epochs, self.eta) + 1e-9))
        return [
            (math.ceil((s_max + 1) / (s + 1) * self.eta**s), max(self.min_epochs, self.budget // self.eta**s))
            for s in range(s_max, -1, -1)
        ]

    def rungs(self) -> list[int]:
        """The epochs at which members are compared (in the current bracket, with `brackets`)."""
        first = self.bracket_sizes()[self._bracket][1] if self.brackets else self.min_epochs
        out, epoch = [], first
        while epoch < self.budget:
            out.append(epoch)
            epoch *= self.eta
        return out

    def asks_for(self, space) -> int:
        if self.brackets:
            return max(size for size, _ in self.bracket_sizes())
        return (self.samples or self.n * self.eta) if self.refill else self.n  # refill: the queue is sampled now

    def ask(self, space):
        if self.brackets:
            size = self.bracket_sizes()[self._bracket][0]
            self._rungs = {}
            return SAMPLERS[self.sampler](n=size, seed=self.seed + self._bracket).ask(space)
        total = (self.samples or self.n * self.eta) if self.refill else self.n
        configs = SAMPLERS[self.sampler](n=total, seed=self.seed).ask(space)
        self._queue = configs[self.n :]
        return configs[: self.n]

    def queued(self) -> list[dict[str, Any]]:
        return list(self._queue) if self.refill else []

    def tell(self, table) -> None:
        self._bracket += 1

    def another_round(self) -> bool:
        return self.brackets and self._bracket < len(self.bracket_sizes())

    def fixed(self) -> dict[str, Any]:
        return {"epochs": self.budget}  # every trial's budget; pruning ends most of them sooner

    def decide(self, view: EpochView) -> Decisions | None:
        rungs = set(self.rungs())
        real = view.numbers != PADDING
        arrived = np.flatnonzero(real & view.trained & np.isin(view.epochs_done, list(rungs)))
        for slot in arrived:  # record every arrival first: members arriving together are judged together
            score = view.score[slot]
            self._rungs.setdefault(int(view.epochs_done[slot]), {})[int(view.numbers[slot])] = (
                float(score) if np.isfinite(score) else math.inf
            )
        prune = np.zeros(len(view.numbers), bool)
        for slot in arrived:
            rung = self._rungs[int(view.epochs_done[slot])]
            ranked = sorted(rung, key=lambda number: (rung[number], number))
            keep = math.ceil(len(ranked) / self.eta)
            prune[slot] = view.active[slot] and ranked.index(int(view.numbers[slot])) >= keep
        refill = {}
        if self.refill:
            done = real & view.trained & (~view.active | prune)
            for slot in np.flatnonzero(done):
                fitting = next((i for i, config in enumerate(self._queue) if view.fits(config)), None)
                if fitting is None:
                    break
                refill[int(slot)] = self._queue.pop(fitting)
        return Decisions(prune=prune, refill=refill, repack=not self.refill)

    def state_dict(self) -> dict[str, Any]:
        return {
            "bracket": self._bracket,
            "queue": self._queue,
            "rungs": {str(r): {str(n): s for n, s in scores.items()} for r, scores in self._rungs.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._queue = [dict(c) for c in state.get("queue", [])]
        self._bracket = int(state.get("bracket", 0))
        self._rungs = {int(r): {int(n): float(s) for n, s in scores.items()} for r, scores in state["rungs"].items()}
