"""A target on its own scale (issue 20, item 4): `Dataset.from_arrays` standardizes a regression target
as `load_csv` does, metrics and predictions come back in the target's units, the divergence limit is
relative to the loss a model starts from, and "lower the learning rates" is said only where it can help."""

import numpy as np
import pandas as pd
import pytest

import sweeps
from models import MLP
from sweeps.data import Dataset, load_csv
from sweeps.driver.populations import baseline_loss

ROWS, FEATURES = 400, 3
LEARNING_RATES = [1e-4, 1e-3, 1e-2]
SWEEP = {"model": MLP(hidden=(8,)), "space": {"learning_rate": LEARNING_RATES}, "epochs": 5, "batch_size": 32}


@pytest.fixture(scope="module")
def prices():
    """(x, y): y about 500 +- 100 with a linear signal, as a raw-scale target arrives."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, FEATURES))
    y = 500.0 + x @ np.array([60.0, -50.0, 40.0]) + 30.0 * rng.normal(size=ROWS)
    return x, y


def split(x, y, cut=320):
    return x[:cut], y[:cut], x[cut:], y[cut:]


def test_from_arrays_standardizes_a_regression_target_with_the_train_statistics(prices):
    x, y = prices
    data = Dataset.from_arrays(*split(x, y), task="regression")
    train, val = y[:320], y[320:]
    assert data.y_mean == train.mean() and data.y_std == train.std()
    np.testing.assert_array_equal(data.y_train, ((train - train.mean()) / train.std()).astype(np.float32))
    np.testing.assert_array_equal(data.y_val, ((val - train.mean()) / train.std()).astype(np.float32))
    assert any("standardized target" in note for note in data.preprocessing)
    given = Dataset.from_arrays(*split(x, data_y := (y - 500.0) / 100.0), task="regression", y_mean=500.0, y_std=100.0)
    assert (given.y_mean, given.y_std) == (500.0, 100.0)  # a target already standardized is used as given
    np.testing.assert_array_equal(given.y_train, data_y[:320].astype(np.float32))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "regression", "y_mean": 500.0}, r"must be given together, but got \(y_mean=500.0, y_std=None\)"),
        ({"task": "binary", "y_std": 3.0}, r"y_mean and y_std describe a regression target's scale, but task='binary'"),
    ],
)
def test_a_half_given_or_misplaced_scale_is_refused(kwargs, message):
    x, y = np.zeros((8, 1)), np.array([0.0, 1.0] * 4)
    with pytest.raises(ValueError, match=message):
        Dataset.from_arrays(x, y, x, y, **kwargs)


def test_a_raw_scale_target_trains_and_reports_in_its_own_units(prices, tmp_path):
    x, y = prices
    x_train, y_train, x_val, y_val = split(x, y)
    data = Dataset.from_arrays(x_train, y_train, x_val, y_val, task="regression")
    result = sweeps.run(data, run_dir=tmp_path / "run", **SWEEP)
    assert result.table["state"].tolist() == ["complete"] * len(LEARNING_RATES)
    best = result.best()
    model = sweeps.load_model(tmp_path / "run", trial=int(best["number"]))  # the best epoch's weights
    predicted = model.predict(x_val.astype(np.float32))  # in the target's units
    assert abs(predicted.mean() - 500.0) < 50.0
    rmse = float(np.sqrt(np.mean((predicted - y_val) ** 2)))
    mae = float(np.mean(np.abs(predicted - y_val)))
    assert best["best_val_rmse"] == pytest.approx(rmse, rel=1e-4)
    assert best["best_val_mae"] == pytest.approx(mae, rel=1e-4)
    baseline = float(np.sqrt(np.mean((y_val - y_train.mean()) ** 2)))  # always predicting the training mean
    assert result.config["data"]["baseline_val_rmse"] == pytest.approx(baseline, rel=1e-5)
    assert best["best_val_rmse"] < 0.5 * baseline


def test_the_same_data_as_a_data_frame_gives_the_same_table(prices):
    x, y = prices
    frame = pd.DataFrame(x, columns=["u", "v", "w"]).assign(price=y)
    from_csv = load_csv(frame, target="price", task="regression")
    # the rows load_csv put in each split, found by their features (all distinct), in its order
    features = from_csv.preprocessing_fit.transform(frame)
    where = {row.tobytes(): i for i, row in enumerate(features)}
    train = [where[row.tobytes()] for row in from_csv.x_train]
    val = [where[row.tobytes()] for row in from_csv.x_val]
    from_arrays = Dataset.from_arrays(features[train], y[train], features[val], y[val], task="regression")
    assert (from_arrays.y_mean, from_arrays.y_std) == (from_csv.y_mean, from_csv.y_std)
    np.testing.assert_array_equal(from_arrays.y_train, from_csv.y_train)
    np.testing.assert_array_equal(from_arrays.y_val, from_csv.y_val)
    tables = [sweeps.run(data, **SWEEP).table for data in (from_csv, from_arrays)]
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_the_divergence_limit_is_relative_to_the_loss_a_model_starts_from():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 3))
    rare = (rng.random(2000) < 0.005).astype(float)  # its prior's loss is 0.03; zero logits start at 0.69
    data = Dataset.from_arrays(*split(x, rare, cut=1600), task="binary")
    assert baseline_loss(data) == pytest.approx(np.log(2.0))
    result = sweeps.run(data, model=MLP(hidden=(8,)), space={"learning_rate": [1e-5, 1e-4]}, epochs=1, batch_size=32)
    assert result.table["state"].tolist() == ["complete", "complete"]  # a slow start is not a divergence
    raw = Dataset.from_arrays(*split(x, 500.0 + rare), task="regression", y_mean=0.0, y_std=1.0)
    assert baseline_loss(raw) == pytest.approx(np.mean((500.0 + rare[:320]) ** 2))


def test_lowering_the_learning_rates_is_advised_only_where_it_can_help(prices):
    x, y = prices
    # three learning rates, the population size of SWEEP: its compiled program serves these sweeps too
    huge = Dataset.from_arrays(*split(1e4 * x, y), task="regression")  # features far from unit scale
    result = sweeps.run(huge, **{**SWEEP, "space": {"learning_rate": [1e-5, 1e-4, 1e-3]}, "epochs": 2})
    assert set(result.table["state"]) == {"diverged"}
    with pytest.raises(ValueError) as refused:
        result.best()
    message = str(refused.value)
    assert "lower the learning rates below" not in message
    assert "even learning rate 1e-05 diverged in its first epoch" in message and "check the data's scale" in message
    calm = Dataset.from_arrays(*split(x, y), task="regression")
    wild = sweeps.run(calm, **{**SWEEP, "space": {"learning_rate": [1e3, 1e4, 1e6]}, "epochs": 2})
    assert set(wild.table["state"]) == {"diverged"}
    advice = r"diverged at learning rates 1e\+03 to 1e\+06\); lower the learning rates below 1e\+03"
    with pytest.raises(ValueError, match=advice):
        wild.best()
