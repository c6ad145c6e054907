"""Turning the columns of a table into raw (unstandardized) float64 features,
one fitted column at a time.

A `FittedColumn` holds what the training split taught about one input
column; `encode_columns` applies a list of them to any DataFrame (training
rows and new rows alike, so both go through the same code) and counts, in a
`TransformReport`, the cells it had to fill in.

Kinds of column and their features:
    numeric      one feature; missing, infinite or known non-numeric cells
                 get the train median
    boolean      one 0/1 feature
    categorical  one 0/1 indicator per train category ("name=category"), and
                 where rare train categories were pooled (`load_csv`'s
                 max_categories and min_frequency) one more, "name=<infrequent>",
                 for them and for categories unseen in train; missing cells,
                 and unseen categories of a column without one, are all zero
    date         four features: "name:days" (since 1970-01-01), "name:year",
                 "name:month", "name:weekday"; missing or known unparseable
                 cells get the train median date
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from sweeps.data.columns import as_text, is_text, missing_mask, parse_numbers
from sweeps.data.dates import DATE_FEATURES, date_features, day_text, parse_days
from sweeps.data.messages import short_list

KINDS = ("numeric", "boolean", "categorical", "date")
# The category of the pooled indicator: rare train categories, and unseen ones, in a column that pools.
INFREQUENT = "<infrequent>"
# Text that means "no value" in a numeric or boolean cell of new rows (as
# pandas.read_csv reads it), compared case-blind after stripping blanks.
NA_TEXT = frozenset({"na", "n/a", "nan", "-nan", "null", "none", "#n/a", "<na>"})
_TRUE_TEXT = frozenset({"true", "1", "1.0"})
_FALSE_TEXT = frozenset({"false", "0", "0.0"})


@dataclasses.dataclass(frozen=True)
class FittedColumn:
    """What the training split taught about one input column.

    Attributes:
        name: the column's name in the table.
        kind: "numeric", "boolean", "categorical" or "date".
        median: numeric: the train median that fills missing cells; date:
            the train median date, in days since 1970-01-01; else None.
        missing_values: numeric and date: text the training file held in
            this column that does not parse (e.g. "?"), read as missing; any
            other such text in new rows is an error. () otherwise.
        categories: categorical: the train categories with a feature of their
            own, sorted, one indicator each. () otherwise.
        date_format: date: the format that parses the column (one of
            `sweeps.data.dates.DATE_FORMATS`); else None.
        infrequent: categorical: the train categories pooled into one
            indicator, "name=<infrequent>" (after the others), which also
            takes categories unseen in train; () when nothing was pooled.
    """

    name: str
    kind: str
    median: float | None = None
    missing_values: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    date_format: str | None = None
    infrequent: tuple[str, ...] = ()

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The names of the features this column becomes, in order."""
        if self.kind == "categorical":
            pooled = (INFREQUENT,) if self.infrequent else ()
            return tuple(f"{self.name}={category}" for category in self.categories + pooled)
        if self.kind == "date":
            return tuple(f"{self.name}:{feature}" for feature in DATE_FEATURES)
        return (self.name,)


@dataclasses.dataclass(frozen=True)
class TransformReport:
    """The cells `encode_columns` filled in, per column (only columns with a
    nonzero count appear).

    Attributes:
        rows: the number of rows transformed.
        imputed: numeric and date columns: missing, infinite or known
            unparseable cells replaced by the train median.
        missing: categorical columns: missing or blank cells, encoded as all
            zeros.
        unseen: categorical columns: present values that are not a train
            category, encoded as all zeros (or as "<infrequent>" in a column
            that pools rare categories).
        unseen_values: categorical columns: those values, distinct, sorted.
        infrequent: categorical columns that pool: the cells encoded as
            "<infrequent>" (rare train categories and unseen ones).
    """

    rows: int
    imputed: dict[str, int] = dataclasses.field(default_factory=dict)
    missing: dict[str, int] = dataclasses.field(default_factory=dict)
    unseen: dict[str, int] = dataclasses.field(default_factory=dict)
    unseen_values: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    infrequent: dict[str, int] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """One line per column with a count, or a line saying all cells were
        used as given."""
        lines = [
            f"{count} missing values of {name!r} imputed with the train median" for name, count in self.imputed.items()
        ]
        lines += [f"{count} missing values of {name!r} encoded as all-zero" for name, count in self.missing.items()]
        lines += [
            f"{count} values of {name!r} not seen in train encoded as "
            f"{INFREQUENT if name in self.infrequent else 'all-zero'}: "
            f"{short_list(list(self.unseen_values[name]), limit=5)}"
            for name, count in self.unseen.items()
        ]
        return "\n".join(lines) or f"all cells of the {self.rows} rows used as given"


def encode_columns(columns: tuple[FittedColumn, ...], frame: pd.DataFrame) -> tuple[np.ndarray, TransformReport]:
    """Applies fitted columns to the matching columns of `frame`.

    Args:
        columns: the fitted columns, in feature order.
        frame: a table holding every column named in `columns` (others are
            ignored).

    Returns:
        ((rows, features) float64 raw features, the report).

    Raises:
        ValueError: for a non-numeric value in a numeric column, text that
            is not a date of the column's format in a date column, or a value
            that is not True/False in a boolean column; the message names
            the column, the row and the value.
    """
    imputed, missing, unseen, unseen_values, infrequent = {}, {}, {}, {}, {}
    blocks = []
    for fitted in columns:
        column = frame[fitted.name]
        if fitted.kind in ("numeric", "date"):
            encode = _numeric if fitted.kind == "numeric" else _date
            features, n_imputed = encode(fitted, column)
            blocks.append(features if features.ndim == 2 else features[:, None])
            if n_imputed:
                imputed[fitted.name] = n_imputed
        elif fitted.kind == "boolean":
            blocks.append(_boolean(fitted, column)[:, None])
        else:
            indicators, outside = _one_hot(column, fitted.categories, pooled=bool(fitted.infrequent))
            blocks.append(indicators)
            n_missing = int(missing_mask(column).sum())
            if n_missing:
                missing[fitted.name] = n_missing
            if fitted.infrequent:
                infrequent[fitted.name] = int(indicators[:, -1].sum())
            rare = set(fitted.infrequent)
            outside = [value for value in outside if value not in rare]
            if outside:
                unseen[fitted.name] = len(outside)
                unseen_values[fitted.name] = tuple(sorted(set(outside)))
    report = TransformReport(len(frame), imputed, missing, unseen, unseen_values, infrequent)
    if not blocks:
        return np.zeros((len(frame), 0)), report
    return np.concatenate(blocks, axis=1), report


def numbers_of(column: pd.Series) -> np.ndarray:
    """(rows,) float64: numbers as they are, text parsed (NaN where it does
    not parse), booleans as 0/1."""
    if is_text(column):
        return parse_numbers(column).to_numpy(dtype=np.float64)
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _numeric(fitted: FittedColumn, column: pd.Series) -> tuple[np.ndarray, int]:
    """The column as numbers, bad cells filled with the median; and their count."""
    values = numbers_of(column)
    if is_text(column):
        bad = np.isnan(values) & ~_known_missing(fitted, column)
        if bad.any():
            _refuse(
                fitted,
                column,
                bad,
                "is a numeric column: the model was trained on numbers here; fix the "
                f"value, or leave the cell blank to impute the train median {fitted.median:.6g}",
            )
    bad = ~np.isfinite(values)
    return np.where(bad, fitted.median, values), int(bad.sum())


def _date(fitted: FittedColumn, column: pd.Series) -> tuple[np.ndarray, int]:
    """The column's four date features, bad cells filled with the median
    date; and their count."""
    days = parse_days(column, fitted.date_format)
    if not pd.api.types.is_datetime64_any_dtype(column):
        bad = np.isnan(days) & ~_known_missing(fitted, column)
        if bad.any():
            _refuse(
                fitted,
                column,
                bad,
                f"is a date column read with format {fitted.date_format!r}; give a "
                f"date such as {day_text(fitted.median)!r}, or leave the cell blank "
                "to impute the train median date",
            )
    bad = ~np.isfinite(days)
    return date_features(np.where(bad, fitted.median, days)), int(bad.sum())


def _known_missing(fitted: FittedColumn, column: pd.Series) -> np.ndarray:
    """(rows,) bool: blank, NaN, NA text, or unparseable text seen in training."""
    text = as_text(column).str.strip()
    return (
        missing_mask(column) | text.str.lower().isin(NA_TEXT).to_numpy() | text.isin(fitted.missing_values).to_numpy()
    )


def _boolean(fitted: FittedColumn, column: pd.Series) -> np.ndarray:
    """The column as 0.0/1.0; True/False, 1/0 and their text are accepted."""
    if pd.api.types.is_bool_dtype(column) and not column.isna().any():
        return column.to_numpy(dtype=np.float64)
    text = column.map(lambda value: str(value).strip().lower(), na_action="ignore")
    ones = text.isin(_TRUE_TEXT).to_numpy()
    zeros = text.isin(_FALSE_TEXT).to_numpy()
    if not (ones | zeros).all():
        _refuse(
            fitted,
            column,
            ~(ones | zeros),
            "is a boolean column: every training row held True or False, so there "
            "is nothing to impute; give True or False",
        )
    return ones.astype(np.float64)


def _refuse(fitted: FittedColumn, column: pd.Series, bad: np.ndarray, why: str) -> None:
    """Raises a ValueError naming the first bad cell (bad: (rows,) bool)."""
    rows = np.flatnonzero(bad)
    first = int(rows[0])
    label = column.index[first]
    where = f"row {first}" + ("" if label == first else f" (index {label!r})")
    more = f" and {len(rows) - 1} more rows" if len(rows) > 1 else ""
    raise ValueError(f"column {fitted.name!r} holds {column.iloc[first]!r} in {where}{more}, but {fitted.name!r} {why}")


def _one_hot(column: pd.Series, categories: tuple[str, ...], pooled: bool) -> tuple[np.ndarray, list[str]]:
    """(rows, len(categories) + pooled) float64 indicators, and the present
    values outside `categories` (one entry per cell). With `pooled`, those
    values are encoded in the last indicator, "<infrequent>"."""
    missing = missing_mask(column)
    text = as_text(column).to_numpy(dtype=object)
    codes = pd.Index(list(categories), dtype=object).get_indexer(text)
    outside = (codes < 0) & ~missing
    if pooled:
        codes = np.where(outside, len(categories), codes)
    codes = np.where(missing, -1, codes)
    indicators = np.zeros((len(codes), len(categories) + pooled))
    rows = np.flatnonzero(codes >= 0)
    indicators[rows, codes[rows]] = 1.0
    return indicators, [str(value) for value in text[outside]]
