"""The trained models a user keeps: the best trials' best-epoch parameters, saved and loaded again.

During a sweep, `KeptModels` holds the best-epoch parameters of the
`keep_models` best complete trials so far (the compiled epoch keeps each
member's best parameters on the device; only the winners' leave it when a
chunk ends). At the end they are written into RUN_DIR/models/ with orbax,
beside a JSON file that says how to apply them: the model's structure and the
preprocessing fitted on the training split. Nothing is pickled, so loading a
run folder someone else made cannot run code.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

from sweeps.engine.population import PADDING, Population


class KeptModels:
    """The best-epoch parameters of the `k` best complete trials so far, by the objective (ties: lower number)."""

    def __init__(self, k: int):
        self.k = k
        self.entries: dict[int, tuple[float, np.ndarray]] = {}  # number -> (score, flat parameters)

    def offer(self, pop: Population) -> None:
        """A finished chunk's members compete for the places; only the winners' parameters leave the device."""
        if self.k <= 0:
            return
        numbers, scores, diverged = jax.device_get((pop.numbers, pop.best_objective, pop.diverged))
        candidates = [
            (float(scores[i]), int(numbers[i]), i)
            for i in range(len(numbers))
            if numbers[i] != PADDING and not diverged[i] and np.isfinite(scores[i])
        ]
        ranked = sorted([(s, n, None) for n, (s, _) in self.entries.items()] + candidates)[: self.k]
        rows = [i for _, _, i in ranked if i is not None]
        fetched = dict(zip(rows, np.asarray(pop.best_params[np.asarray(rows, np.int32)]))) if rows else {}
        self.entries = {n: (s, self.entries[n][1] if i is None else fetched[i]) for s, n, i in ranked}

    def ranked(self) -> list[int]:
        """Kept trial numbers, best first."""
        return [n for n, _ in sorted(self.entries.items(), key=lambda item: (item[1][0], item[0]))]

    def params(self, number: int) -> np.ndarray:
        return self.entries[number][1]

    def meta(self) -> dict[str, float]:
        return {str(n): s for n, (s, _) in self.entries.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"trial_{n}": p for n, (_, p) in self.entries.items()}

    def load(self, meta: Mapping[str, float], arrays: Mapping[str, np.ndarray]) -> None:
        self.entries = {int(n): (float(s), np.asarray(arrays[f"trial_{n}"])) for n, s in meta.items()}
