"""`load_csv`: the steps from a CSV file to a `Dataset`, in order.

1. read the file (pandas; the separator detected unless `sep=` is given),
   or take the DataFrame given;
2. check the target and `drop` names; drop rows whose target is missing;
3. drop the `drop` columns and id-like columns: text with every value
   distinct (not dates), and row counters (integers, every value distinct,
   filling their range: 1, 2, 3, ...);
4. decide each column's kind on all rows: numeric (numbers, and text that
   mostly parses as numbers), boolean, date (text that mostly parses as
   dates of one format, `dates`), categorical (other text);
5. encode the target and settle the task (inferred unless given);
6. split the rows (stratified by class for classification);
7. fit the preprocessing on the training rows (`fitting`) and apply it to
   every split (`encoding`): impute missing numbers with the train median,
   one-hot encode text columns (categories seen in train; rare ones, past
   `max_categories` or under `min_frequency`, pooled), booleans to 0/1,
   dates to days since 1970-01-01, year, month and weekday,
   standardize every feature with the train mean and std; a regression
   target is standardized likewise (`target`).

The fitted `Preprocessing` is kept as `Dataset.preprocessing_fit`: it applies
the same steps to new rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd

from sweeps.data import columns, fitting, reading
from sweeps.data import target as targets
from sweeps.data.checks import VAL_FRACTION, check_fractions, check_one_hot_limits, check_seed, check_task
from sweeps.data.dataset import Dataset
from sweeps.data.fitting import MAX_CATEGORIES, MIN_FREQUENCY
from sweeps.data.messages import name_list
from sweeps.data.splitting import split_rows


def load_csv(
    path: str | os.PathLike | pd.DataFrame,
    target: str,
    *,
    task: str | None = None,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = 0.0,
    seed: int = 0,
    drop: Iterable[str] | str = (),
    sep: str | None = None,
    encoding: str | None = None,
    max_categories: int | None = MAX_CATEGORIES,
    min_frequency: int | float | None = MIN_FREQUENCY,
) -> Dataset:
    """Reads a CSV file (or a pandas DataFrame) into a preprocessed, split
    `Dataset`.

    Args:
        path: the CSV file (str or pathlib.Path), with a header row; or a
            pandas DataFrame, preprocessed the same way (`source` is then
            "<DataFrame>").
        target: name of the column to predict.
        task: "binary", "multiclass" or "regression"; None infers it from the
            target: text or bool -> "binary" with 2 classes, else
            "multiclass"; numbers with 2 distinct values -> "binary";
            integers with at most 20 distinct values -> "multiclass";
            other numbers -> "regression". A multiclass target (given or
            inferred) with more than 20 classes, over half of them a single
            row, is refused (ValueError, not a warning): it is a continuous
            number (use "regression"), an id or free text.
        val_fraction: share of rows for validation, 0 < val_fraction < 1.
        test_fraction: share of rows held out for testing, 0 <= test_fraction
            < 1, with val_fraction + test_fraction < 1.
        seed: seed of the shuffle (`np.random.default_rng(seed)`).
        drop: column names to leave out (a single name may be a str).
        sep: the file's separator, e.g. ";" or "\t"; None detects it from
            the header row (",", ";", tab or "|": the one that splits it into
            the most names).
        encoding: the file's text encoding, e.g. "latin-1"; None is UTF-8.
        max_categories: the most features one text column becomes (an
            integer >= 1), as in scikit-learn's OneHotEncoder: past it, only
            the `max_categories - 1` most frequent train categories keep an
            indicator and the rest share one, "name=<infrequent>". Default
            30: a column of thousands of values (cities, product codes)
            cannot multiply the width, and the memory, of every trial. None:
            no limit.
        min_frequency: a train category with fewer rows than this (an
            integer >= 1, or a float in (0, 1): that share of the training
            rows) joins the pooled "name=<infrequent>" indicator. Default 5:
            an indicator set on a handful of rows teaches a weight that is
            mostly noise. None (or 1): every category counts. Values unseen
            in train encode as "<infrequent>" in a column that pools, else
            as all zeros. A column of more than 30 distinct training values
            is warned about, with how it was encoded.

    Returns:
        A `Dataset` whose x arrays are (rows, features) float32 and y arrays
        (rows,) as described there; `preprocessing` lists every step.

    Raises:
        TypeError: when path is neither a path nor a DataFrame, or sep or
            encoding is not a str.
        ValueError: when the file is missing, empty or unreadable, a column
            name is used twice, a name is not a column, the target has one
            class, a column has no values, the fractions are out of range,
            or a split would be too small. The message names the value and
            the fix.

    Example:
        >>> data = load_csv("data/telco_customer_churn.csv", target="Churn")
        >>> data.x_train.shape, data.y_train.dtype
        ((5634, 45), dtype('float32'))
    """
    check_fractions(val_fraction, test_fraction)
    check_task(task, allow_none=True)
    check_seed(seed)
    check_one_hot_limits(max_categories, min_frequency)
    source = reading.source_of(path)
    notes: list[str] = []

    frame = reading.read_table(path, source, sep=sep, encoding=encoding, notes=notes)
    drop = reading.check_names(frame, target, drop, source)
    frame = targets.drop_missing_target(frame, target, source, notes)
    features = columns.drop_columns(frame.drop(columns=[target]), drop, notes)
    features = columns.drop_id_columns(features, notes)
    columns.check_no_empty_columns(features, source)
    described, coerced = fitting.describe_columns(features)
    if features.shape[1] == 0:
        raise ValueError(
            f"no feature columns are left in {source} after dropping "
            f"{name_list(drop) or 'nothing'} and id-like columns; keep at least one "
            "column besides the target (check drop=)"
        )

    task, labels, class_names = targets.encode_target(frame[target], task, source, notes)
    rows = split_rows(labels, task, val_fraction, test_fraction, seed, target, source, notes)
    target_notes: list[str] = []
    ys, y_mean, y_std = targets.finish_labels([labels[index] for index in rows], task, target, target_notes)
    fit, xs, feature_notes = fitting.fit_preprocessing(
        described,
        coerced,
        [features.iloc[index].reset_index(drop=True) for index in rows],
        dropped=tuple(name for name in frame.columns if name != target and name not in features),
        target=target,
        task=task,
        class_names=class_names,
        y_mean=y_mean,
        y_std=y_std,
        source=source,
        max_categories=max_categories,
        min_frequency=min_frequency,
    )
    notes += feature_notes + target_notes

    return Dataset(
        x_train=xs[0],
        x_val=xs[1],
        x_test=xs[2],
        y_train=ys[0],
        y_val=ys[1],
        y_test=ys[2],
        task=task,
        target=target,
        feature_names=fit.feature_names,
        class_names=class_names,
        y_mean=y_mean,
        y_std=y_std,
        preprocessing=tuple(notes),
        source=source,
        preprocessing_fit=fit,
    )
