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
Each `plot_*` writes a file; the `draw_*` beside it returns the open `Figure` instead.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sweeps.engine.metrics import direction  # noqa: E402

MAX_TICKS = 12  # a discrete axis with more values than this gets a generic scale
MAX_LINES = 10  # the most lines (one per value of the other hyperparameters) in a plot against one of them
STRUCTURAL = ("batch_size", "hidden", "activation", "optimizer", "schedule")  # one compiled program per value


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_run(result, folder: str | Path) -> list[Path]:
    """Draws every plot that applies to this sweep into `folder`; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written, names = [plot_learning_curves(result, folder / "learning_curves.png")], swept(result)
    if "learning_rate" in names:  # otherwise the marginals show the objective against what was swept
        written.append(plot_metric_vs_learning_rate(result, folder / f"{result.objective}_vs_learning_rate.png"))
    if len(names) >= 2:
        written.append(plot_parallel_coordinates(result, folder / "parallel_coordinates.png"))
    for name in names:
        if name != "learning_rate":  # the learning-rate plot above is its marginal
            written.append(plot_marginal(result, name, folder / f"marginal_{name}.png"))
    return written


def swept(result) -> list[str]:
    """The hyperparameters that took more than one value in this sweep."""
    table = result.table
    return [c[len("params_") :] for c in table.columns if c.startswith("params_") and table[c].nunique() > 1]


def is_log(result, name: str) -> bool:
    """Whether the space of `name` is logarithmic (loguniform, log integers, powers of two)."""
    written = result.config.get("space", {}).get(name)
    return isinstance(written, dict) and ("loguniform" in written or bool(written.get("log")))


def is_discrete(result, name: str) -> bool:
    """Whether `name` took values from a list (a choice, integers, powers of two), not from a range.

    A name the space does not describe (added by a strategy) is discrete when its values are not
    numbers or are at most `MAX_TICKS` distinct ones.
    """
    written = result.config.get("space", {}).get(name)
    if isinstance(written, dict):
        return not {"uniform", "loguniform"} & set(written)
    values = result.table[f"params_{name}"]
    return not _numeric(values.tolist()) or values.nunique() <= MAX_TICKS


def categories(result, name: str) -> list[str]:
    """The order of a categorical hyperparameter's values in every plot: the space's order, then others sorted.

    Values are compared as the table writes them (`str`, so the layout (128, 64) is "[128, 64]").
    """
    present = {str(v) for v in result.table[f"params_{name}"]}
    written = result.config.get("space", {}).get(name)
    listed = written.get("choice", []) if isinstance(written, dict) else []
    order = list(dict.fromkeys(str(v) for v in listed if str(v) in present))
    return order + sorted(present - set(order))


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)


def _order(result, name: str) -> list:
    """The values of `name` in plotting order: numbers ascending, categories in `categories` order."""
    values = result.table[f"params_{name}"]
    return sorted(values.unique()) if _numeric(values.tolist()) else categories(result, name)


def colouring(result, name: str):
    """Colours trials by hyperparameter `name`: trial number -> colour, and `add_key(fig, ax)` that says so.

    Numbers get viridis (log-scaled where the space is log) and a colour bar labelled `name`, ticked at
    the values tried when the axis is discrete; categories get one colour each and a legend titled
    `name`, in `categories` order.
    """
    column = result.table.set_index("number")[f"params_{name}"]
    if not _numeric(column.tolist()):
        order = categories(result, name)
        palette = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(order)}

        def add_legend(fig, ax):
            handles = [Line2D([], [], color=palette[c], label=c) for c in order]
            ax.legend(
                handles=handles, title=name, fontsize=8, title_fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5)
            )

        return {trial: palette[str(v)] for trial, v in column.items()}, add_legend
    values = column.astype(float)
    low, high = values.min(), values.max()
    if is_log(result, name) and low > 0:
        norm = LogNorm(low, high if high > low else low * 10)
    else:
        norm = Normalize(low, high if high > low else low + 1)
    cmap = plt.get_cmap("viridis")
    distinct = np.unique(values)

    def add_colour_bar(fig, ax):
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=name)
        if is_discrete(result, name) and len(distinct) <= MAX_TICKS:
            bar.set_ticks(distinct, labels=[f"{v:g}" for v in distinct])
            bar.minorticks_off()

    return {trial: cmap(norm(v)) for trial, v in values.items()}, add_colour_bar


def _axis(values, log: bool = False, discrete: bool = False, order: list[str] | None = None):
    """A shared [0, 1] axis for `values`: a function placing values on it, tick positions and labels.

    Discrete numbers are ticked at the values they took (up to `MAX_TICKS`), a range at its ends and
    middle; categories (`order`) are evenly spaced in that order.
    """
    if order is not None:
        span = max(len(order) - 1, 1)
        index = {c: i / span for i, c in enumerate(order)}
        return (lambda v: np.array([index[str(x)] for x in v])), np.arange(len(order)) / span, list(order)
    x = np.asarray(values, float)
    log = log and bool((x > 0).all())
    warp = np.log10 if log else np.asarray
    t = warp(x)
    low, high = (t.min(), t.max()) if len(t) else (0.0, 1.0)
    span = high - low if high > low else 1.0
    distinct = np.unique(x)
    if discrete and len(distinct) <= MAX_TICKS:
        ticks, labels = warp(distinct), [f"{v:g}" for v in distinct]
    else:
        ticks = np.linspace(low, high, 3) if high > low else np.array([low])
        labels = [f"{10**v:.3g}" if log else f"{v:.3g}" for v in ticks]
    return (lambda v: (warp(np.asarray(v, float)) - low) / span), (np.asarray(ticks) - low) / span, labels


def _param_axis(result, name: str):
    """`_axis` for a swept hyperparameter, over every trial's value (so diverged ones keep their ticks)."""
    values = result.table[f"params_{name}"].tolist()
    if not _numeric(values):
        return _axis(values, order=categories(result, name))
    return _axis(values, log=is_log(result, name), discrete=is_discrete(result, name))


def plot_parallel_coordinates(result, path: Path) -> Path:
    return _save(draw_parallel_coordinates(result), path)


def draw_parallel_coordinates(result) -> Figure:
    """The figure `plot_parallel_coordinates` writes, left open for the caller."""
    table = result.table[result.table["state"] == "complete"]
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
    diverged = int((result.table["state"] != "complete").sum())
    shown = f"; {diverged} diverged not shown" if diverged else ""
    ax.set_title(f"parallel coordinates: {len(table)} complete trials{shown}", fontsize=10)
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
    ok = table[(table["state"] == "complete") & np.isfinite(table[y].astype(float))]
    bad = table[table["state"] != "complete"]
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
            per = per.groupby(level=0).agg("min" if direction(metric) == "minimize" else "max")
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
        ax.annotate(
            f"best {name} {best[column]:.3g}" if numeric else f"best {name} {best[column]}",
            (x, best[y]),
            textcoords="offset points",
            xytext=(-6 if right else 6, 10),
            ha="right" if right else "left",
            fontsize=9,
            bbox={"facecolor": "white", "alpha": 0.6, "edgecolor": "none", "pad": 1},
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
    complete = table.index[table["state"] == "complete"]
    bulk = curves[curves["trial"].isin(complete)] if len(complete) else curves  # the diverged ones set no scale
    low, high = y_range(bulk["value"])
    pad = 0.05 * (high - low) if high > low else 0.05 * max(abs(high), 1e-3)
    bottom, top = low - pad, high + pad
    above = below = diverged = 0
    for trial, rows in curves.groupby("trial"):
        c = colour_of.get(trial, "C0")
        values = rows["value"].to_numpy(float)
        epochs = rows["epoch"].to_numpy()
        high_, low_ = ~np.isfinite(values) | (values > top), values < bottom
        above, below = above + bool(high_.any()), below + bool(low_.any())
        if table.loc[trial, "state"] != "complete":
            diverged += 1
            ax.plot(epochs, values, "--.", color=c, lw=1, ms=4, alpha=0.8)  # dots: a one-epoch curve shows
            last = np.clip(values[-1], bottom, top) if np.isfinite(values[-1]) else top  # not finite: off the top
            ax.plot(epochs[-1], last, "x", color="red", ms=6, clip_on=False)
        else:
            ax.plot(epochs, values, "-", color=c, lw=1, alpha=0.8)
            for out, edge, mark in ((high_, top, "^"), (low_, bottom, "v")):  # where it leaves: a mark on the edge
                if out.any():
                    ax.plot(epochs[np.argmax(out)], edge, mark, color=c, ms=6, clip_on=False)
    if add_key is not None:
        add_key(fig, ax)
    ax.set_ylim(bottom, top)
    notes = [f"{diverged} diverged: dashed, x at its last epoch"] if diverged else []
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
