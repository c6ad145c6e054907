"""Search strategies alone, fed synthetic tables: no training. QuasiRandom's evenness, Bayes' rounds and refusals."""

import json
import math
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

import sweeps
from sweeps import space
from sweeps.engine.hparams import normalize
from sweeps.results.result import _cell
from sweeps.strategies.quasirandom import unit_points

CONTINUOUS = {
    "learning_rate": space.loguniform(1e-4, 1e-1),
    "dropout": space.uniform(0.0, 0.5),
    "momentum": space.uniform(0.5, 0.99),
}
# A cheap objective with its optimum inside the space: learning rate 10**-2.5, dropout 0.3, hidden (64,),
# batch 64; learning rates above 0.3 "diverge".
MIXED = {
    "learning_rate": space.loguniform(1e-5, 1.0),
    "dropout": space.uniform(0.0, 0.9),
    "hidden": space.choice([(16,), (64,), (64, 32)]),
    "batch_size": space.powers_of_two(16, 256),
}

NUMERIC = {"learning_rate": space.loguniform(1e-5, 1.0), "dropout": space.uniform(0.0, 0.9)}


def objective(c):
    if c["learning_rate"] > 0.3:
        return math.nan
    value = (math.log10(c["learning_rate"]) + 2.5) ** 2 + 4 * (c["dropout"] - 0.3) ** 2
    return value + (0 if c.get("hidden", (64,)) == (64,) else 0.3) + 0.1 * abs(math.log2(c.get("batch_size", 64)) - 6)


def table(configs, first=0, f=objective):
    """The rows the loop would tell: params_ cells as the table writes them, state, value."""
    rows = []
    for i, c in enumerate(configs):
        value = f(c)
        rows.append(
            {
                "number": first + i,
                "config": first + i,
                "seed": 0,
                **{f"params_{k}": _cell(normalize(k, v)) for k, v in c.items()},
                "state": "complete" if np.isfinite(value) else "diverged",
                "value": value,
            }
        )
    return pd.DataFrame(rows)


def drive(strategy, search=MIXED, f=objective):
    """Runs a strategy's rounds against `f`; returns one table per round."""
    strategy.start("val_loss", "minimize")
    rounds, number = [], 0
    while True:
        configs = strategy.ask(search)
        rounds.append(table(configs, number, f))
        number += len(configs)
        strategy.tell(rounds[-1])
        if not strategy.another_round():
            return rounds


# --- QuasiRandom -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_quasirandom_covers_the_space_more_evenly_than_random(seed):
    from scipy.stats import qmc  # imported here, as QuasiRandom does, not while every xdist worker collects the suite

    quasi = unit_points(sweeps.QuasiRandom(n=64, seed=seed).ask(CONTINUOUS), CONTINUOUS)
    random = unit_points(sweeps.Random(n=64, seed=seed).ask(CONTINUOUS), CONTINUOUS)
    assert quasi.shape == random.shape == (64, 3)
    assert qmc.discrepancy(quasi) < qmc.discrepancy(random) / 5


def test_quasirandom_maps_log_integer_and_categorical_axes_without_bias():
    search = {
        "learning_rate": space.loguniform(1e-4, 1e-1),
        "batch_size": space.powers_of_two(16, 128),  # 4 values: 16 points each of 64
        "activation": ["relu", "tanh", "gelu"],  # 3 values: 21 or 22 each
        "epochs": 5,  # fixed: no dimension
    }
    trials = sweeps.QuasiRandom(n=64, seed=3).ask(search)
    assert Counter(t["batch_size"] for t in trials) == {16: 16, 32: 16, 64: 16, 128: 16}
    assert sorted(Counter(t["activation"] for t in trials).values()) in ([21, 21, 22], [21, 22, 21])
    assert {t["epochs"] for t in trials} == {5}
    decades = Counter(math.floor(math.log10(t["learning_rate"])) for t in trials)
    assert decades == {-4: 21, -3: 21, -2: 22} or sorted(decades.values()) == [21, 21, 22]  # even in log space
    assert trials == sweeps.QuasiRandom(n=64, seed=3).ask(search) != sweeps.QuasiRandom(n=64, seed=4).ask(search)
    with pytest.raises(ValueError, match=r"QuasiRandom\(n=...\) must be an integer >= 1, but got n=0"):
        sweeps.QuasiRandom(n=0)


# --- Bayes alone -------------------------------------------------------------------------


def test_bayes_asks_per_round_trials_for_rounds_rounds():
    strategy = sweeps.Bayes(rounds=3, per_round=5, seed=0)
    rounds = drive(strategy, f=lambda c: math.nan if c["learning_rate"] > 1e-2 else objective(c))
    assert [len(r) for r in rounds] == [5, 5, 5]
    assert strategy.round_size() == 5 and strategy.planned_rounds() == 3
    hidden = {c for r in rounds for c in r["params_hidden"]}
    assert hidden <= {"[16]", "[64]", "[64, 32]"}  # structural tuples went through Optuna and came back
    told = strategy.state_dict()["told"]
    assert len(told) == 15 and not strategy.state_dict()["pending"]
    diverged = [t for t, v in zip(told, pd.concat(rounds)["value"]) if not np.isfinite(v)]
    assert diverged and all(t["state"] == "fail" and t["value"] is None for t in diverged), "failed, not a number"
    assert all(t["state"] == "complete" and np.isfinite(t["value"]) for t in told if t not in diverged)


def test_bayes_concentrates_where_earlier_rounds_did_well_and_beats_random_at_equal_budget():
    bayes, random, first, last = [], [], [], []
    for seed in range(5):
        rounds = drive(sweeps.Bayes(rounds=4, per_round=8, seed=seed))
        first.append(np.nanmedian(rounds[0]["value"]))
        last.append(np.nanmedian(rounds[-1]["value"]))
        bayes.append(np.nanmin(pd.concat(rounds)["value"]))
        random.append(np.nanmin(drive(sweeps.Random(n=32, seed=seed))[0]["value"]))
    assert all(b < a for a, b in zip(first, last)), (first, last)  # later rounds sample better places
    assert np.mean(bayes) < 0.7 * np.mean(random), (bayes, random)
    assert sum(b < r for b, r in zip(bayes, random)) >= 3, (bayes, random)


def test_bayes_maximizes_when_the_objective_says_so():
    def accuracy(c):
        return -objective(c)

    strategy = sweeps.Bayes(rounds=3, per_round=8, seed=1)
    strategy.start("val_accuracy", "maximize")
    rounds, number = [], 0
    for _ in range(3):
        configs = strategy.ask(MIXED)
        rounds.append(table(configs, number, accuracy))
        number += 8
        strategy.tell(rounds[-1])
    assert np.nanmedian(rounds[-1]["value"]) > np.nanmedian(rounds[0]["value"])


def spread(configs, search):
    points = unit_points(configs, search)
    distances = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    np.fill_diagonal(distances, np.inf)
    return distances.min()


def test_a_tpe_round_is_distinct_and_spread_thanks_to_the_constant_liar(monkeypatch):
    search = {"learning_rate": space.loguniform(1e-5, 1.0), "dropout": space.uniform(0.0, 0.9)}

    def second_round_spread(seed):
        strategy = sweeps.Bayes(rounds=2, per_round=8, seed=seed)
        strategy.start("val_loss", "minimize")
        strategy.tell(table(strategy.ask(search)))
        configs = strategy.ask(search)  # proposed by TPE from the first round's results
        assert len({tuple(sorted(c.items())) for c in configs}) == 8, "the round's trials are distinct"
        return spread(configs, search)

    with_liar = [second_round_spread(seed) for seed in range(4)]
    import optuna

    tpe = optuna.samplers.TPESampler
    monkeypatch.setattr(optuna.samplers, "TPESampler", lambda **kw: tpe(**{**kw, "constant_liar": False}))
    without = [second_round_spread(seed) for seed in range(4)]
    assert min(with_liar) > 0.03 and np.mean(with_liar) > 2 * np.mean(without), (with_liar, without)


@pytest.mark.parametrize(("sampler", "search"), [("tpe", MIXED), ("cmaes", NUMERIC)])
def test_bayes_state_round_trips_through_json_and_asks_what_the_uninterrupted_one_asks(sampler, search):
    going = sweeps.Bayes(rounds=4, per_round=4, seed=7, sampler=sampler)
    going.start("val_loss", "minimize")
    going.tell(table(going.ask(search)))
    going.tell(table(going.ask(search), 4))
    third = going.ask(search)
    saved = json.loads(json.dumps(going.state_dict()))  # what a checkpoint holds, mid-round
    going.tell(table(third, 8))
    fourth = going.ask(search)

    resumed = sweeps.Bayes(rounds=4, per_round=4, seed=7, sampler=sampler)
    resumed.start("val_loss", "minimize")
    resumed.load_state_dict(saved)
    resumed.tell(table(third, 8))
    assert resumed.ask(search) == fourth


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rounds": 0}, r"Bayes\(rounds=...\) must be an integer >= 1, but got rounds=0"),
        ({"per_round": 0}, r"Bayes\(per_round=...\) must be an integer >= 1, but got per_round=0"),
        (
            {"sampler": "bogus"},
            r"Bayes\(sampler=...\) must be one of \['tpe', 'gp', 'cmaes'\], but got sampler='bogus'",
        ),
    ],
)
def test_bayes_refuses_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sweeps.Bayes(**kwargs)


def test_cmaes_searches_numeric_axes_and_refuses_a_categorical_one():
    rounds = drive(sweeps.Bayes(rounds=3, per_round=6, sampler="cmaes", seed=0), NUMERIC)
    assert [len(r) for r in rounds] == [6, 6, 6]
    with pytest.raises(ValueError, match=r"cmaes.*\['hidden', 'batch_size'\] are categorical axes.*sampler=\"tpe\""):
        sweeps.Bayes(sampler="cmaes").ask(MIXED)


def test_bayes_refuses_a_space_with_nothing_to_search():
    with pytest.raises(ValueError, match="Bayes needs at least one swept axis"):
        sweeps.Bayes().ask({"learning_rate": 1e-3})


def test_bayes_without_optuna_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    with pytest.raises(ImportError, match=r'Bayes\(sampler="tpe"\) needs Optuna.*pip install "sweepax\[bayes\]"'):
        sweeps.Bayes(rounds=2, per_round=4)
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "optuna")
    with pytest.raises(ImportError, match=r"sampler=\"gp\".*needs the 'torch' package.*pip install torch"):
        sweeps.Bayes(sampler="gp")


def test_the_gp_sampler_asks_distinct_trials_round_after_round():
    pytest.importorskip("torch")  # Optuna's GPSampler needs PyTorch, which is not part of the extra
    rounds = drive(sweeps.Bayes(rounds=2, per_round=4, sampler="gp", seed=0), NUMERIC)
    assert [len(r) for r in rounds] == [4, 4]
    assert (
        len({(r, d) for r, d in pd.concat(rounds)[["params_learning_rate", "params_dropout"]].itertuples(False)}) == 8
    )


@pytest.mark.parametrize(
    ("strategy", "acts"),
    [
        (sweeps.Grid, False),
        (sweeps.Random, False),
        (sweeps.QuasiRandom, False),
        (sweeps.Bayes, False),
        (sweeps.Halving, True),
        (sweeps.PBT, True),
    ],
)
def test_strategy_says_whether_it_acts_between_epochs(strategy, acts):
    """`acts_between_epochs` is the one statement the loop and the planner read: True exactly for the built-in
    strategies with decisions between epochs."""
    assert strategy.acts_between_epochs is acts
    assert strategy().acts_between_epochs is acts


def test_user_strategy_that_decides_must_say_it_acts_between_epochs():
    """A user's strategy that overrides `decide` but does not declare `acts_between_epochs` is refused when the
    class is defined (its decisions would otherwise never be asked for); declaring it, or inheriting it, is accepted."""
    with pytest.raises(TypeError, match=r"Pruner.*decide.*acts_between_epochs = True"):

        class Pruner(sweeps.Strategy):
            def ask(self, space):
                return [{}]

            def decide(self, view):
                return None

    class Declared(sweeps.Strategy):
        acts_between_epochs = True

        def ask(self, space):
            return [{}]

        def decide(self, view):
            return None

    class Asks(sweeps.Strategy):
        def ask(self, space):
            return [{}]

    class MyHalving(sweeps.Halving):
        def decide(self, view):
            return super().decide(view)

    assert Declared.acts_between_epochs and MyHalving.acts_between_epochs
    assert not Asks.acts_between_epochs
