"""Checks of a sweep's run-wide arguments: the rule and the value in every message."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from models import MLP
from sweeps.engine import hparams as registry
from sweeps.engine.metrics import metric_names
from sweeps.space import Axis, Float

EARLY_STOPPING_KEYS = ("metric", "patience", "min_delta")


def check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, but got {name}={value!r}")


def check_model(model: Any) -> None:
    """Refuses anything but the built-in `models.MLP` with its own fields: the engine rebuilds the network
    from `hidden` and `activation` alone (its fast layout), so another module, a subclass or another field
    would be replaced silently by a plain MLP."""
    supported = "pass model=MLP(hidden=..., activation=...) from models (your own modules are not supported yet)"
    if type(model) is not MLP:
        kind = "a subclass of models.MLP" if isinstance(model, MLP) else "not the built-in models.MLP"
        raise ValueError(
            f"model={type(model).__module__}.{type(model).__qualname__}(...) is {kind}: sweeps trains only "
            f"the built-in MLP, rebuilt from its hidden widths and activation, so your model would be replaced "
            f"by a plain MLP; {supported}"
        )
    carried = ("hidden", "activation", "parent")  # parent: flax's, None for a module made outside another
    for field in dataclasses.fields(MLP):
        value = getattr(model, field.name)
        if field.name not in carried and value != field.default:
            reason = "set from the task (1 output, or one per class)" if field.name == "outputs" else "not used"
            raise ValueError(
                f"model=MLP(..., {field.name}={value!r}): {field.name} is {reason} by the engine, which rebuilds "
                f"the MLP from hidden and activation; leave it out: {supported}"
            )


def check_metric(what: str, metric: str, task: str) -> None:
    valid = metric_names(task)
    if metric not in valid:
        raise ValueError(f"{what} {metric!r} is not computed for a {task} task; choose one of {valid}")


def check_early_stopping(early_stopping, task: str | None = None) -> dict | None:
    """Early stopping's settings with their defaults filled in; the metric is checked against `task` when given."""
    if early_stopping is None or early_stopping is False:
        return None
    if not isinstance(early_stopping, Mapping):
        raise TypeError(
            f"early_stopping must be a dict like {{'metric': 'val_loss', 'patience': 5}}, but got {early_stopping!r}"
        )
    unknown = set(early_stopping) - set(EARLY_STOPPING_KEYS)
    if unknown:
        raise ValueError(f"unknown early_stopping keys {sorted(unknown)}; known: {list(EARLY_STOPPING_KEYS)}")
    stop = {"metric": "val_loss", "patience": 5, "min_delta": 0.0, **early_stopping}
    if task is not None:
        check_metric("early_stopping metric", stop["metric"], task)
    check_int("early_stopping patience", stop["patience"], 1)
    if not (isinstance(stop["min_delta"], (int, float)) and stop["min_delta"] >= 0):
        raise ValueError(f"early_stopping min_delta must be >= 0, but got {stop['min_delta']!r}")
    stop["min_delta"] = float(stop["min_delta"])
    return stop


def check_reads(space: Mapping[str, Axis], trials: list) -> None:
    """Refuses a swept hyperparameter no trial (`planning.Trial`) reads; warns about a fixed one that is ignored."""
    kinds = {(t.hparams["optimizer"], t.hparams["schedule"]): t.hparams for t in trials}  # what a trial reads
    used = set().union(*(registry.reads(hparams) for hparams in kinds.values()))
    for name, axis in space.items():
        if name in used:
            continue
        optimizers = sorted({optimizer for optimizer, _ in kinds})
        schedules = sorted({schedule for _, schedule in kinds})
        read = sorted(used & set(registry.CONDITIONAL))
        message = (
            f"{name} is set but no trial reads it: optimizer {', '.join(optimizers)} with schedule "
            f"{', '.join(schedules)} reads {', '.join(read) or 'none of the optional ones'} besides learning_rate; "
            f"{name} is read by {', '.join(registry.readers(name))}"
        )
        if isinstance(axis, Float) or len(axis.values) > 1:
            raise ValueError(f"{message}: remove it from the space, or sweep an optimizer or schedule that reads it")
        warnings.warn(f"{message}: its value is ignored", UserWarning, stacklevel=4)
