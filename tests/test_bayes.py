"""Bayes through sweeps.run: rounds in the table, one compile per structure, refusals, resume, the config form."""

import json

import pandas as pd
import pytest
from conftest import CHURN

import sweeps
from models import MLP
from sweeps import space

from helpers import EPOCH, Stop, crash_after_saves, log_compilations, synthetic

SPACE = {"learning_rate": space.loguniform(1e-4, 3e-1), "dropout": space.uniform(0.0, 0.5)}


@pytest.fixture(scope="module")
def data():
    return synthetic("binary", rows=300)


def test_a_bayes_sweep_trains_its_rounds_in_one_compiled_program(data):
    strategy = sweeps.Bayes(rounds=3, per_round=4, seed=0)
    with log_compilations(fresh=True) as compiled:
        result = sweeps.run(
            data, model=MLP(hidden=(6,)), space=SPACE, strategy=strategy, epochs=2, objective="val_accuracy"
        )
    assert compiled.count(EPOCH) == 1, compiled  # three rounds of one structure: one program
    table = result.table
    assert table["round"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert table["number"].tolist() == list(range(12)) and result.config["rounds"] == 3
    assert strategy.direction == "maximize", "the strategy optimizes the sweep's objective in its direction"
    told = strategy.state_dict()["told"]
    assert [t["value"] for t in told] == pytest.approx(table["value"].tolist())


def test_bayes_refusals_come_before_anything_compiles(data):
    with log_compilations() as compiled:
        with pytest.raises(ValueError, match=r"cmaes.*\['hidden'\] is a categorical axis"):
            sweeps.run(
                data,
                space={**SPACE, "hidden": space.choice([(4,), (8, 4)])},
                strategy=sweeps.Bayes(rounds=2, per_round=2, sampler="cmaes"),
                epochs=1,
            )
        with pytest.raises(ValueError, match="Bayes needs at least one swept axis"):
            sweeps.run(data, space={"learning_rate": 1e-3}, strategy=sweeps.Bayes(rounds=2, per_round=2), epochs=1)
    assert compiled.count(EPOCH) == 0


def test_a_killed_bayes_sweep_resumes_to_the_same_table(data, tmp_path, monkeypatch):
    sweep = dict(  # at batch size 32 the structure and objective above: those programs are compiled already
        model=MLP(hidden=(6,)),
        space={**SPACE, "batch_size": [16, 32]},
        strategy=None,
        epochs=2,
        objective="val_accuracy",
        checkpoint_every=1,
        keep_models=0,
        fuse=False,  # two programs, so the sixth save falls inside the second round's training
    )
    monkeypatch.setenv("SWEEPS_LANES", "1")  # the crash point counts the saves of one work item at a time
    whole = sweeps.run(data, **{**sweep, "strategy": sweeps.Bayes(rounds=3, per_round=4)})  # needs no run folder
    undo = crash_after_saves(monkeypatch, 6)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=tmp_path / "run", **{**sweep, "strategy": sweeps.Bayes(rounds=3, per_round=4)})
    undo()
    newest = max((tmp_path / "run" / "checkpoints").glob("[0-9]*"), key=lambda p: int(p.name))
    meta = json.loads((newest / "meta" / "metadata").read_text())
    assert meta["position"]["round"] == 1 and meta["has_population"], "killed inside the second round's training"
    assert len(meta["strategy"]["told"]) == 4 and len(meta["strategy"]["pending"]) == 4
    resumed = sweeps.run(
        data, run_dir=tmp_path / "run", resume=True, **{**sweep, "strategy": sweeps.Bayes(rounds=3, per_round=4)}
    )
    pd.testing.assert_frame_equal(resumed.table, whole.table)
    pd.testing.assert_frame_equal(resumed.history, whole.history)
    assert sorted(set(whole.table["round"])) == [0, 1, 2]


def test_the_config_form_and_the_example_plan_four_rounds(capsys, tmp_path):
    from sweeps.cli.config import load_config
    from sweeps.cli.config_schema import strategy_from_config
    from sweeps.cli.main import main

    config = load_config("data/examples/churn_bayes.toml", ["strategy.per_round=8", "strategy.sampler=cmaes"])
    assert config["strategy"] == {"name": "bayes", "rounds": 4, "per_round": 8, "sampler": "cmaes", "seed": 0}
    strategy = strategy_from_config(config)
    assert (strategy.rounds, strategy.per_round, strategy.sampler) == (4, 8, "cmaes")
    quasi = tmp_path / "quasi.toml"
    quasi.write_text(
        f'[data]\npath = "{CHURN.as_posix()}"\ntarget = "Churn"\n[strategy]\nname = "quasirandom"\nn = 32\nseed = 2\n'
    )
    assert strategy_from_config(load_config(quasi)) == sweeps.QuasiRandom(n=32, seed=2)
    with pytest.raises(ValueError, match=r"strategy 'bayes' has no option 'n'.*rounds, per_round, sampler, seed"):
        load_config("data/examples/churn_bayes.toml", ["strategy.n=8"])
    assert main(["run", "data/examples/churn_bayes.toml", "--dry-run", "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "16 trials in the first of 4 rounds, bayes (rounds=4, per_round=16, sampler=tpe, seed=0)" in printed
    assert "population" in printed and "dry run: nothing trained" in printed


def test_the_progress_bar_names_the_round():
    from sweeps.driver.progress import Progress

    bar = Progress("val_loss", enabled=False)
    bar.round(0, None)
    assert bar.round_text == ""  # a one-round sweep shows no round
    bar.round(1, 4)
    assert bar.round_text == "round 2/4"
    bar.round(2, None)
    assert bar.round_text == "round 3"
