"""The sweep loop's compilations ahead of their turn: the next structure compiled while one trains.

`SweepLoop` mixes this in. After a work item's first epoch the loop calls `compile_ahead` with the
work items after it; the first one whose programs are not compiled yet is lowered and compiled in
a background thread (`sweeps.compiling.Ahead`) and its group waits for it when it starts. The dry
run's `--compile` calls `compile_first_round`. Measurements: `sweeps/compiling.py`.
"""

from __future__ import annotations

from typing import Any

from sweeps.chunks import compile_population
from sweeps.planning import Group, Trial


class CompilingMixin:
    """Expects the loop's `compile_times`, `_ahead`, `_compiled`, `rounds`, `runner`, `seed`, `settings`, `devices`."""

    def compile_ahead(self, later: list[tuple[Group, tuple[Trial, ...]]]) -> None:
        """Starts compiling, in the background, the first of the `later` work items whose programs are not
        compiled yet (one at a time); its group waits for it when it starts (`Ahead.wait`)."""
        if self._ahead.pending:
            return
        for group, chunk in later:
            key = (group.structure, group.population)
            if key not in self._compiled:
                self._compiled.add(key)
                self._ahead.start(key, lambda group=group, chunk=chunk: self.compile_programs(group, chunk, ahead=True))
                return

    def compile_programs(self, group: Group, chunk: tuple[Trial, ...], ahead: bool = False) -> None:
        """Compiles (runs nothing) a work item's initialisation and epoch, timed into `compile_times`."""
        structure, size = group.structure, group.population
        with self.compile_times.program(structure, "initialisation", size, ahead):
            shapes = compile_population(structure, chunk, size, self.seed, self.settings.init, self.devices)
        with self.compile_times.program(structure, "epoch", size, ahead):
            self.runner(group).compile(shapes)

    def compile_first_round(self) -> list[dict[str, Any]]:
        """Compiles every group of the first round (no training): the dry run's compile seconds per structure."""
        with self.compile_times.listening():
            for group, chunk in [(g, g.chunks[0]) for g in self.rounds[0][1]]:
                if (group.structure, group.population) not in self._compiled:
                    self._compiled.add((group.structure, group.population))
                    self.compile_programs(group, chunk)
        return self.compile_times.by_structure()
