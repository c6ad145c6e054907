"""Sweep config files: one TOML file (plus `--set` overrides) -> `load_csv` + `sweeps.run`.

A config has six sections; every key but `[data] path` and `target` has a
default, taken from the signatures of `load_csv`, `models.MLP`, the strategy
and `sweeps.run`, so the file says only what differs:

    [data]      path, target, task, val_fraction, test_fraction, seed, drop,
                sep, encoding, max_categories, min_frequency                  (load_csv)
    [model]     hidden, activation                                            (models.MLP)
                or class = "package.module:Class" and [model.args]            (your own Flax Linen module)
    [space]     hyperparameter name = one value, a list, or an axis           (sweeps.space)
    [strategy]  name ("grid", "random", "quasirandom", "bayes") and its options:
                n, seed; rounds, per_round, sampler                           (sweeps.strategies)
    [train]     optimizer, epochs, batch_size, seeds, seed, objective,
                early_stopping, max_population, divergence_threshold, init,
                fuse, kernel, precision                                       (sweeps.run)
    [run]       dir (the run folder), checkpoint_every, keep_checkpoints, keep_models, plots,
                devices (a count or a list of device ids; absent: every device),
                log (trackers watching the run live: ["mlflow", "tensorboard"]),
                mlflow_uri, mlflow_experiment, tensorboard_dir (where they write)

`load_config` reads, checks and resolves a file: unknown sections and keys
are refused with the nearest valid name, every default is filled in, and the
data path is made absolute: a relative `[data] path` is read from the config
file's folder (as every tool that reads a config file does), a relative
`--set data.path=...` from the working directory (it was typed there). Every
`--set` applies before any value is checked, so an override can replace a
placeholder; an error names the file or the override that set the value. The
result is a plain JSON-serialisable dict that `sweep_from_config` turns into a
finished sweep.

TOML has no null: where a `[train]` setting may be None (`early_stopping`,
`max_population`, `divergence_threshold`), `false` means None (off).

Examples:
  >>> from sweeps.cli.config import apply_override
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
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn

from sweeps.cli.config_schema import (
    BOOLEANS,
    DEFAULT_STRATEGY,
    DEFAULTS,
    NULLABLE_RUN,
    NULLABLE_TRAIN,
    REQUIRED,
    SECTIONS,
    STRATEGIES,
    check_early_stopping_keys,
    check_key,
    check_keys,
    check_space_name,
    load_data,
    settings_from_config,
    strategy_options,
)
from sweeps.cli.model_class import split_class_path
from sweeps.data import Dataset
from sweeps.driver.rounds import first_round
from sweeps.engine.precision import check_precision
from sweeps.planning.planner import Plan, Round, plan
from sweeps.results.result import Result
from sweeps.settings import Resources
from sweeps.space import axis_from_config
from sweeps.sweep import execute
from sweeps.tracking.trackers import check_names, trackers

# --- overrides -----------------------------------------------------------------------

# A `--set` of one model's key -> the keys of the other model that it replaces when the file wrote them.
MODEL_KINDS = {
    "model.class": ("hidden", "activation"),
    "model.hidden": ("class", "args"),
    "model.activation": ("class", "args"),
}


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
      overrides: `section.key=value` texts applied in order after the file (the CLI's `--set`), before
        any value is checked; a relative `data.path` among them is read from the working directory.

    Returns:
      A JSON-serialisable dict with every section (`data`, `model`, `space`, `strategy`, `train`,
      `run`) and every default filled in, the data path made absolute, `config_file`: the file's
      absolute path, and `overrides`: the overrides as `sweeps resume` replays them (a relative
      data path made absolute).

    Raises:
      ValueError: a missing file, a TOML syntax error, an unknown section or key, a missing
        `[data] path` or `target`, a data file that is not there, or a value of the wrong kind;
        the message names the file or the `--set` that set the value.

    Examples:
      >>> config = load_config("data/examples/churn_lr.toml", ["train.epochs=5"])  # doctest: +SKIP
      >>> config["train"]["epochs"], config["strategy"]  # doctest: +SKIP
      (5, {'name': 'grid', 'n': 64})
    """
    path = Path(path)
    raw = read_toml(path)
    check_keys(raw, str(path))
    raw, sources, replayed = with_overrides(raw, overrides)
    config = resolve(raw, path, sources=sources)
    config["overrides"] = replayed
    return config


def with_overrides(
    raw: Mapping[str, Any], overrides: Sequence[str]
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """`raw` with each `--set` applied in order (names checked, values not yet).

    A `--set model.class=...` replaces the built-in MLP's `hidden` and `activation` written in the file, and
    `--set model.hidden=...` (or `activation`) replaces the file's `class` and `args`: an override chooses the
    model, so an example written for one model runs the other (setting both kinds with `--set` is refused).

    Returns the overridden config; `section.key` -> the `--set` that set it last (what a message about
    its value names); and the overrides as a later `sweeps resume` replays them: a relative
    `data.path` made absolute against the working directory, where it was typed.
    """
    out = copy.deepcopy(dict(raw))
    sources: dict[str, str] = {}
    replayed = []
    for text in overrides:
        key = ".".join(text.partition("=")[0].strip().split(".")[:2])
        if key in MODEL_KINDS and isinstance(out.get("model"), Mapping):  # one model replaces the file's other one
            replaced = [k for k in MODEL_KINDS[key] if f"model.{k}" not in sources]
            out["model"] = {k: v for k, v in out["model"].items() if k not in replaced}
        out = apply_override(out, text)
        sources[key] = f"--set {text}"
        if key == "data.path" and isinstance(out["data"]["path"], str) and out["data"]["path"]:
            given = Path(out["data"]["path"]).expanduser()
            if not given.is_absolute():
                out["data"]["path"] = str(Path.cwd() / given)
                text = f"data.path={out['data']['path']}"
        replayed.append(text)
    return out, sources, replayed


def resolve(
    raw: Mapping[str, Any], path: str | Path, where: str | None = None, sources: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Fills defaults and checks the kinds of values of a parsed (and overridden) config from `path`.

    `where` names the source in error messages (default: the file); `sources` maps a `section.key`
    to the `--set` that set it (`with_overrides`), named instead where that value is wrong.
    """
    path = Path(path)
    where = str(path) if where is None else where
    sources = dict(sources or {})

    def at(key: str) -> str:
        return sources.get(key, where)

    defaults = DEFAULTS
    config: dict[str, Any] = {"config_file": str(path.resolve())}

    data = {**defaults["data"], **raw.get("data", {})}
    for key in ("path", "target"):
        if data[key] is REQUIRED:
            raise ValueError(
                f"[data] {key} is missing in {where}; add it, e.g.\n"
                f'  [data]\n  path = "churn.csv"  # relative to the config file\'s folder\n  target = "Churn"\n'
                f"or give it with --set data.{key}=..."
            )
        if not isinstance(data[key], str) or not data[key]:
            raise ValueError(f"[data] {key} in {at('data.' + key)} must be a non-empty string, but got {data[key]!r}")
    data["path"] = str(_find_data(data["path"], path, at("data.path")))
    if isinstance(data["drop"], str):
        data["drop"] = [data["drop"]]
    if not isinstance(data["drop"], list) or not all(isinstance(c, str) for c in data["drop"]):
        raise ValueError(f"[data] drop in {at('data.drop')} must be a list of column names, but got {data['drop']!r}")
    config["data"] = data

    own = {"class", "args"} & set(raw.get("model", {}))
    config["model"] = _resolve_own_model(dict(raw["model"]), at) if own else _resolve_mlp(raw.get("model", {}), at)

    space = dict(raw.get("space", {}))
    for name, value in space.items():
        if not own:  # your own module's call hyperparameters are checked against its __call__ (SweepConfig)
            check_space_name(name, at("space." + name))
        try:  # a wrong axis fails here, before any data is read
            axis_from_config(name, value)
        except (ValueError, TypeError) as e:
            raise ValueError(f"[space] {name} = {value!r} in {at('space.' + name)}: {e}") from None
    config["space"] = space

    config["strategy"] = _resolve_strategy(dict(raw.get("strategy", {})), at)

    train = {**defaults["train"], **raw.get("train", {})}
    for key in NULLABLE_TRAIN:
        if train.get(key) is False:
            train[key] = None  # TOML has no null: false switches an optional setting off
    if train.get("early_stopping") is True:
        train["early_stopping"] = {}  # sweeps.run's defaults: val_loss, patience 5
    if isinstance(train.get("early_stopping"), Mapping):
        check_early_stopping_keys(train["early_stopping"], at("train.early_stopping"))
    try:
        check_precision(train["precision"])
    except ValueError as e:
        raise ValueError(f"[train] precision in {at('train.precision')}: {e}") from None
    config["train"] = train

    run_section = {**defaults["run"], **raw.get("run", {})}
    for key in NULLABLE_RUN:
        if run_section.get(key) is False:
            run_section[key] = None
    if run_section["dir"] is not None and (not isinstance(run_section["dir"], str) or not run_section["dir"]):
        raise ValueError(
            f"[run] dir in {at('run.dir')} must be a folder path (a string), but got {run_section['dir']!r}"
        )
    check_names(run_section["log"])
    for key in ("mlflow_uri", "mlflow_experiment", "tensorboard_dir"):
        if run_section[key] is not None and not (isinstance(run_section[key], str) and run_section[key]):
            raise ValueError(f"[run] {key} in {at('run.' + key)} must be a string, but got {run_section[key]!r}")
    config["run"] = run_section

    for section, names in BOOLEANS.items():
        for key in names:
            value = config[section][key]
            if not isinstance(value, bool):
                raise ValueError(
                    f"[{section}] {key} in {at(f'{section}.{key}')} must be true or false, but got {value!r}; write "
                    f"{key} = false (or --set {section}.{key}=false), or true"
                )
    _check_json(config, at)
    return copy.deepcopy(config)  # nothing shared with DEFAULTS or the parsed file


def _resolve_mlp(raw: Mapping[str, Any], at) -> dict[str, Any]:
    """The built-in MLP's `[model]`: hidden and activation, defaults filled in."""
    model = {**DEFAULTS["model"], **raw}
    hidden = model["hidden"]
    hidden = [hidden] if isinstance(hidden, int) and not isinstance(hidden, bool) else hidden
    widths_ok = isinstance(hidden, list) and all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in hidden
    )
    if not widths_ok:
        raise ValueError(
            f"[model] hidden in {at('model.hidden')} must be a list of layer widths >= 1 like [64] or [128, 64], "
            f"but got {model['hidden']!r}"
        )
    model["hidden"] = hidden
    return model


def _resolve_own_model(raw: dict[str, Any], at) -> dict[str, Any]:
    """Your own module's `[model]`: `class` (its name checked; imported only when the sweep is made:
    `config_schema.model_from_config`) and `args`, the attributes as written (a table; no defaults filled in:
    they are the class's)."""
    if "class" not in raw:
        raise ValueError(
            f"[model] args in {at('model.args')} are the attributes of your own module, but [model] names no class: "
            'add class = "package.module:Class" (e.g. "models.cnn:CNN"), or for the built-in MLP set hidden and '
            "activation instead of args"
        )
    builtin = [key for key in DEFAULTS["model"] if key in raw]
    if builtin:
        keys = " and ".join(builtin)
        raise ValueError(
            f"[model] in {at('model.class')} names your own module (class = {raw['class']!r}) and sets {keys}, the "
            f"built-in MLP's {'keys' if len(builtin) > 1 else 'key'}: choose one model. For your module, remove "
            f"{keys} and give its attributes under [model.args] (a subclass of models.MLP too: [model.args] hidden "
            "= [64]); for the built-in MLP, remove class and args"
        )
    split_class_path(raw["class"], f"[model] class in {at('model.class')}")
    args = raw.get("args", {})
    if not isinstance(args, Mapping):
        raise ValueError(
            f"[model] args in {at('model.args')} must be a table of your module's attributes, like "
            f"[model.args] channels = [16, 32] (or args = {{channels = [16, 32]}}), but got {args!r}"
        )
    return {"class": raw["class"].strip(), "args": dict(args)}


def resolve_saved(stored: Mapping[str, Any], overrides: Sequence[str], where: str) -> dict[str, Any]:
    """A run's saved configuration (config.json's `sweep_config`) resolved again, with more `--set` overrides on
    top: what `sweeps resume` runs when the config file is gone. `where` names the saved configuration in messages.
    """
    raw = {k: v for k, v in stored.items() if k not in ("config_file", "overrides")}
    raw, sources, replayed = with_overrides(raw, overrides)
    config = resolve(raw, stored.get("config_file") or ".", where=where, sources=sources)
    config["config_file"] = stored.get("config_file")
    config["overrides"] = list(stored.get("overrides", [])) + replayed
    return config


def _resolve_strategy(strategy: dict[str, Any], at) -> dict[str, Any]:
    name = strategy.pop("name", DEFAULT_STRATEGY)
    if name not in STRATEGIES:
        near = difflib.get_close_matches(str(name), list(STRATEGIES), n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]!r}?" if near else ";"
        raise ValueError(f"unknown strategy {name!r} in {at('strategy.name')}{hint} choose one of {sorted(STRATEGIES)}")
    options = strategy_options(name)
    for key in strategy:
        if key not in options:
            raise ValueError(
                f"strategy {name!r} has no option {key!r} (in {at('strategy.' + key)}); "
                f"its options: {', '.join(options) or 'none'}"
            )
    return {"name": name, **options, **strategy}


def _find_data(text: str, config_path: Path, where: str) -> Path:
    """The data file: an absolute path as it is, a relative one in the config file's folder.

    (`with_overrides` has made a relative `--set data.path` absolute against the working directory.)
    """
    folder = config_path.resolve().parent
    given = Path(text).expanduser()
    candidate = given if given.is_absolute() else folder / given
    if candidate.is_file():
        return candidate.resolve()
    base = "the working directory" if where.startswith("--set") else "the config file's folder"  # see with_overrides
    hint = f"give a path relative to {base}, or an absolute one"
    beside_us = Path.cwd() / given
    if not given.is_absolute() and beside_us.is_file():
        hint = (
            f"{beside_us} exists, relative to the working directory, but a path in a config file is read from the "
            f"file's folder: write path = {os.path.relpath(beside_us, folder)!r} or an absolute path, or pass "
            f"--set data.path={text} (read from the working directory)"
        )
    relative = "" if given.is_absolute() else f" (relative to {config_path.name}'s folder)"
    raise ValueError(f"[data] path {text!r} in {where} is not a file: looked for {candidate}{relative}; {hint}")


def _check_json(config: Mapping[str, Any], at) -> None:
    """Refuses TOML values JSON cannot hold (dates, times), naming the key and where it was set."""

    def walk(value, key):
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValueError(
                f"{key} in {at('.'.join(key.split('.')[:2]))} must be a number, string, list or table, "
                f"but got {value!r}"
            )

    walk(config, "")
    json.dumps(config)


# --- from a config to a sweep --------------------------------------------------------


def plan_from_config(
    config: Mapping[str, Any], data: Dataset | None = None, model: nn.Module | None = None
) -> tuple[Dataset, Plan, Round]:
    """The data, the `sweeps.Plan` and the first round of a resolved config: groups, populations, memory; nothing
    trains. The first round is asked of a copy of the strategy (`first_round`); the sweep asks its own again.

    `model`: the model, already built (`sweeps resume` builds your own module itself); None builds it from
    `[model]` (`config_schema.model_from_config`: a `[model] class` is imported).
    """
    settings = settings_from_config(config, model)  # the model and the space checked before the data is read
    data = load_data(config) if data is None else data
    sweep_plan = plan(settings, data, Resources.detect(config["run"].get("devices")))
    return data, sweep_plan, first_round(sweep_plan)


def sweep_from_config(
    config: Mapping[str, Any],
    progress: bool = False,
    planned: tuple[Dataset, Plan, Round] | None = None,
    resume: bool | str = False,
    overwrite: bool = False,
) -> Result:
    """Loads the data and runs the sweep a resolved config (from `load_config`) describes.

    `planned` is what `plan_from_config(config)` returned, when the caller has planned already
    (the CLI prints the plan first). With `[run] dir` set,
    the run folder's config.json also holds `config_file` (the TOML file's path) and
    `sweep_config` (this resolved config, enough to run the sweep again).

    Examples:
      >>> from sweeps.cli.config import load_config, sweep_from_config
      >>> config = load_config("data/examples/churn_lr.toml", ["train.epochs=2", "run.dir=runs/try"])  # doctest: +SKIP
      >>> sweep_from_config(config).best()["params_learning_rate"]  # doctest: +SKIP
    """
    data, sweep_plan, _ = plan_from_config(config) if planned is None else planned
    run = config["run"]
    options = {"mlflow_uri": run.get("mlflow_uri"), "mlflow_experiment": run.get("mlflow_experiment")}
    watching = trackers(run.get("log", []), **options, tensorboard_dir=run.get("tensorboard_dir"))
    return execute(
        sweep_plan.config,
        data,
        sweep_plan.resources,
        run_dir=config["run"]["dir"],
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        callbacks=watching,
        metadata={"config_file": config.get("config_file"), "sweep_config": copy.deepcopy(dict(config))},
    )
