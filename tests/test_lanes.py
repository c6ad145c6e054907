"""Lanes: a round's small work items trained side by side give the result of training them one at a time."""

import jax
import numpy as np
import pandas as pd
import pytest

import sweeps
from models import MLP
from sweeps import lanes, space
from sweeps.lanes import lane_count
from sweeps.trained import load_model

from helpers import EPOCH, log_compilations, synthetic

# Three structures (batch sizes), two chunks each, early stopping and per-trial epoch budgets: work items
# that finish at different epochs, so lanes take new items while others are mid-chunk.
SWEEP = dict(
    space={
        "learning_rate": space.loguniform(1e-3, 3e-1),
        "batch_size": [16, 32, 64],
        "epochs": [3, 6],
    },
    strategy=sweeps.Grid(n=3),
    max_population=4,
    early_stopping={"patience": 2},
    keep_models=4,
)
LANE_EPOCH = lanes.LanesMixin._lane_epoch


@pytest.fixture(scope="module")
def data():
    return synthetic("binary", rows=400)


def run(data, run_dir, monkeypatch, count):
    monkeypatch.setenv("SWEEPS_LANES", str(count))
    calls = []

    def spy(self, item, locks):
        calls.append(item.work)
        return LANE_EPOCH(self, item, locks)

    monkeypatch.setattr(lanes.LanesMixin, "_lane_epoch", spy)
    result = sweeps.run(data, run_dir=run_dir, **SWEEP)
    return result, calls


def test_lanes_give_the_table_history_and_models_of_one_item_at_a_time(data, tmp_path, monkeypatch):
    one, one_calls = run(data, tmp_path / "one", monkeypatch, 1)
    three, three_calls = run(data, tmp_path / "three", monkeypatch, 3)
    assert not one_calls, "SWEEPS_LANES=1 trains one work item at a time"
    assert set(three_calls) == set(range(6)), "every work item trained in a lane"
    assert (one.config["lanes"], three.config["lanes"]) == (1, 3), "config.json records the lanes"
    assert len(one.table) == 18 and one.table["state"].isin(["complete", "diverged", "stopped"]).all()
    pd.testing.assert_frame_equal(one.table, three.table)
    pd.testing.assert_frame_equal(one.history, three.history)
    assert one.config["models"] == three.config["models"]
    for entry in one.config["models"]:
        a = load_model(tmp_path / "one", entry["trial"]).params
        b = load_model(tmp_path / "three", entry["trial"]).params
        jax.tree.map(np.testing.assert_array_equal, a, b)


def test_lanes_record_compile_seconds_per_structure(data, tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPS_LANES", "2")
    with log_compilations() as compiled:
        result = sweeps.run(data, run_dir=tmp_path / "run", **{**SWEEP, "model": MLP(hidden=(7,))})
    by_structure = result.config["compile_by_structure"]
    assert sorted(s["structure"].split(", ")[1] for s in by_structure) == ["batch 16", "batch 32", "batch 64"]
    for entry in by_structure:
        programs = {p["program"]: p for p in entry["programs"]}
        assert programs["epoch"]["compilations"] >= 1 and programs["epoch"]["compile_s"] > 0, entry
        assert not any(p["ahead"] for p in programs.values()), "lanes compile each item's programs in its lane"
    inits = [p["compilations"] for s in by_structure for p in s["programs"] if p["program"] == "initialisation"]
    assert sum(inits) == 1, "one initialisation program for every batch size, however many lanes ask for it"
    assert compiled.count(EPOCH) == 3, compiled


def work_of(data, **overrides):
    settings = {k: v for k, v in SWEEP.items() if k != "keep_models"}
    plan = sweeps.plan(data, **{**settings, **overrides})
    return [(g, chunk) for g in plan.groups for chunk in g.chunks], plan.settings


def test_small_populations_get_a_lane_per_core_and_large_ones_none(data, monkeypatch):
    monkeypatch.delenv("SWEEPS_LANES", raising=False)
    monkeypatch.setattr(lanes, "cpu_cores", lambda: 4)
    work, settings = work_of(data)
    assert lane_count(work, settings.strategy, settings.layout) == 4
    assert lane_count(work[:2], settings.strategy, settings.layout) == 2, "no more lanes than work items"
    assert lane_count(work[:1], settings.strategy, settings.layout) == 1
    wide, settings = work_of(data, model=MLP(hidden=(512, 512)), max_population=64)
    assert lane_count(wide, settings.strategy, settings.layout) == 1, "a population that fills the cores alone"
    monkeypatch.setenv("SWEEPS_LANES", "2")
    assert lane_count(wide, settings.strategy, settings.layout) == 2, "SWEEPS_LANES decides"


def test_strategies_that_act_between_epochs_train_one_item_at_a_time(data, monkeypatch):
    monkeypatch.setenv("SWEEPS_LANES", "4")
    work, settings = work_of(data, strategy=sweeps.Halving(n=9, max_epochs=4))
    assert lane_count(work, settings.strategy, settings.layout) == 1


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_lane_count_names_the_variable_and_what_it_takes(data, monkeypatch, value):
    monkeypatch.setenv("SWEEPS_LANES", value)
    work, settings = work_of(data)
    with pytest.raises(ValueError, match=r"SWEEPS_LANES=.* whole number of at least 1"):
        lane_count(work, settings.strategy, settings.layout)
