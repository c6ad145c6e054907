"""Fitting the feature preprocessing: each column's kind on the whole file,
its statistics on the training split, and notes that say what was done.

Column *types* describe the schema, so they are decided on every row; the
statistics the model learns (medians, categories, means, stds) come from the
training split only, so validation and test rows never leak into them. The
fitted `Preprocessing` then encodes every split, so the training arrays and
new rows go through the same code.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd

from sweeps.data.columns import (
    as_text,
    is_text,
    looks_numeric,
    missing_mask,
    parse_numbers,
)
from sweeps.data.dates import date_format, day_text, parse_days
from sweeps.data.encoding import (
    INFREQUENT,
    FittedColumn,
    TransformReport,
    encode_columns,
    numbers_of,
)
from sweeps.data.preprocessing import Preprocessing

# One-hot limits per text column (load_csv's defaults, as scikit-learn's OneHotEncoder names them). At most
# MAX_CATEGORIES features: the MAX_CATEGORIES - 1 most frequent train categories and one pooled
# "<infrequent>" indicator for the rest, so a column of thousands of values (cities, product codes) cannot
# multiply the width, and the memory, of every trial; a category with fewer than MIN_FREQUENCY training
# rows is pooled too: an indicator set on a handful of rows teaches a weight that is mostly noise.
MAX_CATEGORIES = 30
MIN_FREQUENCY = 5


def describe_columns(features: pd.DataFrame) -> tuple[list[FittedColumn], set[str]]:
    """Each column's kind, decided on all rows (nothing fitted yet).

    Booleans are "boolean"; numbers and numeric-looking text (see
    `columns.looks_numeric`) are "numeric"; datetimes and date-like text
    (see `dates.date_format`) are "date"; other text is "categorical".

    Returns:
        (one unfitted `FittedColumn` per column, in order; the names of the
        numeric columns read from text).
    """
    described, coerced = [], set()
    for name, column in features.items():
        if pd.api.types.is_bool_dtype(column):
            described.append(FittedColumn(name, "boolean"))
        elif not is_text(column):
            described.append(FittedColumn(name, "numeric"))
        elif pd.api.types.is_datetime64_any_dtype(column):
            described.append(FittedColumn(name, "date", date_format="ISO8601"))
        elif looks_numeric(column):
            coerced.add(name)
            described.append(FittedColumn(name, "numeric", missing_values=_non_numeric_text(column)))
        elif (fmt := date_format(column)) is not None:
            described.append(
                FittedColumn(
                    name,
                    "date",
                    missing_values=_unparsed_dates(column, fmt),
                    date_format=fmt,
                )
            )
        else:
            described.append(FittedColumn(name, "categorical"))
    return described, coerced


def _non_numeric_text(column: pd.Series) -> tuple[str, ...]:
    """The distinct present values (stripped) that do not parse as numbers."""
    unparsed = parse_numbers(column).isna().to_numpy() & ~missing_mask(column)
    return tuple(sorted(set(as_text(column).str.strip()[unparsed].tolist())))


def _unparsed_dates(column: pd.Series, fmt: str) -> tuple[str, ...]:
    """The distinct present values (stripped) that do not parse as dates."""
    unparsed = np.isnan(parse_days(column, fmt)) & ~missing_mask(column)
    return tuple(sorted(set(as_text(column).str.strip()[unparsed].tolist())))


def fit_preprocessing(
    described: list[FittedColumn],
    coerced: set[str],
    parts: list[pd.DataFrame],
    *,
    dropped: tuple[str, ...],
    target: str,
    task: str,
    class_names: tuple[str, ...],
    y_mean: float,
    y_std: float,
    source: str,
    max_categories: int | None = MAX_CATEGORIES,
    min_frequency: int | float | None = MIN_FREQUENCY,
) -> tuple[Preprocessing, list[np.ndarray], list[str]]:
    """Fits medians, categories, means and stds on the training split.

    Args:
        described: the columns' kinds, from `describe_columns`.
        coerced: the numeric columns read from text (for the notes).
        parts: the feature columns of the [train, val, test] rows, as read.
        dropped, target, task, class_names, y_mean, y_std: recorded in the
            `Preprocessing`, see there.
        source: where the data came from, for messages.
        max_categories, min_frequency: the one-hot limits, see `load_csv`.

    Returns:
        (the fitted `Preprocessing`, [(rows, features) float32 per split],
        the notes of every step in order).

    Raises:
        ValueError: when a numeric column has no value in the training split.
    """
    train = parts[0]
    min_rows = _min_rows(min_frequency, len(train))
    columns = tuple(_fit_column(fitted, train, source, max_categories, min_rows) for fitted in described)
    raws, reports = zip(*(encode_columns(columns, part) for part in parts))
    mean = raws[0].mean(axis=0)
    std = raws[0].std(axis=0)
    constant = std <= 1e-12 * np.abs(mean)
    fit = Preprocessing(
        columns=columns,
        feature_names=tuple(name for column in columns for name in column.feature_names),
        mean=tuple(mean.tolist()),
        scale=tuple(np.where(constant, 1.0, std).tolist()),
        dropped=dropped,
        target=target,
        task=task,
        class_names=class_names,
        y_mean=y_mean,
        y_std=y_std,
    )
    notes = _notes(columns, coerced, reports)
    notes += _pooling_notes(columns, reports[0], max_categories, min_frequency, min_rows)
    note = f"standardized {raws[0].shape[1]} features with train mean and std"
    if constant.any():
        note += f" ({int(constant.sum())} constant in train, now 0)"
    notes.append(note)
    return fit, [fit.standardize(raw) for raw in raws], notes


def _min_rows(min_frequency: int | float | None, rows: int) -> int:
    """The fewest training rows a category needs for an indicator of its own: min_frequency as a count,
    or as a share (a float below 1) of the training rows."""
    if min_frequency is None:
        return 1
    if isinstance(min_frequency, float) and min_frequency < 1:
        return max(1, math.ceil(min_frequency * rows))
    return int(min_frequency)


def pool_categories(
    counts: pd.Series, max_categories: int | None, min_rows: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the categories with an indicator each, sorted; the ones pooled into "<infrequent>", sorted).

    As scikit-learn's OneHotEncoder: a category with fewer than `min_rows` rows is infrequent; then, while
    the frequent ones and the pooled indicator would be more than `max_categories` features, only the
    `max_categories - 1` most frequent stay (ties: the first in sorted order).

    Args:
        counts: training rows per category (present values only).

    Examples:
        >>> counts = pd.Series({"a": 50, "b": 40, "c": 3, "d": 30, "e": 30})
        >>> pool_categories(counts, max_categories=3, min_rows=5)
        (('a', 'b'), ('c', 'd', 'e'))
        >>> pool_categories(counts, max_categories=None, min_rows=1)
        (('a', 'b', 'c', 'd', 'e'), ())
    """
    order = sorted(counts.index, key=lambda category: (-int(counts[category]), category))
    kept = [category for category in order if counts[category] >= min_rows]
    if max_categories is not None and len(kept) + (len(kept) < len(order)) > max_categories:
        kept = kept[: max_categories - 1]
    infrequent = sorted(set(order) - set(kept))
    return tuple(sorted(kept)), tuple(infrequent)


def _fit_column(
    fitted: FittedColumn, train: pd.DataFrame, source: str, max_categories: int | None, min_rows: int
) -> FittedColumn:
    """The column with its train median (numeric) or categories (categorical)."""
    column = train[fitted.name]
    if fitted.kind == "numeric":
        values = numbers_of(column)
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError(
                f"column {fitted.name!r} in {source} has no values in the training "
                f"split ({len(train)} rows), so it has no median to impute; leave it "
                f"out with drop=[{fitted.name!r}]"
            )
        return FittedColumn(fitted.name, "numeric", float(np.median(values)), fitted.missing_values)
    if fitted.kind == "date":
        days = parse_days(column, fitted.date_format)
        days = days[np.isfinite(days)]
        if days.size == 0:
            raise ValueError(
                f"date column {fitted.name!r} in {source} has no dates in the training "
                f"split ({len(train)} rows), so it has no median to impute; leave it "
                f"out with drop=[{fitted.name!r}]"
            )
        return dataclasses.replace(fitted, median=float(np.median(days)))
    if fitted.kind == "categorical":
        counts = as_text(column)[~missing_mask(column)].value_counts()
        kept, infrequent = pool_categories(counts, max_categories, min_rows)
        return FittedColumn(fitted.name, "categorical", categories=kept, infrequent=infrequent)
    return fitted


def _notes(
    columns: tuple[FittedColumn, ...],
    coerced: set[str],
    reports: tuple[TransformReport, ...],
) -> list[str]:
    """What imputation and encoding did, counted over every split."""

    def total(counts: str, name: str) -> int:
        return sum(getattr(report, counts).get(name, 0) for report in reports)

    notes = []
    for column in columns:
        if column.kind == "date":
            notes.append(_date_note(column, total("imputed", column.name)))
        if column.kind != "numeric":
            continue
        name, n_bad = column.name, total("imputed", column.name)
        if n_bad == 0:
            if name in coerced:
                notes.append(f"coerced {name!r} from text to numbers")
        elif name in coerced:
            notes.append(
                f"coerced {name!r} to numbers: {n_bad} blank or non-numeric values "
                f"imputed with the train median {column.median:.6g}"
            )
        else:
            notes.append(
                f"imputed {n_bad} missing or infinite values in {name!r} with the train median {column.median:.6g}"
            )
    categorical = [column for column in columns if column.kind == "categorical"]
    for column in categorical:
        n_missing, n_unseen = total("missing", column.name), total("unseen", column.name)
        if n_missing:
            notes.append(f"{n_missing} missing values of {column.name!r} encoded as all-zero")
        if n_unseen:
            encoded = f"'{INFREQUENT}'" if column.infrequent else "all-zero"
            notes.append(f"{n_unseen} val/test values of {column.name!r} not seen in train encoded as {encoded}")
    booleans = sum(column.kind == "boolean" for column in columns)
    if booleans:
        notes.append(f"converted {booleans} boolean columns to 0/1")
    if categorical:
        one_hot = sum(len(column.feature_names) for column in categorical)
        notes.append(f"one-hot encoded {len(categorical)} text columns into {one_hot} features (categories from train)")
    return notes


def _pooling_notes(
    columns: tuple[FittedColumn, ...],
    train: TransformReport,
    max_categories: int | None,
    min_frequency: int | float | None,
    min_rows: int,
) -> list[str]:
    """A note per column whose rare categories were pooled, and a warning per column of more distinct
    training values than MAX_CATEGORIES (one-hot encoded silently, it would multiply the width)."""
    notes = []
    for column in columns:
        if column.kind != "categorical":
            continue
        name, kept, pooled = column.name, len(column.categories), len(column.infrequent)
        distinct = kept + pooled
        if pooled:
            why = []
            if min_rows > 1:
                why.append(f"with fewer than {min_rows} training rows (min_frequency={min_frequency!r})")
            if max_categories is not None:
                why.append(f"past the {max_categories - 1} most frequent (max_categories={max_categories})")
            notes.append(
                f"pooled {pooled} of the {distinct} train values of {name!r} into one feature '{name}={INFREQUENT}' "
                f"({train.infrequent.get(name, 0)} train rows; values not seen in train go there too): those "
                + " or ".join(why)
            )
        if distinct > MAX_CATEGORIES:
            how = (
                f"{kept} of them with a feature each and '{name}={INFREQUENT}' for the other {pooled}"
                if pooled
                else f"one feature each (max_categories={max_categories!r}, min_frequency={min_frequency!r})"
            )
            warnings.warn(
                f"text column {name!r} has {distinct} distinct values in the training split, one-hot encoded as "
                f"{len(column.feature_names)} features: {how}; set load_csv's max_categories= and min_frequency= "
                f"([data] in a config) to change this, or leave the column out with drop=[{name!r}]",
                UserWarning,
                stacklevel=4,
            )
    return notes


def _date_note(column: FittedColumn, n_bad: int) -> str:
    """What reading a date column did."""
    note = (
        f"read {column.name!r} as dates (format {column.date_format!r}) into "
        "4 features: days since 1970-01-01, year, month, weekday"
    )
    if n_bad:
        note += f"; {n_bad} blank or unparseable values imputed with the train median date {day_text(column.median)}"
    return note
