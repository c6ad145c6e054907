"""What every plot needs: which hyperparameters were swept, their scales, orders, colours and axes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sweeps.driver import run_folder  # noqa: E402

MAX_TICKS = 12  # a discrete axis with more values than this gets a generic scale
MAX_LINES = 10  # the most lines (one per value of the other hyperparameters) in a plot against one of them
STRUCTURAL = ("batch_size", "hidden", "activation", "optimizer", "schedule")  # one compiled program per value
DPI = 120


def _save(fig: Figure, path: Path) -> Path:
    """Writes the figure (PNG unless `path` names another format), whole or not at all (`run_folder.atomic_write`), and
    closes it.

    The figure is laid out at the resolution it is saved at, so the layout's text measurements serve the
    drawing too (at matplotlib's default 100 dpi every label is measured twice).
    """
    path = Path(path)
    fig.set_dpi(DPI)
    fig.tight_layout()
    try:
        with run_folder.atomic_write(path) as f:
            fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=DPI)
    finally:
        plt.close(fig)
    return path


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
