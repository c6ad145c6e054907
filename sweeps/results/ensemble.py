"""The ensemble a sweep already trained: its best saved trials, their predictions averaged.

`sweeps.load_model(run_dir, top=k)` loads the k best saved trials (`keep_models`, ranked as models.json lists
them) as `TrainedModel`s and hands them to `Ensemble`, which averages their class probabilities (classification)
or their values (regression). Members may differ in width, depth or anything else: each applies its own network
to the same preprocessed rows. `ensemble_outputs` turns the members' raw outputs into the ensemble's, in the
form one model's take (logits, or standardized values), so the engine's metrics (`sweeps.engine.metrics.evaluate`)
score an ensemble exactly as they score one model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# The largest float32: the ensemble's logits are clipped to it, so they stay finite when the engine reads them
FINITE = float(np.finfo(np.float32).max)


def ensemble_outputs(task: str, outputs: np.ndarray) -> np.ndarray:
    """The ensemble's raw outputs from its members' (`TrainedModel.outputs`), in one model's form.

    Classification: the logits of the members' averaged probabilities, computed from their log-probabilities
    in float64 (log-sum-exp), so a confident row's `1 - p` never rounds to 0: binary `log(p / (1 - p))`,
    multiclass `log p` (softmax gives p back). Regression: the mean of the standardized values. Clipped to
    float32's finite range.

    Args:
      task: "binary", "multiclass" or "regression".
      outputs: (members, rows, outputs) the members' raw outputs.

    Returns:
      (rows, outputs) float32.

    Examples:
      >>> z = np.array([[[2.0]], [[-1.0]]])  # two members' logits for one row
      >>> p = (1 / (1 + np.exp(-2.0)) + 1 / (1 + np.exp(1.0))) / 2
      >>> bool(np.isclose(ensemble_outputs("binary", z)[0, 0], np.log(p / (1 - p))))
      True
    """
    z = np.asarray(outputs, np.float64)
    if z.ndim != 3:
        raise ValueError(f"outputs must be (members, rows, outputs), but got an array of shape {z.shape}")
    if task == "regression":
        mean = z.mean(axis=0)
    elif task == "binary":  # log p and log(1 - p) of each member: -softplus(-z), -softplus(z)
        log_p = np.logaddexp.reduce(-np.logaddexp(0.0, -z), axis=0)
        log_q = np.logaddexp.reduce(-np.logaddexp(0.0, z), axis=0)
        mean = log_p - log_q  # the log k of the two means cancels
    elif task == "multiclass":
        log_softmax = z - np.logaddexp.reduce(z, axis=-1, keepdims=True)
        mean = np.logaddexp.reduce(log_softmax, axis=0) - np.log(z.shape[0])
    else:
        raise ValueError(f"task must be 'binary', 'multiclass' or 'regression', not {task!r}")
    return np.clip(mean, -FINITE, FINITE).astype(np.float32)


@dataclasses.dataclass
class Ensemble:
    """The top saved trials of a run as one model: predictions averaged over its members, best first.

    Takes what a `TrainedModel` takes (a DataFrame, a CSV path, or an array of preprocessed features, one row
    or many); the rows are preprocessed once (the members were trained on the same data, so they share the
    preprocessing) and every member applies its own network to them.

    Attributes:
      members: the `TrainedModel`s, best first (as models.json ranks them).

    Examples:
      >>> ensemble = sweeps.load_model("runs/churn_lr", top=5)  # doctest: +SKIP
      >>> ensemble.trials  # doctest: +SKIP
      [6, 7, 5, 4, 9]
      >>> ensemble.predict_proba("data/telco_customer_churn.csv")[:2]  # doctest: +SKIP
      array([[0.42596042, 0.57403958],
             [0.96415187, 0.03584813]])
    """

    members: tuple[Any, ...]

    def __post_init__(self):
        if not self.members:
            raise ValueError("an ensemble needs at least one member (a TrainedModel)")
        self.members = tuple(self.members)

    @property
    def trials(self) -> list[int]:
        """The members' trial numbers, best first."""
        return [m.trial for m in self.members]

    @property
    def task(self) -> str:
        return self.members[0].task

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.members[0].class_names

    @property
    def y_mean(self) -> float:
        return self.members[0].y_mean

    @property
    def y_std(self) -> float:
        return self.members[0].y_std

    @property
    def preprocessing(self):
        """The preprocessing fitted on the training split (the members share it); None for arrays."""
        return self.members[0].preprocessing

    @property
    def last_report(self):
        """What the last `features` call's preprocessing noticed (unseen categories), as a `TrainedModel` says."""
        return self.members[0].last_report

    def __repr__(self) -> str:
        """One short line: the size, the trials, the task (each member: `ensemble.members`)."""
        classes = "" if self.task == "regression" else f", classes={len(self.class_names)}"
        return f"Ensemble(top={len(self.members)}, trials={self.trials}, task={self.task!r}{classes})"

    def features(self, rows) -> np.ndarray:
        """(rows, features) float32 (or (rows, *input_shape) for a model of your own), as `TrainedModel.features`."""
        return self.members[0].features(rows)

    def _member_outputs(self, rows) -> np.ndarray:
        """(members, rows, outputs): every member's raw outputs on the rows, preprocessed once."""
        x = self.features(rows)
        return np.stack([m.outputs(x) for m in self.members])

    def outputs(self, rows) -> np.ndarray:
        """(rows, outputs) float32 in one model's form (`ensemble_outputs`): the logits of the averaged
        probabilities, or the mean standardized value; `sweeps.engine.metrics.evaluate` scores them."""
        return ensemble_outputs(self.task, self._member_outputs(rows))

    def predict_proba(self, rows) -> np.ndarray:
        """(rows, classes) float64: the mean of the members' `predict_proba`, columns in `class_names` order."""
        if self.task == "regression":
            raise ValueError("predict_proba is for classification; this ensemble predicts a number: use predict")
        x = self.features(rows)
        return np.mean([m.predict_proba(x) for m in self.members], axis=0)

    def predict(self, rows) -> np.ndarray:
        """Labels of the averaged probabilities (as the target's own values), or the mean of the members'
        values in the target's units (regression)."""
        x = self.features(rows)
        if self.task == "regression":
            return np.mean([m.predict(x) for m in self.members], axis=0)
        index = self.predict_proba(x).argmax(axis=1)
        if self.preprocessing is not None:
            return self.preprocessing.decode_labels(index)
        return np.asarray(self.class_names, dtype=object)[index]
