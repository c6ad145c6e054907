"""A strategy's between-epoch decisions applied to one training population.

After an epoch of a work item whose strategy acts between epochs, the driver's per-epoch handler
shows the strategy an `EpochView` of the population and applies the `Decisions` it returns (prune,
copy and perturb, refill, repack) with the engine's jitted edits (`sweeps.engine.edits`), through
the devices' layout so a sharded population stays sharded. The compiled epoch never learns about
strategies; this module is the only code that reads their decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from sweeps.driver.devices import Devices
from sweeps.driver.populations import new_population
from sweeps.driver.state import Item, SweepState
from sweeps.engine import PADDING, Population, Structure, edits, holds, structure_of
from sweeps.engine.hparams import HPARAMS, resolve
from sweeps.planning.planner import Plan, Trial
from sweeps.strategies.base import EpochView


class PopulationEdits:
    """Applies a strategy's decisions to the populations of one sweep.

    Args:
      plan: the sweep's plan (its strategy, objective, defaults, seed and initialisation).
      devices: where populations live (edits keep their sharding).
      add_epochs: called with the epochs of trials started in recycled slots (the progress bar's total).
    """

    def __init__(self, plan: Plan, devices: Devices, add_epochs: Callable[[int], None]):
        self.plan, self.devices, self.add_epochs = plan, devices, add_epochs

    def after_epoch(
        self, item: Item, metrics: Mapping[str, np.ndarray], state: SweepState, last: Callable[[], Trial]
    ) -> tuple[Population, bool]:
        """The strategy's decisions about `item`'s population after its epoch, applied. `last()`: the sweep's
        highest-numbered trial so far (refilled trials are numbered after it). Updates `state` (stopped trials,
        refilled trials, kept models offered the members that leave). Returns the population and whether any
        member trains on."""
        config, pop = self.plan.config, item.pop
        numbers, epochs_done, hparams = self.devices.fetch((pop.numbers, pop.epochs_done, pop.hparams))
        sign = -1.0 if config.direction(config.objective) == "maximize" else 1.0
        view = EpochView(
            epoch=item.epoch,
            numbers=np.asarray(numbers),
            epochs_done=np.asarray(epochs_done),
            active=np.asarray(metrics["active"]),
            trained=np.asarray(metrics["trained"]),
            score=np.where(metrics["trained"], sign * np.asarray(metrics[config.objective], np.float64), np.nan),
            hparams={k: np.asarray(v) for k, v in hparams.items()},
            objective=config.objective,
            fits=self._fits(item.group.structure),
        )
        decisions = config.strategy.decide(view)
        active = view.active.copy()
        if decisions is None:
            return pop, bool(active.any())
        size = len(view.numbers)
        if decisions.prune is not None and decisions.prune.any():
            prune = np.asarray(decisions.prune, bool) & (view.numbers != PADDING)
            for slot in np.flatnonzero(prune):
                state.pruned.setdefault(int(view.numbers[slot]), int(view.epochs_done[slot]))
            pop = self.devices.edit(edits.mask_out, pop, prune)
            active &= ~prune
        if decisions.copy_from is not None:
            source = np.asarray(decisions.copy_from, np.int32)
            change = np.zeros(size, bool) if decisions.change is None else np.asarray(decisions.change, bool)
            values = {k: np.asarray(v, np.float32) for k, v in (decisions.hparams or {}).items()}
            pop = self.devices.edit(edits.exploit_explore, pop, source, change, values)
            item.parents = np.where(source != np.arange(size), view.numbers[source], view.numbers)
            active = active[source]
        if decisions.refill:
            pop, active = self._refill(pop, decisions.refill, item, active, state, last)
        if decisions.repack and 0 < active.sum() <= size // 2:
            pop = self._repack(pop, active, item, state)
            active = np.asarray(self.devices.fetch(pop.active))
        return pop, bool(active.any())

    def _fits(self, fused: Structure) -> Callable[[Mapping], bool]:
        """Whether a strategy's configuration would train in a population of `fused` (`EpochView.fits`)."""
        config = self.plan.config

        def fits(asked: Mapping) -> bool:
            hparams = resolve({**config.defaults, **config.strategy.fixed(), **asked}, config.model_hparams)
            own = structure_of(
                hparams, self.plan.data, config.module, config.loss, config.own_metrics, config.precision
            )
            return holds(fused, own)

        return fits

    def _refill(
        self,
        pop: Population,
        refill: Mapping[int, dict],
        item: Item,
        active: np.ndarray,
        state: SweepState,
        last: Callable[[], Trial],
    ) -> tuple[Population, np.ndarray]:
        """New trials start in the given slots; the trials they replace compete for the kept models first."""
        config, group = self.plan.config, item.group
        slots = sorted(refill)
        state.kept.offer(pop, group.structure.network, slots=slots, skip=state.pruned, fetch=self.devices.fetch)
        new, last = [], last()
        for k, slot in enumerate(slots):
            hparams = resolve({**config.defaults, **config.strategy.fixed(), **refill[slot]}, config.model_hparams)
            structure = structure_of(
                hparams, self.plan.data, config.module, config.loss, config.own_metrics, config.precision
            )
            if not holds(group.structure, structure):
                raise ValueError(
                    f"a refilled trial must train in the population's program ({group.structure.label()}), "
                    f"but {refill[slot]} makes it {structure.label()}"
                )
            new.append(Trial(last.number + 1 + k, last.config + 1 + k, 0, hparams, state.round))
        state.refilled.extend(new)
        size = pop.size
        chunk = [new[slots.index(s)] if s in slots else None for s in range(size)]
        placeholder = new[0]
        fresh = new_population(
            group.structure, tuple(t or placeholder for t in chunk), size, config.seed, config.init, self.devices
        )
        where = np.zeros(size, bool)
        where[slots] = True
        pop = self.devices.edit(edits.place, pop, fresh, where)
        self.add_epochs(sum(t.hparams["epochs"] for t in new))
        active = active.copy()
        active[slots] = True
        return pop, active

    def _repack(self, pop: Population, active: np.ndarray, item: Item, state: SweepState) -> Population:
        """The live members in the next smaller power-of-two population (the epoch compiles once per size),
        a multiple of the device count."""
        live = np.flatnonzero(active)
        dropped = np.flatnonzero(~active)  # done (finished, stopped early, pruned, diverged): they compete first
        state.kept.offer(pop, item.group.structure.network, slots=dropped, skip=state.pruned, fetch=self.devices.fetch)
        size = 1 << int(np.ceil(np.log2(len(live))))
        size = -(-size // self.devices.count) * self.devices.count
        index = np.zeros(size, np.int32)
        index[: len(live)] = live
        keep = np.arange(size) < len(live)
        if item.parents is not None:
            item.parents = np.where(keep, item.parents[index], PADDING)
        small = edits.repack(self.devices.fetch(pop), index, keep)  # a new size: gathered, then placed again
        return self.devices.place(small)


def lineage(item: Item, devices: Devices, swept: Mapping[str, None]) -> dict[str, np.ndarray]:
    """Each member's swept traced hyperparameters this epoch, and `lineage_parent`: the trial whose weights it
    took at the exploit just before this epoch (its own number when there was none). Read before the next
    exploit, so a parent is named once."""
    hparams = devices.fetch(item.pop.hparams)
    out = {  # not the widths and batch sizes a fused population traces: they never change while a member trains
        f"hparam_{name}": np.asarray(v, np.float64)
        for name, v in hparams.items()
        if name in swept and (name not in HPARAMS or HPARAMS[name].traced)
    }
    out["lineage_parent"] = np.asarray(item.parents, np.float64)
    item.parents = np.asarray(devices.fetch(item.pop.numbers)).copy()
    return out
