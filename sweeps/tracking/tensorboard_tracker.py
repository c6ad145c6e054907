"""TensorBoard: a sweep in TensorBoard's HParams dashboard, written as it trains or exported once it is done.

The layout is the HParams plugin's (tensorboard's `hyperparameter_tuning_with_hparams` tutorial): the experiment at
the root, one folder (one TensorBoard run, one HParams session) per trial:

    logdir/
      events.out.tfevents.<run_id>.sweepax   the experiment (`hparams_config`): every swept hyperparameter with its
                                             domain (a list: its values; a loguniform or uniform range: the
                                             interval), round and seed where they vary, every metric as a column
      trial_00012/events.out...              a trial: its hyperparameters (session start), one event per epoch (tag:
                                             the metric, step: the trial's own epoch), `value` (the objective at
                                             its best epoch, the table's `value`) and its end (session end)
      sweepax_tensorboard.json               the index: which run the folder holds and what of it is written

Every column is declared at the root, so a trial whose optimizer ignores a conditional hyperparameter (its params
leave it out, as the table leaves the cell empty) still shows every column: TensorBoard's HParams table takes its
columns from the experiment, not from the union of the trials' keys (PyTorch's `add_hparams` writes an experiment
per call, in a folder of its own, and loses columns when trials log different keys: pytorch #32651, tensorboard
#5596). A trial's end status: complete is Success, diverged is Failure, pruned is Unknown (TensorBoard's statuses
have no "pruned" or "aborted"; Unknown keeps pruned trials apart from both, and is also what a trial still training
shows).

Each (trial, epoch) is written once. A trial's events go to one file, appended to (a resumed run continues it), by
one write per event, so what was written reaches the file even if the process is killed next. The index records
each file's length, its last epoch and the summaries written once (hparams, `value`); it is rewritten (whole or not
at all) when a sweep starts, every few seconds and when it ends, and at the start a file longer than the index says
is read from there (a kill between a write and the index), a torn last record cut off. Epochs already written are
skipped: a run resumed from its checkpoint re-delivers the epochs after it, and an export of a run into its own
logdir adds nothing. A logdir holding another run's events (another run id) is refused, as is one holding events
sweepax did not write.

At most a quarter of the process's file limit (1,024 at most) is open at once: one file per trial in flight, the
least recently written closed first when more trials train at once; a trial's file is closed at its end.

The writer is tensorboardX's: its protocol buffers (events, summaries, the HParams plugin's experiment and
sessions) and its record checksum, framed here into append-only files. tensorboardX needs only numpy, packaging and
protobuf (no TensorFlow, no PyTorch, no grpcio or web server: the `tensorboard` package is needed only to look at
the logdir, and can live elsewhere). Its own file writers start a new file (and a thread) per writer, which a
resumed trial would split in two; the records written here are the same. (Importing tensorboardX imports PyTorch
when PyTorch is installed: a few seconds, once.)

Examples:
  >>> import sweeps
  >>> tracker = sweeps.TensorBoardTracker()  # into the run folder's tensorboard folder  # doctest: +SKIP
  >>> result = sweeps.run(data, space=space, run_dir="runs/lr", callbacks=[tracker])  # doctest: +SKIP
  >>> # tensorboard --logdir runs/lr/tensorboard: the HParams tab (table, parallel coordinates, scatter plots)
  >>> sweeps.load_result("runs/lr").to_tensorboard("tb/lr")  # doctest: +SKIP
  PosixPath('tb/lr')
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import numpy as np

from sweeps.driver.run_folder import write_bytes
from sweeps.space import Axis, Float, axis_from_config
from sweeps.tracking.callbacks import Callback, EpochEnd, SweepStart, TrialEnd, TrialStart
from sweeps.tracking.callbacks import export as replay_into

INSTALL = 'pip install "sweepax[tensorboard]"'
FOLDER = "tensorboard"  # the default logdir, inside the run folder
INDEX = "sweepax_tensorboard.json"
ROOT = "."  # the index's name for the experiment's folder, the logdir itself
TRIAL_FOLDER = re.compile(r"trial_\d+")
EXPERIMENT_TAG = "_hparams_/experiment"  # the HParams plugin's tags (tensorboard/plugins/hparams/metadata.py)
SESSION_START_TAG = "_hparams_/session_start_info"
SESSION_END_TAG = "_hparams_/session_end_info"
VALUE = "value"  # the objective at the trial's best epoch, one point at its last epoch
ONCE = {EXPERIMENT_TAG: "experiment", SESSION_START_TAG: "start", VALUE: "value", SESSION_END_TAG: "end"}
STATUS = {"complete": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE", "pruned": "STATUS_UNKNOWN"}
INDEX_EVERY_S = 5.0
MAX_OPEN = 1024  # files open at once, at most; fewer where the process may open few (`open_limit`)


class TensorBoardTracker(Callback):
    """Writes a sweep for TensorBoard's HParams dashboard as it trains (or, through `Result.to_tensorboard`, when
    it is done): the experiment at the root of `logdir`, one folder per trial (`trial_00012`) with its
    hyperparameters, its metrics at every epoch (step: the trial's epoch) and its end status (see the module
    docstring for the layout and how each epoch is written once across resumes and exports).

    Args:
      logdir: the folder TensorBoard reads (`tensorboard --logdir LOGDIR`); None: the run folder's `tensorboard`
        folder (a sweep without a run folder is refused). It may hold this run already (a resume, an export
        again: nothing is written twice), not another's.

    Raises:
      ImportError: tensorboardX is not installed (`pip install "sweepax[tensorboard]"`).

    Examples:
      >>> import sweeps
      >>> tracker = sweeps.TensorBoardTracker()  # runs/lr/tensorboard  # doctest: +SKIP
      >>> space = {"learning_rate": [1e-3, 1e-2]}
      >>> result = sweeps.run(data, space=space, run_dir="runs/lr", callbacks=[tracker])  # doctest: +SKIP
      >>> # tensorboard --logdir runs/lr/tensorboard, then the HParams tab
    """

    def __init__(self, logdir: str | Path | None = None):
        self.pb = tensorboardx()
        self.logdir = None if logdir is None else Path(logdir)
        self.files: EventFiles | None = None
        self.columns: dict[str, Any] = {}  # hparam name -> its HParamInfo, as the experiment declares it
        self.sweep: SweepStart | None = None

    def on_sweep_start(self, sweep: SweepStart) -> None:
        if self.files is not None:  # the same tracker in another sweep
            self.files.close()
        if self.logdir is None and sweep.run_dir is None:
            raise ValueError(
                "TensorBoardTracker() without a logdir writes into the run folder's 'tensorboard' folder, but this "
                "sweep has no run folder: pass TensorBoardTracker(logdir=...) or run with run_dir=..."
            )
        logdir = self.logdir if self.logdir is not None else Path(sweep.run_dir) / FOLDER
        self.files = EventFiles(logdir, sweep.run_id, self.pb)
        self.columns = hparam_columns(sweep.settings, self.pb)
        self.sweep = sweep

    def on_trial_start(self, trial: TrialStart) -> None:
        folder = trial_folder(trial.number)
        if "start" in self.files.written(folder).once:
            return
        info = self.pb.SessionStartInfo(start_time_secs=time.time())
        values = {**{"round": trial.round, "seed": trial.seed}, **trial.params}
        for name, value in values.items():
            declared = self.columns.get(name)
            kind = declared.type if declared is not None else kind_of([value], self.pb)
            info.hparams[name].CopyFrom(proto_value(value, kind, self.pb))
        self.files.append(folder, [self._hparams_event(0, session_start_info=info)])

    def on_epoch_end(self, epoch: EpochEnd) -> None:
        if "experiment" not in self.files.written(ROOT).once:
            self._write_experiment({name for metrics in epoch.metrics.values() for name in metrics})
        Event, Summary = self.pb.Event, self.pb.Summary
        for number, metrics in epoch.metrics.items():
            folder, step = trial_folder(number), int(metrics["epoch"])
            if step <= self.files.written(folder).epoch:
                continue  # written before: a resumed run re-delivers the epochs after its checkpoint
            values = [Summary.Value(tag=name, simple_value=value) for name, value in metrics.items() if name != "epoch"]
            self.files.append(folder, [Event(wall_time=time.time(), step=step, summary=Summary(value=values))])
        self.files.index_if_due()

    def on_trial_end(self, trial: TrialEnd) -> None:
        folder = trial_folder(trial.number)
        written, events = self.files.written(folder).once, []
        if "value" not in written and trial.best_epoch is not None and math.isfinite(trial.value):
            summary = self.pb.Summary(value=[self.pb.Summary.Value(tag=VALUE, simple_value=trial.value)])
            events.append(self.pb.Event(wall_time=time.time(), step=trial.epochs, summary=summary))
        if "end" not in written:
            status = self.pb.Status.Value(STATUS.get(trial.state, "STATUS_UNKNOWN"))
            info = self.pb.SessionEndInfo(status=status, end_time_secs=time.time())
            events.append(self._hparams_event(trial.epochs, session_end_info=info))
        if events:
            self.files.append(folder, events)
        self.files.close_file(folder)
        self.files.index_if_due()

    def on_sweep_end(self, result: Any) -> None:
        if self.files is None:
            return
        if result is not None and "experiment" not in self.files.written(ROOT).once:  # no trial trained an epoch
            history = result.history
            self._write_experiment(set(history["split"] + "_" + history["metric"]))
        self.files.close()

    def _write_experiment(self, names: Iterable[str]) -> None:
        """The root's `hparams_config`: every hyperparameter column and every metric, `value` first."""
        pb = self.pb
        objective = self.sweep.objective
        metrics = [
            pb.MetricInfo(
                name=pb.MetricName(tag=VALUE),
                display_name=f"value ({objective}, best epoch)",
                description=f"{objective} at the trial's best epoch ({self.sweep.direction}): the table's value",
            )
        ]
        for name in sorted(n for n in names if n != "epoch" and not n.startswith("lineage_")):
            kind = "DATASET_TRAINING" if name.startswith("train_") else "DATASET_VALIDATION"
            metrics.append(pb.MetricInfo(name=pb.MetricName(tag=name), dataset_type=pb.DatasetType.Value(kind)))
        experiment = pb.Experiment(
            description=f"sweepax run {self.sweep.run_id}",
            time_created_secs=time.time(),
            hparam_infos=list(self.columns.values()),
            metric_infos=metrics,
        )
        self.files.append(ROOT, [self._hparams_event(0, experiment=experiment)])

    def _hparams_event(self, step: int, **data: Any) -> Any:
        """An event holding one HParams plugin summary (`experiment=`, `session_start_info=` or
        `session_end_info=`): no value, its content in the summary's metadata, as the plugin reads it."""
        pb = self.pb
        (field,) = data
        tag = {"experiment": EXPERIMENT_TAG, "session_start_info": SESSION_START_TAG}.get(field, SESSION_END_TAG)
        content = pb.HParamsPluginData(version=0, **data).SerializeToString()
        metadata = pb.SummaryMetadata(plugin_data=pb.SummaryMetadata.PluginData(plugin_name="hparams", content=content))
        summary = pb.Summary(value=[pb.Summary.Value(tag=tag, metadata=metadata)])
        return pb.Event(wall_time=time.time(), step=step, summary=summary)


def tensorboardx() -> SimpleNamespace:
    """tensorboardX's protocol buffers and record checksum, imported when a tracker is made."""
    try:
        from google.protobuf import struct_pb2
        from tensorboardX.proto import api_pb2, event_pb2, plugin_hparams_pb2, summary_pb2
        from tensorboardX.record_writer import masked_crc32c
    except ImportError as e:
        raise ImportError(f"TensorBoardTracker writes with tensorboardX, which is missing ({e}): {INSTALL}") from e
    return SimpleNamespace(
        Event=event_pb2.Event,
        Summary=summary_pb2.Summary,
        SummaryMetadata=summary_pb2.SummaryMetadata,
        HParamsPluginData=plugin_hparams_pb2.HParamsPluginData,
        SessionStartInfo=plugin_hparams_pb2.SessionStartInfo,
        SessionEndInfo=plugin_hparams_pb2.SessionEndInfo,
        Experiment=api_pb2.Experiment,
        HParamInfo=api_pb2.HParamInfo,
        Interval=api_pb2.Interval,
        MetricInfo=api_pb2.MetricInfo,
        MetricName=api_pb2.MetricName,
        DataType=api_pb2.DataType,
        DatasetType=api_pb2.DatasetType,
        Status=api_pb2.Status,
        Value=struct_pb2.Value,
        ListValue=struct_pb2.ListValue,
        crc=masked_crc32c,
    )


def trial_folder(number: int) -> str:
    return f"trial_{number:05d}"


# --- the experiment's columns -------------------------------------------------------------------------------------


def hparam_columns(settings: Mapping[str, Any], pb: SimpleNamespace) -> dict[str, Any]:
    """name -> HParamInfo for every hyperparameter of the space as config.json records it (a range: its interval;
    a list: its values); then `round` where the strategy asks in rounds (Bayes, Hyperband's brackets) and `seed`
    where each configuration trains several seeds (every trial's hparams hold both; a column that cannot vary is
    left out of the table)."""
    space = settings.get("space", {})
    columns = {name: hparam_info(name, axis_from_config(name, recorded), pb) for name, recorded in space.items()}
    float64 = pb.DataType.Value("DATA_TYPE_FLOAT64")
    strategy = settings.get("strategy") if isinstance(settings.get("strategy"), Mapping) else {}
    if (strategy.get("rounds") or 1) > 1 or strategy.get("brackets"):
        columns.setdefault("round", pb.HParamInfo(name="round", type=float64))
    seeds = settings.get("seeds")
    if isinstance(seeds, int) and seeds > 1:
        values = pb.ListValue(values=[pb.Value(number_value=seed) for seed in range(seeds)])
        columns.setdefault("seed", pb.HParamInfo(name="seed", type=float64, domain_discrete=values))
    return columns


def hparam_info(name: str, axis: Axis, pb: SimpleNamespace) -> Any:
    if isinstance(axis, Float):
        interval = pb.Interval(min_value=axis.low, max_value=axis.high)
        return pb.HParamInfo(name=name, type=pb.DataType.Value("DATA_TYPE_FLOAT64"), domain_interval=interval)
    kind = kind_of(axis.values, pb)
    values = pb.ListValue(values=[proto_value(v, kind, pb) for v in axis.values])
    return pb.HParamInfo(name=name, type=kind, domain_discrete=values)


def kind_of(values: Iterable[Any], pb: SimpleNamespace) -> int:
    """The HParams data type that holds every value: bool, float64 (numbers), else string."""
    values = list(values)
    if all(isinstance(v, bool | np.bool_) for v in values):
        return pb.DataType.Value("DATA_TYPE_BOOL")
    if all(_is_number(v) for v in values):
        return pb.DataType.Value("DATA_TYPE_FLOAT64")
    return pb.DataType.Value("DATA_TYPE_STRING")


def proto_value(value: Any, kind: int, pb: SimpleNamespace) -> Any:
    """`value` as a google.protobuf.Value of the column's type (a layout such as (64, 32) as "[64, 32]", as the
    table shows it)."""
    if kind == pb.DataType.Value("DATA_TYPE_BOOL") and isinstance(value, bool | np.bool_):
        return pb.Value(bool_value=bool(value))
    if kind == pb.DataType.Value("DATA_TYPE_FLOAT64") and _is_number(value):
        return pb.Value(number_value=float(value))
    return pb.Value(string_value=str(list(value)) if isinstance(value, tuple | list) else str(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


# --- the files ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Written:
    """What one folder's event file holds: its length in bytes, its last epoch (the largest step of a metric) and
    which of the summaries written once it holds ("experiment"; a trial's "start", "value", "end")."""

    bytes: int = 0
    epoch: int = 0
    once: set[str] = dataclasses.field(default_factory=set)

    def note(self, event: Any) -> None:
        for value in event.summary.value:
            if value.tag in ONCE:
                self.once.add(ONCE[value.tag])
            else:
                self.epoch = max(self.epoch, int(event.step))


class EventFiles:
    """A logdir's event files, one per folder (the root's and each trial's), appended to, and the index of what
    they hold.

    Opening a logdir reads its index (refusing another run's, or events without one), then brings it up to date
    with the files: a file longer than the index says is read from there (a torn last record cut off), one shorter
    is read whole, a missing one is forgotten.
    """

    def __init__(self, logdir: Path, run_id: str, pb: SimpleNamespace):
        self.logdir, self.run_id, self.pb = Path(logdir), run_id, pb
        self.name = f"events.out.tfevents.{run_id}.sweepax"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._root, self._limit = str(self.logdir), open_limit()
        self._written = self._read_index()
        self._open: OrderedDict[str, IO[bytes]] = OrderedDict()
        self._catch_up()
        self.index()  # the logdir is this run's from now on, even if the process is killed before it writes again

    def written(self, folder: str) -> Written:
        return self._written.get(folder) or Written()

    def append(self, folder: str, events: list[Any]) -> None:
        """Appends `events` to `folder`'s file in one write (a new file starts with its version event)."""
        written = self._written.setdefault(folder, Written())
        if written.bytes == 0:
            events = [self.pb.Event(wall_time=time.time(), file_version="brain.Event:2"), *events]
        data = b"".join(self._record(event.SerializeToString()) for event in events)
        handle = self._handle(folder)
        try:
            handle.write(data)
            handle.flush()
        except BaseException:
            self.close_file(folder)
            with open(self._path(folder), "ab") as f:  # what was written of `data` goes: the file ends on a record
                f.truncate(written.bytes)
            raise
        written.bytes += len(data)
        for event in events:
            written.note(event)

    def close_file(self, folder: str) -> None:
        handle = self._open.pop(folder, None)
        if handle is not None:
            handle.close()

    def index_if_due(self) -> None:
        if time.monotonic() - self._indexed >= INDEX_EVERY_S:
            self.index()

    def index(self) -> None:
        """Writes the index (whole or not at all): the run id, and each folder's length, last epoch and summaries
        written once."""
        written = {folder: [w.bytes, w.epoch, sorted(w.once)] for folder, w in sorted(self._written.items())}
        record = {"run_id": self.run_id, "file": self.name, "written": written}
        write_bytes(self.logdir / INDEX, json.dumps(record, separators=(",", ":")).encode())
        self._indexed = time.monotonic()

    def close(self) -> None:
        """Closes every file and writes the index."""
        for folder in list(self._open):
            self.close_file(folder)
        self.index()

    def _path(self, folder: str) -> str:
        return os.path.join(self._root, folder, self.name)  # a str: pathlib costs more than the write, per epoch

    def _handle(self, folder: str) -> IO[bytes]:
        handle = self._open.get(folder)
        if handle is None:
            os.makedirs(os.path.join(self._root, folder), exist_ok=True)
            handle = self._open[folder] = open(self._path(folder), "ab")
            if len(self._open) > self._limit:
                self.close_file(next(iter(self._open)))
        self._open.move_to_end(folder)
        return handle

    def _record(self, payload: bytes) -> bytes:
        """One TFRecord: the length, its masked CRC-32C, the payload and its masked CRC-32C."""
        header = struct.pack("<Q", len(payload))
        return header + struct.pack("<I", self.pb.crc(header)) + payload + struct.pack("<I", self.pb.crc(payload))

    def _read_index(self) -> dict[str, Written]:
        path = self.logdir / INDEX
        if not path.exists():
            foreign = next(
                (p for p in [*self.logdir.glob("*tfevents*"), *self.logdir.glob("*/*tfevents*")] if p.is_file()), None
            )
            if foreign is not None:
                raise ValueError(
                    f"logdir {str(self.logdir)!r} holds TensorBoard events that sweepax did not write (e.g. "
                    f"{str(foreign.relative_to(self.logdir))!r}, and no {INDEX}): choose an empty or new logdir"
                )
            return {}
        try:
            record = json.loads(path.read_text())
            run_id, written = record["run_id"], record["written"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"cannot read {str(path)!r} ({type(e).__name__}: {e}); choose another logdir") from e
        if run_id != self.run_id:
            raise ValueError(
                f"logdir {str(self.logdir)!r} holds the TensorBoard events of another run (run_id {run_id}, in "
                f"{INDEX}), not of this one ({self.run_id}): choose another logdir, or delete that one"
            )
        return {folder: Written(int(b), int(e), set(s)) for folder, (b, e, s) in written.items()}

    def _catch_up(self) -> None:
        on_disk = {ROOT} | {e.name for e in os.scandir(self.logdir) if e.is_dir() and TRIAL_FOLDER.fullmatch(e.name)}
        for folder in on_disk | set(self._written):
            path = self._path(folder)
            size = os.stat(path).st_size if os.path.isfile(path) else None
            written = self._written.get(folder)
            if size is None:
                self._written.pop(folder, None)
            elif written is None or size != written.bytes:
                self._written[folder] = self._read(path, written if written and size > written.bytes else Written())

    def _read(self, path: str, written: Written) -> Written:
        """Reads `path`'s records after `written.bytes`, noting each; a torn or damaged tail is cut off."""
        with open(path, "rb") as f:
            f.seek(written.bytes)
            data = f.read()
        end = 0
        for payload, after in records(data, self.pb.crc):
            written.note(self.pb.Event.FromString(payload))
            end = after
        if end < len(data):
            os.truncate(path, written.bytes + end)
        written.bytes += end
        return written


def open_limit() -> int:
    """How many event files a tracker keeps open: a quarter of the process's limit on open files, at most
    `MAX_OPEN`."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # no `resource` (Windows): its C runtime's default, 512
        soft = 512
    return max(16, min(MAX_OPEN, soft // 4)) if soft > 0 else MAX_OPEN


def records(data: bytes, crc: Any) -> Iterator[tuple[bytes, int]]:
    """The whole TFRecords at the start of `data`: (payload, offset after it), up to the first torn or damaged one."""
    offset = 0
    while offset + 12 <= len(data):
        header = data[offset : offset + 8]
        (length,) = struct.unpack("<Q", header)
        start, end = offset + 12, offset + 12 + length + 4
        if end > len(data) or struct.unpack("<I", data[offset + 8 : start])[0] != crc(header):
            return
        payload = data[start : start + length]
        if struct.unpack("<I", data[start + length : end])[0] != crc(payload):
            return
        offset = end
        yield payload, offset


def export(result: Any, logdir: str | Path) -> Path:
    """`Result.to_tensorboard`: the finished result replayed to a `TensorBoardTracker` (see `replay`); a failure
    raised, with what the tracker said."""
    replay_into(result, TensorBoardTracker(logdir), f"TensorBoard in {str(logdir)!r}")
    return Path(logdir)
