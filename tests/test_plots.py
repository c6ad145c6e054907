"""The plots read what the sweep did: checked through the matplotlib objects they draw.

Results are built by hand (no training), so every value a plot shows is known here.
"""

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from sweeps.results import plots
from sweeps.results.result import Result
from sweeps.space import as_axis, axis_to_config, choice, loguniform, powers_of_two, uniform


def make_result(params, space, curves=None, diverged=(), seeds=1):
    """A Result whose trials take `params` (name -> values, crossed) and `seeds` seeds.

    Args:
      params: name -> the values tried; every combination is a configuration.
      space: name -> axis (as given to sweeps.run); fixed values may be plain scalars.
      curves: trial number -> val_loss by epoch; default: three epochs falling from 0.9 by trial.
      diverged: trial numbers marked diverged.
    """
    names = list(params)
    configs = list(itertools.product(*params.values()))
    rows, history = [], []
    for c, values in enumerate(configs):
        for s in range(seeds):
            number = c * seeds + s
            curve = np.asarray(curves[number] if curves else [0.9 - 0.01 * number - 0.1 * e for e in range(3)], float)
            finite = np.where(np.isfinite(curve), curve, np.inf)
            best = int(np.argmin(finite))
            row = {"number": number, "config": c, "seed": s}
            row.update({f"params_{n}": v for n, v in zip(names, values)})
            row.update(
                state="diverged" if number in diverged else "complete",
                epochs=len(curve),
                best_epoch=best + 1,
                value=curve[best],
                best_val_loss=curve[best],
                final_val_loss=curve[-1],
            )
            rows.append(row)
            history += [(number, e + 1, "val", "loss", v) for e, v in enumerate(curve)]
    config = {
        "space": {n: axis_to_config(as_axis(a)) for n, a in space.items()},
        "objective": "val_loss",
        "data": {"task": "binary"},
    }
    history = pd.DataFrame(history, columns=["trial", "epoch", "split", "metric", "value"])
    return Result(pd.DataFrame(rows), history, config)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def colorbar_axes(fig):
    """The colour bars' axes (every axes but the first, the plot's own)."""
    return fig.axes[1:]


def legend_texts(ax):
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


def axis_labels(ax, k):
    """The tick labels written beside the k-th axis of a parallel-coordinates plot, bottom to top."""
    texts = [t for t in ax.texts if round(t.get_position()[0]) == k]
    return [t.get_text() for t in sorted(texts, key=lambda t: t.get_position()[1])]


def shown_text(ax):
    return " ".join([ax.get_title(), *(t.get_text() for t in ax.texts)])


# --- 11: learning curves are coloured by the first swept hyperparameter, and say so --------------


@pytest.mark.parametrize(
    "params, space, name, scale",
    [
        ({"dropout": [0.0, 0.2, 0.4]}, {"dropout": uniform(0.0, 0.5)}, "dropout", "linear"),
        # a fixed learning rate is a params_ column with one value: it must not take the colour
        (
            {"learning_rate": [0.01], "dropout": [0.0, 0.2, 0.4]},
            {"learning_rate": 0.01, "dropout": uniform(0.0, 0.5)},
            "dropout",
            "linear",
        ),
        ({"learning_rate": [1e-4, 1e-3, 1e-2]}, {"learning_rate": loguniform(1e-4, 1e-2)}, "learning_rate", "log"),
        ({"batch_size": [16, 64, 256]}, {"batch_size": powers_of_two(16, 256)}, "batch_size", "log"),
    ],
)
def test_learning_curves_colour_bar_names_the_first_swept_hyperparameter(params, space, name, scale):
    fig = plots.draw_learning_curves(make_result(params, space))
    (bar,) = colorbar_axes(fig)
    assert bar.get_ylabel() == name
    assert bar.get_yscale() == scale
    colours = {tuple(line.get_color()) for line in fig.axes[0].lines if len(line.get_xdata()) > 1}
    assert len(colours) == 3, "each value its own colour"
    assert name in fig.axes[0].get_title()


def test_learning_curves_colour_bar_of_a_discrete_axis_has_its_values_as_ticks():
    fig = plots.draw_learning_curves(make_result({"batch_size": [32, 128]}, {"batch_size": [32, 128]}))
    (bar,) = colorbar_axes(fig)
    np.testing.assert_allclose(bar.get_yticks(), [32, 128])


def test_learning_curves_of_a_categorical_hyperparameter_have_a_legend():
    space = {"activation": choice(["tanh", "relu", "gelu"])}
    fig = plots.draw_learning_curves(make_result({"activation": ["relu", "tanh", "gelu"]}, space))
    assert colorbar_axes(fig) == []
    ax = fig.axes[0]
    assert legend_texts(ax) == ["tanh", "relu", "gelu"], "the space's order"
    assert ax.get_legend().get_title().get_text() == "activation"


# --- 12: the objective against the learning rate: one line per value of the other hyperparameters --


def curve_lines(ax):
    """The labelled lines with more than one point (not the best trial's marker line)."""
    return [line for line in ax.lines if not line.get_label().startswith("_") and len(line.get_xdata()) > 1]


def test_objective_against_learning_rate_draws_one_line_per_batch_size():
    lrs = [1e-4, 1e-3, 1e-2]
    space = {"learning_rate": loguniform(1e-4, 1e-2), "batch_size": [32, 128]}
    fig = plots.draw_metric_vs_learning_rate(make_result({"learning_rate": lrs, "batch_size": [32, 128]}, space))
    ax = fig.axes[0]
    lines = curve_lines(ax)
    assert len(lines) == 2
    for line in lines:
        np.testing.assert_allclose(line.get_xdata(), lrs)
    assert legend_texts(ax) == ["32", "128"]
    assert ax.get_legend().get_title().get_text() == "batch_size"
    assert ax.get_xscale() == "log"


def test_objective_against_learning_rate_with_two_discrete_others_names_both():
    space = {"learning_rate": loguniform(1e-4, 1e-2), "batch_size": [32, 128], "epochs": [2, 3]}
    result = make_result({"learning_rate": [1e-4, 1e-2], "batch_size": [32, 128], "epochs": [2, 3]}, space)
    ax = plots.draw_metric_vs_learning_rate(result).axes[0]
    assert len(curve_lines(ax)) == 4
    assert legend_texts(ax) == ["32, 2", "32, 3", "128, 2", "128, 3"]
    assert ax.get_legend().get_title().get_text() == "batch_size, epochs"


def test_objective_against_learning_rate_with_a_continuous_other_is_points_not_a_line():
    space = {"learning_rate": loguniform(1e-4, 1e-2), "dropout": uniform(0.0, 0.5)}
    result = make_result({"learning_rate": [1e-4, 1e-3, 1e-2], "dropout": [0.1, 0.3]}, space)
    ax = plots.draw_metric_vs_learning_rate(result).axes[0]
    assert curve_lines(ax) == [], "no line joins trials that differ in a continuous hyperparameter"
    assert sum(len(c.get_offsets()) for c in ax.collections) == 6


def test_objective_against_learning_rate_with_too_many_combinations_keeps_the_structural_one():
    space = {"learning_rate": loguniform(1e-4, 1e-2), "batch_size": powers_of_two(16, 256), "epochs": [1, 2, 3]}
    result = make_result(
        {"learning_rate": [1e-4, 1e-2], "batch_size": [16, 32, 64, 128, 256], "epochs": [1, 2, 3]}, space
    )
    assert plots.line_groups(result, "learning_rate") == (["batch_size"], ["epochs"], True)
    ax = plots.draw_metric_vs_learning_rate(result).axes[0]
    assert legend_texts(ax) == ["16", "32", "64", "128", "256"]
    assert "best over epochs" in ax.get_legend().get_title().get_text()
    line = curve_lines(ax)[0]  # batch size 16: the lowest of its three epoch budgets at each learning rate
    rows = result.table[result.table["params_batch_size"] == 16]
    np.testing.assert_allclose(line.get_ydata(), rows.groupby("params_learning_rate")["value"].min())


def test_plot_run_draws_no_learning_rate_plot_when_the_learning_rate_is_fixed(tmp_path):
    space = {"learning_rate": 0.01, "dropout": uniform(0.0, 0.5)}
    result = make_result({"learning_rate": [0.01], "dropout": [0.0, 0.2, 0.4]}, space)
    written = sorted(p.name for p in plots.plot_run(result, tmp_path))
    assert written == ["learning_curves.png", "marginal_dropout.png"]


# --- 13: discrete axes are ticked at their values; categories keep one order ------------------------


def test_parallel_coordinates_tick_discrete_axes_at_their_values_only():
    space = {"learning_rate": loguniform(1e-4, 1e-2), "batch_size": [32, 128], "epochs": [2, 3]}
    result = make_result({"learning_rate": [1e-4, 1e-2], "batch_size": [32, 128], "epochs": [2, 3]}, space)
    ax = plots.draw_parallel_coordinates(result).axes[0]
    assert axis_labels(ax, 1) == ["32", "128"]
    assert axis_labels(ax, 2) == ["2", "3"]


def test_parallel_coordinates_name_the_colour_and_mention_diverged_trials_only_when_some_did():
    space = {"learning_rate": loguniform(1e-4, 1e-2), "batch_size": [32, 128]}
    params = {"learning_rate": [1e-4, 1e-2], "batch_size": [32, 128]}
    fig = plots.draw_parallel_coordinates(make_result(params, space))
    assert "diverged" not in fig.axes[0].get_title()
    (bar,) = colorbar_axes(fig)
    assert bar.get_ylabel().startswith("val_loss")
    fig = plots.draw_parallel_coordinates(make_result(params, space, diverged={3}))
    assert "1 diverged" in fig.axes[0].get_title()


def test_categorical_values_keep_the_space_order_in_every_plot():
    layouts = ["[64]", "[128, 64]", "[32, 32]"]  # as the table writes tuples
    space = {"hidden": choice([(64,), (128, 64), (32, 32)]), "learning_rate": loguniform(1e-4, 1e-2)}
    result = make_result({"hidden": layouts, "learning_rate": [1e-4, 1e-2]}, space)
    assert axis_labels(plots.draw_parallel_coordinates(result).axes[0], 0) == layouts
    marginal = plots.draw_marginal(result, "hidden").axes[0]
    assert [t.get_text() for t in marginal.get_xticklabels()] == layouts
    assert legend_texts(plots.draw_learning_curves(result).axes[0]) == layouts


def test_categorical_values_not_in_the_space_are_sorted_the_same_way_everywhere():
    result = make_result({"activation": ["tanh", "relu"], "dropout": [0.0, 0.5]}, {})
    assert axis_labels(plots.draw_parallel_coordinates(result).axes[0], 0) == ["relu", "tanh"]
    marginal = plots.draw_marginal(result, "activation").axes[0]
    assert [t.get_text() for t in marginal.get_xticklabels()] == ["relu", "tanh"]


# --- 14: learning curves: a y range chosen from the data, clipping and divergence said ---------------


def test_learning_curves_with_nothing_diverged_or_clipped_say_neither_and_show_every_point():
    result = make_result({"dropout": [0.0, 0.2, 0.4]}, {"dropout": uniform(0.0, 0.5)})
    ax = plots.draw_learning_curves(result).axes[0]
    assert "diverged" not in shown_text(ax)
    assert "clipped" not in shown_text(ax)
    low, high = ax.get_ylim()
    values = result.history["value"]
    assert low <= values.min() and values.max() <= high


def test_learning_curves_clip_to_the_complete_trials_and_count_the_curves_beyond():
    curves = {n: [0.8 - 0.02 * n - 0.1 * e for e in range(3)] for n in range(8)}
    curves[6] = [40.0, 0.5, 0.4]  # a complete trial with a first-epoch spike
    curves[7] = [300.0, math.inf]  # a diverged trial
    space = {"learning_rate": loguniform(1e-4, 1.0)}
    result = make_result({"learning_rate": list(np.geomspace(1e-4, 1.0, 8))}, space, curves=curves, diverged={7})
    ax = plots.draw_learning_curves(result).axes[0]
    low, high = ax.get_ylim()
    assert 0.8 <= high < 2.0, "the range comes from the complete trials' bulk, not the spike or the diverged trial"
    text = shown_text(ax)
    assert "clipped" in text and "2 curves" in text
    assert "1 diverged" in text


def test_a_diverged_curve_that_ends_off_the_scale_is_marked_on_the_top_edge():
    curves = {0: [0.7, 0.6, 0.5], 1: [0.8, 0.7, 0.6], 2: [0.9, math.inf]}
    space = {"learning_rate": loguniform(1e-3, 1.0)}
    result = make_result({"learning_rate": [1e-3, 1e-2, 1.0]}, space, curves=curves, diverged={2})
    ax = plots.draw_learning_curves(result).axes[0]
    (cross,) = [line for line in ax.lines if line.get_marker() == "x"]
    assert (cross.get_xdata()[0], cross.get_ydata()[0]) == (2, ax.get_ylim()[1])
