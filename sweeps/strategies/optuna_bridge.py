"""Optuna, where sweepax meets it: search spaces as Optuna distributions, and a finished sweep as a study.

Optuna is an optional extra (`pip install "sweepax[bayes]"`): nothing here
imports it until it is needed, and then a missing install is refused with
the command that installs it.

A space's axes map onto Optuna's distributions:

| sweepax axis | Optuna distribution |
|---|---|
| `loguniform(lo, hi)`, `uniform(lo, hi)` | `FloatDistribution(lo, hi, log=...)` |
| `integer(lo, hi, log=...)` (every integer of a range) | `IntDistribution(lo, hi, log=...)` |
| any other choice (`choice`, `powers_of_two`, a list) | `CategoricalDistribution` |

Optuna's categorical values must be None, bool, int, float or str, so a
structural tuple such as `hidden=(128, 64)` travels as the text the trial
table shows, `"[128, 64]"`, and comes back as the tuple (`to_config`).

`export` writes a finished sweep into an Optuna storage (`Result.to_optuna`,
`sweeps report RUN_DIR --optuna URL`), for `optuna-dashboard`, Optuna's plots,
or anything else that reads a study.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from sweeps.driver.evidence import reason
from sweeps.space import Axis, Choice, Float, as_space, axis_from_config

INSTALL = 'pip install "sweepax[bayes]"'


def import_optuna(what: str):
    """The `optuna` module, or an ImportError that says `what` needs it and how to install it."""
    try:
        import optuna
    except ImportError as e:
        raise ImportError(
            f"{what} needs Optuna, an optional extra of sweepax that is not installed: install it with "
            f"{INSTALL} (or pip install optuna)"
        ) from e
    return optuna


@contextlib.contextmanager
def quiet(optuna):
    """Optuna's INFO lines (a study created, a trial finished) silenced while open; its warnings kept."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def encode(value: Any) -> Any:
    """A hyperparameter value as Optuna stores it: tuples become the table's text (`"[128, 64]"`).

    Examples:
      >>> encode((128, 64)), encode(0.1), encode("relu")
      ('[128, 64]', 0.1, 'relu')
    """
    if isinstance(value, (list, tuple)):
        return str([encode(v) for v in value])
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return value.item()
    return value


def is_swept(axis: Axis) -> bool:
    """Whether an axis has more than one value (a fixed value is no dimension to search)."""
    return isinstance(axis, Float) or len(axis.values) > 1


def distribution(name: str, axis: Axis):
    """The Optuna distribution of one axis (see the module docstring's table).

    Raises:
      ValueError: when two of a choice's values would travel as the same text.
    """
    optuna = import_optuna("an Optuna distribution")
    dists = optuna.distributions
    if isinstance(axis, Float):
        return dists.FloatDistribution(axis.low, axis.high, log=axis.log)
    values = axis.values
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if ints and len(values) > 1 and sorted(values) == list(range(min(values), max(values) + 1)):
        return dists.IntDistribution(min(values), max(values), log=axis.log)
    encoded = [encode(v) for v in values]
    if len(set(map(repr, encoded))) != len(encoded):
        raise ValueError(
            f"the choices of {name!r} cannot all be told apart once written as Optuna's categorical values "
            f"(None, bool, int, float or str): {list(values)!r} -> {encoded!r}; give each choice a distinct form"
        )
    return dists.CategoricalDistribution(encoded)


def distributions(space: Mapping[str, Any], include_fixed: bool = False) -> dict[str, Any]:
    """name -> Optuna distribution for each axis of a space; fixed values only with `include_fixed`."""
    return {name: distribution(name, axis) for name, axis in as_space(space).items() if include_fixed or is_swept(axis)}


def to_config(params: Mapping[str, Any], space: Mapping[str, Axis]) -> dict[str, Any]:
    """A sweep configuration from an Optuna trial's params over `space` (fixed axes filled in, tuples back)."""
    config = {}
    for name, axis in space.items():
        if name not in params:
            config[name] = axis.values[0]  # a fixed value: not a distribution
        elif isinstance(axis, Choice):
            by_text = {repr(encode(v)): v for v in axis.values}
            config[name] = by_text[repr(params[name])]
        else:
            config[name] = float(params[name])
    return config


# --- a finished sweep as an Optuna study ----------------------------------------------


def export(result, storage: str, study_name: str | None = None):
    """Writes every trial of a finished sweep into an Optuna storage; returns the `optuna.Study`.

    Each trial carries its distributions and params (the table's `params_` columns; a conditional
    hyperparameter its optimizer does not read is left out), one intermediate value per epoch (the
    objective, step = epoch), its value (the objective at its best epoch), its state (complete;
    diverged as FAIL; pruned as PRUNED) and user attributes: sweepax's `number`, `round`, `config`,
    `seed`, `best_epoch`, `epochs`, `stopped_early`, `state`, and every `best_`/`final_` metric.

    Args:
      result: a `sweeps.Result` (from `sweeps.run` or `sweeps.load_result`).
      storage: an Optuna storage URL, e.g. "sqlite:///runs/lr/optuna.db" (the folder is created).
      study_name: the new study's name; default the run folder's name, else "sweepax".

    Raises:
      ValueError: when the storage already holds a study of that name, or cannot be opened.

    Examples:
      >>> study = sweeps.load_result("runs/lr").to_optuna("sqlite:///runs/lr/optuna.db")  # doctest: +SKIP
      >>> study.best_params  # doctest: +SKIP
    """
    optuna = import_optuna("Result.to_optuna")
    import sqlalchemy.exc  # installed with optuna

    table, history, objective = result.table, result.history, result.objective
    if study_name is None:
        study_name = Path(result.run_dir).name if result.run_dir is not None else "sweepax"
    _make_sqlite_folder(storage)
    space = {name: axis_from_config(name, value) for name, value in result.config.get("space", {}).items()}
    params = [c for c in table.columns if c.startswith("params_")]
    dists = {c: _column_distribution(c[len("params_") :], table[c], space) for c in params}
    split, metric = objective.split("_", 1)
    curves = history[(history["split"] == split) & (history["metric"] == metric)]
    curves = {int(t): dict(zip(g["epoch"].astype(int), g["value"].astype(float))) for t, g in curves.groupby("trial")}
    states = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}
    trials = []
    for row in table.to_dict(orient="records"):
        state = states.get(row["state"], optuna.trial.TrialState.FAIL)  # diverged: failed, never a number
        values = {c[len("params_") :]: encode(row[c]) for c in params if not _missing(row[c])}
        trials.append(
            optuna.trial.create_trial(
                state=state,
                value=float(row["value"]) if state == optuna.trial.TrialState.COMPLETE else None,
                params=values,
                distributions={name: dists[f"params_{name}"] for name in values},
                intermediate_values=curves.get(int(row["number"]), {}),
                user_attrs=_user_attrs(row),
            )
        )
    with quiet(optuna):
        try:
            study = optuna.create_study(storage=storage, study_name=study_name, direction=result.direction)
        except optuna.exceptions.DuplicatedStudyError:
            raise ValueError(
                f"the storage {storage} already holds a study named {study_name!r}; pass another study_name "
                f"(sweeps report --study-name NAME), or delete it first: "
                f"optuna delete-study --storage {storage} --study-name {study_name}"
            ) from None
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:  # a URL it cannot parse, load or open
            raise ValueError(
                f"cannot open the Optuna storage {storage!r} ({reason(e, 200)}); "
                f"pass a database URL, e.g. sqlite:///runs/lr/optuna.db (a file, created if missing); the run "
                f"folder is not affected"
            ) from e
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what the dashboard labels axes with
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([objective])
        study.set_user_attr("objective", objective)
        if result.run_dir is not None:
            study.set_user_attr("run_dir", str(Path(result.run_dir).absolute()))
        study.add_trials(trials)
    return study


def _column_distribution(name: str, column: pd.Series, space: Mapping[str, Axis]):
    """The distribution of a table column: from the space's axis, else from the values (a strategy's own names)."""
    optuna = import_optuna("Result.to_optuna")
    if name in space:
        return distribution(name, space[name])
    values = [encode(v) for v in column if not _missing(v)]
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return optuna.distributions.FloatDistribution(float(min(values)), float(max(values)))
    return optuna.distributions.CategoricalDistribution(sorted(set(values), key=repr))


def _user_attrs(row: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("number", "round", "config", "seed", "best_epoch", "epochs", "stopped_early", "state")
    attrs = {k: row[k] for k in keep if k in row}
    attrs.update({k: v for k, v in row.items() if k.startswith(("best_", "final_")) and k != "best_epoch"})
    return {k: None if _missing(v) else encode(v) for k, v in attrs.items()}


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _make_sqlite_folder(storage: str) -> None:
    prefix = "sqlite:///"
    if isinstance(storage, str) and storage.startswith(prefix) and storage[len(prefix) :] not in ("", ":memory:"):
        Path(storage[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)
