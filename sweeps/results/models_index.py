"""The saved models' index, RUN_DIR/models/models.json, checked when it is read: every entry `load_model` and
`sweeps predict` read must be there, of the kind sweepax writes (a run folder is evidence: nothing in it is
trusted for a file name or a code path)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.mlp import ACTIVATIONS
from sweeps.driver.evidence import (
    DamagedRunFolder,
    check_hparam,
    check_metric,
    check_trial,
    known_metrics,
    own_metrics,
)
from sweeps.engine.metrics import METRICS

FORMAT = "sweepax-models/1"


def damaged_index(path: Path, problem: str) -> DamagedRunFolder:
    return DamagedRunFolder(
        f"{path} is damaged or was edited: {problem}; the saved models cannot be used without it (run the sweep "
        f"again to save them), while the run's table and history are not affected (`sweeps report "
        f"{path.parent.parent}`)"
    )


def read_index(path: Path) -> dict[str, Any]:
    """models.json, checked: every entry `load_model` and `sweeps predict` read is there, of the kind sweepax writes.

    Raises:
      DamagedRunFolder: naming the file and the entry.
    """
    try:
        index = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise damaged_index(path, f"it cannot be read ({e})") from e
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise damaged_index(path, f"it is not a sweepax models index (format {found!r}, not {FORMAT!r})")

    def need(entry: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
        value = entry.get(key, _ABSENT)
        if value is _ABSENT or not isinstance(value, kind) or isinstance(value, bool) and bool not in kind:
            found = "missing" if value is _ABSENT else f"{value!r}"
            raise damaged_index(path, f"its {where}{key!r} entry is {found}")
        return value

    number = (int, float)
    need(index, "task", str)
    if index["task"] not in METRICS:
        raise damaged_index(path, f"its task {index['task']!r} is none of {sorted(METRICS)}")
    known = known_metrics(own_metrics(index, path))  # the task's metrics and the run's own (models.json records them)
    check_metric(index.get("objective"), f"{path} (objective)", known)
    need(index, "class_names", list)
    need(index, "y_mean", number)
    need(index, "y_std", number)
    if not isinstance(index.get("preprocessing", _ABSENT), dict | type(None)):
        need(index, "preprocessing", dict)
    if not need(index, "trials", list):
        raise damaged_index(path, "it lists no saved trials (its 'trials' entry is empty)")
    for entry in index["trials"]:
        if not isinstance(entry, dict):
            raise damaged_index(path, f"a 'trials' entry is {entry!r}, not a saved trial")
        entry["trial"] = check_trial(entry.get("trial"), f"{path} (trials)")
        where = f"trial {entry['trial']}'s "
        structure = need(entry, "structure", dict, where)
        own = _own_model(structure, path, where, need) if "class" in structure else ()
        for name in need(entry, "hparams", dict, where):
            check_hparam(name, f"{path} ({where}hparams)", own)
        if "class" not in structure:
            hidden = need(structure, "hidden", list, where)
            if not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in hidden):
                raise damaged_index(path, f"its {where}hidden layer widths {hidden!r} are not positive ints")
            if structure.get("activation") not in ACTIVATIONS:
                raise damaged_index(path, f"its {where}activation {structure.get('activation')!r} is unknown")
        for key in ("n_features", "n_outputs"):
            if need(structure, key, int, where) < 1:
                raise damaged_index(path, f"its {where}{key!r} entry is {structure[key]!r}, not >= 1")
        need(entry, "best_epoch", int, where)
        need(entry, "value", number, where)
        for name, value in need(entry, "metrics", dict, where).items():
            metric = name.removeprefix("best_")
            if metric.startswith("hparam_"):  # population based training: a hyperparameter at the best epoch
                check_hparam(metric.removeprefix("hparam_"), f"{path} ({where}metrics)", own)
            else:
                check_metric(metric, f"{path} ({where}metrics)", known)
            if not isinstance(value, number):
                raise damaged_index(path, f"its {where}metric {name!r} is {value!r}, not a number")
    return index


_ABSENT = object()


def _own_model(structure: dict, path: Path, where: str, need) -> tuple[str, ...]:
    """The record of a user's model (`sweeps.engine.model_record`): a `package.module:Class` name, its attributes
    and call hyperparameters (identifiers), and the rows' shape; returns the call hyperparameters' names.
    `need(entry, key, kind, where)`: `read_index`'s check of one entry."""
    name = structure["class"]
    module, _, qualname = name.partition(":") if isinstance(name, str) else ("", "", "")
    if not (module and qualname and all(p.isidentifier() for p in [*module.split("."), *qualname.split(".")])):
        raise damaged_index(path, f"its {where}model class {name!r} is not a `package.module:Class` name")
    need(structure, "args", dict, where)
    shape = need(structure, "input_shape", list, where)
    if not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise damaged_index(path, f"its {where}input_shape {shape!r} is not a list of positive ints")
    names = need(structure, "call_hparams", dict, where)
    if not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise damaged_index(path, f"its {where}call_hparams {list(names)!r} are not a model's keyword names")
    return tuple(names)
