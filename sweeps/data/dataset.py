"""The `Dataset`: numeric train/val/test splits of one table, ready for a sweep.

`load_csv` (`sweeps.data.loading`) builds one from a CSV file;
`Dataset.from_arrays` builds one from in-memory arrays for tests and
benchmarks, with the same shape and dtype checks; it standardizes a
regression target as `load_csv` does and uses the features as given.
`validate_dataset` checks the invariants every `Dataset` keeps (it runs when one is built);
`check_batch_size` checks a minibatch size against the training split.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from sweeps.data.checks import as_features, as_labels, check_target_scale, check_task
from sweeps.data.messages import short_list
from sweeps.data.preprocessing import Preprocessing
from sweeps.data.target import finish_labels


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
        preprocessing_fit: the fitted `Preprocessing` (`load_csv`): turns
            new rows into features exactly as the training rows were, and
            model outputs back into labels or target units; it serialises
            with `to_json`. None for `Dataset.from_arrays`, whose arrays are
            used as given.
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
    preprocessing_fit: Preprocessing | None = None

    def __post_init__(self):
        validate_dataset(self)
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
        y_mean: float | None = None,
        y_std: float | None = None,
        source: str = "<arrays>",
    ) -> Dataset:
        """Builds a `Dataset` from arrays already numeric and split.

        The arrays are copied: x to float32, y to float32 ("binary",
        "regression") or int32 ("multiclass"). The features are used as
        given (standardize them first, as `load_csv` does). A regression
        target is standardized as `load_csv` standardizes it: with the mean
        and std of `y_train` (float64), recorded as `y_mean` and `y_std`, so
        the sweep trains on a target of scale 1 and reports `val_rmse`,
        `val_mae` and predictions in the target's own units. There is no
        fitted preprocessing: `preprocessing_fit` is None.

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
            y_mean: regression only, with `y_std`: the y arrays are already
                standardized with this mean (a prediction p maps back to
                p * y_std + y_mean) and are used as given. None (default):
                fitted on `y_train`, as above.
            y_std: regression only, with `y_mean`: the std they were
                standardized with (> 0). None: fitted on `y_train`.
            source: a name for where the arrays came from.

        Returns:
            The validated `Dataset`.

        Raises:
            ValueError: for an unknown task, wrong shapes, non-finite
                values, labels that do not fit the task, or only one of
                y_mean and y_std (or a scale other than 0 and 1 for
                classification).

        Example:
            >>> import numpy as np
            >>> x = np.zeros((8, 3))
            >>> y = np.array([0, 1] * 4)
            >>> Dataset.from_arrays(x, y, x[:2], y[:2], task="binary").n_outputs
            1
            >>> prices = np.array([400.0, 500.0, 600.0, 500.0] * 2)
            >>> data = Dataset.from_arrays(x, prices, x[:2], prices[:2], task="regression")
            >>> data.y_mean, round(data.y_std, 4), data.y_train[:3].tolist()
            (500.0, 70.7107, [-1.4142135381698608, 0.0, 1.4142135381698608])
        """
        check_task(task, allow_none=False)
        if (x_test is None) != (y_test is None):
            raise ValueError(
                "x_test and y_test must be given together, but got "
                f"x_test={'None' if x_test is None else 'an array'}, "
                f"y_test={'None' if y_test is None else 'an array'}; "
                "pass both or neither"
            )
        check_target_scale(task, y_mean, y_std)
        x = {"x_train": x_train, "x_val": x_val}
        y = {"y_train": y_train, "y_val": y_val}
        if x_test is not None:
            x["x_test"], y["y_test"] = x_test, y_test
        x = {name: as_features(name, value) for name, value in x.items()}
        raw = {name: np.asarray(value) for name, value in y.items()}
        y = {name: as_labels(name, value, task) for name, value in raw.items()}
        n_features = x["x_train"].shape[1]
        if x_test is None:
            x["x_test"] = np.zeros((0, n_features), np.float32)
            y["y_test"] = np.zeros((0,), y["y_train"].dtype)
            raw["y_test"] = np.zeros((0,))
        notes: list[str] = []
        if task == "regression" and y_mean is None:  # as load_csv does, from the float64 values given
            labels = [raw[name].astype(np.float64) for name in ("y_train", "y_val", "y_test")]
            scaled, y_mean, y_std = finish_labels(labels, task, "y", notes)
            y = dict(zip(("y_train", "y_val", "y_test"), scaled))
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
            y_mean=float(y_mean) if task == "regression" else 0.0,
            y_std=float(y_std) if task == "regression" else 1.0,
            preprocessing=tuple(notes),
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
            f"rows: {self.n_train} train / {self.n_val} val / {self.n_test} test; {self.n_features} features",
        ]
        if self.task == "regression":
            lines.append(f"target scale: mean {self.y_mean:.6g}, std {self.y_std:.6g} (train statistics)")
        else:
            counts = _class_counts(self.y_train, self.task, len(self.class_names))
            shares = counts / max(counts.sum(), 1)
            lines.append(
                "classes (share of train): "
                + ", ".join(f"{name} {share:.1%}" for name, share in zip(self.class_names, shares))
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


def check_batch_size(dataset: Dataset, batch_size: int) -> None:
    """Checks that one minibatch fits in the training split.

    Args:
        dataset: the data a sweep will train on.
        batch_size: rows per minibatch.

    Raises:
        ValueError: when batch_size is not a positive integer or exceeds the
            training rows.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
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


def _default_class_names(task: str, labels: Iterable[np.ndarray]) -> tuple[str, ...]:
    if task == "binary":
        return ("0", "1")
    if task == "multiclass":
        n_classes = max((int(y.max()) + 1 for y in labels if y.size), default=0)
        return tuple(str(k) for k in range(n_classes))
    return ()


def _class_counts(labels: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    return np.bincount(labels.astype(np.int64), minlength=n_classes if task != "binary" else 2)
