"""The engine's contract: a member trains as it would alone, and nothing leaks between members."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweeps
from models import MLP
from sweeps import space
from sweeps.engine import (
    Controls,
    Split,
    Structure,
    flat_params,
    init_population,
    keys,
    make_train_epoch,
    stack_hparams,
)
from sweeps.engine.hparams import resolve

from helpers import EPOCH, log_compilations, synthetic, train_alone

SEED = 0
# The tests below train populations of 2 and 4 members of one structure (64 relu units, batch 32, adam) on the
# binary data, and sweeps of 2 and 6 trials of it: each program is compiled once for the module (JAX's jit cache).


def train_population(
    data, learning_rates, epochs=1, numbers=None, batch_size=32, divergence_limit=np.inf, edit=lambda pop: pop
):
    params = [resolve({"learning_rate": lr, "batch_size": batch_size, "epochs": epochs}) for lr in learning_rates]
    numbers = np.arange(len(params)) if numbers is None else np.asarray(numbers)
    structure = Structure(
        (64,), "relu", batch_size, "adam", "constant", False, False, data.task, data.n_features, data.n_outputs
    )
    pop = edit(init_population(structure, stack_hparams(params, len(params)), numbers, SEED))
    epoch_fn = make_train_epoch(structure)
    controls = Controls(jnp.float32(divergence_limit), jnp.int32(1), jnp.float32(0), jnp.float32(1))
    train = Split(jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    val = Split(jnp.asarray(data.x_val), jnp.asarray(data.y_val))
    for epoch in range(epochs):
        pop, metrics = epoch_fn(pop, train, val, keys.batch_order_key(SEED, epoch), controls)
    return pop, params, jax.device_get(metrics)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_member_matches_training_alone(task):
    data = synthetic(task)
    learning_rates = [1e-3, 1e-2]  # two members that differ: each is compared with its own training alone
    pop, params, _ = train_population(data, learning_rates, epochs=1)
    assert flat_params(pop.params).shape[0] == len(learning_rates)
    for i, p in enumerate(params):
        alone = train_alone(data, p, key_index=i, seed=SEED, epochs=1)
        error = np.abs(flat_params(pop.params)[i] - alone).max()
        print(f"{task} lr={p['learning_rate']:g}: max |vmapped - alone| = {error:.2e}")
        assert error <= 1e-5


def test_diverging_member_changes_no_other_member(binary_data):
    calm = [1e-4, 1e-3, 1e-2]
    limit = 10 * np.log(2.0)  # the engine's default: 10x the loss of predicting the prior
    # the same population with a fourth member that trains calmly, then one that diverges
    pop_calm, _, _ = train_population(binary_data, calm + [3e-2], epochs=2, divergence_limit=limit)
    pop_wild, _, metrics = train_population(binary_data, calm + [10.0], epochs=2, divergence_limit=limit)
    np.testing.assert_array_equal(flat_params(pop_calm.params)[:3], flat_params(pop_wild.params)[:3])
    assert bool(metrics["diverged"][3]) and not metrics["diverged"][:3].any()
    assert np.isfinite(flat_params(pop_wild.params)).all(), "a diverged member keeps its last finite parameters"


def test_a_member_whose_parameters_stop_being_finite_is_marked_diverged(binary_data):
    """relu turns an infinite bias into a unit that is off for good: the loss stays finite and only the
    epoch's check of the parameters sees it. The other member trains as it would alone."""

    def infinite_bias(pop):  # member 1, hidden unit 0
        layer = pop.params["Dense_0"]
        return pop.replace(params={**pop.params, "Dense_0": {**layer, "bias": layer["bias"].at[1, 0].set(-jnp.inf)}})

    clean, _, _ = train_population(binary_data, [1e-3, 1e-2])
    pop, _, metrics = train_population(binary_data, [1e-3, 1e-2], edit=infinite_bias)
    assert np.isfinite(metrics["train_loss"]).all(), "the loss alone would not have caught it"
    assert metrics["diverged"].tolist() == [False, True] and metrics["active"].tolist() == [False, False]
    np.testing.assert_array_equal(flat_params(pop.params)[0], flat_params(clean.params)[0])


def test_population_order_and_size_do_not_change_a_trial(binary_data):
    """Keys come from trial numbers, not positions: a trial trains the same in any population."""
    pop_a, _, _ = train_population(binary_data, [1e-3, 3e-3, 1e-2, 3e-2], numbers=[5, 6, 7, 8])
    pop_b, _, _ = train_population(binary_data, [1e-2, 1e-3], numbers=[7, 5])
    np.testing.assert_allclose(flat_params(pop_a.params)[0], flat_params(pop_b.params)[1], atol=1e-6)
    np.testing.assert_allclose(flat_params(pop_a.params)[2], flat_params(pop_b.params)[0], atol=1e-6)


def test_same_structure_compiles_once(binary_data):
    search = {"learning_rate": [1e-3, 1e-2]}
    sweeps.run(binary_data, space=search, epochs=1)
    with log_compilations() as compiled:
        sweeps.run(binary_data, space={"learning_rate": [3e-3, 3e-2]}, epochs=2)
    assert compiled.count(EPOCH) == 0 and "jit(init_population)" not in compiled, compiled


def test_lr_sweep_on_churn_beats_majority_class(churn):
    result = sweeps.run(
        churn,
        space={"learning_rate": space.loguniform(1e-4, 1e-1)},
        strategy=sweeps.Grid(n=6),
        epochs=3,  # best val_accuracy 0.810 and val_auc 0.856 from the second epoch on (0.810 and 0.857 at 8)
        batch_size=32,
        objective="val_loss",
    )
    best = result.best("val_accuracy")
    majority = churn.majority_class_fraction
    print(
        f"best val_accuracy {best['best_val_accuracy']:.4f} (lr {best['params_learning_rate']:.2e}); "
        f"majority class {majority:.4f}"
    )
    assert majority == pytest.approx(0.735, abs=0.002)
    assert best["best_val_accuracy"] >= 0.78
    assert 0.8 < result.best()["best_val_auc"] <= 1.0


def test_top_learning_rates_diverge_and_are_results(binary_data):
    # two seeds: a population of 6, as in test_run_folder_round_trips (one program for both)
    result = sweeps.run(binary_data, space={"learning_rate": [1e-3, 1e3, 1e6]}, epochs=3, batch_size=32, seeds=2)
    for _, trials in result.table.groupby("seed"):
        states = dict(zip(trials["params_learning_rate"], trials["state"]))
        assert states == {1e-3: "complete", 1e3: "diverged", 1e6: "diverged"}
    assert result.best()["params_learning_rate"] == 1e-3
    diverged = result.table[result.table["state"] == "diverged"]
    assert (diverged["epochs"] < 3).all(), "a diverged member stops training"


def test_run_folder_round_trips(binary_data, tmp_path):
    result = sweeps.run(
        binary_data,
        space={"learning_rate": space.loguniform(1e-3, 1e-1)},
        strategy=sweeps.Grid(n=3),
        epochs=2,
        seeds=2,
        run_dir=tmp_path / "run",
    )
    for name in (
        "config.json",
        "table.parquet",
        "table.csv",
        "history.parquet",
        "history.csv",
        "plots/learning_curves.png",
        "plots/val_loss_vs_learning_rate.png",
    ):
        assert (tmp_path / "run" / name).is_file(), name
    loaded = sweeps.load_result(tmp_path / "run")
    assert len(loaded.table) == 6
    np.testing.assert_array_equal(loaded.table.columns, result.table.columns)
    np.testing.assert_allclose(loaded.table["value"], result.table["value"])
    assert loaded.history.equals(result.history)
    assert loaded.best()["number"] == result.best()["number"]
    for package in ("python", "jax", "flax", "optax"):
        assert loaded.config["versions"][package]
    summary = result.summary()
    assert len(summary) == 3 and (summary["seeds"] == 2).all()
    assert {"value_mean", "value_std", "best_val_accuracy_mean"} <= set(summary.columns)


def test_load_result_names_missing_files(tmp_path):
    with pytest.raises(ValueError, match="missing config.json"):
        sweeps.load_result(tmp_path)


def test_history_is_long_and_complete(binary_data):
    result = sweeps.run(binary_data, space={"learning_rate": [1e-3, 1e-2]}, epochs=3)
    h = result.history
    assert list(h.columns) == ["trial", "epoch", "split", "metric", "value"]
    assert set(h["metric"]) == {"loss", "accuracy", "auc"}
    assert len(h) == 2 * 3 * 4  # trials x epochs x (train loss + 3 val metrics)


def test_an_unusable_run_dir_is_refused_before_training(binary_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with log_compilations() as compiled, pytest.raises(ValueError, match="is a file; pass a folder path"):
        sweeps.run(binary_data, space={"learning_rate": [1e-3]}, epochs=1, run_dir=blocker)
    assert compiled.count(EPOCH) == 0


def test_divergence_is_judged_against_the_targets_own_scale():
    """An unstandardized regression target (from_arrays) must not make a sane trial look diverged."""
    data = synthetic("regression")
    scaled = sweeps.Dataset.from_arrays(
        data.x_train, 30.0 * data.y_train, data.x_val, 30.0 * data.y_val, task="regression"
    )
    result = sweeps.run(scaled, model=MLP(hidden=()), space={"learning_rate": [1e-2, 1e5]}, epochs=2)
    assert result.table["state"].tolist() == ["complete", "diverged"]


def test_a_strategy_of_the_users_own_runs_and_is_recorded(binary_data, tmp_path):
    class Halves(sweeps.Strategy):  # not a dataclass: the Strategy interface is only ask/tell
        def ask(self, search):
            return [{"learning_rate": 1e-3}, {"learning_rate": 5e-4}]

    result = sweeps.run(binary_data, strategy=Halves(), epochs=1, run_dir=tmp_path / "run")
    assert result.table["params_learning_rate"].tolist() == [1e-3, 5e-4]
    assert sweeps.load_result(tmp_path / "run").config["strategy"] == {"name": "halves"}


def test_a_strategy_asking_for_an_unknown_name_is_refused(binary_data):
    class Typo(sweeps.Strategy):
        def ask(self, search):
            return [{"learning_rat": 1e-3}]

    with pytest.raises(ValueError, match="unknown hyperparameter 'learning_rat'.*did you mean 'learning_rate'"):
        sweeps.run(binary_data, strategy=Typo(), epochs=1)
