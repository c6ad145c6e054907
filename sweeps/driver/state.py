"""The driver's state: one value that a checkpoint saves whole and a resume restores, whatever the lane count.

`SweepState` holds where the sweep is (the round, the next work item to start, the items in flight
with their epochs and populations), each round's configurations as the strategy asked for them, the
trials strategies started in recycled slots, the records, the trials a strategy stopped and the kept
models. `snapshot` turns it into what `sweeps.driver.checkpoints` writes; `SweepState.restore` reads it
back. One work item in flight or several (lanes), the shape is the same: a checkpoint taken in one
lane resumes in several and the other way round.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from sweeps.driver.checkpoints import Snapshot
from sweeps.driver.kept_models import KeptModels
from sweeps.driver.records import Records
from sweeps.engine import Population
from sweeps.planning.planner import Group, Trial


@dataclasses.dataclass(eq=False)  # an item is itself: compared by identity (its population is arrays)
class Item:
    """One work item in flight: a chunk of a group, the epochs it has trained and its population.

    `pop` is the population between epochs (None before it is built); `ahead` an epoch dispatched before
    the previous one's metrics were read: (the population it will return, its metrics on the device);
    `parents`: (slots,) whose weights each member carries since the last exploit (population based
    training's lineage).
    """

    work: int
    group: Group
    chunk: tuple[Trial, ...]
    epochs: int
    epoch: int = 0
    pop: Population | None = None
    ahead: tuple[Population, Any] | None = None
    parents: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Members in its population: its group's, or fewer once repacked."""
        return self.pop.size if self.pop is not None else self.group.population

    def position(self) -> dict[str, Any]:
        """How a checkpoint records it (its population goes into the checkpoint's arrays by work index)."""
        parents = None if self.parents is None else [int(p) for p in self.parents]
        return {"work": self.work, "epoch": self.epoch, "size": self.size, "parents": parents}


@dataclasses.dataclass
class SweepState:
    """Everything the driver knows of a sweep between two epochs.

    Attributes:
      round: the round being trained.
      next: the next work item of the round to start; those before it that are not in flight are done.
      flight: the work items started and not done, by work index.
      configs: each round's configurations as the strategy asked for them (JSON values).
      refilled: trials a strategy started in recycled slots, in the order they started.
      records: every trial's per-epoch metrics so far.
      pruned: trial number -> the epochs it had trained when a strategy stopped it.
      kept: the best trials' best-epoch parameters so far.
    """

    kept: KeptModels
    round: int = 0
    next: int = 0
    flight: dict[int, Item] = dataclasses.field(default_factory=dict)
    configs: list[list[dict]] = dataclasses.field(default_factory=list)
    refilled: list[Trial] = dataclasses.field(default_factory=list)
    records: Records = dataclasses.field(default_factory=Records)
    pruned: dict[int, int] = dataclasses.field(default_factory=dict)

    def snapshot(self, strategy_state: Mapping[str, Any], fingerprints: Mapping[str, str]) -> Snapshot:
        """The state as one checkpoint: JSON meta, the records, the kept models and the populations in flight.

        Every item in flight must be between epochs (none dispatched ahead)."""
        assert all(item.ahead is None for item in self.flight.values()), "an epoch is still running ahead"
        populations = {str(w): item.pop for w, item in sorted(self.flight.items()) if item.pop is not None}
        meta = {
            "position": {
                "round": self.round,
                "next": self.next,
                "flight": [item.position() for _, item in sorted(self.flight.items())],
            },
            "rounds": self.configs,
            "strategy": dict(strategy_state),
            "fingerprints": dict(fingerprints),
            "kept": self.kept.meta(),
            "pruned": {str(n): e for n, e in self.pruned.items()},
            "refilled": [trial_json(t) for t in self.refilled],
        }
        return Snapshot(
            meta=meta, records=self.records.arrays(), population=populations or None, kept=self.kept.arrays()
        )

    def load(self, snapshot: Snapshot) -> dict[int, dict[str, Any]]:
        """Takes a checkpoint's records, kept models, stopped trials and position; returns the items it had in flight
        (work index -> their recorded position, with `pop`: their population, or None for one not yet built)."""
        meta = snapshot.meta
        self.records = Records(snapshot.records)
        self.kept.load(meta["kept"], snapshot.kept)
        self.pruned = {int(n): int(e) for n, e in meta["pruned"].items()}
        position = meta["position"]
        self.round, self.next, self.flight = int(position["round"]), int(position["next"]), {}
        populations = snapshot.population or {}
        return {int(f["work"]): {**f, "pop": populations.get(str(f["work"]))} for f in position["flight"]}


def trial_json(trial: Trial) -> dict:
    return {**dataclasses.asdict(trial), "hparams": jsonable(trial.hparams)}


def trial_from_json(data: Mapping[str, Any]) -> Trial:
    hparams = {k: tuple(v) if isinstance(v, list) else v for k, v in data["hparams"].items()}
    return Trial(data["number"], data["config"], data["seed"], hparams, data["round"])


def configs_of(trials: tuple[Trial, ...] | list[Trial], seeds: int) -> list[dict]:
    """A round's configurations as planned (one per `seeds` trials), JSON-ready."""
    return [jsonable(t.hparams) for t in trials[::seeds]]


def jsonable(hparams: Mapping[str, Any]) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in hparams.items()}


def canonical(configs: list[dict]) -> str:
    """Configurations as one comparable string."""
    return json.dumps([jsonable(c) for c in configs], sort_keys=True)
