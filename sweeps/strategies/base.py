"""The strategy interface: which trials to train, round by round.

The scheduler (`sweeps.driver.scheduler`, with `sweeps.driver.rounds`) is the only
code that drives a strategy through a sweep. A sweep:

    start(objective, direction)            once, before the first ask
    use_epochs(epochs)                     then: the sweep's epochs (a strategy's own budget agrees)
    round: ask(space) -> configurations     once per round
           (the scheduler trains them, as one population per structure)
           tell(table)                      the round's rows of the trial table
           another_round()                  whether the scheduler asks again

A strategy whose rounds can each ask for up to `k` configurations says so
with `round_size() -> k`: the scheduler then pads each structure's population to
`k` members (times `seeds`) in every round, so a round whose trials share a
structure with an earlier round's reuses that compiled program instead of
compiling one for a new population size. A strategy that acts inside a training
population says so (`acts_between_epochs = True`) and answers `decide(view)` after every epoch: it sees the
population's metrics (`EpochView`) and returns `Decisions` (stop members,
start new trials in their slots, copy members onto others with new
hyperparameters), which the scheduler applies with the engine's jitted edits.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sweeps.space import Axis


@dataclasses.dataclass(frozen=True)
class EpochView:
    """One population after one epoch, as a strategy sees it: host arrays, one entry per slot.

    Attributes:
      epoch: epochs this population has run.
      numbers: (slots,) the trial in each slot; -1 for padding.
      epochs_done: (slots,) epochs each member has trained (its own, from its own start).
      active: (slots,) whether the member trains in the next epoch.
      trained: (slots,) whether it trained in this epoch.
      score: (slots,) this epoch's objective with lower better (negated for a maximized metric);
        NaN where the member did not train.
      hparams: name -> (slots,) each member's traced hyperparameters.
      objective: the metric `score` comes from.
      fits: whether a configuration can start in this population's slots (its structure trains in the
        population's program: `sweeps.engine.holds`); a refill takes only those.
    """

    epoch: int
    numbers: np.ndarray
    epochs_done: np.ndarray
    active: np.ndarray
    trained: np.ndarray
    score: np.ndarray
    hparams: dict[str, np.ndarray]
    objective: str
    fits: Callable[[Mapping[str, Any]], bool] = lambda config: True


@dataclasses.dataclass
class Decisions:
    """What a strategy wants done to a population between epochs (every field optional).

    Attributes:
      prune: (slots,) bool: these members stop now (state `pruned`).
      copy_from: (slots,) int: member i takes the weights and optimizer state of member
        `copy_from[i]` (`copy_from[i] == i` keeps its own): population based training's exploit.
      hparams: name -> (slots,) new values of traced hyperparameters, applied where `change`.
      change: (slots,) bool, the members whose `hparams` change (explore).
      refill: slot -> the configuration of a new trial that starts in that slot now.
      repack: the population may shrink to the next power of two above its live members.
    """

    prune: np.ndarray | None = None
    copy_from: np.ndarray | None = None
    hparams: dict[str, np.ndarray] | None = None
    change: np.ndarray | None = None
    refill: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    repack: bool = False


class Strategy(abc.ABC):
    """Which trials to train: `ask` for a round's configurations, `tell` their results."""

    # A strategy that decides between epochs (`decide`: halving, PBT) sets this; it is the only thing the scheduler
    # and the planner read to learn whether to call `decide` (a population that acts between epochs is kept
    # whole and its metrics are read after every epoch). A subclass that defines `decide` without it is refused
    # when the class is defined, so that no decisions are silently ignored.
    acts_between_epochs: bool = False

    # A strategy that changes members' hyperparameters while they train (population based training)
    # sets this: the history then records every member's traced hyperparameters and parent each epoch.
    tracks_hparams: bool = False

    # A strategy whose decisions copy one member's weights onto another (PBT's exploit) sets this: the planner then
    # never pads members of different widths or depths into one program (a copy across them would truncate the
    # network it copies); batch sizes still fuse (their weights have the same shapes).
    copies_members: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "decide" in vars(cls) and not cls.acts_between_epochs:
            raise TypeError(
                f"{cls.__name__} defines decide() but does not set acts_between_epochs = True, so the sweep would "
                f"never call it: add `acts_between_epochs = True` to the class body of {cls.__name__}"
            )

    def start(self, objective: str, direction: str) -> None:  # noqa: B027 - optional: most strategies need neither
        """Called once before the first `ask` of a sweep: the metric it optimizes and its direction.

        Args:
          objective: the table's `value` column holds this metric at each trial's best epoch
            (e.g. "val_loss").
          direction: "minimize" or "maximize".

        A strategy that learns from results keeps these, and starts afresh here (one instance
        may serve several sweeps). Refuse a space or an objective the strategy cannot handle in
        `ask`, which the scheduler calls before anything compiles.
        """

    def use_epochs(self, epochs: int) -> None:  # noqa: B027 - optional: most strategies have no budget of their own
        """Called once after `start`, before the first `ask`: the sweep's `epochs`, every trial's budget unless
        the space sweeps them. A strategy with a budget of its own (Halving's `max_epochs`) takes it from here,
        or refuses one that differs, naming both: one budget, stated once."""

    @abc.abstractmethod
    def ask(self, space: Mapping[str, Axis]) -> list[dict[str, Any]]:
        """The next round's configurations: one dict of hyperparameter values each.

        Called exactly once per round. Names must be hyperparameters (`sweeps.engine.hparams.HPARAMS`);
        what a configuration leaves out takes the sweep's defaults.
        """

    def queued(self) -> list[dict[str, Any]]:
        """Configurations the round just asked for may still start, in slots that free while it trains (halving's
        refill queue): the planner fuses groups with room for them. None by default."""
        return []

    def asks_for(self, space: Mapping[str, Axis]) -> int | None:
        """How many configurations the next `ask(space)` makes (those it returns and any it keeps for later in
        the round), counted without making them, so that a round too large to plan is refused at once
        (`planning.planner.MAX_TRIALS`); None when the strategy cannot tell before asking. Default: `round_size()`.
        """
        return self.round_size()

    def tell(self, table) -> None:  # noqa: B027 - optional: a strategy that learns nothing from results skips it
        """The results of the round just trained: its rows of the trial table (pandas), one per trial.

        Each row has `params_<name>` (empty where the trial's optimizer and schedule do not read
        the value), `state` ("complete" or "diverged"), `value` (the objective at the best epoch,
        NaN when diverged), `round`, `config` and `seed`.
        """

    def fixed(self) -> dict[str, Any]:
        """Hyperparameters the strategy sets for every trial without sweeping them (Halving: the epoch
        budget); they override the sweep's defaults and are not `params_` columns."""
        return {}

    def decide(self, view: EpochView) -> Decisions | None:
        """Between epochs: decisions about the population (None: nothing to do). Called after every epoch
        when the strategy sets `acts_between_epochs`."""
        return None

    def another_round(self) -> bool:
        """Whether the scheduler asks again after `tell`; one round by default."""
        return False

    def round_size(self) -> int | None:
        """The most configurations one round asks for, when the strategy has more than one round.

        The scheduler pads every structure's population to this many configurations (times `seeds`),
        so that all rounds of a structure share one compiled program. None (the default): each
        round's populations are sized to its trials.
        """
        return None

    def planned_rounds(self) -> int | None:
        """How many rounds the strategy means to run, for the progress bar; None when it decides as it goes."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What the strategy has learned so far, as JSON values: saved in every checkpoint."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - a stateless strategy has none
        """Restores `state_dict()`'s output when a run resumes."""
