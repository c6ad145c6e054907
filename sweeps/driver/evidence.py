"""A run folder is evidence: what is read from one is checked before it is used.

A run folder may come from someone else, or have been damaged since it was
written. So every name read from it (the objective, metric and
hyperparameter names, trial numbers, the strategy) must be one sweepax can
write (the task's metrics and hyperparameters, and the names of the run's own
model's call hyperparameters and of its own metrics that its config.json
records, themselves checked), file names are never built from it unchecked (`file_name`), and every
saved array carries a checksum (`checksum`) written beside it and compared
when it is read. A file that fails raises `DamagedRunFolder`, whose message
names the file, what is wrong with it and what still works.

Examples:
  >>> file_name("../../x_vs_learning_rate.png")
  'x_vs_learning_rate.png'
  >>> import numpy as np
  >>> checksum({"w": np.zeros(3, np.float32)}) == checksum({"w": np.zeros(3, np.float32)})
  True
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from sweeps.engine.hparams import HPARAMS
from sweeps.engine.metrics import DIRECTIONS, METRICS, OWN_NAMES, metric_names

KNOWN_METRICS = tuple(dict.fromkeys(name for task in METRICS for name in metric_names(task)))
# The history's (split, metric) pairs: `sweeps.results.result.build_frames` writes nothing else.
HISTORY_METRICS = {
    "train": {name.split("_", 1)[1] for name in KNOWN_METRICS if name.startswith("train_")},
    "val": {name.split("_", 1)[1] for name in KNOWN_METRICS if name.startswith("val_")},
    "hparam": set(HPARAMS),
    "lineage": {"parent"},
}
TABLE_COLUMNS = ("number", "state", "best_epoch", "value")  # what the summary and the plots read
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


class DamagedRunFolder(ValueError):
    """A file of a run folder is damaged, or was edited into something sweepax never writes.

    The message names the file, says what is wrong and what still works.
    """


def checksum(tree: Any) -> str:
    """A crc32 of every array of `tree` (its bytes, shape and dtype), leaves in `jax.tree` order.

    Cheap enough to take at every checkpoint (its rate: benchmarks/README.md, "What a checkpoint costs").

    Args:
      tree: numpy or host-addressable jax arrays in any pytree.

    Returns:
      "crc32:" and eight hex digits.
    """
    crc = 0
    for leaf in jax.tree.leaves(tree):
        array = np.ascontiguousarray(np.asarray(leaf))
        crc = zlib.crc32(f"{array.shape}{array.dtype}".encode(), crc)
        crc = zlib.crc32(array.reshape(-1).view(np.uint8), crc)
    return f"crc32:{crc:08x}"


def file_name(name: str) -> str:
    """`name` made safe as one file name inside a folder: no path separators, no leading dots.

    Every character but letters, digits and `_ . = -` becomes `_`; what could name a parent folder
    (`..`) or a hidden file is stripped from the front.
    """
    safe = _UNSAFE.sub("_", str(name)).lstrip("._")
    if not safe:
        raise ValueError(f"cannot make a file name from {name!r}")
    return safe[:200]


def reason(error: BaseException, limit: int = 300) -> str:
    """Why reading a file failed, in one line: the innermost cause's type and first line."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:limit]


def check_metric(name: Any, where: str, known: tuple[str, ...] = KNOWN_METRICS) -> str:
    """`name` if it is a metric sweepax records, else `DamagedRunFolder` naming `where` it was read."""
    return _check_name(name, where, "the metric", "which sweepax never writes", known)


def check_hparam(name: Any, where: str, model: tuple[str, ...] = ()) -> str:
    """`name` if it is a hyperparameter (`sweeps.engine.hparams.HPARAMS`, or one of `model`: the call
    hyperparameters of the run's own model, `model_hparams`), else `DamagedRunFolder`."""
    return _check_name(name, where, "the hyperparameter", "which sweepax does not have", (*HPARAMS, *model))


def model_hparams(config: Mapping[str, Any], config_file: Path) -> tuple[str, ...]:
    """The call hyperparameters config.json records for the run's own model (none for the built-in MLP): names
    of Python identifiers, else `DamagedRunFolder`."""
    model = config.get("model")
    names = model.get("call_hparams", {}) if isinstance(model, Mapping) else {}
    if not isinstance(names, Mapping) or not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise DamagedRunFolder(
            f"{config_file} (model.call_hparams) holds {names!r}, not the names of a model's call hyperparameters: "
            "the file was edited or damaged"
        )
    return tuple(names)


def own_metrics(config: Mapping[str, Any], config_file: Path) -> dict[str, str]:
    """The run's own metrics config.json (or models.json) records (`sweeps.engine.metrics.metrics_record`), name ->
    direction: names of Python identifiers other than the task's metrics, each with its function's
    `module:qualname` (a text, never imported) and "maximize" or "minimize", else `DamagedRunFolder`."""
    record = config.get("metrics", {})
    if not isinstance(record, Mapping):
        raise DamagedRunFolder(
            f"{config_file} (metrics) holds {record!r:.80}, not a run's own metrics: the file was edited or damaged"
        )
    out = {}
    for name, entry in record.items():
        fine = isinstance(name, str) and name.isidentifier() and name not in OWN_NAMES and isinstance(entry, Mapping)
        if not fine or entry.get("direction") not in DIRECTIONS or not isinstance(entry.get("function"), str):
            raise DamagedRunFolder(
                f"{config_file} (metrics) records {name!r}: {entry!r:.120}, not a metric of your own (an identifier "
                "with its function and 'maximize' or 'minimize'): the file was edited or damaged"
            )
        out[name] = entry["direction"]
    return out


def known_metrics(own: Mapping[str, str]) -> tuple[str, ...]:
    """Every metric name a run with the user's metrics `own` (name -> direction) may record."""
    return (*KNOWN_METRICS, *(f"val_{name}" for name in own))


def _check_name(name: Any, where: str, kind: str, unknown: str, known: tuple[str, ...]) -> str:
    if not isinstance(name, str) or name not in known:
        raise DamagedRunFolder(
            f"{where} names {kind} {name!r}, {unknown} (one of {', '.join(known)}): the file was edited or damaged"
        )
    return name


def check_trial(value: Any, where: str) -> int:
    """A trial number (an int >= 0, or an integral float as JSON may give), else `DamagedRunFolder`."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise DamagedRunFolder(
            f"{where} holds the trial number {value!r}, not a whole number >= 0: the file was edited or damaged"
        )
    return int(value)


def check_result(config: Mapping[str, Any], table: pd.DataFrame, history: pd.DataFrame, run_dir: Path) -> None:
    """Every name a finished run folder gives (config.json, the table, the history) is one sweepax writes.

    Raises:
      DamagedRunFolder: naming the file and the name.
    """
    config_file, table_file, history_file = (run_dir / n for n in ("config.json", "table.parquet", "history.parquet"))
    own, metrics = _check_config(config, config_file)
    _check_table(table, table_file, own, metrics)
    _check_history(history, history_file, own, metrics)


def _check_config(config: Any, config_file: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """Checks config.json's names; returns the call hyperparameters of the run's own model (`model_hparams`) and
    its own metrics (`own_metrics`)."""
    if not isinstance(config, Mapping):
        raise DamagedRunFolder(f"{config_file} holds {type(config).__name__}, not the settings of a run")
    own = model_hparams(config, config_file)
    metrics = own_metrics(config, config_file)
    loss = config.get("loss")
    if loss is not None and not isinstance(loss, str):
        raise DamagedRunFolder(f"{config_file} (loss) holds {loss!r:.80}, not a function's name: edited or damaged")
    known = known_metrics(metrics)
    check_metric(config.get("objective", "val_loss"), f"{config_file} (objective)", known)
    stop = config.get("early_stopping")
    if isinstance(stop, Mapping) and "metric" in stop:
        check_metric(stop["metric"], f"{config_file} (early_stopping.metric)", known)
    space = config.get("space", {})
    for name in space if isinstance(space, Mapping) else ():
        check_hparam(name, f"{config_file} (space)", own)
    strategy = config.get("strategy")
    name = strategy.get("name") if isinstance(strategy, Mapping) else None
    if name is not None and not (isinstance(name, str) and name.isidentifier()):  # a user's strategy: its class name
        raise DamagedRunFolder(
            f"{config_file} names the strategy {name!r}, not a strategy class's name (e.g. 'grid', or a "
            f"strategy of your own, lower case): the file was edited or damaged"
        )
    _check_ensemble(config.get("ensemble"), f"{config_file} (ensemble)", known)
    return own, metrics


def _check_ensemble(entry: Any, where: str, known: tuple[str, ...]) -> None:
    """config.json's "ensemble" (`sweeps.results.trained.ensemble_metrics`), when there: trial numbers, and numbers
    under `val_<metric>` and `test_<metric>` names of metrics the run records (`known`), as the summary shows them."""
    if entry is None:
        return
    best = entry.get("best_trial", {}) if isinstance(entry, Mapping) else None
    if not isinstance(best, Mapping) or not isinstance(entry.get("trials"), list):
        raise DamagedRunFolder(f"{where} holds {entry!r:.80}, not an ensemble's scores: the file was edited or damaged")
    for number in [*entry["trials"], *([best["trial"]] if "trial" in best else [])]:
        check_trial(number, where)
    for name, value in [*entry.items(), *best.items()]:
        if name in ("trials", "best_trial", "trial"):
            continue
        split, _, metric = str(name).partition("_")
        check_metric(f"val_{metric}" if split in ("val", "test") else name, where, known)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DamagedRunFolder(f"{where} holds {name}: {value!r:.40}, not a number: the file was edited or damaged")


def _check_table(table: pd.DataFrame, table_file: Path, own: tuple[str, ...], metrics: Mapping[str, str]) -> None:
    known = known_metrics(metrics)
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise DamagedRunFolder(f"{table_file} has no column {missing[0]!r}: it is not a sweepax trial table")
    for column in table.columns:
        if column.startswith("params_"):
            check_hparam(column[len("params_") :], f"{table_file} (column {column!r})", own)
        elif column.startswith(("best_", "final_")) and column != "best_epoch":
            metric = column.split("_", 1)[1]
            if metric.startswith("hparam_"):
                check_hparam(metric[len("hparam_") :], f"{table_file} (column {column!r})", own)
            else:
                check_metric(metric, f"{table_file} (column {column!r})", known)
    _check_numbers(table, "number", table_file)


def _check_history(history: pd.DataFrame, history_file: Path, own: tuple[str, ...], metrics: Mapping[str, str]) -> None:
    _check_numbers(history, "trial", history_file)
    if not {"trial", "epoch", "split", "metric", "value"} <= set(history.columns):
        raise DamagedRunFolder(f"{history_file} lacks the columns trial, epoch, split, metric, value")
    for split, metric in history[["split", "metric"]].drop_duplicates().itertuples(index=False):
        if metric not in HISTORY_METRICS.get(split, ()) and not (
            (split == "hparam" and metric in own) or (split == "val" and metric in metrics)
        ):
            raise DamagedRunFolder(
                f"{history_file} records the metric {split!r}/{metric!r}, which sweepax never writes: "
                f"the file was edited or damaged"
            )


def _check_numbers(frame: pd.DataFrame, column: str, path: Path) -> None:
    if column in frame and not pd.api.types.is_integer_dtype(frame[column]):
        raise DamagedRunFolder(
            f"{path} holds trial numbers that are not whole numbers (column {column!r} is "
            f"{frame[column].dtype}): the file was edited or damaged"
        )
