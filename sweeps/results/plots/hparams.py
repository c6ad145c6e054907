"""Plots of the objective against the hyperparameters: parallel coordinates, the learning rate, marginals."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sweeps.results.plots.axes import (  # noqa: E402
    MAX_LINES,
    MAX_TICKS,
    STRUCTURAL,
    _axis,
    _numeric,
    _order,
    _param_axis,
    _save,
    categories,
    is_discrete,
    is_log,
    swept,
)


def plot_parallel_coordinates(result, path: Path) -> Path:
    return _save(draw_parallel_coordinates(result), path)


def draw_parallel_coordinates(result) -> Figure:
    """The figure `plot_parallel_coordinates` writes, left open for the caller."""
    table = result.table[result.table["state"] != "diverged"]  # complete and pruned trials: real values
    names = swept(result)
    columns = [(n, f"params_{n}") for n in names] + [(result.objective, "value")]
    fig, ax = plt.subplots(figsize=(max(7, 1.8 * len(columns)), 4.8))
    positions = []
    for k, (name, column) in enumerate(columns):
        place, ticks, labels = _param_axis(result, name) if column != "value" else _axis(table[column])
        positions.append(place(table[column].tolist()))
        ax.axvline(k, color="black", lw=0.8)
        for tick, label in zip(ticks, labels):
            ax.text(
                k + 0.03,
                tick,
                label,
                fontsize=7,
                va="center",
                zorder=3,
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1},
            )
    values = table["value"].to_numpy(float)
    norm = Normalize(np.nanmin(values), np.nanmax(values)) if len(values) else Normalize(0, 1)
    sign = 1.0 if result.direction == "minimize" else -1.0
    cmap = plt.get_cmap("viridis_r" if sign > 0 else "viridis")  # brighter is better
    lines = np.stack(positions, axis=1) if positions and len(table) else np.zeros((0, len(columns)))
    for row, value in sorted(zip(lines, values), key=lambda item: -sign * item[1]):  # best drawn last, on top
        ax.plot(range(len(columns)), row, color=cmap(norm(value)), alpha=0.6, lw=1)
    ax.set_xticks(range(len(columns)), [name for name, _ in columns])
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(columns) - 0.6)
    fig.colorbar(
        plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02, label=f"{result.objective} (brighter is better)"
    )
    diverged = int((result.table["state"] == "diverged").sum())
    shown = f"; {diverged} diverged not shown" if diverged else ""
    ax.set_title(f"parallel coordinates: {len(table)} trials{shown}", fontsize=10)
    return fig


def plot_metric_vs_learning_rate(result, path: Path, metric: str | None = None) -> Path:
    return _save(draw_metric_vs_learning_rate(result, metric), path)


def draw_metric_vs_learning_rate(result, metric: str | None = None) -> Figure:
    return draw_objective_against(result, "learning_rate", metric)  # what plot_metric_vs_learning_rate writes


def plot_marginal(result, name: str, path: Path) -> Path:
    return _save(draw_marginal(result, name), path)


def draw_marginal(result, name: str) -> Figure:
    return draw_objective_against(result, name)  # what plot_marginal writes


def line_groups(result, name: str) -> tuple[list[str], list[str], bool]:
    """How a plot against `name` splits the trials: (grouped, ungrouped, joined).

    The other swept hyperparameters that are discrete give one line per combination of their values,
    structural ones (`STRUCTURAL`) first; the last are left ungrouped while that makes more than
    `MAX_LINES` lines. A group's trials are joined by a line only when none of the others is continuous,
    so a line's points differ in `name` alone (a line goes through the mean over seeds, and through the
    best over the ungrouped hyperparameters); otherwise they are points.
    """
    others = [n for n in swept(result) if n != name]
    discrete = sorted((n for n in others if is_discrete(result, n)), key=lambda n: n not in STRUCTURAL)
    grouped = list(discrete)
    while grouped and len(result.table.groupby([f"params_{n}" for n in grouped])) > MAX_LINES:
        grouped.pop()
    return grouped, [n for n in discrete if n not in grouped], len(discrete) == len(others)


def draw_objective_against(result, name: str, metric: str | None = None) -> Figure:
    """`metric` (default: the objective) at each trial's best epoch against hyperparameter `name`.

    One colour per combination of the other discrete hyperparameters (`line_groups`), joined by a line
    when nothing else varies along it; a log x axis where the space is log, discrete values as ticks,
    categories side by side; diverged trials a red x above the rest; the best trial marked.
    """
    metric = metric or result.objective
    table, column, y = result.table, f"params_{name}", f"best_{metric}"
    numeric = _numeric(table[column].tolist())
    order = None if numeric else categories(result, name)
    log = numeric and is_log(result, name) and bool((table[column] > 0).all())
    ok = table[(table["state"] != "diverged") & np.isfinite(table[y].astype(float))]
    bad = table[table["state"] == "diverged"]
    grouped, ungrouped, joined = line_groups(result, name)
    combos = list(itertools.product(*(_order(result, n) for n in grouped)))

    def warp(v):  # x in the axis' own units: log10 on a log axis, the index of a category
        if not numeric:
            return np.array([order.index(str(x)) for x in v], float)
        return np.log10(np.asarray(v, float)) if log else np.asarray(v, float)

    distinct = np.unique(warp(table[column]))
    # On a discrete axis the groups stand side by side within 30% of the gap between its values.
    discrete = not numeric or (is_discrete(result, name) and len(distinct) <= MAX_TICKS)
    width = 0.3 * (np.diff(distinct).min() if len(distinct) > 1 else 1.0) / len(combos) if discrete else 0.0
    rng = np.random.default_rng(0)

    def at(v, k=None, jitter=False):
        t = warp(v) + (0.0 if k is None else (k - (len(combos) - 1) / 2) * width)
        t = t + (rng.uniform(-0.3, 0.3, len(t)) * width if jitter else 0.0)
        return 10**t if log else t

    fig, ax = plt.subplots(figsize=(7, 4.5))
    handles = []
    for k, combo in enumerate(combos):
        rows = ok
        for n, v in zip(grouped, combo):
            values = rows[f"params_{n}"]
            rows = rows[(values == v) if _numeric([v]) else (values.astype(str) == v)]
        if rows.empty:
            continue
        colour = f"C{k % 10}"
        label = ", ".join(f"{v:g}" if _numeric([v]) else str(v) for v in combo) or "complete"
        ax.scatter(at(rows[column], k, jitter=not joined), rows[y], s=18, alpha=0.7, color=colour, zorder=2)
        if joined:
            per = rows.groupby([column, *(f"params_{n}" for n in ungrouped)], sort=False)[y].mean()  # over seeds
            per = per.groupby(level=0).agg("min" if result.direction_of(metric) == "minimize" else "max")
            per = per.iloc[np.argsort(warp(per.index))]
            ax.plot(at(per.index, k), per.to_numpy(), "-", lw=1.2, color=colour, label=label)
        handles.append(Line2D([], [], color=colour, marker="o", ms=4, ls="-" if joined else "none", label=label))
    finite = ok[y].to_numpy(float)
    top, bottom = (finite.max(), finite.min()) if finite.size else (1.0, 0.0)
    if len(bad):
        y_top = top + 0.08 * max(top - bottom, 1e-3)
        handles.append(
            ax.scatter(
                at(bad[column]),
                np.full(len(bad), y_top),
                marker="x",
                color="red",
                s=40,
                label=f"diverged ({len(bad)})",
                zorder=3,
            )
        )
    if finite.size:
        best = result.best(metric)
        x = at([best[column]])[0]
        right = warp([best[column]])[0] > distinct.min() + 0.6 * np.ptp(distinct)  # label on its left, inside
        ax.axvline(x, color="grey", ls=":", lw=1)
        ax.annotate(  # at the top of the best value's line: points near the best sit low, so none under it
            f"best {name} {best[column]:.3g}" if numeric else f"best {name} {best[column]}",
            (x, 0.97),
            xycoords=ax.get_xaxis_transform(),
            textcoords="offset points",
            xytext=(-4 if right else 4, 0),
            ha="right" if right else "left",
            va="top",
            fontsize=9,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
        )
    if log:
        ax.set_xscale("log")
    if discrete:  # label the values tried, not a generic scale
        ticks = sorted(table[column].unique()) if numeric else order
        ax.set_xticks(at(ticks) if numeric else range(len(order)), [f"{v:g}" for v in ticks] if numeric else order)
        ax.xaxis.set_minor_locator(plt.NullLocator())
    seeds = table["seed"].nunique()
    if joined:
        notes = [f"line: mean over {seeds} seeds"] if seeds > 1 else []
        notes += [f"line: best over {', '.join(ungrouped)}"] if ungrouped else []
    else:
        notes = [f"points differ in {', '.join(n for n in swept(result) if n != name and not is_discrete(result, n))}"]
    if not grouped and handles and handles[0].get_label() == "complete":
        handles = handles[1:]  # a single group needs no entry of its own
    if handles or notes:
        ax.legend(
            handles=handles,
            title="\n".join([", ".join(grouped), *notes]).strip() or None,
            fontsize=8,
            title_fontsize=8,
            loc="center left",
            bbox_to_anchor=(1.02, 0.5),
        )
    ax.set_xlabel(name)
    ax.set_ylabel(f"{metric} (best epoch)")
    ax.set_title(f"{metric} against {name} ({len(table)} trials)")
    ax.grid(True, which="both", alpha=0.3)
    return fig
