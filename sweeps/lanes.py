"""Populations trained side by side: a round's work items in lanes, one thread per CPU core.

Each lane trains one work item (a chunk of a group) at a time, in its own thread (JAX releases the
Python lock while a program runs). Nothing is shared between lanes but the data on the device, so
each work item computes exactly what it computes alone: the table and the history are the same bit
for bit, only the wall time differs. When lanes pay, how many, and how a group is cut for them:
`sweeps/lane_plan.py`.

A checkpoint taken in lanes records every work item in flight with its epoch (`LoopPosition.lanes`)
and their populations; resuming continues each where it was. It is written when one is due (every
`checkpoint_every` epochs of any lane, or 60 seconds) once every lane is between epochs, and at the
end of the round, not at the end of each item: that would hold the other lanes back while one
compiles its next item's program (about a second idle per item in churn_three).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from sweeps.chunks import ChunkRunner, epochs_of, new_population
from sweeps.engine.population import Population
from sweeps.planning import Group, Trial
from sweeps.resuming import LoopPosition


@dataclasses.dataclass
class Lane:
    """One work item in flight: its population (None before it is built) and the epochs it has trained."""

    work: int
    group: Group
    chunk: tuple[Trial, ...]
    runner: ChunkRunner
    epochs: int
    epoch: int = 0
    pop: Population | None = None
    called: bool = False  # its epoch program was called in this process


class LanesMixin:
    """`train_round_in_lanes`; expects the loop's `position`, `records`, `progress`, `kept`, `checkpoints`,
    `compile_times`, `devices`, `settings`, `seed`, `pruned`, `_signal`, `runner`, `place` and `_check_signal`."""

    def train_round_in_lanes(
        self, work: list[tuple[Group, tuple[Trial, ...]]], lanes: int, restored: dict[int, Population]
    ) -> None:
        """Trains the round's work items (`planning.work_items`) from the current position, `lanes` of them
        at a time. `restored`: the populations of the items a checkpoint had in flight, by work index.
        """
        position = self.position
        flight = dict(position.lanes)
        start = position.work
        if not flight and position.epoch:  # a checkpoint taken one item at a time, mid-item
            flight, start = {position.work: position.epoch}, position.work + 1
        self.progress.round(position.round, self.settings.strategy.planned_rounds())
        unstarted = [epochs_of(chunk) for _, chunk in work[start:]]
        started = [(epochs_of(work[i][1]), e) for i, e in flight.items()]
        self.progress.add_total(sum(unstarted) + sum(n for n, _ in started), sum(e for _, e in started))

        def lane(index: int, epoch: int = 0) -> Lane:
            group, chunk = work[index]
            pop = restored.get(index) if epoch else None
            return Lane(index, group, chunk, self.runner(group), epochs_of(chunk), epoch, pop)

        waiting = [lane(i, e) for i, e in sorted(flight.items())]
        while len(waiting) < lanes and start < len(work):
            waiting.append(lane(start))
            start += 1
        running: dict[Future, Lane] = {}
        due = False
        locks: dict[Any, threading.Lock] = {}  # a program's first call in a lane holds its lock
        with ThreadPoolExecutor(max(lanes, len(waiting)), thread_name_prefix="sweeps-lane") as pool:
            try:
                while waiting or running:
                    saving = due or self._signal is not None
                    if saving and not running:  # every lane between epochs: one checkpoint holds them all
                        self.position = _position(position.round, start, waiting)
                        self._check_signal({str(w.work): w.pop for w in waiting if w.epoch} or None, due=due)
                        due = False
                    if not (saving and running):
                        for item in waiting:
                            running[pool.submit(self._lane_epoch, item, locks)] = item
                        waiting = []
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        item = running.pop(future)
                        item.pop, metrics = future.result()
                        item.epoch += 1
                        self.records.add(metrics)
                        self.progress.epoch(
                            metrics, item.group.structure.label(), item.epoch, item.epochs, self.checkpoints
                        )
                        due = due or (self.checkpoints is not None and self.checkpoints.due())
                        if item.epoch < item.epochs and metrics["active"].any():
                            waiting.append(item)
                            continue
                        self.progress.skip(item.epochs - item.epoch)  # every member stopped early
                        self.kept.offer(item.pop, skip=self.pruned, fetch=self.devices.fetch)
                        if start < len(work):
                            waiting.append(lane(start))
                            start += 1
            finally:
                for future in running:
                    future.cancel()
        self.position = LoopPosition(position.round, len(work))
        self.save()
        self._check_signal(None)

    def _lane_epoch(self, item: Lane, locks: dict[Any, threading.Lock]) -> tuple[Population, dict[str, Any]]:
        """In a lane's thread: the item's population built (its first epoch) and one epoch trained and read.

        A lane's first call of a program holds that program's lock: two lanes that need the same program
        (two chunks of a group, the initialisation every batch size shares) compile it once, not each.
        """
        structure, size = item.group.structure, item.group.population
        pop = item.pop
        if pop is None:
            with locks.setdefault("initialisation", threading.Lock()):
                with self.compile_times.program(structure, "initialisation", size):
                    pop = new_population(structure, item.chunk, size, self.seed, self.settings.init, self.devices)
                    pop = self.place(pop)
        program = (structure, pop.size)
        first = contextlib.nullcontext() if item.called else locks.setdefault(program, threading.Lock())
        with first, self.compile_times.program(structure, "epoch", size):
            item.called = True
            return item.runner.epoch(pop, item.epoch)


def _position(round_index: int, start: int, waiting: list[Lane]) -> LoopPosition:
    """The position of a round in lanes: items before `start` are done unless in flight."""
    return LoopPosition(round_index, start, 0, tuple(sorted((w.work, w.epoch) for w in waiting)))
