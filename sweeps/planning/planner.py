"""Planning a sweep: settings checked against the data, trials numbered, grouped by structure, chunked.

Nothing here compiles, trains or asks a strategy. `plan(config, data, resources)` checks what
depends on the data and returns a `Plan`; `Plan.round()` turns a round's configurations (what the
driver asked the strategy for) into numbered trials and structure groups, each sized to fit the
memory budget, before the first compilation, with the name, the value and the rule of every
refusal.
"""

from __future__ import annotations

import collections
import dataclasses
import operator
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from sweeps.data import Dataset, check_batch_size
from sweeps.driver.devices import Devices
from sweeps.engine import Structure, memory, n_params, structure_of, trial_fields
from sweeps.engine import hparams as registry
from sweeps.planning import fusion
from sweeps.planning.checks import (
    check_code_fits,
    check_early_stopping,
    check_metric,
    check_model_fits,
    check_reads,
)
from sweeps.planning.lanes import (
    LANE_FEWEST,
    LANE_PARAMETERS,
    ONE_LANE,
    lane_chunk_size,
    lane_count,
    lanes_reason,
    planned_lanes,
)
from sweeps.settings import Resources, SweepConfig
from sweeps.strategies import Strategy

# The most trials one round may plan. Every trial is a `Trial` holding its resolved hyperparameters: about
# TRIAL_BYTES of host memory with its configuration (benchmarks/README.md, "The 100k-trial run (memory)"). A
# larger round is refused before the strategy is asked, with its count and that memory, instead of filling the
# machine's memory while it plans.
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
    fused: tuple[Structure, ...] = ()  # the trials' own structures where this group fuses several, else ()

    def __post_init__(self):
        if len(self.fused) == 1:
            object.__setattr__(self, "fused", ())

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
class Plan:
    """How a sweep will be planned, round by round: the checked settings against the data, the machine's resources,
    and what follows from them (the lanes groups are cut for, the population size every round is padded to).

    `plan(config, data, resources)` makes one and asks no strategy: the scheduler (`sweeps.driver.rounds`) asks the
    strategy for each round's configurations and turns them into trials and groups with `Plan.round`.
    """

    config: SweepConfig
    data: Dataset
    resources: Resources

    @property
    def strategy(self) -> Strategy:
        return self.config.strategy

    @property
    def devices(self) -> Devices:
        return self.resources.devices

    @property
    def budget_bytes(self) -> int:
        return self.resources.memory_budget

    @property
    def lanes(self) -> int:
        """The lanes groups are cut for (`planning.lanes.planned_lanes`: 1 where the strategy acts between epochs)."""
        return planned_lanes(self.config.strategy, self.resources.lanes)

    @property
    def cache_bytes(self) -> int | None:
        """The cache chunks are also sized within (a strategy that acts inside populations keeps them whole)."""
        return None if self.config.strategy.acts_between_epochs else self.resources.cache_bytes

    @property
    def pad_to(self) -> int | None:
        """Members per population in every round: a multi-round strategy's `round_size()` x seeds."""
        size = self.config.strategy.round_size()
        return None if size is None else int(size) * self.config.seeds

    def __repr__(self) -> str:
        return (
            f"Plan({self.config.strategy!r} on {self.data.n_features} features; devices {self.devices.describe()}; "
            f"budget {self.budget_bytes / 2**20:.0f} MB per device; lanes {self.lanes})"
        )

    def round(
        self,
        configs: list[Mapping[str, Any]],
        first_number: int = 0,
        first_config: int = 0,
        index: int = 0,
        queued: list[Mapping[str, Any]] = (),
    ) -> Round:
        """One round's configurations (what the strategy asked for) -> numbered trials and structure groups.

        Trial numbers continue from `first_number`, configuration indices from `first_config`,
        so numbers stay unique across rounds. Conditional hyperparameters (`registry.CONDITIONAL`) are
        handled as Optuna does: a configuration whose optimizer and schedule do not read a value is the
        same training whatever the value, so configurations that differ only there are trained once;
        a swept hyperparameter that no trial reads is refused, and an ignored fixed one warned about.
        A round of more than MAX_TRIALS trials is refused (`check_round_size`). `queued`: configurations the
        strategy may start later in freed slots (`Strategy.queued`), which fused groups make room for.
        """
        config, data = self.config, self.data
        check_round_size(len(configs), self)
        trials = []
        swept = dict.fromkeys(config.space)  # the table's params_ columns: the space's names, then any a strategy adds
        where = f"the trials {type(config.strategy).__name__} asked for"
        own = config.model_hparams  # the user's model's call hyperparameters (None: the built-in MLP)
        shared = registry.resolve({**config.defaults, **config.strategy.fixed()}, own)  # checked once, not per trial
        read_by: dict[tuple[str, str], Callable] = {}  # (optimizer, schedule) -> the values of what such a trial reads
        batch_sizes: set[int] = set()  # checked against the data
        seen: dict[tuple, Mapping[str, Any]] = {}
        position = 0
        for asked in configs:
            hparams = dict(shared)
            for name, value in asked.items():
                if name not in swept:
                    registry.check_name(name, where=where, model=own)
                    swept[name] = None
                value = registry.normalize(name, value)
                registry.check_value(name, value)
                hparams[name] = value
            kind = (hparams["optimizer"], hparams["schedule"])
            if kind not in read_by:
                read_by[kind] = operator.itemgetter(*sorted(registry.reads(hparams, own)))
            effective = (kind, read_by[kind](hparams))
            if effective in seen and seen[effective] != asked:
                continue  # the same training as an earlier configuration: only unread values differ
            seen[effective] = asked
            if hparams["batch_size"] not in batch_sizes:
                check_batch_size(data, hparams["batch_size"])
                batch_sizes.add(hparams["batch_size"])
            number = first_number + position * config.seeds
            trials.extend(Trial(number + s, first_config + position, s, hparams, index) for s in range(config.seeds))
            position += 1
        check_reads(config.space, trials, own)
        later = [{**shared, **{name: registry.normalize(name, v) for name, v in asked.items()}} for asked in queued]
        groups = group_trials(trials, self, later)
        return Round(self, index, tuple(trials), tuple(groups), tuple(swept))


@dataclasses.dataclass(frozen=True)
class Round:
    """One round as planned: its trials in number order, grouped by structure and chunked (`sweeps run --dry-run`
    prints the first)."""

    plan: Plan
    index: int
    trials: tuple[Trial, ...]
    groups: tuple[Group, ...]
    swept: tuple[str, ...]  # hyperparameter names the trials set (the table's params_ columns)

    @property
    def work(self) -> list[tuple[Group, tuple[Trial, ...]]]:
        """The round's work items in training order (`work_items`)."""
        return work_items(self.groups)

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
                    "parameters": n_params(g.structure),  # per member (padded, in a fused group)
                    "fused": len(g.fused) or 1,  # structures trained in this group's one program
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
            f"Round({self.index}: {len(self.trials):,} trials of {self.plan.strategy!r} in {len(self.groups)} "
            f"structure groups [{groups}{more}]; swept {list(self.swept)}; devices {self.plan.devices.describe()}; "
            f"at most {memory:.1f} MB per device for a chunk, budget {self.plan.budget_bytes / 2**20:.0f} MB; "
            f"describe() and table() show the whole round)"
        )

    def describe(self) -> str:
        """The round as `sweeps run --dry-run` prints it: devices, groups, members and memory per device."""
        plan = self.plan
        lines = [
            f"{len(self.trials)} trials in {len(self.groups)} structure groups: "
            f"{self.programs} compiled programs to build",
            f"devices: {plan.devices.describe()}; each population is padded to a multiple of "
            f"{plan.devices.count} and split over them (per_device members each); memory budget "
            f"{plan.budget_bytes / 2**20:.0f} MB per device (memory_mb: the estimate per device; parameters: per "
            "member)",
        ]
        if self.groups:
            data = plan.data
            if len(data.input_shape) == 1:
                lines.append(
                    f"data: {data.n_features} features in (after encoding: one-hot and date columns; memory_mb counts "
                    "them)"
                )
            else:
                lines.append(f"data: rows of shape {data.input_shape} ({data.n_features} values each)")
        if plan.cache_bytes is not None:
            lines.append(
                f"chunks also hold at most the members that train fastest together on this CPU "
                f"(their step state within its {plan.cache_bytes / 2**20:.0f} MiB cache)"
            )
        lanes = lane_count(len(self.work), plan.lanes)
        if lanes > 1:
            lines.append(
                f"lanes: {lanes} work items train side by side, {lanes_reason()} (a population alone leaves "
                f"cores idle; groups cut into chunks of at most {LANE_PARAMETERS:,} parameters where {LANE_FEWEST} "
                "members fit; SWEEPS_LANES=1: one at a time)"
            )
        elif plan.resources.lanes > 1 and plan.lanes == 1:
            lines.append(f"lanes: one work item at a time: {ONE_LANE}")
        lines.extend(fused_lines(self.groups, plan.data))
        lines.append(self.table().to_string(index=False))
        return "\n".join(lines)


def fused_lines(groups: tuple[Group, ...], data: Dataset) -> list[str]:
    """The dry run's account of fused groups: which structures share a program and what their padding costs (its
    memory is in the group's memory_mb, the estimate of the padded population)."""
    lines = []
    for i, g in enumerate(groups):
        if not g.fused:
            continue
        shared = g.structure
        counts, first = collections.Counter(), {}  # structures by their trial fields: cheap for a million trials
        for t in g.trials:
            fields = trial_fields(t.hparams, shared.module)
            counts[fields] += 1
            first.setdefault(fields, t)
        own = {
            structure_of(first[f].hparams, data, shared.module, shared.loss, shared.metrics, shared.precision): n
            for f, n in counts.items()
        }
        macs = sum(fusion.multiply_adds(s) * n for s, n in own.items()) or 1
        params = sum(n_params(s) * n for s, n in own.items()) or 1
        extra_macs = fusion.multiply_adds(shared) * len(g.trials) / macs - 1
        extra_params = n_params(shared) * len(g.trials) / params - 1
        named = [(f"hidden {list(s.hidden)} " if s.module is None else "") + f"batch {s.batch_size}" for s in g.fused]
        lines.append(
            f"fused: group {i} trains {len(g.fused)} structures in one program ("
            + ", ".join(named[:6])
            + (f", and {len(named) - 6} more" if len(named) > 6 else "")
            + (f"; micro-batches of {shared.batch_size}" if shared.accumulate > 1 else "")
            + f"): the padding adds {100 * extra_macs:.0f}% multiply-adds and {100 * extra_params:.0f}% parameters; "
            "each member computes exactly its own network (fuse=false: one program each)"
        )
    return lines


def plan(config: SweepConfig, data: Dataset, resources: Resources | None = None) -> Plan:
    """Checks a sweep's settings against the data and the machine; asks no strategy and trains nothing.

    `resources` default to `Resources.detect()` (every device, half of each one's free memory, one lane per
    CPU core). What does not depend on the data was checked when `config` was made (`SweepConfig`).

    Examples:
      >>> import sweeps
      >>> from sweeps.settings import SweepConfig
      >>> data = sweeps.load_csv("data/telco_customer_churn.csv", target="Churn")  # doctest: +SKIP
      >>> sweep = plan(SweepConfig(space={"learning_rate": [1e-3, 1e-2]}), data)  # doctest: +SKIP
      >>> sweep.round([{"learning_rate": 1e-3}, {"learning_rate": 1e-2}]).groups  # doctest: +SKIP
    """
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a sweeps.Dataset (from sweeps.load_csv), but got {type(data).__name__}")
    if not isinstance(config, SweepConfig):
        raise TypeError(f"config must be a sweeps.SweepConfig, but got {type(config).__name__}")
    resources = Resources.detect() if resources is None else resources
    dtype = check_model_fits(config.module, data)
    check_code_fits(config.loss, config.own_metrics, data, dtype)  # the user's loss and metrics, traced
    check_metric("objective", config.objective, data.task, config.own_metrics)
    # its metric against the task's and the user's (its keys: SweepConfig)
    check_early_stopping(config.early_stopping, data.task, config.own_metrics)
    epochs = registry.normalize("epochs", config.epochs)
    registry.check_value("epochs", epochs)  # before a strategy compares a budget of its own with it
    return Plan(config, data, resources)


def check_round_size(configs: int | None, plan: Plan) -> None:
    """Refuses a round of more than MAX_TRIALS trials (`configs` x seeds) at once, with its count and the memory
    its plan would take; None (a strategy that cannot count before asking) passes."""
    if configs is None:
        return
    seeds = plan.config.seeds
    trials = configs * seeds
    if trials <= MAX_TRIALS:
        return
    counted = f" ({configs:,} configurations x {seeds} seeds)" if seeds > 1 else ""
    raise ValueError(
        f"{plan.strategy!r} asks for {trials:,} trials in one round{counted}, more than the {MAX_TRIALS:,} a round "
        f"may plan: their plan alone would take about {trials * TRIAL_BYTES / 2**30:,.1f} GB of memory before "
        f"anything trains; sweep fewer (a smaller n, fewer points or values per axis) or split the space into "
        f"several sweeps"
    )


def group_trials(trials: list[Trial], plan: Plan, queued: list[Mapping[str, Any]] | None = None) -> list[Group]:
    """Trials grouped by structure, in order of first appearance, each group chunked to fit the budget.

    Structures that can share a program are fused into one group where the cost model says it pays
    (`sweeps.planning.fusion`; `plan.config.fuse` False: never). `queued`: resolved hyperparameters of trials a
    strategy may start later in freed slots (halving's refill): fused groups are made to hold them too.

    With `plan.pad_to` (a multi-round strategy's `round_size()` x seeds), every group's chunks are sized as
    if it had `pad_to` members, whatever its own count: each round then trains a structure at the same
    population size (padding members are masked and never reach the table), so one compiled program
    serves that structure in every round.

    `plan.budget_bytes` is per device: a chunk holds up to the device count times what fits on one
    (and at most `max_population` trials); its population is padded to a multiple of the device count.
    With `plan.cache_bytes` (a CPU's last-level cache) a chunk also holds at most the members that
    train fastest together (`memory.fastest_members`: on a CPU a larger population is slower per member
    once its state outgrows the cache; the devices of a CPU share that cache). With `plan.lanes` > 1
    the chunks train that many at a time (each fits a share of the budget) and a group is also cut
    into chunks for them (`sweeps.planning.lanes.lane_chunk_size`).
    """
    data, devices, cache_bytes, module = plan.data, plan.devices.count, plan.cache_bytes, plan.config.module
    by_fields: dict[tuple, list[Trial]] = {}
    for trial in trials:
        by_fields.setdefault(trial_fields(trial.hparams, module), []).append(trial)
    loss, own, precision = plan.config.loss, plan.config.own_metrics, plan.config.precision
    by_structure = {structure_of(m[0].hparams, data, module, loss, own, precision): m for m in by_fields.values()}
    parts = [(s, [t.hparams["epochs"] for t in members]) for s, members in by_structure.items()]
    for hparams in queued or ():  # a strategy's later trials (refill) count, so the group fused has room for them
        structure = structure_of(hparams, data, module, loss, own, precision)
        parts.append((structure, [hparams["epochs"]]))
        by_structure.setdefault(structure, [])
    fused = fusion.groups(parts, data.n_train, data.n_val, plan.config.fuse, not plan.strategy.copies_members)
    groups = []
    for candidate in fused:
        structure = candidate.structure
        members = sorted(
            (t for part in dict.fromkeys(part for part, _ in candidate.parts) for t in by_structure[part]),
            key=lambda t: t.number,
        )
        if not members:
            continue  # only a strategy's queued trials: none starts until a slot frees
        budget = plan.budget_bytes // plan.lanes  # lanes hold that many chunks at once
        fits = devices * memory.members_that_fit(structure, data.n_train, data.n_val, budget)
        if cache_bytes is not None:
            fits = min(fits, memory.fastest_members(structure, cache_bytes))
        if plan.config.max_population is not None:
            fits = min(fits, plan.config.max_population)
        total = plan.pad_to or len(members)
        size = lane_chunk_size(structure, total, memory.chunk_size(total, fits), plan.lanes)
        per_device = -(-size // devices)
        estimate = memory.population_bytes(structure, per_device, data.n_train, data.n_val)
        own_structures = tuple(dict.fromkeys(part for part, _ in candidate.parts))
        groups.append(Group(structure, tuple(members), size, estimate, devices, own_structures))
    return groups
