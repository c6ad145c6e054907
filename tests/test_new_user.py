"""What a new user hit (issue 9): dry runs without a folder, settings that do nothing, common random
numbers, the best configuration over seeds, messages that name their source, the regression baseline."""

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from test_cli import CHURN, run_cli, write_config

import sweeps
from sweeps import space

# --- 1: a dry run needs no [run] dir --------------------------------------------------------


def test_dry_run_without_a_run_section_prints_the_plan(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path)
    assert "[run]" not in config.read_text()
    code, out, err = run_cli(["run", config, "--dry-run"])
    assert code == 0, err
    assert "4 trials in 1 structure groups" in out and "dry run: nothing trained, nothing written" in out
    code, out, err = run_cli(["run", config, "--dry-run", "--out", tmp_path / "elsewhere"])
    assert code == 0, err
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "runs").exists()


# --- 4: settings that do nothing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("search", "optimizer", "message"),
    [
        ({"b1": [0.8, 0.9]}, "sgd", r"b1 is set but no trial reads it: optimizer sgd .*b1 is read by adam, adamw"),
        ({"momentum": [0.5, 0.9]}, "adam", r"momentum is set but no trial reads it.*read by momentum, nesterov"),
        ({"warmup_fraction": space.uniform(0.0, 0.3)}, "adam", r"warmup_fraction is set but no trial reads it"),
        ({"decay_rate": [0.5, 0.9], "schedule": "cosine"}, "adam", r"decay_rate .*read by exponential"),
    ],
)
def test_a_swept_hyperparameter_no_trial_reads_is_refused(binary_data, search, optimizer, message):
    with pytest.raises(ValueError, match=message):
        sweeps.dry_run(binary_data, space=search, optimizer=optimizer, strategy=sweeps.Grid(n=2))


def test_a_fixed_value_nobody_reads_is_warned_about(binary_data):
    with pytest.warns(UserWarning, match=r"b1 is set but no trial reads it.*its value is ignored"):
        sweeps.dry_run(binary_data, space={"b1": 0.8, "learning_rate": [1e-3]}, optimizer="sgd")


def test_conditional_hyperparameters_leave_empty_cells_and_train_no_duplicates(binary_data):
    search = {"optimizer": ["sgd", "momentum"], "momentum": [0.5, 0.9], "learning_rate": [1e-2]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # momentum is read by some trials: no warning
        result = sweeps.run(binary_data, space=search, epochs=1)
    table = result.table
    assert table["params_optimizer"].tolist() == ["sgd", "momentum", "momentum"], "sgd trains once, not per momentum"
    assert pd.isna(table.loc[0, "params_momentum"]) and table["params_momentum"].tolist()[1:] == [0.5, 0.9]


# --- 6: common random numbers -------------------------------------------------------------------

# The sweeps of 6, about keys and order and not about optimizers, train with momentum as the conditional test's
# momentum group does: populations of 2 and 4 of one structure, few compiled programs for the whole file.


def test_identical_hyperparameters_give_identical_rows(binary_data):
    class Twice(sweeps.Strategy):
        def ask(self, search):
            # four trials, as the other sweeps here: one compiled program serves them all
            return [{"learning_rate": 1e-2}, {"learning_rate": 3e-2}, {"learning_rate": 1e-2}, {"learning_rate": 3e-2}]

    table = sweeps.run(binary_data, strategy=Twice(), epochs=2, optimizer="momentum").table
    metrics = [c for c in table.columns if c.startswith(("best_", "final_")) or c == "value"]
    pd.testing.assert_series_equal(table.loc[0, metrics], table.loc[2, metrics], check_names=False)
    per_trial = sweeps.run(binary_data, strategy=Twice(), epochs=2, optimizer="momentum", init="per_trial").table
    assert per_trial.loc[0, "value"] != per_trial.loc[2, "value"], "per-trial keys: a new initialisation each"


def test_results_do_not_depend_on_order_chunking_or_grouping(binary_data):
    rates = [1e-3, 3e-3, 1e-2, 3e-2]
    forward = sweeps.run(binary_data, space={"learning_rate": rates}, epochs=2, optimizer="momentum").table
    backward = sweeps.run(
        binary_data, space={"learning_rate": rates[::-1]}, epochs=2, optimizer="momentum", max_population=3
    ).table
    backward = backward.iloc[::-1].reset_index(drop=True)
    for column in ("params_learning_rate", "value", "best_val_loss", "final_train_loss"):
        np.testing.assert_allclose(forward[column], backward[column], rtol=1e-5)
    search = {"learning_rate": rates, "batch_size": [32, 64]}
    mixed = sweeps.run(binary_data, space=search, epochs=2, optimizer="momentum").table
    same = mixed[mixed["params_batch_size"] == 32].reset_index(drop=True)
    np.testing.assert_allclose(same["value"], forward["value"], rtol=1e-5)


def test_seeds_share_their_initialisations_across_configurations(binary_data):
    search = {"learning_rate": [1e-4, 1e-4 * (1 + 1e-7)]}
    table = sweeps.run(binary_data, space=search, seeds=2, epochs=1, optimizer="momentum").table
    # nearly equal rates: same seed index -> nearly equal results; different seed index -> different ones
    assert abs(table.loc[0, "value"] - table.loc[2, "value"]) < 1e-5
    assert abs(table.loc[0, "value"] - table.loc[1, "value"]) > 1e-5


# --- 7: with seeds, the best configuration by its mean ------------------------------------


def test_best_picks_the_configuration_by_its_mean_over_seeds():
    rows = []
    for config, values in enumerate([[0.30, 0.50, 0.50], [0.35, 0.36, 0.37]]):
        for seed, v in enumerate(values):
            rows.append(
                {
                    "number": 3 * config + seed,
                    "config": config,
                    "seed": seed,
                    "params_learning_rate": [1e-3, 1e-2][config],
                    "state": "complete",
                    "best_epoch": 1,
                    "value": v,
                    "best_val_loss": v,
                }
            )
    result = sweeps.Result(table=pd.DataFrame(rows), history=pd.DataFrame(), config={"objective": "val_loss"})
    assert result.best()["config"] == 1 and result.best()["number"] == 3, "the lucky seed 0.30 does not decide"
    assert result.best_params == {"learning_rate": 1e-2}
    assert result.summary()["config"].tolist() == [1, 0]


def test_the_cli_names_the_best_configuration_by_its_mean(tmp_path):
    config = write_config(tmp_path, extra="seeds = 2\n")  # 2 configurations x 2 seeds: conftest's run's program
    code, out, err = run_cli(["run", config, "--set", "strategy.n=2", "--out", tmp_path / "run"])
    assert code == 0, err
    result = sweeps.load_result(tmp_path / "run")
    best = result.best()
    assert "best configuration: learning_rate " in out and "over 2 seeds" in out
    assert f"its best seed: trial {best['number']}" in out
    first_ranked = out.split("configurations by mean")[1].splitlines()[2].split()[0]
    assert float(first_ranked) == pytest.approx(best["params_learning_rate"], rel=1e-3)


# --- 15: messages name their source --------------------------------------------------------------


def test_a_bad_override_is_named_not_the_file(tmp_path):
    config = write_config(tmp_path)
    code, _, err = run_cli(["run", config, "--set", "model.hidden=wide", "--dry-run"])
    assert code == 2 and "in --set model.hidden=wide" in err and "small.toml" not in err


def test_a_bad_value_is_refused_before_the_banner(tmp_path):
    config = write_config(tmp_path)
    code, out, err = run_cli(["run", config, "--set", 'train.epochs="ten"', "--out", tmp_path / "run"])
    assert code == 2 and "epochs must be an integer >= 1" in err
    assert "sweep:" not in out and not (tmp_path / "run").exists()


def test_report_names_a_missing_folder_and_a_damaged_config(tmp_path, finished_cli_run):
    code, _, err = run_cli(["report", tmp_path / "nonexist"])
    assert code == 2 and "does not exist" in err
    _, finished, code, _, err = finished_cli_run  # a copy of conftest's small finished run
    assert code == 0, err
    shutil.copytree(finished, tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text("{not json")
    code, _, err = run_cli(["report", tmp_path / "run"])
    assert code == 2 and "config.json is damaged" in err


# --- 16: a regression baseline -------------------------------------------------------------------


def test_a_regression_run_prints_the_mean_predictor_baseline(tmp_path):
    frame = pd.read_csv(CHURN).head(1500)
    frame["TotalCharges"] = pd.to_numeric(frame["TotalCharges"], errors="coerce")
    path = tmp_path / "charges.csv"
    frame.dropna().drop(columns=["Churn"]).to_csv(path, index=False)
    config = write_config(tmp_path, path=path)
    config.write_text(config.read_text().replace('target = "Churn"', 'target = "TotalCharges"'))
    code, out, err = run_cli(["run", config, "--out", tmp_path / "run"])
    assert code == 0, err
    baseline = json.loads((tmp_path / "run" / "config.json").read_text())["data"]["baseline_val_rmse"]
    assert baseline > 100  # dollars: the spread of total charges
    assert f"always predicting the training mean would give val_rmse {baseline:.4g}" in out
