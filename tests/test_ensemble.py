"""The ensemble the sweep already trained (issue 24, item 5): `sweeps.load_model(run_dir, top=k)` averages the k best
saved trials' probabilities (or values), its outputs score through the engine's own `evaluate` as config.json's
"ensemble" entry records them, `sweeps predict --top K` writes what one model's predict writes.

Real runs, few and small, each shared by the tests that read it: a binary sweep of a small CSV (two widths x three
learning rates, with a test split; `sweeps predict` reads the same CSV), a multiclass PBT sweep (its members copy
weights) and a regression sweep.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from test_trained import table_top

import sweeps
from sweeps import space
from sweeps.cli.main import main
from sweeps.cli.summary import summary_lines
from sweeps.driver.evidence import DamagedRunFolder, check_result
from sweeps.engine.metrics import evaluate
from sweeps.results.ensemble import ensemble_outputs

EVALUATE = jax.jit(evaluate, static_argnums=(0, 4, 5))  # the engine's metrics, compiled as `sweeps.run` scores


def arrays(task: str, rows: int = 400, features: int = 6, classes: int = 3, seed: int = 0) -> sweeps.Dataset:
    """A learnable data set split 60/20/20 into train, validation and test rows."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    logits = x @ rng.normal(size=(features, classes)) + 0.5 * rng.normal(size=(rows, classes))
    y = {
        "binary": lambda: (logits[:, 0] > 0).astype(np.float32),
        "multiclass": lambda: logits.argmax(1),
        "regression": lambda: 3.0 * logits[:, 0] + 10.0,
    }[task]()
    return sweeps.Dataset.from_arrays(x, y, task=task, val_fraction=0.2, test_fraction=0.2, seed=0)


def run(data, run_dir, **options):
    return sweeps.run(data, run_dir=run_dir, epochs=2, batch_size=64, plots=False, **options)


@pytest.fixture(scope="module")
def rows_csv(tmp_path_factory):
    """400 rows of a CSV: two numbers, a text column and a yes/no target (what `sweeps predict` reads)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400), "city": rng.choice(["x", "y"], 400)})
    score = frame["a"] - frame["b"] + (frame["city"] == "x") + rng.normal(size=400)
    frame["bought"] = np.where(score > 0.5, "yes", "no")
    path = tmp_path_factory.mktemp("rows") / "rows.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def binary(rows_csv, tmp_path_factory):
    """6 trials on the CSV: widths (8,) and (16, 8) x 3 learning rates; the 5 best are kept."""
    data = sweeps.load_csv(rows_csv, target="bought", val_fraction=0.2, test_fraction=0.2)
    run_dir = tmp_path_factory.mktemp("binary") / "run"
    search = {"learning_rate": [3e-3, 3e-2, 1e-1], "hidden": [(8,), (16, 8)]}
    return data, run_dir, run(data, run_dir, space=search)


@pytest.fixture(scope="module")
def multiclass_pbt(tmp_path_factory):
    """PBT over 4 members, exploiting every epoch: kept trials whose weights it copied."""
    data = arrays("multiclass")
    run_dir = tmp_path_factory.mktemp("pbt") / "run"
    strategy = sweeps.PBT(population=4, interval=1, seed=2)
    result = run(data, run_dir, space={"learning_rate": space.loguniform(1e-3, 0.3)}, strategy=strategy, keep_models=3)
    return data, run_dir, result


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    """3 learning rates, with a loss and a metric of the user's own (the ensemble is scored with them too)."""
    data = arrays("regression")
    run_dir = tmp_path_factory.mktemp("regression") / "run"
    own = {"bias": sweeps.Metric(mean_error, "minimize")}
    search = {"learning_rate": [1e-2, 3e-2, 1e-1]}
    return data, run_dir, run(data, run_dir, space=search, loss=absolute_error, metrics=own, keep_models=3)


def absolute_error(outputs, y):
    return jnp.abs(outputs[:, 0] - y)


def mean_error(outputs, y):
    return jnp.mean(outputs[:, 0] - y)


def saved_trials(run_dir) -> list[int]:
    return [entry["trial"] for entry in json.loads((run_dir / "models" / "models.json").read_text())["trials"]]


def scored(task, model, x, y, y_std) -> dict[str, float]:
    """`model`'s outputs on (x, y) through the engine's metrics, as `sweeps.run` scores them at its end."""
    values = EVALUATE(task, np.asarray(model.outputs(x)), np.asarray(y), np.float32(y_std), None, ())
    return {k: float(v) for k, v in values.items()}


def test_the_ensemble_averages_its_members_probabilities_whatever_their_widths(binary):
    data, run_dir, result = binary
    ensemble = sweeps.load_model(run_dir, top=5)
    assert ensemble.trials == saved_trials(run_dir) == table_top(result, 5)
    assert [m.trial for m in ensemble.members] == ensemble.trials
    widths = {tuple(m.info["structure"]["hidden"]) for m in ensemble.members}
    assert widths == {(8,), (16, 8)}, "members of both widths"
    x = np.asarray(data.x_test)
    members = [m.predict_proba(x) for m in ensemble.members]
    np.testing.assert_array_equal(ensemble.predict_proba(x), np.mean(members, axis=0))
    labels = np.asarray(ensemble.class_names)[ensemble.predict_proba(x).argmax(1)]
    np.testing.assert_array_equal(ensemble.predict(x), labels)
    # the outputs are the logits of the averaged probability: sigmoid gives it back
    outputs = ensemble.outputs(x)
    assert outputs.shape == (len(x), 1) and outputs.dtype == np.float32 and np.isfinite(outputs).all()
    np.testing.assert_allclose(1 / (1 + np.exp(-outputs[:, 0].astype(np.float64))), np.mean(members, 0)[:, 1], 1e-6)
    assert ensemble.predict(x[0]).shape == (1,), "one row as (features,), as a TrainedModel takes it"
    text = repr(ensemble)
    assert text == f"Ensemble(top=5, trials={ensemble.trials}, task='binary', classes=2)"


def test_config_json_records_the_ensembles_scores_as_evaluate_gives_them_beside_the_best_trials(binary):
    data, run_dir, result = binary
    recorded = json.loads((run_dir / "config.json").read_text())["ensemble"]
    assert recorded == result.config["ensemble"]
    ensemble = sweeps.load_model(run_dir, top=5)
    assert recorded["trials"] == ensemble.trials
    val = scored("binary", ensemble, np.asarray(data.x_val), data.y_val, data.y_std)
    test = scored("binary", ensemble, np.asarray(data.x_test), data.y_test, data.y_std)
    expected = {f"val_{k}": v for k, v in val.items()} | {f"test_{k}": v for k, v in test.items()}
    assert {k: v for k, v in recorded.items() if k not in ("trials", "best_trial")} == expected
    assert list(recorded)[:4] == ["trials", "val_loss", "val_accuracy", "val_auc"], "the task's order, loss first"
    best = sweeps.load_model(run_dir)
    best_val = scored("binary", best, np.asarray(data.x_val), data.y_val, data.y_std)
    assert recorded["best_trial"] == {"trial": best.trial, **{f"val_{k}": v for k, v in best_val.items()}}
    row = result.table.set_index("number").loc[best.trial]
    assert recorded["best_trial"]["val_loss"] == pytest.approx(row["best_val_loss"], abs=1e-5), "as the sweep saw it"
    assert result.config["test_metrics"]["trial"] == best.trial
    # the run folder loads again with the new key, and the summary shows it beside the best trial
    lines = "\n".join(summary_lines(sweeps.load_result(run_dir)))
    trials = ", ".join(str(t) for t in ensemble.trials)
    assert f"ensemble of the top 5 (trials {trials})" in lines
    assert f"val_loss {recorded['val_loss']:.4g} (best trial {recorded['best_trial']['val_loss']:.4g})" in lines
    shown_test = result.config["test_metrics"]["test_loss"]
    assert f"test_loss {recorded['test_loss']:.4g} (best trial {shown_test:.4g})" in lines


def test_a_damaged_ensemble_entry_is_named(binary):
    _, run_dir, result = binary
    for damaged in ({"trials": "6"}, {"trials": [1], "val_nonsense": 0.1}, {"trials": [1], "val_loss": "low"}):
        with pytest.raises(DamagedRunFolder, match=r"config.json \(ensemble\)"):
            check_result({**result.config, "ensemble": damaged}, result.table, result.history, run_dir)


def test_top_1_predicts_as_the_best_model(binary):
    data, run_dir, _ = binary
    one, best = sweeps.load_model(run_dir, top=1), sweeps.load_model(run_dir)
    assert one.trials == [best.trial]
    x = np.asarray(data.x_test)
    np.testing.assert_array_equal(one.predict(x), best.predict(x))
    np.testing.assert_array_equal(one.predict_proba(x), best.predict_proba(x))
    np.testing.assert_allclose(one.outputs(x), best.outputs(x), rtol=1e-6, atol=1e-6)


def test_top_is_checked_and_refused_with_the_rule_and_the_value(binary):
    _, run_dir, _ = binary
    with pytest.raises(ValueError, match=r"top=6, but .* holds 5 saved trials .* pass top <= 5.*keep_models"):
        sweeps.load_model(run_dir, top=6)
    with pytest.raises(ValueError, match=r"trial= .* or top= .* not both: got trial=3, top=2"):
        sweeps.load_model(run_dir, trial=3, top=2)
    for wrong in (0, -1):
        with pytest.raises(ValueError, match=rf"top must be >= 1 .* top={wrong}"):
            sweeps.load_model(run_dir, top=wrong)
    for wrong in (2.0, True, "two"):
        with pytest.raises(TypeError, match=r"top must be how many of the best saved trials"):
            sweeps.load_model(run_dir, top=wrong)
    assert sweeps.load_model(run_dir, top="2").trials == saved_trials(run_dir)[:2], "a command line's digits"


def test_an_ensemble_of_a_pbt_run_is_its_tables_top_trials_and_averages_multiclass_probabilities(multiclass_pbt):
    data, run_dir, result = multiclass_pbt
    assert result.history["metric"].eq("parent").any(), "PBT copied weights in this run"
    ensemble = sweeps.load_model(run_dir, top=3)
    assert ensemble.trials == table_top(result, 3) == result.config["ensemble"]["trials"]
    x = np.asarray(data.x_test)
    members = np.mean([m.predict_proba(x) for m in ensemble.members], axis=0)
    np.testing.assert_array_equal(ensemble.predict_proba(x), members)
    outputs = ensemble.outputs(x).astype(np.float64)  # log p: softmax gives p back
    np.testing.assert_allclose(np.exp(outputs), members, rtol=1e-5, atol=1e-7)
    val = scored("multiclass", ensemble, np.asarray(data.x_val), data.y_val, data.y_std)
    assert result.config["ensemble"]["val_accuracy"] == val["accuracy"]
    assert result.config["ensemble"]["val_loss"] == val["loss"]


def test_a_regression_ensemble_averages_the_members_values(regression):
    data, run_dir, result = regression
    ensemble = sweeps.load_model(run_dir, top=3)
    x = np.asarray(data.x_test)
    np.testing.assert_allclose(ensemble.predict(x), np.mean([m.predict(x) for m in ensemble.members], 0), rtol=1e-12)
    np.testing.assert_allclose(ensemble.outputs(x), np.mean([m.outputs(x) for m in ensemble.members], 0), rtol=1e-6)
    with pytest.raises(ValueError, match="predict_proba is for classification"):
        ensemble.predict_proba(x)
    assert "task='regression'" in repr(ensemble) and "classes" not in repr(ensemble)
    # scored with the user's loss and metric, as test_metrics scores the best model
    own = (("bias", mean_error, "minimize"),)
    test = EVALUATE(
        "regression", ensemble.outputs(x), np.asarray(data.y_test), np.float32(data.y_std), absolute_error, own
    )
    recorded = result.config["ensemble"]
    assert [k for k in recorded if k.startswith("test_")] == ["test_loss", "test_rmse", "test_mae", "test_bias"]
    assert {k: recorded[f"test_{k}"] for k in test} == {k: float(v) for k, v in test.items()}
    assert list(recorded["best_trial"]) == ["trial", "val_loss", "val_rmse", "val_mae", "val_bias"]
    assert list(result.config["test_metrics"]) == ["trial", "test_loss", "test_rmse", "test_mae", "test_bias"]
    assert sweeps.load_result(run_dir).config["ensemble"] == recorded, "the run folder loads again with its own metric"


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_ensemble_outputs_of_confident_members_stay_finite_and_exact(task):
    """Members far past float32's sigmoid saturation (a logit of 40: 1 - p rounds to 0 in float32) still give an
    ensemble logit that is their log-probability mean, not an infinity."""
    z = np.array([[[40.0, -3.0, 0.0], [-200.0, 1.0, 2.0]], [[38.0, 4.0, -1.0], [-210.0, 0.0, 2.0]]], np.float32)
    if task == "binary":
        z = z[..., :1]
    elif task == "regression":
        z = z[..., :1] / 10
    out = ensemble_outputs(task, z).astype(np.float64)
    assert out.shape == z.shape[1:] and np.isfinite(out).all()
    if task == "binary":  # both members near certain: log(p / (1 - p)) with 1 - p ~ (e^-40 + e^-38) / 2, to float32
        np.testing.assert_allclose(out[0, 0], -np.log((np.exp(-40.0) + np.exp(-38.0)) / 2), rtol=1e-7)
        np.testing.assert_allclose(out[1, 0], np.log((np.exp(-200.0) + np.exp(-210.0)) / 2), rtol=1e-7)
    elif task == "multiclass":
        p = np.exp(z - z.max(-1, keepdims=True), dtype=np.float64)  # e^-212: no float32 holds it, float64 does
        np.testing.assert_allclose(out, np.log((p / p.sum(-1, keepdims=True)).mean(0)), rtol=2e-7, atol=1e-12)
    else:
        np.testing.assert_allclose(out, z.mean(0), rtol=1e-6)


def test_sweeps_predict_top_writes_the_ensembles_predictions_as_one_model_writes_its_own(binary, rows_csv, tmp_path):
    _, run_dir, _ = binary
    one, three = tmp_path / "one.csv", tmp_path / "three.csv"
    assert main(["predict", str(run_dir), str(rows_csv), "--out", str(one)]) == 0
    assert main(["predict", str(run_dir), str(rows_csv), "--top", "3", "--out", str(three)]) == 0
    single, averaged = pd.read_csv(one), pd.read_csv(three)
    assert list(averaged.columns) == list(single.columns) == ["prediction", "p_no", "p_yes"]
    ensemble = sweeps.load_model(run_dir, top=3)
    np.testing.assert_allclose(averaged[["p_no", "p_yes"]].to_numpy(), ensemble.predict_proba(rows_csv), rtol=1e-6)
    assert averaged["prediction"].tolist() == ensemble.predict(rows_csv).tolist()


def test_sweeps_predict_refuses_top_with_trial_and_a_top_past_the_saved(binary, rows_csv, tmp_path, capsys):
    _, run_dir, _ = binary
    argv = ["predict", str(run_dir), str(rows_csv), "--top", "2", "--trial", "1", "--out", str(tmp_path / "p")]
    assert main(argv) == 2
    assert "--trial 1 predicts with one saved model and --top 2 with the 2 best averaged" in capsys.readouterr().err
    assert main(["predict", str(run_dir), str(rows_csv), "--top", "9", "--out", str(tmp_path / "p")]) == 2
    assert "top=9, but" in capsys.readouterr().err
