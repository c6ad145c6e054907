"""The models a sweep keeps while it trains: the best trials' best-epoch parameters, ranked as `Result.best()`.

`KeptModels` holds the best-epoch parameters of the `keep_models` best complete trials so far (with
seeds, the best seed of each of the best configurations); the compiled epoch keeps each member's best
parameters on the device, and only the winners' leave it when a work item ends. A checkpoint saves
them (`meta`, `arrays`); at the end `sweeps.results.trained.save_models` writes them into the run folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from sweeps.engine import PADDING, Network, Population, flat_params


class KeptModels:
    """The best-epoch parameters of the models a sweep keeps, ranked as `Result.best()` ranks trials.

    The `k` best configurations by the objective at each trial's best epoch (with one seed each, the k
    best complete trials): configurations none of whose seeds diverged or was pruned first, then by the
    mean of their seeds' values, ties to the lower configuration; of each, its best complete seed (ties to
    the lower trial number) is kept. The scores are the members' own best-so-far on the device, the
    value the table reports for each trial. A configuration is ranked once all its seeds are done (they
    may train in different chunks); until then its best seed so far is held.

    Args:
      k: how many to keep (0: none).
      config_of: trial number -> (its configuration, how many trials that configuration has); default:
        every trial its own configuration.
    """

    def __init__(self, k: int, config_of: Callable[[int], tuple[int, int]] | None = None):
        self.k = k
        self.config_of = config_of or (lambda number: (number, 1))
        self.entries: dict[int, np.ndarray] = {}  # number -> flat parameters: the ranked and the pending best
        self.ranking: list[tuple[bool, float, int, int]] = []  # (failed, mean, configuration, kept number)
        self.pending: dict[int, dict[int, tuple[float, bool]]] = {}  # configuration -> {number: (score, complete)}

    def offer(
        self,
        pop: Population,
        network: Network | None = None,
        slots=None,
        skip=frozenset(),
        fetch: Callable[[Any], Any] = jax.device_get,
    ) -> None:
        """Members whose training is over compete for the places; only the winners' parameters leave the device.

        Args:
          pop: a population whose members are done (a finished chunk, or slots about to be refilled or dropped).
          network: its structure's (`Structure.network`): the parameters are kept in the module's own layout.
          slots: the slots to consider (default all).
          skip: trial numbers a strategy stopped (pruned): they count in their configuration's mean, as in
            the table, but are never kept.
          fetch: brings arrays to the host (`Devices.fetch` for a population spread over processes).
        """
        if self.k <= 0:
            return
        numbers, scores, diverged = fetch((pop.numbers, pop.best_objective, pop.diverged))
        ranked = {config for _, _, config, _ in self.ranking}
        offered: dict[int, int] = {}  # number -> slot
        for i in range(len(numbers)) if slots is None else slots:
            number = int(numbers[i])
            if number == PADDING or self.config_of(number)[0] in ranked:
                continue
            score = float(scores[i])
            complete = not diverged[i] and number not in skip
            self.pending.setdefault(self.config_of(number)[0], {})[number] = (
                score if np.isfinite(score) else math.nan,
                complete,
            )
            offered[number] = i
        for config in {self.config_of(n)[0] for n in offered}:
            seeds = self.pending[config]
            if len(seeds) < self.config_of(next(iter(seeds)))[1]:
                continue
            del self.pending[config]
            best = _best_seed(seeds)
            if best is not None:  # at least one finite value, so the mean is finite
                values = [v for v, _ in seeds.values() if not math.isnan(v)]
                failed = not all(c for _, c in seeds.values())
                self.ranking.append((failed, math.fsum(values) / len(values), config, best))
        self.ranking = sorted(self.ranking)[: self.k]
        keep = [n for *_, n in self.ranking] + [b for b in map(_best_seed, self.pending.values()) if b is not None]
        rows = [offered[n] for n in keep if n not in self.entries]
        fetched = {}
        if rows:
            # As many rows as kept places (padded with the first): one compiled gather per population shape,
            # not one eager gather compiled per count (a second a sweep in churn_three's five groups).
            padded = np.resize(np.asarray(rows, np.int32), min(max(self.k, len(rows)), len(numbers)))
            widths = None  # a padded network's members have their own widths: each kept at its own size
            if network is not None and network.padded:
                widths = fetch(_take_members(pop.hparams["hidden"], padded))
            fetched = dict(zip(rows, flat_params(fetch(_take_members(pop.best_params, padded)), network, widths)))
        self.entries = {n: self.entries[n] if n in self.entries else fetched[offered[n]] for n in keep}

    def ranked(self) -> list[int]:
        """Kept trial numbers, best first: the first is the trial `Result.best()` names."""
        return [n for *_, n in self.ranking]

    def params(self, number: int) -> np.ndarray:
        return self.entries[number]

    def meta(self) -> dict[str, Any]:
        """The ranking and the configurations still training, as JSON (NaN written as None)."""
        return {
            "ranking": [list(entry) for entry in self.ranking],
            "pending": {
                str(config): {str(n): [None if math.isnan(v) else v, c] for n, (v, c) in seeds.items()}
                for config, seeds in self.pending.items()
            },
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"trial_{n}": p for n, p in self.entries.items()}

    def load(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        if "ranking" not in meta:  # a checkpoint of an earlier version: number -> score of the kept trials
            meta = {"ranking": [(False, s, self.config_of(int(n))[0], int(n)) for n, s in meta.items()], "pending": {}}
        self.ranking = sorted((bool(f), float(m), int(c), int(n)) for f, m, c, n in meta["ranking"])
        self.pending = {
            int(config): {int(n): (math.nan if v is None else float(v), bool(c)) for n, (v, c) in seeds.items()}
            for config, seeds in meta["pending"].items()
        }
        self.entries = {int(name[len("trial_") :]): np.asarray(p) for name, p in arrays.items()}


def _best_seed(seeds: Mapping[int, tuple[float, bool]]) -> int | None:
    """The complete trial with the best finite score (ties: the lower number), or None."""
    candidates = [(v, n) for n, (v, complete) in seeds.items() if complete and not math.isnan(v)]
    return min(candidates)[1] if candidates else None


@jax.jit
def _take_members(tree: Any, rows: jax.Array) -> Any:
    """The members at `rows` of a tree whose leaves have the trial axis first."""
    return jax.tree.map(lambda leaf: leaf[rows], tree)
