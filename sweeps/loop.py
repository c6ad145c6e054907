"""The sweep loop: the one place where strategies, checkpoints and devices meet.

`SweepLoop.run()` drives a whole sweep, round by round:

    ask the strategy (once per round) -> plan the round (trials, groups, chunks)
    for each chunk: initialise its population -> place it on devices
        for each epoch: run the compiled epoch -> record metrics by trial number
                        -> between epochs: checkpoint seam, strategy-decision seam
        (after its first epoch: compile the next new structure's programs in the background)
    tell the strategy the round's rows -> another round?

It is the only code that drives a strategy through its rounds (`sweeps.plan` starts it and asks
for the first). A multi-round strategy's `round_size()` pads each round's populations to one size
(`Settings.pad_to`), so every round of a structure reuses its compiled epoch. The compiled epoch
(`sweeps.engine`) knows nothing of strategies, tables or files; the loop
hands it populations and takes back metrics.

Where the capabilities plug in (each a method of the loop; the larger ones in mixins):
  - `place`: a population goes onto devices: its trial axis split over a mesh (`sweeps.devices`);
  - `after_epoch` (`sweeps.decisions`): a strategy's between-epoch decisions come back as arrays
    applied by `sweeps.engine.edits`;
  - `save` / `restore` (`sweeps.resuming`): checkpoints of the position (`LoopPosition`: round,
    work item, epoch), the chunk's population, the records and the kept models;
  - `compile_ahead` (`sweeps.compile_ahead`): the next work item's programs compiled while this
    one trains; `compile_times` (`sweeps.compiling`) holds the compile seconds per structure;
  - `train_round_in_lanes` (`sweeps.lanes`): on a CPU, a round's populations trained side by side,
    one work item per core (each lane compiles its item's programs as it starts it).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from sweeps import distributed
from sweeps.checkpoints import Checkpoints
from sweeps.chunks import ChunkRunner, controls_for, epochs_of, new_population
from sweeps.compile_ahead import CompilingMixin
from sweeps.compiling import Ahead, CompileTimes
from sweeps.data import Dataset
from sweeps.decisions import DecisionsMixin
from sweeps.engine.epoch import Split
from sweeps.engine.population import Population
from sweeps.lane_plan import lane_count
from sweeps.lanes import LanesMixin
from sweeps.planning import Group, Plan, Trial, plan_round, work_items
from sweeps.progress import Progress
from sweeps.records import Records
from sweeps.results import build_frames
from sweeps.resuming import LoopPosition, ResumingMixin, configs_of
from sweeps.trained import KeptModels


class Interrupted(Exception):
    """The sweep stopped on a signal (Ctrl-C, SIGTERM) after saving a checkpoint; `sweeps resume` continues it."""

    def __init__(self, signum: int, run_dir: str | None, step: int | None):
        self.signum, self.run_dir, self.step = signum, run_dir, step
        name = signal.Signals(signum).name
        where = f"checkpoint {step} saved; continue with: sweeps resume {run_dir}" if step else "no checkpoint"
        super().__init__(f"interrupted by {name} after the current epoch: {where}")


class SweepLoop(DecisionsMixin, CompilingMixin, ResumingMixin, LanesMixin):
    """Drives a sweep from its planned first round to the last round's results.

    Args:
      plan: the checked settings and the first round (`sweeps.plan`).
      data: the data set the plan was made for.
      seed: the sweep seed.
      progress: show a progress bar.
      checkpoints: where checkpoints go (`sweeps.checkpoints.Checkpoints`), or None for none.
      fingerprints: the configuration's and the data's, recorded in each checkpoint.
      restores: the fingerprints of the checkpoints this run may continue (its own; a fork's also those of
        the run it forked); None for a new run, which never restores one.
      keep_models: how many of the best trials' best-epoch parameters to keep.
    """

    def __init__(
        self,
        plan: Plan,
        data: Dataset,
        seed: int,
        progress: bool = False,
        checkpoints: Checkpoints | None = None,
        fingerprints: Mapping[str, str] | None = None,
        restores: list[Mapping[str, str]] | None = None,
        keep_models: int = 0,
    ):
        self.settings = plan.settings
        self.data, self.seed = data, seed
        self.rounds: list[tuple[list[Trial], list[Group]]] = [(list(plan.trials), list(plan.groups))]
        self.configs: list[list[dict]] = [configs_of(plan.trials, self.settings.seeds)]
        self.swept: dict[str, None] = dict.fromkeys(plan.swept)
        self.records = Records()
        stop = self.settings.early_stopping
        self.stop_metric = stop["metric"] if stop else None
        self.controls = controls_for(data, stop, self.settings.divergence_threshold)
        self.progress = Progress(self.settings.objective, progress)
        self.checkpoints = checkpoints
        self.fingerprints = dict(fingerprints or {})
        self.restores = None if restores is None else [dict(f) for f in restores]
        self.kept = KeptModels(keep_models, config_of=self.config_of)
        self._configs: dict[int, tuple[int, int]] = {}  # trial number -> (configuration, its trials)
        self.position = LoopPosition()
        self._signal: int | None = None
        self.pruned: dict[int, int] = {}  # trial number -> the epochs it had trained when a strategy stopped it
        self.parents: np.ndarray | None = None  # (slots,) whose weights each member carries (population based)
        self.refilled: list[Trial] = []  # trials a strategy started in recycled slots
        self.devices = plan.settings.layout
        data_splits = (Split(data.x_train, data.y_train), Split(data.x_val, data.y_val))
        self.splits = self.devices.replicate(jax.tree.map(np.asarray, data_splits))  # once per sweep
        self.compile_times = CompileTimes()
        self._ahead = Ahead()
        self._compiled: set[tuple[Any, int]] = set()  # (structure, population) whose programs are compiled or compiling
        self.lanes = 1  # the most work items trained side by side so far (`sweeps.lanes`)

    @property
    def trials(self) -> list[Trial]:
        """Every trial planned so far, across rounds, in number order."""
        return [t for trials, _ in self.rounds for t in trials]

    def config_of(self, number: int) -> tuple[int, int]:
        """The configuration trial `number` belongs to and how many trials (seeds) it has."""
        if number not in self._configs:  # a new round or recycled slots added trials (of new configurations)
            new = []
            for trials, _ in reversed(self.rounds):  # they are at the end: not every trial is read again
                known = next((i for i in range(len(trials) - 1, -1, -1) if trials[i].number in self._configs), -1)
                new.extend(trials[known + 1 :])
                if known >= 0:
                    break
            if not any(t.number == number for t in new):  # not where expected: map every trial afresh
                new, self._configs = self.trials, {}
            sizes = collections.Counter(t.config for t in new)
            self._configs.update({t.number: (t.config, sizes[t.config]) for t in new})
        return self._configs[number]

    def run(self) -> Records:
        """Trains every round (from the newest checkpoint, when resuming); returns the records."""
        strategy = self.settings.strategy
        restored = self.restore() if self.restores is not None else {}
        try:
            with self._signals(), self.compile_times.listening():
                while True:
                    round_index = self.position.round
                    trials, groups = self.rounds[round_index]
                    self.train_round(groups, restored)
                    restored = {}
                    strategy.tell(self.table(trials))
                    if not strategy.another_round():
                        break
                    self.plan_next_round(round_index + 1)
                    self.position = LoopPosition(round_index + 1)
                    self.save()
            if self.checkpoints is not None:
                self.checkpoints.wait()
        finally:
            self._ahead.close()
            self.progress.close()
        return self.records

    def plan_next_round(self, round_index: int, configs: list[dict] | None = None) -> None:
        """Asks the strategy once for the next round (or takes a restored round's configurations) and plans it."""
        if configs is None:
            configs = distributed.agreed(self.settings.strategy.ask(self.settings.space))  # process 0's, everywhere
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
        self.configs.append([dict(c) for c in configs])

    def train_round(self, groups: list[Group], restored: dict[int, Population]) -> None:
        """Trains the round's chunks from the current position; `restored` holds the populations a
        checkpoint had in flight, by work index. On a CPU the items train side by side (`sweeps.lanes`)."""
        work = work_items(groups)
        lanes = lane_count(work[self.position.work :], self.settings.strategy, self.devices, self.settings.lanes)
        if lanes > 1 or self.position.lanes:
            self.lanes = max(self.lanes, lanes)
            self.train_round_in_lanes(work, lanes, restored)
            return
        population = restored.get(self.position.work)
        self.progress.round(self.position.round, self.settings.strategy.planned_rounds())
        self.progress.add_total(sum(epochs_of(chunk) for _, chunk in work[self.position.work :]), self.position.epoch)
        times = self.compile_times
        while self.position.work < len(work):
            group, chunk = work[self.position.work]
            structure = group.structure
            what = f"{structure.label()} (population {group.population})"
            times.waited(structure, self._ahead.wait((structure, group.population), what))
            self._compiled.add((structure, group.population))
            runner = self.runner(group)
            if population is None:
                with times.program(structure, "initialisation", group.population):
                    pop = self.place(
                        new_population(structure, chunk, group.population, self.seed, self.settings.init, self.devices)
                    )
            else:
                pop, population = self.place(population), None
            if self.position.epoch == 0 and self.settings.strategy.tracks_hparams:  # lineage starts at itself
                self.parents = np.asarray(self.devices.fetch(pop.numbers)).copy()
            epochs = epochs_of(chunk)
            with times.program(structure, "epoch", pop.size):
                pending = runner.start(pop, self.position.epoch)
            first = True
            while True:
                pop, on_device = pending
                due = self.checkpoints is not None and self.checkpoints.due()
                ahead = self._runs_ahead() and not due and self._signal is None and self.position.epoch + 1 < epochs
                if ahead:  # epoch e+1 is dispatched before epoch e's metrics are read: the host's work overlaps it
                    with times.program(structure, "epoch", pop.size):
                        pending, pop = runner.start(pop, self.position.epoch + 1), None  # pop is donated to it
                metrics = self.devices.fetch(on_device)
                if first:  # this item's programs are compiled: the next new structure's compile in the background
                    self.compile_ahead(work[self.position.work + 1 :])
                    first = False
                if self.settings.strategy.tracks_hparams:
                    metrics = {**metrics, **self._lineage(pop)}
                self.records.add(metrics)
                self.position = dataclasses.replace(self.position, epoch=self.position.epoch + 1)
                self.progress.epoch(metrics, group.structure.label(), self.position.epoch, epochs, self.checkpoints)
                if ahead:
                    live = bool(metrics["active"].any())  # all `after_epoch` does for a strategy that runs ahead
                else:
                    with times.program(structure, "edits", pop.size):
                        pop, live = self.after_epoch(pop, metrics, group)
                if not live:
                    if ahead:  # every member had stopped: the epoch ahead trained nobody and changed nothing
                        pop = pending[0]
                    self.progress.skip(epochs - self.position.epoch)  # every member stopped early
                    break
                if not ahead:
                    self._check_signal(pop, due=due)
                    with times.program(structure, "epoch", pop.size):  # a repacked population compiles here
                        pending = runner.start(pop, self.position.epoch)
            self.kept.offer(pop, skip=self.pruned, fetch=self.devices.fetch)
            self.position = LoopPosition(self.position.round, self.position.work + 1)
            self.save()
            self._check_signal(None)

    def runner(self, group: Group) -> ChunkRunner:
        """The group's compiled epoch with the sweep's data on its devices."""
        return ChunkRunner(
            group.structure,
            self.data,
            self.seed,
            self.stop_metric,
            self.controls,
            self.settings.objective,
            splits=self.splits,
            fetch=self.devices.fetch,
        )

    def _runs_ahead(self) -> bool:
        """Whether the next epoch may be dispatched before this one's metrics are read: where nothing between
        epochs reads them (no strategy decisions or lineage), no early stopping (no epoch is dispatched for
        members that all stopped) and one process (checkpoint timing needs no agreement)."""
        strategy = self.settings.strategy
        return (
            not strategy.acts_between_epochs
            and not strategy.tracks_hparams
            and self.stop_metric is None
            and self.devices.processes == 1
        )

    def place(self, pop: Population) -> Population:
        """Device placement seam: the population's trial axis split over the sweep's devices."""
        return self.devices.place(pop)

    def table(self, trials: list[Trial]):
        """The trial table of `trials` from the records so far (what `tell` receives)."""
        table, _ = build_frames(
            [dataclasses.asdict(t) for t in trials],
            list(self.swept),
            self.records.by_trial(),
            self.settings.objective,
            self.pruned,
        )
        return table

    # --- signals -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _signals(self):
        """Ctrl-C and SIGTERM finish the epoch, save, and stop; a second Ctrl-C stops at once."""
        if self.checkpoints is None or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._signal is not None:  # the second one: stop now, the newest checkpoint stays intact
                raise KeyboardInterrupt
            self._signal = signum
            print(
                f"\n{signal.Signals(signum).name}: finishing the epoch and saving a checkpoint "
                "(press Ctrl-C again to stop at once)",
                file=sys.stderr,
                flush=True,
            )

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _check_signal(self, pop: Population | None, due: bool = False) -> None:
        """Saves when due, or saves and stops after a signal; every process takes the same branch."""
        if self.checkpoints is None:
            return
        due, stop = distributed.any_everywhere(due, self._signal is not None)
        if not stop:
            if due:
                self.save(pop)
            return
        self._signal = self._signal or signal.SIGTERM  # another process was signalled: stop together
        step = self.save(pop)
        self.checkpoints.wait()
        raise Interrupted(self._signal, str(self.checkpoints.folder.parent), step)
