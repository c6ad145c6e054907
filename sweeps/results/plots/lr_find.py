"""The learning-rate range test's plot: both methods' loss against the learning rate, the suggestion marked.

One axes, log x: the vectorized population's losses (dots) and their smoothed curve, the classic
run's minibatch losses (faint) and their smoothed curve, the suggested range shaded, the suggestion
and the largest stable rate as vertical lines, the classic run's own suggestion as a triangle on its
curve, the untrained model's loss as a dotted line. Losses above the plot (exploded, or not finite)
are red crosses at its top edge.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sweeps.results.plots.axes import _save  # noqa: E402

VECTORIZED_COLOUR, CLASSIC_COLOUR = "tab:blue", "tab:orange"
TOP_OVER_START = 1.25  # the y axis ends this far above the untrained model's loss: divergence starts below it


def plot_lr_find(found, path: Path) -> Path:
    return _save(draw_lr_find(found), path)


def draw_lr_find(found) -> Figure:
    """The figure `plot_lr_find` writes, left open for the caller."""
    v, c = found.vectorized, found.classic
    settings = found.settings
    finite = [curve.losses[np.isfinite(curve.losses)] for curve in (v, c) if curve is not None]
    bottom = float(min((f.min() for f in finite if len(f)), default=0.0))
    top = TOP_OVER_START * found.start_loss
    bottom = min(bottom, found.start_loss) - 0.05 * (top - bottom)

    fig, ax = plt.subplots(figsize=(11, 5.2))
    low, high = found.range
    ax.axvspan(low, high, color="tab:green", alpha=0.12, label=f"suggested range {low:.3g} to {high:.3g}")
    ax.axhline(found.start_loss, color="grey", lw=0.8, ls=":", label=f"untrained model's loss {found.start_loss:.3g}")
    if c is not None:
        ax.plot(c.learning_rates, np.clip(c.losses, None, top), color=CLASSIC_COLOUR, lw=0.6, alpha=0.35)
        ax.plot(
            c.learning_rates,
            c.smoothed,
            color=CLASSIC_COLOUR,
            lw=1.8,
            label=f"classic: one run, rate growing every minibatch ({len(c.learning_rates)} steps)",
        )
        at = np.searchsorted(c.learning_rates, c.suggestion)
        ax.plot(
            [c.suggestion],
            [c.smoothed[at]],
            "v",
            color=CLASSIC_COLOUR,
            ms=9,
            mec="black",
            label=f"classic's steepest descent {c.suggestion:.3g}",
        )
    shown = np.isfinite(v.losses) & (v.losses <= top)
    epochs = settings["epochs"]
    ax.plot(
        v.learning_rates,
        np.clip(np.nan_to_num(v.losses, nan=top, posinf=top), None, top),
        "-",
        color=VECTORIZED_COLOUR,
        lw=1.4,
        label="_vectorized line",
    )
    ax.plot(
        v.learning_rates[shown],
        v.losses[shown],
        "o",
        color=VECTORIZED_COLOUR,
        ms=3.5,
        label=f"vectorized: {len(v.learning_rates)} constant rates, {epochs} epoch{'s' * (epochs != 1)} each",
    )
    if (~shown).any():
        ax.plot(
            v.learning_rates[~shown],
            np.full(int((~shown).sum()), top),
            "x",
            color="red",
            ms=6,
            clip_on=False,
            label="above the plot: exploded or not finite",
        )
    ax.axvline(found.suggestion, color="tab:green", lw=1.6, ls="--", label=f"suggestion (steepest descent) {low:.3g}")
    ax.axvline(found.max_stable, color="tab:red", lw=1.4, ls="-.", label=f"largest stable rate {high:.3g}")
    ax.set_xscale("log")
    ax.set_xlim(settings["min_lr"], settings["max_lr"])
    ax.set_ylim(bottom, top)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(
        f"learning-rate range test: {settings['optimizer']}, batch {settings['batch_size']}, "
        f"MLP hidden {settings['model']['hidden']}",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(True, which="major", alpha=0.3)
    return fig
