"""Learning curves: every trial's metric by epoch, coloured by the first swept hyperparameter."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sweeps.results.plots.axes import _save, colouring, swept  # noqa: E402


def y_range(values) -> tuple[float, float]:
    """The y range of the bulk of `values`: all their finite values unless a few lie far out.

    Far out is beyond three interquartile ranges from the quartiles (Tukey's far fence), that range
    taken as at least a quarter of the median's size so curves that nearly agree keep their noise.
    """
    values = np.asarray(values, float)[np.isfinite(np.asarray(values, float))]
    if not len(values):
        return 0.0, 1.0
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    spread = max(q3 - q1, 0.25 * abs(median), 1e-9)
    return max(values.min(), q1 - 3 * spread), min(values.max(), q3 + 3 * spread)


def plot_learning_curves(result, path: Path, metric: str = "val_loss") -> Path:
    return _save(draw_learning_curves(result, metric), path)


def draw_learning_curves(result, metric: str = "val_loss") -> Figure:
    """The figure `plot_learning_curves` writes, left open for the caller."""
    split, name = metric.split("_", 1)
    history = result.history
    curves = history[(history["split"] == split) & (history["metric"] == name)]
    table = result.table.set_index("number")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = swept(result)
    colour_of, add_key = colouring(result, names[0]) if names else ({}, None)
    finished = table.index[table["state"] != "diverged"]  # complete, or pruned by a strategy
    bulk = curves[curves["trial"].isin(finished)] if len(finished) else curves  # the diverged ones set no scale
    low, high = y_range(bulk["value"])
    pad = 0.05 * (high - low) if high > low else 0.05 * max(abs(high), 1e-3)
    bottom, top = low - pad, high + pad
    above = below = diverged = 0
    pruned = int((table["state"] == "pruned").sum())
    for trial, rows in curves.groupby("trial"):
        c = colour_of.get(trial, "C0")
        values = rows["value"].to_numpy(float)
        epochs = rows["epoch"].to_numpy()
        high_, low_ = ~np.isfinite(values) | (values > top), values < bottom
        above, below = above + bool(high_.any()), below + bool(low_.any())
        if table.loc[trial, "state"] == "diverged":
            diverged += 1
            ax.plot(epochs, values, "--.", color=c, lw=1, ms=4, alpha=0.8)  # dots: a one-epoch curve shows
            last = np.clip(values[-1], bottom, top) if np.isfinite(values[-1]) else top  # not finite: off the top
            ax.plot(epochs[-1], last, "x", color="red", ms=6, clip_on=False)
        else:
            is_pruned = table.loc[trial, "state"] == "pruned"
            ax.plot(epochs, values, "-", color=c, lw=0.6 if is_pruned else 1, alpha=0.45 if is_pruned else 0.8)
            for out, edge, mark in ((high_, top, "^"), (low_, bottom, "v")):  # where it leaves: a mark on the edge
                if out.any():
                    ax.plot(epochs[np.argmax(out)], edge, mark, color=c, ms=6, clip_on=False)
    if add_key is not None:
        add_key(fig, ax)
    ax.set_ylim(bottom, top)
    notes = [f"{diverged} diverged: dashed, x at its last epoch"] if diverged else []
    notes += [f"{pruned} pruned by the strategy: thin"] if pruned else []
    for count, side, edge in ((above, "above", top), (below, "below", bottom)):
        if count:
            notes.append(
                f"y clipped: {count} curve{'s' if count > 1 else ''} go{'' if count > 1 else 'es'} {side} {edge:.3g}"
            )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    colour = f"; colour: {names[0]}" if names else ""
    title = f"learning curves ({curves['trial'].nunique()} trials{colour})"
    ax.set_title("\n".join([title, "; ".join(notes)]) if notes else title, fontsize=10)
    ax.grid(True, alpha=0.3)
    return fig
