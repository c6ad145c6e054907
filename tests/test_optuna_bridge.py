"""The Optuna bridge: a finished sweep written into a real Optuna storage and read back through Optuna."""

import numpy as np
import optuna
import pytest
from servers import free_port, get_json, serving

import sweeps
from models import MLP
from sweeps import space
from sweeps.cli.main import main

from helpers import synthetic


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A sweep with a structural tuple axis, a fixed value, and diverged trials (the largest learning rate)."""
    run_dir = tmp_path_factory.mktemp("bridge") / "run"
    result = sweeps.run(
        synthetic("multiclass", rows=300),
        model=MLP(hidden=(6,)),
        space={
            "learning_rate": [1e-3, 1e-2, 3e3],
            "hidden": space.choice([(6,), (6, 4)]),
            "activation": "tanh",
        },
        strategy=sweeps.Grid(),
        epochs=3,
        run_dir=run_dir,
        keep_models=0,
    )
    return result, run_dir


def test_to_optuna_writes_every_trial_and_optuna_reads_back_the_same_sweep(finished, tmp_path):
    result, _ = finished
    storage = f"sqlite:///{tmp_path / 'optuna' / 'study.db'}"
    result.to_optuna(storage, study_name="bridge")
    study = optuna.load_study(study_name="bridge", storage=storage)
    table = result.table
    assert len(study.trials) == len(table) == 6 and study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.metric_names == ["val_loss"]
    best = result.best()
    assert study.best_trial.user_attrs["number"] == best["number"]
    assert study.best_value == pytest.approx(best["value"])
    assert study.best_params == {**result.best_params, "hidden": best["params_hidden"]}
    assert study.best_params["hidden"] in ("[6]", "[6, 4]")  # a tuple travels as the table's text
    history = result.history[(result.history["split"] == "val") & (result.history["metric"] == "loss")]
    for trial, row in zip(study.trials, table.to_dict(orient="records")):
        curve = history[history["trial"] == row["number"]]
        assert list(trial.intermediate_values) == curve["epoch"].tolist()
        np.testing.assert_allclose(list(trial.intermediate_values.values()), curve["value"], rtol=1e-12)
        expected = optuna.trial.TrialState.COMPLETE if row["state"] == "complete" else optuna.trial.TrialState.FAIL
        assert trial.state == expected
        assert trial.user_attrs["seed"] == row["seed"] and trial.user_attrs["best_epoch"] == row["best_epoch"]
        if row["state"] == "complete":
            assert trial.value == pytest.approx(row["value"])
            assert trial.user_attrs["best_val_accuracy"] == pytest.approx(row["best_val_accuracy"])
        else:
            assert trial.value is None  # diverged: failed, never a number
    assert (table["state"] == "diverged").any(), "the sweep has diverged trials to write as failed"
    assert isinstance(study.trials[0].distributions["hidden"], optuna.distributions.CategoricalDistribution)
    assert study.trials[0].distributions["learning_rate"].choices == (1e-3, 1e-2, 3e3)


def test_a_study_name_the_storage_holds_is_refused(finished, tmp_path):
    result, _ = finished
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result.to_optuna(storage, study_name="once")
    with pytest.raises(ValueError, match=r"already holds a study named 'once'; pass another study_name"):
        result.to_optuna(storage, study_name="once")


def test_sweeps_report_writes_an_optuna_study(finished, tmp_path, capsys):
    result, run_dir = finished
    storage = f"sqlite:///{tmp_path / 'report.db'}"
    assert main(["report", str(run_dir), "--optuna", storage]) == 0
    printed = capsys.readouterr().out
    assert f"6 trials written to study 'run' in {storage}" in printed
    assert f"optuna-dashboard {storage}" in printed
    study = optuna.load_study(study_name="run", storage=storage)
    assert study.best_trial.user_attrs["number"] == result.best()["number"]


def test_sweeps_export_writes_an_optuna_study_and_refuses_flags_of_other_trackers(finished, tmp_path, capsys):
    result, run_dir = finished
    storage = f"sqlite:///{tmp_path / 'export.db'}"
    assert main(["export", str(run_dir), "--to", "optuna", "--uri", storage, "--experiment", "exported"]) == 0
    assert f"6 trials written to study 'exported' in {storage}" in capsys.readouterr().out
    assert len(optuna.load_study(study_name="exported", storage=storage).trials) == 6
    assert main(["export", str(run_dir), "--to", "optuna", "--logdir", str(tmp_path)]) == 2
    assert "--logdir does not go with --to optuna" in capsys.readouterr().err


def test_without_optuna_the_bridge_says_how_to_install_it(finished, monkeypatch):
    import sys

    result, _ = finished
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r'Result.to_optuna needs Optuna.*pip install "sweepax\[bayes\]"'):
        result.to_optuna("sqlite:///never.db")


def test_optuna_dashboard_serves_every_trial_with_its_epochs_and_state(tmp_path):
    """A real optuna-dashboard on localhost, read through its HTTP API: every trial, its intermediate value per epoch
    and its state (halving's pruned trials as pruned, a diverged one as failed)."""
    result = sweeps.run(
        synthetic("binary", rows=300),
        space={"learning_rate": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e3]},
        strategy=sweeps.Halving(n=6, min_epochs=1, eta=2),
        epochs=3,
    )
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result.to_optuna(storage, study_name="halving")
    port = free_port()
    command = ["optuna-dashboard", storage, "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, f"http://127.0.0.1:{port}/api/studies") as url:
        (summary,) = get_json(url)["study_summaries"]
        study = get_json(f"{url}/{summary['study_id']}?after=0")
    assert summary["study_name"] == "halving" and summary["directions"] == ["minimize"]
    served = {int({a["key"]: a["value"] for a in t["user_attrs"]}["number"]): t for t in study["trials"]}
    assert len(served) == len(result.table) == 6
    states = {"complete": "Complete", "pruned": "Pruned", "diverged": "Fail"}
    history = result.history[(result.history["split"] == "val") & (result.history["metric"] == "loss")]
    for row in result.table.to_dict(orient="records"):
        trial = served[row["number"]]
        assert trial["state"] == states[row["state"]]
        curve = history[history["trial"] == row["number"]]
        steps = [(v["step"], v["value"]) for v in trial["intermediate_values"]]
        assert [s for s, _ in steps] == curve["epoch"].tolist()
        np.testing.assert_allclose([v for _, v in steps], curve["value"], rtol=1e-6)
    assert set(result.table["state"]) == {"complete", "pruned", "diverged"}
