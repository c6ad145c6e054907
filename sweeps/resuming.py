"""The sweep loop's checkpoint seam: what a checkpoint holds of the loop, and continuing from one.

`SweepLoop` mixes this in. A checkpoint holds the loop's position (`LoopPosition`: round, work
item, epoch), the rounds' configurations as planned, the strategy's state, the records, the kept
models and, mid-chunk, the chunk's population (`sweeps.checkpoints` writes and reads it with orbax).
On restore the rounds are planned again from the stored configurations (the strategy is not asked)
and must match what was trained.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from sweeps.checkpoints import CheckpointMismatch, Snapshot
from sweeps.chunks import population_shapes
from sweeps.engine.population import Population
from sweeps.planning import Trial, work_items
from sweeps.records import Records


@dataclasses.dataclass(frozen=True)
class LoopPosition:
    """Where the loop is: round, the index of the (group, chunk) work item in the round, epoch of the chunk.

    In lanes (`sweeps.lanes`) several items train at once: `lanes` lists each one in flight as (work
    index, epochs trained), `work` is the next item to start and `epoch` is 0; the items before
    `work` that are not in flight are done.
    """

    round: int = 0
    work: int = 0
    epoch: int = 0
    lanes: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoopPosition:
        lanes = tuple((int(work), int(epoch)) for work, epoch in data.get("lanes", ()))
        return cls(int(data["round"]), int(data["work"]), int(data["epoch"]), lanes)


class ResumingMixin:
    """Expects the loop's `checkpoints`, `rounds`, `configs`, `refilled`, `settings`, `records`, `kept`,
    `position`, `pruned`, `parents`, `fingerprints`, `restores`, `devices`, `seed` and `plan_next_round`."""

    def snapshot(self, pop: Population | dict[str, Population] | None) -> Snapshot:
        meta = {
            "position": dataclasses.asdict(self.position),
            "rounds": self.configs,
            "strategy": self.settings.strategy.state_dict(),
            "fingerprints": self.fingerprints,
            "kept": self.kept.meta(),
            "pruned": {str(n): e for n, e in self.pruned.items()},
            "refilled": [_trial_json(t) for t in self.refilled],
            "parents": None if self.parents is None else [int(p) for p in self.parents],
            "population_size": pop.size if isinstance(pop, Population) else None,
        }
        return Snapshot(meta=meta, records=self.records.arrays(), population=pop, kept=self.kept.arrays())

    def save(self, pop: Population | dict[str, Population] | None = None) -> int | None:
        """Writes a checkpoint of the current position (with the chunk's population when mid-chunk, or the
        populations in flight by work index, in lanes)."""
        if self.checkpoints is None:
            return None
        return self.checkpoints.save(self.snapshot(pop))

    def restore(self) -> dict[int, Population]:
        """Continues from the newest usable checkpoint, if any: position, rounds, records, kept models.

        Returns the populations of the work items the checkpoint had in flight, by work index (one item
        mid-chunk, several in lanes, none between chunks).
        """
        if self.checkpoints is None:
            return {}
        snapshot = self.checkpoints.restore_latest(self._population_target, check=self._check_fingerprints)
        if snapshot is None:
            return {}
        meta = snapshot.meta
        self._replan(meta)
        self.settings.strategy.load_state_dict(meta["strategy"])
        self.records = Records(snapshot.records)
        self.kept.load(meta["kept"], snapshot.kept)
        self.position = LoopPosition.from_json(meta["position"])
        self.pruned = {int(n): e for n, e in meta["pruned"].items()}
        self.parents = None if meta["parents"] is None else np.asarray(meta["parents"], np.int64)
        if snapshot.population is None:
            return {}
        if isinstance(snapshot.population, Population):
            return {self.position.work: snapshot.population}
        return {int(work): pop for work, pop in snapshot.population.items()}

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

    def _replan(self, meta: dict) -> None:
        """The stored rounds planned again (the strategy is not asked), with the trials strategies
        started in recycled slots; they must match what was trained."""
        rounds = meta["rounds"]
        recycled = {t.number for t in self.refilled}
        first = configs_of([t for t in self.rounds[0][0] if t.number not in recycled], self.settings.seeds)
        if _canonical(first) != _canonical(rounds[0]):
            raise CheckpointMismatch(
                "the trials of the first round differ from the checkpoint's: the space, the strategy or a default "
                "changed since the run started (a fork continues a checkpoint only under settings that keep its "
                "trials); resume with the original configuration, or start a new run"
            )
        refilled = [_trial_from_json(t) for t in meta["refilled"]]
        del self.rounds[1:], self.configs[1:]
        self.rounds[0][0][:] = [t for t in self.rounds[0][0] if t.number not in recycled]
        self.refilled = []
        for index in range(len(rounds)):
            if index:
                self.plan_next_round(index, rounds[index])
            mine = [t for t in refilled if t.round == index]
            self.rounds[index][0].extend(mine)
            self.refilled.extend(mine)

    def _population_target(self, meta: dict) -> Any:
        """The abstract population of the checkpoint's work item (in lanes, of each item in flight by work
        index), for orbax to restore into."""
        self._replan(meta)
        position = LoopPosition.from_json(meta["position"])
        _, groups = self.rounds[position.round]
        work = work_items(groups)

        def shapes(index: int, size: int | None) -> Any:
            group, chunk = work[index]
            size = size or group.population  # a repacked population is smaller
            chunk = tuple((chunk * size)[:size])
            # restored straight into the sharding, never the saved layout
            return population_shapes(group.structure, chunk, size, self.seed, self.settings.init, self.devices)

        if position.lanes:
            return {str(index): shapes(index, None) for index, epoch in position.lanes if epoch}
        return shapes(position.work, meta["population_size"])


def _trial_json(trial: Trial) -> dict:
    return {**dataclasses.asdict(trial), "hparams": _jsonable(trial.hparams)}


def _trial_from_json(data: Mapping[str, Any]) -> Trial:
    hparams = {k: tuple(v) if isinstance(v, list) else v for k, v in data["hparams"].items()}
    return Trial(data["number"], data["config"], data["seed"], hparams, data["round"])


def configs_of(trials: list[Trial], seeds: int) -> list[dict]:
    """A round's configurations as planned (one per `seeds` trials), JSON-ready."""
    return [_jsonable(t.hparams) for t in trials[::seeds]]


def _jsonable(hparams: Mapping[str, Any]) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in hparams.items()}


def _canonical(configs: list[dict]) -> str:
    return json.dumps([_jsonable(c) for c in configs], sort_keys=True)
