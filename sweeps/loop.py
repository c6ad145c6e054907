"""The sweep loop: the one place where strategies, checkpoints and devices meet.

`SweepLoop.run()` drives a whole sweep, round by round:

    ask the strategy (once per round) -> plan the round (trials, groups, chunks)
    for each chunk: initialise its population -> place it on devices
        for each epoch: run the compiled epoch -> record metrics by trial number
                        -> between epochs: checkpoint seam, strategy-decision seam
    tell the strategy the round's rows -> another round?

It is the only code that calls a strategy. The compiled epoch
(`sweeps.engine`) knows nothing of strategies, tables or files; the loop
hands it populations and takes back metrics.

Where later capabilities plug in (each is a method here, trivial today):
  - `place`: a population goes onto devices (sharding over a mesh);
  - `after_epoch`: a checkpoint is written, and a strategy's between-epoch
    decisions come back as arrays applied by `sweeps.engine.edits`;
  - `resume_point` (the position `LoopPosition`): where a restored run continues.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sweeps.data import Dataset
from sweeps.engine import keys
from sweeps.engine.epoch import Controls, Split, make_train_epoch
from sweeps.engine.metrics import direction
from sweeps.engine.population import PADDING, Population, init_population, stack_hparams
from sweeps.engine.structure import Structure
from sweeps.planning import Group, Plan, Trial, plan_round
from sweeps.records import Records
from sweeps.results import build_frames


@dataclasses.dataclass(frozen=True)
class LoopPosition:
    """Where the loop is: round, the index of the (group, chunk) work item in the round, epoch of the chunk."""

    round: int = 0
    work: int = 0
    epoch: int = 0


def baseline_loss(data: Dataset) -> float:
    """The training loss of predicting the training prior: the class entropy, or the target's variance."""
    y = np.asarray(data.y_train, np.float64)
    if data.task == "regression":
        return float(max(y.var(), 1e-12))  # 1.0 on a target load_csv standardized
    counts = np.bincount(y.astype(np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def controls_for(data: Dataset, stop: Mapping[str, Any] | None, divergence_threshold: float | None) -> Controls:
    """The run-wide numbers every compiled epoch reads."""
    limit = math.inf if divergence_threshold is None else divergence_threshold * baseline_loss(data)
    return Controls(
        divergence_limit=jnp.float32(limit),
        patience=jnp.int32(stop["patience"] if stop else 0),
        min_delta=jnp.float32(stop["min_delta"] if stop else 0.0),
        y_std=jnp.float32(data.y_std),
    )


def new_population(structure: Structure, chunk: tuple[Trial, ...], size: int, seed: int) -> Population:
    """A fresh population of `size` members for the chunk's trials (padding members past them)."""
    numbers = np.full(size, PADDING, np.int64)
    numbers[: len(chunk)] = [t.number for t in chunk]
    return init_population(structure, stack_hparams([t.hparams for t in chunk], size), numbers, seed)


def train_chunk(
    structure: Structure,
    chunk: tuple[Trial, ...],
    size: int,
    data: Dataset,
    seed: int,
    stop_metric: str | None,
    controls: Controls,
    after_epoch: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> tuple[Population, list[dict[str, np.ndarray]]]:
    """Trains one chunk as a population of `size` members (padded) until every member is done.

    The loop's inner part, usable alone (tests): returns the final population and the
    per-epoch metrics ((size,) arrays per name, `number` among them).
    """
    loop = _ChunkRunner(structure, data, seed, stop_metric, controls)
    pop = new_population(structure, chunk, size, seed)
    history = []
    for epoch in range(max(t.hparams["epochs"] for t in chunk)):
        pop, metrics = loop.epoch(pop, epoch)
        history.append(metrics)
        if after_epoch is not None:
            after_epoch(metrics)
        if not metrics["active"].any():
            break
    return pop, history


class _ChunkRunner:
    """One structure's compiled epoch with the data on the device."""

    def __init__(self, structure: Structure, data: Dataset, seed: int, stop_metric: str | None, controls: Controls):
        self.structure, self.seed, self.controls = structure, seed, controls
        self.train = Split(jnp.asarray(data.x_train), jnp.asarray(data.y_train))
        self.val = Split(jnp.asarray(data.x_val), jnp.asarray(data.y_val))
        self.epoch_fn = make_train_epoch(structure, stop_metric)

    def epoch(self, pop: Population, epoch: int) -> tuple[Population, dict[str, np.ndarray]]:
        order_key = keys.batch_order_key(self.seed, epoch, self.structure.batch_size)
        pop, metrics = self.epoch_fn(pop, self.train, self.val, order_key, self.controls)
        return pop, jax.device_get(metrics)


class SweepLoop:
    """Drives a sweep from its planned first round to the last round's results.

    Args:
      plan: the checked settings and the first round (`sweeps.plan`).
      data: the data set the plan was made for.
      seed: the sweep seed.
      progress: show a progress bar.
    """

    def __init__(self, plan: Plan, data: Dataset, seed: int, progress: bool = False):
        self.settings = plan.settings
        self.data, self.seed = data, seed
        self.rounds: list[tuple[list[Trial], list[Group]]] = [(list(plan.trials), list(plan.groups))]
        self.swept: dict[str, None] = dict.fromkeys(plan.swept)
        self.records = Records()
        stop = self.settings.early_stopping
        self.stop_metric = stop["metric"] if stop else None
        self.controls = controls_for(data, stop, self.settings.divergence_threshold)
        self.progress = _Progress(self.settings.objective, progress)

    @property
    def trials(self) -> list[Trial]:
        """Every trial planned so far, across rounds, in number order."""
        return [t for trials, _ in self.rounds for t in trials]

    def run(self) -> Records:
        """Trains every round; returns the records of every trial."""
        strategy = self.settings.strategy
        try:
            round_index = 0
            while True:
                trials, groups = self.rounds[round_index]
                self.train_round(groups)
                strategy.tell(self.table(trials))
                if not strategy.another_round():
                    break
                round_index += 1
                self.plan_next_round(round_index)
        finally:
            self.progress.close()
        return self.records

    def plan_next_round(self, round_index: int) -> None:
        """Asks the strategy once for the next round and plans it, numbering on from the last trial."""
        configs = self.settings.strategy.ask(self.settings.space)
        if not configs:
            raise ValueError(f"the strategy {self.settings.strategy!r} asked for no trials in round {round_index}")
        done = self.trials
        trials, groups, swept = plan_round(
            self.settings,
            self.data,
            configs,
            first_number=done[-1].number + 1,
            first_config=done[-1].config + 1,
            round_index=round_index,
        )
        self.swept.update(dict.fromkeys(swept))
        self.rounds.append((trials, groups))

    def train_round(self, groups: list[Group]) -> None:
        work = [(g, chunk) for g in groups for chunk in g.chunks]
        self.progress.add_total(sum(_epochs(chunk) for _, chunk in work))
        for group, chunk in work:
            runner = _ChunkRunner(group.structure, self.data, self.seed, self.stop_metric, self.controls)
            pop = self.place(new_population(group.structure, chunk, group.chunk_size, self.seed))
            epochs = _epochs(chunk)
            for epoch in range(epochs):
                pop, metrics = runner.epoch(pop, epoch)
                self.records.add(metrics)
                self.progress.epoch(metrics, group.structure.label())
                pop = self.after_epoch(pop, metrics)
                if not metrics["active"].any():
                    self.progress.skip(epochs - epoch - 1)  # all members stopped early
                    break

    def place(self, pop: Population) -> Population:
        """Device placement seam: where a population is put onto devices (one device today)."""
        return pop

    def after_epoch(self, pop: Population, metrics: dict[str, np.ndarray]) -> Population:
        """Between-epochs seam: a checkpoint is written and a strategy's decisions are applied here."""
        return pop

    def table(self, trials: list[Trial]):
        """The trial table of `trials` from the records so far (what `tell` receives)."""
        table, _ = build_frames(
            [dataclasses.asdict(t) for t in trials], list(self.swept), self.records.by_trial(), self.settings.objective
        )
        return table


def _epochs(chunk: tuple[Trial, ...]) -> int:
    return max(t.hparams["epochs"] for t in chunk)


class _Progress:
    """The progress bar: epochs done, the structure training, the best objective so far."""

    def __init__(self, objective: str, enabled: bool):
        self.objective = objective
        self.sign = 1.0 if direction(objective) == "minimize" else -1.0
        self.best = math.inf
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=0, unit="epoch", dynamic_ncols=True, disable=None)  # no bar when not a terminal

    def add_total(self, epochs: int) -> None:
        if self.bar is not None:
            self.bar.total += epochs
            self.bar.refresh()

    def epoch(self, metrics: dict[str, np.ndarray], label: str) -> None:
        value = self.sign * metrics[self.objective][metrics["trained"] & ~metrics["diverged"]]
        if value.size and np.isfinite(value).any():
            self.best = min(self.best, float(np.nanmin(value)))
        if self.bar is not None:
            shown = f" | best {self.objective} {self.sign * self.best:.4f}" if math.isfinite(self.best) else ""
            self.bar.set_postfix_str(label + shown)
            self.bar.update(1)

    def skip(self, epochs: int) -> None:
        if self.bar is not None and epochs:
            self.bar.update(epochs)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
