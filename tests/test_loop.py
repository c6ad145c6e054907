"""The sweep loop and the engine's population edits: one place that calls strategies, records by number."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweeps
from sweeps.driver.populations import controls_for, train_chunk
from sweeps.driver.records import Records
from sweeps.driver.rounds import first_round
from sweeps.driver.scheduler import Scheduler
from sweeps.engine import (
    Population,
    Structure,
    edits,
    flat_params,
    init_population,
    make_train_epoch,
    stack_hparams,
)
from sweeps.engine.hparams import TRACED, resolve
from sweeps.planning.planner import plan
from sweeps.settings import SweepConfig

from helpers import EPOCH, log_compilations, synthetic

SEED = 0
# The population tests below use one population size (4 members of the default structure, as train_chunk builds
# them), and the sweeps 2 trials of it: each program is compiled once for the module (JAX's jit cache).
LEARNING_RATES = [1e-3, 1e-2, 3e-2, 1e-1]


def population(data, learning_rates, numbers=None):
    hparams = [resolve({"learning_rate": lr, "epochs": 3}) for lr in learning_rates]
    numbers = np.arange(len(hparams)) if numbers is None else np.asarray(numbers)
    structure = Structure(
        (64,), "relu", 32, "adam", "constant", False, False, data.task, data.n_features, data.n_outputs
    )
    return structure, init_population(structure, stack_hparams(hparams, len(hparams)), numbers, SEED)


def epoch(structure, data, pop, index):
    from sweeps.engine import Split, keys

    train = Split(jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    val = Split(jnp.asarray(data.x_val), jnp.asarray(data.y_val))
    controls = controls_for(data, None, None)
    epoch_fn = make_train_epoch(structure, None, "val_loss")  # the program train_chunk's runner uses
    return epoch_fn(pop, train, val, keys.batch_order_key(SEED, index), controls)


def test_every_population_array_has_the_trial_axis_first(binary_data):
    _, pop = population(binary_data, LEARNING_RATES)
    assert set(pop.hparams) == set(TRACED)
    for field in Population.__dataclass_fields__:
        for path, leaf in jax.tree_util.tree_leaves_with_path(getattr(pop, field)):
            assert leaf.shape[:1] == (4,), f"{field}{jax.tree_util.keystr(path)} has shape {leaf.shape}"


def test_a_copied_member_is_bit_identical_to_its_source(binary_data):
    structure, pop = population(binary_data, LEARNING_RATES)
    pop, _ = epoch(structure, binary_data, pop, 0)
    before = jax.device_get(pop)
    copied = jax.device_get(edits.copy_members(pop, jnp.array([0, 1, 0, 3], jnp.int32)))
    for name in edits.TRAINING_STATE:
        jax.tree.map(
            np.testing.assert_array_equal,
            jax.tree.map(lambda a: a[2], getattr(copied, name)),
            jax.tree.map(lambda a: a[0], getattr(before, name)),
        )
        for member in (0, 1, 3):
            jax.tree.map(
                np.testing.assert_array_equal,
                jax.tree.map(lambda a, m=member: a[m], getattr(copied, name)),
                jax.tree.map(lambda a, m=member: a[m], getattr(before, name)),
            )
    # the copy keeps its own identity and hyperparameters
    np.testing.assert_array_equal(copied.numbers, before.numbers)
    np.testing.assert_array_equal(copied.hparams["learning_rate"], before.hparams["learning_rate"])


def test_editing_hyperparameters_between_epochs_does_not_recompile_the_epoch(binary_data):
    structure, pop = population(binary_data, LEARNING_RATES)
    pop, _ = epoch(structure, binary_data, pop, 0)
    with log_compilations() as compiled:
        for k in range(2):  # weak-typed Python floats and float64 numpy both become the population's float32
            new = {"learning_rate": np.array([5e-3, 5e-3, 5e-3, 5e-3]), "b1": jnp.full((4,), 0.8)}
            pop = edits.set_hparams(pop, jnp.array([True, False, True, False]), new)
            pop, _ = epoch(structure, binary_data, pop, 1 + k)
    assert compiled.count(EPOCH) == 0, compiled
    np.testing.assert_allclose(np.asarray(pop.hparams["learning_rate"]), [5e-3, 1e-2, 5e-3, 1e-1], rtol=1e-7)
    assert pop.hparams["learning_rate"].dtype == jnp.float32 and not pop.hparams["learning_rate"].weak_type


def test_placing_a_fresh_trial_trains_it_as_if_it_started_there(binary_data):
    structure, pop = population(binary_data, LEARNING_RATES)
    pop, _ = epoch(structure, binary_data, pop, 0)
    _, fresh = population(binary_data, [1e-3, 3e-3, 3e-2, 1e-1], numbers=[0, 7, 2, 3])
    _, alone = population(binary_data, [3e-3], numbers=[7])
    placed = edits.place(pop, fresh, jnp.array([False, True, False, False]))
    assert np.asarray(placed.numbers).tolist() == [0, 7, 2, 3]
    assert int(placed.step[1]) == 0 and int(placed.epochs_done[1]) == 0
    assert int(placed.step[0]) > 0 and int(placed.epochs_done[0]) == 1, "the members not placed keep their training"
    np.testing.assert_array_equal(flat_params(placed.params)[1], flat_params(alone.params)[0])
    masked = edits.mask_out(placed, jnp.array([True, False, False, False]))
    assert np.asarray(masked.active).tolist() == [False, True, True, True]


def test_records_follow_trial_numbers_not_slots():
    records = Records()
    base = {"trained": np.array([True, True]), "diverged": np.array([False, False]), "active": np.array([True, True])}
    records.add({**base, "number": np.array([3, 5]), "val_loss": np.array([0.3, 0.5])})
    records.add({**base, "number": np.array([9, 5]), "val_loss": np.array([0.9, 0.55])})  # slot 0 now holds trial 9
    by_trial = records.by_trial()
    assert by_trial[3]["val_loss"].tolist() == [0.3]
    assert by_trial[5]["val_loss"].tolist() == [0.5, 0.55]
    assert by_trial[9]["val_loss"].tolist() == [0.9]
    again = Records(records.arrays()).by_trial()  # what a checkpoint would hold
    assert again.keys() == by_trial.keys()


class Counting(sweeps.Strategy):
    """Records every call the loop makes: asked once per round, told each round's rows."""

    def __init__(self, rounds=2):
        self.rounds, self.asked, self.told = rounds, 0, []

    def ask(self, search):
        self.asked += 1
        return [{"learning_rate": 1e-3 * self.asked}, {"learning_rate": 2e-3 * self.asked}]

    def tell(self, table):
        self.told.append(table)

    def another_round(self):
        return len(self.told) < self.rounds


def test_the_loop_asks_once_per_round_tells_each_round_and_numbers_across_rounds(binary_data):
    strategy = Counting(rounds=2)
    result = sweeps.run(binary_data, strategy=strategy, epochs=1)
    assert strategy.asked == 2 and len(strategy.told) == 2
    assert strategy.told[0]["number"].tolist() == [0, 1] and strategy.told[1]["number"].tolist() == [2, 3]
    assert result.table["number"].tolist() == [0, 1, 2, 3]
    assert result.table["params_learning_rate"].tolist() == pytest.approx([1e-3, 2e-3, 2e-3, 4e-3])
    assert result.config["rounds"] == 2
    assert (strategy.told[1]["state"] == "complete").all()


def test_planning_never_asks_the_strategy_and_the_dry_run_asks_a_copy(binary_data):
    strategy = Counting(rounds=1)
    sweep = plan(SweepConfig(strategy=strategy, epochs=1), binary_data)
    assert strategy.asked == 0, "plan() is pure: the scheduler asks, once per round"
    first = first_round(sweep)
    assert strategy.asked == 0 and len(first.trials) == 2, "the dry run asks a copy of the strategy"
    assert sweeps.dry_run(binary_data, strategy=strategy, epochs=1).trials == first.trials
    assert strategy.asked == 0


def test_train_chunk_metrics_carry_trial_numbers(binary_data):
    lrs = [1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2]  # chunks of 4 (the population tests' size) and 3
    sweep = sweeps.dry_run(binary_data, space={"learning_rate": lrs}, epochs=2, max_population=4)
    group = sweep.groups[0]
    _, history = train_chunk(
        group.structure,
        group.chunks[1],
        group.chunk_size,
        binary_data,
        SEED,
        None,
        controls_for(binary_data, None, None),
    )
    assert np.asarray(history[0]["number"]).tolist() == [4, 5, 6, -1]  # the padded last chunk: trials 4-6, padding


class Rounds(sweeps.Strategy):
    """Three rounds over two batch sizes, the second round smaller; `size` is what it tells the loop to pad to."""

    SIZES = ((2, 2), (1, 2), (2, 2))  # (trials with batch 16, trials with batch 32) per round

    def __init__(self, size):
        self.size, self.told = size, 0

    def ask(self, search):
        small, large = self.SIZES[self.told]
        lr = 1e-3 * (1 + self.told)
        return [{"learning_rate": lr * (1 + i), "batch_size": 16} for i in range(small)] + [
            {"learning_rate": lr * (1 + i), "batch_size": 32} for i in range(large)
        ]

    def tell(self, table):
        self.told += 1

    def another_round(self):
        return self.told < len(self.SIZES)

    def round_size(self):
        return self.size

    def planned_rounds(self):
        return len(self.SIZES)


def test_rounds_padded_to_the_round_size_compile_once_per_structure(binary_data):
    from models import MLP

    # a linear model trained by SGD on a regression target: the programs that compile fastest (the model is not
    # what this is about), used by no other test here
    data = synthetic("regression")
    cheap = {"model": MLP(hidden=()), "optimizer": "sgd", "epochs": 1, "seeds": 2, "fuse": False}
    with log_compilations(fresh=True) as compiled:
        padded = sweeps.run(data, strategy=Rounds(size=4), **cheap)
    assert compiled.count(EPOCH) == 2, compiled  # two batch sizes, three rounds: one program each
    assert padded.table["round"].tolist() == [0] * 8 + [1] * 6 + [2] * 8
    assert padded.table["number"].tolist() == list(range(22)), "numbers run on across rounds; no padding member"
    # the same rounds sized to their trials: one program per structure and population size (batch 16: 4, 2, 4
    # members; batch 32: 4, 4, 4)
    with log_compilations() as compiled:
        sweeps.run(data, strategy=Rounds(size=None), **cheap)
    assert compiled.count(EPOCH) == 3, compiled


def _dispatch_order(monkeypatch):
    """Records the scheduler's epoch dispatches ("start", epoch) and metric reads ("read") in order."""
    from sweeps.driver.devices import Devices
    from sweeps.driver.populations import ChunkRunner

    events = []
    start, fetch = ChunkRunner.start, Devices.fetch

    def logged_start(self, pop, index):
        events.append(("start", index))
        return start(self, pop, index)

    def logged_fetch(self, tree):
        if isinstance(tree, dict) and "trained" in tree:
            events.append(("read",))
        return fetch(self, tree)

    monkeypatch.setattr(ChunkRunner, "start", logged_start)
    monkeypatch.setattr(Devices, "fetch", logged_fetch)
    return events


def test_the_next_epoch_is_dispatched_before_the_last_ones_metrics_are_read(binary_data, monkeypatch):
    space = {"learning_rate": [1e-3, 1e3]}  # the last one diverges: a result, like the other
    events = _dispatch_order(monkeypatch)
    ahead = sweeps.run(binary_data, space=space, epochs=3)
    assert events == [("start", 0), ("start", 1), ("read",), ("start", 2), ("read",), ("read",)]

    monkeypatch.setattr(Scheduler, "_runs_ahead", lambda self: False)
    events.clear()
    plain = sweeps.run(binary_data, space=space, epochs=3)
    assert events == [("start", 0), ("read",), ("start", 1), ("read",), ("start", 2), ("read",)]
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(ahead.table, plain.table)
    pd_testing.assert_frame_equal(ahead.history, plain.history)


def test_with_early_stopping_each_epoch_is_read_before_the_next_is_dispatched(binary_data, monkeypatch):
    events = _dispatch_order(monkeypatch)
    sweeps.run(binary_data, space={"learning_rate": [1e-3, 1e-2]}, epochs=3, early_stopping={"patience": 1})
    assert events[:4] == [("start", 0), ("read",), ("start", 1), ("read",)]


def test_when_every_member_stops_the_epoch_dispatched_ahead_changes_nothing(binary_data, monkeypatch, tmp_path):
    space = {"learning_rate": [1e3, 3e3]}  # both diverge in the first epoch
    events = _dispatch_order(monkeypatch)
    ahead = sweeps.run(binary_data, space=space, epochs=4, run_dir=tmp_path / "ahead", keep_models=2)
    assert events == [("start", 0), ("start", 1), ("read",)]  # stopped: nothing further dispatched
    monkeypatch.setattr(Scheduler, "_runs_ahead", lambda self: False)
    plain = sweeps.run(binary_data, space=space, epochs=4, run_dir=tmp_path / "plain", keep_models=2)
    assert (ahead.table["state"] == "diverged").all()
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(ahead.table, plain.table)
    pd_testing.assert_frame_equal(ahead.history, plain.history)


@pytest.mark.parametrize(("every", "epochs_saved"), [(1, [1, 2, 3]), (2, [2])])
def test_checkpoints_hold_the_epochs_they_are_due_at_even_where_epochs_run_ahead(
    binary_data, monkeypatch, tmp_path, every, epochs_saved
):
    from sweeps.driver import checkpoints

    saved, original = [], checkpoints.Checkpoints.save

    def save(self, snapshot):
        saved.append([f["epoch"] for f in snapshot.meta["position"]["flight"]])
        return original(self, snapshot)

    monkeypatch.setattr(checkpoints.Checkpoints, "save", save)
    monkeypatch.setenv("SWEEPS_LANES", "1")
    events = _dispatch_order(monkeypatch)
    search = {"learning_rate": [1e-3, 1e-2]}  # two trials, as the other sweeps here: one program
    sweeps.run(binary_data, space=search, epochs=4, run_dir=tmp_path / "run", checkpoint_every=every)
    assert [e for flight in saved for e in flight] == epochs_saved, saved
    assert saved[-1] == [], "the item's end (alone in flight) and the round's: no population"
    if every == 2:  # between checkpoints the next epoch is still dispatched before this one's metrics are read
        assert events[:3] == [("start", 0), ("start", 1), ("read",)], events
