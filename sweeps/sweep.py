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
import datetime
import math
import platform
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from models import MLP
from sweeps import hparams as hp_registry
from sweeps import keys
from sweeps.data import Dataset, check_batch_size
from sweeps.metrics import METRICS, direction
from sweeps.population import PADDING, Structure, init_population, stack_hparams, structure_of
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
    """The trials of one structure, cut into chunks of `chunk_size` members."""

    structure: Structure
    trials: tuple[Trial, ...]
    chunk_size: int

    @property
    def chunks(self) -> list[tuple[Trial, ...]]:
        return [self.trials[i : i + self.chunk_size] for i in range(0, len(self.trials), self.chunk_size)]


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

    Returns:
      A `Result` with `table`, `history`, `best()`.

    Examples:
      >>> import sweeps
      >>> from sweeps import space
      >>> data = sweeps.load_csv("data/telco_customer_churn.csv", target="Churn")  # doctest: +SKIP
      >>> result = sweeps.run(data, space={"learning_rate": space.loguniform(1e-4, 1e-1)},
      ...                     strategy=sweeps.Grid(n=8), epochs=5)  # doctest: +SKIP
    """
    started = time.perf_counter()
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a sweeps.Dataset (from sweeps.load_csv), but got {type(data).__name__}")
    model = MLP() if model is None else model
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a models.MLP, but got {type(model).__name__}")
    axes = as_space(space)
    for name in axes:
        hp_registry.check_name(name)
    strategy = Grid() if strategy is None else strategy
    _check_objective(objective, data.task)
    stop = _check_early_stopping(early_stopping, data.task)
    _check_int("seeds", seeds, 1)
    if max_population is not None:
        _check_int("max_population", max_population, 1)
    if divergence_threshold is not None and not divergence_threshold > 0:
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
    for index, config in enumerate(configs):
        params = hp_registry.resolve({**defaults, **config})
        check_batch_size(data, params["batch_size"])
        trials.extend(Trial(index * seeds + s, index, s, params) for s in range(seeds))

    groups = group_trials(trials, data, max_population)
    records = train_groups(groups, data, seed, stop, divergence_threshold, objective, progress)

    table, history = build_frames(
        [dataclasses.asdict(t) for t in trials], list(axes), records, objective
    )
    config = {
        "data": {"source": str(data.source), "target": data.target, "task": data.task,
                 "rows": {"train": data.n_train, "val": int(data.x_val.shape[0]), "test": int(data.x_test.shape[0])},
                 "features": data.n_features, "preprocessing": list(data.preprocessing)},
        "model": {"hidden": list(model.hidden), "activation": model.activation},
        "space": {name: axis_to_config(axis) for name, axis in axes.items()},
        "strategy": {"name": type(strategy).__name__.lower(), **dataclasses.asdict(strategy)},
        "optimizer": optimizer, "epochs": epochs, "batch_size": batch_size, "seeds": seeds, "seed": seed,
        "objective": objective, "direction": direction(objective),
        "early_stopping": dict(stop) if stop else None,
        "max_population": max_population, "divergence_threshold": divergence_threshold,
        "groups": [{"structure": g.structure.label(), "trials": len(g.trials), "chunk_size": g.chunk_size}
                   for g in groups],
        "wall_s": round(time.perf_counter() - started, 3),
        "compilations": compilations(),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    result = Result(table=table, history=history, config=config)
    if run_dir is not None:
        write_run_folder(result, run_dir)
    return result


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
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.default_backend(),
    }


def group_trials(trials: list[Trial], data: Dataset, max_population: int | None) -> list[Group]:
    """Trials grouped by structure, in order of first appearance."""
    by_structure: dict[Structure, list[Trial]] = {}
    for trial in trials:
        by_structure.setdefault(structure_of(trial.params, data), []).append(trial)
    groups = []
    for structure, members in by_structure.items():
        chunk = len(members) if max_population is None else min(len(members), max_population)
        groups.append(Group(structure, tuple(members), chunk))
    return groups


def baseline_loss(data: Dataset) -> float:
    """The training loss of predicting the training prior: class entropy, or 1.0 on a standardized target."""
    if data.task == "regression":
        return 1.0
    counts = np.bincount(np.asarray(data.y_train).astype(np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def train_groups(groups, data, seed, stop, divergence_threshold, objective, progress) -> dict[int, dict]:
    """Trains every chunk of every group; returns per-trial records of metrics by epoch."""
    train = Split(jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    val = Split(jnp.asarray(data.x_val), jnp.asarray(data.y_val))
    limit = math.inf if divergence_threshold is None else divergence_threshold * baseline_loss(data)
    controls = Controls(
        divergence_limit=jnp.float32(limit),
        patience=jnp.int32(stop["patience"] if stop else 0),
        min_delta=jnp.float32(stop["min_delta"] if stop else 0.0),
        y_std=jnp.float32(data.y_std),
    )
    work = [(g, chunk) for g in groups for chunk in g.chunks]
    total = sum(max(t.params["epochs"] for t in chunk) for _, chunk in work)
    bar = _progress_bar(total, progress)
    best = None
    sign = 1.0 if direction(objective) == "minimize" else -1.0
    records: dict[int, dict] = {}
    try:
        for group, chunk in work:
            epoch_fn = make_train_epoch(group.structure, stop["metric"] if stop else None)
            numbers = np.full(group.chunk_size, PADDING, np.int64)
            numbers[: len(chunk)] = [t.number for t in chunk]
            pop = init_population(
                group.structure, stack_hparams([t.params for t in chunk], group.chunk_size), numbers, seed
            )
            history = []
            max_epochs = max(t.params["epochs"] for t in chunk)
            for epoch in range(max_epochs):
                order_key = keys.batch_order_key(seed, epoch, group.structure.batch_size)
                pop, metrics = epoch_fn(pop, train, val, order_key, controls)
                metrics = jax.device_get(metrics)
                history.append(metrics)
                value = metrics[objective][metrics["trained"] & ~metrics["diverged"]]
                if value.size and np.isfinite(value).any():
                    candidate = sign * np.nanmin(sign * value)
                    best = candidate if best is None or sign * candidate < sign * best else best
                if bar is not None:
                    bar.set_postfix_str(f"{group.structure.label()} | best {objective} {best:.4f}" if best is not None else "")
                    bar.update(1)
                if not np.asarray(pop.active).any():
                    if bar is not None:
                        bar.update(max_epochs - epoch - 1)
                    break
            records.update(_chunk_records(chunk, history))
    finally:
        if bar is not None:
            bar.close()
    return records


def _chunk_records(chunk, history) -> dict[int, dict]:
    """Per-trial metric curves over the epochs each member trained."""
    names = [m for m in history[0] if m not in ("trained", "diverged")]
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

    return tqdm(total=total, unit="epoch", dynamic_ncols=True)


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
