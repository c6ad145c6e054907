"""Callbacks: every member's epoch by trial number, once, from the scheduler's per-epoch handler; trial starts and
ends as the table has them; across lanes, population edits, a stop and a resume; a callback that raises loses
nothing."""

import copy
import json
import math
import re

import pandas as pd
import pytest
from test_checkpoints import POPULATION_SWEEPS, SWEEP

import sweeps
from sweeps import space
from sweeps.tracking.callbacks import CallbackFailed, replay

from helpers import Stop, crash_after_saves, synthetic

SWEEPS = {
    "grid": SWEEP,  # two batch sizes, chunks of 3, early stopping
    "halving-refill": dict(
        space={"learning_rate": space.loguniform(1e-3, 1e-1)},
        strategy=sweeps.Halving(n=4, min_epochs=1, eta=2, refill=True, samples=7, seed=0),
        epochs=2,
        checkpoint_every=1,
        keep_models=2,
        plots=False,
    ),
    "pbt": POPULATION_SWEEPS["pbt"],
}


class Recorder(sweeps.Callback):
    """Everything a callback is told, in order."""

    def __init__(self):
        self.events = []

    def on_sweep_start(self, sweep):
        self.events.append(("sweep_start", sweep))

    def on_trial_start(self, trial):
        self.events.append(("trial_start", trial))

    def on_epoch_end(self, epoch):
        self.events.append(("epoch", epoch))

    def on_trial_end(self, trial):
        self.events.append(("trial_end", trial))

    def on_sweep_end(self, result):
        self.events.append(("sweep_end", result))

    def of(self, kind):
        return [event for name, event in self.events if name == kind]

    def epochs(self) -> list[tuple[int, int, dict]]:
        """(trial, epoch, metrics) of every member epoch heard, in order."""
        return [(n, int(m["epoch"]), m) for e in self.of("epoch") for n, m in e.metrics.items()]


@pytest.fixture(scope="module")
def data():
    return synthetic("binary", rows=400)


@pytest.fixture(scope="module")
def heard(data, tmp_path_factory):
    """name -> (result, recorder) of each sweep trained once with a recorder (made when first asked for)."""
    made = {}

    def get(name):
        if name not in made:
            recorder = Recorder()
            run_dir = tmp_path_factory.mktemp(name) / "run"
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("SWEEPS_LANES", "2")  # population strategies train one item at a time whatever it says
                result = sweeps.run(data, run_dir=run_dir, callbacks=[recorder], **copy.deepcopy(SWEEPS[name]))
            made[name] = result, recorder
        return made[name]

    return get


def history_values(result) -> dict[tuple[int, int], dict[str, float]]:
    """(trial, epoch) -> {metric name: value}, from the result's history."""
    out: dict[tuple[int, int], dict[str, float]] = {}
    for row in result.history.itertuples(index=False):
        out.setdefault((int(row.trial), int(row.epoch)), {})[f"{row.split}_{row.metric}"] = float(row.value)
    return out


def assert_same_values(heard: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert math.isclose(heard[name], value, rel_tol=0, abs_tol=0) or (math.isnan(heard[name]) and math.isnan(value))


def assert_heard_as_the_table_says(result, recorder) -> None:
    """Every member epoch once, with the history's values; each trial started before its first epoch and ended once
    after its last, as the table has it."""
    expected = history_values(result)
    epochs = recorder.epochs()
    assert len(epochs) == len(expected), "every (trial, epoch) is heard once"
    assert {(n, e) for n, e, _ in epochs} == set(expected)
    for number, epoch, metrics in epochs:
        assert_same_values(metrics, expected[number, epoch])
    order = [(kind, getattr(event, "number", None)) for kind, event in recorder.events]
    table = result.table.set_index("number")
    for number in table.index:
        starts = [i for i, (k, n) in enumerate(order) if k == "trial_start" and n == number]
        ends = [i for i, (k, n) in enumerate(order) if k == "trial_end" and n == number]
        firsts = [i for i, (k, e) in enumerate(recorder.events) if k == "epoch" and number in e.metrics]
        assert len(starts) == 1 and len(ends) == 1, f"trial {number}: one start and one end"
        assert starts[0] < firsts[0] and ends[0] > firsts[-1]
    for end in recorder.of("trial_end"):
        row = table.loc[end.number]
        assert (end.state, end.epochs) == (row["state"], row["epochs"])
        if end.state != "diverged":
            assert end.best_epoch == row["best_epoch"] and end.value == pytest.approx(row["value"], abs=0)
    for start in recorder.of("trial_start"):
        row = table.loc[start.number]
        params = {c[len("params_") :]: row[c] for c in table.columns if c.startswith("params_") and pd.notna(row[c])}
        assert dict(start.params) == params and (start.round, start.seed) == (row["round"], row["seed"])
        assert "learning_rate" not in start.structure and "batch_size=" in start.structure
    (start,) = recorder.of("sweep_start")
    assert start.run_id == result.config["run_id"] and len(start.run_id) == 32 and not start.resumed
    assert recorder.of("sweep_end") == [result]


def test_a_callback_hears_every_member_epoch_once_by_trial_number_in_either_lane_setting(
    data, heard, tmp_path, monkeypatch
):
    monkeypatch.setenv("SWEEPS_LANES", "1")
    recorder = Recorder()
    result = sweeps.run(data, run_dir=tmp_path / "run", callbacks=[recorder], **copy.deepcopy(SWEEP))
    in_lanes, heard_in_lanes = heard("grid")  # two lanes
    for run, told in ((result, recorder), (in_lanes, heard_in_lanes)):
        assert_heard_as_the_table_says(run, told)
        assert len(told.of("trial_end")) == len(run.table) == 10  # 5 rates x 2 batch sizes
    assert in_lanes.config["lanes"] == 2 and result.config["lanes"] == 1


@pytest.mark.parametrize("name", ["halving-refill", "pbt"])
def test_strategies_that_edit_the_population_are_heard_as_their_table_says(heard, name):
    result, recorder = heard(name)
    assert_heard_as_the_table_says(result, recorder)
    states = {end.state for end in recorder.of("trial_end")}
    if name == "halving-refill":
        assert "pruned" in states and len(result.table) == 7  # refilled trials start and end in recycled slots
    else:
        assert any("hparam_learning_rate" in m for _, _, m in recorder.epochs())  # PBT's changed values are heard


@pytest.mark.parametrize(("name", "lanes", "stop_at"), [("grid", 2, 1), ("halving-refill", 1, 3)])
def test_a_run_stopped_at_a_checkpoint_and_resumed_tells_each_epoch_once(
    data, heard, tmp_path, monkeypatch, name, lanes, stop_at
):
    full, _ = heard(name)
    monkeypatch.setenv("SWEEPS_LANES", str(lanes))
    run_dir = tmp_path / "run"
    first, second = Recorder(), Recorder()
    restore = crash_after_saves(monkeypatch, stop_at)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=run_dir, callbacks=[first], **copy.deepcopy(SWEEPS[name]))
    restore()
    assert first.of("sweep_end") == [None], "a run that stops tells its callbacks, with no result"
    result = sweeps.run(data, run_dir=run_dir, resume=True, callbacks=[second], **copy.deepcopy(SWEEPS[name]))
    pd.testing.assert_frame_equal(result.history, full.history)
    (start,) = second.of("sweep_start")
    assert start.resumed and start.run_id == first.of("sweep_start")[0].run_id == result.config["run_id"]
    both = first.epochs() + second.epochs()
    assert sorted((n, e) for n, e, _ in both) == sorted(history_values(full)), "each (trial, epoch) once in all"
    expected = history_values(full)
    for number, epoch, metrics in both:
        assert_same_values(metrics, expected[number, epoch])
    ends = [e.number for e in first.of("trial_end") + second.of("trial_end")]
    assert sorted(ends) == sorted(full.table["number"]), "each trial ends once in all"


class Crash(BaseException):
    """A crash between two checkpoints (not an Exception: callbacks' errors are caught, this one is not)."""


class CrashAt(Recorder):
    def __init__(self, epochs: int):
        super().__init__()
        self.left = epochs

    def on_epoch_end(self, epoch):
        super().on_epoch_end(epoch)
        self.left -= 1
        if self.left == 0:
            raise Crash()


def test_a_run_that_crashed_between_checkpoints_tells_the_epochs_since_its_checkpoint_again_with_the_same_values(
    data, heard, tmp_path
):
    full, _ = heard("grid")
    settings = {**copy.deepcopy(SWEEP), "checkpoint_every": 2}
    run_dir = tmp_path / "run"
    first, second = CrashAt(3), Recorder()
    with pytest.raises(Crash):
        sweeps.run(data, run_dir=run_dir, callbacks=[first], **settings)
    sweeps.run(data, run_dir=run_dir, resume=True, callbacks=[second], **settings)
    expected = history_values(full)
    both = first.epochs() + second.epochs()
    assert {(n, e) for n, e, _ in both} == set(expected)
    assert len(both) > len(expected), "the epochs after the last checkpoint are told again"
    for number, epoch, metrics in both:
        assert_same_values(metrics, expected[number, epoch])


class Raises(sweeps.Callback):
    def __init__(self, method: str):
        self.method, self.calls = method, 0

    def __getattribute__(self, name):
        if name == object.__getattribute__(self, "method"):

            def fail(event):
                self.calls += 1
                raise RuntimeError("tracker offline")

            return fail
        return object.__getattribute__(self, name)


METHODS = ["on_sweep_start", "on_trial_start", "on_epoch_end", "on_trial_end"]


def test_a_callback_that_raises_is_reported_disabled_and_recorded_and_the_sweep_goes_on(data, heard, tmp_path):
    full, _ = heard("grid")
    failing, recorder = [Raises(method) for method in METHODS], Recorder()
    with pytest.warns(CallbackFailed) as warned:
        result = sweeps.run(data, run_dir=tmp_path / "run", callbacks=[*failing, recorder], **copy.deepcopy(SWEEP))
    for method, message in zip(METHODS, warned):
        assert re.search(rf"Raises\.{method} raised RuntimeError: tracker offline.*disabled", str(message.message))
    assert [f.calls for f in failing] == [1, 1, 1, 1], "each disabled after its first error"
    pd.testing.assert_frame_equal(result.table, full.table)
    assert_heard_as_the_table_says(result, recorder)  # the other callback heard everything
    written = json.loads((tmp_path / "run" / "config.json").read_text())["callbacks"]
    error = "RuntimeError: tracker offline"
    assert written == [{"callback": "Raises", "method": method, "error": error} for method in METHODS]
    assert "callbacks" not in full.config, "a run whose callbacks never failed records none"


def test_a_function_is_a_callback_of_every_epoch_and_anything_else_is_refused(data):
    seen = []
    result = sweeps.run(
        data, space={"learning_rate": [1e-3, 1e-2]}, epochs=2, callbacks=[lambda e: seen.append(dict(e.metrics))]
    )
    assert [sorted(m) for m in seen] == [[0, 1], [0, 1]]
    assert seen[1][1]["val_loss"] == result.table.loc[1, "final_val_loss"]
    with pytest.raises(TypeError, match=r"callbacks must be sweeps.Callback instances.*subclass sweeps.Callback"):
        sweeps.run(data, space={"learning_rate": [1e-3]}, epochs=1, callbacks=["mlflow"])


@pytest.mark.parametrize("name", ["grid", "halving-refill", "pbt"])
def test_a_finished_run_replayed_tells_what_the_live_run_told_trial_by_trial(heard, name):
    result, live = heard(name)
    again = Recorder()
    assert replay(sweeps.load_result(result.run_dir), [again]) == []
    assert sorted((n, e) for n, e, _ in again.epochs()) == sorted((n, e) for n, e, _ in live.epochs())
    expected = history_values(result)
    for number, epoch, metrics in again.epochs():
        assert_same_values(metrics, expected[number, epoch])
    by_number = {t.number: t for t in live.of("trial_start")}
    for start in again.of("trial_start"):
        assert start == by_number[start.number], "params, round, seed and structure as the live run told them"
    assert {(t.number, t.state, t.epochs, t.best_epoch) for t in again.of("trial_end")} == {
        (t.number, t.state, t.epochs, t.best_epoch) for t in live.of("trial_end")
    }
    (start,) = again.of("sweep_start")
    assert start.run_id == result.config["run_id"] and start.resumed
