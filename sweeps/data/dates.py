"""Dates in text columns: detecting them, and turning them into numbers.

A text column is read as dates when at least DATE_TEXT_SHARE of its
non-blank cells parse with one of DATE_FORMATS (tried in order; the format
that parses the most cells wins, the earlier one on a tie, so "03/04/2021"
is read month first unless some day is over 12). One explicit format per
column, kept in the fitted preprocessing, reads new rows the same way;
pandas' "mixed" parsing is not used, because it guesses per cell and reads
"May" as May of the current year. A pandas datetime column (a DataFrame
given to `load_csv`) is a date column as it is.

A date becomes four features: days since 1970-01-01 (UTC, with the time of
day as a fraction), the year, the month (1-12) and the weekday (Monday 0).

Example:
    >>> import pandas as pd
    >>> column = pd.Series(["2024-01-31", "2024-02-29", " "])
    >>> date_format(column)
    'ISO8601'
    >>> days = parse_days(column, "ISO8601")
    >>> days.tolist()
    [19753.0, 19782.0, nan]
    >>> date_features(days[:2]).tolist()
    [[19753.0, 2024.0, 1.0, 2.0], [19782.0, 2024.0, 2.0, 3.0]]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Formats tried, in order of preference.
DATE_FORMATS = (
    "ISO8601",  # 2021-03-04, 2021-03-04 10:30:00, 2021-03-04T10:30:00Z
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%Y/%m/%d",
    "%d.%m.%Y",
    "%m-%d-%Y",
    "%d-%m-%Y",
    "%d %b %Y",
    "%b %d %Y",
    "%b %d, %Y",
    "%d %B %Y",
    "%B %d %Y",
    "%B %d, %Y",
    "%m/%d/%y",
    "%d/%m/%y",
)
# A text column is read as dates when at least this share of its non-blank
# cells parse with one format; the rest become missing and are imputed.
DATE_TEXT_SHARE = 0.9
DATE_FEATURES = ("days", "year", "month", "weekday")
_EPOCH = pd.Timestamp(0, tz="UTC")
# Formats are first tried on this many distinct values, to skip the hopeless.
_SAMPLE = 200


def _present_text(column: pd.Series) -> pd.Series:
    """The non-blank cells of a column, as stripped text."""
    text = column.astype("str").str.strip()
    return text[text.notna() & text.ne("")]


def date_format(column: pd.Series) -> str | None:
    """The format that reads the column as dates, or None if it is not dates.

    Args:
        column: a text column (numeric-looking text is numbers, not dates),
            or a pandas datetime column ("ISO8601").

    Returns:
        One of DATE_FORMATS, or None.
    """
    if pd.api.types.is_datetime64_any_dtype(column):
        return "ISO8601"
    counts = _present_text(column).value_counts()
    if counts.empty:
        return None
    values = counts.index.to_series(index=range(len(counts)))
    with_digits = counts.to_numpy()[values.str.contains(r"\d").to_numpy()].sum()
    if with_digits < DATE_TEXT_SHARE * counts.sum():
        return None  # a date has digits: most text columns stop here
    sample = values.iloc[:_SAMPLE]  # the most common values
    candidates = [fmt for fmt in DATE_FORMATS if _to_datetime(sample, fmt).notna().mean() >= 0.5]
    best, best_share = None, 0
    for fmt in candidates:
        share = counts.to_numpy()[_to_datetime(values, fmt).notna().to_numpy()].sum()
        if share > best_share:  # the earlier format wins a tie
            best, best_share = fmt, share
        if best_share == counts.sum():
            break
    return best if best_share >= DATE_TEXT_SHARE * counts.sum() else None


def parse_days(column: pd.Series, fmt: str) -> np.ndarray:
    """(rows,) float64 days since 1970-01-01 UTC; NaN where a cell is
    missing or does not parse with `fmt`."""
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = column.reset_index(drop=True)
        if stamps.dt.tz is None:
            stamps = stamps.dt.tz_localize("UTC")
        return _days(stamps)
    codes, uniques = pd.factorize(column.astype("str").str.strip())
    days = _days(_to_datetime(pd.Series(uniques, dtype=object), fmt))
    out = np.full(len(codes), np.nan)
    present = codes >= 0
    out[present] = days[codes[present]]
    return out


def date_features(days: np.ndarray) -> np.ndarray:
    """(rows,) finite days since 1970-01-01 -> (rows, 4) float64: days,
    year, month (1-12), weekday (Monday 0)."""
    day = np.floor(days).astype("datetime64[D]")
    year = day.astype("datetime64[Y]").astype(np.int64) + 1970
    month = day.astype("datetime64[M]").astype(np.int64) % 12 + 1
    weekday = (day.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    return np.stack([days, year, month, weekday], axis=1).astype(np.float64)


def day_text(days: float) -> str:
    """A day count as an ISO date (and time when not midnight), for notes."""
    stamp = _EPOCH + pd.Timedelta(days=days)
    text = stamp.isoformat()
    return text[:10] if stamp == stamp.normalize() else text[:19].replace("T", " ")


def _to_datetime(values: pd.Series, fmt: str) -> pd.Series:
    return pd.to_datetime(values, format=fmt, errors="coerce", utc=True)


def _days(stamps: pd.Series) -> np.ndarray:
    return ((stamps - _EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)
