"""The models a sweep keeps (issue 20, items 1, 3, 22): the table's best trials with their own best-epoch
weights, whatever the strategy copied or recycled; applied to one row or a wrong-width array; printed short."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweeps
from sweeps import space
from sweeps.engine.metrics import evaluate

from helpers import synthetic

KEEP = 3
# The validation metrics as one compiled program (the engine's own function, as its epoch runs it), not an eager
# compilation per operation
EVALUATE = jax.jit(evaluate, static_argnums=0)


@pytest.fixture(scope="module")
def data():
    return synthetic("binary", rows=300)


def table_top(result, k: int) -> list[int]:
    """The k best complete trials by the objective, ordered as `Result.best()` orders them (ties: lower number)."""
    table = result.table
    complete = table[(table["state"] == "complete") & table["value"].notna()]
    ranked = complete.sort_values("value", ascending=result.direction == "minimize", kind="stable")
    return [int(n) for n in ranked["number"].head(k)]


def assert_kept_models_are_the_tables(result, run_dir, data, top: list[int]) -> None:
    """The saved models are the trials `top` (best first), each one's own weights at the epoch the table calls
    its best; `load_model` without a trial is the trial `best()` names."""
    kept = [entry["trial"] for entry in result.config["models"]]
    assert kept == top, f"kept {kept}, but the table's best are {top}"
    rows = result.table.set_index("number")
    for number in kept:
        model = sweeps.load_model(run_dir, number)
        outputs = model.outputs(np.asarray(data.x_val))
        values = EVALUATE(data.task, jnp.asarray(outputs), jnp.asarray(data.y_val), jnp.float32(data.y_std))
        row = rows.loc[number]
        assert model.info["best_epoch"] == row["best_epoch"]
        assert float(values["loss"]) == pytest.approx(row["best_val_loss"], abs=1e-5), f"trial {number}"
        assert float(values["accuracy"]) == pytest.approx(row["best_val_accuracy"], abs=1e-6), f"trial {number}"
    assert sweeps.load_model(run_dir).trial == int(result.best()["number"])


# Populations of 4, as the seeds tests' chunks, and with early stopping 4 then 1 (`arrays_model`'s): few compiled
# programs. Each case keeps models that went through what its strategy does: PBT keeps trials whose weights it
# copied, refill trials trained in recycled slots, and halving (seed 9) two trials that stopped early at the
# rung (best epoch 1 of 2) and the one repacked from 4 members to 1 that trained on alone to epoch 4.
@pytest.mark.parametrize(
    ("strategy", "options"),
    [
        (sweeps.PBT(population=4, interval=1, seed=2), {"epochs": 4}),
        (sweeps.PBT(population=4, interval=2, seed=1), {"epochs": 6}),
        (sweeps.Halving(n=4, min_epochs=1, eta=2, refill=True, samples=9), {"epochs": 3}),
        (sweeps.Halving(n=4, min_epochs=2, eta=4, seed=9), {"epochs": 4, "early_stopping": {"patience": 1}}),
    ],
    ids=["pbt-every-epoch", "pbt", "halving-refill", "halving-early-stopping"],
)
def test_the_kept_models_are_the_tables_best_trials_with_their_own_weights(data, tmp_path, strategy, options):
    search = {"learning_rate": space.loguniform(1e-4, 1.0)}
    run_dir = tmp_path / "run"
    result = sweeps.run(
        data, space=search, strategy=copy.deepcopy(strategy), run_dir=run_dir, keep_models=KEEP, plots=False, **options
    )
    assert_kept_models_are_the_tables(result, run_dir, data, table_top(result, KEEP))


def config_top(result, k: int) -> list[int]:
    """With seeds: the best seed of each of the k best configurations, ranked as `Result.best()` ranks them
    (configurations none of whose seeds diverged first, then by the mean over the seeds)."""
    table = result.table
    ranking = table.groupby("config").agg(
        mean=("value", "mean"), failed=("state", lambda s: bool((s != "complete").any()))
    )
    ranking = ranking.sort_values(["failed", "mean"], ascending=[True, result.direction == "minimize"], kind="stable")
    complete = table[table["state"] == "complete"].sort_values("value", kind="stable")
    best_seed = complete.groupby("config")["number"].first()
    return [int(best_seed[c]) for c in ranking.index if c in best_seed.index][:k]


@pytest.mark.parametrize("lanes", [1, 2])
def test_with_seeds_the_kept_models_are_the_best_configurations_best_seeds(data, tmp_path, monkeypatch, lanes):
    """best() picks the configuration by its mean over seeds; its best seed is kept and is the default model,
    also when a configuration's seeds are cut into two chunks (max_population 4 over 3 seeds) trained in lanes."""
    monkeypatch.setenv("SWEEPS_LANES", str(lanes))
    run_dir = tmp_path / "run"
    search = {"learning_rate": space.loguniform(1e-3, 0.3)}
    result = sweeps.run(
        data,
        space=search,
        strategy=sweeps.Grid(n=6),
        seeds=3,
        epochs=3,
        max_population=4,
        run_dir=run_dir,
        keep_models=2,
        plots=False,
    )
    top = config_top(result, 2)
    assert top[0] == int(result.best()["number"]) and top != table_top(result, 2), "a case where the two differ"
    assert_kept_models_are_the_tables(result, run_dir, data, top)


def test_a_run_killed_while_a_configurations_seeds_are_split_over_chunks_keeps_the_same_models(
    data, tmp_path, monkeypatch
):
    """The configurations still waiting for seeds (and their best seed's weights) travel in the checkpoint."""
    from helpers import Stop, crash_after_saves

    monkeypatch.setenv("SWEEPS_LANES", "1")
    sweep = dict(
        space={"learning_rate": space.loguniform(1e-3, 0.3)},
        strategy=sweeps.Grid(n=4),  # 12 trials in chunks of 4: configuration 1 (trials 3-5) spans two
        seeds=3,
        epochs=2,
        max_population=4,
        keep_models=2,
        plots=False,
    )
    full = sweeps.run(data, run_dir=tmp_path / "full", **sweep)
    undo = crash_after_saves(monkeypatch, 3)  # in the second chunk: trial 3 done, trials 4 and 5 training
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=tmp_path / "run", checkpoint_every=1, **sweep)
    undo()
    resumed = sweeps.run(data, run_dir=tmp_path / "run", resume=True, checkpoint_every=1, **sweep)
    assert resumed.config["models"] == full.config["models"]
    for entry in full.config["models"]:
        a, b = sweeps.load_model(tmp_path / "full", entry["trial"]), sweeps.load_model(tmp_path / "run", entry["trial"])
        jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    assert_kept_models_are_the_tables(resumed, tmp_path / "run", data, config_top(resumed, 2))


def test_after_an_exploit_a_member_keeps_its_own_best_so_far(binary_data):
    """Copying a member moves its weights and optimizer state; the best-so-far follows the trial number."""
    from test_loop import epoch, population

    from sweeps.engine import edits

    structure, pop = population(binary_data, [1e-3, 3e-3, 1e-2, 3e-2])
    pop, _ = epoch(structure, binary_data, pop, 0)
    before = jax.device_get(pop)
    source = np.array([0, 1, 2, 0], np.int32)  # member 3 takes member 0's training state
    after = jax.device_get(edits.copy_members(pop, jnp.asarray(source)))
    np.testing.assert_array_equal(after.best_objective, before.best_objective)
    np.testing.assert_array_equal(after.best, before.best)
    np.testing.assert_array_equal(after.since_best, before.since_best)
    for a, b in zip(jax.tree.leaves(after.best_params), jax.tree.leaves(before.best_params)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(before.params)):
        np.testing.assert_array_equal(a[3], b[0])


def test_pbt_copies_only_from_members_that_train_on_and_never_after_the_last_epoch():
    """A source that diverged (or finished) would hand its copier a state the table does not record."""
    from test_population_strategies import view

    strategy = sweeps.PBT(population=4, interval=1, quantile=0.25, seed=0)
    strategy.ask({"learning_rate": space.loguniform(1e-4, 1e-1)})
    hparams = {"learning_rate": np.array([1e-3, 2e-3, 3e-3, 4e-3])}
    scores = [0.1, 0.2, 0.3, 0.9]
    decided = strategy.decide(view(scores, active=[False, True, True, True], hparams=hparams))
    assert decided.copy_from.tolist() == [0, 1, 2, 1], "member 0 scored best but trains no further"
    assert strategy.decide(view(scores, active=[False] * 4, hparams=hparams)) is None, "after the last epoch"


# --- item 3: one row as a 1-D array, a wrong number of columns; item 22: a short repr ------------------------


@pytest.fixture(scope="module")
def arrays_model(data, tmp_path_factory):
    """A model trained on arrays (8 features, binary); with early stopping, the halving case's last program."""
    run_dir = tmp_path_factory.mktemp("arrays") / "run"
    sweeps.run(
        data, space={"learning_rate": [1e-2]}, epochs=2, early_stopping={"patience": 1}, run_dir=run_dir, keep_models=1
    )
    return sweeps.load_model(run_dir)


@pytest.fixture(scope="module")
def frame_model(tmp_path_factory):
    """A model trained on a DataFrame with a text column: 2 numeric columns + 3 categories = 5 features."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"age": rng.normal(40, 10, 200), "income": rng.normal(5, 1, 200), "city": rng.choice(["a", "b", "c"], 200)}
    )
    frame["bought"] = np.where(frame["age"] + 5 * (frame["city"] == "a") > 42, "yes", "no")
    data = sweeps.load_csv(frame, target="bought")
    run_dir = tmp_path_factory.mktemp("frame") / "run"
    sweeps.run(data, space={"learning_rate": [1e-2]}, epochs=1, run_dir=run_dir, keep_models=1)
    return sweeps.load_model(run_dir), data, frame


def test_one_row_given_as_a_1d_array_is_one_prediction(arrays_model, data):
    x = np.asarray(data.x_val)
    assert arrays_model.predict(x[0]).shape == (1,)
    np.testing.assert_array_equal(arrays_model.predict(x[0]), arrays_model.predict(x[:1]))
    assert arrays_model.predict_proba(x[3]).shape == (1, 2)
    np.testing.assert_allclose(arrays_model.predict_proba(x[3]), arrays_model.predict_proba(x[3:4]), rtol=1e-6)


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_an_array_with_the_wrong_number_of_columns_is_refused_naming_both(arrays_model, method):
    with pytest.raises(ValueError, match=r"takes 8 features.*5 columns"):
        getattr(arrays_model, method)(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"takes 8 features.*9 values"):
        getattr(arrays_model, method)(np.zeros(9, np.float32))
    with pytest.raises(ValueError, match=r"one row \(features,\) or rows \(rows, features\).*\(2, 2, 2\)"):
        getattr(arrays_model, method)(np.zeros((2, 2, 2), np.float32))


def test_a_preprocessed_array_is_checked_against_the_encoded_width(frame_model):
    model, data, frame = frame_model
    assert data.n_features == 5
    with pytest.raises(ValueError, match=r"takes 5 features.*after preprocessing.*3 columns.*DataFrame or a CSV"):
        model.predict(frame[["age", "income"]].head(2).assign(more=1.0).to_numpy(np.float32))  # the raw columns
    np.testing.assert_array_equal(model.predict(np.asarray(data.x_val)[0]), model.predict(np.asarray(data.x_val)[:1]))
    assert len(model.predict(frame.head(4))) == 4  # a DataFrame still goes through the preprocessing


def test_a_trained_model_prints_in_one_short_line(arrays_model, frame_model):
    text = repr(arrays_model)
    assert "\n" not in text and len(text) < 200, text
    assert f"trial={arrays_model.trial}" in text and "MLP(hidden=[64], activation='relu')" in text
    assert "task='binary'" in text and "features=8" in text and "classes=2" in text
    assert "parameters=641" in text  # 8 * 64 + 64 + 64 + 1
    model, _, _ = frame_model
    assert "features=5" in repr(model) and "classes=2" in repr(model) and "array" not in repr(model)
