"""Plots of a sweep, drawn from its table and history (so `sweeps report` redraws them from disk).

- `<objective>_vs_learning_rate.png` (when the learning rate was swept): the objective's best value
  against the learning rate, log x axis; one colour per value of the other discrete hyperparameters,
  joined by a line unless a continuous one also varies; diverged trials a red x at the top.
- `learning_curves.png`: validation loss by epoch, one line per trial, coloured by the first swept
  hyperparameter; the y range is the complete trials' bulk, the title says what leaves it.
- `parallel_coordinates.png` (two or more swept hyperparameters): one line per trial
  across the hyperparameters' axes and the objective, coloured by the objective.
- `marginal_<name>.png`, one per swept hyperparameter but the learning rate: the objective
  against its values, drawn as the learning-rate plot is.

Discrete axes are ticked at the values tried; categories keep the space's order in every plot.
File names built from names (the objective, a hyperparameter) go through `sweeps.driver.evidence.file_name`,
so a plot is always written inside `folder`.
Each `plot_*` writes a file; the `draw_*` beside it returns the open `Figure` instead.
"""

from __future__ import annotations

from pathlib import Path

from sweeps.driver.evidence import file_name
from sweeps.results.plots.axes import (
    MAX_LINES,
    MAX_TICKS,
    STRUCTURAL,
    categories,
    colouring,
    is_discrete,
    is_log,
    swept,
)
from sweeps.results.plots.curves import draw_learning_curves, plot_learning_curves, y_range
from sweeps.results.plots.hparams import (
    draw_marginal,
    draw_metric_vs_learning_rate,
    draw_objective_against,
    draw_parallel_coordinates,
    line_groups,
    plot_marginal,
    plot_metric_vs_learning_rate,
    plot_parallel_coordinates,
)
from sweeps.results.plots.pbt import draw_pbt, has_lineage, lineage, plot_pbt


def plot_run(result, folder: str | Path) -> list[Path]:
    """Draws every plot that applies to this sweep into `folder`; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written, names = [plot_learning_curves(result, folder / "learning_curves.png")], swept(result)
    if "learning_rate" in names:  # otherwise the marginals show the objective against what was swept
        path = folder / file_name(f"{result.objective}_vs_learning_rate.png")
        written.append(plot_metric_vs_learning_rate(result, path))
    if len(names) >= 2:
        written.append(plot_parallel_coordinates(result, folder / "parallel_coordinates.png"))
    for name in names:
        if name != "learning_rate":  # the learning-rate plot above is its marginal
            written.append(plot_marginal(result, name, folder / file_name(f"marginal_{name}.png")))
    if has_lineage(result):
        written.append(plot_pbt(result, folder / "pbt_lineage.png"))
    return written


__all__ = [
    "MAX_LINES",
    "MAX_TICKS",
    "STRUCTURAL",
    "categories",
    "colouring",
    "draw_learning_curves",
    "draw_marginal",
    "draw_metric_vs_learning_rate",
    "draw_objective_against",
    "draw_parallel_coordinates",
    "draw_pbt",
    "has_lineage",
    "lineage",
    "plot_pbt",
    "is_discrete",
    "is_log",
    "line_groups",
    "plot_learning_curves",
    "plot_marginal",
    "plot_metric_vs_learning_rate",
    "plot_parallel_coordinates",
    "plot_run",
    "swept",
    "y_range",
]
