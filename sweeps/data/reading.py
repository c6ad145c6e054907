"""Reading the table: a CSV file (or a pandas DataFrame) into a DataFrame,
and checking the column names the user gave (`target=`, `drop=`) against it.

The separator of a file is taken from `sep=`, or else detected from its
header row: of ",", ";", tab and "|", the one that splits the header into
the most names (a tie goes to the earlier, so "," wins unless another
splits more). The encoding is `encoding=`, or else UTF-8. The header row is
read as written, so duplicate names are refused instead of being renamed by
pandas ("x1", "x1.1").

Every failure is a ValueError (TypeError for an argument of the wrong type)
that names the file, what is wrong and the fix.
"""

from __future__ import annotations

import codecs
import collections
import difflib
import os
from collections.abc import Iterable
from typing import Any

import pandas as pd

SEPARATORS = (",", ";", "\t", "|")
DATAFRAME_SOURCE = "<DataFrame>"


def source_of(data: Any) -> str:
    """How messages and `Dataset.source` name the data: the path as given,
    or "<DataFrame>".

    Raises:
        TypeError: when data is neither a path (str, os.PathLike) nor a
            pandas DataFrame.
    """
    if isinstance(data, pd.DataFrame):
        return DATAFRAME_SOURCE
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    kind = type(data)
    what = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(data, (bytes, int, float, bool)) or data is None:
        what += f" {data!r:.40}"
    tabular = hasattr(data, "columns") or hasattr(data, "shape") or isinstance(data, (dict, list))
    raise TypeError(
        f"load_csv reads a CSV file path (str or os.PathLike) or a pandas DataFrame, "
        f"but got {what}" + ("; convert it with pandas.DataFrame(...)" if tabular else "")
    )


def read_table(
    data: str | os.PathLike | pd.DataFrame,
    source: str,
    *,
    sep: str | None,
    encoding: str | None,
    notes: list[str],
) -> pd.DataFrame:
    """The table to learn from, with every column name as str.

    Args:
        data: a CSV file's path, or a DataFrame (copied, not changed).
        source: `source_of(data)`, for messages.
        sep: the file's separator; None detects it from the header.
        encoding: the file's text encoding; None is UTF-8.
        notes: gets a note when the separator or encoding is not the default.

    Raises:
        ValueError: for a missing, empty or unreadable file, duplicate column
            names, no rows, or sep/encoding given with a DataFrame.
    """
    _check_reading_options(sep, encoding)
    if isinstance(data, pd.DataFrame):
        if sep is not None or encoding is not None:
            raise ValueError(
                f"sep={sep!r} and encoding={encoding!r} apply to reading a file, but "
                "load_csv got a DataFrame, which is read already; leave them out"
            )
        return _from_data_frame(data)
    return read_csv(data, source, sep=sep, encoding=encoding, notes=notes)


def read_csv(
    path: str | os.PathLike,
    source: str,
    *,
    sep: str | None = None,
    encoding: str | None = None,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """Reads the file at `path` (shown as `source` in messages); see
    `read_table`."""
    if not os.path.exists(path):
        raise ValueError(
            f"data file {source} does not exist (working directory "
            f"{os.getcwd()}); check the path, or give an absolute one"
        )
    if os.path.isdir(path):
        raise ValueError(f"data path {source} is a directory; pass the CSV file inside it")
    if os.path.getsize(path) == 0:
        raise ValueError(
            f"data file {source} is empty (0 bytes); pass a CSV file with a header row and at least one data row"
        )
    given = sep is not None
    header, sep = _header(path, sep, encoding)
    try:
        frame = pd.read_csv(path, sep=sep, encoding=encoding)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"data file {source} holds no columns; pass a CSV file with a header row and at least one data row"
        ) from None
    except UnicodeDecodeError as error:
        raise ValueError(
            f"data file {source} is not {encoding or 'UTF-8'} text ({error}); pass "
            "its encoding, e.g. encoding='latin-1' or encoding='cp1252'"
        ) from None
    except pd.errors.ParserError as error:
        raise ValueError(
            f"data file {source} could not be read as CSV with sep={sep!r} "
            f"({str(error).strip()}); check the separator (sep=) and the quoting"
        ) from None
    _check_unique_names(header, f"data file {source}")
    if len(frame) == 0:
        raise ValueError(f"data file {source} has a header but no rows; pass a CSV file with at least one data row")
    if notes is not None and sep != ",":
        notes.append(f"read with sep={sep!r} ({'given' if given else 'detected from the header'})")
    if notes is not None and encoding is not None:
        notes.append(f"read with encoding={encoding!r} (given)")
    frame.columns = [str(column) for column in frame.columns]
    return frame


def _check_reading_options(sep: Any, encoding: Any) -> None:
    if sep is not None and (not isinstance(sep, str) or sep == ""):
        raise TypeError(f"sep must be None (detect it) or a separator such as ',' or ';', but got sep={sep!r}")
    if encoding is not None:
        if not isinstance(encoding, str):
            raise TypeError(f"encoding must be None (UTF-8) or a name such as 'latin-1', but got encoding={encoding!r}")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(
                f"encoding={encoding!r} is not an encoding Python knows; pass e.g. "
                "encoding='utf-8', 'latin-1' or 'cp1252'"
            ) from None


def _header(path: str | os.PathLike, sep: str | None, encoding: str | None) -> tuple[list[str] | None, str]:
    """The header row as written (None if it cannot be read) and the
    separator: `sep`, or the one of SEPARATORS that splits the header into
    the most names."""
    if sep is not None:
        return _first_row(path, sep, encoding), sep
    best, best_row = ",", None
    for candidate in SEPARATORS:
        row = _first_row(path, candidate, encoding)
        if row is not None and (best_row is None or len(row) > len(best_row)):
            best, best_row = candidate, row
    return best_row, best


def _first_row(path: str | os.PathLike, sep: str, encoding: str | None) -> list[str] | None:
    try:
        row = pd.read_csv(
            path,
            sep=sep,
            encoding=encoding,
            header=None,
            nrows=1,
            dtype=str,
            keep_default_na=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        return None
    return [str(name) for name in row.iloc[0].tolist()] if len(row) else None


def _check_unique_names(names: list[str] | None, what: str) -> None:
    """Refuses a header that names a column twice (blank names aside)."""
    if not names:
        return
    counts = collections.Counter(name for name in names if name.strip())
    duplicated = [name for name, count in counts.items() if count > 1]
    if not duplicated:
        return
    places = "; ".join(
        f"{name!r} (columns " + " and ".join(str(i + 1) for i, other in enumerate(names) if other == name) + ")"
        for name in duplicated
    )
    raise ValueError(
        f"{what} has duplicate column names: {places}; pandas would rename the copies "
        f"({duplicated[0]!r} -> {duplicated[0] + '.1'!r}) and target= and drop= would "
        "see only the first: rename the columns so that each name is used once"
    )


def _from_data_frame(frame: pd.DataFrame) -> pd.DataFrame:
    names = [str(name) for name in frame.columns]
    _check_unique_names(names, "the DataFrame")
    if not names:
        raise ValueError("the DataFrame has no columns; pass a table with the target and at least one feature column")
    if len(frame) == 0:
        raise ValueError(
            f"the DataFrame has columns ({', '.join(names[:5])}, ...) but no rows; pass a table with at least one row"
        )
    return frame.set_axis(names, axis=1).reset_index(drop=True)


def check_names(frame: pd.DataFrame, target: str, drop: Iterable[str] | str, source: str) -> tuple[str, ...]:
    """Checks `target` and `drop` against the columns; returns drop as a tuple."""
    columns = list(frame.columns)
    if target not in columns:
        raise ValueError(unknown_column_message("target column", target, columns, source))
    drop = (drop,) if isinstance(drop, str) else tuple(drop)
    for name in drop:
        if name not in columns:
            raise ValueError(unknown_column_message("drop column", name, columns, source))
    if target in drop:
        raise ValueError(f"target column {target!r} is also listed in drop={list(drop)!r}; remove it from drop")
    return drop


def unknown_column_message(what: str, name: Any, columns: list[str], source: str) -> str:
    """ "<what> 'name' not found in <source>; did you mean ...? columns: ...",
    with a hint at sep= when the header looks like names joined in one."""
    message = f"{what} {name!r} not found in {source}"
    nearest = nearest_name(str(name), columns)
    if nearest is not None:
        message += f"; did you mean {nearest!r}?"
    joined = _joined_by(columns)
    if joined is not None:
        how = (
            f"read the file with pandas.read_csv(..., sep={joined!r})"
            if source == DATAFRAME_SOURCE
            else f"pass sep={joined!r} (and encoding= if the text looks garbled)"
        )
        message += f"; the header was read as the single column {columns[0]!r}, names joined by {joined!r}: {how}"
    return message + f" columns: {', '.join(columns)}"


def _joined_by(columns: list[str]) -> str | None:
    """The separator a lone column name seems to hold (None if not one)."""
    if len(columns) != 1:
        return None
    counts = {sep: columns[0].count(sep) for sep in SEPARATORS}
    sep = max(counts, key=counts.get)
    return sep if counts[sep] else None


def nearest_name(name: str, names: list[str]) -> str | None:
    """The closest of `names` to `name`, ignoring case; None if none is close."""
    lowered = {candidate.lower(): candidate for candidate in reversed(names)}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    return lowered[matches[0]] if matches else None
