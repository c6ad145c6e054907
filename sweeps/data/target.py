"""The target column: rows without a label, the task, and the labels' encoding.

Classification labels become class indices in sorted order of the distinct
values (numbers in numeric order); a regression target is standardized with
the train mean and std.

Example:
    >>> import pandas as pd
    >>> notes = []
    >>> task, labels, names = encode_target(pd.Series(["b", "a", "b"], name="y"), None, "t", notes)
    >>> task, labels.tolist(), names
    ('binary', [1, 0, 1], ('a', 'b'))
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sweeps.data.columns import is_text, missing_mask, parse_numbers
from sweeps.data.messages import label_list, label_text, short_list

# An integer-valued numeric target with at most this many distinct values
# is read as class labels (multiclass); with more, as a regression target.
MAX_INFERRED_CLASSES = 20
# A multiclass target with more than MAX_INFERRED_CLASSES classes is refused
# when more than this share of its classes have a single row: such a class
# can be learned or scored, not both, so the column is not a set of classes
# (a continuous number, an id, free text).
MAX_SINGLE_ROW_CLASS_SHARE = 0.5


def drop_missing_target(frame: pd.DataFrame, target: str, source: str, notes: list[str]) -> pd.DataFrame:
    """Drops the rows whose target is missing or blank."""
    missing = missing_mask(frame[target])
    if missing.all():
        raise ValueError(
            f"target column {target!r} in {source} has no values (all {len(frame)} "
            "are missing or blank); pass a column with labels as target="
        )
    if missing.any():
        notes.append(f"dropped {int(missing.sum())} rows with a missing target {target!r}")
        frame = frame.loc[~missing].reset_index(drop=True)
    return frame


def encode_target(
    column: pd.Series, task: str | None, source: str, notes: list[str]
) -> tuple[str, np.ndarray, tuple[str, ...]]:
    """Settles the task and encodes the labels.

    Returns:
        (task, labels, class_names): labels is (rows,) int64 class indices
        for classification, float64 raw values for regression.
    """
    name = column.name
    column = column.reset_index(drop=True)
    if is_text(column) and parse_numbers(column).notna().all():
        column = parse_numbers(column)
        notes.append(f"read target {name!r} as numbers")
    numeric = not is_text(column) and not pd.api.types.is_bool_dtype(column)

    if numeric:
        values = column.to_numpy(dtype=np.float64)
        distinct = np.unique(values)
    else:
        values = np.array([str(value) for value in column.tolist()], dtype=object)
        distinct = np.array(sorted(set(values.tolist())), dtype=object)

    if len(distinct) < 2:
        raise ValueError(
            f"target column {name!r} in {source} has a single value "
            f"{label_text(distinct[0])!r} in all {len(values)} rows, so there is "
            "nothing to learn; pick a target with at least two values"
        )

    given = task is not None
    if task is None:
        task = infer_task(numeric, values, distinct)
    if task == "regression":
        if not numeric:
            raise ValueError(
                f"task='regression' needs a numeric target, but {name!r} in {source} "
                f"holds text such as {label_list(distinct[:3])}; use task='binary' or "
                "task='multiclass', or task=None to infer it"
            )
        notes.append(f"task 'regression' ({'given' if given else 'inferred'})")
        return task, values, ()

    if task == "binary" and len(distinct) != 2:
        raise ValueError(
            f"task='binary' needs exactly 2 classes, but target {name!r} in {source} "
            f"has {len(distinct)}: {label_list(distinct)}; use task='multiclass'"
            + ("" if not numeric else " or task='regression'")
        )
    labels = np.searchsorted(distinct, values).astype(np.int64)
    if task == "multiclass":
        _check_plausible_classes(labels, numeric, name, source)
    class_names = tuple(label_text(value) for value in distinct)
    how = "given" if given else "inferred"
    notes.append(f"task {task!r} ({how}, {len(class_names)} classes)")
    notes.append(f"mapped target {name!r} labels {label_list(distinct)} to {short_list(list(range(len(distinct))))}")
    return task, labels, class_names


def _check_plausible_classes(labels: np.ndarray, numeric: bool, name: str, source: str) -> None:
    """Refuses a multiclass target whose classes are mostly single rows."""
    counts = np.bincount(labels)
    singles = int((counts == 1).sum())
    if len(counts) <= MAX_INFERRED_CLASSES or singles <= MAX_SINGLE_ROW_CLASS_SHARE * len(counts):
        return
    fix = (
        "this looks like a continuous number: use task='regression'"
        if numeric
        else "this looks like an id or free text: pick another target=, or group the rare labels into one class first"
    )
    raise ValueError(
        f"task='multiclass' on target {name!r} in {source} gives {len(counts)} classes "
        f"for {len(labels)} rows, {singles} of them with a single row; a class needs "
        f"rows in both train and validation to be learned and scored, so {fix}"
    )


def infer_task(numeric: bool, values: np.ndarray, distinct: np.ndarray) -> str:
    """The task a target's values suggest (see `load_csv`'s `task`)."""
    if len(distinct) == 2:
        return "binary"
    if not numeric:
        return "multiclass"
    integers = bool(np.all(values == np.round(values)))
    if integers and len(distinct) <= MAX_INFERRED_CLASSES:
        return "multiclass"
    return "regression"


def finish_labels(
    labels: list[np.ndarray], task: str, target: str, notes: list[str]
) -> tuple[list[np.ndarray], float, float]:
    """Casts the labels per split; standardizes a regression target.

    Returns:
        ([(rows,) labels per split], y_mean, y_std).
    """
    if task == "multiclass":
        return [values.astype(np.int32) for values in labels], 0.0, 1.0
    if task == "binary":
        return [values.astype(np.float32) for values in labels], 0.0, 1.0
    y_mean = float(labels[0].mean())
    y_std = float(labels[0].std())
    if y_std <= 1e-12 * abs(y_mean):
        y_std = 1.0
    notes.append(
        f"standardized target {target!r} with train mean {y_mean:.6g} and std "
        f"{y_std:.6g} (a prediction p maps back as p * y_std + y_mean)"
    )
    scaled = [((values - y_mean) / y_std).astype(np.float32) for values in labels]
    return scaled, y_mean, y_std
