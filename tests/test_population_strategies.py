"""Strategies that act inside a training population: successive halving (with slot recycling) and PBT.

The sweeps here train on the same data (300 synthetic rows) with the default model and, where a test is not about
them, share population sizes (halving 9, repacked to 4 and 1; halving with refill 4; PBT 8; the four-device
comparison's halving 8): the first test to train a size compiles its epoch, later tests in this process reuse it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from jax.flatten_util import ravel_pytree

import sweeps
from models import MLP, loss_fn
from sweeps import space
from sweeps.engine import edits, flat_params
from sweeps.strategies.base import EpochView

from helpers import EPOCH, log_compilations, synthetic, train_alone

LR = {"learning_rate": space.loguniform(1e-4, 1.0)}


def view(scores, epochs_done=1, active=None, epoch=1, hparams=None):
    n = len(scores)
    active = np.ones(n, bool) if active is None else np.asarray(active)
    return EpochView(
        epoch=epoch,
        numbers=np.arange(n),
        epochs_done=np.full(n, epochs_done),
        active=active,
        trained=active.copy(),  # only members still training reach the next rung
        score=np.asarray(scores, float),
        hparams=hparams or {},
        objective="val_loss",
    )


def test_halving_keeps_exactly_the_best_third_at_each_rung_ties_to_the_lower_number():
    strategy = sweeps.Halving(n=9, min_epochs=1, max_epochs=9, eta=3)
    strategy.ask(LR)
    scores = [0.5, 0.1, 0.9, 0.3, 0.1, 0.7, np.nan, 0.2, 0.8]  # trial 6 diverged (NaN): worst
    decided = strategy.decide(view(scores))
    assert np.flatnonzero(~decided.prune).tolist() == [1, 4, 7], "0.1 (trial 1), 0.1 (trial 4, tie), 0.2"
    survivors = [0.9, 0.2, 0.9, 0.9, 0.4, 0.9, 0.9, 0.3, 0.9]
    at_rung_3 = view(survivors, epochs_done=3, active=~decided.prune, epoch=3)
    assert np.flatnonzero(~strategy.decide(at_rung_3).prune & at_rung_3.active).tolist() == [1]
    assert decided.repack and not decided.refill


def test_one_strategy_instance_serves_several_sweeps_each_as_if_new():
    """`start` begins a sweep afresh: a second sweep with an instance that ran one before decides as a new instance
    does (rung scores, the refill queue, Hyperband's bracket and PBT's random numbers are not carried over)."""
    hparams = {"learning_rate": np.linspace(1e-3, 1e-2, 6)}

    def sweep(strategy, scores):
        strategy.start("val_loss", "minimize")
        strategy.use_epochs(4)
        asked = strategy.ask(LR)
        decided = strategy.decide(view(scores, hparams=hparams))
        strategy.tell(None)
        pruned, copied = (None if a is None else a.tolist() for a in (decided.prune, decided.copy_from))
        explored = {name: value.tolist() for name, value in (decided.hparams or {}).items()}
        return asked, pruned, sorted(decided.refill or {}), copied, explored, strategy.another_round()

    first, second = [0.5, 0.1, 0.9, 0.3, 0.1, 0.7], [0.2, 0.8, 0.4, 0.6, 0.9, 0.3]
    for make in (
        lambda: sweeps.Halving(n=6, min_epochs=1, eta=2, refill=True),
        lambda: sweeps.Halving(n=6, brackets=True),
        lambda: sweeps.PBT(population=6, interval=1, seed=3),
    ):
        used = make()
        sweep(used, first)
        assert sweep(used, second) == sweep(make(), second), type(used).__name__


def test_a_halving_sweep_prunes_at_the_rungs_and_compiles_once_per_population_size():
    data = synthetic("binary", rows=300)
    with log_compilations(fresh=True) as compiled:
        result = sweeps.run(data, space=LR, strategy=sweeps.Halving(n=9, min_epochs=1, eta=3), epochs=9)
    table = result.table
    assert table["state"].value_counts().to_dict() == {"pruned": 8, "complete": 1}
    assert sorted(table.loc[table["state"] == "pruned", "epochs"].unique()) == [1, 3]
    assert (table.loc[table["state"] == "complete", "epochs"] == 9).all()
    # 9 members, repacked to 4 after the first rung (3 live) and to 1 after the second (1 live)
    assert compiled.count(EPOCH) == 3, compiled
    history = result.history
    pruned = table.loc[table["state"] == "pruned", "number"].iloc[0]
    assert len(history[(history["trial"] == pruned) & (history["metric"] == "loss")]) > 0, "pruned trials keep history"
    best = result.best()
    assert best["state"] == "complete"


def test_a_recycled_slot_trains_its_new_trial_exactly_as_alone_from_the_same_start(monkeypatch):
    from sweeps.driver.decisions import PopulationEdits

    data = synthetic("binary", rows=300)
    starts = {}
    original = PopulationEdits._refill

    def refill(self, pop, refill, item, active, state, last):
        pop, active = original(self, pop, refill, item, active, state, last)
        for trial in state.refilled:
            starts.setdefault(trial.number, item.epoch)
        return pop, active

    monkeypatch.setattr(PopulationEdits, "_refill", refill)
    strategy = sweeps.Halving(n=4, min_epochs=1, eta=2, refill=True, samples=10)
    result = sweeps.run(data, space={"learning_rate": space.loguniform(1e-3, 3e-2)}, strategy=strategy, epochs=3)
    table = result.table
    assert len(table) == 10 and set(starts) == set(range(4, 10)), "every recycled trial started in a slot"
    number = max(starts, key=lambda n: table.set_index("number").loc[n, "epochs"])  # one that trained longest
    row = table.set_index("number").loc[number]
    hparams = sweeps.engine.hparams.resolve({"learning_rate": row["params_learning_rate"], "epochs": 3})
    model = MLP(hidden=(64,), outputs=1)
    unravel = ravel_pytree(model.init(jax.random.PRNGKey(0), jnp.zeros((1, data.n_features)))["params"])[1]
    history = result.history
    recorded = history[(history["trial"] == number) & (history["split"] == "val") & (history["metric"] == "loss")]
    for epochs, value in zip(range(1, int(row["epochs"]) + 1), recorded["value"]):
        flat = train_alone(data, hparams, key_index=0, seed=0, epochs=epochs, first_epoch=starts[number])
        out = model.apply({"params": unravel(jnp.asarray(flat))}, jnp.asarray(data.x_val))
        alone = float(jnp.mean(loss_fn("binary")(out, jnp.asarray(data.y_val))))
        assert value == pytest.approx(alone, rel=1e-5, abs=1e-6), f"trial {number} epoch {epochs}"


def trained_one_epoch(data, learning_rates):
    """A population of these learning rates (the default model), built and trained one epoch as a sweep does on
    one device, so the sweeps' compiled programs serve; and the epoch's metrics, on the host."""
    from sweeps.driver.devices import select_devices
    from sweeps.driver.populations import ChunkRunner, controls_for
    from sweeps.engine import Split, stack_hparams, structure_of
    from sweeps.engine.hparams import resolve

    trials = [resolve({"learning_rate": lr, "epochs": 3}) for lr in learning_rates]
    structure, layout, n = structure_of(trials[0], data), select_devices(1), len(trials)
    pop = layout.init_population(structure, stack_hparams(trials, n), np.arange(n), 0, np.arange(n))
    splits = (Split(data.x_train, data.y_train), Split(data.x_val, data.y_val))
    splits = layout.replicate(jax.tree.map(np.asarray, splits))
    runner = ChunkRunner(structure, data, 0, None, controls_for(data, None, None), splits=splits, fetch=layout.fetch)
    return runner.epoch(pop, 0)


def test_pbt_copies_weights_and_optimizer_state_bit_for_bit_and_changes_only_explored_values():
    pop, metrics = trained_one_epoch(synthetic("binary", rows=300), [1e-3, 3e-3, 1e-2, 3e-2])
    strategy = sweeps.PBT(population=4, interval=1, quantile=0.25, seed=0)
    strategy.ask({"learning_rate": space.loguniform(1e-4, 1e-1)})
    host = jax.device_get(pop)
    decided = strategy.decide(
        view(np.asarray(metrics["val_loss"]), hparams={k: np.asarray(v) for k, v in host.hparams.items()})
    )
    worst, best = int(np.argmax(metrics["val_loss"])), int(np.argmin(metrics["val_loss"]))
    assert decided.copy_from[worst] == best and decided.change.tolist() == [i == worst for i in range(4)]
    after = jax.device_get(
        edits.exploit_explore(
            pop,
            jnp.asarray(decided.copy_from),
            jnp.asarray(decided.change),
            {k: jnp.asarray(v) for k, v in decided.hparams.items()},
        )
    )
    for name in edits.TRAINING_STATE:
        jax.tree.map(
            lambda a, b: np.testing.assert_array_equal(a[worst], b[best]), getattr(after, name), getattr(host, name)
        )
    changed = [k for k in host.hparams if not np.array_equal(after.hparams[k], host.hparams[k])]
    assert changed == ["learning_rate"] and after.hparams["learning_rate"][worst] != host.hparams["learning_rate"][best]
    others = [i for i in range(4) if i != worst]
    np.testing.assert_array_equal(flat_params(after.params)[others], flat_params(host.params)[others])
    assert after.numbers.tolist() == host.numbers.tolist()


def test_a_pbt_sweep_records_lineage_and_hyperparameter_schedules():
    data = synthetic("binary", rows=300)
    strategy = sweeps.PBT(population=8, interval=2, seed=1)
    with log_compilations() as compiled:
        result = sweeps.run(data, space={"learning_rate": space.loguniform(1e-4, 1.0)}, epochs=6, strategy=strategy)
    assert compiled.count(EPOCH) <= 1, "exploit and explore never recompile the epoch"
    history = result.history
    lr = history[(history["split"] == "hparam") & (history["metric"] == "learning_rate")]
    parents = history[(history["split"] == "lineage") & (history["metric"] == "parent")]
    assert len(lr) == len(parents) == 8 * 6
    copied = parents[parents["value"] != parents["trial"]]
    assert len(copied) >= 2, "bottom members carry other members' weights after an exploit"
    changed = lr.groupby("trial")["value"].nunique()
    assert (changed > 1).any(), "explore changed some learning rates"
    assert "final_lineage_parent" not in result.table and "best_lineage_parent" not in result.table
    best = result.best()  # the learning rate at the best epoch, as the schedule had it then
    at_best = lr[(lr["trial"] == best["number"]) & (lr["epoch"] == best["best_epoch"])]["value"].item()
    assert best["best_hparam_learning_rate"] == at_best


@pytest.mark.parametrize(
    "strategy",
    [
        sweeps.Halving(n=9, min_epochs=1, max_epochs=4, eta=3),
        sweeps.Halving(n=4, min_epochs=1, eta=2, refill=True, samples=9),
        sweeps.PBT(population=8, interval=1, seed=2),
    ],
    ids=["halving", "halving-refill", "pbt"],
)
def test_a_killed_run_of_a_population_strategy_resumes_to_the_same_result(strategy, tmp_path, monkeypatch):
    import copy

    from helpers import Stop, crash_after_saves

    data = synthetic("binary", rows=300)
    kwargs = dict(space={"learning_rate": space.loguniform(1e-4, 1.0)}, epochs=4, checkpoint_every=1, plots=False)
    full = sweeps.run(data, strategy=copy.deepcopy(strategy), **kwargs)  # uninterrupted: it needs no run folder
    for crash_at in (2, 4):
        run_dir = tmp_path / f"run{crash_at}"
        undo = crash_after_saves(monkeypatch, crash_at)
        with pytest.raises(Stop):
            sweeps.run(data, run_dir=run_dir, strategy=copy.deepcopy(strategy), **kwargs)
        undo()
        resumed = sweeps.run(data, run_dir=run_dir, resume=True, strategy=copy.deepcopy(strategy), **kwargs)
        pd.testing.assert_frame_equal(full.table, resumed.table)
        pd.testing.assert_frame_equal(full.history, resumed.history)


def test_population_strategies_refuse_impossible_settings():
    with pytest.raises(ValueError, match="min_epochs <= max_epochs"):
        sweeps.Halving(min_epochs=5, max_epochs=3)
    with pytest.raises(ValueError, match=r"eta=1"):
        sweeps.Halving(eta=1)
    with pytest.raises(ValueError, match="samples=.* must be an integer >= n=8"):
        sweeps.Halving(n=8, refill=True, samples=4)
    with pytest.raises(ValueError, match=r"sampler=.* must be one of \['random', 'quasirandom'\]"):
        sweeps.Halving(sampler="bayes")
    with pytest.raises(ValueError, match=r"quantile=0.7"):
        sweeps.PBT(quantile=0.7)
    with pytest.raises(ValueError, match="perturb"):
        sweeps.PBT(perturb=(0.0, 1.2))


def test_halving_trains_to_the_sweeps_epochs_and_refuses_another_max_epochs(capsys):
    data = synthetic("binary", rows=300)
    plan = sweeps.dry_run(data, space=LR, strategy=sweeps.Halving(n=9, min_epochs=1, eta=2), epochs=5)
    assert {t.hparams["epochs"] for t in plan.trials} == {5} and plan.plan.strategy.rungs() == [1, 2, 4]
    agreeing = sweeps.dry_run(data, space=LR, strategy=sweeps.Halving(n=9, max_epochs=4), epochs=4)
    assert {t.hparams["epochs"] for t in agreeing.trials} == {4}
    with pytest.raises(ValueError, match=r"Halving\(max_epochs=9\) and the sweep's epochs=30 disagree.*epochs=9"):
        sweeps.dry_run(data, space=LR, strategy=sweeps.Halving(n=9, max_epochs=9), epochs=30)
    with pytest.raises(ValueError, match=r"min_epochs <= the sweep's epochs.*min_epochs=5, epochs=3"):
        sweeps.dry_run(data, space=LR, strategy=sweeps.Halving(n=9, min_epochs=5), epochs=3)

    from sweeps.cli.main import main

    example = "data/examples/churn_halving.toml"  # the banner's epochs are the epochs every trial may train
    assert main(["run", example, "--dry-run", "--set", "train.epochs=30", "--set", "strategy.n=9"]) == 0
    out = capsys.readouterr().out
    assert ", 30 epochs," in out and "max_epochs" not in out.splitlines()[2], out
    assert int(out.split("memory_mb\n")[1].splitlines()[0].split()[-2]) == 30, "the plan's epochs column"
    assert main(["run", example, "--dry-run", "--set", "strategy.max_epochs=9", "--set", "train.epochs=30"]) == 2
    assert "Halving(max_epochs=9) and the sweep's epochs=30 disagree" in capsys.readouterr().err


def test_hyperband_runs_one_round_per_bracket():
    strategy = sweeps.Halving(min_epochs=1, max_epochs=4, eta=2, brackets=True)
    assert strategy.bracket_sizes() == [(4, 1), (3, 2), (3, 4)]
    data = synthetic("binary", rows=300)
    result = sweeps.run(data, space={"learning_rate": space.loguniform(1e-3, 1e-1)}, strategy=strategy, epochs=4)
    table = result.table
    assert len(table) == 10 and result.config["rounds"] == 3
    last = table[table["number"] >= 7]  # the last bracket trains its 3 trials fully, no pruning
    assert (last["state"] == "complete").all() and (last["epochs"] == 4).all()
    first = table[table["number"] < 4]
    assert (first["state"] == "pruned").sum() >= 2, "the first bracket prunes from epoch 1"


def test_refill_draws_from_a_quasirandom_sequence_when_asked():
    search = {"learning_rate": space.loguniform(1e-4, 1e-1)}
    quasi = sweeps.Halving(n=4, max_epochs=3, refill=True, samples=16, sampler="quasirandom", seed=0)
    first = quasi.ask(search)
    assert first == sweeps.QuasiRandom(n=16, seed=0).ask(search)[:4]
    assert len(quasi._queue) == 12, "the other 12 wait for recycled slots, in the sequence's order"


def population_tables(devices=None) -> dict:
    """Halving, refill and PBT on `devices` (None: every device JAX sees): each table's number, state, epochs, value."""
    data = synthetic("binary", rows=300)
    runs = {
        "halving": (sweeps.Halving(n=8, min_epochs=1, eta=3), {"epochs": 4}),
        "refill": (sweeps.Halving(n=4, min_epochs=1, eta=2, refill=True, samples=9), {"epochs": 3}),
        "pbt": (sweeps.PBT(population=8, interval=1, seed=2), {"epochs": 4}),
    }
    tables = {}
    for name, (strategy, options) in runs.items():
        search = {"learning_rate": space.loguniform(1e-4, 1e-2)}
        table = sweeps.run(data, space=search, strategy=strategy, devices=devices, **options).table
        tables[name] = table[["number", "state", "epochs", "value"]].values.tolist()
    return tables


FOUR_DEVICES = """
import json, jax
from test_population_strategies import population_tables

assert len(jax.devices()) == 4, jax.devices()
print(json.dumps(population_tables()))
"""


def test_population_strategies_give_the_same_table_on_four_devices():
    """Pruning, recycled slots, repacking and PBT's copies across shards: the one-device table (trained here, in
    this process, on one device; the four-device one in a process that has four)."""
    import json
    import os
    import sys
    from pathlib import Path

    import forked

    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")]),
        "SWEEPS_CACHE_DIR": "off",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    }
    done = forked.run([sys.executable, "-c", FOUR_DEVICES], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    four = json.loads(done.stdout.strip().splitlines()[-1])
    one = population_tables(devices=1)
    assert set(one) == set(four) == {"halving", "refill", "pbt"}
    for name in one:
        assert [row[:3] for row in one[name]] == [row[:3] for row in four[name]], name  # numbers, states, epochs
        np.testing.assert_allclose([r[3] for r in one[name]], [r[3] for r in four[name]], rtol=1e-6, err_msg=name)
