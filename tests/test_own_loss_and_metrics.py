"""A loss and metrics of the user's own (issue 22): `sweeps.run(..., loss=fn, metrics={"name": sweeps.Metric(fn,
direction)})`. The loss trains each member as it would alone; a metric is computed in the compiled epoch, can be the
objective in its own direction (best epoch, best trial, kept model, the strategy); what cannot work is refused before
anything compiles; a run folder holding them is evidence that names them in its config.json, and nothing else."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

import sweeps
from models import MLP
from sweeps import space
from sweeps.driver.evidence import DamagedRunFolder
from sweeps.driver.populations import baseline_loss, controls_for, train_chunk
from sweeps.engine import flat_params

from helpers import EPOCH, log_compilations, synthetic, train_alone

SEED = 4
SMALL = MLP(hidden=(8,))


def bce(outputs, y):
    """The binary task's own loss, written anew: a function of the user's, computing the same numbers."""
    return optax.sigmoid_binary_cross_entropy(outputs[:, 0], y)


def huber(outputs, y):
    return optax.huber_loss(outputs[:, 0], y, delta=0.5)


def f1(outputs, y):
    """F1 of the positive class at logit 0, 0 where nothing is predicted or present."""
    predicted, actual = outputs[:, 0] > 0, y > 0.5
    tp = jnp.sum(predicted & actual)
    return 2.0 * tp / jnp.maximum(jnp.sum(predicted) + jnp.sum(actual), 1)


def f1_numpy(outputs: np.ndarray, y: np.ndarray) -> float:
    predicted, actual = outputs[:, 0] > 0, y > 0.5
    return 2.0 * np.sum(predicted & actual) / max(np.sum(predicted) + np.sum(actual), 1)


@pytest.fixture(scope="module")
def data():
    return synthetic("binary", rows=300)


def test_a_loss_equal_to_the_tasks_gives_the_same_sweep_and_is_part_of_the_program(data):
    settings = {"model": SMALL, "space": {"learning_rate": [1e-2, 3e-2]}, "epochs": 2}
    default = sweeps.run(data, **settings)
    with log_compilations() as compiled:
        own = sweeps.run(data, loss=bce, **settings)
    assert compiled.count(EPOCH) == 1, "another loss is another program (the structure key holds the function)"
    pd.testing.assert_frame_equal(own.table, default.table)
    pd.testing.assert_frame_equal(own.history, default.history)
    assert own.config["loss"] == f"{__name__}:bce" and "loss" not in default.config, "recorded when given"
    (group,) = sweeps.dry_run(data, loss=bce, **settings).groups
    assert group.structure.loss is bce and group.structure.metrics == ()


def test_a_member_trained_on_its_own_loss_equals_it_trained_alone_with_flax_and_optax():
    data = synthetic("regression", rows=200)
    plan = sweeps.dry_run(data, model=SMALL, loss=huber, space={"learning_rate": [1e-2, 3e-2]}, epochs=2)
    (group,) = plan.groups
    (chunk,) = group.chunks
    pop, _ = train_chunk(group.structure, chunk, group.chunk_size, data, SEED, None, controls_for(data, None, None))
    vmapped = flat_params(pop.params)
    for i, trial in enumerate(chunk):
        alone = train_alone(data, trial.hparams, trial.seed, SEED, loss=huber)
        error = float(np.abs(vmapped[i] - alone).max())
        assert error <= 1e-5, f"trial {trial.number}: max |vmapped - alone| = {error:.2e}"
    # the divergence limit is in the loss's own unit: its value at zero outputs
    start = float(np.mean(np.asarray(huber(jnp.zeros((data.n_train, 1)), jnp.asarray(data.y_train)))))
    assert baseline_loss(data, huber) == pytest.approx(start) and start < baseline_loss(data)
    assert float(controls_for(data, None, 10.0, huber).divergence_limit) == pytest.approx(10.0 * start)


@pytest.fixture(scope="module")
def f1_run(data, tmp_path_factory):
    """Successive halving by a metric of the user's own, maximized: 4 trials, half pruned after epoch 1."""
    run_dir = tmp_path_factory.mktemp("own_metric") / "run"
    result = sweeps.run(
        data,
        model=SMALL,
        metrics={"f1": sweeps.Metric(f1, "maximize")},
        objective="val_f1",
        space={"learning_rate": space.loguniform(1e-3, 1e-1)},
        strategy=sweeps.Halving(n=4, min_epochs=1, eta=2, seed=1),
        epochs=2,
        keep_models=2,
        plots=False,
        run_dir=run_dir,
    )
    return result, run_dir


def test_a_metric_of_your_own_is_computed_and_maximized_as_the_objective(data, f1_run):
    result, run_dir = f1_run
    table, history = result.table, result.history
    assert result.direction == "maximize" and result.config["direction"] == "maximize"
    assert result.config["metrics"] == {"f1": {"function": f"{__name__}:f1", "direction": "maximize"}}
    assert {"best_val_f1", "final_val_f1", "best_val_auc"} <= set(table.columns)
    curves = history[(history["split"] == "val") & (history["metric"] == "f1")]
    for row in table.itertuples():  # best epoch: the first of the largest values
        curve = curves[curves["trial"] == row.number].sort_values("epoch")["value"].to_numpy()
        assert row.best_epoch == int(np.argmax(curve)) + 1 and row.value == curve.max() == row.best_val_f1
    # the halving rung kept the two of the largest F1 at epoch 1
    first = curves[curves["epoch"] == 1].set_index("trial")["value"]
    pruned = table.loc[table["state"] == "pruned", "number"]
    assert len(pruned) == 2 and first.drop(pruned).min() >= first[pruned].max()
    complete = table[table["state"] == "complete"]
    best = result.best()
    assert best["value"] == complete["value"].max(), "the best trial is the one of the largest F1"
    assert best["number"] == complete.loc[complete["value"].idxmax(), "number"]
    # the kept model is the best trial at its best epoch: its F1, computed with numpy on its validation outputs
    model = sweeps.load_model(run_dir)
    assert model.trial == best["number"]
    outputs = model.outputs(np.asarray(data.x_val))
    assert f1_numpy(outputs, np.asarray(data.y_val)) == pytest.approx(best["best_val_f1"], abs=1e-6)
    assert model.info["metrics"]["best_val_f1"] == best["best_val_f1"]


def test_a_run_folder_names_only_the_metrics_its_config_records(f1_run, tmp_path, capsys):
    from sweeps.cli.main import main

    _, run_dir = f1_run
    assert main(["report", str(run_dir)]) == 0
    assert "val_f1" in capsys.readouterr().out
    loaded = sweeps.load_result(run_dir)
    assert loaded.direction == "maximize" and loaded.best()["number"] == f1_run[0].best()["number"]
    optuna = pytest.importorskip("optuna")
    study = loaded.to_optuna(f"sqlite:///{tmp_path / 'optuna.db'}")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.best_trial.user_attrs["number"] == loaded.best()["number"]

    edited = tmp_path / "edited"
    shutil.copytree(run_dir, edited)
    history = pd.read_parquet(edited / "history.parquet")
    history.loc[history["metric"] == "f1", "metric"] = "f2"
    history.to_parquet(edited / "history.parquet", index=False)
    with pytest.raises(DamagedRunFolder, match=r"records the metric 'val'/'f2', which sweepax never writes"):
        sweeps.load_result(edited)

    shutil.copytree(run_dir, edited, dirs_exist_ok=True)
    config = json.loads((edited / "config.json").read_text())
    config["metrics"]["f1"]["direction"] = "sideways"
    (edited / "config.json").write_text(json.dumps(config))
    with pytest.raises(DamagedRunFolder, match=r"config\.json \(metrics\) records 'f1'.*edited or damaged"):
        sweeps.load_result(edited)
    del config["metrics"]
    (edited / "config.json").write_text(json.dumps(config))
    with pytest.raises(DamagedRunFolder, match=r"names the metric 'val_f1', which sweepax never writes"):
        sweeps.load_result(edited)


def mean_bce(outputs, y):
    return jnp.mean(bce(outputs, y))


def f1_per_row(outputs, y):
    return (outputs[:, 0] > 0) == (y > 0.5)


def branching(outputs, y):
    return jnp.float32(1.0) if float(jnp.mean(outputs)) > 0 else jnp.float32(0.0)


REFUSALS = {
    "plain function": ({"metrics": {"f1": f1}}, r'not a sweeps\.Metric.*pass sweeps\.Metric\(f1, "maximize"\)'),
    "task's name": ({"metrics": {"auc": sweeps.Metric(f1, "maximize")}}, r"'auc' is one of sweeps' own metrics"),
    "not an identifier": ({"metrics": {"f-1": sweeps.Metric(f1, "maximize")}}, r"'f-1' is not a Python identifier"),
    "split prefix": ({"metrics": {"val_f1": sweeps.Metric(f1, "maximize")}}, r"name it 'f1' \(recorded as val_f1\)"),
    "loss not per example": (
        {"loss": mean_bce},
        r"loss .*mean_bce returns shape \(\) float32 .* shape \(3,\).*return the per-example losses, not their mean",
    ),
    "loss not a function": ({"loss": "huber"}, r"loss must be a function loss\(outputs, targets\)"),
    "metric not a number": (
        {"metrics": {"hits": sweeps.Metric(f1_per_row, "maximize")}},
        r"metric 'hits' .* returns shape \(60,\) bool .* shape \(\): reduce it over the rows",
    ),
    "metric not traceable": (
        {"metrics": {"sign": sweeps.Metric(branching, "maximize")}},
        r"metric 'sign' .* cannot be traced.*jnp\.where",
    ),
    "unknown objective": (
        {"metrics": {"f1": sweeps.Metric(f1, "maximize")}, "objective": "val_f2"},
        r"objective 'val_f2' is not computed for a binary task; choose one of .*'val_f1'\]",
    ),
    "unknown stop metric": (
        {"metrics": {"f1": sweeps.Metric(f1, "maximize")}, "early_stopping": {"metric": "f1"}},
        r"early_stopping metric 'f1' is not computed.*'val_f1'",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_loss_or_metric_that_cannot_work_is_refused_before_anything_compiles(data, case):
    settings, message = REFUSALS[case]
    with log_compilations() as compiled, pytest.raises((ValueError, TypeError), match=message):
        sweeps.dry_run(data, model=SMALL, space={"learning_rate": [1e-3]}, **settings)
    assert compiled.count(EPOCH) == 0


def test_a_metric_without_one_of_the_two_directions_is_refused():
    with pytest.raises(ValueError, match=r"direction must be 'maximize' or 'minimize', but got direction='max'"):
        sweeps.Metric(f1, "max")
    with pytest.raises(TypeError, match=r"Metric\(fn, direction\) takes a function"):
        sweeps.Metric("f1", "maximize")
    plan = sweeps.dry_run(
        synthetic("binary", rows=100),
        model=SMALL,
        metrics={"f1": sweeps.Metric(f1, "maximize")},
        early_stopping={"metric": "val_f1", "patience": 2},
        objective="val_f1",
    )
    assert plan.plan.config.direction("val_f1") == "maximize" and plan.plan.config.direction("val_loss") == "minimize"
