"""MLflow, where sweepax meets it: a sweep as one parent run with one child run per trial, live or exported.

What goes where, in one MLflow experiment (by default named after the run folder, else "sweepax"):

- the parent run, named after the run folder: the sweep. Tags `sweepax.run_id` (the run's id: how a resume or a
  re-export finds it again), `sweepax.objective`, `sweepax.direction`, `sweepax.data_fingerprint`,
  `sweepax.settings_fingerprint`, `sweepax.run_dir`, `sweepax.status` (training, stopped, finished). Params: the
  settings, flattened (`epochs`, `batch_size`, `space.learning_rate.loguniform`, `data.rows.train`, ...). At the
  end: the best trial's metrics (`Result.best()`: `value`, `best_epoch`, `best_val_loss`, ...), tag
  `sweepax.best_trial`, and as artifacts `config.json`, `table.csv` and `plots/`.
- one child run per trial, "trial 12", tagged `mlflow.parentRunId` (the UI nests it under the parent). Params: its
  swept hyperparameters as the table's `params_` columns show them. Tags `sweepax.trial`, `sweepax.round`,
  `sweepax.config`, `sweepax.seed`, `sweepax.structure`, and when it ends `sweepax.state`. Metrics: every epoch's
  (`train_loss`, `val_loss`, ...; PBT's `hparam_<name>`) with step = the epoch; when it ends `value` (the objective
  at its best epoch) and `best_epoch`, at step 0. Status: FINISHED for a complete trial, KILLED for one a strategy
  pruned, FAILED for one that diverged.

Everything goes through `MlflowClient` with explicit run ids, never MLflow's fluent API (`mlflow.start_run`,
`mlflow.log_*`), whose active run is one per process; and in `log_batch` requests within MLflow's limits (1,000
metrics, 100 params, 100 tags, 1,000 entities in all), one request per child where its epochs fit.

Each (trial, epoch) is written once, across resumes and re-exports: a child's tag `sweepax.epochs_logged` says that
its epochs 1..n are written, and goes in the same `log_batch` as the last of them (MLflow writes a batch's metrics
before its tags: a write cut short between them can only repeat those epochs, never lose them). Epochs up to it are
skipped; an epoch past a gap (a killed process's unwritten buffer, which a resume does not deliver again) waits, and
the sweep's end writes the missing epochs from the result's history. The parent and the children are found by their
tags with one search each at the sweep's start, never one per trial.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sweeps.driver import run_folder
from sweeps.settings import SweepConfig
from sweeps.tracking.callbacks import Callback, EpochEnd, SweepStart, TrialEnd, TrialStart
from sweeps.tracking.callbacks import export as replay_into

INSTALL = 'pip install "sweepax[mlflow]"'
# MLflow's log_batch limits (REST API: "Request Limits"), and its longest param value and key.
MAX_METRICS = 1000
MAX_PARAMS = 100
MAX_TAGS = 100
MAX_ENTITIES = 1000
MAX_PARAM_VALUE = 6000
MAX_KEY = 250
SEARCH_PAGE = 50_000  # the most runs one search_runs page returns
FLUSH_PAUSE = 3.0  # a live flush waits at least this many times as long as the previous one took
# A child's status by the trial's state.
STATUS = {"complete": "FINISHED", "pruned": "KILLED", "diverged": "FAILED"}
# The settings that decide a sweep's results (config.json's other entries are facts of the run: timings, versions).
SETTINGS = ("data", "direction", *(f.name for f in dataclasses.fields(SweepConfig) if f.metadata["section"] != "run"))

RUN_ID = "sweepax.run_id"
TRIAL = "sweepax.trial"
EPOCHS_LOGGED = "sweepax.epochs_logged"
STATE = "sweepax.state"
SWEEP_STATUS = "sweepax.status"
PARENT = "mlflow.parentRunId"
EXPERIMENT_KIND = "mlflow.experimentKind"


def import_mlflow(what: str):
    """The `mlflow` module, or an ImportError that says `what` needs it and how to install it."""
    try:
        import mlflow
    except ImportError as e:
        raise ImportError(
            f"{what} needs MLflow, an optional extra of sweepax that is not installed: install it with {INSTALL}"
        ) from e
    return mlflow


@dataclasses.dataclass(frozen=True)
class MLflowRuns:
    """Where a sweep went in MLflow: the experiment, the parent run, and each trial's child run by trial number."""

    experiment_id: str
    parent_run_id: str
    trial_runs: Mapping[int, str]


@dataclasses.dataclass
class _Child:
    """A trial's child run and what this process knows of it."""

    run_id: str
    logged: int = 0  # epochs 1..logged are written (the run's EPOCHS_LOGGED tag)
    params: set[str] = dataclasses.field(default_factory=set)  # param keys the run has
    ended: bool = False  # its STATE tag is written
    status: str = "RUNNING"
    epochs: list[tuple[int, list]] = dataclasses.field(default_factory=list)  # buffered: (epoch, its Metrics)
    new_params: list = dataclasses.field(default_factory=list)  # buffered (name, value) params it lacks
    behind: bool = False  # an epoch came past a gap: the sweep's end writes the rest from the result

    @property
    def buffered_to(self) -> int:
        return self.epochs[-1][0] if self.epochs else self.logged


class MLflowTracker(Callback):
    """Writes a sweep into MLflow as it trains: a parent run for the sweep, a child run per trial (the module
    docstring says what goes where). Pass it to `sweeps.run(..., callbacks=[MLflowTracker(...)])`;
    `Result.to_mlflow` writes a finished sweep through the same class.

    A trial costs three requests whatever happens: its run made when it starts, its last epochs and its end in one
    `log_batch` when it ends, its status. In between, metrics are buffered and written at most every `flush_every`
    seconds, one `log_batch` per trial holding every epoch it buffered; and a flush waits at least FLUSH_PAUSE
    times as long as the previous one took, so flushing takes at most about a quarter of a long sweep's time
    however slow the store (a flush of 10,000 trials that takes four minutes is followed by twelve without one).

    A resumed run (`sweeps resume`) finds its parent by the run's id and its children by trial number, and goes on
    writing into them: nothing twice, nothing lost. A run stopped before its end (Ctrl-C, a signal, an error)
    writes what it holds and leaves its runs RUNNING, the parent tagged `sweepax.status` = "stopped": a resume
    continues them; at the end the parent is FINISHED and tagged "finished".

    Args:
      tracking_uri: where MLflow writes: "sqlite:///runs/mlflow.db" (its folder is created), a server's
        "http://127.0.0.1:5000", ...; None: MLflow's own default (`MLFLOW_TRACKING_URI`). The artifacts go to the
        experiment's artifact location (for a new experiment in a local database, MLflow's default: `mlruns/` in the
        current folder; a server keeps its own).
      experiment: the experiment's name; default the run folder's name, else "sweepax". Created when missing, tagged
        `mlflow.experimentKind` = "custom_model_development" (MLflow 3's UI then opens it on its training runs).
      flush_every: the most seconds buffered metrics wait while trials train.

    Raises:
      ImportError: MLflow is not installed (the message says how to install it).

    Examples:
      >>> import sweeps
      >>> tracker = sweeps.MLflowTracker("sqlite:///runs/mlflow.db")  # doctest: +SKIP
      >>> result = sweeps.run(data, space={"learning_rate": sweeps.space.loguniform(1e-4, 1e-1)},
      ...                     run_dir="runs/lr", callbacks=[tracker])  # doctest: +SKIP
      >>> tracker.runs.parent_run_id  # doctest: +SKIP
      '3f2a...'

      Then `mlflow ui --backend-store-uri sqlite:///runs/mlflow.db` shows experiment "lr": its parent run, and
      under it one run per trial.
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None, flush_every: float = 10.0):
        if not (isinstance(flush_every, int | float) and flush_every >= 0):
            raise ValueError(f"flush_every must be a number of seconds >= 0, but got {flush_every!r}")
        import_mlflow("MLflowTracker")
        from mlflow import MlflowClient

        _make_sqlite_folder(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        self.experiment, self.flush_every = experiment, float(flush_every)
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self._parent: Any = None  # the parent's mlflow Run when it existed before this sweep started
        self._children: dict[int, _Child] = {}
        self._flushed, self._pause = time.monotonic(), self.flush_every

    @property
    def runs(self) -> MLflowRuns:
        """The experiment, parent and child runs written to (known once the sweep has started)."""
        if self.parent_id is None:
            raise ValueError("MLflowTracker.runs is known once the sweep has started (sweeps.run or Result.to_mlflow)")
        trial_runs = {number: child.run_id for number, child in sorted(self._children.items())}
        return MLflowRuns(self.experiment_id, self.parent_id, trial_runs)

    # --- the events ------------------------------------------------------------------------

    def on_sweep_start(self, sweep: SweepStart) -> None:
        """The experiment (made when missing), the parent (found by the run's id, or made), and every child it
        already has (one search). A tracker given to a second sweep starts afresh."""
        self._parent, self._children = None, {}
        name = self.experiment or (Path(sweep.run_dir).name if sweep.run_dir is not None else "sweepax")
        self.experiment_id = self._experiment(name)
        found = self._search(f"tags.`{RUN_ID}` = '{sweep.run_id}'", limit=1)
        if found:
            self._parent = found[0]
            self.parent_id = self._parent.info.run_id
            if self._parent.data.tags.get(SWEEP_STATUS) != "finished":
                self.client.set_tag(self.parent_id, SWEEP_STATUS, "training")
        else:
            run_name = Path(sweep.run_dir).name if sweep.run_dir is not None else f"sweep {sweep.run_id[:8]}"
            self.parent_id = self.client.create_run(
                self.experiment_id, tags=parent_tags(sweep), run_name=run_name
            ).info.run_id
        have = set(self._parent.data.params) if self._parent is not None else set()
        params = [(k, v) for k, v in flat_settings(sweep.settings).items() if k not in have]
        self._log(self.parent_id, params=params)
        for run in self._search(f"tags.`{PARENT}` = '{self.parent_id}'"):
            tags = run.data.tags
            if TRIAL in tags and int(tags[TRIAL]) not in self._children:
                self._children[int(tags[TRIAL])] = _Child(
                    run.info.run_id,
                    logged=int(tags.get(EPOCHS_LOGGED, 0)),
                    params=set(run.data.params),
                    ended=STATE in tags,
                    status=run.info.status,
                )
        self._flushed = time.monotonic()

    def on_trial_start(self, trial: TrialStart) -> None:
        """The trial's child run, made unless the parent has it; its params buffered."""
        child = self._children.get(trial.number)
        if child is None:
            tags = {
                PARENT: self.parent_id,
                TRIAL: str(trial.number),
                "sweepax.round": str(trial.round),
                "sweepax.config": str(trial.config),
                "sweepax.seed": str(trial.seed),
                "sweepax.structure": trial.structure,
            }
            run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"trial {trial.number}")
            child = self._children[trial.number] = _Child(run.info.run_id)
        child.new_params = [(k, v) for k, v in trial.params.items() if k not in child.params]

    def on_epoch_end(self, epoch: EpochEnd) -> None:
        """Buffers each trial's metrics at step = its epoch (epochs written before: skipped); writes them all
        when `flush_every` seconds (or FLUSH_PAUSE times the last flush's) have passed since the last write."""
        now = _now_ms()
        for number, metrics in epoch.metrics.items():
            self._offer(self._children[number], int(metrics["epoch"]), metrics, now)
        if time.monotonic() - self._flushed >= self._pause:
            self._flush()

    def on_trial_end(self, trial: TrialEnd) -> None:
        """Writes the trial's buffered epochs with its state (tag), `value` and `best_epoch` (metrics), then its
        status: FINISHED (complete), KILLED (pruned by a strategy) or FAILED (diverged)."""
        child = self._children[trial.number]
        if child.ended:
            self._write(child)
        else:
            summary = {"value": trial.value}
            if trial.best_epoch is not None:
                summary["best_epoch"] = trial.best_epoch
            self._write(child, tags=[(STATE, trial.state)], summary=summary)
            child.ended = True
        if child.status != STATUS[trial.state]:
            with _no_run_links():
                self.client.set_terminated(child.run_id, STATUS[trial.state])
            child.status = STATUS[trial.state]

    def on_sweep_end(self, result: Any) -> None:
        """Writes what is buffered. With the finished `Result`: every epoch a child still lacks (from its history),
        the best trial's metrics on the parent, config.json, table.csv and plots/ as its artifacts; the parent
        FINISHED. Without one (stopped early): the runs stay RUNNING, the parent tagged "stopped"."""
        self._flush()
        if result is None:
            self.client.set_tag(self.parent_id, SWEEP_STATUS, "stopped")
            return
        self._catch_up(result)
        self._finish_parent(result)

    # --- writing ---------------------------------------------------------------------------

    def _offer(self, child: _Child, epoch: int, metrics: Mapping[str, float], timestamp: int) -> None:
        """One epoch's metrics for a child: skipped when written (or buffered) before; held back past a gap."""
        if epoch <= child.buffered_to:
            return
        if child.behind or epoch > child.buffered_to + 1:
            child.behind = True  # epochs before this one were never written: the end writes them from the history
            return
        from mlflow.entities import Metric

        values = [Metric(_key(k), float(v), timestamp, epoch) for k, v in metrics.items() if k != "epoch"]
        child.epochs.append((epoch, values))

    def _flush(self) -> None:
        start = time.monotonic()
        for child in self._children.values():
            if child.epochs or child.new_params:
                self._write(child)
        self._flushed = time.monotonic()
        self._pause = max(self.flush_every, FLUSH_PAUSE * (self._flushed - start))

    def _write(self, child: _Child, tags: Sequence[tuple[str, str]] = (), summary: Mapping[str, float] = ()) -> None:
        """A child's buffered params and epochs, with `tags` and `summary` metrics (step 0) in the last request."""
        from mlflow.entities import Metric

        extra = [Metric(k, float(v), _now_ms(), 0) for k, v in dict(summary).items()]
        self._log(child.run_id, params=child.new_params, epochs=child.epochs, tags=tags, metrics=extra, child=child)
        child.params.update(k for k, _ in child.new_params)
        child.new_params, child.epochs = [], []

    def _log(
        self,
        run_id: str,
        params: Iterable[tuple[str, Any]] = (),
        epochs: Sequence[tuple[int, list]] = (),
        tags: Iterable[tuple[str, str]] = (),
        metrics: Sequence[Any] = (),
        child: _Child | None = None,
    ) -> None:
        """`log_batch` requests within MLflow's limits; each that ends an epoch sets EPOCHS_LOGGED to it."""
        from mlflow.entities import Param, RunTag

        params = [Param(_key(k), _param_text(v)) for k, v in params]
        tags = [RunTag(k, str(v)) for k, v in tags]
        for batch_params, batch_metrics, batch_tags, last in log_batches(params, epochs, tags, metrics):
            if last is not None:
                batch_tags = [*batch_tags, RunTag(EPOCHS_LOGGED, str(last))]
            self.client.log_batch(run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)
            if child is not None and last is not None:
                child.logged = last

    def _catch_up(self, result: Any) -> None:
        """Trials whose child lacks epochs, its end or its status get them from the result: a killed process's
        unwritten buffer (a resume does not deliver those epochs again), a trial that ended while no tracker ran.
        Their events come from `replay` of those trials alone."""
        from sweeps.tracking.callbacks import replay

        table = result.table
        lagging = [
            number
            for number, epochs, state in zip(table["number"], table["epochs"], table["state"])
            if (child := self._children.get(int(number))) is None
            or child.logged < int(epochs)
            or not child.ended
            or child.status != STATUS[state]
        ]
        if not lagging:
            return
        for number in lagging:
            if number in self._children:
                self._children[number].behind = False  # its buffer is written: the history goes on from `logged`
        part = dataclasses.replace(
            result,
            table=table[table["number"].isin(lagging)],
            history=result.history[result.history["trial"].isin(lagging)],
        )
        failures = replay(part, [_TrialEvents(self)])
        if failures:
            raise RuntimeError(f"writing the trials a resume had not delivered failed: {failures[0]['error']}")

    def _finish_parent(self, result: Any) -> None:
        """The best trial's metrics (once), the run folder's files as artifacts, FINISHED."""
        from mlflow.entities import Metric

        tags = [(SWEEP_STATUS, "finished")]
        had = self._parent.data.metrics if self._parent is not None else {}
        try:
            best = result.best()
        except ValueError as e:  # no trial completed
            tags.append(("sweepax.best_trial", f"none: {e}"[:200]))
            metrics = []
        else:
            tags.append(("sweepax.best_trial", str(int(best["number"]))))
            names = ["value", *(c for c in best.index if c.startswith("best_"))]
            now = _now_ms()
            metrics = [Metric(_key(k), float(best[k]), now, 0) for k in names if k not in had and not _missing(best[k])]
        self._log(self.parent_id, tags=tags, metrics=metrics)
        self._artifacts(result)
        self.client.set_terminated(self.parent_id, "FINISHED")

    def _artifacts(self, result: Any) -> None:
        run_dir = Path(result.run_dir) if result.run_dir is not None else None
        if run_dir is not None and (run_dir / run_folder.CONFIG_FILE).is_file():
            for name in (run_folder.CONFIG_FILE, "table.csv"):
                if (run_dir / name).is_file():
                    self.client.log_artifact(self.parent_id, str(run_dir / name))
            if (run_dir / "plots").is_dir():
                self.client.log_artifacts(self.parent_id, str(run_dir / "plots"), "plots")
        else:  # a result never saved: its config and table as they are in memory
            self.client.log_dict(self.parent_id, json.loads(json.dumps(result.config, default=str)), "config.json")
            self.client.log_text(self.parent_id, result.table.to_csv(index=False), "table.csv")

    # --- finding -----------------------------------------------------------------------------

    def _experiment(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:  # tagged as model training: MLflow 3's UI opens it on its runs, not on traces
            return self.client.create_experiment(name, tags={EXPERIMENT_KIND: "custom_model_development"})
        if experiment.lifecycle_stage == "deleted":
            raise ValueError(
                f"MLflow experiment {name!r} (id {experiment.experiment_id}) is deleted: restore it "
                f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`) or pass another experiment="
            )
        return experiment.experiment_id

    def _search(self, filter_string: str, limit: int | None = None) -> list:
        """Every run of the experiment that `filter_string` matches, page by page."""
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string, max_results=limit or SEARCH_PAGE, page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token or (limit is not None and len(runs) >= limit):
                return runs


class _TrialEvents(Callback):
    """A tracker's trial events alone (`MLflowTracker._catch_up` replays some trials into a sweep in progress)."""

    def __init__(self, tracker: MLflowTracker):
        self.tracker = tracker

    def on_trial_start(self, trial: TrialStart) -> None:
        self.tracker.on_trial_start(trial)

    def on_epoch_end(self, epoch: EpochEnd) -> None:
        self.tracker.on_epoch_end(epoch)

    def on_trial_end(self, trial: TrialEnd) -> None:
        self.tracker.on_trial_end(trial)


def export(result: Any, tracking_uri: str | None = None, experiment: str | None = None) -> MLflowRuns:
    """`Result.to_mlflow`: the finished sweep delivered to an `MLflowTracker` (`sweeps.tracking.callbacks.replay`).

    Raises:
      RuntimeError: MLflow refused a write; the message names the event and MLflow's error.
    """
    tracker = MLflowTracker(tracking_uri, experiment)
    where = tracking_uri or "MLflow's default tracking URI"
    replay_into(result, tracker, f"MLflow ({where})")
    return tracker.runs


def log_batches(
    params: Sequence[Any], epochs: Sequence[tuple[int, list]], tags: Sequence[Any], metrics: Sequence[Any] = ()
) -> Iterator[tuple[list, list, list, int | None]]:
    """Cuts one run's writes into `log_batch` requests within MLflow's limits: (params, metrics, tags, the last
    epoch whose metrics are all in this or an earlier request, or None when this one completes no epoch).

    An epoch's metrics go in one request (unless it alone exceeds one: then the tag comes with its last part);
    params go in the first requests, `tags` and `metrics` (not an epoch's) in the last; one entity of each request
    that completes an epoch is left for the EPOCHS_LOGGED tag.

    Examples:
      >>> [(len(p), len(m), len(t), last) for p, m, t, last in log_batches([], [(1, [0] * 600), (2, [0] * 600)], ["t"])]
      [(0, 600, 0, 1), (0, 600, 1, 2)]
    """
    params, tags, metrics = list(params), list(tags), list(metrics)
    pending = collections.deque((epoch, list(values)) for epoch, values in epochs)
    while params or pending or tags or metrics:
        batch_params, params = params[:MAX_PARAMS], params[MAX_PARAMS:]
        room = min(MAX_METRICS, MAX_ENTITIES - len(batch_params) - 1)
        batch, last = [], None
        while pending:
            epoch, values = pending[0]
            if len(batch) + len(values) <= room:
                batch += values
                last = epoch
                pending.popleft()
            else:
                if not batch:  # one epoch larger than a request: its first part now
                    batch, pending[0] = values[:room], (epoch, values[room:])
                break
        if params or pending:
            yield batch_params, batch, [], last
            continue
        if len(tags) < MAX_TAGS and len(batch) + len(metrics) + len(tags) <= room:
            yield batch_params, batch + metrics, tags, last
            return
        if batch_params or batch:
            yield batch_params, batch, [], last
        while tags or metrics:
            batch_tags, tags = tags[:MAX_TAGS], tags[MAX_TAGS:]
            room = min(MAX_METRICS, MAX_ENTITIES - len(batch_tags))
            batch, metrics = metrics[:room], metrics[room:]
            yield [], batch, batch_tags, None
        return


def parent_tags(sweep: SweepStart) -> dict[str, str]:
    """The parent run's tags: the run's id (how it is found again), objective and direction, where the run folder
    is, the data's fingerprint (from config.json or run.json) and the sweep's status."""
    tags = {
        RUN_ID: sweep.run_id,
        "sweepax.objective": sweep.objective,
        "sweepax.direction": sweep.direction,
        SWEEP_STATUS: "training",
    }
    fingerprints = sweep.settings.get("fingerprints")
    if sweep.run_dir is not None:
        tags["sweepax.run_dir"] = str(Path(sweep.run_dir).resolve())
        if not isinstance(fingerprints, Mapping):
            try:
                fingerprints = run_folder.read_manifest(Path(sweep.run_dir)).get("fingerprints")
            except ValueError:  # a result saved with Result.save (no manifest): no fingerprint
                fingerprints = None
    for what, value in (fingerprints or {}).items():
        tags[f"sweepax.{what}_fingerprint"] = str(value)
    return tags


def flat_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that decide a sweep's results as MLflow params: nested keys joined by dots
    ("data.rows.train", "space.learning_rate.loguniform"); lists as JSON text.

    Examples:
      >>> flat_settings({"epochs": 3, "space": {"learning_rate": {"loguniform": [1e-4, 1.0]}}, "wall_s": 2.0})
      {'space.learning_rate.loguniform': '[0.0001, 1.0]', 'epochs': 3}
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)
        elif isinstance(value, list | tuple | Mapping):
            out[prefix] = json.dumps(value, default=str)
        else:
            out[prefix] = value

    for key in SETTINGS:
        if key in settings:
            walk(key, settings[key])
    return out


def _param_text(value: Any) -> str:
    """A param's value as MLflow stores it: numbers as Python writes them (a numpy float32 as its float64 value, so
    a live run and an export of the table agree), at most MAX_PARAM_VALUE characters."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    text = repr(value) if isinstance(value, float) else str(value)
    return text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 3] + "..."


def _key(name: str) -> str:
    """A name as an MLflow key: letters, digits and `_-. :/` kept, anything else `_`, at most MAX_KEY characters."""
    return re.sub(r"[^\w\-. :/]", "_", str(name))[:MAX_KEY]


@contextlib.contextmanager
def _no_run_links() -> Iterator[None]:
    """MLflow's client prints two lines ("View run ... at: URL") whenever a run on a server ends: not once per
    trial (the parent's still prints)."""
    name = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    before = os.environ.get(name)
    os.environ[name] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _now_ms() -> int:
    return int(time.time() * 1000)


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _make_sqlite_folder(tracking_uri: str | None) -> None:
    prefix = "sqlite:///"
    if (
        isinstance(tracking_uri, str)
        and tracking_uri.startswith(prefix)
        and tracking_uri[len(prefix) :] not in ("", ":memory:")
    ):
        Path(tracking_uri[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)
