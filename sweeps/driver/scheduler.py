"""The scheduler: the one object that drives every sweep, round by round, work item by work item.

    start the strategy -> for each round:
        ask the strategy (once) -> plan the round (`Plan.round`: trials, groups, work items)
        train the round's work items, up to `lanes` at a time (`sweeps.driver.lanes`):
            a lane builds an item's population, dispatches its epochs (the next one before this one's
            metrics are read, where nothing between epochs reads them) and reads the metrics;
            after every epoch of every item, `_after_epoch`: records by trial number, the strategy's
            between-epoch decisions (`sweeps.driver.decisions`), the callbacks (`sweeps.tracking`), the
            progress bar, kept models at an item's end, a checkpoint when one is due
        tell the strategy the round's rows -> another round?

Its state (`sweeps.driver.state.SweepState`: the round, the next item, the items in flight, the records,
the kept models) is one value that a checkpoint saves whole, in one shape whatever the lane count; a
checkpoint is written once every lane is between epochs (`_between_epochs`). After an item's first
epoch, the next new structure's programs compile in the background (`sweeps.driver.compiling.Ahead`).
The compiled epoch (`sweeps.engine`) knows nothing of strategies, tables or files.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any

import numpy as np

from sweeps.driver import distributed
from sweeps.driver.checkpoints import CheckpointMismatch, Checkpoints
from sweeps.driver.compiling import Programs
from sweeps.driver.decisions import PopulationEdits, lineage
from sweeps.driver.kept_models import KeptModels
from sweeps.driver.lanes import Lanes
from sweeps.driver.populations import (
    epochs_of,
    new_population,
    population_shapes,
)
from sweeps.driver.progress import Progress
from sweeps.driver.records import Records
from sweeps.driver.rounds import ask_round, plan_round, start_strategy
from sweeps.driver.signals import Interrupted, Signals
from sweeps.driver.state import Item, SweepState, canonical, configs_of, trial_from_json
from sweeps.planning.lanes import lane_count, machine_lanes, planned_lanes
from sweeps.planning.planner import Group, Plan, Round, Trial
from sweeps.results.result import build_frames
from sweeps.tracking.callbacks import Delivery, SweepStart


class Scheduler:
    """Drives a planned sweep from its first round to the last round's records.

    Args:
      plan: the sweep's plan (`sweeps.planning.planner`); its strategy is asked for each round here.
      progress: show a progress bar.
      checkpoints: where checkpoints go (`sweeps.driver.checkpoints.Checkpoints`), or None for none.
      fingerprints: the configuration's and the data's, recorded in each checkpoint.
      restores: the fingerprints of the checkpoints this run may continue (its own; a fork's also those of
        the run it forked); None for a new run, which never restores one.
      keep_models: how many of the best trials' best-epoch parameters to keep.
      callbacks: the user's and the trackers' `sweeps.Callback`s, told of every epoch (`sweeps.tracking.callbacks`).
      sweep: what the callbacks are told when the sweep starts (required with callbacks).
    """

    def __init__(
        self,
        plan: Plan,
        progress: bool = False,
        checkpoints: Checkpoints | None = None,
        fingerprints: Mapping[str, str] | None = None,
        restores: list[Mapping[str, str]] | None = None,
        keep_models: int = 0,
        callbacks: list | None = None,
        sweep: SweepStart | None = None,
    ):
        self.plan, self.config, self.strategy = plan, plan.config, plan.strategy
        self.devices = plan.devices
        self.checkpoints = checkpoints
        self.fingerprints = dict(fingerprints or {})
        self.restores = None if restores is None else [dict(f) for f in restores]
        self.state = SweepState(KeptModels(keep_models, config_of=self.config_of))
        self.rounds: list[Round] = []  # every round planned so far (derived from state.configs)
        self.swept: dict[str, None] = dict.fromkeys(plan.config.space)
        self.progress = Progress(self.config.objective, progress, self.config.direction(self.config.objective))
        self.edits = PopulationEdits(plan, self.devices, self.progress.add_total)
        self.lanes = 1  # the most work items trained side by side so far
        self._configs: dict[int, tuple[int, int]] = {}  # trial number -> (configuration, its trials)
        self.signals = Signals()
        self._due = False  # a checkpoint is due once every lane is between epochs
        self.programs = Programs(plan)
        objective = self.config.objective
        swept = lambda: tuple(self.swept)  # noqa: E731 - a later round may sweep more
        self.callbacks = Delivery(callbacks or [], objective, self.config.direction(objective), swept, self.trial_of)
        self.sweep = sweep
        self._numbers: dict[int, Trial] = {}

    # --- rounds --------------------------------------------------------------------------

    @property
    def trials(self) -> list[Trial]:
        """Every trial planned so far, across rounds (with those started in recycled slots), in number order."""
        out = []
        for index, planned in enumerate(self.rounds):
            out.extend(planned.trials)
            out.extend(t for t in self.state.refilled if t.round == index)
        return out

    def round_trials(self, index: int) -> list[Trial]:
        return [*self.rounds[index].trials, *(t for t in self.state.refilled if t.round == index)]

    def config_of(self, number: int) -> tuple[int, int]:
        """The configuration trial `number` belongs to and how many trials (seeds) it has."""
        if number not in self._configs:  # a new round or recycled slots added trials: map them all again
            trials = self.trials
            sizes: dict[int, int] = {}
            for t in trials:
                sizes[t.config] = sizes.get(t.config, 0) + 1
            self._configs = {t.number: (t.config, sizes[t.config]) for t in trials}
        return self._configs[number]

    def trial_of(self, number: int) -> Trial:
        """Trial `number` (planned in any round so far, or started in a recycled slot)."""
        if number not in self._numbers:
            self._numbers = {t.number: t for t in self.trials}
        return self._numbers[number]

    def _add_round(self, planned: Round, configs: list[dict]) -> None:
        self.rounds.append(planned)
        self.state.configs.append([dict(c) for c in configs])
        self.swept.update(dict.fromkeys(planned.swept))

    def run(self) -> Records:
        """Trains every round (from the newest checkpoint, when resuming); returns the records."""
        start_strategy(self.plan)
        first, _ = ask_round(self.plan, 0, [])
        self._add_round(first, configs_of(first.trials, self.config.seeds))
        restored = self._restore() if self.restores is not None else {}
        if self.callbacks:
            self.callbacks.start(self.sweep, self.state.records.by_trial())
        try:
            with self.signals.catching(self.checkpoints is not None), self.programs.times.listening():
                while True:
                    self._train_round(restored)
                    restored = {}
                    self.strategy.tell(self.table(self.round_trials(self.state.round)))
                    if not self.strategy.another_round():
                        break
                    self._add_round(*ask_round(self.plan, self.state.round + 1, self.trials))
                    self.state.round, self.state.next = self.state.round + 1, 0
                    self._save()
            if self.checkpoints is not None:
                self.checkpoints.wait()
        finally:
            self.programs.close()
            self.progress.close()
        return self.state.records

    def table(self, trials: list[Trial]):
        """The trial table of `trials` from the records so far (what `tell` receives)."""
        table, _ = build_frames(
            [dataclasses.asdict(t) for t in trials],
            list(self.swept),
            self.state.records.by_trial(),
            self.config.objective,
            self.state.pruned,
            self.config.directions,
        )
        return table

    # --- one round: its work items in lanes ------------------------------------------------

    def _train_round(self, restored: dict[int, dict[str, Any]]) -> None:
        """Trains the round's work items from the state's position, up to `lanes` at a time; `restored`: the
        items a checkpoint had in flight (work index -> position and population)."""
        state, work = self.state, self.rounds[self.state.round].work
        for index, saved in sorted(restored.items()):
            state.flight[index] = self._item(work, index, saved)
        left = len(work) - state.next + len(state.flight)
        lanes = lane_count(left, planned_lanes(self.strategy, machine_lanes(self.devices)))
        self.lanes = max(self.lanes, lanes)
        self.progress.round(state.round, self.strategy.planned_rounds())
        in_flight = [(item.epochs, item.epoch) for item in state.flight.values()]
        unstarted = sum(epochs_of(chunk) for _, chunk in work[state.next :])
        self.progress.add_total(unstarted + sum(n for n, _ in in_flight), sum(e for _, e in in_flight))
        pool, running = Lanes(lanes), {}
        try:
            while state.flight or state.next < len(work):
                if not running:
                    self._between_epochs()
                while len(state.flight) < lanes and state.next < len(work):
                    state.flight[state.next] = self._item(work, state.next)
                    state.next += 1
                saving = self._due or self.signals.received is not None
                due_next = self.checkpoints is not None and self.checkpoints.due_next()
                ahead = self._runs_ahead() and not saving and not due_next  # a checkpoint follows this epoch
                busy = {id(item) for item in running.values()}
                idle = [item for item in state.flight.values() if id(item) not in busy]
                for item in idle:
                    if not saving or item.ahead is not None:  # to checkpoint, lanes stop between epochs
                        running[pool.submit(self._step, item, pool, ahead)] = item
                if not running:
                    continue
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: running[f].work):
                    item = running.pop(future)
                    self._after_epoch(item, future.result(), work)
        finally:
            pool.close(list(running))
        self._due = False
        self._save()
        self._check_signal()

    def _item(self, work: list[tuple[Group, tuple[Trial, ...]]], index: int, saved: Mapping | None = None) -> Item:
        """Work item `index` of the round, fresh or as a checkpoint had it in flight."""
        group, chunk = work[index]
        self.programs.started(group)
        self.programs.runner(group)  # made here, in the main thread: lanes share one compiled epoch per structure
        item = Item(index, group, chunk, epochs_of(chunk))
        if saved is not None:
            item.epoch = int(saved["epoch"])
            item.pop = None if saved["pop"] is None else self.devices.place(saved["pop"])
            item.parents = None if saved["parents"] is None else np.asarray(saved["parents"], np.int64)
        return item

    def _runs_ahead(self) -> bool:
        """Whether an epoch may be dispatched before the previous one's metrics are read: where nothing between
        epochs reads them (no strategy decisions or lineage), no early stopping (no epoch is dispatched for
        members that all stopped) and one process (checkpoint timing needs no agreement)."""
        strategy = self.strategy
        return (
            not strategy.acts_between_epochs
            and not strategy.tracks_hparams
            and self.config.early_stopping is None
            and self.devices.processes == 1
        )

    def _step(self, item: Item, lanes: Lanes, ahead: bool) -> dict[str, np.ndarray]:
        """In a lane: the item's population built (before its first epoch), its epoch dispatched (and, with
        `ahead`, the next one before this one's metrics are read), this epoch's metrics read."""
        group, times = item.group, self.programs.times
        structure, size = group.structure, group.population
        runner = self.programs.runner(group)
        if item.pop is None and item.ahead is None:  # its first epoch: its programs may be compiling ahead
            with lanes.first("initialisation"):
                self.programs.wait(group)
                with times.program(structure, "initialisation", size):
                    config = self.config
                    built = new_population(structure, item.chunk, size, config.seed, config.init, self.devices)
                    item.pop = self.devices.place(built)
            if item.epoch == 0 and self.strategy.tracks_hparams:  # lineage starts at itself
                item.parents = np.asarray(self.devices.fetch(item.pop.numbers)).copy()
        if item.ahead is None:
            with lanes.first((structure, item.pop.size)), times.program(structure, "epoch", item.pop.size):
                item.ahead, item.pop = runner.start(item.pop, item.epoch), None  # the population is donated
        pop, on_device = item.ahead
        if ahead and item.epoch + 1 < item.epochs:
            with times.program(structure, "epoch", pop.size):
                item.ahead = runner.start(pop, item.epoch + 1)
        else:
            item.ahead, item.pop = None, pop
        return self.devices.fetch(on_device)

    def _after_epoch(self, item: Item, metrics: dict[str, np.ndarray], work: list) -> None:
        """After every epoch of every work item (in the main thread): records by trial number, the strategy's
        decisions, the progress bar, the kept models at the item's end, and whether a checkpoint is due."""
        state, structure = self.state, item.group.structure
        if self.strategy.tracks_hparams:
            metrics = {**metrics, **lineage(item, self.devices, self.swept)}
        state.records.add(metrics)
        item.epoch += 1
        self.progress.epoch(metrics, structure.label(), item.epoch, item.epochs, self.checkpoints)
        if self.checkpoints is not None and self.checkpoints.due():
            self._due = True
        self.programs.ahead(work[state.next :])  # this item's programs are compiled: the next new structure's now
        live = bool(metrics["active"].any())
        if self.strategy.acts_between_epochs:
            with self.programs.times.program(structure, "edits", item.pop.size):
                item.pop, live = self.edits.after_epoch(item, metrics, state, lambda: self.trials[-1])
        self.callbacks.after_epoch(state.round, metrics, state.pruned)
        if live:  # members train on (past `item.epochs` where a strategy started new trials in recycled slots)
            return
        if item.ahead is not None:  # every member had stopped: the epoch ahead trained nobody and changed nothing
            item.pop, item.ahead = item.ahead[0], None
        self.progress.skip(item.epochs - item.epoch)  # every member stopped early
        state.kept.offer(item.pop, item.group.structure.network, skip=state.pruned, fetch=self.devices.fetch)
        del state.flight[item.work]
        if not state.flight:  # the only item in flight: a checkpoint at its end holds no population
            self._due = self.checkpoints is not None

    # --- checkpoints -----------------------------------------------------------------------

    def _save(self) -> int | None:
        """Writes a checkpoint of the state (every item in flight between epochs)."""
        if self.checkpoints is None:
            return None
        self._due = False
        return self.checkpoints.save(self.state.snapshot(self.strategy.state_dict(), self.fingerprints))

    def _between_epochs(self) -> None:
        """Every lane is between epochs: saves when due, or saves and stops after a signal; every process takes the
        same branch."""
        if self.checkpoints is None:
            return
        if any(item.ahead is not None for item in self.state.flight.values()):
            return  # an epoch runs ahead: the lanes stop for the checkpoint after it
        due, stop = distributed.any_everywhere(self._due, self.signals.received is not None)
        if due and not stop:
            self._save()
        elif stop:
            self._check_signal()

    def _check_signal(self) -> None:
        """After a signal (here or in another process): saves, waits for the save, and stops."""
        if self.checkpoints is None:
            return
        (stop,) = distributed.any_everywhere(self.signals.received is not None)
        if not stop:
            return
        self.signals.received = self.signals.received or signal.SIGTERM  # another process was signalled: stop together
        step = self._save()
        self.checkpoints.wait()
        raise Interrupted(self.signals.received, str(self.checkpoints.folder.parent), step)

    def _restore(self) -> dict[int, dict[str, Any]]:
        """Continues from the newest usable checkpoint, if any: the state, the rounds as planned (the strategy is
        not asked again) and the strategy's state. Returns the items it had in flight (`SweepState.load`)."""
        if self.checkpoints is None:
            return {}
        snapshot = self.checkpoints.restore_latest(self._population_target, check=self._check_fingerprints)
        if snapshot is None:
            return {}
        self._replan(snapshot.meta)
        self.strategy.load_state_dict(snapshot.meta["strategy"])
        return self.state.load(snapshot)

    def _check_fingerprints(self, meta: Mapping[str, Any], step: int) -> None:
        """A checkpoint is continued only by the run that wrote it (or a fork of that run): its settings' and
        data's fingerprints must be among `restores`, else it is refused, both named (never adopted)."""
        stored = meta.get("fingerprints")
        if stored in (self.restores or []):
            return
        stored = stored if isinstance(stored, Mapping) else {}
        own = self.restores[0] if self.restores else self.fingerprints
        raise CheckpointMismatch(
            f"checkpoint {step} in {self.checkpoints.folder} was not written by this run: it records settings "
            f"{stored.get('settings')} and data {stored.get('data')}, this run is settings {own.get('settings')} "
            f"and data {own.get('data')} (fingerprints, as in run.json); it is not continued: put back the run's "
            f"own checkpoints, or start a new run in another folder"
        )

    def _replan(self, meta: Mapping[str, Any]) -> None:
        """The checkpoint's rounds planned again from their stored configurations (the strategy is not asked),
        with the trials strategies started in recycled slots; the first must be the one just asked for."""
        stored = meta["rounds"]
        if canonical(self.state.configs[0]) != canonical(stored[0]):
            raise CheckpointMismatch(
                "the trials of the first round differ from the checkpoint's: the space, the strategy or a default "
                "changed since the run started (a fork continues a checkpoint only under settings that keep its "
                "trials); resume with the original configuration, or start a new run"
            )
        del self.rounds[1:], self.state.configs[1:]
        self.state.refilled = [trial_from_json(t) for t in meta["refilled"]]
        for index in range(1, len(stored)):
            self._add_round(plan_round(self.plan, stored[index], index, self.trials), stored[index])
        self._configs = {}

    def _population_target(self, meta: Mapping[str, Any]) -> Any:
        """The abstract populations of the checkpoint's items in flight, by work index, for orbax to restore into
        (straight into the sharding, never the saved layout)."""
        self._replan(meta)
        position = meta["position"]
        work = self.rounds[int(position["round"])].work
        config, targets = self.config, {}
        for saved in position["flight"]:
            if saved["epoch"]:
                group, chunk = work[int(saved["work"])]
                size = int(saved["size"])  # a repacked population is smaller than its group's
                chunk = tuple((chunk * size)[:size])
                shapes = population_shapes(group.structure, chunk, size, config.seed, config.init, self.devices)
                targets[str(saved["work"])] = shapes
        return targets
