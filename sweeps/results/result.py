"""The results of a sweep: the trial table, the long history, and the run folder.

`result.table` has one row per trial, in Optuna's words where they fit:
`number`, `round` (the strategy's round that asked for it, from 0),
`config` (its configuration's index), `seed` (which initialisation of its
configuration), `params_<name>` for each swept hyperparameter, `state` (`complete` or `diverged`),
`epochs` (epochs trained), `stopped_early` (early stopping ended it
before its epoch budget), `best_epoch` (1-based, best objective), `value`
(the objective at `best_epoch`), and for each metric `m` of the task
(`train_loss`, `val_loss`, `val_accuracy`, `val_auc`, `val_rmse`, `val_mae`,
and `val_<name>` of each of the user's own metrics) two columns: `final_<m>` at the last epoch trained and `best_<m>` at
`best_epoch` (the metrics of the restored best epoch).

`result.history` is long: `trial`, `epoch`, `split`, `metric`, `value`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sweeps.driver import checkpoints as checkpoints_lib
from sweeps.driver import run_folder, run_lock
from sweeps.driver.evidence import DamagedRunFolder, check_result, reason
from sweeps.engine.hparams import HPARAMS, reads
from sweeps.engine.metrics import direction

TABLE_FILES = ("table.parquet", "table.csv")
HISTORY_ONLY = ("lineage",)  # per-epoch parents (PBT): history only; hparam_<name> also gets best_/final_ columns
HISTORY_FILES = ("history.parquet", "history.csv")
CONFIG_FILE = "config.json"
# A learning rate this small cannot blow up, within one epoch, the loss a model on data of unit scale starts from.
SMALL_LEARNING_RATE = 1e-4


@dataclasses.dataclass
class Result:
    """A finished (or loaded) sweep.

    Attributes:
      table: one row per trial (see the module docstring for the columns).
      history: long: trial, epoch, split, metric, value.
      config: the resolved configuration, with versions and timings.
      run_dir: the folder it was written to, or None.
    """

    table: pd.DataFrame
    history: pd.DataFrame
    config: dict[str, Any]
    run_dir: Path | None = None

    @property
    def objective(self) -> str:
        return self.config.get("objective", "val_loss")

    @property
    def direction(self) -> str:
        """The objective's direction, "minimize" or "maximize"."""
        return self.direction_of(self.objective)

    def direction_of(self, metric: str) -> str:
        """Which way `metric` is better: a user's metric as config.json records its `sweeps.Metric`, the task's by
        name (`sweeps.engine.metrics.direction`)."""
        return direction(metric, recorded_directions(self.config))

    def best(self, metric: str | None = None) -> pd.Series:
        """The best complete trial by `metric` (default: the objective) at its best epoch.

        With several seeds per configuration (`seeds > 1`), the best *configuration* is chosen first,
        by its mean over its seeds (configurations none of whose seeds diverged come first), and the
        row returned is that configuration's best seed: one lucky initialisation does not decide.

        Raises:
          ValueError: when no trial completed (all diverged), or the metric is unknown.
        """
        metric = metric or self.objective
        column = f"best_{metric}"
        if column not in self.table:
            known = [c[len("best_") :] for c in self.table.columns if c.startswith("best_") and c != "best_epoch"]
            raise ValueError(f"metric {metric!r} is not in this sweep's table; choose one of {known}")
        complete = self.table[(self.table["state"] == "complete") & self.table[column].notna()]
        if complete.empty:
            raise ValueError(no_trial_completed(self.table))
        ascending = self.direction_of(metric) == "minimize"
        if "seed" in self.table and self.table["seed"].nunique() > 1:
            by_config = self.table.groupby("config", sort=True)
            ranking = pd.DataFrame(
                {
                    "mean": by_config[column].mean(),
                    "diverged": by_config["state"].apply(lambda s: (s != "complete").any()),
                }
            ).dropna(subset=["mean"])
            ranking = ranking.sort_values(["diverged", "mean"], ascending=[True, ascending], kind="stable")
            complete = complete[complete["config"] == ranking.index[0]]
        return complete.sort_values(column, ascending=ascending, kind="stable").iloc[0]

    @property
    def best_params(self) -> dict[str, Any]:
        """The best trial's swept hyperparameters, as in Optuna's `study.best_params` (with seeds > 1,
        the configuration with the best mean over its seeds: see `best`)."""
        row = self.best()
        return {c[len("params_") :]: row[c] for c in self.table.columns if c.startswith("params_")}

    @property
    def best_value(self) -> float:
        return float(self.best()["value"])

    def summary(self) -> pd.DataFrame:
        """One row per configuration: the mean and standard deviation over its seeds of every metric."""
        params = [c for c in self.table.columns if c.startswith("params_")]
        metrics = [c for c in self.table.columns if c.startswith(("best_", "final_")) or c == "value"]
        grouped = self.table.groupby("config", sort=True)
        out = grouped[params].first() if params else pd.DataFrame(index=grouped.size().index)
        out["seeds"] = grouped.size()
        out["diverged"] = grouped["state"].apply(lambda s: int((s == "diverged").sum()))
        stats = grouped[metrics].agg(["mean", "std"])
        stats.columns = [f"{col}_{stat}" for col, stat in stats.columns]
        out = out.join(stats)
        return (
            out.assign(_diverged=out["diverged"] > 0)
            .sort_values(["_diverged", "value_mean"], ascending=[True, self.direction == "minimize"], kind="stable")
            .drop(columns="_diverged")
            .reset_index()
        )

    def top(self, k: int = 5) -> pd.DataFrame:
        """The k best trials, best first (diverged last), with the columns a reader wants first."""
        order = self.table.assign(_diverged=self.table["state"] != "complete").sort_values(
            ["_diverged", "value"], ascending=[True, self.direction == "minimize"], kind="stable"
        )
        params = [c for c in self.table.columns if c.startswith("params_")]
        shown = ["number", *params, "state", "best_epoch", "value"]
        shown += [c for c in self.table.columns if c.startswith("best_") and c not in shown and c != "best_epoch"]
        return order[shown].head(k).reset_index(drop=True)

    def to_tensorboard(self, logdir: str | Path | None = None) -> Path:
        """Writes the sweep for TensorBoard's HParams dashboard (`sweeps.TensorBoardTracker`, replaying the table and
        the history): the experiment at the root of `logdir`, one folder per trial with its hyperparameters, its
        metrics at every epoch and its end status. Exporting again into the same logdir (or into the one the run
        wrote as it trained) adds nothing; a logdir of another run is refused. Needs the extra:
        `pip install "sweepax[tensorboard]"`.

        Args:
          logdir: the folder to write (`tensorboard --logdir LOGDIR`); None: the run folder's `tensorboard`.

        Returns:
          The logdir.

        Raises:
          RuntimeError: the export failed (the logdir holds another run, the disk is full...): the message says why.

        Examples:
          >>> result = sweeps.load_result("runs/lr")  # doctest: +SKIP
          >>> result.to_tensorboard("runs/lr/tensorboard")  # doctest: +SKIP
          PosixPath('runs/lr/tensorboard')
          >>> # tensorboard --logdir runs/lr/tensorboard, then the HParams tab
        """
        from sweeps.tracking.tensorboard_tracker import export

        if logdir is None and self.run_dir is None:
            raise ValueError("this result has no run folder: pass to_tensorboard(logdir) the folder to write")
        return export(self, Path(self.run_dir) / "tensorboard" if logdir is None else logdir)

    def to_optuna(self, storage: str, study_name: str | None = None):
        """Writes every trial into an Optuna storage, for optuna-dashboard and Optuna's plots.

        Each trial gets its distributions and params, one intermediate value per epoch (the
        objective), its value, its state (complete; diverged as failed) and user attributes (seed,
        best epoch, round, every metric). Needs the extra: `pip install "sweepax[bayes]"`.

        Args:
          storage: an Optuna storage URL, e.g. "sqlite:///runs/lr/optuna.db".
          study_name: default the run folder's name, else "sweepax"; a name the storage holds is refused.

        Returns:
          The `optuna.Study`.

        Examples:
          >>> result = sweeps.load_result("runs/lr")  # doctest: +SKIP
          >>> study = result.to_optuna("sqlite:///runs/lr/optuna.db")  # doctest: +SKIP
          >>> study.best_params == result.best_params  # doctest: +SKIP
          True
        """
        from sweeps.strategies.optuna_bridge import export

        return export(self, storage, study_name)

    def to_mlflow(self, tracking_uri: str | None = None, experiment: str | None = None):
        """Writes the sweep into MLflow: a parent run for the sweep (its settings as params, the best trial's
        metrics, config.json, table.csv and plots/ as artifacts) and a child run per trial (its params, tags,
        every epoch's metrics with step = epoch, its status), through `sweeps.MLflowTracker` (whose docstring
        says what goes where). Exporting the same run again, or a run an `MLflowTracker` followed as it trained,
        updates those runs rather than making new ones. Needs the extra: `pip install "sweepax[mlflow]"`.

        Args:
          tracking_uri: e.g. "sqlite:///runs/mlflow.db" (its folder is created) or a server's
            "http://127.0.0.1:5000"; None: MLflow's default (`MLFLOW_TRACKING_URI`).
          experiment: the experiment's name; default the run folder's name, else "sweepax".

        Returns:
          `sweeps.tracking.MLflowRuns`: `experiment_id`, `parent_run_id`, and `trial_runs` (trial number -> its
          child run's id).

        Raises:
          RuntimeError: when MLflow refused a write (the message names the step and MLflow's error).

        Examples:
          >>> result = sweeps.load_result("runs/lr")  # doctest: +SKIP
          >>> runs = result.to_mlflow("sqlite:///runs/mlflow.db")  # doctest: +SKIP
          >>> runs.parent_run_id  # doctest: +SKIP
          '3f2a...'

          Then `mlflow ui --backend-store-uri sqlite:///runs/mlflow.db` shows experiment "lr".
        """
        from sweeps.tracking.mlflow_tracker import export

        return export(self, tracking_uri, experiment)

    def save(self, run_dir: str | Path) -> Path:
        """Writes config.json, the table and the history (Parquet and CSV) into `run_dir`, each file whole or
        not at all, then the `finished.json` marker that makes the folder a finished result."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        run_folder.write_json(run_dir / CONFIG_FILE, self.config, default=_jsonable)
        for frame, (parquet, csv) in ((self.table, TABLE_FILES), (self.history, HISTORY_FILES)):
            with run_folder.atomic_write(run_dir / parquet) as f:
                frame.to_parquet(f, index=False)
            with run_folder.atomic_write(run_dir / csv) as f:
                frame.to_csv(f, index=False)
        run_folder.mark_finished(run_dir)
        self.run_dir = run_dir
        return run_dir


def load_result(run_dir: str | Path) -> Result:
    """Reads a run folder written by `sweeps.run(..., run_dir=...)`.

    Every name it gives (the objective, metric and hyperparameter names, trial numbers) is checked to be
    one sweepax writes before anything uses it (`sweeps.driver.evidence.check_result`).

    Raises:
      ValueError: when the folder or one of its files is missing; `sweeps.driver.evidence.DamagedRunFolder` (a
        ValueError) when a file is damaged or holds a name sweepax never writes.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ValueError(f"{run_dir} does not exist; pass the folder of a finished run (e.g. runs/churn_lr)")
    if (run_dir / run_folder.MANIFEST).is_file() and not run_folder.is_finished(run_dir):
        raise ValueError(run_lock.unfinished_message(run_dir))
    needed = [CONFIG_FILE, TABLE_FILES[0], HISTORY_FILES[0]]
    missing = [name for name in needed if not (run_dir / name).is_file()]
    if missing:
        raise ValueError(
            f"{run_dir} is not a finished sweepax run folder: missing {', '.join(missing)}; "
            f"pass the run_dir of a sweeps.run call (or `sweeps run --out DIR`)"
        )
    try:
        config = json.loads((run_dir / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{run_dir / CONFIG_FILE} is damaged and cannot be read ({e}); the table and history are in "
            f"{run_dir / TABLE_FILES[1]} and {run_dir / HISTORY_FILES[1]}"
        ) from e
    table = _read_frame(run_dir / TABLE_FILES[0], run_dir / TABLE_FILES[1])
    history = _read_frame(run_dir / HISTORY_FILES[0], run_dir / HISTORY_FILES[1])
    check_result(config, table, history, run_dir)  # names read here build file names and labels later
    return Result(table=table, history=history, config=config, run_dir=run_dir)


def _read_frame(path: Path, csv_copy: Path) -> pd.DataFrame:
    """A Parquet file of a run folder; a damaged one is named, with its CSV copy."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as e:  # ArrowInvalid is a ValueError, ArrowIOError an OSError
        copy = f"its copy {csv_copy} may still be whole" if csv_copy.is_file() else f"{csv_copy} is missing too"
        raise DamagedRunFolder(
            f"{path} is damaged and cannot be read ({reason(e)}); {copy}; the run folder's checkpoints "
            f"and models/ are not affected"
        ) from e


def recorded_directions(config: Mapping[str, Any]) -> dict[str, str]:
    """The user's metrics' directions as config.json records them (`sweeps.engine.metrics.metrics_record`),
    name -> "maximize" or "minimize"; none for a run without metrics of its own."""
    return {name: entry["direction"] for name, entry in config.get("metrics", {}).items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to config.json")


def build_frames(
    trials: list[dict[str, Any]],
    swept: list[str],
    records: dict[int, dict[str, np.ndarray]],
    objective: str,
    pruned: Mapping[int, int] | None = None,
    own: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table and the history from per-trial records.

    Args:
      trials: one dict per trial: `number`, `config`, `seed`, `hparams` (resolved hyperparameters),
        `round` (default 0).
      swept: the hyperparameter names of the space, in order.
      records: trial number -> {"diverged": bool, metric name -> (epochs_trained,) values};
        `lineage_parent` (population based training) goes to the history only, and `hparam_<name>`
        (a hyperparameter that changed while training) also gives `best_hparam_<name>`, its value at
        the best epoch, and `final_hparam_<name>`.
      objective: the metric that picks `best_epoch`.
      pruned: trial number -> epochs trained when a strategy stopped it (state `pruned`).
      own: the user's metrics' directions, name -> "maximize" or "minimize" (`SweepConfig.directions`): the
        objective's direction when it is one of them.
    """
    pruned = pruned or {}
    sign = 1.0 if direction(objective, own) == "minimize" else -1.0
    rows, history = [], []
    for trial in trials:
        number = trial["number"]
        record = records[number]
        metric_names = [m for m in record if m != "diverged"]
        curve = record[objective]
        epochs = len(curve)
        row = {"number": number, "round": trial.get("round", 0), "config": trial["config"], "seed": trial["seed"]}
        used = reads(trial["hparams"])  # a conditional hyperparameter its optimizer and schedule ignore: empty
        row.update({f"params_{name}": _cell(trial["hparams"][name]) if name in used else None for name in swept})
        finite = np.isfinite(curve)
        best = int(np.argmin(np.where(finite, sign * curve, np.inf))) if finite.any() else None
        state = "diverged" if record["diverged"] else "pruned" if number in pruned else "complete"
        row.update(
            state=state,
            epochs=epochs,
            stopped_early=bool(state == "complete" and epochs < trial["hparams"]["epochs"]),
            best_epoch=best + 1 if best is not None else None,
            value=float(curve[best]) if best is not None else math.nan,
        )
        for m in metric_names:
            values = record[m]
            split, name = m.split("_", 1)
            if split not in HISTORY_ONLY:
                row[f"final_{m}"] = float(values[-1]) if epochs else math.nan
                row[f"best_{m}"] = float(values[best]) if best is not None else math.nan
            history.extend((number, e + 1, split, name, float(v)) for e, v in enumerate(values))
        rows.append(row)
    table = pd.DataFrame(rows)
    table["best_epoch"] = table["best_epoch"].astype("Int64")
    history = pd.DataFrame(history, columns=["trial", "epoch", "split", "metric", "value"])
    return table, history


def no_trial_completed(table: pd.DataFrame) -> str:
    """Why a sweep has no best trial, and what to try: lower learning rates only where that can help.

    Lowering them cannot help when the smallest learning rate tried is at most SMALL_LEARNING_RATE and
    its trials diverged in their first epoch: the divergence limit is a multiple of the loss the model
    starts from (`sweeps.driver.populations.baseline_loss`), and a step that small cannot multiply that loss within
    one epoch on data of unit scale, so the data's scale (or `init_scale`, or `divergence_threshold`) is
    the cause.
    """
    diverged = table[table["state"] == "diverged"]
    states = ", ".join(f"{n} {state}" for state, n in table["state"].value_counts().items())
    if diverged.empty:
        return f"no trial completed with a finite objective ({states})"
    column = "params_learning_rate"
    rates = diverged[column] if column in diverged else pd.Series(HPARAMS["learning_rate"].default, diverged.index)
    smallest = float(rates.min())
    tried = f"learning rate {smallest:.3g}"
    if rates.nunique() > 1:
        tried = f"learning rates {smallest:.3g} to {rates.max():.3g}"
    line = f"no trial completed ({states}; diverged at {tried})"
    if smallest <= SMALL_LEARNING_RATE and (diverged.loc[rates == smallest, "epochs"] <= 1).all():
        return (
            f"{line}: even learning rate {smallest:.3g} diverged in its first epoch, and a step that small cannot "
            "blow up the loss a model starts from, so lowering the learning rates will not help; check the data's "
            "scale (features, and a regression target, near mean 0 and std 1: load_csv standardizes both, "
            "Dataset.from_arrays the target only), then init_scale and divergence_threshold"
        )
    return f"{line}; lower the learning rates below {smallest:.3g} (the table's params_ columns show what was tried)"


def _cell(value: Any) -> Any:
    """A table cell: tuples (hidden layouts) become strings so Parquet keeps one type per column."""
    if isinstance(value, tuple):
        return str(list(value))
    return value


def write_run_folder(result: Result, run_dir: str | Path, plots: bool = True) -> Path:
    """Draws the result's plots (unless `plots` is False) and saves it into `run_dir`, each file whole or not at
    all, the `finished.json` marker last (`Result.save`): a run stopped before the marker is unfinished, and
    resuming it writes the results again from its newest checkpoint.

    When the folder cannot be written at the end anyway (a disk that filled up, permissions
    changed), the results go into a new temporary folder and the error names it: nothing
    computed is lost.
    """
    path = Path(run_dir)
    try:
        if plots:
            from sweeps.results.plots import plot_run  # matplotlib only when plots are drawn

            plot_run(result, path / "plots")
        result.save(path)
    except OSError as e:
        what = "the disk is full (no space left on device)" if checkpoints_lib.disk_full(e) else (e.strerror or e)
        again = f"free space (or fix the folder), then `sweeps resume {run_dir}` writes them there from its checkpoint"
        try:
            rescue = Path(tempfile.mkdtemp(prefix="sweepax-results-"))
            result.save(rescue)
        except OSError:
            raise ValueError(f"could not write the results into {run_dir}: {what}; {again}") from e
        raise ValueError(
            f"could not write the results into {run_dir}: {what}; they were saved in {rescue} instead (table, history, "
            f"config.json): copy them where you want them, or {again}"
        ) from e
    return path


def disk_full_at_the_end(run_dir: Path) -> ValueError:
    return ValueError(
        f"could not write the results into {run_dir}: the disk is full (no space left on device); its newest "
        f"checkpoint holds every trial's records and the kept models: free space, then `sweeps resume {run_dir}` "
        f"(API: resume=True) writes them"
    )
