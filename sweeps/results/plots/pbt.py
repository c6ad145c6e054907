"""Population based training: the population's objective over time, and the best member's lineage."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sweeps.results.plots.axes import _save, is_log  # noqa: E402


def has_lineage(result) -> bool:
    """Whether the history records hyperparameter schedules (a population based training run)."""
    history = result.history
    return bool(len(history)) and bool((history["split"] == "lineage").any())


def lineage(result, trial: int) -> list[tuple[int, int]]:
    """(epoch, parent) where the trial's member took another member's weights (an exploit), in order."""
    history = result.history
    rows = history[(history["trial"] == trial) & (history["split"] == "lineage") & (history["metric"] == "parent")]
    return [(int(e), int(p)) for e, p in zip(rows["epoch"], rows["value"]) if int(p) != trial]


def plot_pbt(result, path: Path) -> Path:
    return _save(draw_pbt(result), path)


def draw_pbt(result) -> Figure:
    """Two panels: every member's objective by epoch; the best member's hyperparameter schedule,
    with the epochs at which it took another member's weights marked."""
    history, objective = result.history, result.objective
    split, metric = objective.split("_", 1)
    best = int(result.best()["number"])
    names = sorted(set(history.loc[history["split"] == "hparam", "metric"]))
    fig, axes = plt.subplots(1 + len(names), 1, figsize=(7.5, 3.0 + 2.2 * len(names)), sharex=True, squeeze=False)
    curves = history[(history["split"] == split) & (history["metric"] == metric)]
    top = axes[0, 0]
    for trial, rows in curves.groupby("trial"):
        is_best = trial == best
        top.plot(
            rows["epoch"],
            rows["value"],
            color="tab:red" if is_best else "0.6",
            lw=2.0 if is_best else 0.8,
            zorder=3 if is_best else 1,
            label=f"best member (trial {best})" if is_best else None,
        )
    top.set_ylabel(objective)
    top.set_title(f"population based training: {curves['trial'].nunique()} members; the population's {objective}")
    top.legend(loc="best", fontsize=8)
    exploits = lineage(result, best)
    for ax, name in zip(axes[1:, 0], names):
        rows = history[(history["trial"] == best) & (history["split"] == "hparam") & (history["metric"] == name)]
        ax.step(rows["epoch"], rows["value"], where="mid", color="tab:red")  # changes show between epochs
        ax.set_ylabel(name)
        if is_log(result, name):
            ax.set_yscale("log")
        for epoch, parent in exploits:
            ax.axvline(epoch - 0.5, color="0.5", ls=":", lw=0.8)
            ax.annotate(
                f"from {parent}",
                (epoch - 0.5, float(np.nanmax(rows["value"]))),
                fontsize=7,
                color="0.3",
                rotation=90,
                va="top",
                ha="right",
            )
    axes[-1, 0].set_xlabel("epoch")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(names):
        axes[1, 0].set_title(
            f"trial {best}'s hyperparameters by epoch; dotted: it copied another member's weights ({len(exploits)}x)",
            fontsize=9,
        )
    fig.tight_layout()
    return fig
