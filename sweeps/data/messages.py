"""How values are written in the notes and error messages of `sweeps.data`.

Example:
    >>> label_text(3.0), label_text(0.5), label_text("Yes")
    ('3', '0.5', 'Yes')
    >>> short_list(list(range(25)), limit=3)
    '[0, 1, 2, ... (25 in all)]'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def name_list(names: Iterable[str]) -> str:
    """Names quoted and joined: "'a', 'b'"."""
    return ", ".join(repr(name) for name in names)


def label_text(value: Any) -> str:
    """A label as text: 3.0 -> "3", 0.5 -> "0.5", "Yes" -> "Yes"."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def label_list(values: Iterable[Any]) -> str:
    """Labels as a short list of text, e.g. "['No', 'Yes']"."""
    return short_list([label_text(value) for value in values])


def short_list(items: list, limit: int = 20) -> str:
    """repr(items), cut after `limit` items with the total count."""
    if len(items) <= limit:
        return repr(items)
    return repr(items[:limit])[:-1] + f", ... ({len(items)} in all)]"
