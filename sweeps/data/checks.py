"""Checks of the arguments of `load_csv` and `Dataset.from_arrays`, before any data is read or copied.

Each failure is a ValueError that says the rule, the value and the fix. The invariants a built
`Dataset` keeps are checked beside it (`sweeps.data.dataset.validate_dataset`).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from sweeps.data.messages import short_list

TASKS = ("binary", "multiclass", "regression")
# The share of rows `load_csv` and `Dataset.from_arrays` (without x_val) split off for validation.
VAL_FRACTION = 0.2


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (
        ("val_fraction", val_fraction),
        ("test_fraction", test_fraction),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a number, but got {name}={value!r}; pass e.g. {name}=0.2")
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


def check_given_together(split: str, x: Any, y: Any, fix: str) -> None:
    """`Dataset.from_arrays`' x_{split} and y_{split}: both or neither."""
    if (x is None) != (y is None):
        raise ValueError(
            f"x_{split} and y_{split} must be given together, but got "
            f"x_{split}={'None' if x is None else 'an array'}, "
            f"y_{split}={'None' if y is None else 'an array'}; {fix}"
        )


def check_split_options(
    x_val: Any, x_test: Any, val_fraction: float | None, test_fraction: float | None, seed: int | None
) -> tuple[float, float, int] | None:
    """`Dataset.from_arrays`' val_fraction, test_fraction and seed, which choose how x_train's rows are split
    when x_val is None (None stands for 0.2, 0.0 and 0).

    Returns:
        (val_fraction, test_fraction, seed) of the split; None when x_val is given (nothing is split).
    """
    options = {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed}
    given = ", ".join(f"{name}={value!r}" for name, value in options.items() if value is not None)
    if x_val is not None:
        if given:
            raise ValueError(
                f"val_fraction, test_fraction and seed choose how x_train's rows are split, but got ({given}) "
                "with x_val and y_val given; leave them out to validate on x_val, or leave out x_val and y_val "
                "to split x_train's rows"
            )
        return None
    val_fraction = VAL_FRACTION if val_fraction is None else val_fraction
    test_fraction = 0.0 if test_fraction is None else test_fraction
    seed = 0 if seed is None else seed
    check_fractions(val_fraction, test_fraction)
    check_seed(seed)
    if x_test is not None and test_fraction != 0:
        raise ValueError(
            f"test_fraction={test_fraction} asks for a test split of x_train's rows, but x_test and y_test are "
            "given; leave test_fraction out (or pass 0) to test on x_test, or leave out x_test and y_test"
        )
    return val_fraction, test_fraction, seed


def check_task(task: str | None, *, allow_none: bool) -> None:
    if task is None and allow_none:
        return
    if task not in TASKS:
        choices = ", ".join(repr(t) for t in TASKS)
        infer = " or None (to infer it from the target)" if allow_none else ""
        raise ValueError(f"task must be one of {choices}{infer}, but got task={task!r}")


def check_one_hot_limits(max_categories: Any, min_frequency: Any) -> None:
    """`load_csv`'s max_categories (None or an integer >= 1) and min_frequency (None, an integer >= 1, or a
    share of the training rows in (0, 1))."""
    integer = isinstance(max_categories, numbers.Integral) and not isinstance(max_categories, bool)
    if max_categories is not None and not (integer and max_categories >= 1):
        raise ValueError(
            f"max_categories must be an integer >= 1 or None, but got max_categories={max_categories!r}; pass e.g. "
            "max_categories=30 (at most 30 features per text column), or None for no limit"
        )
    count = isinstance(min_frequency, numbers.Integral) and not isinstance(min_frequency, bool) and min_frequency >= 1
    share = isinstance(min_frequency, float) and 0 < min_frequency < 1
    if min_frequency is not None and not (count or share):
        raise ValueError(
            "min_frequency must be an integer >= 1 (training rows), a float in (0, 1) (a share of them) or None, "
            f"but got min_frequency={min_frequency!r}; pass e.g. min_frequency=5"
        )


def check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, but got seed={seed!r}; pass e.g. seed=0")


def check_target_scale(task: str, y_mean: float | None, y_std: float | None) -> None:
    """`Dataset.from_arrays`' y_mean and y_std: both or neither, for a regression target only."""
    if task != "regression":
        if y_mean not in (None, 0.0) or y_std not in (None, 1.0):
            raise ValueError(
                f"y_mean and y_std describe a regression target's scale, but task={task!r} got "
                f"(y_mean={y_mean!r}, y_std={y_std!r}); leave them out"
            )
        return
    if (y_mean is None) != (y_std is None):
        raise ValueError(
            f"y_mean and y_std must be given together, but got (y_mean={y_mean!r}, y_std={y_std!r}); "
            "pass both for a target already standardized, or neither to standardize y with y_train's mean and std"
        )


def as_features(name: str, value: Any) -> np.ndarray:
    """`value` (a numpy or JAX array, or anything `np.asarray` takes) as a numpy array of numbers of shape
    (rows, features) or (rows, *input_shape), all finite; checked, not copied."""
    array = np.asarray(value)
    if array.ndim < 2:
        raise ValueError(
            f"{name} must be (rows, ...): (rows, features) for a table or (rows, *input_shape), e.g. "
            f"(rows, height, width, channels) for images, but got shape {array.shape}; reshape it, e.g. "
            "x.reshape(len(x), -1) for one feature per row"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(
            f"{name} must hold numbers, but got dtype {array.dtype}; encode text columns first (load_csv does "
            "this), or cast other dtypes, e.g. x.astype(np.float32)"
        )
    # Integers and booleans are always finite: only floats are looked at (no float64 copy of the whole array).
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise ValueError(
            f"{name} must be finite, but it holds NaN or inf; impute or drop those values "
            "(load_csv imputes with the train median)"
        )
    return array


def check_input_shapes(xs: dict[str, np.ndarray]) -> None:
    """Every split's x has the train split's shape past the rows axis (its `input_shape`)."""
    expected = xs["train"].shape[1:]
    for split, x in xs.items():
        if x.shape[1:] == expected:
            continue
        if x.ndim == 2 and len(expected) == 1:
            raise ValueError(
                f"every split must have the same features, but got "
                f"(x_train: {expected[0]}, x_{split}: {x.shape[1]}) columns"
            )
        raise ValueError(
            "every split must have the same input shape (the shape of one row), but got "
            f"(x_train: {expected}, x_{split}: {x.shape[1:]}); give every split the same shape past the rows axis"
        )


def check_rows(split: str, x: np.ndarray, y: np.ndarray) -> None:
    """One label per row of x."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x_{split} and y_{split} must have the same number of rows, but got "
            f"(x_{split}: {x.shape[0]}, y_{split}: {y.shape[0]})"
        )


def as_labels(name: str, value: Any, task: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (rows,), but got shape {array.shape}; pass one label per row, e.g. y.reshape(-1)"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(
            f"{name} must hold numbers, but got dtype {array.dtype}; map the labels "
            "to integers first (load_csv does this)"
        )
    if not np.all(np.isfinite(array.astype(np.float64))):
        raise ValueError(f"{name} must be finite, but it holds NaN or inf; remove those rows")
    if task == "binary":
        if not np.all((array == 0) | (array == 1)):
            raise ValueError(
                f"task='binary' needs {name} in {{0, 1}}, but got values "
                f"{short_list(np.unique(array).tolist())}; map the two classes to 0 and 1"
            )
        return np.array(array, dtype=np.float32, copy=True)
    if task == "multiclass":
        if not np.all(array == np.round(array)) or (array.size and array.min() < 0):
            raise ValueError(
                f"task='multiclass' needs {name} to be class indices 0..K-1, but got "
                f"values {short_list(np.unique(array).tolist())}; map the classes to "
                "0, 1, ..., K-1"
            )
        return np.array(array, dtype=np.int32, copy=True)
    return np.array(array, dtype=np.float32, copy=True)
