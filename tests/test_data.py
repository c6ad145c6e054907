"""Tests of sweeps.data: load_csv on the churn file and on small synthetic
CSVs, the errors it raises, check_batch_size, and Dataset.from_arrays."""

import pathlib

import jax
import numpy as np
import pandas as pd
import pytest

import sweeps
from sweeps.cli.config import load_config
from sweeps.cli.config_schema import section_keys
from sweeps.data import Dataset, check_batch_size, load_csv

CHURN = pathlib.Path(__file__).resolve().parents[1] / "data" / "telco_customer_churn.csv"

# Tolerances for float32 features standardized in float64.
MEAN_ATOL = 1e-4
STD_ATOL = 1e-3


@pytest.fixture(scope="module")
def churn():
    return load_csv(CHURN, target="Churn")


def write_csv(tmp_path, frame, name="data.csv"):
    path = tmp_path / name
    if isinstance(frame, str):
        path.write_text(frame)
    else:
        pd.DataFrame(frame).to_csv(path, index=False)
    return path


# --- the churn file -------------------------------------------------------------


def test_churn_shapes_task_and_classes(churn):
    assert (churn.n_train, churn.n_val, churn.n_test) == (5634, 1409, 0)
    assert churn.x_train.shape == (5634, 45)
    assert churn.x_val.shape == (1409, 45)
    assert churn.x_test.shape == (0, 45)
    assert churn.y_test.shape == (0,)
    assert churn.n_features == 45
    assert churn.task == "binary"
    assert churn.target == "Churn"
    assert churn.class_names == ("No", "Yes")
    assert churn.n_outputs == 1
    assert (churn.y_mean, churn.y_std) == (0.0, 1.0)
    assert churn.source == str(CHURN)
    for x in (churn.x_train, churn.x_val, churn.x_test):
        assert x.dtype == np.float32
    for y in (churn.y_train, churn.y_val, churn.y_test):
        assert y.dtype == np.float32
        assert set(np.unique(y).tolist()) <= {0.0, 1.0}
    # 5,174 "No" and 1,869 "Yes" in all.
    n_yes = churn.y_train.sum() + churn.y_val.sum()
    assert n_yes == 1869


def test_churn_features_and_notes(churn):
    names = churn.feature_names
    assert len(names) == 45
    assert "Contract=Month-to-month" in names
    assert {"tenure", "MonthlyCharges", "TotalCharges", "SeniorCitizen"} <= set(names)
    assert not any(name.startswith("customerID") for name in names)
    notes = "\n".join(churn.preprocessing)
    assert "dropped id-like column 'customerID' (7043 distinct text values)" in notes
    assert "coerced 'TotalCharges' to numbers: 11 blank or non-numeric values" in notes
    assert "train median" in notes
    assert "one-hot encoded 15 text columns into 41 features" in notes
    assert "standardized 45 features" in notes
    assert "mapped target 'Churn' labels ['No', 'Yes'] to [0, 1]" in notes
    assert "split 5634/1409/0 rows (train/val/test)" in notes


def test_churn_is_standardized_and_finite(churn):
    np.testing.assert_allclose(churn.x_train.mean(axis=0), 0.0, atol=MEAN_ATOL)
    np.testing.assert_allclose(churn.x_train.std(axis=0), 1.0, atol=STD_ATOL)
    for array in (churn.x_train, churn.x_val, churn.y_train, churn.y_val):
        assert np.isfinite(array).all()


def test_churn_split_is_stratified(churn):
    train_share = churn.y_train.mean()
    val_share = churn.y_val.mean()
    assert abs(train_share - val_share) < 0.005
    assert churn.y_val.sum() == 374  # round(1869 * 0.2)
    assert churn.majority_class_fraction == pytest.approx(1035 / 1409)


def test_churn_summary(churn):
    text = churn.summary()
    assert "5634 train / 1409 val / 0 test" in text
    assert "45 features" in text
    assert "binary" in text
    assert "No 73.5%" in text and "Yes 26.5%" in text
    assert "customerID" in text


def test_churn_arrays_are_read_only(churn):
    with pytest.raises(ValueError, match="read-only"):
        churn.x_train[0, 0] = 1.0


def test_churn_seed_decides_the_split(churn):
    same = load_csv(str(CHURN), target="Churn", seed=0)
    other = load_csv(CHURN, target="Churn", seed=1)
    np.testing.assert_array_equal(same.x_train, churn.x_train)
    np.testing.assert_array_equal(same.y_val, churn.y_val)
    assert same.preprocessing == churn.preprocessing
    assert other.x_val.shape == churn.x_val.shape
    assert not np.array_equal(other.x_val, churn.x_val)


def test_churn_test_split(churn):
    data = load_csv(CHURN, target="Churn", val_fraction=0.2, test_fraction=0.1, seed=3)
    assert data.n_train + data.n_val + data.n_test == 7043
    assert data.n_test == 704  # round(5174 * 0.1) + round(1869 * 0.1) = 517 + 187
    assert abs(data.y_test.mean() - data.y_train.mean()) < 0.01
    assert data.x_test.shape == (704, 45)


def test_churn_drop_removes_a_column(churn):
    data = load_csv(CHURN, target="Churn", drop=["gender"])
    assert data.n_features == 43
    assert not any(name.startswith("gender") for name in data.feature_names)
    assert any("dropped 'gender'" in note for note in data.preprocessing)


# --- statistics come from train only --------------------------------------------


def _mixed_table(n=200):
    """A table whose target is the row number, so the split can be undone."""
    rng = np.random.default_rng(1)
    a = rng.lognormal(size=n) * 100  # skewed: val rows move the mean
    b = rng.normal(size=n).round(3).astype(object)
    b[::10] = " "  # blank cells, as in TotalCharges
    c = rng.choice(["red", "green", "blue"], size=n).astype(object)
    c[7] = "violet"  # seen once: in train or not, decided by the split
    c[3] = c[4] = None  # empty cells: missing text
    flag = rng.random(n) < 0.3
    return pd.DataFrame({"a": a, "b": b, "c": c, "flag": flag, "row": np.arange(n)})


def _standardized(train_values, values):
    return (values - train_values.mean()) / train_values.std()


def test_statistics_come_from_train_only(tmp_path):
    table = _mixed_table()
    data = load_csv(write_csv(tmp_path, table), target="row", min_frequency=None)  # 'violet' (1 row) not pooled
    assert data.task == "regression"

    # Undo the target scaling to find which rows went where.
    rows = [np.rint(y.astype(np.float64) * data.y_std + data.y_mean).astype(int) for y in (data.y_train, data.y_val)]
    train, val = rows
    assert sorted(np.concatenate(rows).tolist()) == list(range(len(table)))
    assert data.y_mean == pytest.approx(train.mean())
    assert data.y_std == pytest.approx(train.std())
    np.testing.assert_allclose(data.y_train.mean(), 0.0, atol=MEAN_ATOL)
    np.testing.assert_allclose(data.y_train.std(), 1.0, atol=STD_ATOL)

    # Feature order: a, b, one indicator per train category of c, flag.
    c = table["c"].to_numpy()
    categories = sorted({value for value in c[train] if isinstance(value, str)})
    assert data.feature_names == ("a", "b", *(f"c={v}" for v in categories), "flag")

    # a: train mean and std, which differ from those of the whole column.
    a = table["a"].to_numpy()
    assert abs(a[train].mean() - a.mean()) > 1.0
    np.testing.assert_allclose(data.x_val[:, 0], _standardized(a[train], a[val]), rtol=1e-5, atol=1e-5)

    # b: blanks imputed with the train median, not the median of all rows.
    b = pd.to_numeric(table["b"], errors="coerce").to_numpy(dtype=float)
    median = np.nanmedian(b[train])
    assert median != np.nanmedian(b)
    filled = np.where(np.isnan(b), median, b)
    np.testing.assert_allclose(
        data.x_val[:, 1],
        _standardized(filled[train], filled[val]),
        rtol=1e-5,
        atol=1e-5,
    )
    assert any(f"train median {median:.6g}" in note for note in data.preprocessing)

    # c: indicators of train categories; missing and unseen text is all-zero.
    for k, category in enumerate(categories):
        indicator = (c == category).astype(float)
        expected = _standardized(indicator[train], indicator[val])
        np.testing.assert_allclose(data.x_val[:, 2 + k], expected, rtol=1e-5, atol=1e-5)
    assert any("2 missing values of 'c' encoded as all-zero" in n for n in data.preprocessing)

    # flag: a boolean column is one 0/1 feature.
    flag = table["flag"].to_numpy().astype(float)
    np.testing.assert_allclose(data.x_val[:, -1], _standardized(flag[train], flag[val]), rtol=1e-5, atol=1e-5)


def test_unseen_category_is_all_zero(tmp_path):
    # 30 rows of "a"/"b", one "z": with stratification on y and a fixed seed,
    # find a seed where "z" lands in val, so train never saw it.
    rows = 30
    table = pd.DataFrame({"color": ["a", "b"] * (rows // 2) + ["z"], "y": [0, 1] * (rows // 2) + [1]})
    path = write_csv(tmp_path, table)
    for seed in range(50):
        data = load_csv(path, target="y", seed=seed, min_frequency=None)  # 'z' (1 row) not pooled
        if "color=z" not in data.feature_names:
            break
    else:
        pytest.fail("no seed put the single 'z' row in val")
    assert data.feature_names == ("color=a", "color=b")
    assert any("1 val/test values of 'color' not seen in train" in n for n in data.preprocessing)


def test_missing_target_rows_are_dropped(tmp_path):
    path = write_csv(tmp_path, "x,y\n1,a\n2,\n3,b\n4, \n" + "5,a\n6,b\n" * 10)
    data = load_csv(path, target="y")
    assert data.n_train + data.n_val == 22
    assert "dropped 2 rows with a missing target 'y'" in data.preprocessing


def test_constant_feature_becomes_zero(tmp_path):
    path = write_csv(tmp_path, {"k": [0.1] * 40, "x": np.arange(40.0), "y": [0, 1] * 20})
    data = load_csv(path, target="y")
    np.testing.assert_allclose(data.x_train[:, 0], 0.0, atol=1e-6)
    assert any("1 constant in train" in note for note in data.preprocessing)


# --- task inference ----------------------------------------------------------------


def _target_table(values, rows=60):
    values = list(values)
    y = [values[i % len(values)] for i in range(rows)]
    return {"x": np.arange(rows, dtype=float), "y": y}


@pytest.mark.parametrize(
    "values, task, class_names, n_outputs",
    [
        (
            ["setosa", "versicolor", "virginica"],
            "multiclass",
            ("setosa", "versicolor", "virginica"),
            3,
        ),
        (["Yes", "No"], "binary", ("No", "Yes"), 1),
        ([0, 1], "binary", ("0", "1"), 1),
        ([True, False], "binary", ("False", "True"), 1),
        ([3, 1, 2, 10], "multiclass", ("1", "2", "3", "10"), 4),  # numeric order
        ([0.5, 1.5, 2.25], "regression", (), 1),
        (list(range(30)), "regression", (), 1),  # more than 20 integers
    ],
)
def test_task_is_inferred(tmp_path, values, task, class_names, n_outputs):
    data = load_csv(write_csv(tmp_path, _target_table(values)), target="y")
    assert data.task == task
    assert data.class_names == class_names
    assert data.n_outputs == n_outputs
    expected = {"binary": np.float32, "multiclass": np.int32, "regression": np.float32}[task]
    assert data.y_train.dtype == expected
    if task == "multiclass":
        labels = np.concatenate([data.y_train, data.y_val])
        assert sorted(np.unique(labels).tolist()) == list(range(len(class_names)))
        # Stratified: every class appears in val.
        assert set(data.y_val.tolist()) == set(range(len(class_names)))
    if task == "regression":
        np.testing.assert_allclose(data.y_train.mean(), 0.0, atol=MEAN_ATOL)
        np.testing.assert_allclose(data.y_train.std(), 1.0, atol=STD_ATOL)
        assert data.y_std > 0
        assert data.majority_class_fraction is None
        assert "target scale" in data.summary()


def test_numeric_class_labels_keep_their_order(tmp_path):
    table = _target_table([3, 1, 2, 10])
    table["copy"] = table["y"]  # a feature that rises with the raw label
    data = load_csv(write_csv(tmp_path, table), target="y")
    order = np.argsort(data.x_train[:, 1], kind="stable")
    assert np.all(np.diff(data.y_train[order]) >= 0)  # 1 -> 0, 2 -> 1, 3 -> 2, 10 -> 3
    assert "mapped target 'y' labels ['1', '2', '3', '10'] to [0, 1, 2, 3]" in data.preprocessing


@pytest.mark.parametrize(
    "values, task, n_outputs",
    [
        ([0, 1, 2], "regression", 1),
        (["a", "b"], "multiclass", 2),
        ([0.5, 1.5, 2.25], "multiclass", 3),
    ],
)
def test_task_override(tmp_path, values, task, n_outputs):
    data = load_csv(write_csv(tmp_path, _target_table(values)), target="y", task=task)
    assert data.task == task
    assert data.n_outputs == n_outputs
    assert any("(given" in note for note in data.preprocessing)


def test_rare_class_gets_a_val_row(tmp_path):
    y = ["common"] * 40 + ["rare"] * 2 + ["other"] * 10
    data = load_csv(write_csv(tmp_path, {"x": np.arange(52.0), "y": y}), target="y")
    rare = data.class_names.index("rare")
    assert (data.y_val == rare).sum() == 1
    assert (data.y_train == rare).sum() == 1


def test_multiclass_on_a_continuous_column_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.normal(size=2000).round(6)
    y[1] = y[0]  # 1,999 distinct values in 2,000 rows
    path = write_csv(tmp_path, {"x": rng.normal(size=2000), "y": y})
    with pytest.raises(
        ValueError,
        match=r"task='multiclass' on target 'y' in .* gives 1999 classes for 2000 rows, "
        r"1998 of them with a single row.*use task='regression'",
    ):
        load_csv(path, target="y", task="multiclass")
    assert load_csv(path, target="y").task == "regression"


def test_text_target_of_mostly_single_rows_is_refused(tmp_path):
    names = [f"customer {i}" for i in range(300)] + ["customer 0"] * 10
    path = write_csv(tmp_path, {"x": np.arange(310.0), "name": names})
    with pytest.raises(ValueError, match=r"300 classes for 310 rows.*id or free text: pick another target="):
        load_csv(path, target="name")


def test_many_classes_with_rows_each_are_accepted(tmp_path):
    y = np.repeat(np.arange(40), 5)  # 40 classes, 5 rows each
    path = write_csv(tmp_path, {"x": np.arange(200.0), "y": y})
    data = load_csv(path, target="y", task="multiclass")
    assert data.n_outputs == 40


# --- dates -------------------------------------------------------------------------------


def _dates_table(n=2000):
    """300 distinct dates repeated over 2,000 rows, a few blank or unreadable;
    the target is the row number, so the split can be undone."""
    rng = np.random.default_rng(0)
    days = pd.date_range("2019-06-01", periods=300).strftime("%Y-%m-%d")
    when = rng.choice(days, n).astype(object)
    when[:4] = ["", None, "unknown", " "]
    return pd.DataFrame({"when": when, "x": rng.normal(size=n), "row": np.arange(n)})


def test_repeated_dates_become_numbers(tmp_path):
    table = _dates_table()
    data = load_csv(write_csv(tmp_path, table), target="row")
    assert data.feature_names == ("when:days", "when:year", "when:month", "when:weekday", "x")
    assert (
        "read 'when' as dates (format 'ISO8601') into 4 features: days since "
        "1970-01-01, year, month, weekday; 4 blank or unparseable values imputed with "
        "the train median date"
    ) in "\n".join(data.preprocessing)

    rows = np.rint(data.y_train.astype(np.float64) * data.y_std + data.y_mean).astype(int)
    fit = data.preprocessing_fit
    raw = data.x_train.astype(np.float64) * fit.scale + fit.mean
    when = pd.to_datetime(table["when"].iloc[rows], format="ISO8601", errors="coerce")
    known = when.notna().to_numpy()
    expected = np.stack(
        [
            (when - pd.Timestamp("1970-01-01")).dt.days,
            when.dt.year,
            when.dt.month,
            when.dt.day_of_week,
        ],
        axis=1,
    )[known]
    np.testing.assert_allclose(raw[known, :4], expected, atol=0.01)


@pytest.mark.parametrize(
    "values, fmt",
    [
        (["03/04/2021", "12/01/2020", "01/02/2019"], "%m/%d/%Y"),  # month first on a tie
        (["13/04/2021", "12/01/2020", "01/02/2019"], "%d/%m/%Y"),  # a day over 12
        (["2021-03-04 10:30:00", "2020-01-05T08:00:00Z", "2019-02-01"], "ISO8601"),
        (["4 Mar 2021", "1 Dec 2020", "30 Jan 2019"], "%d %b %Y"),
    ],
)
def test_date_formats(tmp_path, values, fmt):
    table = {"when": [values[i % 3] for i in range(60)], "y": [0, 1] * 30}
    data = load_csv(write_csv(tmp_path, table), target="y")
    assert data.feature_names[0] == "when:days"
    assert data.preprocessing_fit.columns[0].date_format == fmt


@pytest.mark.parametrize(
    "values",
    [["May", "June", "July"], ["A1", "B2", "C3"], ["One year", "Two year", "Month-to-month"]],
)
def test_text_that_is_not_dates_stays_categorical(tmp_path, values):
    table = {"when": [values[i % 3] for i in range(60)], "y": [0, 1] * 30}
    data = load_csv(write_csv(tmp_path, table), target="y")
    assert data.preprocessing_fit.columns[0].kind == "categorical"
    assert data.n_features == 3


def test_distinct_time_stamps_are_kept_not_dropped_as_ids(tmp_path):
    stamps = pd.date_range("2024-01-01", periods=40, freq="h").strftime("%Y-%m-%d %H:%M")
    data = load_csv(write_csv(tmp_path, {"at": stamps, "y": [0, 1] * 20}), target="y")
    assert data.feature_names[0] == "at:days"
    assert not any("id-like" in note for note in data.preprocessing)


# --- reading: DataFrames, separators, encodings, duplicate names ----------------------------


def test_data_frame_is_preprocessed_like_the_file(churn):
    frame = pd.read_csv(CHURN)
    before = frame.copy()
    data = sweeps.load_csv(frame, target="Churn")
    assert data.source == "<DataFrame>"
    assert data.preprocessing == churn.preprocessing
    assert data.feature_names == churn.feature_names
    for name in ("x_train", "x_val", "y_train", "y_val"):
        np.testing.assert_array_equal(getattr(data, name), getattr(churn, name))
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is not changed


def test_data_frame_with_its_own_index_and_names():
    frame = pd.DataFrame({0: np.arange(40.0), "y": ["a", "b"] * 20}, index=np.arange(40) * 7 + 3)
    data = load_csv(frame, target="y")
    assert data.feature_names == ("0",) and data.n_train + data.n_val == 40


@pytest.mark.parametrize(
    "value, shown",
    [(3, "int 3"), (None, "NoneType None"), ({"y": [1]}, "dict"), (np.zeros((3, 2)), "numpy.ndarray")],
)
def test_load_csv_of_another_type_is_a_type_error(value, shown):
    with pytest.raises(
        TypeError,
        match=r"reads a CSV file path \(str or os.PathLike\) or a pandas DataFrame, "
        f"but got {shown}",
    ):
        sweeps.load_csv(value, target="y")


def test_sep_and_encoding_with_a_data_frame_are_refused():
    frame = pd.DataFrame(_target_table([0, 1]))
    with pytest.raises(ValueError, match="apply to reading a file.*leave them out"):
        load_csv(frame, target="y", sep=";")


def _semicolon_text(sep=";"):
    rows = "".join(f"{i / 2}{sep}{i % 7}{sep}{'xyz'[i % 3]}{sep}{i % 2}\n" for i in range(40))  # a: not a counter
    return f"a{sep}b{sep}c{sep}y\n" + rows


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_separator_is_detected(tmp_path, sep):
    data = load_csv(write_csv(tmp_path, _semicolon_text(sep)), target="y")
    commas = load_csv(write_csv(tmp_path, _semicolon_text(","), "commas.csv"), target="y")
    assert data.feature_names == ("a", "b", "c=x", "c=y", "c=z")
    assert data.preprocessing[0] == f"read with sep={sep!r} (detected from the header)"
    assert data.preprocessing[1:] == commas.preprocessing
    np.testing.assert_array_equal(data.x_train, commas.x_train)


def test_separator_given(tmp_path):
    data = load_csv(write_csv(tmp_path, _semicolon_text()), target="y", sep=";")
    assert data.preprocessing[0] == "read with sep=';' (given)"


def test_header_read_as_one_column_names_sep(tmp_path):
    path = write_csv(tmp_path, _semicolon_text())
    with pytest.raises(
        ValueError,
        match=r"target column 'y' not found in .*the header was read as the single "
        r"column 'a;b;c;y', names joined by ';': pass sep=';'",
    ):
        load_csv(path, target="y", sep=",")


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"sep": 5}, TypeError, "sep must be None .* but got sep=5"),
        ({"encoding": "klingon"}, ValueError, "encoding='klingon' is not an encoding"),
    ],
)
def test_bad_reading_options(tmp_path, options, error, message):
    with pytest.raises(error, match=message):
        load_csv(write_csv(tmp_path, _semicolon_text()), target="y", **options)


def test_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(("town,y\n" + "".join(f"Zürich{i % 3},{i % 2}\n" for i in range(30))).encode("latin-1"))
    with pytest.raises(ValueError, match=r"is not UTF-8 text.*encoding='latin-1'"):
        load_csv(path, target="y")
    data = load_csv(path, target="y", encoding="latin-1")
    assert data.feature_names == ("town=Zürich0", "town=Zürich1", "town=Zürich2")
    assert "read with encoding='latin-1' (given)" in data.preprocessing


def test_duplicate_column_names_are_refused(tmp_path):
    text = "x1,x2,x1,y\n" + "".join(f"{i},{i % 5},{-i},{i % 2}\n" for i in range(30))
    with pytest.raises(
        ValueError,
        match=r"duplicate column names: 'x1' \(columns 1 and 3\); pandas would rename "
        r"the copies \('x1' -> 'x1.1'\).*rename the columns",
    ):
        load_csv(write_csv(tmp_path, text), target="y")
    frame = pd.DataFrame(np.zeros((4, 3)), columns=["a", "y", "a"])
    with pytest.raises(ValueError, match=r"the DataFrame has duplicate column names: 'a'"):
        load_csv(frame, target="y")


def test_config_data_section_takes_sep(tmp_path):
    path = write_csv(tmp_path, _semicolon_text())
    config_file = tmp_path / "sweep.toml"
    config_file.write_text(f'[data]\npath = "{path.as_posix()}"\ntarget = "y"\nsep = ";"\n')
    config = load_config(config_file)
    assert "sep" in section_keys("data") and "encoding" in section_keys("data")
    assert config["data"]["sep"] == ";" and config["data"]["encoding"] is None
    data = load_csv(**config["data"])
    assert data.preprocessing[0] == "read with sep=';' (given)"


# --- errors -----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.csv does not exist.*check the path"):
        load_csv(tmp_path / "nope.csv", target="y")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load_csv(tmp_path, target="y")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"empty \(0 bytes\)"),
        ("x,y\n", "has a header but no rows"),
        ("\n\n", "no columns"),
    ],
)
def test_empty_file(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_csv(write_csv(tmp_path, text), target="y")


def test_target_absent_suggests_nearest(churn):
    with pytest.raises(
        ValueError,
        match=r"target column 'churn' not found.*did you mean 'Churn'\?.*columns: customerID, gender",
    ):
        load_csv(CHURN, target="churn")


def test_target_absent_without_close_name(tmp_path):
    path = write_csv(tmp_path, _target_table([0, 1]))
    with pytest.raises(ValueError, match=r"target column 'price' not found.*columns: x, y$"):
        load_csv(path, target="price")


def test_unknown_drop_column_suggests_nearest(churn):
    with pytest.raises(
        ValueError,
        match=r"drop column 'customerId' not found.*did you mean 'customerID'\?",
    ):
        load_csv(CHURN, target="Churn", drop=["customerId"])


def test_target_in_drop(tmp_path):
    path = write_csv(tmp_path, _target_table([0, 1]))
    with pytest.raises(ValueError, match="also listed in drop.*remove it from drop"):
        load_csv(path, target="y", drop="y")


@pytest.mark.parametrize("values, shown", [(["Yes"], "'Yes'"), ([4.0], "'4'")])
def test_target_with_one_class(tmp_path, values, shown):
    path = write_csv(tmp_path, _target_table(values))
    with pytest.raises(
        ValueError,
        match=f"target column 'y' in .* has a single value {shown}.*at least two values",
    ):
        load_csv(path, target="y")


def test_target_all_missing(tmp_path):
    path = write_csv(tmp_path, "x,y\n1,\n2,\n")
    with pytest.raises(ValueError, match="target column 'y' .* has no values"):
        load_csv(path, target="y")


@pytest.mark.parametrize("fill", [" ", None])
def test_all_missing_column(tmp_path, fill):
    table = _target_table([0, 1])
    table["empty"] = [fill] * len(table["x"])
    with pytest.raises(ValueError, match=r"column 'empty' .* has no values.*drop=\['empty'\]"):
        load_csv(write_csv(tmp_path, table), target="y")


@pytest.mark.parametrize(
    "val_fraction, test_fraction, message",
    [
        (0.0, 0.0, r"`0 < val_fraction < 1` must hold, but got val_fraction=0.0"),
        (1.0, 0.0, r"`0 < val_fraction < 1` must hold, but got val_fraction=1.0"),
        (-0.1, 0.0, r"`0 < val_fraction < 1`"),
        (float("nan"), 0.0, r"`0 < val_fraction < 1`"),
        (0.2, -0.1, r"`0 <= test_fraction < 1` must hold, but got test_fraction=-0.1"),
        (0.2, 1.0, r"`0 <= test_fraction < 1`"),
        (
            0.6,
            0.5,
            r"`val_fraction \+ test_fraction < 1` must hold, but got \(val_fraction=0.6, test_fraction=0.5\)",
        ),
        ("0.2", 0.0, "val_fraction must be a number"),
        (0.2, True, "test_fraction must be a number"),
    ],
)
def test_bad_fractions(tmp_path, val_fraction, test_fraction, message):
    path = write_csv(tmp_path, _target_table([0, 1]))
    with pytest.raises(ValueError, match=message):
        load_csv(path, target="y", val_fraction=val_fraction, test_fraction=test_fraction)


def test_unknown_task(tmp_path):
    path = write_csv(tmp_path, _target_table([0, 1]))
    with pytest.raises(
        ValueError,
        match=r"task must be one of 'binary', 'multiclass', 'regression'.*got task='classification'",
    ):
        load_csv(path, target="y", task="classification")


def test_regression_needs_numeric_target(tmp_path):
    path = write_csv(tmp_path, _target_table(["a", "b", "c"]))
    with pytest.raises(ValueError, match="task='regression' needs a numeric target.*task='multiclass'"):
        load_csv(path, target="y", task="regression")


def test_binary_needs_two_classes(tmp_path):
    path = write_csv(tmp_path, _target_table(["a", "b", "c"]))
    with pytest.raises(
        ValueError,
        match=r"task='binary' needs exactly 2 classes.*has 3.*use task='multiclass'",
    ):
        load_csv(path, target="y", task="binary")


def test_too_few_rows(tmp_path):
    path = write_csv(tmp_path, "x,y\n1,0.5\n2,1.5\n3,2.5\n")
    with pytest.raises(ValueError, match=r"`n_train >= 2 and n_val >= 1` must hold.*n_train=1"):
        load_csv(path, target="y", val_fraction=0.3, test_fraction=0.3)


def test_no_features_left(tmp_path):
    path = write_csv(tmp_path, _target_table([0, 1]))
    with pytest.raises(ValueError, match="no feature columns are left.*'x'"):
        load_csv(path, target="y", drop=["x"])


def test_bad_seed(tmp_path):
    path = write_csv(tmp_path, _target_table([0, 1]))
    with pytest.raises(ValueError, match="seed must be a non-negative integer, but got seed=-1"):
        load_csv(path, target="y", seed=-1)


# --- check_batch_size ---------------------------------------------------------------------


def _small(n_train=10):
    x = np.arange(n_train * 2, dtype=np.float32).reshape(n_train, 2)
    y = np.arange(n_train) % 2
    return Dataset.from_arrays(x, y, x[:3], y[:3], task="binary")


def test_check_batch_size():
    data = _small(10)
    check_batch_size(data, 10)
    check_batch_size(data, 1)
    message = (
        r"batch_size=64 is larger than the training split \(10 rows\) of <arrays>; "
        r"use batch_size <= 10 or a smaller val_fraction/test_fraction"
    )
    with pytest.raises(ValueError, match=message):
        check_batch_size(data, 64)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_check_batch_size_rejects_non_positive(batch_size):
    with pytest.raises(ValueError, match="`batch_size >= 1` must hold"):
        check_batch_size(_small(), batch_size)


# --- Dataset.from_arrays ----------------------------------------------------------------------


def test_from_arrays_round_trip():
    x = np.arange(24).reshape(8, 3)  # int64: cast to float32
    y = np.array([True, False] * 4)
    data = Dataset.from_arrays(x, y, x[:2], y[:2], task="binary")
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.float32
    np.testing.assert_array_equal(data.x_train, x)
    np.testing.assert_array_equal(data.y_train, y.astype(np.float32))
    assert data.x_test.shape == (0, 3) and data.y_test.shape == (0,)
    assert data.feature_names == ("x0", "x1", "x2")
    assert data.class_names == ("0", "1")
    assert (data.n_train, data.n_val, data.n_test, data.n_features) == (8, 2, 0, 3)
    assert data.majority_class_fraction == 0.5
    x[0, 0] = 100  # the dataset holds a copy
    assert data.x_train[0, 0] == 0


def test_from_arrays_multiclass_and_test_split():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2))
    y = np.array([0, 1, 2, 3] * 3)
    data = Dataset.from_arrays(
        x[:8],
        y[:8],
        x[8:10],
        y[8:10],
        task="multiclass",
        x_test=x[10:],
        y_test=y[10:],
        feature_names=["u", "v"],
        class_names=["a", "b", "c", "d"],
    )
    assert data.y_train.dtype == np.int32
    assert data.n_outputs == 4
    assert data.n_test == 2
    assert data.feature_names == ("u", "v")
    assert data.class_names == ("a", "b", "c", "d")
    default = Dataset.from_arrays(x[:8], y[:8], x[8:10], y[8:10], task="multiclass")
    assert default.class_names == ("0", "1", "2", "3")


def test_from_arrays_regression():
    x = np.ones((5, 1))
    y = np.linspace(0, 1, 5)
    data = Dataset.from_arrays(x, y, x, y, task="regression", y_mean=3.0, y_std=2.0)
    assert data.class_names == () and data.n_outputs == 1
    assert (data.y_mean, data.y_std) == (3.0, 2.0)
    assert data.majority_class_fraction is None


X = np.zeros((4, 2))
Y = np.array([0, 1, 0, 1])


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (
            (np.zeros(4), Y, X, Y),
            {"task": "binary"},
            r"x_train must be \(rows, \.\.\.\).*but got shape \(4,\); reshape it, e.g. x.reshape\(len\(x\), -1\)",
        ),
        (
            (X, Y[:, None], X, Y),
            {"task": "binary"},
            r"y_train must be 1-D \(rows,\), but got shape \(4, 1\)",
        ),
        (
            (X, Y[:3], X, Y),
            {"task": "binary"},
            r"x_train and y_train must have the same number of rows.*4.*3",
        ),
        (
            (X, Y, np.zeros((4, 3)), Y),
            {"task": "binary"},
            r"same features.*x_train: 2, x_val: 3",
        ),
        (
            (np.full((4, 2), np.nan), Y, X, Y),
            {"task": "binary"},
            "x_train must be finite",
        ),
        (
            (X, Y * 2, X, Y),
            {"task": "binary"},
            r"task='binary' needs y_train in \{0, 1\}, but got values \[0, 2\]",
        ),
        ((X, Y - 1, X, Y), {"task": "multiclass"}, "class indices 0..K-1"),
        (
            (X, Y, X, Y),
            {"task": "classify"},
            "task must be one of 'binary', 'multiclass', 'regression', but got task='classify'",
        ),
        (
            (X, Y, X, Y),
            {"task": "binary", "x_test": X},
            "x_test and y_test must be given together",
        ),
        (
            (X, Y, X, Y),
            {"task": "binary", "feature_names": ["a"]},
            "feature_names must name every feature, but got 1 names for 2 features",
        ),
        (
            (X, Y + 1, X, Y),
            {"task": "multiclass", "class_names": ["a", "b"]},
            r"y_train must hold class indices 0..1.*from 1 to 2",
        ),
        (
            (X, np.zeros(4), X, np.zeros(4)),
            {"task": "multiclass"},
            "at least 2 classes",
        ),
        ((X.astype(str), Y, X, Y), {"task": "binary"}, "x_train must hold numbers"),
        (
            (X, Y, X[:0], Y[:0]),
            {"task": "binary"},
            r"`n_train >= 1 and n_val >= 1` must hold.*n_val=0",
        ),
    ],
)
def test_from_arrays_rejects(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Dataset.from_arrays(*args, **kwargs)


def test_dataset_is_frozen():
    data = _small()
    with pytest.raises(AttributeError):
        data.task = "regression"


def test_from_arrays_refuses_non_finite_features():
    x = np.ones((4, 2), np.float32)
    x[1, 1] = np.nan
    with pytest.raises(ValueError, match="x_train must be finite"):
        Dataset.from_arrays(x, np.array([0, 1, 0, 1]), np.ones((2, 2)), np.array([0, 1]), task="binary")


# --- Dataset.from_arrays: any input shape, JAX arrays, the automatic split ---------------------


def test_from_arrays_images_round_trip():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 8, 8, 1)).astype(np.uint8)  # (rows, height, width, channels)
    y = np.array([0, 1, 2] * 4)
    data = Dataset.from_arrays(images[:9], y[:9], images[9:], y[9:], task="multiclass")
    assert data.input_shape == (8, 8, 1)
    assert data.n_features == 64
    assert data.x_train.shape == (9, 8, 8, 1) and data.x_val.shape == (3, 8, 8, 1)
    assert data.x_test.shape == (0, 8, 8, 1) and data.y_test.shape == (0,)
    assert data.x_train.dtype == np.float32
    np.testing.assert_array_equal(data.x_train, images[:9])
    assert data.feature_names == ()
    assert data.class_names == ("0", "1", "2")
    assert "rows: 9 train / 3 val / 0 test; input shape (8, 8, 1) (64 values per row)" in data.summary()
    assert repr(data).endswith("n_features=64, input_shape=(8, 8, 1))")
    images[0] = 0  # the dataset holds a copy
    assert data.x_train[0].any()


def test_from_arrays_sequences():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 5, 3))  # (rows, steps, features)
    y = rng.normal(size=20)
    data = Dataset.from_arrays(x[:12], y[:12], x[12:16], y[12:16], task="regression", x_test=x[16:], y_test=y[16:])
    assert data.input_shape == (5, 3) and data.n_features == 15
    assert (data.n_train, data.n_val, data.n_test) == (12, 4, 4)
    np.testing.assert_allclose(data.x_test, x[16:].astype(np.float32))
    assert data.y_mean == pytest.approx(y[:12].mean())


def test_table_keeps_its_feature_names_and_summary():
    data = _small()
    assert data.input_shape == (2,) and data.n_features == 2
    assert data.feature_names == ("x0", "x1")
    assert "rows: 10 train / 3 val / 0 test; 2 features" in data.summary()
    assert repr(data).endswith("n_features=2)")


def test_from_arrays_names_every_value_of_an_image_or_none():
    x, y = np.zeros((6, 2, 2)), np.array([0, 1] * 3)
    names = [f"pixel{i}" for i in range(4)]
    assert Dataset.from_arrays(x, y, x, y, task="binary", feature_names=names).feature_names == tuple(names)
    with pytest.raises(ValueError, match=r"feature_names must be \(\) or name every value.*3 names for 4 values"):
        Dataset.from_arrays(x, y, x, y, task="binary", feature_names=names[:3])


def test_from_arrays_takes_jax_arrays():
    # jax.device_put compiles nothing (jnp.asarray compiles a small copy program).
    x = np.arange(40, dtype=np.float32).reshape(10, 2, 2)
    y = np.array([0, 1, 2, 0, 1] * 2, np.int32)
    data = Dataset.from_arrays(
        jax.device_put(x[:8]), jax.device_put(y[:8]), jax.device_put(x[8:]), jax.device_put(y[8:]), task="multiclass"
    )
    for array in (data.x_train, data.x_val, data.x_test, data.y_train, data.y_val):
        assert type(array) is np.ndarray and not array.flags.writeable
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    np.testing.assert_array_equal(data.x_train, x[:8])
    np.testing.assert_array_equal(data.y_val, y[8:])
    assert data.input_shape == (2, 2)

    prices = jax.device_put(np.linspace(100.0, 200.0, 10, dtype=np.float32))
    split = Dataset.from_arrays(jax.device_put(x), prices, task="regression", seed=2)  # the automatic split, from JAX
    assert (split.n_train, split.n_val) == (8, 2)
    assert type(split.x_train) is np.ndarray and split.x_train.dtype == np.float32


@pytest.mark.parametrize(
    "x_val, x_test, shown",
    [
        (np.zeros((4, 8, 8, 3)), None, r"x_train: \(8, 8, 1\), x_val: \(8, 8, 3\)"),
        (np.zeros((4, 64)), None, r"x_train: \(8, 8, 1\), x_val: \(64,\)"),
        (np.zeros((4, 8, 8, 1)), np.zeros((4, 1, 8, 8)), r"x_train: \(8, 8, 1\), x_test: \(1, 8, 8\)"),
    ],
)
def test_from_arrays_refuses_another_input_shape(x_val, x_test, shown):
    y = np.array([0, 1, 0, 1])
    test = {} if x_test is None else {"x_test": x_test, "y_test": y}
    with pytest.raises(ValueError, match=r"every split must have the same input shape.*" + shown):
        Dataset.from_arrays(np.zeros((4, 8, 8, 1)), y, x_val, y, task="binary", **test)


def _rows_and_labels(counts):
    """x whose one feature is the row number (so the split can be undone), labels with `counts` rows per class."""
    y = np.repeat(np.arange(len(counts)), counts)
    x = np.arange(len(y), dtype=np.float32)[:, None]
    return x, y


def _row_numbers(data):
    return [x[:, 0].astype(int) for x in (data.x_train, data.x_val, data.x_test)]


@pytest.mark.parametrize("val_fraction, test_fraction", [(0.2, 0.0), (0.25, 0.15)])
def test_automatic_split_is_stratified_and_uses_every_row_once(val_fraction, test_fraction):
    counts = [50, 31, 12, 4]
    x, y = _rows_and_labels(counts)
    data = Dataset.from_arrays(x, y, task="multiclass", val_fraction=val_fraction, test_fraction=test_fraction, seed=3)
    train, val, test = _row_numbers(data)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(y)))
    np.testing.assert_array_equal(data.y_train, y[train])
    np.testing.assert_array_equal(data.y_val, y[val])
    np.testing.assert_array_equal(data.y_test, y[test])
    for k, count in enumerate(counts):
        assert abs((data.y_val == k).sum() - count * val_fraction) <= 1  # within one row of the fraction
        assert abs((data.y_test == k).sum() - count * test_fraction) <= 1
        assert (data.y_train == k).any() and (data.y_val == k).any()  # every class in train and val
    assert data.class_names == ("0", "1", "2", "3")
    note = f"split {data.n_train}/{data.n_val}/{data.n_test} rows (train/val/test) with seed 3, stratified by 'y'"
    assert data.preprocessing == (note,)


def test_automatic_split_defaults_and_seed():
    x, y = _rows_and_labels([30, 20])
    default = Dataset.from_arrays(x, y, task="binary")
    assert (default.n_train, default.n_val, default.n_test) == (40, 10, 0)  # val_fraction=0.2, no test rows
    same = Dataset.from_arrays(x, y, task="binary", seed=0)
    other = Dataset.from_arrays(x, y, task="binary", seed=1)
    for a, b in zip(_row_numbers(default), _row_numbers(same)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(_row_numbers(other)[1], _row_numbers(default)[1])
    assert default.feature_names == ("x0",)  # a table keeps its default names


def test_automatic_split_keeps_each_split_alone_in_memory():
    x = np.random.default_rng(0).normal(size=(40, 4, 4)).astype(np.float32)
    data = Dataset.from_arrays(x, np.arange(40) % 2, task="binary", test_fraction=0.25)
    for part in (data.x_train, data.x_val, data.x_test):
        assert not np.shares_memory(part, x)
        assert part.base.size == part.size  # a view of its own rows only, not of a copy of every row


def test_automatic_split_with_a_given_test_split():
    x, y = _rows_and_labels([20, 20])
    x_test, y_test = np.full((3, 1), -1.0), np.array([0, 1, 1])
    for test_fraction in ({}, {"test_fraction": 0.0}):
        data = Dataset.from_arrays(x, y, task="binary", x_test=x_test, y_test=y_test, **test_fraction)
        assert (data.n_train, data.n_val, data.n_test) == (32, 8, 3)
        np.testing.assert_array_equal(data.x_test, x_test)
        np.testing.assert_array_equal(data.y_test, y_test)
        assert sorted(np.concatenate(_row_numbers(data)[:2]).tolist()) == list(range(40))


def test_regression_split_standardizes_with_the_train_rows():
    x = np.arange(50, dtype=np.float32)[:, None]
    y = np.exp(np.arange(50) / 10.0)  # skewed: the val rows move the mean
    data = Dataset.from_arrays(x, y, task="regression", val_fraction=0.3, seed=4)
    train, val, _ = _row_numbers(data)
    assert data.y_mean == pytest.approx(y[train].mean())
    assert data.y_std == pytest.approx(y[train].std())
    assert abs(y[train].mean() - y.mean()) > 0.1
    np.testing.assert_allclose(data.y_train.mean(), 0.0, atol=MEAN_ATOL)
    np.testing.assert_allclose(data.y_train.std(), 1.0, atol=STD_ATOL)
    np.testing.assert_allclose(data.y_val, (y[val] - y[train].mean()) / y[train].std(), rtol=1e-5, atol=1e-5)
    assert data.preprocessing[0] == "split 35/15/0 rows (train/val/test) with seed 4, at random"
    assert data.preprocessing[1].startswith("standardized target 'y' with train mean")


XS = np.zeros((10, 3, 3))
YS = np.array([0, 1] * 5)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((XS, YS, XS), {}, r"x_val and y_val must be given together.*pass both, or neither to split x_train's rows"),
        ((XS, YS, None, YS), {}, r"x_val and y_val must be given together, but got x_val=None, y_val=an array"),
        (
            (XS, YS, XS, YS),
            {"val_fraction": 0.3},
            r"but got \(val_fraction=0.3\) with x_val and y_val given; leave them out to validate on x_val",
        ),
        ((XS, YS, XS, YS), {"seed": 1, "test_fraction": 0.1}, r"\(test_fraction=0.1, seed=1\) with x_val and y_val"),
        (
            (XS, YS),
            {"test_fraction": 0.2, "x_test": XS, "y_test": YS},
            r"test_fraction=0.2 asks for a test split.*leave test_fraction out \(or pass 0\) to test on x_test",
        ),
        ((XS, YS), {"val_fraction": 1.5}, r"`0 < val_fraction < 1` must hold, but got val_fraction=1.5"),
        ((XS, YS), {"val_fraction": 0.5, "test_fraction": 0.5}, r"`val_fraction \+ test_fraction < 1` must hold"),
        ((XS, YS), {"seed": -1}, r"seed must be a non-negative integer, but got seed=-1; pass e.g. seed=0"),
        ((XS[:2], YS[:2]), {}, r"`n_train >= 2 and n_val >= 1` must hold.*use more rows or other fractions"),
        (
            (XS, YS[:8]),
            {},
            r"x_train and y_train must have the same number of rows, but got \(x_train: 10, y_train: 8\)",
        ),
        ((XS.reshape(-1), np.zeros(90)), {}, r"x_train must be \(rows, \.\.\.\).*x.reshape\(len\(x\), -1\)"),
    ],
)
def test_automatic_split_rejects(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Dataset.from_arrays(*args, task="binary", **kwargs)
