"""A strategy's between-epoch decisions applied to a training population.

After every epoch the sweep loop shows the strategy an `EpochView` of the population and applies
the `Decisions` it returns (prune, refill, copy and perturb, repack) with the engine's jitted edits
(`sweeps.engine.edits`), through the devices' layout so a sharded population stays sharded. This
is the loop's part that only strategies acting inside a population use (`SweepLoop` mixes it in).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sweeps.chunks import new_population
from sweeps.engine import edits
from sweeps.engine.hparams import resolve
from sweeps.engine.metrics import direction
from sweeps.engine.population import PADDING, Population
from sweeps.engine.structure import structure_of
from sweeps.planning import Group, Trial
from sweeps.strategies.base import EpochView


class DecisionsMixin:
    """`after_epoch` and its helpers; expects the loop's settings, devices, kept models, records and rounds."""

    def after_epoch(self, pop: Population, metrics: dict[str, np.ndarray], group: Group) -> tuple[Population, bool]:
        """Between epochs: the strategy's decisions (prune, refill, copy and perturb, repack) applied
        with the engine's jitted edits. Returns the population and whether any member trains on."""
        strategy = self.settings.strategy
        if not strategy.acts_between_epochs:
            return pop, bool(metrics["active"].any())
        numbers, epochs_done, hparams = self.devices.fetch((pop.numbers, pop.epochs_done, pop.hparams))
        sign = -1.0 if direction(self.settings.objective) == "maximize" else 1.0
        view = EpochView(
            epoch=self.position.epoch,
            numbers=np.asarray(numbers),
            epochs_done=np.asarray(epochs_done),
            active=np.asarray(metrics["active"]),
            trained=np.asarray(metrics["trained"]),
            score=np.where(metrics["trained"], sign * np.asarray(metrics[self.settings.objective], np.float64), np.nan),
            hparams={k: np.asarray(v) for k, v in hparams.items()},
            objective=self.settings.objective,
        )
        decisions = strategy.decide(view)
        active = view.active.copy()
        if decisions is None:
            return pop, bool(active.any())
        size = len(view.numbers)
        if decisions.prune is not None and decisions.prune.any():
            prune = np.asarray(decisions.prune, bool) & (view.numbers != PADDING)
            for slot in np.flatnonzero(prune):
                self.pruned.setdefault(int(view.numbers[slot]), int(view.epochs_done[slot]))
            pop = self.devices.edit(edits.mask_out, pop, prune)
            active &= ~prune
        if decisions.copy_from is not None:
            source = np.asarray(decisions.copy_from, np.int32)
            change = np.zeros(size, bool) if decisions.change is None else np.asarray(decisions.change, bool)
            values = {k: np.asarray(v, np.float32) for k, v in (decisions.hparams or {}).items()}
            pop = self.devices.edit(edits.exploit_explore, pop, source, change, values)
            self.parents = np.where(source != np.arange(size), view.numbers[source], view.numbers)
            active = active[source]
        if decisions.refill:
            pop, active = self._refill(pop, decisions.refill, group, active)
        if decisions.repack and 0 < active.sum() <= size // 2:
            pop = self._repack(pop, active)
            active = np.asarray(self.devices.fetch(pop.active))
        return pop, bool(active.any())

    def _refill(self, pop: Population, refill: Mapping[int, dict], group: Group, active: np.ndarray):
        """New trials start in the given slots; the trials they replace compete for the kept models first."""
        slots = sorted(refill)
        self.kept.offer(pop, slots=slots, skip=self.pruned, fetch=self.devices.fetch)
        round_trials, _ = self.rounds[self.position.round]
        last = self.trials[-1]
        new = []
        for k, slot in enumerate(slots):
            hparams = resolve({**self.settings.defaults, **self.settings.strategy.fixed(), **refill[slot]})
            structure = structure_of(hparams, self.data)
            if structure != group.structure:
                raise ValueError(
                    f"a refilled trial must keep the population's structure ({group.structure.label()}), "
                    f"but {refill[slot]} makes it {structure.label()}"
                )
            new.append(Trial(last.number + 1 + k, last.config + 1 + k, 0, hparams, self.position.round))
        round_trials.extend(new)
        self.refilled.extend(new)
        size = pop.size
        chunk = [new[slots.index(s)] if s in slots else None for s in range(size)]
        placeholder = new[0]
        fresh = new_population(
            group.structure, tuple(t or placeholder for t in chunk), size, self.seed, self.settings.init, self.devices
        )
        where = np.zeros(size, bool)
        where[slots] = True
        pop = self.devices.edit(edits.place, pop, fresh, where)
        self.progress.add_total(sum(t.hparams["epochs"] for t in new))
        active = active.copy()
        active[slots] = True
        return pop, active

    def _repack(self, pop: Population, active: np.ndarray) -> Population:
        """The live members in the next smaller power-of-two population (the epoch compiles once per size),
        a multiple of the device count."""
        live = np.flatnonzero(active)
        dropped = np.flatnonzero(~active)  # done (finished, stopped early, pruned, diverged): they compete first
        self.kept.offer(pop, slots=dropped, skip=self.pruned, fetch=self.devices.fetch)
        size = 1 << int(np.ceil(np.log2(len(live))))
        size = -(-size // self.devices.count) * self.devices.count
        index = np.zeros(size, np.int32)
        index[: len(live)] = live
        keep = np.arange(size) < len(live)
        if self.parents is not None:
            self.parents = np.where(keep, self.parents[index], PADDING)
        small = edits.repack(self.devices.fetch(pop), index, keep)  # a new size: gathered, then placed again
        return self.place(small)

    def _lineage(self, pop: Population) -> dict[str, np.ndarray]:
        """Each member's swept traced hyperparameters this epoch, and `lineage_parent`: the trial whose
        weights it took at the exploit just before this epoch (its own number when there was none)."""
        hparams = self.devices.fetch(pop.hparams)
        out = {f"hparam_{name}": np.asarray(v, np.float64) for name, v in hparams.items() if name in self.swept}
        out["lineage_parent"] = np.asarray(self.parents, np.float64)
        self.parents = np.asarray(self.devices.fetch(pop.numbers)).copy()  # a parent is named once, after its exploit
        return out
