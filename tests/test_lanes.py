"""Lanes: a round's small work items trained side by side give the result of training them one at a time."""

import threading

import jax
import numpy as np
import pandas as pd
import pytest

import sweeps
from models import MLP
from sweeps import space
from sweeps.driver.scheduler import Scheduler
from sweeps.engine import n_params
from sweeps.planning import lanes as lane_plan
from sweeps.planning.lanes import lane_count
from sweeps.results.trained import load_model

from helpers import EPOCH, log_compilations, synthetic

# Three structures (batch sizes, not fused: one program each), two chunks each, early stopping and per-trial
# epoch budgets: work items that finish at different epochs, so lanes take new items while others are mid-chunk.
SWEEP = dict(
    fuse=False,
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
STEP = Scheduler._step
# What the sweeps here train: a linear model by SGD on a regression target, the programs that compile fastest
# (lanes are not about the model; the dry runs keep the default model, whose size decides the cuts)
CHEAP = dict(model=MLP(hidden=()), optimizer="sgd", plots=False)


@pytest.fixture(scope="module")
def data():
    return synthetic("regression", rows=400)


def run(data, run_dir, monkeypatch, count):
    monkeypatch.setenv("SWEEPS_LANES", str(count))
    monkeypatch.setattr(lane_plan, "cpu_cores", lambda: 4)  # lanes are capped at the cores
    calls = []  # (work item, its thread, items in flight) for every epoch a lane ran

    def spy(self, item, lanes, ahead):
        calls.append((item.work, threading.current_thread().name, len(self.state.flight)))
        return STEP(self, item, lanes, ahead)

    monkeypatch.setattr(Scheduler, "_step", spy)
    result = sweeps.run(data, run_dir=run_dir, **SWEEP, **CHEAP)
    return result, calls


def test_lanes_give_the_table_history_and_models_of_one_item_at_a_time(data, tmp_path, monkeypatch):
    one, one_calls = run(data, tmp_path / "one", monkeypatch, 1)
    three, three_calls = run(data, tmp_path / "three", monkeypatch, 3)
    assert {c[1] for c in one_calls} == {"MainThread"} and max(c[2] for c in one_calls) == 1, (
        "SWEEPS_LANES=1: the same scheduler trains one work item at a time, in the calling thread"
    )
    assert {c[0] for c in three_calls} == set(range(6)), "every work item trained in a lane"
    assert all(c[1].startswith("sweeps-lane") for c in three_calls) and max(c[2] for c in three_calls) == 3
    assert (one.config["lanes"], three.config["lanes"]) == (1, 3), "config.json records the lanes"
    assert len(one.table) == 18 and one.table["state"].isin(["complete", "diverged", "stopped"]).all()
    pd.testing.assert_frame_equal(one.table, three.table)
    pd.testing.assert_frame_equal(one.history, three.history)
    assert one.config["models"] == three.config["models"]
    for entry in one.config["models"]:
        a = load_model(tmp_path / "one", entry["trial"]).params
        b = load_model(tmp_path / "three", entry["trial"]).params
        jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.fixture(scope="module")
def two_lanes(data):
    """SWEEP in two lanes (two cores), without early stopping, with structures (hidden=(6,), SGD) no other test
    here compiles, run once for the two tests that read it: (result, the epoch compilations, each lane thread's epoch
    dispatches ("start", epoch) and metric reads ("read",) in order)."""
    from sweeps.driver.devices import Devices
    from sweeps.driver.populations import ChunkRunner

    events: dict[str, list] = {}  # lane thread -> its item's dispatches and reads, in order
    start, fetch = ChunkRunner.start, Devices.fetch

    def logged_start(self, pop, index):
        events.setdefault(threading.current_thread().name, []).append(("start", index))
        return start(self, pop, index)

    def logged_fetch(self, tree):
        if isinstance(tree, dict) and "trained" in tree:
            events.setdefault(threading.current_thread().name, []).append(("read",))
        return fetch(self, tree)

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(ChunkRunner, "start", logged_start)
        monkeypatch.setattr(Devices, "fetch", logged_fetch)
        monkeypatch.setenv("SWEEPS_LANES", "2")
        monkeypatch.setattr(lane_plan, "cpu_cores", lambda: 2)
        sweep = {**SWEEP, **CHEAP, "early_stopping": None, "model": MLP(hidden=(6,)), "keep_models": 0}
        with log_compilations(fresh=True) as compiled:
            result = sweeps.run(data, **sweep)
    return result, compiled, events


def test_lanes_record_compile_seconds_per_structure(two_lanes):
    result, compiled, _ = two_lanes
    by_structure = result.config["compile_by_structure"]
    assert sorted(s["structure"].split(", ")[1] for s in by_structure) == ["batch 16", "batch 32", "batch 64"]
    for entry in by_structure:
        programs = {p["program"]: p for p in entry["programs"]}
        assert programs["epoch"]["compilations"] >= 1 and programs["epoch"]["compile_s"] > 0, entry
    inits = [p["compilations"] for s in by_structure for p in s["programs"] if p["program"] == "initialisation"]
    assert sum(inits) == 1, "one initialisation program for every batch size, however many lanes ask for it"
    assert compiled.count(EPOCH) == 3, compiled


def work_of(data, **overrides):
    settings = {k: v for k, v in SWEEP.items() if k != "keep_models"}
    first = sweeps.dry_run(data, **{**settings, **overrides})
    return first.work, first.plan


def test_work_items_train_in_as_many_lanes_as_the_sweep_was_planned_for(data, monkeypatch):
    monkeypatch.delenv("SWEEPS_LANES", raising=False)
    monkeypatch.setattr(lane_plan, "cpu_cores", lambda: 4)
    work, plan = work_of(data)
    assert plan.resources.lanes == plan.lanes == 4, "planned for one lane per core"
    assert lane_count(len(work), plan.lanes) == 4
    assert lane_count(2, plan.lanes) == 2, "no more lanes than work items"
    assert lane_count(1, plan.lanes) == 1
    wide, plan = work_of(data, model=MLP(hidden=(512, 512)), max_population=64)
    assert len(wide) == 3 and lane_count(len(wide), plan.lanes) == 3, "big too"
    monkeypatch.setenv("SWEEPS_LANES", "2")
    assert work_of(data)[1].lanes == 2, "SWEEPS_LANES decides"


def test_lanes_share_the_memory_budget(data, monkeypatch):
    monkeypatch.setenv("SWEEPS_LANES", "1")
    whole = sweeps.dry_run(data, **CUT).groups[0]  # 32 members as one population
    budget = int(1.5 * whole.chunk_bytes)  # fits one population of 32, not two of them at once
    alone = sweeps.dry_run(data, **CUT, memory_budget=budget).groups[0]
    monkeypatch.setenv("SWEEPS_LANES", "2")
    two = sweeps.dry_run(data, **CUT, memory_budget=budget).groups[0]
    assert (len(alone.chunks), alone.population) == (1, 32)
    assert len(two.chunks) >= 2 and 2 * two.chunk_bytes <= budget, (two.chunk_size, two.chunk_bytes, budget)


@pytest.mark.parametrize("strategy", [sweeps.Halving(n=9), sweeps.PBT(population=4)])
def test_strategies_that_act_between_epochs_train_one_item_at_a_time_and_the_dry_run_says_why(
    data, monkeypatch, strategy
):
    monkeypatch.setenv("SWEEPS_LANES", "4")
    monkeypatch.setattr(lane_plan, "cpu_cores", lambda: 4)
    first = sweeps.dry_run(data, **{**{k: v for k, v in SWEEP.items() if k != "keep_models"}, "strategy": strategy})
    assert first.plan.resources.lanes == 4 and first.plan.lanes == 1 and len(first.work) > 1
    assert "lanes: one work item at a time: the strategy acts between epochs" in first.describe()


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_lane_count_names_the_variable_and_what_it_takes(data, monkeypatch, value):
    monkeypatch.setenv("SWEEPS_LANES", value)
    with pytest.raises(ValueError, match=r"SWEEPS_LANES=.* whole number of at least 1"):
        work_of(data)  # refused while planning, before anything compiles


def test_more_lanes_than_cores_are_capped_and_the_dry_run_says_why(data, monkeypatch):
    monkeypatch.setattr(lane_plan, "cpu_cores", lambda: 2)
    monkeypatch.setenv("SWEEPS_LANES", "1000")
    first = sweeps.dry_run(data, **{**CUT, "strategy": sweeps.Grid(n=64)})
    assert first.plan.lanes == 2, "more lanes than cores only take turns, each with less of the memory budget"
    described = first.describe()
    assert "lanes: 2 work items train side by side, one per CPU core: SWEEPS_LANES=1000 is capped at the 2" in described
    monkeypatch.setattr(lane_plan, "cpu_cores", lambda: 4)
    monkeypatch.setenv("SWEEPS_LANES", "2")
    described = sweeps.dry_run(data, **{**CUT, "strategy": sweeps.Grid(n=64)}).describe()
    assert "lanes: 2 work items train side by side, as SWEEPS_LANES=2 sets (" in described, described


# One structure, 32 learning rates, 4 epochs: a group the lanes cut into two chunks of 16 (lane_plan.LANE_FEWEST).
CUT = dict(space={"learning_rate": space.loguniform(1e-3, 3e-1)}, strategy=sweeps.Grid(n=32), epochs=4)


def chunking(data, **overrides):
    first = sweeps.dry_run(data, **{**CUT, **overrides})
    return [(len(g.chunks), g.population) for g in first.groups], first.plan.lanes


def test_a_group_is_cut_into_chunks_for_as_many_lanes_as_cores(data, monkeypatch):
    monkeypatch.delenv("SWEEPS_LANES", raising=False)
    monkeypatch.setattr(lane_plan, "cpu_cores", lambda: 2)
    assert chunking(data) == ([(2, 16)], 2)
    monkeypatch.setattr(lane_plan, "cpu_cores", lambda: 4)
    assert chunking(data) == ([(2, 16)], 4), "no chunk below LANE_FEWEST members, even for more lanes"
    assert chunking(data, strategy=sweeps.Grid(n=64)) == ([(4, 16)], 4), "as many chunks as a multiple of the lanes"
    assert chunking(data, strategy=sweeps.Grid(n=20)) == ([(1, 20)], 4), "20 trials are not cut into chunks of 5"
    big = sweeps.dry_run(data, **{**CUT, "strategy": sweeps.Grid(n=1000)})
    cap = lane_plan.LANE_PARAMETERS // n_params(big.groups[0].structure)
    assert [(len(g.chunks) % 4, g.population <= cap) for g in big.groups] == [(0, True)], (big.table(), cap)
    described = sweeps.dry_run(data, **CUT).describe()  # what `sweeps run --dry-run` prints
    assert "lanes: 2 work items train side by side" in described and "at most 262,144 parameters" in described
    monkeypatch.setenv("SWEEPS_LANES", "1")
    assert chunking(data) == ([(1, 32)], 1), "SWEEPS_LANES=1 turns the cut off with the lanes"
    assert "lanes:" not in sweeps.dry_run(data, **CUT).describe()


def test_no_cut_for_big_members_or_strategies_that_act_between_epochs(data, monkeypatch):
    big = MLP(hidden=(512, 512))
    monkeypatch.setenv("SWEEPS_LANES", "1")
    alone = chunking(data, model=big)[0]
    monkeypatch.setenv("SWEEPS_LANES", "2")
    assert chunking(data, model=big) == (alone, 2), "16 such members exceed LANE_PARAMETERS: chunked by cache alone"
    halving = chunking(data, strategy=sweeps.Halving(n=32, max_epochs=4))
    assert halving == ([(1, 32)], 1)


@pytest.fixture(scope="module")
def whole(data):
    """CUT trained uninterrupted, one work item at a time (no folder: only its table is read)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SWEEPS_LANES", "1")
        return sweeps.run(data, **CUT, **CHEAP)


@pytest.mark.parametrize(("first", "then"), [(1, 2), (2, 1)])
def test_a_resumed_run_keeps_the_chunks_it_was_cut_into(data, whole, tmp_path, monkeypatch, first, then):
    from helpers import Stop, crash_after_saves

    monkeypatch.setenv("SWEEPS_LANES", str(first))
    undo = crash_after_saves(monkeypatch, 2)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=tmp_path / "run", checkpoint_every=1, **CUT, **CHEAP)
    undo()
    monkeypatch.setenv("SWEEPS_LANES", str(then))
    resumed = sweeps.run(data, run_dir=tmp_path / "run", resume=True, **CUT, **CHEAP)
    cut = [(g["chunks"], g["population"]) for g in resumed.config["groups"]]
    assert cut == ([(1, 32)] if first == 1 else [(2, 16)]), "planned as the run was first planned"
    assert len(resumed.table) == 32 and resumed.table["state"].notna().all()
    cols = ["number", "params_learning_rate", "state", "best_epoch"]
    pd.testing.assert_frame_equal(whole.table[cols], resumed.table[cols])
    np.testing.assert_allclose(whole.table["best_val_loss"], resumed.table["best_val_loss"], rtol=1e-5)


def test_the_cut_keeps_memory_fewest_members_and_whole_lanes():
    from sweeps.engine import Structure

    fewest = lane_plan.LANE_FEWEST
    for hidden in [(8,), (64,), (256, 256), (512, 512, 512)]:
        structure = Structure(hidden, "relu", 32, "adam", "constant", False, False, "binary", 45, 1)
        cap = max(1, lane_plan.LANE_PARAMETERS // n_params(structure))
        for total in [1, 15, 16, 31, 32, 33, 48, 64, 100, 256, 1000, 4099]:
            for size in {total, max(1, total // 3), 8, 256}:
                for count in [1, 2, 3, 4, 16]:
                    cut = lane_plan.lane_chunk_size(structure, total, size, count)
                    chunks = -(-total // cut)
                    case = (hidden, total, size, count, cut)
                    assert cut <= size, case  # memory and cache still hold
                    if count == 1 or cut == size:
                        continue
                    assert cut >= fewest and chunks >= 2, case
                    if cut > cap:  # the parameter bound gave way only to keep LANE_FEWEST members
                        assert -(-total // cap) > total // fewest, case
                    if -(-total // min(size, cap)) <= total // fewest // count * count:
                        assert chunks % count == 0, case  # whole lanes wherever they keep LANE_FEWEST


def test_in_lanes_epochs_are_dispatched_ahead_and_the_next_structure_compiles_ahead(two_lanes):
    result, compiled, events = two_lanes
    lanes = [name for name in events if name.startswith("sweeps-lane")]
    assert len(lanes) == 2 and result.config["lanes"] == 2
    for name in lanes:  # each lane: epoch e+1 dispatched before epoch e's metrics are read
        assert events[name][:3] == [("start", 0), ("start", 1), ("read",)], events[name]
    programs = [p for s in result.config["compile_by_structure"] for p in s["programs"]]
    assert any(p["ahead"] for p in programs if p["program"] == "epoch"), "a later structure compiled ahead"
    assert compiled.count(EPOCH) == 3, "each structure's epoch compiled once, ahead or in its lane"
