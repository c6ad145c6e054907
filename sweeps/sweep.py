"""`sweeps.run`: from a data set and a search space to a finished sweep, and its run folder.

The path: `run(...)` gathers its keywords into a `SweepConfig` (`sweeps/settings.py`, checked when
made) and the machine's `Resources`; `plan()` checks them against the data (`sweeps/planning.py`);
the scheduler asks the strategy for each round and trains it (`sweeps/driver/scheduler.py`); this
module claims the run folder, assembles the `Result` (table, history, config with versions and
timings) and writes it. `dry_run(...)` plans the first round and trains nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sweeps.data import Dataset
from sweeps.driver import checkpoints as checkpoints_lib
from sweeps.driver import distributed, resuming, run_folder, run_lock
from sweeps.driver.compiling import compile_log
from sweeps.driver.rounds import first_round
from sweeps.driver.scheduler import Scheduler
from sweeps.engine.metrics import Metric
from sweeps.planning.planner import Plan, Round, plan
from sweeps.results import trained
from sweeps.results.result import Result, build_frames, disk_full_at_the_end, load_result, write_run_folder
from sweeps.settings import Resources, SweepConfig
from sweeps.strategies import Strategy
from sweeps.tracking.callbacks import Callback, SweepStart, check_callbacks, new_run_id, run_id_of

EPOCH_PROGRAM = "jit(train_epoch)"  # the compiled epoch's name in JAX's compile log


def run(
    data: Dataset,
    *,
    model: Any = None,
    loss: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    metrics: Mapping[str, Metric] | None = None,
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
    init: str = "shared",
    fuse: bool = True,
    kernel: str = "xla",
    precision: str = "float32",
    devices: int | list[int] | None = None,
    run_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 2,
    keep_models: int = 5,
    plots: bool = True,
    resume: bool | str | Path = False,
    overwrite: bool = False,
    progress: bool = False,
    callbacks: Sequence[Callback] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Result:
    """Trains every trial of a sweep, each structure group as one vectorized program.

    Args:
      data: a `Dataset` from `sweeps.load_csv` (or `Dataset.from_arrays`).
      model: the network every trial trains: the built-in `MLP(hidden=(64,), activation="relu")` (the default),
        your own Flax Linen module, or what builds your Flax NNX module from `rngs=` (its class, or
        `functools.partial(Net, ...)`): README, "Your own model".
        `hidden` and `activation` may also be swept in `space`.
      loss: your own per-example loss, `loss(outputs, targets) -> (batch,)`: one member's raw model outputs
        (batch, outputs) and the targets (batch,) as the model trains on them (0.0/1.0; integer classes; a
        regression target standardized) to one loss per row, in `jax.numpy`. It replaces the task's loss
        (`models.losses`) in training (weighted by the minibatch's row weights), in the divergence check and
        as `val_loss`. None (default): the task's.
      metrics: your own validation metrics, name -> `sweeps.Metric(fn, "maximize" | "minimize")`, `fn(outputs,
        targets) -> ()` over the validation split's rows: computed inside the compiled epoch beside the task's and
        recorded as `val_<name>` (history, table columns `best_val_<name>` and `final_val_<name>`); the objective
        and early stopping may name them, in their Metric's direction. Names are Python identifiers other than
        the task's metrics (loss, accuracy, auc, rmse, mae). A loss that does not return (batch,) or a metric
        that does not return () is refused before anything compiles.
      space: hyperparameter name -> axis (`space.loguniform(...)`, a list of values, or one value).
        Names: see `sweeps.engine.hparams.HPARAMS`.
      strategy: `Grid(n=...)`, `Random(n=..., seed=...)`, `QuasiRandom(n=..., seed=...)` or
        `Bayes(rounds=..., per_round=..., sampler="tpe", seed=...)` (rounds: asked, trained, told,
        until it stops; the table's `round` column); default `Grid()`.
      optimizer, epochs, batch_size: defaults for trials whose space does not set them.
      seeds: initialisations per configuration (trials = configurations x seeds).
      seed: the sweep seed: initialisations, dropout masks and minibatch order derive from it.
      init: "shared" (default): a trial's initialisation and dropout keys come from (seed, seed index),
        common random numbers, so configurations with the same seed index start from the same weights
        and see the same dropout masks, and trials differ only by their hyperparameters; `seeds=k` gives
        k initialisations shared by every configuration. "per_trial": keys from (seed, trial number).
      fuse: True (default): members whose built-in MLPs differ in hidden widths or depth, or whose batch sizes
        differ, train in one compiled program (padded and masked, exact) where the planner's cost model says it
        pays; False keeps one program per structure. A resumed run needs the value it started with.
      kernel: "xla" (default): each minibatch step is XLA's program; "pallas": the built-in MLP's members train
        in a Pallas kernel that keeps their parameters and optimizer state on chip for the whole epoch
        (`sweeps.engine.kernel`; the same members to float rounding). Structures it does not take (dropout,
        gradient clipping or accumulation, a user's model or loss, several devices) train on the XLA path, with
        a warning; on a CPU the kernel runs in Pallas's interpreter, slowly (for testing). A resumed run needs the
        value it started with.
      precision: "float32" (default), or "bfloat16": mixed precision, the model's matrix products and activations
        in bfloat16 on float32 master weights and optimizer state, outputs cast to float32 before the loss and
        the metrics (`sweeps.engine.precision`; its effect on the best trial and on speed: benchmarks/README.md,
        "Mixed precision"). Part of the compiled program's key; a resumed run needs the value it started with.
      objective: the metric that picks each trial's best epoch and the best trial
        (`val_loss`, `val_accuracy`, `val_auc`, `val_rmse`, `val_mae`, `train_loss`, or `val_<name>` of one of
        your `metrics`).
      early_stopping: `{"metric": "val_loss", "patience": 5, "min_delta": 0.0}` stops a member
        whose metric has not improved for `patience` epochs.
      max_population: the most members trained at once; larger groups are chunked.
      divergence_threshold: a member whose epoch train loss exceeds this many times the loss the
        model starts from (`sweeps.driver.populations.baseline_loss`: that of zero outputs, never below predicting
        the training prior; with your own `loss`, its value at zero outputs), or is not finite, is frozen and
        marked `diverged`; None keeps only the non-finite test.
      devices: the devices every population is split over: None (default) for every device JAX sees
        (every process's, after `jax.distributed.initialize()`), a count (the first of each process's),
        or a list of device ids. Populations are padded to a multiple of the count (padding never
        reaches the table); the memory budget is per device; the table does not depend on the count.
      run_dir: where to write the run folder (config, table, history, plots, checkpoints, the kept
        models, and last `finished.json`); None writes nothing. A folder that holds a run is refused unless
        `resume` or `overwrite`; a folder holding files sweepax did not write is refused (named), and one
        that another process runs in (`run_lock.RunLock`: its pid and host are named).
      checkpoint_every: save a checkpoint every this many epochs; None (default) saves at least every
        60 seconds of training. A checkpoint is also saved at the end of every chunk and round.
      keep_checkpoints: how many checkpoints to keep, the newest.
      keep_models: the best trials whose best-epoch parameters are saved in `run_dir/models`
        (`sweeps.load_model`); 0 keeps none.
      plots: draw the plots into `run_dir/plots` when the run ends (matplotlib's time, not the sweep's);
        False leaves them out (a script that runs many sweeps), and `sweeps report RUN_DIR` draws them later.
      resume: True continues the run in `run_dir` from its newest checkpoint (the same settings and
        data are required; a finished run is returned as it is; a run stopped during its final write gets
        its results written). A path forks: a new run in `run_dir` starts from that run's newest checkpoint
        under these settings (which must keep its trials: early stopping, divergence threshold, seed may
        change). A new run never restores a checkpoint, and a resumed one only its own or its fork's.
      overwrite: replace a run already in `run_dir` (what its run.json lists as written is removed first,
        nothing else).
      progress: show a progress bar.
      callbacks: `sweeps.Callback`s told of the sweep as it trains (in the main thread, between epochs): each
        trial's start, every epoch's metrics of every member by trial number, each trial's end, the result
        (`sweeps.tracking.callbacks`); the trackers `sweeps.MLflowTracker` and `sweeps.TensorBoardTracker` are
        such callbacks. A callback that raises is reported, disabled for the rest of the run and listed in
        config.json under "callbacks"; the sweep goes on. A plain function is called with every `sweeps.EpochEnd`.
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

      Your own loss, and a metric of your own as the objective:

      >>> import jax.numpy as jnp, optax
      >>> def weighted_bce(outputs, y):  # positives count 3 times
      ...     return optax.sigmoid_binary_cross_entropy(outputs[:, 0], y) * (1.0 + 2.0 * y)
      >>> def recall(outputs, y):
      ...     return jnp.sum((outputs[:, 0] > 0) & (y > 0.5)) / jnp.maximum(jnp.sum(y > 0.5), 1)
      >>> result = sweeps.run(data, space={"learning_rate": [1e-3, 1e-2]}, loss=weighted_bce,
      ...                     metrics={"recall": sweeps.Metric(recall, "maximize")},
      ...                     objective="val_recall")  # doctest: +SKIP
    """
    config = SweepConfig(
        model=model,
        loss=loss,
        metrics=metrics,
        space=space or {},
        strategy=strategy,
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        seeds=seeds,
        seed=seed,
        objective=objective,
        early_stopping=early_stopping,
        max_population=max_population,
        divergence_threshold=divergence_threshold,
        init=init,
        fuse=fuse,
        kernel=kernel,
        precision=precision,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        keep_models=keep_models,
        plots=plots,
    )
    return execute(
        config,
        data,
        Resources.detect(devices),
        run_dir=run_dir,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        callbacks=callbacks,
        metadata=metadata,
    )


def dry_run(data: Dataset, *, memory_budget: int | None = None, devices: Any = None, **settings: Any) -> Round:
    """The first round a `run` with these keywords would train, planned: nothing compiles or trains.

    Takes `run`'s settings keywords (model, space, strategy, optimizer, epochs, ...) and `devices`, and
    `memory_budget` (bytes per device; default half of each device's free memory). The strategy is asked
    on a copy (`sweeps.driver.scheduler.first_round`), so the one passed in is left unchanged.

    Examples:
      >>> import sweeps
      >>> data = sweeps.load_csv("data/telco_customer_churn.csv", target="Churn")  # doctest: +SKIP
      >>> print(sweeps.dry_run(data, space={"learning_rate": [1e-3, 1e-2]}).describe())  # doctest: +SKIP
    """
    resources = Resources.detect(devices, memory_budget)
    return first_round(plan(SweepConfig(**settings), data, resources))


def execute(
    config: SweepConfig,
    data: Dataset,
    resources: Resources | None = None,
    *,
    run_dir: str | Path | None = None,
    resume: bool | str | Path = False,
    overwrite: bool = False,
    progress: bool = False,
    callbacks: Sequence[Callback] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Result:
    """Trains a sweep to its end and assembles the result; the arguments: see `run`.

    With a run folder, this process (process 0 of several) holds the folder's lock
    (`run_lock.RunLock`) from claiming it to its final write, and lets it go however the run ends.
    """
    lock = run_lock.RunLock(run_dir) if run_dir is not None else None
    try:
        return _execute(
            config,
            data,
            Resources.detect() if resources is None else resources,
            lock=lock,
            run_dir=run_dir,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            callbacks=check_callbacks(callbacks),
            metadata=metadata,
        )
    finally:
        if lock is not None:
            lock.release()


def _execute(
    config: SweepConfig,
    data: Dataset,
    resources: Resources,
    *,
    lock: run_lock.RunLock | None,
    run_dir: str | Path | None,
    resume: bool | str | Path,
    overwrite: bool,
    progress: bool,
    callbacks: list[Callback],
    metadata: Mapping[str, Any] | None,
) -> Result:
    started = time.perf_counter()
    check_run_options(run_dir, resume, overwrite)
    sweep_plan = plan(config, data, resources)
    settings_now = describe(sweep_plan)
    fingerprints = {
        "settings": run_folder.fingerprint(resuming.comparable(settings_now)),
        "data": run_folder.data_fingerprint(data),
    }
    checkpoints = restores = None  # restores: whose checkpoints this run may continue (None: a new run, none)
    run_id = new_run_id()
    if run_dir is not None:
        run_dir = Path(run_dir)
        manifest = resuming.open_run_folder(
            run_dir, resume, overwrite, lock, settings_now, fingerprints, resources, metadata
        )
        if manifest is None:  # resumed, and it had finished
            return load_result(run_dir)
        fingerprints = manifest["fingerprints"]  # the run's own, as its checkpoints record them
        run_id = run_id_of(manifest)  # a resumed run's own: its callbacks' trackers find their runs by it
        restores = manifest.get("restores", [fingerprints])
        # plan the chunks as the run first did: with the memory budget, lanes and cache it recorded
        resources = resources.planned_as(manifest["resources"])
        sweep_plan = plan(config, data, resources)
        checkpoints = checkpoints_lib.Checkpoints(run_dir, keep=config.keep_checkpoints, every=config.checkpoint_every)
    sweep = SweepStart(
        run_id,
        run_dir,
        settings_now,
        tuple(config.space),
        config.objective,
        config.direction(config.objective),
        resumed=resume is True,
    )
    scheduler = Scheduler(
        sweep_plan,
        progress and distributed.is_writer(),
        checkpoints=checkpoints,
        fingerprints=fingerprints,
        restores=restores,
        keep_models=config.keep_models if run_dir is not None else 0,
        callbacks=callbacks if distributed.is_writer() else [],
        sweep=sweep,
    )
    try:
        with compile_log() as compiled:
            records = scheduler.run()
    except BaseException:
        scheduler.callbacks.end(None)  # stopped before its end: the trackers flush what they hold
        raise
    finally:
        if checkpoints is not None:
            checkpoints.close()
    trials = scheduler.trials
    table, history = build_frames(
        [dataclasses.asdict(t) for t in trials],
        list(scheduler.swept),
        records.by_trial(),
        config.objective,
        scheduler.state.pruned,
        config.directions,
    )
    result_config = {
        "run_id": run_id,
        **settings_now,
        "groups": scheduler.rounds[0].table().to_dict(orient="records"),
        "rounds": len(scheduler.rounds),
        "wall_s": round(time.perf_counter() - started, 3),
        "compilations": compiled.count(EPOCH_PROGRAM),
        "compile_s": round(compiled.seconds(), 3),
        "compile_by_structure": scheduler.programs.times.by_structure(),
        **({"steps_by_structure": scheduler.programs.steps()} if config.kernel != "xla" else {}),
        "lanes": scheduler.lanes,  # the most work items trained side by side (1: one at a time)
        "resources": resources.record(),  # what the chunks were planned for
        "run": config.run_options(),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "devices": resources.devices.summary(),
        **dict(metadata or {}),
    }
    if scheduler.callbacks.failures:
        result_config["callbacks"] = scheduler.callbacks.failures
    result = Result(table=table, history=history, config=result_config)
    if run_dir is not None:
        # every process takes part in orbax's saves (process 0 writes); process 0 alone writes the other files
        try:
            models = trained.save_models(
                run_dir / trained.FOLDER, scheduler.state.kept, trials, data, result, config.module
            )
        except Exception as e:
            if checkpoints_lib.disk_full(e):
                raise disk_full_at_the_end(run_dir) from e
            raise
        result.config["models"] = models
        distributed.barrier("sweeps: models saved")
        test = trained.test_metrics(run_dir / trained.FOLDER, data, config.module, config.loss, config.own_metrics)
        if test is not None:
            result.config["test_metrics"] = test
        ensemble = trained.ensemble_metrics(
            run_dir / trained.FOLDER, data, config.module, config.loss, config.own_metrics
        )
        if ensemble is not None:  # the top saved trials averaged, beside the best one (validation chose them both)
            result.config["ensemble"] = ensemble
        if distributed.is_writer():
            write_run_folder(result, run_dir, plots=config.plots)
        distributed.barrier("sweeps: run folder written")
    scheduler.callbacks.end(result)
    return result


def describe(sweep_plan: Plan) -> dict[str, Any]:
    """The settings that decide a sweep's results, as config.json records them (and resume compares)."""
    data = sweep_plan.data
    return {
        "data": {
            "source": str(data.source),
            "target": data.target,
            "task": data.task,
            "rows": {"train": data.n_train, "val": int(data.x_val.shape[0]), "test": int(data.x_test.shape[0])},
            "features": data.n_features,
            "majority_class_fraction": data.majority_class_fraction,
            "baseline_val_rmse": baseline_rmse(data),
            "preprocessing": list(data.preprocessing),
        },
        **sweep_plan.config.record(),
    }


def baseline_rmse(data: Dataset) -> float | None:
    """Regression: the validation RMSE of always predicting the training mean, in the target's units."""
    if data.task != "regression":
        return None
    y_train, y_val = np.asarray(data.y_train, np.float64), np.asarray(data.y_val, np.float64)
    return float(np.sqrt(np.mean((y_val - y_train.mean()) ** 2)) * data.y_std)


def check_run_options(run_dir, resume, overwrite) -> None:
    """The run-folder arguments of `run`, refused with the rule and the value before anything trains."""
    if resume is not False and run_dir is None:
        raise ValueError("resume needs run_dir: the folder of the run to continue (or, with resume=PATH, the new one)")
    if resume is True and overwrite:
        raise ValueError("resume=True continues the run in run_dir and overwrite=True would erase it: pass one")
    if not isinstance(resume, bool) and not Path(resume).is_dir():
        raise ValueError(f"resume={str(resume)!r}: no such run folder to fork from; pass True or a run folder")


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
