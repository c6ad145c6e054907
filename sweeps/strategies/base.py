"""The strategy interface: which trials to train, round by round.

The sweep loop (`sweeps/loop.py`) is the only code that calls a strategy. A
round: the loop calls `ask(space)` once for the round's configurations,
trains them, calls `tell(table)` with the round's rows, then asks
`another_round()` whether to go on. A strategy that acts inside a training
population will add a between-epochs `decide`; the loop is where it plugs in.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

from sweeps.space import Axis


class Strategy(abc.ABC):
    """Which trials to train: `ask` for a round's configurations, `tell` their results."""

    @abc.abstractmethod
    def ask(self, space: Mapping[str, Axis]) -> list[dict[str, Any]]:
        """The next round's configurations: one dict of hyperparameter values each.

        Called exactly once per round. Names must be hyperparameters (`sweeps.engine.hparams.HPARAMS`);
        what a configuration leaves out takes the sweep's defaults.
        """

    def tell(self, table) -> None:  # noqa: B027 - optional: a strategy that learns nothing from results skips it
        """The results of the round just trained: its rows of the trial table (pandas), one per trial."""

    def another_round(self) -> bool:
        """Whether the loop asks again after `tell`; one round by default."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """What the strategy has learned so far, as JSON values: saved in every checkpoint."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - a stateless strategy has none
        """Restores `state_dict()`'s output when a run resumes."""
