"""Tests of the fitted preprocessing (sweeps.data.Preprocessing): new rows
encode exactly as the training rows did, whatever the column order; the
object survives a JSON round trip; bad new rows are refused or reported."""

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

from sweeps.data import Dataset, Preprocessing, TransformReport, load_csv
from sweeps.data.splitting import split_rows

CHURN = pathlib.Path(__file__).resolve().parents[1] / "data" / "telco_customer_churn.csv"


@pytest.fixture(scope="module")
def churn():
    return load_csv(CHURN, target="Churn", test_fraction=0.1, seed=3)


@pytest.fixture(scope="module")
def churn_rows():
    """The churn file as read, and its (train, val, test) row indices."""
    frame = pd.read_csv(CHURN)
    labels = (frame["Churn"] == "Yes").to_numpy().astype(np.int64)
    rows = split_rows(labels, "binary", 0.2, 0.1, 3, "Churn", "churn", [])
    return frame, rows


def _mixed_table(n=200):
    """Numbers with blanks, "?" and inf; text with missing cells; booleans; a
    constant; the target is the row number, so the split can be undone."""
    rng = np.random.default_rng(1)
    b = rng.normal(size=n).round(3).astype(object)
    b[::10] = " "
    b[5] = "?"
    c = rng.choice(["red", "green", "blue"], size=n).astype(object)
    c[7] = "violet"
    c[3] = c[4] = None
    return pd.DataFrame(
        {
            "a": np.where(np.arange(n) % 17 == 0, np.inf, rng.lognormal(size=n)),
            "b": b,
            "c": c,
            "flag": rng.random(n) < 0.3,
            "const": 1.5,
            "row": np.arange(n),
        }
    )


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    path = tmp_path_factory.mktemp("mixed") / "mixed.csv"
    _mixed_table().to_csv(path, index=False)
    data = load_csv(path, target="row", test_fraction=0.2, min_frequency=None)  # 'violet' (1 row) keeps its feature
    rows = [
        np.rint(y.astype(np.float64) * data.y_std + data.y_mean).astype(int)
        for y in (data.y_train, data.y_val, data.y_test)
    ]
    return data, pd.read_csv(path), rows


# --- new rows encode as the training rows did ---------------------------------------


def test_transform_reproduces_the_churn_splits(churn, churn_rows):
    frame, rows = churn_rows
    fit = churn.preprocessing_fit
    for x, index in zip((churn.x_train, churn.x_val, churn.x_test), rows):
        got = fit.transform(frame.iloc[index])
        assert got.dtype == np.float32 and got.shape == x.shape
        np.testing.assert_array_equal(got, x)


def test_transform_reproduces_the_mixed_splits(mixed):
    data, frame, rows = mixed
    fit = data.preprocessing_fit
    for x, index in zip((data.x_train, data.x_val, data.x_test), rows):
        np.testing.assert_array_equal(fit.transform(frame.iloc[index]), x)


def test_column_order_and_extra_columns_do_not_matter(churn, churn_rows):
    frame, (train, _, _) = churn_rows
    rows = frame.iloc[train]
    shuffled = rows[list(np.random.default_rng(0).permutation(rows.columns))]
    shuffled = shuffled.assign(unrelated=1.0).drop(columns=["Churn", "customerID"])
    np.testing.assert_array_equal(churn.preprocessing_fit.transform(shuffled), churn.x_train)


def test_what_was_fitted(churn, churn_rows):
    fit = churn.preprocessing_fit
    assert fit.feature_names == churn.feature_names
    assert (fit.target, fit.task, fit.class_names) == ("Churn", "binary", ("No", "Yes"))
    assert fit.dropped == ("customerID",)
    assert fit.input_columns[:3] == ("gender", "SeniorCitizen", "Partner")
    kinds = {column.name: column for column in fit.columns}
    assert kinds["tenure"].kind == "numeric"
    assert kinds["TotalCharges"].kind == "numeric"  # text with blanks in the file
    assert kinds["Contract"].kind == "categorical"
    assert kinds["Contract"].categories == ("Month-to-month", "One year", "Two year")
    assert len(fit.mean) == len(fit.scale) == churn.n_features
    frame, (train, _, _) = churn_rows
    tenure = frame["tenure"].to_numpy(dtype=float)[train]
    j = fit.feature_names.index("tenure")
    assert (fit.mean[j], fit.scale[j]) == pytest.approx((tenure.mean(), tenure.std()), rel=1e-12)
    charges = pd.to_numeric(frame["TotalCharges"], errors="coerce").to_numpy()[train]
    assert kinds["TotalCharges"].median == np.nanmedian(charges)


# --- JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["churn", "mixed"])
def test_json_round_trip(which, churn, churn_rows, mixed):
    data, frame = (churn, churn_rows[0]) if which == "churn" else mixed[:2]
    fit = data.preprocessing_fit
    text = json.dumps(fit.to_json(), allow_nan=False)
    same = Preprocessing.from_json(json.loads(text))
    assert same == fit
    np.testing.assert_array_equal(same.transform(frame), fit.transform(frame))


def test_json_holds_plain_types_only(mixed):
    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or type(value) in (str, int, float, bool)

    assert plain(mixed[0].preprocessing_fit.to_json())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: {**d, "format": "other"}, "needs the dict that Preprocessing.to_json wrote"),
        (lambda d: {**d, "version": 99}, r"reads preprocessing versions \[1, 2\], but got version=99"),
        (lambda d: {k: v for k, v in d.items() if k != "mean"}, "lacks the key 'mean'"),
        (lambda d: {**d, "scale": d["scale"][:-1]}, "mean and scale need one value per feature"),
    ],
)
def test_from_json_refuses(mixed, edit, message):
    with pytest.raises(ValueError, match=message):
        Preprocessing.from_json(edit(mixed[0].preprocessing_fit.to_json()))


# --- bad or unusual new rows ------------------------------------------------------------


def _new_rows(**changes):
    rows = _mixed_table().head(4).drop(columns=["row"])
    return rows.assign(**changes)


def test_missing_columns_are_named(mixed):
    with pytest.raises(
        ValueError,
        match=r"lack the columns 'b', 'flag'.*expected columns.*'a', 'b', 'c', 'flag', 'const'",
    ):
        mixed[0].preprocessing_fit.transform(_new_rows().drop(columns=["b", "flag"]))


def test_non_numeric_value_names_column_row_and_value(mixed):
    rows = _new_rows(b=["0.5", "1.5", "abc", "n.a."])
    with pytest.raises(
        ValueError,
        match=r"column 'b' holds 'abc' in row 2 and 1 more rows, but 'b' is a numeric column.*train median",
    ):
        mixed[0].preprocessing_fit.transform(rows)


def test_blank_and_known_missing_numbers_get_the_train_median(mixed):
    fit = mixed[0].preprocessing_fit
    b = next(column for column in fit.columns if column.name == "b")
    assert b.missing_values == ("?",)  # seen in the training file: read as missing
    rows = _new_rows(b=[" ", np.nan, "?", "NA"], a=[np.inf, 1.0, None, 2.0])
    x, report = fit.transform_with_report(rows)
    j = fit.feature_names.index("b")
    expected = (b.median - fit.mean[j]) / fit.scale[j]
    np.testing.assert_allclose(x[:, j], expected, rtol=1e-6)
    assert report.imputed == {"a": 2, "b": 4}


def test_unseen_category_is_all_zero_and_counted(mixed):
    fit = mixed[0].preprocessing_fit
    rows = _new_rows(c=["red", "purple", None, "purple"])
    x, report = fit.transform_with_report(rows)
    raw = x * np.asarray(fit.scale, np.float32) + np.asarray(fit.mean, np.float32)
    indicators = [j for j, name in enumerate(fit.feature_names) if name.startswith("c=")]
    np.testing.assert_allclose(raw[1:, indicators], 0.0, atol=1e-5)
    assert isinstance(report, TransformReport)
    assert report.unseen == {"c": 2} and report.unseen_values == {"c": ("purple",)}
    assert report.missing == {"c": 1}
    assert "2 values of 'c' not seen in train encoded as all-zero: ['purple']" in (report.summary())
    np.testing.assert_array_equal(fit.transform(rows), x)


def test_booleans_accept_text_and_refuse_other_values(mixed):
    fit = mixed[0].preprocessing_fit
    as_bool = fit.transform(_new_rows(flag=[True, False, True, False]))
    as_text = fit.transform(_new_rows(flag=["true", "False", "1", "0"]))
    np.testing.assert_array_equal(as_bool, as_text)
    with pytest.raises(ValueError, match=r"column 'flag' holds 'maybe' in row 1.*True or False"):
        fit.transform(_new_rows(flag=[True, "maybe", False, True]))


def test_transform_needs_a_data_frame(mixed):
    with pytest.raises(TypeError, match="takes a pandas DataFrame.*got dict"):
        mixed[0].preprocessing_fit.transform({"a": [1.0]})


def test_duplicate_new_columns_are_refused(mixed):
    rows = _new_rows()
    rows = pd.concat([rows, rows[["a"]]], axis=1)
    with pytest.raises(ValueError, match="duplicate column names 'a'"):
        mixed[0].preprocessing_fit.transform(rows)


# --- decoding model outputs -----------------------------------------------------------


def test_decode_labels_and_target(churn, mixed):
    fit = churn.preprocessing_fit
    assert fit.decode_labels(np.array([1, 0])).tolist() == ["Yes", "No"]
    with pytest.raises(ValueError, match=r"integers 0..1.*'No', 'Yes'.*\[2\]"):
        fit.decode_labels([0, 2])
    with pytest.raises(ValueError, match="use decode_labels"):
        fit.decode_target([0.0])
    regression = mixed[0]
    back = regression.preprocessing_fit.decode_target(regression.y_train)
    rows = np.rint(back).astype(int)
    np.testing.assert_allclose(back, rows, atol=1e-4)
    with pytest.raises(ValueError, match="use decode_target"):
        regression.preprocessing_fit.decode_labels([0])


# --- the Dataset ------------------------------------------------------------------------


def test_notes_stay_a_tuple_of_text(churn):
    assert isinstance(churn.preprocessing, tuple)
    assert all(isinstance(note, str) for note in churn.preprocessing)


def test_from_arrays_has_no_fitted_preprocessing():
    x, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    assert Dataset.from_arrays(x, y, x, y, task="binary").preprocessing_fit is None


def test_dataset_refuses_a_preprocessing_of_other_data(churn, mixed):
    with pytest.raises(ValueError, match="preprocessing_fit.feature_names must equal"):
        Dataset(
            **{name: getattr(churn, name) for name in ("x_train", "x_val", "x_test", "y_train", "y_val", "y_test")},
            task="binary",
            target="Churn",
            feature_names=churn.feature_names,
            class_names=churn.class_names,
            preprocessing_fit=mixed[0].preprocessing_fit,
        )


# --- dates ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dated(tmp_path_factory):
    rng = np.random.default_rng(0)
    when = rng.choice(pd.date_range("2019-06-01", periods=300).strftime("%Y-%m-%d"), 400)
    when = when.astype(object)
    when[:3] = ["", "unknown", None]
    table = pd.DataFrame({"when": when, "x": rng.normal(size=400), "y": [0, 1] * 200})
    path = tmp_path_factory.mktemp("dated") / "dated.csv"
    table.to_csv(path, index=False)
    return load_csv(path, target="y"), pd.read_csv(path)


def test_dates_in_new_rows_convert_as_in_training(dated):
    data, frame = dated
    fit = data.preprocessing_fit
    same = Preprocessing.from_json(json.loads(json.dumps(fit.to_json())))
    assert same == fit and same.columns[0].date_format == "ISO8601"
    np.testing.assert_array_equal(same.transform(frame), fit.transform(frame))
    text = pd.DataFrame({"when": ["2019-07-04", "2020-01-01", "", "unknown"], "x": 0.0})
    stamps = text.assign(when=pd.to_datetime(text["when"], errors="coerce"))
    x, report = fit.transform_with_report(text)
    np.testing.assert_array_equal(fit.transform(stamps), x)
    assert report.imputed == {"when": 2}
    raw = x[:2, :4].astype(np.float64) * fit.scale[:4] + fit.mean[:4]
    np.testing.assert_allclose(raw, [[18081, 2019, 7, 3], [18262, 2020, 1, 2]], atol=0.01)


def test_unreadable_date_in_new_rows_names_the_format(dated):
    rows = pd.DataFrame({"when": ["2019-07-04", "July 4th"], "x": 0.0})
    with pytest.raises(
        ValueError,
        match=r"column 'when' holds 'July 4th' in row 1, but 'when' is a date column "
        r"read with format 'ISO8601'; give a date such as '2019-",
    ):
        dated[0].preprocessing_fit.transform(rows)
