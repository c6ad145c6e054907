"""Helpers on one column of a table: missing cells, numeric-looking text,
id-like and empty columns.

Column *types* (is this column numeric-looking text? an id?) describe the
schema, not the values the model learns, so they are decided on every row;
the statistics the model learns (medians, categories, means) come from the
training split only (`sweeps.data.fitting`).

Missing values: a cell is missing when it is NaN/None or, in a text column,
empty or blank.

Example:
    >>> import pandas as pd
    >>> column = pd.Series(["1.5", " ", "2", "3"])
    >>> looks_numeric(column), parse_numbers(column).tolist()
    (True, [1.5, nan, 2.0, 3.0])
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sweeps.data.dates import date_format
from sweeps.data.messages import name_list

# A text column is read as numbers when at least this share of its non-blank
# values parse as numbers; the rest become missing and are imputed.
NUMERIC_TEXT_SHARE = 0.9
# A text column whose values are all distinct is an identifier, not a
# feature, once the file has more rows than this.
ID_MIN_ROWS = 20


def is_text(column: pd.Series) -> bool:
    """True for columns that are neither numbers nor booleans."""
    return not (pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column))


def as_text(column: pd.Series) -> pd.Series:
    """The column as pandas text (dtype "str"); missing cells stay NaN."""
    return column.astype("str")


def missing_mask(column: pd.Series) -> np.ndarray:
    """(rows,) bool: the cell is NaN/None or, for text, empty or blank."""
    if not is_text(column):
        return column.isna().to_numpy()
    text = as_text(column)
    return (text.isna() | text.str.strip().eq("")).to_numpy()


def parse_numbers(column: pd.Series) -> pd.Series:
    """Text to float64; blank and unparseable cells become NaN."""
    text = as_text(column).str.strip()
    return pd.to_numeric(text, errors="coerce").astype("float64")


def looks_numeric(column: pd.Series) -> bool:
    """At least NUMERIC_TEXT_SHARE of the non-blank values parse as numbers."""
    counts = as_text(column)[~missing_mask(column)].str.strip().value_counts()
    if counts.empty:
        return False
    parses = pd.to_numeric(counts.index.to_series(), errors="coerce").notna().to_numpy()
    return bool(counts.to_numpy()[parses].sum() >= NUMERIC_TEXT_SHARE * counts.sum())


def drop_columns(features: pd.DataFrame, drop: tuple[str, ...], notes: list[str]) -> pd.DataFrame:
    """Drops the columns the user asked to leave out (`drop=`)."""
    if drop:
        notes.append(f"dropped {name_list(drop)} as asked (drop=)")
    return features.drop(columns=list(drop))


def drop_id_columns(features: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Drops identifiers: text columns whose values are all distinct (dates
    all distinct, time stamps, are kept), and row counters (`is_row_counter`)."""
    if len(features) <= ID_MIN_ROWS:
        return features
    ids = []
    for name, column in features.items():
        if (
            is_text(column)
            and not looks_numeric(column)
            and column.nunique(dropna=False) == len(column)
            and date_format(column) is None
        ):
            notes.append(f"dropped id-like column {name!r} ({len(features)} distinct text values)")
            ids.append(name)
        elif is_row_counter(column):
            notes.append(
                f"dropped id-like column {name!r} (a row counter: {len(features)} distinct integers from "
                f"{column.min()} to {column.max()}; to keep it as a feature, give it as floats: "
                f"frame[{name!r}].astype(float))"
            )
            ids.append(name)
    return features.drop(columns=ids)


def is_row_counter(column: pd.Series) -> bool:
    """An integer column numbering the rows: no missing cell, every value distinct, and the values fill
    at least half of the range from the smallest to the largest (1, 2, 3, ..., perhaps with the rows of
    a missing target gone; not a sparse set such as time stamps in seconds).

    Examples:
        >>> is_row_counter(pd.Series(range(1, 101))), is_row_counter(pd.Series(range(0, 300, 3)))
        (True, False)
        >>> is_row_counter(pd.Series([float(v) for v in range(100)]))  # written with decimals: a number
        False
    """
    if not pd.api.types.is_integer_dtype(column) or pd.api.types.is_bool_dtype(column) or column.isna().any():
        return False
    if column.nunique() != len(column):
        return False
    span = int(column.max()) - int(column.min()) + 1
    return span <= 2 * len(column)


def check_no_empty_columns(features: pd.DataFrame, source: str) -> None:
    """Refuses a column without a single value."""
    for name, column in features.items():
        if missing_mask(column).all():
            raise ValueError(
                f"column {name!r} in {source} has no values (all {len(column)} are "
                f"missing or blank); leave it out with drop=[{name!r}]"
            )
