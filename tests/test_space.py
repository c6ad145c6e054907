"""The search-space API and the strategies that read it."""

import numpy as np
import pytest

import sweeps
from sweeps import space
from sweeps.space import axis_from_config, axis_to_config


def test_grid_is_log_spaced_on_a_log_axis_and_linear_otherwise():
    trials = sweeps.Grid(n=4).ask({"learning_rate": space.loguniform(1e-4, 1e-1), "dropout": space.uniform(0.0, 0.3)})
    assert len(trials) == 16
    lrs = sorted({t["learning_rate"] for t in trials})
    np.testing.assert_allclose(lrs, [1e-4, 1e-3, 1e-2, 1e-1])
    np.testing.assert_allclose(sorted({t["dropout"] for t in trials}), [0.0, 0.1, 0.2, 0.3], atol=1e-12)


def test_grid_takes_the_cross_product_of_discrete_axes():
    trials = sweeps.Grid().ask(
        {"batch_size": space.powers_of_two(16, 64), "hidden": space.choice([(64,), (32, 32)]), "lr": [1, 2]}
    )
    assert len(trials) == 3 * 2 * 2
    assert {t["batch_size"] for t in trials} == {16, 32, 64}
    assert {t["hidden"] for t in trials} == {(64,), (32, 32)}


def test_random_samples_every_axis_within_bounds_and_repeats_with_its_seed():
    search = {
        "learning_rate": space.loguniform(1e-4, 1e-1),
        "momentum": space.uniform(0.5, 0.99),
        "units": space.integer(8, 16),
        "batch_size": space.powers_of_two(16, 256),
        "activation": space.choice(["relu", "tanh"]),
    }
    a = sweeps.Random(n=200, seed=1).ask(search)
    assert a == sweeps.Random(n=200, seed=1).ask(search)
    assert a != sweeps.Random(n=200, seed=2).ask(search)
    lrs = np.array([t["learning_rate"] for t in a])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1
    # log-uniform: about a third of the samples in each decade
    assert 0.2 < np.mean(lrs < 1e-3) < 0.45
    assert {t["units"] for t in a} == set(range(8, 17))
    assert {t["batch_size"] for t in a} == {16, 32, 64, 128, 256}
    assert all(0.5 <= t["momentum"] <= 0.99 for t in a)


def test_axis_helpers():
    assert space.powers_of_two(10, 100).values == (16, 32, 64)
    assert space.integer(1, 4).values == (1, 2, 3, 4)
    assert space.integer(1, 8, log=True).log


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: space.loguniform(1e-1, 1e-4), r"`low <= high` must hold, but got \(low=0.1, high=0.0001\)"),
        (lambda: space.loguniform(0.0, 1.0), r"a log axis needs `low > 0`"),
        (lambda: space.integer(5, 1), r"`low <= high` must hold"),
        (lambda: space.powers_of_two(100, 120), r"no power of two lies in"),
        (lambda: space.choice([]), r"at least one value"),
        (lambda: sweeps.Grid(n=0), r"Grid\(n=...\) must be an integer >= 1"),
        (lambda: sweeps.Random(n=-1), r"Random\(n=...\) must be an integer >= 1"),
    ],
)
def test_bad_axes_are_refused_with_the_rule_and_the_values(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "written",
    [
        {"loguniform": [1e-4, 1.0]},
        {"uniform": [0.0, 0.5]},
        {"choice": ["relu", "tanh"]},
        {"choice": [16, 32], "log": True},
        0.001,
    ],
)
def test_config_form_round_trips(written):
    assert axis_to_config(axis_from_config("x", written)) == written


def test_config_forms_for_integers_and_layouts():
    assert axis_from_config("batch_size", {"powers_of_two": [16, 64]}).values == (16, 32, 64)
    assert axis_from_config("units", {"integer": [1, 3]}).values == (1, 2, 3)
    assert axis_from_config("hidden", [64, 64]).values == ((64, 64),)
    assert axis_from_config("hidden", {"choice": [[64], [64, 64]]}).values == ((64,), (64, 64))
    with pytest.raises(ValueError, match="exactly one of"):
        axis_from_config("learning_rate", {"logunifrom": [1e-4, 1]})
