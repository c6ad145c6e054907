"""Checks of `load_csv`'s arguments and of the invariants every `Dataset` keeps.

Each failure is a ValueError that says the rule, the value and the fix.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeps.data.messages import short_list
from sweeps.data.preprocessing import Preprocessing

if TYPE_CHECKING:
    from sweeps.data.dataset import Dataset

TASKS = ("binary", "multiclass", "regression")


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
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (rows, features), but got shape {array.shape}; reshape it, e.g. x.reshape(len(x), -1)"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(
            f"{name} must hold numbers, but got dtype {array.dtype}; encode text columns first (load_csv does this)"
        )
    if not np.all(np.isfinite(array.astype(np.float64))):
        raise ValueError(
            f"{name} must be finite, but it holds NaN or inf; impute or drop those values "
            "(load_csv imputes with the train median)"
        )
    return np.array(array, dtype=np.float32, copy=True)


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


def validate_dataset(data: Dataset) -> None:
    """Checks the invariants every Dataset keeps; raises ValueError."""
    check_task(data.task, allow_none=False)
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
    validate_classes(data, ys)
    validate_preprocessing_fit(data)


def validate_classes(data: Dataset, ys: dict[str, np.ndarray]) -> None:
    n_classes = len(data.class_names)
    if data.task == "regression":
        if n_classes:
            raise ValueError(
                f"task='regression' has no classes, but got class_names={data.class_names!r}; pass class_names=None"
            )
        if not (np.isfinite(data.y_std) and data.y_std > 0):
            raise ValueError(f"`y_std > 0` must hold, but got y_std={data.y_std}")
        return
    if data.task == "binary" and n_classes != 2:
        raise ValueError(f"task='binary' needs 2 class_names, but got {data.class_names!r}")
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


def validate_preprocessing_fit(data: Dataset) -> None:
    """The fitted preprocessing, if any, describes this data set's features
    and labels."""
    fit = data.preprocessing_fit
    if fit is None:
        return
    if not isinstance(fit, Preprocessing):
        raise TypeError(f"preprocessing_fit must be a sweeps.data.Preprocessing or None, but got {type(fit).__name__}")
    for name in ("feature_names", "task", "target", "class_names", "y_mean", "y_std"):
        if getattr(fit, name) != getattr(data, name):
            raise ValueError(
                f"preprocessing_fit.{name} must equal the data set's {name}, but got "
                f"{_short(getattr(fit, name))} and {_short(getattr(data, name))}"
            )


def _short(value: Any) -> str:
    return short_list(list(value), limit=5) if isinstance(value, tuple) else repr(value)
