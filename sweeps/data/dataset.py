"""The `Dataset`: numeric train/val/test splits of one table or array, ready for a sweep.

`load_csv` (`sweeps.data.loading`) builds one from a CSV file;
`Dataset.from_arrays` builds one from the user's own numpy or JAX arrays,
a (rows, features) table or any (rows, *input_shape) such as images, with
the same shape and dtype checks; it splits off a validation set when none
is given, standardizes a regression target as `load_csv` does and uses the
features as given.
`validate_dataset` checks the invariants every `Dataset` keeps (it runs when one is built);
`check_batch_size` checks a minibatch size against the training split.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from sweeps.data.checks import (
    as_features,
    as_labels,
    check_given_together,
    check_input_shapes,
    check_rows,
    check_split_options,
    check_target_scale,
    check_task,
)
from sweeps.data.messages import short_list
from sweeps.data.preprocessing import Preprocessing
from sweeps.data.splitting import split_rows
from sweeps.data.target import finish_labels

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Numeric train/val/test splits of one table or array, ready for a sweep.

    The arrays are read-only. Build one with `load_csv` (a table) or
    `Dataset.from_arrays` (a table, or any arrays of rows such as images or
    sequences). Every x array has the shape (rows, *input_shape): (rows,
    features) for a table, e.g. (rows, height, width, channels) for images
    or (rows, steps, features) for sequences; `input_shape` is the same for
    every split.

    Attributes:
        x_train: (train_rows, *input_shape) float32 inputs: standardized
            features for `load_csv`, the values given for `from_arrays`.
        x_val: (val_rows, *input_shape) float32.
        x_test: (test_rows, *input_shape) float32; 0 rows when there is no
            test split.
        y_train: (train_rows,) labels: float32 0.0/1.0 for "binary", int32
            0..K-1 for "multiclass", float32 (standardized) for "regression".
        y_val: (val_rows,) labels, same dtype as `y_train`.
        y_test: (test_rows,) labels, same dtype as `y_train`.
        task: "binary", "multiclass" or "regression".
        target: name of the target column.
        feature_names: one name per feature column, e.g.
            "Contract=Month-to-month" for a one-hot indicator; for inputs of
            more than one axis (images, sequences), () or one name per value
            of a row (`n_features` names).
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
        x_val=None,
        y_val=None,
        *,
        task: str,
        x_test=None,
        y_test=None,
        val_fraction: float | None = None,
        test_fraction: float | None = None,
        seed: int | None = None,
        feature_names: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        y_mean: float | None = None,
        y_std: float | None = None,
        source: str = "<arrays>",
    ) -> Dataset:
        """Builds a `Dataset` from the user's numeric arrays, split or not.

        The x arrays are a table, (rows, features), or any (rows,
        *input_shape): images (rows, height, width, channels), sequences
        (rows, steps, features); numpy or JAX arrays, or anything
        `np.asarray` takes. Without `x_val` and `y_val`, the rows of
        `x_train` and `y_train` are split into train, validation (and, with
        `test_fraction`, test) rows as `load_csv` splits them: stratified by
        class for classification, at random for regression, with
        `np.random.default_rng(seed)`; the split is noted in `preprocessing`.

        The arrays are copied, once: x to float32, y to float32 ("binary",
        "regression") or int32 ("multiclass"). The features are used as
        given (standardize them first, as `load_csv` does). A regression
        target is standardized as `load_csv` standardizes it: with the mean
        and std of the training rows' y (float64, after the split), recorded
        as `y_mean` and `y_std`, so the sweep trains on a target of scale 1
        and reports `val_rmse`, `val_mae` and predictions in the target's
        own units. There is no fitted preprocessing: `preprocessing_fit` is
        None.

        Args:
            x_train: (train_rows, *input_shape) numbers; all the rows when
                x_val is None.
            y_train: (train_rows,) labels: 0/1 (or bool) for "binary",
                integers 0..K-1 for "multiclass", numbers for "regression".
            x_val: optional (val_rows, *input_shape), the same input_shape;
                give it with `y_val`. None (default): split off from x_train.
            y_val: optional (val_rows,) labels.
            task: "binary", "multiclass" or "regression".
            x_test: optional (test_rows, *input_shape); give it with
                `y_test`. It may come with a split of x_train (then
                test_fraction must be 0).
            y_test: optional (test_rows,) labels.
            val_fraction: without x_val only: the share of x_train's rows
                for validation, 0 < val_fraction < 1. None: 0.2.
            test_fraction: without x_val only: the share of x_train's rows
                held out for testing, 0 <= test_fraction < 1, with
                val_fraction + test_fraction < 1. None: 0.0 (no test rows).
            seed: without x_val only: seed of the split's shuffle, an
                integer >= 0. None: 0.
            feature_names: defaults to ("x0", "x1", ...) for a table and to
                () (no names) for inputs of more than one axis, which may
                instead name every value of a row (`n_features` names).
            class_names: defaults to ("0", "1") for "binary" and
                ("0", ..., "K-1") for "multiclass", K = largest label + 1.
            y_mean: regression only, with `y_std`: the y arrays are already
                standardized with this mean (a prediction p maps back to
                p * y_std + y_mean) and are used as given. None (default):
                fitted on the training rows' y, as above.
            y_std: regression only, with `y_mean`: the std they were
                standardized with (> 0). None: fitted on the training rows.
            source: a name for where the arrays came from.

        Returns:
            The validated `Dataset`.

        Raises:
            ValueError: for an unknown task, wrong shapes (x of one axis,
                splits of different input shapes), non-finite values,
                labels that do not fit the task, only one of x_val and
                y_val (or x_test and y_test), val_fraction, test_fraction
                or seed given with x_val, test_fraction > 0 with x_test,
                fractions out of range or a split too small, or only one of
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

            Images, with the validation rows split off (stratified by class):

            >>> images = np.zeros((10, 8, 8, 1), np.float32)  # (rows, height, width, channels)
            >>> labels = np.array([0, 1] * 5)
            >>> data = Dataset.from_arrays(images, labels, task="binary", val_fraction=0.2, seed=1)
            >>> data.n_train, data.n_val, data.input_shape, data.n_features
            (8, 2, (8, 8, 1), 64)
            >>> data.preprocessing
            ("split 8/2/0 rows (train/val/test) with seed 1, stratified by 'y'",)
        """
        check_task(task, allow_none=False)
        check_given_together("test", x_test, y_test, "pass both or neither")
        check_given_together("val", x_val, y_val, "pass both, or neither to split x_train's rows (val_fraction=)")
        split_options = check_split_options(x_val, x_test, val_fraction, test_fraction, seed)
        check_target_scale(task, y_mean, y_std)
        given = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
        given = {split: pair for split, pair in given.items() if pair[0] is not None}
        # Checked before anything is copied; `as_features` keeps numpy input as it is.
        xs = {split: as_features(f"x_{split}", x) for split, (x, _) in given.items()}
        check_input_shapes(xs)
        raw = {split: np.asarray(y) for split, (_, y) in given.items()}
        ys = {split: as_labels(f"y_{split}", raw[split], task) for split in given}
        for split in given:
            check_rows(split, xs[split], ys[split])

        # Where each split's rows come from: (the split given, the indices of its rows or None for all of them).
        parts = {split: (split, None) for split in given}
        notes: list[str] = []
        if split_options is not None:
            picks = dict(zip(SPLITS, split_rows(ys["train"], task, *split_options, "y", str(source), notes)))
            if "test" in given:
                del picks["test"]  # test_fraction is 0: it holds no rows
            parts.update((split, ("train", rows)) for split, rows in picks.items())
        if "test" not in parts:
            parts["test"] = ("train", np.zeros(0, np.intp))  # no test split: 0 rows

        x = {f"x_{split}": _float32_rows(xs[origin], rows) for split, (origin, rows) in parts.items()}
        y = {f"y_{split}": _rows(ys[origin], rows) for split, (origin, rows) in parts.items()}
        if task == "regression" and y_mean is None:  # as load_csv does, from the float64 values given
            labels = [_rows(raw[parts[split][0]], parts[split][1]).astype(np.float64) for split in SPLITS]
            scaled, y_mean, y_std = finish_labels(labels, task, "y", notes)
            y = {f"y_{split}": values for split, values in zip(SPLITS, scaled)}
        if feature_names is None:
            input_shape = x["x_train"].shape[1:]
            feature_names = tuple(f"x{i}" for i in range(input_shape[0])) if len(input_shape) == 1 else ()
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
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one row's input, `x_train.shape[1:]`: (features,) for
        a table, e.g. (height, width, channels) for images."""
        return self.x_train.shape[1:]

    @property
    def n_features(self) -> int:
        """Number of values per row: the feature columns of a table,
        `prod(input_shape)` for inputs of more than one axis (64 for 8x8x1
        images)."""
        return int(np.prod(self.input_shape))

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
        """A few lines for a person: rows, features (or input shape), task, classes, notes."""
        lines = [
            f"{self.source}: {self.task} target {self.target!r}",
            f"rows: {self.n_train} train / {self.n_val} val / {self.n_test} test; {self._width()}",
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
        shape = "" if len(self.input_shape) == 1 else f", input_shape={self.input_shape}"
        return (
            f"Dataset(source={self.source!r}, task={self.task!r}, "
            f"target={self.target!r}, n_train={self.n_train}, n_val={self.n_val}, "
            f"n_test={self.n_test}, n_features={self.n_features}{shape})"
        )

    def _width(self) -> str:
        if len(self.input_shape) == 1:
            return f"{self.n_features} features"
        return f"input shape {self.input_shape} ({self.n_features} values per row)"


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
    xs = {split: getattr(data, f"x_{split}") for split in SPLITS}
    ys = {split: getattr(data, f"y_{split}") for split in SPLITS}
    label_dtype = np.int32 if data.task == "multiclass" else np.float32
    for split in SPLITS:
        x, y = xs[split], ys[split]
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim < 2:
            raise ValueError(
                f"x_{split} must be a float32 numpy array of shape (rows, features) or (rows, *input_shape), "
                f"but got {type(x).__name__} {getattr(x, 'dtype', '')} "
                f"{getattr(x, 'shape', '')}; use Dataset.from_arrays, which casts"
            )
        if not isinstance(y, np.ndarray) or y.dtype != label_dtype or y.ndim != 1:
            raise ValueError(
                f"y_{split} must be a 1-D {np.dtype(label_dtype).name} numpy array for "
                f"task={data.task!r}, but got {type(y).__name__} "
                f"{getattr(y, 'dtype', '')} {getattr(y, 'shape', '')}; use "
                "Dataset.from_arrays, which casts"
            )
        check_rows(split, x, y)
    check_input_shapes(xs)
    for split, x in xs.items():
        if not np.isfinite(x).all():
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
    input_shape = xs["train"].shape[1:]
    n_features = int(np.prod(input_shape))
    if n_features < 1:
        got = "0 columns" if len(input_shape) == 1 else f"input shape {input_shape}"
        raise ValueError(f"the data must have at least one feature, but got {got}")
    if len(input_shape) == 1 and len(data.feature_names) != n_features:
        raise ValueError(
            f"feature_names must name every feature, but got {len(data.feature_names)} names for {n_features} features"
        )
    if len(input_shape) > 1 and len(data.feature_names) not in (0, n_features):
        raise ValueError(
            f"feature_names must be () or name every value of a row of input shape {input_shape}, but got "
            f"{len(data.feature_names)} names for {n_features} values; pass feature_names=None"
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


def _rows(array: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return array if rows is None else array[rows]


def _float32_rows(array: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """A float32 copy of `array`, or of its rows `rows` (indices): one copy, made in float32 when the array
    already is float32."""
    if rows is None:
        return np.array(array, dtype=np.float32, copy=True)
    return array[rows].astype(np.float32, copy=False)


def _default_class_names(task: str, labels: Iterable[np.ndarray]) -> tuple[str, ...]:
    if task == "binary":
        return ("0", "1")
    if task == "multiclass":
        n_classes = max((int(y.max()) + 1 for y in labels if y.size), default=0)
        return tuple(str(k) for k in range(n_classes))
    return ()


def _class_counts(labels: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    return np.bincount(labels.astype(np.int64), minlength=n_classes if task != "binary" else 2)
