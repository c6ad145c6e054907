"""`sweeps.run`: from a data set and a search space to a finished sweep, and its run folder.

The path: `plan()` checks every argument and plans the first round
(`sweeps/planning.py`); the sweep loop trains every round (`sweeps/loop.py`);
this module assembles the `Result` (table, history, config with versions
and timings) and writes the run folder.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from models import MLP
from sweeps.data import Dataset
from sweeps.engine.compiles import compile_log
from sweeps.engine.metrics import direction
from sweeps.loop import SweepLoop
from sweeps.planning import Plan, plan
from sweeps.results import Result, build_frames
from sweeps.space import axis_to_config
from sweeps.strategies import Strategy

EPOCH_PROGRAM = "jit(train_epoch)"  # the compiled epoch's name in JAX's compile log


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
        Names: see `sweeps.engine.hparams.HPARAMS`.
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
    model = MLP() if model is None else model
    sweep_plan = plan(
        data,
        model=model,
        space=space,
        strategy=strategy,
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        seeds=seeds,
        objective=objective,
        early_stopping=early_stopping,
        max_population=max_population,
        divergence_threshold=divergence_threshold,
    )
    return execute(sweep_plan, data, seed=seed, run_dir=run_dir, progress=progress, metadata=metadata)


def execute(
    sweep_plan: Plan,
    data: Dataset,
    *,
    seed: int = 0,
    run_dir: str | Path | None = None,
    progress: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> Result:
    """Trains a planned sweep (`sweeps.plan`) to its end and assembles the result; see `run`."""
    started = time.perf_counter()
    if run_dir is not None:
        _prepare_run_dir(Path(run_dir))  # fail now, not after the training it would have to hold
    loop = SweepLoop(sweep_plan, data, seed, progress)
    with compile_log() as compiled:
        records = loop.run()
    settings = sweep_plan.settings
    table, history = build_frames(
        [dataclasses.asdict(t) for t in loop.trials], list(loop.swept), records.by_trial(), settings.objective
    )
    config = {
        "data": {
            "source": str(data.source),
            "target": data.target,
            "task": data.task,
            "rows": {"train": data.n_train, "val": int(data.x_val.shape[0]), "test": int(data.x_test.shape[0])},
            "features": data.n_features,
            "majority_class_fraction": data.majority_class_fraction,
            "preprocessing": list(data.preprocessing),
        },
        "model": {"hidden": list(settings.model.hidden), "activation": settings.model.activation},
        "space": {name: axis_to_config(axis) for name, axis in settings.space.items()},
        "strategy": _strategy_config(settings.strategy),
        **settings.defaults_config(),
        "seed": seed,
        "objective": settings.objective,
        "direction": direction(settings.objective),
        "early_stopping": dict(settings.early_stopping) if settings.early_stopping else None,
        "max_population": settings.max_population,
        "divergence_threshold": settings.divergence_threshold,
        "groups": sweep_plan.table().to_dict(orient="records"),
        "rounds": len(loop.rounds),
        "wall_s": round(time.perf_counter() - started, 3),
        "compilations": compiled.count(EPOCH_PROGRAM),
        "compile_s": round(compiled.seconds(), 3),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        **dict(metadata or {}),
    }
    result = Result(table=table, history=history, config=config)
    if run_dir is not None:
        write_run_folder(result, run_dir)
    return result


def _strategy_config(strategy: Strategy) -> dict[str, Any]:
    return {
        "name": type(strategy).__name__.lower(),
        **(dataclasses.asdict(strategy) if dataclasses.is_dataclass(strategy) else {}),
    }


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
