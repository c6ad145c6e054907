"""The summary both `sweeps run` and `sweeps report` print: top trials, counts, the best trial."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

TOP_TRIALS = 10
TOP_CONFIGURATIONS = 5


def summary_lines(result) -> list[str]:
    """The top trials, the counts, the best trial (and per-configuration means when seeds > 1)."""
    table = result.table
    objective = result.objective
    better = "lower" if result.direction == "minimize" else "higher"
    top = result.top(TOP_TRIALS)
    lines = [
        f"top {len(top)} of {len(table)} trials by {objective} ({better} is better), "
        f"metrics at each trial's best epoch:",
        _format_frame(_readable(top, objective)),
        "",
        _counts_line(result),
    ]
    seeds = int(table["seed"].nunique()) if "seed" in table else 1
    if seeds > 1:
        lines += ["", _configurations(result, seeds), ""]
    lines += _best_lines(result)
    return lines


def _readable(frame: pd.DataFrame, objective: str) -> pd.DataFrame:
    """Shorter column names for the screen: `params_learning_rate` -> `learning_rate`,
    `best_val_loss` -> `val_loss`, `number` -> `trial`; `value` dropped when it repeats the objective."""
    if f"best_{objective}" in frame and "value" in frame:
        frame = frame.drop(columns="value")
    names = {}
    for column in frame.columns:
        if column == "number":
            names[column] = "trial"
        elif column.startswith("params_"):
            name = column[len("params_") :]
            changed = f"best_hparam_{name}" in frame  # population based training: its value changed
            names[column] = f"{name}@start" if changed else name
        elif column.startswith("best_hparam_"):
            names[column] = f"{column[len('best_hparam_') :]}@best"
        elif column.startswith("best_") and column != "best_epoch":
            names[column] = column[len("best_") :]
    return frame.rename(columns=names)


def _format_frame(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")


def _counts_line(result) -> str:
    table = result.table
    states = table["state"].value_counts()
    parts = [f"{int(states.get('complete', 0))} complete", f"{int(states.get('diverged', 0))} diverged"]
    parts += [f"{int(n)} {state}" for state, n in states.items() if state not in ("complete", "diverged")]
    line = f"{len(table)} trials: {', '.join(parts)}"
    lr = "params_learning_rate"
    diverged = table[table["state"] == "diverged"]
    if len(diverged) and lr in table and pd.api.types.is_numeric_dtype(table[lr]):
        low, high = diverged[lr].min(), diverged[lr].max()
        rest = table.loc[table["state"] != "diverged", lr]
        if low == high:
            line += f" (at learning_rate {low:.4g})"
        elif rest.empty or low > rest.max():
            line += f": the largest learning rates, {low:.4g} to {high:.4g}"
        else:
            line += f" (at learning rates between {low:.4g} and {high:.4g})"
    return line


def _configurations(result, seeds: int) -> str:
    """The best configurations by the mean objective over their seeds."""
    summary = result.summary().head(TOP_CONFIGURATIONS)
    objective = result.objective
    params = [c for c in summary.columns if c.startswith("params_")]
    metrics = [objective] + [m for m in _headline_metrics(result) if m != objective]
    columns = params + ["seeds", "diverged"]
    for m in metrics:
        columns += [c for c in (f"best_{m}_mean", f"best_{m}_std") if c in summary]
    shown = _readable(summary[columns], objective)
    return (
        f"top {len(shown)} configurations by mean {objective} over {seeds} seeds (mean and std at the best epoch):\n"
        + _format_frame(shown)
    )


def _headline_metrics(result) -> list[str]:
    """The metrics a reader looks at first: accuracy and AUC, or RMSE, then the user's own."""
    task = result.config.get("data", {}).get("task")
    wanted = ["val_rmse"] if task == "regression" else ["val_accuracy", "val_auc"]
    wanted += [f"val_{name}" for name in result.config.get("metrics", {})]
    return [m for m in wanted if f"best_{m}" in result.table]


def _best_lines(result) -> list[str]:
    try:
        best = result.best()
    except ValueError as e:  # every trial diverged: the run is still written down
        return [f"best: none; {e}"]
    swept = [c for c in result.table.columns if c.startswith("params_") and pd.notna(best[c])]
    params = ", ".join(f"{c[len('params_') :]} {format_value(_at_best(best, c))}" for c in swept)
    metrics = [result.objective] + [m for m in _headline_metrics(result) if m != result.objective]
    values = ", ".join(f"{m} {best[f'best_{m}']:.4g}" for m in metrics if f"best_{m}" in best)
    epochs = f"epoch {best['best_epoch']} of {best['epochs']}"
    table = result.table
    seeds = int(table["seed"].nunique()) if "seed" in table else 1
    if seeds > 1:  # the configuration was chosen by its mean over seeds; name it, then its best seed
        same = table[table["config"] == best["config"]][f"best_{result.objective}"]
        lines = [
            f"best configuration: {params or 'the defaults'}: mean {result.objective} {same.mean():.4g} "
            f"(std {same.std():.2g}) over {seeds} seeds",
            f"      its best seed: trial {best['number']}, {epochs}: {values}",
        ]
    else:
        lines = [f"best: trial {best['number']}{f' ({params})' if params else ''}, {epochs}: {values}"]
    data = result.config.get("data", {})
    if data.get("majority_class_fraction") is not None:
        lines.append(
            f"      (always predicting the most common class would give val_accuracy "
            f"{data['majority_class_fraction']:.4g})"
        )
    if data.get("baseline_val_rmse") is not None:
        lines.append(f"      (always predicting the training mean would give val_rmse {data['baseline_val_rmse']:.4g})")
    test = result.config.get("test_metrics")
    if test:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in test.items() if k != "trial")
        lines.append(f"test split, once, with trial {test['trial']}'s saved model (never used to choose): {shown}")
    return lines + _ensemble_lines(result.config.get("ensemble"), test)


def _ensemble_lines(ensemble: Mapping[str, Any] | None, test: Mapping[str, Any] | None) -> list[str]:
    """The top saved trials averaged (config.json's "ensemble"), each metric beside the best saved model's:
    validation (the split that chose the trials, so optimistic), then test."""
    if not ensemble:
        return []
    best = ensemble.get("best_trial", {})
    same = bool(test) and test.get("trial") == best.get("trial")  # test_metrics: the best saved model's, as here
    theirs = {**best, **test} if same else best

    def shown(split: str) -> str:
        return ", ".join(
            f"{k} {v:.4g}" + (f" (best trial {theirs[k]:.4g})" if k in theirs else "")
            for k, v in ensemble.items()
            if k.startswith(f"{split}_")
        )

    trials = ensemble["trials"]
    lines = [
        f"ensemble of the top {len(trials)} (trials {', '.join(str(t) for t in trials)}), their predictions averaged "
        f"(`sweeps.load_model(run_dir, top={len(trials)})`):",
        f"      validation (chose the trials: optimistic): {shown('val')}",
    ]
    if any(k.startswith("test_") for k in ensemble):
        lines.append(f"      test split (chose nothing): {shown('test')}")
    return lines


def _at_best(row, column: str):
    """A hyperparameter's value at the trial's best epoch: where it changed while training (population
    based training), the schedule's value then, else the trial's one value."""
    changed = f"best_hparam_{column[len('params_') :]}"
    return row[changed] if changed in row and pd.notna(row[changed]) else row[column]


def show_path(path) -> str:
    """A path relative to the working directory when it lies below it, else as it is."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return str(list(value))
    return str(value)


def describe_config(config: dict, config_path: str, trials: int, rounds: int | None = None) -> list[str]:
    """What is about to run, in a few lines, before anything trains (`trials`: the first round's)."""
    from sweeps.space import Float, axis_from_config

    strategy = dict(config["strategy"])
    name = strategy.pop("name")
    options = ", ".join(f"{k}={v}" for k, v in strategy.items() if v is not None)
    axes = []
    for key, value in config["space"].items():
        axis = axis_from_config(key, value)
        if isinstance(axis, Float):
            axes.append(f"{key} {'loguniform' if axis.log else 'uniform'} [{axis.low:g}, {axis.high:g}]")
        elif len(axis.values) == 1:
            axes.append(f"{key} = {format_value(axis.values[0])}")
        else:
            axes.append(f"{key} in [{', '.join(format_value(v) for v in axis.values)}]")
    seeds = config["train"]["seeds"]
    count = f"{trials} trial{'s' * (trials != 1)}"
    if seeds > 1:
        count += f" ({trials // seeds} configurations x {seeds} seeds)"
    if rounds is not None and rounds > 1:
        count += f" in the first of {rounds} rounds"
    over = f" over {'; '.join(axes)}" if axes else " (empty [space]: the defaults)"
    model, train, swept = config["model"], config["train"], config["space"]
    own = [("class", model_label(model))] if "class" in model else []
    builtin = [] if own else [("hidden", f"MLP hidden {model['hidden']}"), ("activation", model["activation"])]
    settings = [  # the defaults every trial shares unless [space] sweeps them
        *own,
        *builtin,
        ("optimizer", train["optimizer"]),
        ("epochs", f"{train['epochs']} epochs"),
        ("batch_size", f"batch {train['batch_size']}"),
    ]
    shared = ", ".join(text for key, text in settings if key not in swept)
    return [
        f"sweep:  {show_path(config_path)}",
        f"data:   {config['data']['path']}, predicting {config['data']['target']!r}",  # absolute: no doubt which file
        f"trials: {count}, {name}{f' ({options})' if options else ''}{over}",
        f"train:  {shared + '; ' if shared else ''}best by {train['objective']}",
        f"output: {show_path(config['run']['dir'])}",
    ]


def model_label(spec: Mapping[str, Any]) -> str:
    """A resolved `[model]` in a line: `MLP hidden [64] relu`, or `models.cnn:CNN(channels=[16, 32])`.

    Examples:
      >>> model_label({"class": "models.cnn:CNN", "args": {"channels": [8, 16], "dense": 32}})
      'models.cnn:CNN(channels=[8, 16], dense=32)'
    """
    if "class" not in spec:
        return f"MLP hidden {spec['hidden']} {spec['activation']}"
    args = ", ".join(f"{k}={v!r}" for k, v in spec["args"].items())
    return f"{spec['class']}({args})"


def compile_lines(report: list[dict] | None, wall_s: float | None = None, cache_dir: str | None = None) -> list[str]:
    """What the dry run says about compilation: the seconds per structure when it compiled (`--compile`),
    else where they will be shown. `report` is `SweepLoop.compile_first_round()`'s (config.json's
    `compile_by_structure` form)."""
    if report is None:
        return [
            "compile seconds: not measured by a plain dry run; `--dry-run --compile` compiles each structure's "
            "programs now (a few seconds each, no training) and prints them; a run records them per structure in "
            "config.json (compile_by_structure)"
        ]
    rows = []
    for entry in report:
        seconds = {}
        for program in entry["programs"]:
            seconds[program["program"]] = seconds.get(program["program"], 0.0) + program["compile_s"]
        rows.append(
            {
                "structure": entry["structure"],
                "population": ", ".join(str(p) for p in sorted({p["population"] for p in entry["programs"]})),
                "initialisation_s": seconds.get("initialisation", 0.0),
                "epoch_s": seconds.get("epoch", 0.0),
                "compile_s": entry["compile_s"],
                "cache_hits": sum(p["cache_hits"] for p in entry["programs"]),
            }
        )
    programs = sum(1 for entry in report for p in entry["programs"] if p["compilations"])
    hits = sum(p["cache_hits"] for entry in report for p in entry["programs"])
    total = sum(entry["compile_s"] for entry in report)
    cache = (
        f"the compilation cache ({show_path(cache_dir)}) keeps those that took 0.5 s or more, so `sweeps run` "
        "loads them instead of compiling"
        if cache_dir
        else "the compilation cache is off (SWEEPS_CACHE_DIR=off), so `sweeps run` compiles them again"
    )
    wall = f" ({wall_s:.1f} s wall, with tracing)" if wall_s is not None else ""
    return [
        "compiled ahead of time, nothing trained; XLA's compile seconds per structure (cache_hits: loaded from "
        "the compilation cache):",
        pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"),
        f"compiled {programs} programs{f' ({hits} loaded from the cache)' if hits else ''} in {total:.1f} s{wall}; "
        f"{cache}",
    ]
