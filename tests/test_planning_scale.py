"""Huge sweeps are refused at once, large ones plan fast (issue 20, item 17), and a Plan prints short (item 22)."""

import dataclasses
import time

import pandas as pd
import pytest
from test_cli import CHURN, run_cli, write_config

import sweeps
from sweeps import space
from sweeps.planning import planner as planning
from sweeps.strategies import Strategy

AXES = {"learning_rate": space.loguniform(1e-4, 1e-1), "dropout": space.uniform(0.0, 0.5)}


def never_asked(monkeypatch, *strategies):
    """The strategies' `ask` fails the test: a refused round must not make its configurations first."""
    for cls in strategies:
        monkeypatch.setattr(cls, "ask", lambda self, space: pytest.fail(f"{self!r} was asked for every trial"))


@pytest.mark.parametrize(
    ("strategy", "search", "count"),
    [
        (sweeps.Random(n=10**8), AXES, "100,000,000 trials"),
        (sweeps.QuasiRandom(n=2 * 10**6), AXES, "2,000,000 trials"),
        (sweeps.Grid(n=1000), {**AXES, "weight_decay": space.loguniform(1e-6, 1e-2)}, "1,000,000,000 trials"),
        (sweeps.Halving(n=100, refill=True, samples=10**7), AXES, "10,000,000 trials"),
    ],
    ids=["random-1e8", "quasirandom-2e6", "grid-1e9", "halving-refill-1e7"],
)
def test_a_round_too_large_to_plan_is_refused_at_once_with_its_count_and_memory(
    binary_data, monkeypatch, strategy, search, count
):
    never_asked(monkeypatch, type(strategy), sweeps.Random)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=rf"asks for {count} in one round, more than the 1,000,000 .* GB of memory"):
        sweeps.dry_run(binary_data, space=search, strategy=strategy, optimizer="adamw")
    assert time.perf_counter() - started < 5


def test_seeds_count_and_a_strategy_that_cannot_count_is_checked_after_it_asks(binary_data, monkeypatch):
    never_asked(monkeypatch, sweeps.Random)
    with pytest.raises(ValueError, match=r"1,200,000 trials in one round \(600,000 configurations x 2 seeds\)"):
        sweeps.dry_run(binary_data, space=AXES, strategy=sweeps.Random(n=600_000), seeds=2)

    class Uncounted(Strategy):
        def ask(self, space):
            return [{"learning_rate": 10 ** -(1 + i / 10)} for i in range(11)]

    monkeypatch.setattr(planning, "MAX_TRIALS", 10)
    with pytest.raises(ValueError, match=r"asks for 11 trials in one round, more than the 10 a round may plan"):
        sweeps.dry_run(binary_data, strategy=Uncounted())


def test_the_dry_run_refuses_a_huge_sweep_in_one_line(tmp_path, monkeypatch):
    never_asked(monkeypatch, sweeps.Random)
    config = write_config(tmp_path)
    code, out, err = run_cli(
        ["run", config, "--dry-run", "--set", "strategy.name=random", "--set", "strategy.n=100000000"]
    )
    assert code == 2 and "sweep:" not in out, "refused before the banner"
    assert err.startswith("error: Random(n=100000000, seed=0) asks for 100,000,000 trials") and err.count("\n") == 1


def test_a_dry_run_of_100000_trials_is_fast(tmp_path):
    pd.read_csv(CHURN).head(500).to_csv(tmp_path / "rows.csv", index=False)  # the plan, not the data, is measured
    config = write_config(tmp_path, path=tmp_path / "rows.csv")
    config.write_text(config.read_text().replace("[strategy]", "dropout = { uniform = [0.0, 0.5] }\n\n[strategy]"))
    started = time.process_time()  # this process's CPU seconds: what the planning costs, whatever else runs
    code, out, err = run_cli(
        ["run", config, "--dry-run", "--set", "strategy.name=random", "--set", "strategy.n=100000"]
    )
    seconds = time.process_time() - started
    assert code == 0, err
    assert "100000 trials in 1 structure groups" in out
    assert seconds < 5, f"{seconds:.1f} CPU seconds to plan 100,000 trials (7 to 8.5 before issue 20)"


def test_a_plan_of_100000_trials_prints_in_a_few_lines(binary_data):
    small = sweeps.dry_run(binary_data, space=AXES, strategy=sweeps.Random(n=3))
    trials = tuple(dataclasses.replace(small.trials[0], number=i) for i in range(100_000))
    group = dataclasses.replace(small.groups[0], trials=trials, chunk_size=87)
    plan = dataclasses.replace(small, trials=trials, groups=(group,))
    for text in (repr(plan), str(plan), repr(plan.groups)):
        assert len(text) < 2_000, len(text)
    assert "100,000 trials" in repr(plan) and "1,150 chunks of 87" in repr(plan)
    assert "Random(n=3, seed=0)" in repr(plan) and "MB per device" in repr(plan)
    assert plan.table()["chunks"].tolist() == [1150] and plan.table()["padding"].tolist() == [50]
