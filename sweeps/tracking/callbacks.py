"""Callbacks: every trial's epochs, as they train, handed to code of the user's (and to the trackers).

A `Callback` is told, in the main thread, between epochs (never inside the compiled program):

    on_sweep_start(SweepStart)   once per process: the run's id, settings, swept names, whether it resumed
    on_trial_start(TrialStart)   a trial's params, just before its first epoch's metrics in this process
    on_epoch_end(EpochEnd)       after every epoch of every work item: each member's metrics by trial number
    on_trial_end(TrialEnd)       when a trial stops training: complete, diverged or pruned, its best epoch
    on_sweep_end(Result | None)  the finished result (its run folder written), or None when the run stopped early

`Delivery` turns the scheduler's per-epoch arrays into these events (`sweeps.driver.scheduler` calls it from
its one per-epoch handler); `replay` delivers a finished result's table and history the same way, which is
how `Result.to_mlflow` and `Result.to_tensorboard` export: the trackers are callbacks.

A callback that raises is reported (a warning naming it, the event and the error), disabled for the rest of
the run, and recorded in config.json under "callbacks"; the sweep goes on and loses nothing. A run resumed
from a checkpoint tells its callbacks `SweepStart(resumed=True)` and goes on from the checkpoint's epoch: the
epochs a killed run reported after its last checkpoint are reported again, with the same values (a resume is
bit-identical), so a tracker that keys what it writes by (trial, epoch) writes each once. A run stopped by a
signal checkpoints where it stopped and reports nothing twice.

Examples:
  >>> import sweeps
  >>> class Printer(sweeps.Callback):
  ...     def on_epoch_end(self, epoch):
  ...         for trial, metrics in epoch.metrics.items():
  ...             print(trial, metrics["epoch"], round(metrics["val_loss"], 3))
  >>> result = sweeps.run(data, space={"learning_rate": [1e-3, 1e-2]}, callbacks=[Printer()])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import re
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sweeps.engine import PADDING

NOT_METRICS = ("number", "trained", "active", "diverged")  # per-epoch arrays that say which member, not how well


@dataclasses.dataclass(frozen=True)
class SweepStart:
    """The sweep a callback is about to hear of.

    Attributes:
      run_id: the run's identity (32 hex digits): the same across resumes, in config.json as "run_id"; a tracker
        names its runs by it, so a resumed run or a second export finds them again.
      run_dir: the run folder, or None.
      settings: the settings as config.json records them (data, model, space, strategy, training).
      swept: the swept hyperparameters' names (the table's `params_<name>` columns).
      objective: the metric that picks each trial's best epoch; `direction`: "minimize" or "maximize".
      resumed: True when the run continues from a checkpoint (or an export writes a run again).
    """

    run_id: str
    run_dir: Path | None
    settings: Mapping[str, Any]
    swept: tuple[str, ...]
    objective: str
    direction: str
    resumed: bool = False


@dataclasses.dataclass(frozen=True)
class TrialStart:
    """A trial about to report its first epoch: `params` are its swept hyperparameters as the table shows them
    (a tuple such as hidden=(64, 32) as the text "[64, 32]"; a conditional one its optimizer ignores left out);
    `structure` its structural hyperparameters, swept or not, as text ("hidden=[64], activation=relu,
    batch_size=32, optimizer=adam, schedule=constant"; a model of the user's: its own hidden and activation
    are not among them)."""

    number: int
    round: int
    config: int
    seed: int
    params: Mapping[str, Any]
    structure: str = ""


@dataclasses.dataclass(frozen=True)
class EpochEnd:
    """One epoch of one work item: `metrics[trial]` = {"epoch": the trial's own epoch (1-based, as the history
    numbers it), "train_loss": ..., "val_loss": ..., ...} for every member that trained in it (padding left out);
    PBT's changed hyperparameters as `hparam_<name>`, its lineage as `lineage_parent`."""

    round: int
    metrics: Mapping[int, Mapping[str, float]]


@dataclasses.dataclass(frozen=True)
class TrialEnd:
    """A trial that stopped training: `state` "complete", "diverged" or "pruned", as the table will say;
    `epochs` trained; `best_epoch` (1-based, None when no epoch had a finite objective) and `value`, the
    objective there (NaN without one)."""

    number: int
    state: str
    epochs: int
    best_epoch: int | None
    value: float


class Callback:
    """Something told of a sweep as it trains: override the methods you need (each does nothing here).

    Every method runs in the main thread between epochs; what it does costs the sweep that time, so a slow
    writer should buffer. Pass instances to `sweeps.run(..., callbacks=[...])`.
    """

    def on_sweep_start(self, sweep: SweepStart) -> None:
        """Before the first epoch this process trains (also when it resumes)."""

    def on_trial_start(self, trial: TrialStart) -> None:
        """Just before a trial's first `on_epoch_end` in this process (again after a resume, for trials in flight)."""

    def on_epoch_end(self, epoch: EpochEnd) -> None:
        """After an epoch of a work item: every member's metrics, by trial number."""

    def on_trial_end(self, trial: TrialEnd) -> None:
        """When a trial stops training (its epochs done, early stopping, diverged, or a strategy pruned it)."""

    def on_sweep_end(self, result: Any) -> None:
        """The finished `sweeps.Result` (its run folder written), or None when the run stopped before its end (a
        signal, an error): flush what you hold; a resume continues."""


class Delivery:
    """Hands the scheduler's per-epoch arrays to callbacks as events, and keeps any that raises from the sweep.

    Args:
      callbacks: `Callback`s (none: every method returns at once).
      objective, direction: what picks a trial's best epoch, and which way is better.
      trial_of: trial number -> its `sweeps.planning.planner.Trial` (for its params when it starts).
      swept: the swept hyperparameters' names.
    """

    def __init__(
        self,
        callbacks: Sequence[Callback],
        objective: str,
        direction: str,
        swept: Callable[[], Sequence[str]] = tuple,
        trial_of: Callable[[int], Any] | None = None,
    ):
        self.callbacks = check_callbacks(callbacks)
        self.objective, self.sign = objective, 1.0 if direction == "minimize" else -1.0
        self.swept, self.trial_of = swept, trial_of
        self.failures: list[dict[str, str]] = []
        self._epochs: dict[int, int] = {}  # trial -> epochs reported (or restored)
        self._best: dict[int, tuple[float, int]] = {}  # trial -> (signed best objective, its 1-based epoch)
        self._started: set[int] = set()  # trials told to start in this process
        self._ended: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def start(self, sweep: SweepStart, records: Mapping[int, Mapping[str, np.ndarray]] | None = None) -> None:
        """The sweep starts (or resumes with `records`, a checkpoint's trial number -> its metric curves)."""
        if not self:
            return
        for number, record in (records or {}).items():
            curve = np.asarray(record[self.objective], np.float64)
            self._epochs[number] = len(curve)
            for epoch, value in enumerate(curve, 1):
                self._offer_best(number, float(value), epoch)
            if record.get("diverged"):
                self._ended.add(number)
        self._tell("on_sweep_start", sweep)

    def after_epoch(self, round_index: int, metrics: Mapping[str, np.ndarray], pruned: Mapping[int, int]) -> None:
        """After one epoch of a work item and the strategy's decisions: trial starts, the epoch, trial ends.

        `metrics`: the compiled epoch's (members,) arrays with `number`, `trained`, `active` and `diverged`;
        `pruned`: trial number -> epochs, every trial a strategy has stopped so far."""
        if not self:
            return
        numbers = np.asarray(metrics["number"])
        kept = np.flatnonzero(np.asarray(metrics["trained"], bool) & (numbers != PADDING))
        names = [name for name in metrics if name not in NOT_METRICS]
        columns = {name: np.asarray(metrics[name], np.float64)[kept] for name in names}
        by_trial: dict[int, dict[str, float]] = {}
        for row, slot in enumerate(kept):
            number = int(numbers[slot])
            epoch = self._epochs.get(number, 0) + 1
            self._epochs[number] = epoch
            by_trial[number] = {"epoch": epoch, **{name: float(columns[name][row]) for name in names}}
            self._offer_best(number, by_trial[number].get(self.objective, math.nan), epoch)
            if number not in self._started:
                self._started.add(number)
                self._tell("on_trial_start", self._trial_start(number))
        self._tell("on_epoch_end", EpochEnd(round_index, by_trial))
        active, diverged = np.asarray(metrics["active"], bool), np.asarray(metrics["diverged"], bool)
        for slot in kept:
            number = int(numbers[slot])
            stopped = not active[slot] or number in pruned
            if stopped and number not in self._ended:
                self._ended.add(number)
                state = "diverged" if diverged[slot] else "pruned" if number in pruned else "complete"
                self._tell("on_trial_end", self._trial_end(number, state))

    def end(self, result: Any) -> None:
        """The run's end: its `Result`, or None when it stopped early."""
        self._tell("on_sweep_end", result)

    def _offer_best(self, number: int, value: float, epoch: int) -> None:
        if math.isfinite(value) and (number not in self._best or self.sign * value < self._best[number][0]):
            self._best[number] = (self.sign * value, epoch)

    def _trial_start(self, number: int) -> TrialStart:
        trial = self.trial_of(number)
        params = trial_params(trial.hparams, self.swept())
        return TrialStart(number, trial.round, trial.config, trial.seed, params, structure_text(trial.hparams))

    def _trial_end(self, number: int, state: str) -> TrialEnd:
        best = self._best.get(number)
        value = math.nan if best is None else self.sign * best[0]
        return TrialEnd(number, state, self._epochs.get(number, 0), None if best is None else best[1], value)

    def _tell(self, method: str, event: Any) -> None:
        """Calls `method` of every callback still enabled; one that raises is reported, recorded and disabled."""
        for callback in list(self.callbacks):
            try:
                getattr(callback, method)(event)
            except Exception as e:  # noqa: BLE001 - a user's callback may raise anything; the sweep goes on
                self.callbacks.remove(callback)
                name = type(callback).__name__
                failure = {"callback": name, "method": method, "error": f"{type(e).__name__}: {e}"[:500]}
                self.failures.append(failure)
                warnings.warn(
                    f"callback {name}.{method} raised {failure['error']}; it is disabled for the rest of this run "
                    "(the sweep goes on, nothing is lost; config.json lists it under 'callbacks')",
                    CallbackFailed,
                    stacklevel=2,
                )


class CallbackFailed(UserWarning):
    """A callback raised and was disabled for the rest of the run."""


def check_callbacks(callbacks: Iterable[Any] | None) -> list[Callback]:
    """`sweeps.run`'s `callbacks=`, checked: each a `sweeps.Callback` (a plain function is taken as
    `on_epoch_end`)."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or callable(callbacks):
        callbacks = [callbacks]
    out = []
    for callback in callbacks:
        if isinstance(callback, Callback):
            out.append(callback)
        elif callable(callback):
            out.append(EpochFunction(callback))
        else:
            raise TypeError(
                f"callbacks must be sweeps.Callback instances (or functions taking a sweeps.EpochEnd), but got "
                f"{callback!r:.80}; subclass sweeps.Callback and override on_epoch_end (or another on_ method)"
            )
    return out


class EpochFunction(Callback):
    """A plain function given as a callback: called with every `EpochEnd`."""

    def __init__(self, fn: Callable[[EpochEnd], Any]):
        self.fn = fn

    def on_epoch_end(self, epoch: EpochEnd) -> None:
        self.fn(epoch)


def new_run_id() -> str:
    return uuid.uuid4().hex


def run_id_of(record: Mapping[str, Any]) -> str:
    """A run's id from what its folder recorded (config.json, or run.json while it runs): its "run_id", or for a
    run folder written before runs had one (or holding something else there), 32 hex digits derived from what it
    recorded, the same at every export."""
    recorded = record.get("run_id")
    if isinstance(recorded, str) and re.fullmatch("[0-9a-f]{32}", recorded):
        return recorded
    from sweeps.driver.run_folder import fingerprint

    kept = {k: record.get(k) for k in ("fingerprints", "started", "finished", "space", "data")}
    return (fingerprint(kept) * 2)[:32]


def replay(result: Any, callbacks: Sequence[Callback]) -> list[dict[str, str]]:
    """Delivers a finished `Result` to callbacks as if it trained now: the sweep's start (resumed=True: a tracker
    updates what an earlier export or the live run wrote), then trial by trial its start, its epochs (one
    `EpochEnd` per epoch, holding that trial) and its end, then `on_sweep_end(result)`. Returns the failures."""
    table, history = result.table, result.history
    swept = tuple(c[len("params_") :] for c in table.columns if c.startswith("params_"))
    delivery = Delivery(callbacks, result.objective, result.direction)
    start = SweepStart(
        run_id_of(result.config), result.run_dir, result.config, swept, result.objective, result.direction, resumed=True
    )
    delivery._tell("on_sweep_start", start)
    curves = epoch_metrics(history)
    defaults = recorded_defaults(result.config)
    for row in table.to_dict(orient="records"):
        number = int(row["number"])
        params = {name: row[f"params_{name}"] for name in swept if not _missing(row[f"params_{name}"])}
        structure = structure_text({**defaults, **params})
        start = TrialStart(number, int(row["round"]), int(row["config"]), int(row["seed"]), params, structure)
        delivery._tell("on_trial_start", start)
        for metrics in curves.get(number, []):
            delivery._tell("on_epoch_end", EpochEnd(int(row["round"]), {number: metrics}))
        best = None if _missing(row["best_epoch"]) else int(row["best_epoch"])
        delivery._tell("on_trial_end", TrialEnd(number, row["state"], int(row["epochs"]), best, float(row["value"])))
    delivery.end(result)
    return delivery.failures


def export(result: Any, tracker: Callback, where: str) -> None:
    """A finished result replayed into one tracker (`Result.to_mlflow`, `Result.to_tensorboard`): with no sweep to
    protect, the tracker's first failure is an error, raised as RuntimeError naming `where`, the event and why."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CallbackFailed)  # raised below instead, once
        failures = replay(result, [tracker])
    if failures:
        failure = failures[0]
        raise RuntimeError(f"exporting to {where} failed in {failure['method']}: {failure['error']}")


def epoch_metrics(history: pd.DataFrame) -> dict[int, list[dict[str, float]]]:
    """A history's rows as each trial's epochs, in order: trial -> [{"epoch": 1, "train_loss": ..., ...}, ...], each
    epoch with the metrics it has rows for (a NaN value kept)."""
    names = (history["split"] + "_" + history["metric"]).to_numpy()
    trials, epochs = history["trial"].to_numpy(np.int64), history["epoch"].to_numpy(np.int64)
    order = np.lexsort((epochs, trials))  # stable: a trial's epochs in order, each epoch's metrics as written
    curves: dict[int, list[dict[str, float]]] = {}
    last = None
    for trial, epoch, name, value in zip(
        trials[order].tolist(),
        epochs[order].tolist(),
        names[order].tolist(),
        history["value"].to_numpy()[order].tolist(),
    ):
        if (trial, epoch) != last:
            curves.setdefault(trial, []).append({"epoch": epoch})
            last = (trial, epoch)
        curves[trial][-1][name] = float(value)
    return curves


def trial_params(hparams: Mapping[str, Any], swept: Sequence[str]) -> dict[str, Any]:
    """A trial's swept hyperparameters as the table's params_ columns show them: tuples as text, a conditional one
    its optimizer and schedule ignore left out (`sweeps.engine.hparams.reads`)."""
    from sweeps.engine.hparams import reads

    used = reads(hparams)
    return {name: str(list(v)) if isinstance(v := hparams[name], tuple) else v for name in swept if name in used}


def structure_text(hparams: Mapping[str, Any]) -> str:
    """A trial's structural hyperparameters (`sweeps.engine.hparams.STRUCTURAL`) as one line of text."""
    from sweeps.engine.hparams import STRUCTURAL

    def text(value: Any) -> str:
        return str(list(value)) if isinstance(value, tuple | list) else str(value)

    return ", ".join(f"{name}={text(hparams[name])}" for name in STRUCTURAL if name in hparams)


def recorded_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """The structural hyperparameters a finished run's trials took when their space did not set them, from its
    config.json (the built-in MLP's hidden and activation, the training defaults)."""
    from sweeps.engine.hparams import HPARAMS

    model = config.get("model") if isinstance(config.get("model"), Mapping) else {}
    builtin = {k: model[k] for k in ("hidden", "activation") if k in model and "class" not in model}
    recorded = {k: config[k] for k in ("batch_size", "optimizer") if k in config}
    return {"schedule": HPARAMS["schedule"].default, **builtin, **recorded}


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))
