"""Tabular data for a sweep: read a CSV into numeric train/val/test arrays.

`load_csv` turns a CSV file into a `Dataset`: float32 feature matrices, one
label vector per split, the task ("binary", "multiclass" or "regression"),
and a plain-language record of every preprocessing step. The steps run in
this order:

1. read the file (pandas);
2. check the target and `drop` names; drop rows whose target is missing;
3. drop the `drop` columns and id-like text columns (all values distinct);
4. turn numeric-looking text columns into numbers;
5. encode the target and settle the task (inferred unless given);
6. split the rows (stratified by class for classification);
7. impute missing numbers with the train median;
8. one-hot encode text columns (categories seen in train), booleans to 0/1;
9. standardize every feature with the train mean and std, and a regression
   target likewise.

Every statistic (median, categories, mean, std) comes from the training
split only, so validation and test rows never leak into the preprocessing.
Column *types* (is this column numeric-looking text? an id?) are decided on
the whole file: they describe the schema, not the values the model learns.

Missing text values (empty or blank cells) are not a category of their own:
like categories first seen in val/test, they encode as all-zero indicators.

`Dataset.from_arrays` builds a `Dataset` from in-memory arrays for tests and
benchmarks, with the same shape and dtype checks and no preprocessing.

Example:
    >>> import sweeps.data
    >>> data = sweeps.data.load_csv("data/telco_customer_churn.csv", target="Churn")
    >>> data.n_train, data.n_features, data.task, data.class_names
    (5634, 45, 'binary', ('No', 'Yes'))
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

TASKS = ("binary", "multiclass", "regression")

# A text column is read as numbers when at least this share of its non-blank
# values parse as numbers; the rest become missing and are imputed.
NUMERIC_TEXT_SHARE = 0.9
# A text column whose values are all distinct is an identifier, not a
# feature, once the file has more rows than this.
ID_MIN_ROWS = 20
# An integer-valued numeric target with at most this many distinct values
# is read as class labels (multiclass); with more, as a regression target.
MAX_INFERRED_CLASSES = 20


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Numeric train/val/test splits of one table, ready for a sweep.

    The arrays are read-only. Build one with `load_csv` or
    `Dataset.from_arrays`.

    Attributes:
        x_train: (train_rows, features) float32, standardized features.
        x_val: (val_rows, features) float32.
        x_test: (test_rows, features) float32; 0 rows when there is no test
            split.
        y_train: (train_rows,) labels: float32 0.0/1.0 for "binary", int32
            0..K-1 for "multiclass", float32 (standardized) for "regression".
        y_val: (val_rows,) labels, same dtype as `y_train`.
        y_test: (test_rows,) labels, same dtype as `y_train`.
        task: "binary", "multiclass" or "regression".
        target: name of the target column.
        feature_names: one name per feature column, e.g.
            "Contract=Month-to-month" for a one-hot indicator.
        class_names: label text per integer class, in class order; () for
            regression.
        y_mean: regression only: the train mean of the raw target, so a
            prediction p maps back to p * y_std + y_mean. 0.0 otherwise.
        y_std: regression only: the train std of the raw target. 1.0
            otherwise.
        preprocessing: human readable notes of every step applied.
        source: where the data came from (the path as given to `load_csv`).
    """

    x_train: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray
    task: str
    target: str
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    y_mean: float = 0.0
    y_std: float = 1.0
    preprocessing: tuple[str, ...] = ()
    source: str = "<arrays>"

    def __post_init__(self):
        _validate_dataset(self)
        for name in ("x_train", "x_val", "x_test", "y_train", "y_val", "y_test"):
            view = getattr(self, name).view()
            view.setflags(write=False)
            object.__setattr__(self, name, view)

    @classmethod
    def from_arrays(
        cls,
        x_train,
        y_train,
        x_val,
        y_val,
        *,
        task: str,
        x_test=None,
        y_test=None,
        feature_names: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        y_mean: float = 0.0,
        y_std: float = 1.0,
        source: str = "<arrays>",
    ) -> Dataset:
        """Builds a `Dataset` from arrays already numeric and split.

        The arrays are copied: x to float32, y to float32 ("binary",
        "regression") or int32 ("multiclass"). Nothing is standardized.

        Args:
            x_train: (train_rows, features) numbers.
            y_train: (train_rows,) labels: 0/1 (or bool) for "binary",
                integers 0..K-1 for "multiclass", numbers for "regression".
            x_val: (val_rows, features) numbers.
            y_val: (val_rows,) labels.
            task: "binary", "multiclass" or "regression".
            x_test: optional (test_rows, features); give it with `y_test`.
            y_test: optional (test_rows,) labels.
            feature_names: defaults to ("x0", "x1", ...).
            class_names: defaults to ("0", "1") for "binary" and
                ("0", ..., "K-1") for "multiclass", K = largest label + 1.
            y_mean: regression scale, see `Dataset.y_mean`.
            y_std: regression scale, see `Dataset.y_std`.
            source: a name for where the arrays came from.

        Returns:
            The validated `Dataset`.

        Raises:
            ValueError: for an unknown task, wrong shapes, non-finite
                values, or labels that do not fit the task.

        Example:
            >>> import numpy as np
            >>> x = np.zeros((8, 3))
            >>> y = np.array([0, 1] * 4)
            >>> Dataset.from_arrays(x, y, x[:2], y[:2], task="binary").n_outputs
            1
        """
        _check_task(task, allow_none=False)
        if (x_test is None) != (y_test is None):
            raise ValueError(
                "x_test and y_test must be given together, but got "
                f"x_test={'None' if x_test is None else 'an array'}, "
                f"y_test={'None' if y_test is None else 'an array'}; "
                "pass both or neither"
            )
        x = {"x_train": x_train, "x_val": x_val}
        y = {"y_train": y_train, "y_val": y_val}
        if x_test is not None:
            x["x_test"], y["y_test"] = x_test, y_test
        x = {name: _as_features(name, value) for name, value in x.items()}
        y = {name: _as_labels(name, value, task) for name, value in y.items()}
        n_features = x["x_train"].shape[1]
        if x_test is None:
            x["x_test"] = np.zeros((0, n_features), np.float32)
            y["y_test"] = np.zeros((0,), y["y_train"].dtype)
        if feature_names is None:
            feature_names = tuple(f"x{i}" for i in range(n_features))
        if class_names is None:
            class_names = _default_class_names(task, y.values())
        return cls(
            **x,
            **y,
            task=task,
            target="y",
            feature_names=tuple(str(name) for name in feature_names),
            class_names=tuple(str(name) for name in class_names),
            y_mean=float(y_mean),
            y_std=float(y_std),
            preprocessing=(),
            source=str(source),
        )

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return self.x_train.shape[1]

    @property
    def n_outputs(self) -> int:
        """Width of the model's output: 1 for binary and regression, K for
        multiclass."""
        return len(self.class_names) if self.task == "multiclass" else 1

    @property
    def n_train(self) -> int:
        """Rows in the training split."""
        return self.x_train.shape[0]

    @property
    def n_val(self) -> int:
        """Rows in the validation split."""
        return self.x_val.shape[0]

    @property
    def n_test(self) -> int:
        """Rows in the test split (0 when there is none)."""
        return self.x_test.shape[0]

    @property
    def majority_class_fraction(self) -> float | None:
        """Share of the most common class in the validation split: the
        accuracy of always predicting it. None for regression."""
        if self.task == "regression":
            return None
        counts = _class_counts(self.y_val, self.task, len(self.class_names))
        return float(counts.max() / max(counts.sum(), 1))

    def summary(self) -> str:
        """A few lines for a person: rows, features, task, classes, notes."""
        lines = [
            f"{self.source}: {self.task} target {self.target!r}",
            f"rows: {self.n_train} train / {self.n_val} val / {self.n_test} test; "
            f"{self.n_features} features",
        ]
        if self.task == "regression":
            lines.append(
                f"target scale: mean {self.y_mean:.6g}, std {self.y_std:.6g} "
                "(train statistics)"
            )
        else:
            counts = _class_counts(self.y_train, self.task, len(self.class_names))
            shares = counts / max(counts.sum(), 1)
            lines.append(
                "classes (share of train): "
                + ", ".join(
                    f"{name} {share:.1%}"
                    for name, share in zip(self.class_names, shares)
                )
            )
        if self.preprocessing:
            lines.append("preprocessing:")
            lines.extend(f"  - {note}" for note in self.preprocessing)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Dataset(source={self.source!r}, task={self.task!r}, "
            f"target={self.target!r}, n_train={self.n_train}, n_val={self.n_val}, "
            f"n_test={self.n_test}, n_features={self.n_features})"
        )


def load_csv(
    path: str | os.PathLike,
    target: str,
    *,
    task: str | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    drop: Iterable[str] | str = (),
) -> Dataset:
    """Reads a CSV file into a preprocessed, split `Dataset`.

    Args:
        path: the CSV file (str or pathlib.Path), with a header row.
        target: name of the column to predict.
        task: "binary", "multiclass" or "regression"; None infers it from the
            target: text or bool -> "binary" with 2 classes, else
            "multiclass"; numbers with 2 distinct values -> "binary";
            integers with at most 20 distinct values -> "multiclass";
            other numbers -> "regression".
        val_fraction: share of rows for validation, 0 < val_fraction < 1.
        test_fraction: share of rows held out for testing, 0 <= test_fraction
            < 1, with val_fraction + test_fraction < 1.
        seed: seed of the shuffle (`np.random.default_rng(seed)`).
        drop: column names to leave out (a single name may be a str).

    Returns:
        A `Dataset` whose x arrays are (rows, features) float32 and y arrays
        (rows,) as described there; `preprocessing` lists every step.

    Raises:
        ValueError: when the file is missing or empty, a name is not a
            column, the target has one class, a column has no values, the
            fractions are out of range, or a split would be too small. The
            message names the value and the fix.

    Example:
        >>> data = load_csv("data/telco_customer_churn.csv", target="Churn")
        >>> data.x_train.shape, data.y_train.dtype
        ((5634, 45), dtype('float32'))
    """
    _check_fractions(val_fraction, test_fraction)
    _check_task(task, allow_none=True)
    _check_seed(seed)
    source = str(path)
    notes: list[str] = []

    frame = _read_csv(path, source)
    drop = _check_names(frame, target, drop, source)
    frame = _drop_missing_target(frame, target, source, notes)
    features = _drop_columns(frame.drop(columns=[target]), drop, notes)
    features = _drop_id_columns(features, notes)
    _check_no_empty_columns(features, source)
    features, coerced = _coerce_numeric_text(features)
    if features.shape[1] == 0:
        raise ValueError(
            f"no feature columns are left in {source} after dropping "
            f"{_name_list(drop) or 'nothing'} and id-like columns; keep at least one "
            "column besides the target (check drop=)"
        )

    task, labels, class_names = _encode_target(frame[target], task, source, notes)
    rows = _split_rows(
        labels, task, val_fraction, test_fraction, seed, target, source, notes
    )
    parts = [features.iloc[index].reset_index(drop=True) for index in rows]
    parts = _impute_numeric(parts, coerced, source, notes)
    parts, feature_names = _encode_features(parts, notes)
    xs = _standardize(parts, notes)
    ys, y_mean, y_std = _finish_labels(
        [labels[index] for index in rows], task, target, notes
    )

    return Dataset(
        x_train=xs[0],
        x_val=xs[1],
        x_test=xs[2],
        y_train=ys[0],
        y_val=ys[1],
        y_test=ys[2],
        task=task,
        target=target,
        feature_names=feature_names,
        class_names=class_names,
        y_mean=y_mean,
        y_std=y_std,
        preprocessing=tuple(notes),
        source=source,
    )


def check_batch_size(dataset: Dataset, batch_size: int) -> None:
    """Checks that one minibatch fits in the training split.

    Args:
        dataset: the data a sweep will train on.
        batch_size: rows per minibatch.

    Raises:
        ValueError: when batch_size is not a positive integer or exceeds the
            training rows.
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, numbers.Integral)
        or batch_size < 1
    ):
        raise ValueError(
            f"`batch_size >= 1` must hold for an integer batch_size, but got "
            f"batch_size={batch_size!r}; pass a positive integer such as 32"
        )
    n = dataset.n_train
    if batch_size > n:
        raise ValueError(
            f"batch_size={batch_size} is larger than the training split ({n} rows) "
            f"of {dataset.source}; use batch_size <= {n} or a smaller "
            "val_fraction/test_fraction"
        )


# --- checks of the arguments ------------------------------------------------


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (
        ("val_fraction", val_fraction),
        ("test_fraction", test_fraction),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(
                f"{name} must be a number, but got {name}={value!r}; pass e.g. "
                f"{name}=0.2"
            )
    if not 0 < val_fraction < 1:
        raise ValueError(
            f"`0 < val_fraction < 1` must hold, but got val_fraction={val_fraction}; "
            "the sweep scores trials on the validation split, so pass e.g. "
            "val_fraction=0.2"
        )
    if not 0 <= test_fraction < 1:
        raise ValueError(
            f"`0 <= test_fraction < 1` must hold, but got "
            f"test_fraction={test_fraction}; pass e.g. test_fraction=0.1, or 0 "
            "for no test split"
        )
    if not val_fraction + test_fraction < 1:
        raise ValueError(
            "`val_fraction + test_fraction < 1` must hold, but got "
            f"(val_fraction={val_fraction}, test_fraction={test_fraction}); "
            "leave a share of the rows for training"
        )


def _check_task(task: str | None, *, allow_none: bool) -> None:
    if task is None and allow_none:
        return
    if task not in TASKS:
        choices = ", ".join(repr(t) for t in TASKS)
        infer = " or None (to infer it from the target)" if allow_none else ""
        raise ValueError(f"task must be one of {choices}{infer}, but got task={task!r}")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(
            f"seed must be a non-negative integer, but got seed={seed!r}; pass e.g. "
            "seed=0"
        )


# --- 1. reading --------------------------------------------------------------


def _read_csv(path: str | os.PathLike, source: str) -> pd.DataFrame:
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


# --- 2. names and the target --------------------------------------------------


def _check_names(
    frame: pd.DataFrame, target: str, drop: Iterable[str] | str, source: str
) -> tuple[str, ...]:
    """Checks `target` and `drop` against the columns; returns drop as a tuple."""
    columns = list(frame.columns)
    if target not in columns:
        raise ValueError(
            _unknown_column_message("target column", target, columns, source)
        )
    drop = (drop,) if isinstance(drop, str) else tuple(drop)
    for name in drop:
        if name not in columns:
            raise ValueError(
                _unknown_column_message("drop column", name, columns, source)
            )
    if target in drop:
        raise ValueError(
            f"target column {target!r} is also listed in drop={list(drop)!r}; "
            "remove it from drop"
        )
    return drop


def _unknown_column_message(
    what: str, name: Any, columns: list[str], source: str
) -> str:
    message = f"{what} {name!r} not found in {source}"
    nearest = _nearest_name(str(name), columns)
    if nearest is not None:
        message += f"; did you mean {nearest!r}?"
    return message + f" columns: {', '.join(columns)}"


def _nearest_name(name: str, names: list[str]) -> str | None:
    """The closest of `names` to `name`, ignoring case; None if none is close."""
    lowered = {candidate.lower(): candidate for candidate in reversed(names)}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    return lowered[matches[0]] if matches else None


def _missing_mask(column: pd.Series) -> np.ndarray:
    """(rows,) bool: the cell is NaN/None or, for text, empty or blank."""
    if not _is_text(column):
        return column.isna().to_numpy()
    text = _as_text(column)
    return (text.isna() | text.str.strip().eq("")).to_numpy()


def _as_text(column: pd.Series) -> pd.Series:
    """The column as pandas text (dtype "str"); missing cells stay NaN."""
    return column.astype("str")


def _drop_missing_target(
    frame: pd.DataFrame, target: str, source: str, notes: list[str]
) -> pd.DataFrame:
    missing = _missing_mask(frame[target])
    if missing.all():
        raise ValueError(
            f"target column {target!r} in {source} has no values (all {len(frame)} "
            "are missing or blank); pass a column with labels as target="
        )
    if missing.any():
        notes.append(
            f"dropped {int(missing.sum())} rows with a missing target {target!r}"
        )
        frame = frame.loc[~missing].reset_index(drop=True)
    return frame


# --- 3. dropped and id-like columns -------------------------------------------


def _drop_columns(
    features: pd.DataFrame, drop: tuple[str, ...], notes: list[str]
) -> pd.DataFrame:
    if drop:
        notes.append(f"dropped {_name_list(drop)} as asked (drop=)")
    return features.drop(columns=list(drop))


def _drop_id_columns(features: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Drops text columns whose values are all distinct (identifiers)."""
    if len(features) <= ID_MIN_ROWS:
        return features
    ids = [
        name
        for name, column in features.items()
        if _is_text(column)
        and not _looks_numeric(column)
        and column.nunique(dropna=False) == len(column)
    ]
    for name in ids:
        notes.append(
            f"dropped id-like column {name!r} ({len(features)} distinct text values)"
        )
    return features.drop(columns=ids)


def _check_no_empty_columns(features: pd.DataFrame, source: str) -> None:
    for name, column in features.items():
        if _missing_mask(column).all():
            raise ValueError(
                f"column {name!r} in {source} has no values (all {len(column)} are "
                f"missing or blank); leave it out with drop=[{name!r}]"
            )


# --- 4. numeric-looking text --------------------------------------------------


def _is_text(column: pd.Series) -> bool:
    """True for columns that are neither numbers nor booleans."""
    return not (
        pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column)
    )


def _parse_numbers(column: pd.Series) -> pd.Series:
    """Text to float64; blank and unparseable cells become NaN."""
    text = _as_text(column).str.strip()
    return pd.to_numeric(text, errors="coerce").astype("float64")


def _looks_numeric(column: pd.Series) -> bool:
    """At least NUMERIC_TEXT_SHARE of the non-blank values parse as numbers."""
    counts = _as_text(column)[~_missing_mask(column)].str.strip().value_counts()
    if counts.empty:
        return False
    parses = pd.to_numeric(counts.index.to_series(), errors="coerce").notna().to_numpy()
    return counts.to_numpy()[parses].sum() >= NUMERIC_TEXT_SHARE * counts.sum()


def _coerce_numeric_text(features: pd.DataFrame) -> tuple[pd.DataFrame, set[str]]:
    """Reads numeric-looking text columns as numbers; returns their names too."""
    coerced = {
        name
        for name, column in features.items()
        if _is_text(column) and _looks_numeric(column)
    }
    features = features.assign(
        **{name: _parse_numbers(features[name]) for name in coerced}
    )
    return features, coerced


# --- 5. the target --------------------------------------------------------------


def _encode_target(
    column: pd.Series, task: str | None, source: str, notes: list[str]
) -> tuple[str, np.ndarray, tuple[str, ...]]:
    """Settles the task and encodes the labels.

    Returns:
        (task, labels, class_names): labels is (rows,) int64 class indices
        for classification, float64 raw values for regression.
    """
    name = column.name
    column = column.reset_index(drop=True)
    if _is_text(column) and _parse_numbers(column).notna().all():
        column = _parse_numbers(column)
        notes.append(f"read target {name!r} as numbers")
    numeric = not _is_text(column) and not pd.api.types.is_bool_dtype(column)

    if numeric:
        values = column.to_numpy(dtype=np.float64)
        distinct = np.unique(values)
    else:
        values = np.array([str(value) for value in column.tolist()], dtype=object)
        distinct = np.array(sorted(set(values.tolist())), dtype=object)

    if len(distinct) < 2:
        raise ValueError(
            f"target column {name!r} in {source} has a single value "
            f"{_label_text(distinct[0])!r} in all {len(values)} rows, so there is "
            "nothing to learn; pick a target with at least two values"
        )

    given = task is not None
    if task is None:
        task = _infer_task(numeric, values, distinct)
    if task == "regression":
        if not numeric:
            raise ValueError(
                f"task='regression' needs a numeric target, but {name!r} in {source} "
                f"holds text such as {_label_list(distinct[:3])}; use task='binary' or "
                "task='multiclass', or task=None to infer it"
            )
        notes.append(f"task 'regression' ({'given' if given else 'inferred'})")
        return task, values, ()

    if task == "binary" and len(distinct) != 2:
        raise ValueError(
            f"task='binary' needs exactly 2 classes, but target {name!r} in {source} "
            f"has {len(distinct)}: {_label_list(distinct)}; use task='multiclass'"
            + ("" if not numeric else " or task='regression'")
        )
    labels = np.searchsorted(distinct, values).astype(np.int64)
    class_names = tuple(_label_text(value) for value in distinct)
    how = "given" if given else "inferred"
    notes.append(f"task {task!r} ({how}, {len(class_names)} classes)")
    notes.append(
        f"mapped target {name!r} labels {_label_list(distinct)} to "
        f"{_short_list(list(range(len(distinct))))}"
    )
    return task, labels, class_names


def _infer_task(numeric: bool, values: np.ndarray, distinct: np.ndarray) -> str:
    if len(distinct) == 2:
        return "binary"
    if not numeric:
        return "multiclass"
    integers = bool(np.all(values == np.round(values)))
    if integers and len(distinct) <= MAX_INFERRED_CLASSES:
        return "multiclass"
    return "regression"


def _label_text(value: Any) -> str:
    """A label as text: 3.0 -> "3", 0.5 -> "0.5", "Yes" -> "Yes"."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def _label_list(values: Iterable[Any]) -> str:
    return _short_list([_label_text(value) for value in values])


def _short_list(items: list, limit: int = 20) -> str:
    if len(items) <= limit:
        return repr(items)
    return repr(items[:limit])[:-1] + f", ... ({len(items)} in all)]"


# --- 6. the split ---------------------------------------------------------------


def _split_rows(
    labels: np.ndarray,
    task: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    target: str,
    source: str,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffles rows into (train, val, test) index arrays.

    Classification splits each class in the same proportions (stratified);
    a class with 2 or more rows gets at least one validation row, and keeps
    at least one training row. Regression splits at random.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    if task == "regression":
        groups = [np.arange(n)]
    else:
        groups = [np.flatnonzero(labels == k) for k in range(int(labels.max()) + 1)]
    parts: tuple[list, list, list] = ([], [], [])
    for group in groups:
        group = rng.permutation(group)
        n_val, n_test = _split_sizes(len(group), val_fraction, test_fraction)
        parts[1].append(group[:n_val])
        parts[2].append(group[n_val : n_val + n_test])
        parts[0].append(group[n_val + n_test :])
    train, val, test = (rng.permutation(np.concatenate(part)) for part in parts)

    if len(train) < 2 or len(val) < 1:
        raise ValueError(
            f"`n_train >= 2 and n_val >= 1` must hold, but splitting the {n} rows of "
            f"{source} with val_fraction={val_fraction}, test_fraction={test_fraction} "
            f"gave (n_train={len(train)}, n_val={len(val)}); use a file with more rows "
            "or other fractions"
        )
    how = "at random" if task == "regression" else f"stratified by {target!r}"
    notes.append(
        f"split {len(train)}/{len(val)}/{len(test)} rows (train/val/test) with "
        f"seed {seed}, {how}"
    )
    return train, val, test


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Rows of a group of n that go to (val, test), rounded half up."""
    n_val = int(np.floor(n * val_fraction + 0.5))
    n_test = int(np.floor(n * test_fraction + 0.5))
    if val_fraction > 0 and n >= 2:
        n_val = max(n_val, 1)
    if test_fraction > 0 and n >= 3:
        n_test = max(n_test, 1)
    # Keep at least one row of the group for training: trim test, then val.
    excess = max(n_val + n_test - (n - 1), 0)
    trim_test = min(excess, n_test)
    return n_val - (excess - trim_test), n_test - trim_test


# --- 7. imputation ----------------------------------------------------------------


def _impute_numeric(
    parts: list[pd.DataFrame], coerced: set[str], source: str, notes: list[str]
) -> list[pd.DataFrame]:
    """Fills missing or infinite numbers with the train median, per column."""
    train = parts[0]
    filled = [part.copy() for part in parts]
    for name, column in train.items():
        if _is_text(column) or pd.api.types.is_bool_dtype(column):
            continue
        columns = [part[name].to_numpy(dtype=np.float64) for part in parts]
        bad = [~np.isfinite(values) for values in columns]
        n_bad = int(sum(mask.sum() for mask in bad))
        if n_bad == 0:
            if name in coerced:
                notes.append(f"coerced {name!r} from text to numbers")
            continue
        train_values = columns[0][~bad[0]]
        if train_values.size == 0:
            raise ValueError(
                f"column {name!r} in {source} has no values in the training split "
                f"({len(train)} rows), so it has no median to impute; leave it out "
                f"with drop=[{name!r}]"
            )
        median = float(np.median(train_values))
        for part, values, mask in zip(filled, columns, bad):
            part[name] = np.where(mask, median, values)
        if name in coerced:
            notes.append(
                f"coerced {name!r} to numbers: {n_bad} blank or non-numeric values "
                f"imputed with the train median {median:.6g}"
            )
        else:
            notes.append(
                f"imputed {n_bad} missing or infinite values in {name!r} with the "
                f"train median {median:.6g}"
            )
    return filled


# --- 8. encoding ---------------------------------------------------------------------


def _encode_features(
    parts: list[pd.DataFrame], notes: list[str]
) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Turns every column into float64 features, in column order.

    Numbers pass through; booleans become 0/1; text becomes one indicator
    per category seen in train ("name=value"). Missing text and categories
    not seen in train are all-zero.

    Returns:
        ([(rows, features) float64 per split], feature_names).
    """
    blocks: list[list[np.ndarray]] = [[] for _ in parts]
    names: list[str] = []
    text_columns, booleans, one_hot = 0, 0, 0
    for name, column in parts[0].items():
        if pd.api.types.is_bool_dtype(column):
            booleans += 1
            names.append(name)
            for block, part in zip(blocks, parts):
                block.append(part[name].to_numpy(dtype=np.float64)[:, None])
        elif _is_text(column):
            text_columns += 1
            categories = _train_categories(column)
            names.extend(f"{name}={category}" for category in categories)
            one_hot += len(categories)
            unseen = 0
            for block, part in zip(blocks, parts):
                indicators, n_unseen = _one_hot(part[name], categories)
                block.append(indicators)
                unseen += n_unseen
            n_missing = sum(int(_missing_mask(part[name]).sum()) for part in parts)
            if n_missing:
                notes.append(
                    f"{n_missing} missing values of {name!r} encoded as all-zero"
                )
            if unseen:
                notes.append(
                    f"{unseen} val/test values of {name!r} not seen in train encoded "
                    "as all-zero"
                )
        else:
            names.append(name)
            for block, part in zip(blocks, parts):
                block.append(part[name].to_numpy(dtype=np.float64)[:, None])
    if booleans:
        notes.append(f"converted {booleans} boolean columns to 0/1")
    if text_columns:
        notes.append(
            f"one-hot encoded {text_columns} text columns into {one_hot} features "
            "(categories from train)"
        )
    arrays = [
        np.concatenate(block, axis=1) if block else np.zeros((len(part), 0))
        for block, part in zip(blocks, parts)
    ]
    return arrays, tuple(names)


def _train_categories(column: pd.Series) -> list[str]:
    """Sorted distinct present values of a text column, as str."""
    return sorted(set(_as_text(column)[~_missing_mask(column)].tolist()))


def _one_hot(column: pd.Series, categories: list[str]) -> tuple[np.ndarray, int]:
    """(rows, len(categories)) float64 indicators, and the count of present
    values outside `categories`."""
    missing = _missing_mask(column)
    codes = pd.Index(categories, dtype=object).get_indexer(
        _as_text(column).to_numpy(dtype=object)
    )
    codes = np.where(missing, -1, codes)
    indicators = np.zeros((len(codes), len(categories)))
    rows = np.flatnonzero(codes >= 0)
    indicators[rows, codes[rows]] = 1.0
    unseen = int(np.sum((codes < 0) & ~missing))
    return indicators, unseen


# --- 9. scaling -------------------------------------------------------------------------


def _standardize(parts: list[np.ndarray], notes: list[str]) -> list[np.ndarray]:
    """Scales every feature by the train mean and std; constant features
    (std 0, up to rounding) get std 1, so they become 0 in train."""
    train = parts[0]
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    constant = std <= 1e-12 * np.abs(mean)
    std = np.where(constant, 1.0, std)
    note = f"standardized {train.shape[1]} features with train mean and std"
    if constant.any():
        note += f" ({int(constant.sum())} constant in train, now 0)"
    notes.append(note)
    return [
        np.ascontiguousarray((part - mean) / std, dtype=np.float32) for part in parts
    ]


def _finish_labels(
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


# --- Dataset validation -------------------------------------------------------------


def _as_features(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (rows, features), but got shape {array.shape}; "
            "reshape it, e.g. x.reshape(len(x), -1)"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(
            f"{name} must hold numbers, but got dtype {array.dtype}; encode text "
            "columns first (load_csv does this)"
        )
    if not np.all(np.isfinite(array.astype(np.float64))):
        raise ValueError(
            f"{name} must be finite, but it holds NaN or inf; impute or drop those values "
            "(load_csv imputes with the train median)"
        )
    return np.array(array, dtype=np.float32, copy=True)


def _as_labels(name: str, value: Any, task: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (rows,), but got shape {array.shape}; pass one "
            "label per row, e.g. y.reshape(-1)"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(
            f"{name} must hold numbers, but got dtype {array.dtype}; map the labels "
            "to integers first (load_csv does this)"
        )
    if not np.all(np.isfinite(array.astype(np.float64))):
        raise ValueError(
            f"{name} must be finite, but it holds NaN or inf; remove those rows"
        )
    if task == "binary":
        if not np.all((array == 0) | (array == 1)):
            raise ValueError(
                f"task='binary' needs {name} in {{0, 1}}, but got values "
                f"{_short_list(np.unique(array).tolist())}; map the two classes to 0 and 1"
            )
        return np.array(array, dtype=np.float32, copy=True)
    if task == "multiclass":
        if not np.all(array == np.round(array)) or (array.size and array.min() < 0):
            raise ValueError(
                f"task='multiclass' needs {name} to be class indices 0..K-1, but got "
                f"values {_short_list(np.unique(array).tolist())}; map the classes to "
                "0, 1, ..., K-1"
            )
        return np.array(array, dtype=np.int32, copy=True)
    return np.array(array, dtype=np.float32, copy=True)


def _default_class_names(task: str, labels: Iterable[np.ndarray]) -> tuple[str, ...]:
    if task == "binary":
        return ("0", "1")
    if task == "multiclass":
        n_classes = max((int(y.max()) + 1 for y in labels if y.size), default=0)
        return tuple(str(k) for k in range(n_classes))
    return ()


def _class_counts(labels: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    return np.bincount(
        labels.astype(np.int64), minlength=n_classes if task != "binary" else 2
    )


def _validate_dataset(data: Dataset) -> None:
    """Checks the invariants every Dataset keeps; raises ValueError."""
    _check_task(data.task, allow_none=False)
    splits = ("train", "val", "test")
    xs = {split: getattr(data, f"x_{split}") for split in splits}
    ys = {split: getattr(data, f"y_{split}") for split in splits}
    label_dtype = np.int32 if data.task == "multiclass" else np.float32
    for split in splits:
        x, y = xs[split], ys[split]
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
            raise ValueError(
                f"x_{split} must be a 2-D float32 numpy array, but got "
                f"{type(x).__name__} {getattr(x, 'dtype', '')} "
                f"{getattr(x, 'shape', '')}; use Dataset.from_arrays, which casts"
            )
        if not isinstance(y, np.ndarray) or y.dtype != label_dtype or y.ndim != 1:
            raise ValueError(
                f"y_{split} must be a 1-D {np.dtype(label_dtype).name} numpy array for "
                f"task={data.task!r}, but got {type(y).__name__} "
                f"{getattr(y, 'dtype', '')} {getattr(y, 'shape', '')}; use "
                "Dataset.from_arrays, which casts"
            )
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x_{split} and y_{split} must have the same number of rows, but got "
                f"(x_{split}: {x.shape[0]}, y_{split}: {y.shape[0]})"
            )
        if x.shape[1] != xs["train"].shape[1]:
            raise ValueError(
                f"every split must have the same features, but got "
                f"(x_train: {xs['train'].shape[1]}, x_{split}: {x.shape[1]}) columns"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError(
                f"x_{split} must be finite, but it holds NaN or inf; impute or drop "
                "those values first (load_csv imputes)"
            )
    if xs["train"].shape[0] < 1 or xs["val"].shape[0] < 1:
        raise ValueError(
            "`n_train >= 1 and n_val >= 1` must hold, but got "
            f"(n_train={xs['train'].shape[0]}, n_val={xs['val'].shape[0]}); the sweep "
            "trains on train and scores on val"
        )
    if xs["train"].shape[1] < 1:
        raise ValueError("the data must have at least one feature, but got 0 columns")
    if len(data.feature_names) != xs["train"].shape[1]:
        raise ValueError(
            f"feature_names must name every feature, but got "
            f"{len(data.feature_names)} names for {xs['train'].shape[1]} features"
        )
    _validate_classes(data, ys)


def _validate_classes(data: Dataset, ys: dict[str, np.ndarray]) -> None:
    n_classes = len(data.class_names)
    if data.task == "regression":
        if n_classes:
            raise ValueError(
                f"task='regression' has no classes, but got class_names="
                f"{data.class_names!r}; pass class_names=None"
            )
        if not (np.isfinite(data.y_std) and data.y_std > 0):
            raise ValueError(f"`y_std > 0` must hold, but got y_std={data.y_std}")
        return
    if data.task == "binary" and n_classes != 2:
        raise ValueError(
            f"task='binary' needs 2 class_names, but got {data.class_names!r}"
        )
    if data.task == "multiclass":
        if n_classes < 2:
            raise ValueError(
                f"task='multiclass' needs at least 2 classes, but got class_names="
                f"{data.class_names!r}; use more classes or task='binary'"
            )
        for split, y in ys.items():
            if y.size and (y.min() < 0 or y.max() >= n_classes):
                raise ValueError(
                    f"y_{split} must hold class indices 0..{n_classes - 1} (one per "
                    f"class name), but got values from {y.min()} to {y.max()}; give "
                    "class_names for every class"
                )


def _name_list(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)
