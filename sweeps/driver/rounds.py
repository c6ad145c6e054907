"""A sweep's rounds: the strategy started, asked once per round, and its answer planned into trials and groups.

The scheduler (`sweeps.driver.scheduler`) calls these; they are the only code that calls a strategy's
`start` and `ask`. The dry run asks a copy of the strategy (`first_round`), so the one a sweep then
trains with is asked afresh.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from sweeps.driver import distributed
from sweeps.planning.planner import Plan, Round, Trial, check_round_size


def start_strategy(plan: Plan) -> None:
    """Starts the plan's strategy for a sweep: its objective and direction, then the sweep's epoch budget."""
    strategy, config = plan.strategy, plan.config
    strategy.start(config.objective, config.direction(config.objective))
    strategy.use_epochs(config.epochs)


def ask_round(plan: Plan, index: int, after: list[Trial]) -> tuple[Round, list[dict]]:
    """Asks the plan's strategy for round `index` (once) and plans it, numbered after the trials `after`.

    A round too large to plan is refused before the strategy makes it (`Strategy.asks_for`). With several
    processes, process 0's answer is everyone's. Returns the round and the configurations asked for.
    """
    strategy = plan.strategy
    check_round_size(strategy.asks_for(plan.config.space), plan)  # counted before anything is made
    configs = distributed.agreed(strategy.ask(plan.config.space))
    if not configs:
        raise ValueError(f"the strategy {strategy!r} asked for no trials" + (f" in round {index}" if index else ""))
    return plan_round(plan, configs, index, after, strategy.queued()), configs


def plan_round(
    plan: Plan, configs: list[Mapping[str, Any]], index: int, after: list[Trial], queued: list[Mapping] = ()
) -> Round:
    """Round `index` of `configs`, its trials numbered after `after` (every trial planned before it); `queued`:
    what the strategy may start later in the round (`Strategy.queued`, as it was right after it was asked)."""
    first_number, first_config = (after[-1].number + 1, after[-1].config + 1) if after else (0, 0)
    return plan.round(configs, first_number=first_number, first_config=first_config, index=index, queued=queued)


def first_round(plan: Plan) -> Round:
    """The first round a sweep of `plan` would train, asked of a copy of its strategy (the dry run's view): the
    plan's own strategy is left as it was."""
    preview = dataclasses.replace(plan, config=dataclasses.replace(plan.config, strategy=copy.deepcopy(plan.strategy)))
    start_strategy(preview)
    return ask_round(preview, 0, [])[0]
