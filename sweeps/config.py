"""Sweep config files: one TOML file (plus `--set` overrides) -> `load_csv` + `sweeps.run`.

A config has six sections; every key but `[data] path` and `target` has a
default, taken from the signatures of `load_csv`, `models.MLP`, the strategy
and `sweeps.run`, so the file says only what differs:

    [data]      path, target, task, val_fraction, test_fraction, seed, drop,
                sep, encoding, max_categories, min_frequency                  (load_csv)
    [model]     hidden, activation                                            (models.MLP)
    [space]     hyperparameter name = one value, a list, or an axis           (sweeps.space)
    [strategy]  name ("grid", "random", "quasirandom", "bayes") and its options:
                n, seed; rounds, per_round, sampler                           (sweeps.strategies)
    [train]     optimizer, epochs, batch_size, seeds, seed, objective,
                early_stopping, max_population, divergence_threshold, init    (sweeps.run)
    [run]       dir (the run folder), checkpoint_every, keep_checkpoints, keep_models,
                devices (a count or a list of device ids; absent: every device)

`load_config` reads, checks and resolves a file: unknown sections and keys
are refused with the nearest valid name, every default is filled in, and a
relative data path is looked up in the working directory first, then next to
the config file. The result is a plain JSON-serialisable dict that
`sweep_from_config` turns into a finished sweep.

TOML has no null: where a `[train]` setting may be None (`early_stopping`,
`max_population`, `divergence_threshold`), `false` means None (off).

Examples:
  >>> from sweeps.config import apply_override
  >>> apply_override({"train": {"epochs": 20}}, "train.epochs=5")
  {'train': {'epochs': 5}}
  >>> apply_override({}, "model.hidden=[128, 64]")["model"]
  {'hidden': [128, 64]}
  >>> apply_override({}, "run.dir=runs/x")["run"]  # not TOML: kept as text
  {'dir': 'runs/x'}
"""

from __future__ import annotations

import copy
import difflib
import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from models import MLP
from sweeps.config_schema import (
    DEFAULTS,
    NULLABLE_RUN,
    NULLABLE_TRAIN,
    REQUIRED,
    SECTIONS,
    STRATEGIES,
    check_early_stopping_keys,
    check_key,
    check_keys,
    strategy_options,
)
from sweeps.data import Dataset, load_csv
from sweeps.planning import Plan, plan
from sweeps.results import Result
from sweeps.space import Axis, axis_from_config
from sweeps.strategies import Strategy, make_strategy
from sweeps.sweep import execute

_DEFAULT_STRATEGY = "grid"

# --- overrides -----------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A `--set` value read as TOML (`5`, `1e-3`, `true`, `[128, 64]`, `{loguniform = [1e-4, 1]}`, `"x"`),
    or else kept as the plain string (`runs/x`, `adam`)."""
    try:
        parsed = tomllib.loads("v = " + text)
    except tomllib.TOMLDecodeError:
        return text
    return parsed["v"] if list(parsed) == ["v"] else text


def apply_override(config: Mapping[str, Any], text: str) -> dict[str, Any]:
    """A copy of `config` with one `section.key=value` set (the value parsed by `parse_value`).

    Deeper keys set inside a table: `train.early_stopping.patience=3`,
    `space.learning_rate.loguniform=[1e-3, 1]`.

    Raises:
      ValueError: for text without `=`, an unknown section or key (with the nearest valid one),
        or a path through a value that is not a table.
    """
    where = f"--set {text}"
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set needs section.key=value, e.g. --set train.epochs=5, but got {text!r}")
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(
            f"--set key {key!r} must name a section and a key, like train.epochs or space.learning_rate; "
            f"sections: {', '.join(SECTIONS)}"
        )
    check_key(parts[0], parts[1], where)
    if parts[:2] == ["train", "early_stopping"] and len(parts) > 2:
        check_early_stopping_keys({parts[2]: None}, where)
    out = copy.deepcopy(dict(config))
    node = out
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None or child is False:  # absent, or an optional table switched off
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ValueError(
                f"cannot set {key}: {'.'.join(parts[: depth + 1])} is {child!r}, not a table; "
                f"set it whole, e.g. --set {'.'.join(parts[: depth + 1])}={{...}}"
            )
        node = child
    node[parts[-1]] = parse_value(value_text.strip())
    return out


# --- resolving -------------------------------------------------------------------------


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed file, or a ValueError naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else f"does not exist (looked in {Path.cwd()})"
        raise ValueError(f"config file {str(path)!r} {what}; pass a .toml file such as data/examples/churn_lr.toml")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not valid TOML: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Reads, checks and resolves a sweep config file.

    Args:
      path: the TOML file.
      overrides: `section.key=value` texts applied in order after the file (the CLI's `--set`).

    Returns:
      A JSON-serialisable dict with every section (`data`, `model`, `space`, `strategy`, `train`,
      `run`) and every default filled in, the data path made absolute, and `config_file`: the
      file's absolute path.

    Raises:
      ValueError: a missing file, a TOML syntax error, an unknown section or key, a missing
        `[data] path` or `target`, a data file that is found nowhere, or a value of the wrong kind.

    Examples:
      >>> config = load_config("data/examples/churn_lr.toml", ["train.epochs=5"])  # doctest: +SKIP
      >>> config["train"]["epochs"], config["strategy"]  # doctest: +SKIP
      (5, {'name': 'grid', 'n': 64})
    """
    path = Path(path)
    raw = read_toml(path)
    check_keys(raw, str(path))
    config = resolve(raw, path)  # the file's own values first: an error there names the file
    for text in overrides:  # then each --set in turn: an error names the override that caused it
        raw = apply_override(raw, text)
        config = resolve(raw, path, where=f"--set {text}")
    config["overrides"] = list(overrides)
    return config


def resolve(raw: Mapping[str, Any], path: str | Path, where: str | None = None) -> dict[str, Any]:
    """Fills defaults and checks the kinds of values of a parsed (and overridden) config from `path`.

    `where` names the source in error messages (default: the file).
    """
    path = Path(path)
    where = str(path) if where is None else where
    defaults = DEFAULTS
    config: dict[str, Any] = {"config_file": str(path.resolve())}

    data = {**defaults["data"], **raw.get("data", {})}
    for key in ("path", "target"):
        if data[key] is REQUIRED:
            raise ValueError(
                f"[data] {key} is missing in {where}; add it, e.g.\n"
                f'  [data]\n  path = "data/telco_customer_churn.csv"\n  target = "Churn"'
            )
        if not isinstance(data[key], str) or not data[key]:
            raise ValueError(f"[data] {key} in {where} must be a non-empty string, but got {data[key]!r}")
    data["path"] = str(_find_data(data["path"], path))
    if isinstance(data["drop"], str):
        data["drop"] = [data["drop"]]
    if not isinstance(data["drop"], list) or not all(isinstance(c, str) for c in data["drop"]):
        raise ValueError(f"[data] drop in {where} must be a list of column names, but got {data['drop']!r}")
    config["data"] = data

    model = {**defaults["model"], **raw.get("model", {})}
    hidden = model["hidden"]
    hidden = [hidden] if isinstance(hidden, int) and not isinstance(hidden, bool) else hidden
    widths_ok = isinstance(hidden, list) and all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in hidden
    )
    if not widths_ok:
        raise ValueError(
            f"[model] hidden in {where} must be a list of layer widths >= 1 like [64] or [128, 64], "
            f"but got {model['hidden']!r}"
        )
    model["hidden"] = hidden
    config["model"] = model

    space = dict(raw.get("space", {}))
    for name, value in space.items():
        try:  # a wrong axis fails here, before any data is read
            axis_from_config(name, value)
        except (ValueError, TypeError) as e:
            raise ValueError(f"[space] {name} = {value!r} in {where}: {e}") from None
    config["space"] = space

    config["strategy"] = _resolve_strategy(dict(raw.get("strategy", {})), where)

    train = {**defaults["train"], **raw.get("train", {})}
    for key in NULLABLE_TRAIN:
        if train.get(key) is False:
            train[key] = None  # TOML has no null: false switches an optional setting off
    if train.get("early_stopping") is True:
        train["early_stopping"] = {}  # sweeps.run's defaults: val_loss, patience 5
    if isinstance(train.get("early_stopping"), Mapping):
        check_early_stopping_keys(train["early_stopping"], where)
    config["train"] = train

    run_section = {**defaults["run"], **raw.get("run", {})}
    for key in NULLABLE_RUN:
        if run_section.get(key) is False:
            run_section[key] = None
    if run_section["dir"] is not None and (not isinstance(run_section["dir"], str) or not run_section["dir"]):
        raise ValueError(f"[run] dir in {where} must be a folder path (a string), but got {run_section['dir']!r}")
    config["run"] = run_section

    _check_json(config, where)
    return copy.deepcopy(config)  # nothing shared with DEFAULTS or the parsed file


def _resolve_strategy(strategy: dict[str, Any], where: str) -> dict[str, Any]:
    name = strategy.pop("name", _DEFAULT_STRATEGY)
    if name not in STRATEGIES:
        near = difflib.get_close_matches(str(name), list(STRATEGIES), n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]!r}?" if near else ";"
        raise ValueError(f"unknown strategy {name!r} in {where}{hint} choose one of {sorted(STRATEGIES)}")
    options = strategy_options(name)
    for key in strategy:
        if key not in options:
            raise ValueError(
                f"strategy {name!r} has no option {key!r} (in {where}); its options: {', '.join(options) or 'none'}"
            )
    return {"name": name, **options, **strategy}


def _find_data(text: str, config_path: Path) -> Path:
    """The data file: as given (absolute, or relative to the working directory), else next to the config."""
    given = Path(text).expanduser()
    if given.is_absolute():
        candidates = [given]
    else:
        candidates = [Path.cwd() / given, config_path.resolve().parent / given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = " and ".join(str(c) for c in dict.fromkeys(candidates))
    raise ValueError(
        f"[data] path {text!r} in {config_path} is not a file: looked for {looked}; "
        f"give a path relative to the working directory or to the config file's folder"
    )


def _check_json(config: Mapping[str, Any], where: str) -> None:
    """Refuses TOML values JSON cannot hold (dates, times), naming the key."""

    def walk(value, key):
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"{key} in {where} must be a number, string, list or table, but got {value!r}")

    walk(config, "")
    json.dumps(config)


# --- from a config to a sweep --------------------------------------------------------


def model_from_config(config: Mapping[str, Any]) -> MLP:
    return MLP(hidden=tuple(config["model"]["hidden"]), activation=config["model"]["activation"])


def space_from_config(config: Mapping[str, Any]) -> dict[str, Axis]:
    return {name: axis_from_config(name, value) for name, value in config["space"].items()}


def strategy_from_config(config: Mapping[str, Any]) -> Strategy:
    options = dict(config["strategy"])
    return make_strategy(options.pop("name"), **options)


def load_data(config: Mapping[str, Any]) -> Dataset:
    """The data set a resolved config's `[data]` section describes."""
    options = dict(config["data"])
    options["drop"] = tuple(options["drop"])
    return load_csv(**options)


def plan_from_config(config: Mapping[str, Any], data: Dataset | None = None) -> tuple[Dataset, Plan]:
    """The data and the `sweeps.Plan` of a resolved config: groups, populations, memory; nothing trains.

    The strategy is asked once, here; pass the plan on to `sweep_from_config`.
    """
    data = load_data(config) if data is None else data
    train = {k: v for k, v in config["train"].items() if k != "seed"}
    sweep_plan = plan(
        data,
        model=model_from_config(config),
        space=space_from_config(config),
        strategy=strategy_from_config(config),
        devices=config["run"].get("devices"),
        **train,
    )
    return data, sweep_plan


def sweep_from_config(
    config: Mapping[str, Any],
    progress: bool = False,
    planned: tuple[Dataset, Plan] | None = None,
    resume: bool | str = False,
    overwrite: bool = False,
) -> Result:
    """Loads the data and runs the sweep a resolved config (from `load_config`) describes.

    `planned` is what `plan_from_config(config)` returned, when the caller has planned already
    (the CLI prints the plan first); the strategy is then not asked again. With `[run] dir` set,
    the run folder's config.json also holds `config_file` (the TOML file's path) and
    `sweep_config` (this resolved config, enough to run the sweep again).

    Examples:
      >>> from sweeps.config import load_config, sweep_from_config
      >>> config = load_config("data/examples/churn_lr.toml", ["train.epochs=2", "run.dir=runs/try"])  # doctest: +SKIP
      >>> sweep_from_config(config).best()["params_learning_rate"]  # doctest: +SKIP
    """
    data, sweep_plan = plan_from_config(config) if planned is None else planned
    run_options = {k: v for k, v in config["run"].items() if k not in ("dir", "devices")}  # devices: in the plan
    return execute(
        sweep_plan,
        data,
        seed=config["train"]["seed"],
        run_dir=config["run"]["dir"],
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        metadata={"config_file": config.get("config_file"), "sweep_config": copy.deepcopy(dict(config))},
        **run_options,
    )
