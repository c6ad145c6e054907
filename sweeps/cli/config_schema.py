"""The config file's schema: its sections, their keys and defaults, and the checks on names.

A config file maps onto the same objects the API takes, field by field: `[data]` onto `load_csv`'s
arguments, `[model]` onto `models.MLP`'s fields (`hidden`, `activation`), or onto your own Flax Linen module:
`class = "package.module:Class"` and its attributes under `[model.args]` (`sweeps.cli.model_class`),
`[strategy]` onto the strategy class's, `[train]` and
`[run]` onto the fields of `sweeps.SweepConfig` marked with that section (and `[run] dir` and `devices`,
the run folder and the machine's devices). Every key but `[data] path` and `target` has the default
of its field or argument. An unknown section or key is refused with the nearest valid name (in its
section, elsewhere, or in `[space]`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn

from models import MLP
from sweeps.cli.model_class import build_module, import_class
from sweeps.data import Dataset, load_csv
from sweeps.engine import hparams
from sweeps.planning.checks import EARLY_STOPPING_KEYS
from sweeps.settings import SweepConfig
from sweeps.space import Axis, axis_from_config
from sweeps.strategies import STRATEGIES, Strategy, make_strategy

SECTIONS = ("data", "model", "space", "strategy", "train", "run")
REQUIRED = object()  # marks a key without a default: `[data] path` and `target`
DEFAULT_STRATEGY = "grid"  # a config without [strategy] name

# The [run] keys that are not SweepConfig fields: the run folder, and the devices (a `Resources` choice).
# [run] keys that are no SweepConfig field: the folder, the devices, and the experiment trackers that watch the run
# live (`sweeps.tracking.trackers`): log = ["mlflow", "tensorboard"] and where each writes.
RUN_ONLY = {
    "dir": None,
    "devices": None,
    "log": [],
    "mlflow_uri": None,
    "mlflow_experiment": None,
    "tensorboard_dir": None,
}
_MODEL_KEYS = ("hidden", "activation")  # MLP.outputs follows the task
OWN_MODEL_KEYS = ("class", "args")  # your own module: its class path and its attributes ([model.args])


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


def field_sections() -> dict[str, str]:
    """Each `SweepConfig` field's section in a config file."""
    return {f.name: f.metadata["section"] for f in dataclasses.fields(SweepConfig)}


def _fields(section: str) -> dict[str, Any]:
    """The `SweepConfig` fields of a section, with their defaults."""
    out = {}
    for f in dataclasses.fields(SweepConfig):
        if f.metadata["section"] == section:
            out[f.name] = _plain(f.default if f.default is not dataclasses.MISSING else f.default_factory())
    return out


def _nullable(section: str) -> tuple[str, ...]:
    """The fields of a section that take None (TOML has no null: a config writes `false`)."""
    return tuple(
        f.name for f in dataclasses.fields(SweepConfig) if f.metadata["section"] == section and "None" in str(f.type)
    )


def _booleans(section: str) -> tuple[str, ...]:
    """The fields of a section that take true or false only."""
    return tuple(
        f.name for f in dataclasses.fields(SweepConfig) if f.metadata["section"] == section and f.type == "bool"
    )


def strategy_options(name: str) -> dict[str, Any]:
    """The options of a strategy class, with their defaults."""
    return _keyword_defaults(STRATEGIES[name])


def strategy_help(lead: str) -> str:
    """The `[strategy]` lines of `sweeps run --help`: every strategy's name and options, from the classes themselves.

    Examples:
      >>> print(strategy_help("[strategy] ").splitlines()[2])
                   random: n, seed
    """
    pad = " " * len(lead)
    names = ", ".join(f'"{name}"' for name in STRATEGIES)
    lines = [f'{lead}name = {names} (default "{DEFAULT_STRATEGY}"), and its options:']
    lines += [f"{pad}  {name}: {', '.join(strategy_options(name)) or 'none'}" for name in STRATEGIES]
    lines.append(f"{pad}(each the arguments of its class: help(sweeps.Halving) describes Halving's)")
    return "\n".join(lines)


def _defaults() -> dict[str, dict[str, Any]]:
    """Each fixed section's keys and defaults (`[space]` is open; `[strategy]` depends on its name)."""
    model_fields = {f.name: f.default for f in dataclasses.fields(MLP)}
    return {
        "data": _keyword_defaults(load_csv),
        "model": {k: _plain(model_fields[k]) for k in _MODEL_KEYS},
        "train": _fields("train"),
        "run": {**RUN_ONLY, **_fields("run")},
    }


DEFAULTS = _defaults()
NULLABLE_TRAIN = _nullable("train")
NULLABLE_RUN = (*_nullable("run"), "devices", "mlflow_uri", "mlflow_experiment", "tensorboard_dir")
BOOLEANS = {section: _booleans(section) for section in ("train", "run")}  # e.g. [train] fuse, [run] plots


def _strategy_keys() -> list[str]:
    keys = ["name"]
    for name in STRATEGIES:
        keys += [k for k in strategy_options(name) if k not in keys]
    return keys


def section_keys(section: str) -> list[str]:
    """The valid keys of a section (`[space]` takes hyperparameter names: `sweeps.engine.hparams.HPARAMS`)."""
    if section == "space":
        return list(hparams.HPARAMS)
    if section == "strategy":
        return _strategy_keys()
    if section == "model":
        return [*DEFAULTS["model"], *OWN_MODEL_KEYS]
    return list(DEFAULTS[section])


# --- a resolved config onto the API's objects ------------------------------------------


def model_from_config(config: Mapping[str, Any]) -> nn.Module:
    """The model a resolved config's `[model]` describes: the built-in MLP, or your own module, its class imported
    (`[model] class`) and called with `[model.args]`.

    Only `sweeps run` calls this on a config that names a class (`sweeps lr-find` refuses one first): it imports
    the class the user's config file (or `--set model.class=...`) names. `sweeps resume` builds the model itself
    (`sweeps.cli.commands.resume_model`): a run folder's record never makes sweeps import code.
    """
    spec = config["model"]
    if "class" not in spec:
        return MLP(hidden=tuple(spec["hidden"]), activation=spec["activation"])
    cls = import_class(spec["class"], f"[model] class in {model_source(config, 'class')}")
    return build_module(cls, spec["args"], f"[model.args] in {model_source(config, 'args')}")


def model_source(config: Mapping[str, Any], key: str) -> str:
    """Where a resolved config's `[model] key` was set: the last `--set model.key...` among its overrides, else the
    config file (for messages)."""
    for text in reversed(config.get("overrides") or []):
        if text.partition("=")[0].strip().split(".")[:2] == ["model", key]:
            return f"--set {text}"
    return str(config.get("config_file") or "the config")


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


def settings_from_config(config: Mapping[str, Any], model: nn.Module | None = None) -> SweepConfig:
    """The `SweepConfig` a resolved config describes: [model] (or `model`, already built), [space], [strategy], and
    the [train] and [run] keys, each the field of the same name (`config_schema.field_sections`)."""
    fields = {name: config[section][name] for name, section in field_sections().items() if section in ("train", "run")}
    return SweepConfig(
        model=model_from_config(config) if model is None else model,
        space=space_from_config(config),
        strategy=strategy_from_config(config),
        **fields,
    )


# --- unknown names -------------------------------------------------------------------


def _unknown_section(section: str, where: str) -> ValueError:
    near = difflib.get_close_matches(section, SECTIONS, n=1, cutoff=0.6)
    hint = f"; did you mean [{near[0]}]?" if near else ""
    return ValueError(f"unknown section [{section}] in {where}{hint} sections: {', '.join(f'[{s}]' for s in SECTIONS)}")


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
    """Refuses an unknown section or key, naming `where` it was written and the nearest valid name.

    A `[space]` name is checked once every override is applied and the model is known (`check_space_name`): your
    own module's `__call__` declares hyperparameters of its own."""
    if section not in SECTIONS:
        raise _unknown_section(section, where)
    if section != "space" and key not in section_keys(section):
        raise _unknown_key(section, key, where)


def check_space_name(name: str, where: str) -> None:
    """Refuses an unknown hyperparameter name in `[space]` of a config for the built-in MLP (`where`: the file or
    the `--set`); your own module's names are checked against its `__call__` when the sweep is made."""
    hparams.check_name(name, where=where if where.startswith("--set") else f"[space] of {where}")


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


def check_early_stopping_keys(stop: Mapping[str, Any], where: str) -> None:
    for key in stop:
        if key not in EARLY_STOPPING_KEYS:
            near = difflib.get_close_matches(key, EARLY_STOPPING_KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean 'train.early_stopping.{near[0]}'?" if near else ";"
            raise ValueError(
                f"unknown key 'train.early_stopping.{key}' in {where}{hint} early_stopping keys: "
                f"{', '.join(EARLY_STOPPING_KEYS)}"
            )
