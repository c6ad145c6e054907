"""The progress bar of a sweep: epochs, an ETA, the round, the structure training, the best objective, the last
checkpoint."""

from __future__ import annotations

import math
import time

import numpy as np


class Progress:
    """A tqdm bar over every epoch of every chunk (its ETA is tqdm's), or nothing when disabled; `direction`: the
    objective's (`SweepConfig.direction`)."""

    def __init__(self, objective: str, enabled: bool, direction: str = "minimize"):
        self.objective = objective
        self.sign = 1.0 if direction == "minimize" else -1.0
        self.best = math.inf
        self.round_text = ""
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=0, unit="epoch", dynamic_ncols=True, disable=None)  # no bar when not a terminal

    def add_total(self, epochs: int, done: int = 0) -> None:
        """More epochs to come (a round); `done` of them already trained before a resume."""
        if self.bar is not None:
            self.bar.total += epochs
            self.bar.update(done)
            self.bar.refresh()

    def round(self, index: int, planned: int | None) -> None:
        """A round begins: `index` from 0, of `planned` rounds (None: the strategy decides as it goes).

        Shown as "round 2/5" (or "round 2") when the sweep has more than one round.
        """
        if planned is not None and planned > 1:
            self.round_text = f"round {index + 1}/{planned}"
        elif index > 0:
            self.round_text = f"round {index + 1}"

    def epoch(self, metrics: dict[str, np.ndarray], label: str, epoch: int, epochs: int, checkpoints=None) -> None:
        value = self.sign * metrics[self.objective][metrics["trained"] & ~metrics["diverged"]]
        if value.size and np.isfinite(value).any():
            self.best = min(self.best, float(np.nanmin(value)))
        if self.bar is not None:
            parts = [self.round_text] if self.round_text else []
            parts += [f"epoch {epoch}/{epochs}", label]
            if math.isfinite(self.best):
                parts.append(f"best {self.objective} {self.sign * self.best:.4f}")
            if checkpoints is not None and checkpoints.last_saved_at is not None:
                parts.append(f"checkpoint {time.time() - checkpoints.last_saved_at:.0f}s ago")
            self.bar.set_postfix_str(" | ".join(parts))
            self.bar.update(1)

    def skip(self, epochs: int) -> None:
        if self.bar is not None and epochs:
            self.bar.update(epochs)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
