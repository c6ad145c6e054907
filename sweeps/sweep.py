"""`sweeps.run`: from a data set and a search space to a finished sweep.

The path: the strategy asks for configurations; each becomes `seeds` trials
with their own numbers; every trial's hyperparameters are resolved and
checked before anything compiles; trials are grouped by structure; each
group trains as one population (in fixed-size chunks when it is large) with
its one compiled epoch; the per-epoch metrics become the table and history;
the run folder gets the config, the results and the plots.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import datetime
import math
import platform
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from models import MLP
from sweeps import hparams as hp_registry
from sweeps import keys, memory
from sweeps.data import Dataset, check_batch_size
from sweeps.metrics import METRICS, direction
from sweeps.population import PADDING, Population, Structure, init_population, stack_hparams, structure_of
from sweeps.results import Result, build_frames
from sweeps.space import Axis, as_space, axis_to_config
from sweeps.strategies import Grid, Strategy
from sweeps.train import Controls, Split, compilations, make_train_epoch

EARLY_STOPPING_KEYS = ("metric", "patience", "min_delta")


@dataclasses.dataclass(frozen=True)
class Trial:
    number: int
    config: int
    seed: int
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Group:
    """The trials of one structure, cut into chunks of `chunk_size` members (the last padded)."""

    structure: Structure
    trials: tuple[Trial, ...]
    chunk_size: int
    chunk_bytes: int

    @property
    def chunks(self) -> list[tuple[Trial, ...]]:
        return [self.trials[i : i + self.chunk_size] for i in range(0, len(self.trials), self.chunk_size)]

    @property
    def padding(self) -> int:
        return len(self.chunks) * self.chunk_size - len(self.trials)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a sweep will train, known before anything compiles (`sweeps run --dry-run` prints it)."""

    trials: tuple[Trial, ...]
    groups: tuple[Group, ...]
    budget_bytes: int
    space: dict[str, Axis]
    early_stopping: dict[str, Any] | None
    swept: tuple[str, ...]  # hyperparameter names the trials set (the table's params_ columns)

    @property
    def programs(self) -> int:
        """Compiled programs to build: one per structure (chunks of a group share theirs)."""
        return len(self.groups)

    def table(self) -> pd.DataFrame:
        """One row per group: its structure, trials, chunking and memory estimate per chunk."""
        return pd.DataFrame(
            [
                {
                    "group": i,
                    "structure": g.structure.label(),
                    "trials": len(g.trials),
                    "chunks": len(g.chunks),
                    "population": g.chunk_size,
                    "padding": g.padding,
                    "epochs": max(t.params["epochs"] for t in g.trials),
                    "memory_mb": round(g.chunk_bytes / 2**20, 1),
                }
                for i, g in enumerate(self.groups)
            ]
        )

    def describe(self) -> str:
        lines = [
            f"{len(self.trials)} trials in {len(self.groups)} structure groups: "
            f"{self.programs} compiled programs to build; memory budget {self.budget_bytes / 2**20:.0f} MB per population",
            self.table().to_string(index=False),
        ]
        return "\n".join(lines)


def run(
    data: Dataset,
    *,
    model: MLP | None = None,
    space: Mapping[str, Any] | None = None,
    strategy: Strategy | None = None,
    optimizer: str = "adam",
    epochs: int = 10,
    batch_size: int = 32,
    seeds: int = 1,
    seed: int = 0,
    objective: str = "val_loss",
    early_stopping: Mapping[str, Any] | None = None,
    max_population: int | None = None,
    divergence_threshold: float | None = 10.0,
    run_dir: str | Path | None = None,
    progress: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> Result:
    """Trains every trial of a sweep, each structure group as one vectorized program.

    Args:
      data: a `Dataset` from `sweeps.load_csv` (or `Dataset.from_arrays`).
      model: the model's structure; defaults to the lesson's `MLP(hidden=(64,), activation="relu")`.
        `hidden` and `activation` may also be swept in `space`.
      space: hyperparameter name -> axis (`space.loguniform(...)`, a list of values, or one value).
        Names: see `sweeps.hparams.HPARAMS`.
      strategy: `Grid(n=...)` or `Random(n=..., seed=...)`; default `Grid()`.
      optimizer, epochs, batch_size: defaults for trials whose space does not set them.
      seeds: initialisations per configuration (trials = configurations x seeds).
      seed: the sweep seed: initialisations, dropout masks and minibatch order derive from it.
      objective: the metric that picks each trial's best epoch and the best trial
        (`val_loss`, `val_accuracy`, `val_auc`, `val_rmse`, `val_mae`, `train_loss`).
      early_stopping: `{"metric": "val_loss", "patience": 5, "min_delta": 0.0}` stops a member
        whose metric has not improved for `patience` epochs.
      max_population: the most members trained at once; larger groups are chunked.
      divergence_threshold: a member whose epoch train loss exceeds this many times the loss of
        predicting the training prior (or is not finite) is frozen and marked `diverged`;
        None keeps only the non-finite test.
      run_dir: where to write the run folder (config, table, history, plots); None writes nothing.
      progress: show a progress bar.
      metadata: extra JSON-serialisable entries for the run's config.json (the CLI records
        the config file it ran).

    Returns:
      A `Result` with `table`, `history`, `best()`.

    Examples:
      >>> import sweeps
      >>> from sweeps import space
      >>> data = sweeps.load_csv("data/telco_customer_churn.csv", target="Churn")  # doctest: +SKIP
      >>> result = sweeps.run(data, space={"learning_rate": space.loguniform(1e-4, 1e-1)},
      ...                     strategy=sweeps.Grid(n=8), epochs=5)  # doctest: +SKIP
    """
    started, compiled_before = time.perf_counter(), compilations()
    model = MLP() if model is None else model
    strategy = Grid() if strategy is None else strategy
    sweep_plan = plan(
        data, model=model, space=space, strategy=strategy, optimizer=optimizer, epochs=epochs,
        batch_size=batch_size, seeds=seeds, objective=objective, early_stopping=early_stopping,
        max_population=max_population, divergence_threshold=divergence_threshold,
    )
    axes, stop = sweep_plan.space, sweep_plan.early_stopping
    if run_dir is not None:
        _prepare_run_dir(Path(run_dir))  # fail now, not after the training it would have to hold
    trials, groups = list(sweep_plan.trials), list(sweep_plan.groups)
    records = train_groups(groups, data, seed, stop, divergence_threshold, objective, progress)

    table, history = build_frames(
        [dataclasses.asdict(t) for t in trials], list(sweep_plan.swept), records, objective
    )
    config = {
        "data": {"source": str(data.source), "target": data.target, "task": data.task,
                 "rows": {"train": data.n_train, "val": int(data.x_val.shape[0]), "test": int(data.x_test.shape[0])},
                 "features": data.n_features, "majority_class_fraction": data.majority_class_fraction,
                 "preprocessing": list(data.preprocessing)},
        "model": {"hidden": list(model.hidden), "activation": model.activation},
        "space": {name: axis_to_config(axis) for name, axis in axes.items()},
        "strategy": {"name": type(strategy).__name__.lower(),
                     **(dataclasses.asdict(strategy) if dataclasses.is_dataclass(strategy) else {})},
        "optimizer": optimizer, "epochs": epochs, "batch_size": batch_size, "seeds": seeds, "seed": seed,
        "objective": objective, "direction": direction(objective),
        "early_stopping": dict(stop) if stop else None,
        "max_population": max_population, "divergence_threshold": divergence_threshold,
        "groups": sweep_plan.table().to_dict(orient="records"),
        "wall_s": round(time.perf_counter() - started, 3),
        "compilations": compilations() - compiled_before,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        **dict(metadata or {}),
    }
    result = Result(table=table, history=history, config=config)
    if run_dir is not None:
        write_run_folder(result, run_dir)
    return result


def plan(
    data: Dataset,
    *,
    model: MLP | None = None,
    space: Mapping[str, Any] | None = None,
    strategy: Strategy | None = None,
    optimizer: str = "adam",
    epochs: int = 10,
    batch_size: int = 32,
    seeds: int = 1,
    objective: str = "val_loss",
    early_stopping: Mapping[str, Any] | None = None,
    max_population: int | None = None,
    divergence_threshold: float | None = 10.0,
    memory_budget: int | None = None,
) -> Plan:
    """Checks every input and trial, groups the trials by structure and sizes the populations.

    Takes `run`'s arguments; trains and compiles nothing. Every bad value is refused here,
    before the first compilation. `memory_budget` (bytes) defaults to half the device's memory.
    """
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a sweeps.Dataset (from sweeps.load_csv), but got {type(data).__name__}")
    model = MLP() if model is None else model
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a models.MLP, but got {type(model).__name__}")
    axes = as_space(space)
    for name in axes:
        hp_registry.check_name(name)
    strategy = Grid() if strategy is None else strategy
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy must be sweeps.Grid(...) or sweeps.Random(...), but got {strategy!r}")
    _check_objective(objective, data.task)
    stop = _check_early_stopping(early_stopping, data.task)
    _check_int("seeds", seeds, 1)
    if max_population is not None:
        _check_int("max_population", max_population, 1)
    if divergence_threshold is not None and not (
        isinstance(divergence_threshold, (int, float)) and divergence_threshold > 0
    ):
        raise ValueError(f"divergence_threshold must be > 0 or None, but got {divergence_threshold!r}")

    defaults = {
        "optimizer": optimizer,
        "epochs": epochs,
        "batch_size": batch_size,
        "hidden": model.hidden,
        "activation": model.activation,
    }
    configs = strategy.ask(axes)
    if not configs:
        raise ValueError(f"the strategy {strategy!r} asked for no trials")
    trials = []
    swept = dict.fromkeys(axes)  # the table's params_ columns: the space's names, then any a strategy adds
    for index, config in enumerate(configs):
        for name in config:
            hp_registry.check_name(name, where=f"the trials {type(strategy).__name__} asked for")
            swept.setdefault(name)
        params = hp_registry.resolve({**defaults, **config})
        check_batch_size(data, params["batch_size"])
        trials.extend(Trial(index * seeds + s, index, s, params) for s in range(seeds))
    budget = int(memory.MEMORY_FRACTION * memory.available_bytes()) if memory_budget is None else int(memory_budget)
    groups = group_trials(trials, data, max_population, budget)
    return Plan(tuple(trials), tuple(groups), budget, axes, stop, tuple(swept))


def _prepare_run_dir(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run_dir {run_dir} is a file; pass a folder path (it is created if missing)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create run_dir {run_dir}: {e.strerror}; pass a folder you can write to") from e


def write_run_folder(result: Result, run_dir: str | Path) -> Path:
    """Saves the result and draws its plots into `run_dir`."""
    from sweeps import plots  # matplotlib only when a folder is written

    path = result.save(run_dir)
    plots.plot_run(result, path / "plots")
    return path


def versions() -> dict[str, str]:
    import flax
    import optax

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.default_backend(),
    }


def group_trials(trials: list[Trial], data: Dataset, max_population: int | None, budget_bytes: int) -> list[Group]:
    """Trials grouped by structure, in order of first appearance, each group chunked to fit the budget."""
    by_structure: dict[Structure, list[Trial]] = {}
    for trial in trials:
        by_structure.setdefault(structure_of(trial.params, data), []).append(trial)
    groups = []
    for structure, members in by_structure.items():
        fits = memory.members_that_fit(structure, data.n_train, data.n_val, budget_bytes)
        if max_population is not None:
            fits = min(fits, max_population)
        size = memory.chunk_size(len(members), fits)
        estimate = memory.population_bytes(structure, size, data.n_train, data.n_val)
        groups.append(Group(structure, tuple(members), size, estimate))
    return groups


def baseline_loss(data: Dataset) -> float:
    """The training loss of predicting the training prior: the class entropy, or the target's variance."""
    y = np.asarray(data.y_train, np.float64)
    if data.task == "regression":
        return float(max(y.var(), 1e-12))  # 1.0 on a target load_csv standardized
    counts = np.bincount(y.astype(np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def controls_for(data: Dataset, stop: Mapping[str, Any] | None, divergence_threshold: float | None) -> Controls:
    """The run-wide numbers every compiled epoch reads."""
    limit = math.inf if divergence_threshold is None else divergence_threshold * baseline_loss(data)
    return Controls(
        divergence_limit=jnp.float32(limit),
        patience=jnp.int32(stop["patience"] if stop else 0),
        min_delta=jnp.float32(stop["min_delta"] if stop else 0.0),
        y_std=jnp.float32(data.y_std),
    )


def train_chunk(
    structure: Structure,
    chunk: tuple[Trial, ...],
    size: int,
    data: Dataset,
    seed: int,
    stop_metric: str | None,
    controls: Controls,
    after_epoch=None,
) -> tuple[Population, list[dict[str, np.ndarray]]]:
    """Trains one chunk as a population of `size` members (padded) until every member is done.

    Returns the final population and the per-epoch metrics ((size,) arrays per name).
    `after_epoch(metrics)` is called after each epoch (the progress bar).
    """
    train = Split(jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    val = Split(jnp.asarray(data.x_val), jnp.asarray(data.y_val))
    epoch_fn = make_train_epoch(structure, stop_metric)
    numbers = np.full(size, PADDING, np.int64)
    numbers[: len(chunk)] = [t.number for t in chunk]
    pop = init_population(structure, stack_hparams([t.params for t in chunk], size), numbers, seed)
    history = []
    for epoch in range(max(t.params["epochs"] for t in chunk)):
        order_key = keys.batch_order_key(seed, epoch, structure.batch_size)
        pop, metrics = epoch_fn(pop, train, val, order_key, controls)
        metrics = jax.device_get(metrics)
        history.append(metrics)
        if after_epoch is not None:
            after_epoch(metrics)
        if not metrics["active"].any():
            break
    return pop, history


def train_groups(groups, data, seed, stop, divergence_threshold, objective, progress) -> dict[int, dict]:
    """Trains every chunk of every group; returns per-trial records of metrics by epoch."""
    controls = controls_for(data, stop, divergence_threshold)
    work = [(g, chunk) for g in groups for chunk in g.chunks]
    bar = _progress_bar(sum(max(t.params["epochs"] for t in chunk) for _, chunk in work), progress)
    sign = 1.0 if direction(objective) == "minimize" else -1.0
    best = math.inf
    records: dict[int, dict] = {}
    try:
        for group, chunk in work:
            def after_epoch(metrics, label=group.structure.label()):
                nonlocal best
                value = sign * metrics[objective][metrics["trained"] & ~metrics["diverged"]]
                if value.size and np.isfinite(value).any():
                    best = min(best, float(np.nanmin(value)))
                if bar is not None:
                    shown = f" | best {objective} {sign * best:.4f}" if math.isfinite(best) else ""
                    bar.set_postfix_str(label + shown)
                    bar.update(1)

            _, history = train_chunk(
                group.structure, chunk, group.chunk_size, data, seed, stop["metric"] if stop else None,
                controls, after_epoch,
            )
            if bar is not None:  # a chunk whose members all stopped early skips its last epochs
                bar.update(max(t.params["epochs"] for t in chunk) - len(history))
            records.update(_chunk_records(chunk, history))
    finally:
        if bar is not None:
            bar.close()
    return records


def _chunk_records(chunk, history) -> dict[int, dict]:
    """Per-trial metric curves over the epochs each member trained."""
    names = [m for m in history[0] if m not in ("trained", "diverged", "active")]
    records = {}
    for i, trial in enumerate(chunk):
        trained = np.array([h["trained"][i] for h in history], bool)
        record = {m: np.array([h[m][i] for h in history], np.float64)[trained] for m in names}
        record["diverged"] = bool(history[-1]["diverged"][i])
        records[trial.number] = record
    return records


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="epoch", dynamic_ncols=True, disable=None)  # no bar when not a terminal


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, but got {name}={value!r}")


def _valid_metrics(task: str) -> list[str]:
    return ["train_loss"] + [f"val_{m}" for m in METRICS[task]]


def _check_objective(objective: str, task: str) -> None:
    valid = _valid_metrics(task)
    if objective not in valid:
        raise ValueError(f"objective {objective!r} is not computed for a {task} task; choose one of {valid}")


def _check_early_stopping(early_stopping, task) -> dict | None:
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
    valid = _valid_metrics(task)
    if stop["metric"] not in valid:
        raise ValueError(f"early_stopping metric {stop['metric']!r} is not computed for a {task} task; choose one of {valid}")
    _check_int("early_stopping patience", stop["patience"], 1)
    if not (isinstance(stop["min_delta"], (int, float)) and stop["min_delta"] >= 0):
        raise ValueError(f"early_stopping min_delta must be >= 0, but got {stop['min_delta']!r}")
    stop["min_delta"] = float(stop["min_delta"])
    return stop
