"""Planning a sweep: every argument checked, trials numbered, grouped by structure, chunked.

Nothing here compiles or trains. `plan()` checks a sweep's arguments and
plans its first round; `plan_round()` turns any round's configurations (what
a strategy asked for) into numbered trials and structure groups, each sized
to fit the memory budget. Every bad value is refused here, before the first
compilation, with the name, the value and the rule.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from models import MLP
from sweeps import distributed
from sweeps.checks import (  # noqa: F401 (re-exported)
    EARLY_STOPPING_KEYS,
    check_early_stopping,
    check_int,
    check_metric,
    check_model,
    check_reads,
)
from sweeps.data import Dataset, check_batch_size
from sweeps.devices import Devices, select_devices
from sweeps.engine import hparams as registry
from sweeps.engine import memory
from sweeps.engine.metrics import direction
from sweeps.engine.structure import Structure, structure_of, trial_fields
from sweeps.lane_plan import (
    LANE_FEWEST,
    LANE_PARAMETERS,
    lane_chunk_size,
    lane_count,
    lanes_reason,
    planned_lanes,
)
from sweeps.space import Axis, Choice, as_space
from sweeps.strategies import Grid, Strategy

# How a trial's initialisation and dropout keys are derived: from (sweep seed, seed index), common random
# numbers shared by every configuration, or from (sweep seed, trial number).
INIT_MODES = ("shared", "per_trial")
# The most trials one round may plan. Every trial is a `Trial` holding its resolved hyperparameters: about
# TRIAL_BYTES of host memory with its configuration (a `sweeps run --dry-run` of `Random(n=10**6)` over two axes
# peaked at 1.58 GB, 0.33 GB of it before planning, and took 18 s of CPU on the 2-core development machine at a
# load of 5.5; 2.43 GB and 86 s before issue 20). A larger round is refused before the strategy is asked, with
# its count and that memory, instead of filling the machine's memory while it plans.
MAX_TRIALS = 1_000_000
TRIAL_BYTES = 1_250
MAX_REPR_GROUPS = 8  # a Plan's repr names its first groups and counts the rest


@dataclasses.dataclass(frozen=True)
class Trial:
    """One training run: its number (unique in the sweep), configuration, seed index, round and hyperparameters."""

    number: int
    config: int
    seed: int
    hparams: dict[str, Any]
    round: int = 0


@dataclasses.dataclass(frozen=True)
class Group:
    """The trials of one structure, cut into chunks of `chunk_size` trials, each a population of `population`.

    A chunk's population is padded to a multiple of the device count (`population`); the last
    chunk also holds fewer trials. `chunk_bytes` is the memory estimate per device.
    """

    structure: Structure
    trials: tuple[Trial, ...]
    chunk_size: int
    chunk_bytes: int
    devices: int = 1

    @property
    def chunks(self) -> list[tuple[Trial, ...]]:
        return [self.trials[i : i + self.chunk_size] for i in range(0, len(self.trials), self.chunk_size)]

    @property
    def n_chunks(self) -> int:
        """`len(self.chunks)`, counted without cutting them."""
        return -(-len(self.trials) // self.chunk_size)

    @property
    def population(self) -> int:
        """Members per chunk: `chunk_size` rounded up to a multiple of the device count."""
        return -(-self.chunk_size // self.devices) * self.devices

    @property
    def padding(self) -> int:
        return self.n_chunks * self.population - len(self.trials)

    def __repr__(self) -> str:  # the trials are counted, not listed: a group may hold a million
        return (
            f"Group({self.structure.label()}: {len(self.trials):,} trials in {self.n_chunks:,} chunks of "
            f"{self.chunk_size:,}, population {self.population:,}, {self.chunk_bytes / 2**20:.1f} MB per device)"
        )


def work_items(groups) -> list[tuple[Group, tuple[Trial, ...]]]:
    """A round's work items in training order: (group, chunk) for every chunk of every group."""
    return [(g, chunk) for g in groups for chunk in g.chunks]


@dataclasses.dataclass(frozen=True)
class Settings:
    """A sweep's checked, run-wide settings: what every round is planned with."""

    model: MLP
    strategy: Strategy
    space: dict[str, Axis]
    defaults: dict[str, Any]  # optimizer, epochs, batch_size, hidden, activation for trials that do not set them
    seeds: int
    objective: str
    early_stopping: dict[str, Any] | None
    max_population: int | None
    divergence_threshold: float | None
    budget_bytes: int  # per device
    init: str = "shared"
    pad_to: int | None = None  # members per population in every round: the strategy's round_size() x seeds
    devices: Devices | None = None  # None: every device (`sweeps.devices.select_devices`)
    cache_bytes: int | None = None  # a CPU's last-level cache: chunks also capped by speed (memory.fastest_members)
    lanes: int = 1  # the lanes groups are cut for (sweeps.lane_plan.lane_chunk_size); 1: not cut

    @property
    def layout(self) -> Devices:
        return select_devices(self.devices)

    def defaults_config(self) -> dict[str, Any]:
        """The run-wide training defaults as config.json records them."""
        return {name: self.defaults[name] for name in ("optimizer", "epochs", "batch_size")} | {
            "seeds": self.seeds,
            "init": self.init,
        }


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a sweep's first round will train, known before anything compiles (`sweeps run --dry-run` prints it)."""

    settings: Settings
    trials: tuple[Trial, ...]
    groups: tuple[Group, ...]
    swept: tuple[str, ...]  # hyperparameter names the trials set (the table's params_ columns)

    @property
    def space(self) -> dict[str, Axis]:
        return self.settings.space

    @property
    def early_stopping(self) -> dict[str, Any] | None:
        return self.settings.early_stopping

    @property
    def budget_bytes(self) -> int:
        return self.settings.budget_bytes

    @property
    def programs(self) -> int:
        """Compiled programs to build: one per structure (chunks of a group share theirs)."""
        return len(self.groups)

    def table(self) -> pd.DataFrame:
        """One row per group: its structure, trials, chunking, members and memory estimate per device."""
        return pd.DataFrame(
            [
                {
                    "group": i,
                    "structure": g.structure.label(),
                    "trials": len(g.trials),
                    "chunks": g.n_chunks,
                    "population": g.population,
                    "per_device": g.population // g.devices,
                    "padding": g.padding,
                    "epochs": max(t.hparams["epochs"] for t in g.trials),
                    "memory_mb": round(g.chunk_bytes / 2**20, 1),
                }
                for i, g in enumerate(self.groups)
            ]
        )

    def __repr__(self) -> str:  # short: the trials are counted, not listed (a dry run may plan a million)
        groups = ", ".join(repr(g) for g in self.groups[:MAX_REPR_GROUPS])
        more = f", and {len(self.groups) - MAX_REPR_GROUPS} more" if len(self.groups) > MAX_REPR_GROUPS else ""
        memory = max((g.chunk_bytes for g in self.groups), default=0) / 2**20
        return (
            f"Plan({len(self.trials):,} trials of {self.settings.strategy!r} in {len(self.groups)} structure groups "
            f"[{groups}{more}]; swept {list(self.swept)}; devices {self.settings.layout.describe()}; at most "
            f"{memory:.1f} MB per device for a chunk, budget {self.budget_bytes / 2**20:.0f} MB; describe() and "
            f"table() show the whole plan)"
        )

    def with_budget(self, budget_bytes: int, cache_bytes: int | None, lanes: int, data: Dataset) -> Plan:
        """The same trials chunked for another memory budget, cache and lanes (a resumed run plans as it first did)."""
        settings = dataclasses.replace(
            self.settings, budget_bytes=int(budget_bytes), cache_bytes=cache_bytes, lanes=int(lanes)
        )
        groups = group_trials(list(self.trials), data, settings)
        return dataclasses.replace(self, settings=settings, groups=tuple(groups))

    def describe(self) -> str:
        """The plan as `sweeps run --dry-run` prints it: devices, groups, members and memory per device."""
        lines = [
            f"{len(self.trials)} trials in {len(self.groups)} structure groups: "
            f"{self.programs} compiled programs to build",
            f"devices: {self.settings.layout.describe()}; each population is padded to a multiple of "
            f"{self.settings.layout.count} and split over them (per_device members each); memory budget "
            f"{self.budget_bytes / 2**20:.0f} MB per device (memory_mb: the estimate per device)",
        ]
        if self.groups:
            width = self.groups[0].structure.n_features
            lines.append(f"data: {width} features in (after encoding: one-hot and date columns; memory_mb counts them)")
        if self.settings.cache_bytes is not None:
            lines.append(
                f"chunks also hold at most the members that train fastest together on this CPU "
                f"(their step state within its {self.settings.cache_bytes / 2**20:.0f} MiB cache)"
            )
        lanes = lane_count(work_items(self.groups), self.settings.strategy, self.settings.layout, self.settings.lanes)
        if lanes > 1:
            lines.append(
                f"lanes: {lanes} work items train side by side, {lanes_reason()} (a population alone leaves "
                f"cores idle; groups cut into chunks of at most {LANE_PARAMETERS:,} parameters where {LANE_FEWEST} "
                "members fit; SWEEPS_LANES=1: one at a time)"
            )
        lines.append(self.table().to_string(index=False))
        return "\n".join(lines)


def plan(
    data: Dataset,
    *,
    model: MLP | None = None,
    space: Mapping[str, Any] | None = None,
    strategy: Strategy | None = None,
    optimizer: str = "adam",
    epochs: int = 10,
    batch_size: int = 32,
    seeds: int = 1,
    objective: str = "val_loss",
    early_stopping: Mapping[str, Any] | None = None,
    max_population: int | None = None,
    divergence_threshold: float | None = 10.0,
    init: str = "shared",
    memory_budget: int | None = None,
    devices: int | list[int] | None = None,
) -> Plan:
    """Checks every input, asks the strategy for its first round and plans it.

    Takes `run`'s arguments; trains and compiles nothing. Every bad value is refused here,
    before the first compilation. `memory_budget` (bytes per device, shared by the chunks lanes train
    at once) defaults to half of each device's free memory. The strategy is started (`Strategy.start`:
    the objective and its direction) and asked exactly once (with several processes, process 0's
    answer is used by all).
    """
    settings = check_settings(
        data,
        model=model,
        space=space,
        strategy=strategy,
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        seeds=seeds,
        objective=objective,
        early_stopping=early_stopping,
        max_population=max_population,
        divergence_threshold=divergence_threshold,
        init=init,
        memory_budget=memory_budget,
        devices=devices,
    )
    settings.strategy.start(settings.objective, direction(settings.objective))
    epochs = registry.normalize("epochs", settings.defaults["epochs"])
    registry.check_value("epochs", epochs)  # before a strategy compares a budget of its own with it
    settings.strategy.use_epochs(epochs)
    check_round_size(settings.strategy.asks_for(settings.space), settings)  # counted before anything is made
    configs = distributed.agreed(settings.strategy.ask(settings.space))
    if not configs:
        raise ValueError(f"the strategy {settings.strategy!r} asked for no trials")
    trials, groups, swept = plan_round(settings, data, configs, first_number=0, first_config=0, round_index=0)
    return Plan(settings, tuple(trials), tuple(groups), tuple(swept))


def check_settings(
    data: Dataset,
    *,
    model,
    space,
    strategy,
    optimizer,
    epochs,
    batch_size,
    seeds,
    objective,
    early_stopping,
    max_population,
    divergence_threshold,
    memory_budget,
    init="shared",
    devices=None,
) -> Settings:
    """Every run-wide argument checked (see `plan`)."""
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a sweeps.Dataset (from sweeps.load_csv), but got {type(data).__name__}")
    model = MLP() if model is None else model
    check_model(model)
    axes = as_space(space)
    for name, axis in axes.items():
        registry.check_name(name)
        if isinstance(axis, Choice):  # every listed value, even one a strategy may never draw (inf, nan)
            registry.check_values(name, axis.values)
    strategy = Grid() if strategy is None else strategy
    if not isinstance(strategy, Strategy):
        raise TypeError(
            "strategy must be a sweeps.Strategy: sweeps.Grid(...), Random(...), QuasiRandom(...) or Bayes(...), "
            f"but got {strategy!r}"
        )
    round_size = strategy.round_size()
    if round_size is not None:
        check_int(f"{type(strategy).__name__}.round_size()", round_size, 1)
    check_metric("objective", objective, data.task)
    stop = check_early_stopping(early_stopping, data.task)
    check_int("seeds", seeds, 1)
    if max_population is not None:
        check_int("max_population", max_population, 1)
    if divergence_threshold is not None and not (
        isinstance(divergence_threshold, (int, float)) and divergence_threshold > 0
    ):
        raise ValueError(f"divergence_threshold must be > 0 or None, but got {divergence_threshold!r}")
    defaults = {
        "optimizer": optimizer,
        "epochs": epochs,
        "batch_size": batch_size,
        "hidden": model.hidden,
        "activation": model.activation,
    }
    if init not in INIT_MODES:
        raise ValueError(f"init must be one of {list(INIT_MODES)}, but got init={init!r}")
    layout = select_devices(devices)
    budget = layout.budget_bytes() if memory_budget is None else int(memory_budget)
    pad_to = None if round_size is None else int(round_size) * seeds
    settings = Settings(
        model,
        strategy,
        axes,
        defaults,
        seeds,
        objective,
        stop,
        max_population,
        divergence_threshold,
        budget,
        init,
        pad_to,
    )
    # A strategy that acts inside populations (halving, PBT) keeps them whole; others are also cut by speed.
    by_speed = layout.local[0].platform == "cpu" and not strategy.acts_between_epochs
    return dataclasses.replace(
        settings,
        devices=layout,
        cache_bytes=memory.cache_bytes() if by_speed else None,
        lanes=planned_lanes(strategy, layout),
    )


def check_round_size(configs: int | None, settings: Settings) -> None:
    """Refuses a round of more than MAX_TRIALS trials (`configs` x seeds) at once, with its count and the memory
    its plan would take; None (a strategy that cannot count before asking) passes."""
    if configs is None:
        return
    trials = configs * settings.seeds
    if trials <= MAX_TRIALS:
        return
    seeds = f" ({configs:,} configurations x {settings.seeds} seeds)" if settings.seeds > 1 else ""
    raise ValueError(
        f"{settings.strategy!r} asks for {trials:,} trials in one round{seeds}, more than the {MAX_TRIALS:,} a round "
        f"may plan: their plan alone would take about {trials * TRIAL_BYTES / 2**30:,.1f} GB of memory before "
        f"anything trains; sweep fewer (a smaller n, fewer points or values per axis) or split the space into "
        f"several sweeps"
    )


def plan_round(
    settings: Settings,
    data: Dataset,
    configs: list[Mapping[str, Any]],
    first_number: int,
    first_config: int,
    round_index: int,
) -> tuple[list[Trial], list[Group], list[str]]:
    """One round's configurations -> numbered trials (each configuration x `seeds`), groups, swept names.

    Trial numbers continue from `first_number`, configuration indices from `first_config`,
    so numbers stay unique across rounds. Conditional hyperparameters (`registry.CONDITIONAL`) are
    handled as Optuna does: a configuration whose optimizer and schedule do not read a value is the
    same training whatever the value, so configurations that differ only there are trained once;
    a swept hyperparameter that no trial reads is refused, and an ignored fixed one warned about.
    A round of more than MAX_TRIALS trials is refused (`check_round_size`).
    """
    check_round_size(len(configs), settings)
    trials = []
    swept = dict.fromkeys(settings.space)  # the table's params_ columns: the space's names, then any a strategy adds
    where = f"the trials {type(settings.strategy).__name__} asked for"
    shared = registry.resolve({**settings.defaults, **settings.strategy.fixed()})  # checked once, not per trial
    read_by: dict[tuple[str, str], Callable] = {}  # (optimizer, schedule) -> the values of what such a trial reads
    batch_sizes: set[int] = set()  # checked against the data
    seen: dict[tuple, Mapping[str, Any]] = {}
    index = 0
    for config in configs:
        hparams = dict(shared)
        for name, value in config.items():
            if name not in swept:
                registry.check_name(name, where=where)
                swept[name] = None
            value = registry.normalize(name, value)
            registry.check_value(name, value)
            hparams[name] = value
        kind = (hparams["optimizer"], hparams["schedule"])
        if kind not in read_by:
            read_by[kind] = operator.itemgetter(*sorted(registry.reads(hparams)))
        effective = (kind, read_by[kind](hparams))
        if effective in seen and seen[effective] != config:
            continue  # the same training as an earlier configuration: only unread values differ
        seen[effective] = config
        if hparams["batch_size"] not in batch_sizes:
            check_batch_size(data, hparams["batch_size"])
            batch_sizes.add(hparams["batch_size"])
        number = first_number + index * settings.seeds
        trials.extend([Trial(number + s, first_config + index, s, hparams, round_index) for s in range(settings.seeds)])
        index += 1
    check_reads(settings.space, trials)
    groups = group_trials(trials, data, settings)
    return trials, groups, list(swept)


def group_trials(trials: list[Trial], data: Dataset, settings: Settings) -> list[Group]:
    """Trials grouped by structure, in order of first appearance, each group chunked to fit the budget.

    With `settings.pad_to` (a multi-round strategy's `round_size()` x seeds), every group's chunks are sized as
    if it had `pad_to` members, whatever its own count: each round then trains a structure at the same
    population size (padding members are masked and never reach the table), so one compiled program
    serves that structure in every round.

    `settings.budget_bytes` is per device: a chunk holds up to the device count times what fits on one
    (and at most `max_population` trials); its population is padded to a multiple of the device count.
    With `settings.cache_bytes` (a CPU's last-level cache) a chunk also holds at most the members that
    train fastest together (`memory.fastest_members`: on a CPU a larger population is slower per member
    once its state outgrows the cache; the devices of a CPU share that cache). With `settings.lanes` > 1
    the chunks train that many at a time (each fits a share of the budget) and a group is also cut
    into chunks for them (`sweeps.lane_plan.lane_chunk_size`).
    """
    devices, cache_bytes, max_population = settings.layout.count, settings.cache_bytes, settings.max_population
    by_fields: dict[tuple, list[Trial]] = {}
    for trial in trials:
        by_fields.setdefault(trial_fields(trial.hparams), []).append(trial)
    by_structure: dict[Structure, list[Trial]] = {structure_of(m[0].hparams, data): m for m in by_fields.values()}
    groups = []
    for structure, members in by_structure.items():
        budget = settings.budget_bytes // settings.lanes  # lanes hold that many chunks at once
        fits = devices * memory.members_that_fit(structure, data.n_train, data.n_val, budget)
        if cache_bytes is not None:
            fits = min(fits, memory.fastest_members(structure, cache_bytes))
        if max_population is not None:
            fits = min(fits, max_population)
        total = settings.pad_to or len(members)
        size = lane_chunk_size(structure, total, memory.chunk_size(total, fits), settings.lanes)
        per_device = -(-size // devices)
        estimate = memory.population_bytes(structure, per_device, data.n_train, data.n_val)
        groups.append(Group(structure, tuple(members), size, estimate, devices))
    return groups
