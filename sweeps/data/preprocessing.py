"""`Preprocessing`: everything fitted on the training split, as one
serialisable object that turns new rows into the model's features.

`load_csv` fits it (`sweeps.data.fitting`) and keeps it as
`Dataset.preprocessing_fit`; `transform` applied to the training rows of the
file gives `Dataset.x_train` exactly. Save it with `to_json` (plain JSON
types: str, float, list, dict, None) and read it back with `from_json`.

Example:
    >>> import json
    >>> import pandas as pd
    >>> from sweeps.data import load_csv
    >>> data = load_csv("data/telco_customer_churn.csv", target="Churn")
    >>> fit = data.preprocessing_fit
    >>> text = json.dumps(fit.to_json())
    >>> same = Preprocessing.from_json(json.loads(text))
    >>> same == fit
    True
    >>> rows = pd.read_csv("data/telco_customer_churn.csv").head(3)
    >>> fit.transform(rows).shape
    (3, 45)
    >>> fit.decode_labels([0, 1, 1]).tolist()
    ['No', 'Yes', 'Yes']
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from sweeps.data.encoding import KINDS, FittedColumn, TransformReport, encode_columns
from sweeps.data.messages import name_list, short_list

FORMAT = "sweepax.preprocessing"
VERSION = 2  # 2: categorical columns may pool rare categories ("infrequent"); version 1 reads as pooling none
READS = (1, 2)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """The preprocessing fitted on a training split, applicable to new rows.

    Attributes:
        columns: one `FittedColumn` per input column, in feature order: its
            name, kind ("numeric", "boolean", "categorical", "date"), the
            train median that imputes it (numeric, date), the text read as
            missing (numeric, date), the one-hot categories and the rare ones
            pooled into "<infrequent>" (categorical), the date format (date).
        feature_names: one name per feature (model input), e.g. "tenure",
            "Contract=Month-to-month".
        mean: per feature, the train mean subtracted.
        scale: per feature, the train std divided by (1.0 for a feature
            constant in train).
        dropped: columns left out: asked for with `drop=` or id-like.
        target: the target column's name.
        task: "binary", "multiclass" or "regression".
        class_names: label text per class index, in class order; () for
            regression.
        y_mean: regression: the train mean of the target (0.0 otherwise).
        y_std: regression: the train std of the target (1.0 otherwise).
    """

    columns: tuple[FittedColumn, ...]
    feature_names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    dropped: tuple[str, ...]
    target: str
    task: str
    class_names: tuple[str, ...] = ()
    y_mean: float = 0.0
    y_std: float = 1.0

    def __post_init__(self):
        for fitted in self.columns:
            if fitted.kind not in KINDS:
                raise ValueError(
                    f"column {fitted.name!r} has kind {fitted.kind!r}, but the kind must be one of {name_list(KINDS)}"
                )
            if fitted.kind in ("numeric", "date") and (fitted.median is None or not np.isfinite(fitted.median)):
                raise ValueError(
                    f"{fitted.kind} column {fitted.name!r} needs a finite train median to "
                    f"impute with, but got median={fitted.median!r}"
                )
        names = tuple(name for fitted in self.columns for name in fitted.feature_names)
        if names != self.feature_names:
            raise ValueError(
                f"feature_names must be those of the columns, in order: {len(names)} "
                f"names from the columns, but got {len(self.feature_names)} "
                f"feature_names ({name_list(self.feature_names[:5])}, ...)"
            )
        if not len(self.mean) == len(self.scale) == len(self.feature_names):
            raise ValueError(
                "mean and scale need one value per feature, but got "
                f"(features: {len(self.feature_names)}, mean: {len(self.mean)}, "
                f"scale: {len(self.scale)})"
            )

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The columns new rows must have, in training order."""
        return tuple(fitted.name for fitted in self.columns)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """New rows to the model's features, as in training.

        Args:
            frame: a table with every column of `input_columns`, in any
                order; other columns (the target, dropped ones) are ignored.
                Blank or NaN numbers get the train median, as in training.

        Returns:
            (rows, features) float32 standardized features, columns in
            `feature_names` order. Rare train categories (pooled when fitted)
            encode as "<infrequent>", as unseen categories do in a column that
            pools (elsewhere all zeros); missing text encodes as all zeros;
            `transform_with_report` also counts them.

        Raises:
            TypeError: when frame is not a pandas DataFrame.
            ValueError: for missing or duplicated columns, a non-numeric
                value in a numeric column, text that is not a date of the
                column's format in a date column, or a non-boolean value in
                a boolean column (naming the column, the row and the value).
        """
        return self.transform_with_report(frame)[0]

    def transform_with_report(self, frame: pd.DataFrame) -> tuple[np.ndarray, TransformReport]:
        """`transform`, and a `TransformReport` counting per column the cells
        imputed (numeric, date), missing (categorical), unseen (categorical:
        values not among the train categories, encoded as all zeros, or as
        "<infrequent>" in a column that pools) and infrequent (categorical: the
        cells encoded as "<infrequent>")."""
        frame = self._checked_frame(frame)
        raw, report = encode_columns(self.columns, frame)
        return self.standardize(raw), report

    def standardize(self, raw: np.ndarray) -> np.ndarray:
        """(rows, features) float64 raw features -> float32 (x - mean) / scale."""
        mean = np.asarray(self.mean, dtype=np.float64)
        scale = np.asarray(self.scale, dtype=np.float64)
        return np.ascontiguousarray((raw - mean) / scale, dtype=np.float32)

    def decode_labels(self, class_indices) -> np.ndarray:
        """Class indices (e.g. the argmax of a multiclass model's outputs, or
        1 where a binary model's probability passes 0.5) to label text.

        Args:
            class_indices: (rows,) integers in 0..len(class_names)-1.

        Returns:
            (rows,) object array of label text, from `class_names`.
        """
        if self.task == "regression":
            raise ValueError(
                "decode_labels maps class indices to labels, but the task is 'regression'; use decode_target(values)"
            )
        indices = np.asarray(class_indices)
        n = len(self.class_names)
        if not (np.issubdtype(indices.dtype, np.number) or indices.dtype == bool):
            raise ValueError(
                f"class_indices must be integers, but got dtype {indices.dtype}; pass e.g. outputs.argmax(axis=-1)"
            )
        bad = (indices != np.round(indices)) | (indices < 0) | (indices >= n)
        if bad.any():
            raise ValueError(
                f"class_indices must be integers 0..{n - 1} (one per class of "
                f"{self.target!r}: {name_list(self.class_names)}), but got "
                f"{short_list(np.unique(indices[bad]).tolist(), limit=10)}"
            )
        return np.array(self.class_names, dtype=object)[indices.astype(np.int64)]

    def decode_target(self, values) -> np.ndarray:
        """A regression model's outputs back to the target's units:
        values * y_std + y_mean.

        Args:
            values: (rows,) or (rows, 1) standardized predictions.

        Returns:
            float64 array of the same shape, in the target's units.
        """
        if self.task != "regression":
            raise ValueError(
                f"decode_target undoes the target's standardization, but the task is "
                f"{self.task!r}; use decode_labels(class_indices)"
            )
        return np.asarray(values, dtype=np.float64) * self.y_std + self.y_mean

    def to_json(self) -> dict[str, Any]:
        """A dict of plain JSON types (str, float, list, dict, None) that
        `from_json` turns back into an equal `Preprocessing`."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "columns": [
                {
                    "name": fitted.name,
                    "kind": fitted.kind,
                    "median": fitted.median,
                    "missing_values": list(fitted.missing_values),
                    "categories": list(fitted.categories),
                    "date_format": fitted.date_format,
                    "infrequent": list(fitted.infrequent),
                }
                for fitted in self.columns
            ],
            "feature_names": list(self.feature_names),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "dropped": list(self.dropped),
            "target": self.target,
            "task": self.task,
            "class_names": list(self.class_names),
            "y_mean": self.y_mean,
            "y_std": self.y_std,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preprocessing:
        """The `Preprocessing` that `to_json` wrote (after a JSON round trip).

        Raises:
            ValueError: when data is not a sweepax preprocessing of a known
                version, or a key is missing.
        """
        found = data.get("format") if isinstance(data, Mapping) else None
        if found != FORMAT:
            raise ValueError(
                f"from_json needs the dict that Preprocessing.to_json wrote, with "
                f"format={FORMAT!r}, but got a {type(data).__name__} with "
                f"format={found!r}"
            )
        if data.get("version") not in READS:
            raise ValueError(
                f"this sweepax reads preprocessing versions {list(READS)}, but got "
                f"version={data.get('version')!r}; save it again with this version"
            )
        try:
            columns = tuple(
                FittedColumn(
                    name=str(column["name"]),
                    kind=str(column["kind"]),
                    median=None if column["median"] is None else float(column["median"]),
                    missing_values=tuple(column["missing_values"]),
                    categories=tuple(column["categories"]),
                    date_format=column["date_format"],
                    infrequent=tuple(column.get("infrequent", ())),
                )
                for column in data["columns"]
            )
            return cls(
                columns=columns,
                feature_names=tuple(data["feature_names"]),
                mean=tuple(float(value) for value in data["mean"]),
                scale=tuple(float(value) for value in data["scale"]),
                dropped=tuple(data["dropped"]),
                target=str(data["target"]),
                task=str(data["task"]),
                class_names=tuple(data["class_names"]),
                y_mean=float(data["y_mean"]),
                y_std=float(data["y_std"]),
            )
        except KeyError as error:
            raise ValueError(
                f"the preprocessing dict lacks the key {error.args[0]!r}; pass the "
                "whole dict that Preprocessing.to_json wrote"
            ) from None

    def _checked_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(
                f"transform takes a pandas DataFrame of new rows, but got "
                f"{type(frame).__name__}; wrap the rows, e.g. pandas.DataFrame(rows)"
            )
        names = [str(name) for name in frame.columns]
        duplicated = sorted(name for name, n in collections.Counter(names).items() if n > 1)
        if duplicated:
            raise ValueError(
                f"the new rows have duplicate column names {name_list(duplicated)}; give each column one name"
            )
        frame = frame.set_axis(names, axis=1)
        missing = [name for name in self.input_columns if name not in names]
        if missing:
            raise ValueError(
                f"the new rows lack the columns {name_list(missing)}, which the model "
                f"was trained on; expected columns (any order, others ignored): "
                f"{name_list(self.input_columns)}"
            )
        return frame
