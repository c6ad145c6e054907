"""Sweep config files: one TOML file (plus `--set` overrides) -> `load_csv` + `sweeps.run`.

A config has six sections; every key but `[data] path` and `target` has a
default, taken from the signatures of `load_csv`, `models.MLP`, the strategy
and `sweeps.run`, so the file says only what differs:

    [data]      path, target, task, val_fraction, test_fraction, seed, drop   (load_csv)
    [model]     hidden, activation                                            (models.MLP)
    [space]     hyperparameter name = one value, a list, or an axis           (sweeps.space)
    [strategy]  name ("grid" or "random") and its options: n, seed            (sweeps.strategies)
    [train]     optimizer, epochs, batch_size, seeds, seed, objective,
                early_stopping, max_population, divergence_threshold          (sweeps.run)
    [run]       dir: the run folder

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
import dataclasses
import difflib
import inspect
import json
import tomllib
from pathlib import Path
from typing import Any, Mapping, Sequence

from models import MLP
from sweeps import hparams
from sweeps.data import load_csv
from sweeps.results import Result
from sweeps.space import Axis, axis_from_config
from sweeps.strategies import STRATEGIES, Strategy, make_strategy
from sweeps.sweep import EARLY_STOPPING_KEYS, plan, run

SECTIONS = ("data", "model", "space", "strategy", "train", "run")
REQUIRED = object()  # marks a key without a default: `[data] path` and `target`

# Arguments of sweeps.run that other sections (or the CLI) supply.
_NOT_TRAIN = ("data", "model", "space", "strategy", "run_dir", "progress", "metadata")
_MODEL_KEYS = ("hidden", "activation")  # MLP.outputs follows the task
_DEFAULT_STRATEGY = "grid"


def _plain(value: Any) -> Any:
    """A default as a config value: tuples become lists (TOML and JSON have no tuples)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _keyword_defaults(fn, skip: Sequence[str] = ()) -> dict[str, Any]:
    """name -> default (or REQUIRED) for the parameters of `fn`."""
    out = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[name] = REQUIRED if p.default is p.empty else _plain(p.default)
    return out


def _nullable(fn, skip: Sequence[str] = ()) -> tuple[str, ...]:
    """The parameters of `fn` that take None (TOML has no null: a config writes `false`)."""
    return tuple(
        name
        for name, p in inspect.signature(fn).parameters.items()
        if name not in skip and (p.default is None or "None" in str(p.annotation))
    )


def _strategy_options(name: str) -> dict[str, Any]:
    """The options of a strategy class, with their defaults."""
    return _keyword_defaults(STRATEGIES[name])


def _defaults() -> dict[str, dict[str, Any]]:
    """Each fixed section's keys and defaults (`[space]` is open; `[strategy]` depends on its name)."""
    model_fields = {f.name: f.default for f in dataclasses.fields(MLP)}
    return {
        "data": _keyword_defaults(load_csv),
        "model": {k: _plain(model_fields[k]) for k in _MODEL_KEYS},
        "train": _keyword_defaults(run, skip=_NOT_TRAIN),
        "run": {"dir": None},
    }


DEFAULTS = _defaults()
NULLABLE_TRAIN = _nullable(run, skip=_NOT_TRAIN)


def _strategy_keys() -> list[str]:
    keys = ["name"]
    for name in STRATEGIES:
        keys += [k for k in _strategy_options(name) if k not in keys]
    return keys


def section_keys(section: str) -> list[str]:
    """The valid keys of a section (`[space]` takes hyperparameter names: `sweeps.hparams.HPARAMS`)."""
    if section == "space":
        return list(hparams.HPARAMS)
    if section == "strategy":
        return _strategy_keys()
    return list(DEFAULTS[section])


# --- unknown names -------------------------------------------------------------------


def _unknown_section(section: str, where: str) -> ValueError:
    near = difflib.get_close_matches(section, SECTIONS, n=1, cutoff=0.6)
    hint = f"; did you mean [{near[0]}]?" if near else ""
    return ValueError(
        f"unknown section [{section}] in {where}{hint} sections: {', '.join(f'[{s}]' for s in SECTIONS)}"
    )


def _unknown_key(section: str, key: str, where: str) -> ValueError:
    """An unknown `section.key`, with the nearest valid key: in this section, elsewhere, or in [space]."""
    valid = section_keys(section)
    suggestion = None
    if key in hparams.HPARAMS:
        suggestion = f"space.{key}"  # a hyperparameter: one value or an axis in [space]
    else:
        for other in SECTIONS:
            if other not in ("space", section) and key in section_keys(other):
                suggestion = f"{other}.{key}"
                break
    if suggestion is None:
        near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        if near:
            suggestion = f"{section}.{near[0]}"
    if suggestion is None:
        every = [f"{s}.{k}" for s in SECTIONS if s != "space" for k in section_keys(s)]
        near = difflib.get_close_matches(f"{section}.{key}", every, n=1, cutoff=0.6)
        suggestion = near[0] if near else None
    hint = f"; did you mean {suggestion!r}?" if suggestion else ";"
    return ValueError(f"unknown key '{section}.{key}' in {where}{hint} [{section}] keys: {', '.join(valid)}")


def check_key(section: str, key: str, where: str) -> None:
    """Refuses an unknown section or key, naming `where` it was written and the nearest valid name."""
    if section not in SECTIONS:
        raise _unknown_section(section, where)
    if section == "space":
        hparams.check_name(key, where=where if where.startswith("--set") else f"[space] of {where}")
    elif key not in section_keys(section):
        raise _unknown_key(section, key, where)


def check_keys(raw: Mapping[str, Any], where: str) -> None:
    """Checks every section and key of a parsed file."""
    for section, table in raw.items():
        if section not in SECTIONS:
            if not isinstance(table, Mapping):  # a key above the first [section]
                sections = [s for s in SECTIONS if s != "space" and section in section_keys(s)]
                hint = f"; did you mean '{sections[0]}.{section}' (under [{sections[0]}])?" if sections else ""
                raise ValueError(
                    f"unknown key {section!r} at the top of {where}{hint} every key belongs to a section: "
                    f"{', '.join(f'[{s}]' for s in SECTIONS)}"
                )
            raise _unknown_section(section, where)
        if not isinstance(table, Mapping):
            raise ValueError(
                f"{section} in {where} must be a section ([{section}] with keys below it), but got {table!r}"
            )
        for key in table:
            check_key(section, key, where)


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
        raise ValueError(
            f"--set needs section.key=value, e.g. --set train.epochs=5, but got {text!r}"
        )
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(
            f"--set key {key!r} must name a section and a key, like train.epochs or space.learning_rate; "
            f"sections: {', '.join(SECTIONS)}"
        )
    check_key(parts[0], parts[1], where)
    if parts[:2] == ["train", "early_stopping"] and len(parts) > 2:
        _check_early_stopping_keys({parts[2]: None}, where)
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
    for text in overrides:
        raw = apply_override(raw, text)
    return resolve(raw, path)


def resolve(raw: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """Fills defaults and checks the kinds of values of a parsed (and overridden) config from `path`."""
    path = Path(path)
    where = str(path)
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
        _check_early_stopping_keys(train["early_stopping"], where)
    config["train"] = train

    run_section = {**defaults["run"], **raw.get("run", {})}
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
    options = _strategy_options(name)
    for key in strategy:
        if key not in options:
            raise ValueError(
                f"strategy {name!r} has no option {key!r} (in {where}); its options: "
                f"{', '.join(options) or 'none'}"
            )
    return {"name": name, **options, **strategy}


def _check_early_stopping_keys(stop: Mapping[str, Any], where: str) -> None:
    for key in stop:
        if key not in EARLY_STOPPING_KEYS:
            near = difflib.get_close_matches(key, EARLY_STOPPING_KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean 'train.early_stopping.{near[0]}'?" if near else ";"
            raise ValueError(
                f"unknown key 'train.early_stopping.{key}' in {where}{hint} early_stopping keys: "
                f"{', '.join(EARLY_STOPPING_KEYS)}"
            )


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


def count_trials(config: Mapping[str, Any]) -> int:
    """How many trials the config asks for (configurations x seeds), without reading the data."""
    return len(strategy_from_config(config).ask(space_from_config(config))) * config["train"]["seeds"]


def _sweep_arguments(config: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The data set and the keyword arguments of `sweeps.run` / `sweeps.plan` a resolved config describes."""
    data_options = dict(config["data"])
    data_options["drop"] = tuple(data_options["drop"])
    data = load_csv(**data_options)
    arguments = dict(
        model=model_from_config(config),
        space=space_from_config(config),
        strategy=strategy_from_config(config),
        **config["train"],
    )
    return data, arguments


def plan_from_config(config: Mapping[str, Any]):
    """The `sweeps.Plan` of a resolved config: groups, populations, memory; nothing trains."""
    data, arguments = _sweep_arguments(config)
    arguments.pop("seed")
    return plan(data, **arguments)


def sweep_from_config(config: Mapping[str, Any], progress: bool = False) -> Result:
    """Loads the data and runs the sweep a resolved config (from `load_config`) describes.

    With `[run] dir` set, the run folder's config.json also holds `config_file` (the TOML file's
    path) and `sweep_config` (this resolved config, enough to run the sweep again).

    Examples:
      >>> from sweeps.config import load_config, sweep_from_config
      >>> config = load_config("data/examples/churn_lr.toml", ["train.epochs=2", "run.dir=runs/try"])  # doctest: +SKIP
      >>> sweep_from_config(config).best()["params_learning_rate"]  # doctest: +SKIP
    """
    data, arguments = _sweep_arguments(config)
    return run(
        data,
        **arguments,
        run_dir=config["run"]["dir"],
        progress=progress,
        metadata={"config_file": config.get("config_file"), "sweep_config": copy.deepcopy(dict(config))},
    )
