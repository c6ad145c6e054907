"""Reading a CSV file into a pandas DataFrame, and checking the column names
the user gave (`target=`, `drop=`) against its header.

Every failure is a ValueError that names the file, what is wrong and the fix.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from typing import Any

import pandas as pd


def read_csv(path: str | os.PathLike, source: str) -> pd.DataFrame:
    """Reads the file at `path` (shown as `source` in messages).

    Returns:
        The table, with every column name as str.

    Raises:
        ValueError: for a missing, empty or unreadable file, or a header
            without rows.
    """
    if not os.path.exists(path):
        raise ValueError(
            f"data file {source} does not exist (working directory "
            f"{os.getcwd()}); check the path, or give an absolute one"
        )
    if os.path.isdir(path):
        raise ValueError(
            f"data path {source} is a directory; pass the CSV file inside it"
        )
    if os.path.getsize(path) == 0:
        raise ValueError(
            f"data file {source} is empty (0 bytes); pass a CSV file with a header "
            "row and at least one data row"
        )
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"data file {source} holds no columns; pass a CSV file with a header "
            "row and at least one data row"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(
            f"data file {source} could not be read as CSV ({str(error).strip()}); check that it "
            "is a comma-separated, UTF-8 text file"
        ) from None
    if len(frame) == 0:
        raise ValueError(
            f"data file {source} has a header but no rows; pass a CSV file with at "
            "least one data row"
        )
    frame.columns = [str(column) for column in frame.columns]
    return frame


def check_names(
    frame: pd.DataFrame, target: str, drop: Iterable[str] | str, source: str
) -> tuple[str, ...]:
    """Checks `target` and `drop` against the columns; returns drop as a tuple."""
    columns = list(frame.columns)
    if target not in columns:
        raise ValueError(
            unknown_column_message("target column", target, columns, source)
        )
    drop = (drop,) if isinstance(drop, str) else tuple(drop)
    for name in drop:
        if name not in columns:
            raise ValueError(
                unknown_column_message("drop column", name, columns, source)
            )
    if target in drop:
        raise ValueError(
            f"target column {target!r} is also listed in drop={list(drop)!r}; "
            "remove it from drop"
        )
    return drop


def unknown_column_message(
    what: str, name: Any, columns: list[str], source: str
) -> str:
    """"<what> 'name' not found in <source>; did you mean ...? columns: ..."."""
    message = f"{what} {name!r} not found in {source}"
    nearest = nearest_name(str(name), columns)
    if nearest is not None:
        message += f"; did you mean {nearest!r}?"
    return message + f" columns: {', '.join(columns)}"


def nearest_name(name: str, names: list[str]) -> str | None:
    """The closest of `names` to `name`, ignoring case; None if none is close."""
    lowered = {candidate.lower(): candidate for candidate in reversed(names)}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    return lowered[matches[0]] if matches else None
