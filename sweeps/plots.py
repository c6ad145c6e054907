"""Plots of a sweep, drawn from its table and history (so `sweeps report` redraws them from disk).

- `val_loss_vs_learning_rate.png`: the objective's best value against the learning rate,
  log x axis; diverged trials marked with a red x at the top.
- `learning_curves.png`: validation loss by epoch, one line per trial, coloured by
  learning rate on a log colour scale.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402

LR = "params_learning_rate"


def plot_run(result, folder: str | Path) -> list[Path]:
    """Draws every plot that applies to this sweep into `folder`; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [plot_learning_curves(result, folder / "learning_curves.png")]
    if LR in result.table:
        written.append(plot_metric_vs_learning_rate(result, folder / f"{result.objective}_vs_learning_rate.png"))
    return written


def plot_metric_vs_learning_rate(result, path: Path, metric: str | None = None) -> Path:
    metric = metric or result.objective
    table = result.table
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ok = table[table["state"] == "complete"]
    bad = table[table["state"] != "complete"]
    for seed, rows in ok.groupby("seed"):
        rows = rows.sort_values(LR)
        ax.plot(rows[LR], rows[f"best_{metric}"], "o-", ms=4, lw=1, label=f"seed {seed}" if table["seed"].nunique() > 1 else "complete")
    finite = ok[f"best_{metric}"].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    top = finite.max() if finite.size else 1.0
    bottom = finite.min() if finite.size else 0.0
    if len(bad):
        y_top = top + 0.08 * max(top - bottom, 1e-3)
        ax.scatter(bad[LR], np.full(len(bad), y_top), marker="x", color="red", s=40, label=f"diverged ({len(bad)})", zorder=3)
    if finite.size:
        best = result.best(metric)
        ax.axvline(best[LR], color="grey", ls=":", lw=1)
        ax.annotate(f"best lr {best[LR]:.3g}", (best[LR], best[f"best_{metric}"]), textcoords="offset points",
                    xytext=(6, 10), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"{metric} (best epoch)")
    ax.set_title(f"{metric} against learning rate ({len(table)} trials)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_learning_curves(result, path: Path, metric: str = "val_loss") -> Path:
    split, name = metric.split("_", 1)
    history = result.history
    curves = history[(history["split"] == split) & (history["metric"] == name)]
    table = result.table.set_index("number")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colour = LR if LR in table else None
    if colour is not None:
        values = table[colour].astype(float)
        norm = LogNorm(values.min(), values.max()) if values.min() > 0 and values.max() > values.min() else Normalize(values.min(), values.max() + 1e-12)
        cmap = plt.get_cmap("viridis")
    finite = curves["value"][np.isfinite(curves["value"])]
    for trial, rows in curves.groupby("trial"):
        c = cmap(norm(table.loc[trial, colour])) if colour is not None else None
        style = "--" if table.loc[trial, "state"] != "complete" else "-"
        ax.plot(rows["epoch"], rows["value"], style, color=c, lw=1, alpha=0.8)
    if colour is not None:
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="learning rate")
    if len(finite):
        # Keep the plot readable when diverged trials explode: clip the y range to the bulk of the curves.
        low, high = np.percentile(finite, [0, 95])
        ax.set_ylim(low - 0.05 * (high - low + 1e-9), high + 0.1 * (high - low + 1e-9))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"learning curves ({curves['trial'].nunique()} trials; dashed: diverged)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
