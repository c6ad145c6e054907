"""Messy columns (issue 20, item 19): a high-cardinality text column is capped (`max_categories`,
`min_frequency`, rare values pooled into "<infrequent>") and warned about, the kept model pools alike at
predict time, the dry run shows the encoded width its memory estimate counts, and a row counter is an id."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import sweeps
from models import MLP
from sweeps.cli.config import load_config
from sweeps.cli.config_schema import load_data
from sweeps.data import Preprocessing, load_csv

ROWS = 600
PLANS = ["basic", "plus", "pro"]


def messy_frame(rows=ROWS, cities=300, seed=0):
    """`city`: `cities` random values (about 2 rows each) and two common ones; `plan`: 3 values; a signal in `x`."""
    rng = np.random.default_rng(seed)
    city = np.array([f"c{i:03d}" for i in rng.integers(cities, size=rows)], dtype=object)
    city[: rows // 4] = "Paris"
    city[rows // 4 : rows // 2] = "Lyon"
    x = rng.normal(size=rows)
    return pd.DataFrame(
        {
            "x": x,
            "city": city,
            "plan": np.array(PLANS, dtype=object)[rng.integers(3, size=rows)],
            "y": (x + 0.5 * rng.normal(size=rows) > 0).astype(int),
        }
    )


def city_features(data):
    return [name for name in data.feature_names if name.startswith("city=")]


def test_a_high_cardinality_column_is_capped_pooled_and_warned_about():
    frame = messy_frame()
    with pytest.warns(UserWarning, match=r"text column 'city' has (\d+) distinct values in the training split") as w:
        data = load_csv(frame, target="y")
    message = str(w[0].message)
    assert "set load_csv's max_categories= and min_frequency=" in message and "drop=['city']" in message
    names = city_features(data)
    assert names[-1] == "city=<infrequent>" and len(names) <= 30
    assert {"city=Lyon", "city=Paris"} <= set(names)  # the common ones keep their feature
    assert data.n_features == 1 + len(names) + 3
    fit = next(c for c in data.preprocessing_fit.columns if c.name == "city")
    train_counts = pd.Series(frame["city"]).value_counts()
    assert all(train_counts[c] >= 5 for c in fit.categories)  # every kept city has >= min_frequency rows in all
    assert any("into one feature 'city=<infrequent>'" in note for note in data.preprocessing)
    assert not any(name.startswith("plan=<") for name in data.feature_names)  # 3 common values: nothing pooled


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"max_categories": 3}, ["city=Lyon", "city=Paris", "city=<infrequent>"]),
        ({"max_categories": 1}, ["city=<infrequent>"]),
        ({"min_frequency": 0.2, "max_categories": None}, ["city=Lyon", "city=Paris", "city=<infrequent>"]),
    ],
)
def test_max_categories_and_min_frequency_as_in_scikit_learn(options, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = load_csv(messy_frame(), target="y", **options)
    assert city_features(data) == expected
    plans = [n for n in data.feature_names if n.startswith("plan=")]
    assert plans == (["plan=<infrequent>"] if options.get("max_categories") == 1 else [f"plan={p}" for p in PLANS])


def test_no_limits_one_hot_every_value_and_still_warn():
    frame = messy_frame()
    with pytest.warns(UserWarning, match=r"one feature each \(max_categories=None, min_frequency=None\)"):
        data = load_csv(frame, target="y", max_categories=None, min_frequency=None)
    assert len(city_features(data)) > 100 and "city=<infrequent>" not in data.feature_names


def test_new_rows_pool_as_the_training_rows_did():
    frame = messy_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = load_csv(frame, target="y")
    fit = data.preprocessing_fit
    city = next(c for c in fit.columns if c.name == "city")
    rare = city.infrequent[0]
    rows = frame.head(4).assign(city=["Paris", rare, "Atlantis", None])
    x, report = fit.transform_with_report(rows)
    raw = x.astype(np.float64) * np.asarray(fit.scale) + np.asarray(fit.mean)
    column = {name: raw[:, j] for j, name in enumerate(fit.feature_names)}
    np.testing.assert_allclose(column["city=Paris"], [1, 0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(column["city=<infrequent>"], [0, 1, 1, 0], atol=1e-5)  # rare and unseen: pooled
    assert report.unseen == {"city": 1} and report.infrequent == {"city": 2} and report.missing == {"city": 1}
    assert "1 values of 'city' not seen in train encoded as <infrequent>: ['Atlantis']" in report.summary()
    again = Preprocessing.from_json(json.loads(json.dumps(fit.to_json())))
    assert again == fit
    np.testing.assert_array_equal(again.transform(rows), x)
    old = fit.to_json() | {"version": 1}  # a run folder written before pooling: no "infrequent" key
    old["columns"] = [{k: v for k, v in c.items() if k != "infrequent"} for c in old["columns"]]
    old["columns"] = [c for c in old["columns"] if c["name"] != "city"]
    old["feature_names"] = [n for n in old["feature_names"] if not n.startswith("city=")]
    keep = [j for j, n in enumerate(fit.feature_names) if not n.startswith("city=")]
    old["mean"], old["scale"] = [old["mean"][j] for j in keep], [old["scale"][j] for j in keep]
    assert Preprocessing.from_json(old).columns[-1].infrequent == ()


def test_the_kept_model_pools_at_predict_time(tmp_path):
    frame = messy_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = load_csv(frame, target="y")
    sweeps.run(
        data, model=MLP(hidden=(4,)), space={"learning_rate": [1e-2]}, epochs=1, batch_size=64, run_dir=tmp_path / "r"
    )
    model = sweeps.load_model(tmp_path / "r")
    new = frame.head(3).assign(city=["Atlantis", "Paris", "Atlantis"])
    np.testing.assert_array_equal(model.features(new), data.preprocessing_fit.transform(new))
    model.predict(new)
    assert model.last_report.unseen == {"city": 2} and model.last_report.infrequent == {"city": 2}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_categories": 0}, r"max_categories must be an integer >= 1 or None, but got max_categories=0"),
        ({"max_categories": 2.5}, r"max_categories must be an integer >= 1 or None, but got max_categories=2.5"),
        ({"max_categories": True}, r"max_categories must be an integer >= 1 or None, but got max_categories=True"),
        ({"min_frequency": 0}, r"min_frequency must be an integer >= 1 .* but got min_frequency=0;"),
        ({"min_frequency": 1.5}, r"min_frequency must be an integer >= 1 .* but got min_frequency=1.5;"),
        ({"min_frequency": "5"}, r"min_frequency must be an integer >= 1 .* but got min_frequency='5';"),
    ],
)
def test_bad_one_hot_limits_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        load_csv(messy_frame(rows=40), target="y", **options)


def test_the_limits_are_data_keys_of_a_config(tmp_path):
    path = tmp_path / "messy.csv"
    messy_frame().to_csv(path, index=False)
    config = tmp_path / "sweep.toml"
    config.write_text(f'[data]\npath = "{path.as_posix()}"\ntarget = "y"\nmax_categories = 4\n')
    resolved = load_config(config, ["data.min_frequency=0.2"])
    assert (resolved["data"]["max_categories"], resolved["data"]["min_frequency"]) == (4, 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = load_data(resolved)
    assert city_features(data) == ["city=Lyon", "city=Paris", "city=<infrequent>"]


def test_the_dry_run_shows_the_encoded_width_its_memory_estimate_counts():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        wide = load_csv(messy_frame(), target="y", max_categories=None, min_frequency=None)
        capped = load_csv(messy_frame(), target="y")
    plans = [sweeps.dry_run(data, space={"learning_rate": [1e-3]}, memory_budget=2**30) for data in (wide, capped)]
    for data, plan in zip((wide, capped), plans):
        assert plan.groups[0].structure.n_features == data.n_features
        assert f"data: {data.n_features} features in" in plan.describe()
    assert plans[0].groups[0].chunk_bytes > plans[1].groups[0].chunk_bytes


def test_a_row_counter_is_an_id_and_dropped():
    rng = np.random.default_rng(0)
    rows = 200
    frame = pd.DataFrame(
        {
            "row": np.arange(1, rows + 1),  # 1, 2, 3, ...
            "customer_no": rng.permutation(np.arange(5001, 5001 + rows)),  # a running number, shuffled
            "stamp": np.sort(rng.choice(10**9, size=rows, replace=False)),  # distinct, but not a counter
            "count": rng.integers(0, 50, size=rows),  # integers with repeats
            "x": rng.normal(size=rows),
            "y": rng.integers(0, 2, size=rows),
        }
    )
    frame.loc[[5, 9], "y"] = np.nan  # rows of a missing target leave gaps in the counter
    data = load_csv(frame, target="y")
    assert data.feature_names == ("stamp", "count", "x")
    notes = "\n".join(data.preprocessing)
    assert "dropped id-like column 'row' (a row counter: 198 distinct integers from 1 to 200" in notes
    assert "dropped id-like column 'customer_no' (a row counter" in notes
    assert data.preprocessing_fit.dropped == ("row", "customer_no")
    as_floats = load_csv(frame.astype({"row": float}), target="y")
    assert "row" in as_floats.feature_names  # the way to keep it, as the note says
