"""Per-epoch metrics of every trial, kept by trial number (never by a member's position).

Each compiled epoch returns (trials,) arrays of metrics together with `number`,
the trial each slot holds, and `trained`, whether it trained in that epoch.
`Records` keeps the rows of members that trained, tagged with their trial
number, so a slot that holds another trial later (a recycled slot, a copied
member) never mixes two trials' curves. The rows are flat arrays: they
travel into a checkpoint as they are.

Examples:
  >>> import numpy as np
  >>> r = Records()
  >>> r.add({"number": np.array([4, -1]), "trained": np.array([True, False]),
  ...        "diverged": np.array([False, False]), "active": np.array([True, False]),
  ...        "val_loss": np.array([0.5, 0.0])})
  >>> r.by_trial()[4]["val_loss"]
  array([0.5])
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sweeps.engine import PADDING

NOT_RECORDED = ("trained", "active")  # per-epoch masks that say nothing once a row is kept
SPLITS = ("train", "val", "test", "hparam", "lineage")
METRIC_ORDER = ("loss", "accuracy", "auc", "rmse", "mae")


def _canonical(name: str) -> tuple:
    """train_loss, val_loss, val_accuracy, ... then hyperparameters and lineage, alphabetically."""
    split, _, metric = name.partition("_")
    rank = SPLITS.index(split) if split in SPLITS else len(SPLITS)
    return rank, METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric


class Records:
    """Rows of (trial number, diverged, metrics...), one per trial and epoch it trained, in epoch order."""

    def __init__(self, arrays: Mapping[str, np.ndarray] | None = None):
        self._parts: dict[str, list[np.ndarray]] = {name: [np.asarray(v)] for name, v in (arrays or {}).items()}

    def add(self, metrics: Mapping[str, np.ndarray]) -> None:
        """Keeps one epoch's rows: every member that trained in it, padding left out."""
        keep = np.asarray(metrics["trained"], bool) & (np.asarray(metrics["number"]) != PADDING)
        for name, values in metrics.items():
            if name not in NOT_RECORDED:
                self._parts.setdefault(name, []).append(np.asarray(values)[keep])

    def arrays(self) -> dict[str, np.ndarray]:
        """Every row so far: name -> (rows,) array (`number`, `diverged`, and each metric)."""
        return {name: np.concatenate(parts) for name, parts in self._parts.items()}

    def by_trial(self) -> dict[int, dict]:
        """trial number -> {"diverged": bool (at its last epoch), metric name -> (epochs trained,) float64}."""
        if not self._parts:
            return {}
        rows = self.arrays()
        numbers = rows.pop("number").astype(np.int64)
        diverged = rows.pop("diverged").astype(bool)
        order = np.argsort(numbers, kind="stable")  # epochs stay in order within a trial
        starts = np.flatnonzero(np.r_[True, np.diff(numbers[order]) != 0])
        out = {}
        names = sorted(rows, key=_canonical)  # one order however the rows were built (or restored)
        for rows_of_trial in np.split(order, starts[1:]):
            record = {name: rows[name][rows_of_trial].astype(np.float64) for name in names}
            record["diverged"] = bool(diverged[rows_of_trial[-1]])
            out[int(numbers[rows_of_trial[0]])] = record
        return out
