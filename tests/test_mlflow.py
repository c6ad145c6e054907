"""MLflow (issue 24): a sweep as one parent run with a child run per trial, written live by `sweeps.MLflowTracker` or
after by `Result.to_mlflow`, read back with MLflow's own client from a real store (sqlite, and a real `mlflow server`).

Every read-back is checked against the result itself: one child per trial nested under the parent, its params equal
to the table's `params_` columns, its tags and status, and every metric's history equal to `result.history` (step =
epoch, no step twice). Writing again (a re-export, a resumed run) updates those runs and repeats nothing.
"""

import copy
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import sweeps
from sweeps import space
from sweeps.driver import checkpoints, run_folder
from sweeps.tracking.mlflow_tracker import (
    MAX_ENTITIES,
    MAX_METRICS,
    MAX_PARAMS,
    MAX_TAGS,
    MLflowTracker,
    log_batches,
)

from helpers import Stop, synthetic

mlflow = pytest.importorskip("mlflow", reason='the MLflow extra is not installed: pip install "sweepax[mlflow]"')
from mlflow import MlflowClient  # noqa: E402 - after the skip

PARENT = "mlflow.parentRunId"
STATUS = {"complete": "FINISHED", "pruned": "KILLED", "diverged": "FAILED"}
# A learning rate of 3.0 diverges in its first epoch: a FAILED child with one epoch.
SWEEP = dict(space={"learning_rate": [1e-3, 1e-2, 3.0]}, epochs=3)
SERVER_START_S = 180  # the most seconds `mlflow server` may take to answer (about 15 s here, more on a loaded machine)


@pytest.fixture(scope="module")
def data():
    return synthetic("binary", rows=300)


class Store:
    """One sqlite tracking store for the module (MLflow builds its tables once), an experiment per test."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.uri = f"sqlite:///{folder}/mlflow.db"
        self.client = MlflowClient(self.uri)

    def experiment(self, name: str) -> str:
        """Made here with its artifacts under the test's folder (a new experiment in a local database would put
        them in ./mlruns of the current folder)."""
        return self.client.create_experiment(name, artifact_location=(self.folder / "artifacts" / name).as_uri())


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("mlflow"))


class Server:
    """A real `mlflow server` on localhost, in its own process group (its workers with it)."""

    def __init__(self, folder: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url, self.log = f"http://127.0.0.1:{self.port}", folder / "server.log"
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/server.db"]
        command += ["--artifacts-destination", str(folder / "artifacts")]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-queue workers: a faster start
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started = time.monotonic()

    def wait(self) -> str:
        """The server's URL once /health answers; the test is skipped (saying why) when it does not in time."""
        while time.monotonic() - self.started < SERVER_START_S:
            if self.process.poll() is not None:
                pytest.skip(f"mlflow server exited with {self.process.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self.url
            except OSError:
                time.sleep(0.25)
        pytest.skip(f"mlflow server did not answer on {self.url}/health within {SERVER_START_S} s: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-800:]

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=wait)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tracked(data, store, server, tmp_path_factory):
    """One small sweep with a run folder (3 trials, 3 epochs, one diverged), followed live by an MLflowTracker
    writing every epoch (experiment "live"), then exported (experiment "export"). It asks for the server first, so
    that the server starts while the sweep trains."""
    run_dir = tmp_path_factory.mktemp("tracked") / "run"
    store.experiment("live")
    tracker = MLflowTracker(store.uri, experiment="live", flush_every=0)
    result = sweeps.run(data, run_dir=run_dir, callbacks=[tracker], **SWEEP)
    assert "callbacks" not in result.config, result.config.get("callbacks")  # the tracker never raised
    store.experiment("export")
    exported = result.to_mlflow(store.uri, experiment="export")
    return result, tracker.runs, exported


# --- reading back ------------------------------------------------------------------------------


def read_back(client: MlflowClient, experiment_id: str) -> dict:
    """Everything MLflow holds of one exported sweep, in plain values: the parent's and each trial's params, tags,
    status and every metric's history as [(step, value)] by step (a step written twice shows twice) (NaN as "nan")."""
    runs = client.search_runs([experiment_id], max_results=1000)
    parents = [run for run in runs if PARENT not in run.data.tags]
    assert len(parents) == 1, f"one parent run, found {len(parents)}"
    parent, trials = parents[0], {}
    for run in runs:
        tags = run.data.tags
        if PARENT not in tags:
            continue
        assert tags[PARENT] == parent.info.run_id
        number = int(tags["sweepax.trial"])
        assert number not in trials, f"trial {number} has two child runs"
        histories = {key: history(client, run.info.run_id, key) for key in run.data.metrics}
        trials[number] = {
            "id": run.info.run_id,
            "name": run.info.run_name,
            "params": dict(run.data.params),
            "tags": {k: v for k, v in tags.items() if k != PARENT},
            "status": run.info.status,
            "metrics": histories,
        }
    return {
        "id": parent.info.run_id,
        "params": dict(parent.data.params),
        "tags": dict(parent.data.tags),
        "metrics": {k: plain(v) for k, v in parent.data.metrics.items()},
        "status": parent.info.status,
        "trials": trials,
    }


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float | str]]:
    return [(m.step, plain(m.value)) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def plain(value: float) -> float | str:
    return "nan" if math.isnan(value) else value


def expected_histories(result) -> dict[int, dict[str, list[tuple[int, float | str]]]]:
    """trial -> metric name -> [(epoch, value)] from `result.history` (an infinity as MLflow's database keeps it:
    the largest float64)."""
    out: dict[int, dict] = {int(n): {} for n in result.table["number"]}
    for (trial, split, metric), frame in result.history.groupby(["trial", "split", "metric"]):
        frame = frame.sort_values("epoch")
        values = np.clip(frame["value"].to_numpy(np.float64), -np.finfo(np.float64).max, np.finfo(np.float64).max)
        out[int(trial)][f"{split}_{metric}"] = [(int(e), plain(float(v))) for e, v in zip(frame["epoch"], values)]
    return out


def assert_matches(read: dict, result) -> None:
    """What MLflow holds is the result: one child per trial with the table's params, tags and state, and every
    epoch of every metric of the history, each once."""
    table = result.table.set_index("number")
    assert sorted(read["trials"]) == sorted(table.index.tolist())
    histories = expected_histories(result)
    swept = [c[len("params_") :] for c in table.columns if c.startswith("params_")]
    for number, trial in read["trials"].items():
        row = table.loc[number]
        assert trial["name"] == f"trial {number}"
        expected_params = {name: row[f"params_{name}"] for name in swept if not is_missing(row[f"params_{name}"])}
        assert set(trial["params"]) == set(expected_params), number
        for name, value in expected_params.items():
            logged = trial["params"][name]
            assert (float(logged) == value) if isinstance(value, float) else logged == str(value), (number, name)
        tags = trial["tags"]
        assert tags["sweepax.state"] == row["state"]
        assert (tags["sweepax.round"], tags["sweepax.seed"]) == (str(row["round"]), str(row["seed"]))
        assert tags["sweepax.config"] == str(row["config"])
        assert tags["sweepax.structure"].startswith("batch_size="), tags["sweepax.structure"]
        assert tags["sweepax.epochs_logged"] == str(row["epochs"])
        assert trial["status"] == STATUS[row["state"]]
        metrics = dict(trial["metrics"])
        assert metrics.pop("value") == [(0, plain(float(row["value"])))]
        if not is_missing(row["best_epoch"]):
            assert metrics.pop("best_epoch") == [(0, float(row["best_epoch"]))]
        assert metrics == histories[number], f"trial {number}: the metric histories differ from result.history"
    assert read["status"] == "FINISHED"
    assert read["tags"]["sweepax.run_id"] == result.config["run_id"]
    assert read["tags"]["sweepax.status"] == "finished"
    assert (read["tags"]["sweepax.objective"], read["tags"]["sweepax.direction"]) == ("val_loss", "minimize")
    best = result.best()
    assert read["tags"]["sweepax.best_trial"] == str(int(best["number"]))
    assert read["metrics"]["value"] == best["value"]
    assert read["metrics"]["best_val_loss"] == best["best_val_loss"]
    assert read["params"]["epochs"] == str(result.config["epochs"])
    assert read["params"]["objective"] == "val_loss"


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def same_content(a: dict, b: dict) -> None:
    """Two read-backs hold the same sweep: everything but the runs' ids and the run's start and end times."""

    def strip(read):
        trials = {n: {k: v for k, v in t.items() if k != "id"} for n, t in read["trials"].items()}
        return {**{k: v for k, v in read.items() if k != "id"}, "trials": trials}

    assert strip(a) == strip(b)


# --- the tests ---------------------------------------------------------------------------------


def test_an_export_is_one_parent_with_a_child_per_trial_holding_its_params_tags_and_every_epoch(tracked, store):
    result, _, exported = tracked
    read = read_back(store.client, exported.experiment_id)
    assert_matches(read, result)
    assert read["id"] == exported.parent_run_id
    assert {n: t["id"] for n, t in read["trials"].items()} == dict(exported.trial_runs)
    assert sorted(t["status"] for t in read["trials"].values()) == ["FAILED", "FINISHED", "FINISHED"]
    manifest = run_folder.read_manifest(result.run_dir)
    assert read["tags"]["sweepax.data_fingerprint"] == manifest["fingerprints"]["data"]
    assert read["tags"]["sweepax.run_dir"] == str(result.run_dir.resolve())
    assert read["params"]["space.learning_rate.choice"] == "[0.001, 0.01, 3.0]"
    assert read["params"]["data.rows.train"] == "240"
    assert "wall_s" not in read["params"], "facts of the run (timings, versions) are not settings"
    artifacts = [a.path for a in store.client.list_artifacts(exported.parent_run_id)]
    assert artifacts == ["config.json", "plots", "table.csv"]
    plots = [a.path for a in store.client.list_artifacts(exported.parent_run_id, "plots")]
    assert plots == sorted(f"plots/{p.name}" for p in (result.run_dir / "plots").iterdir())


def test_an_export_into_mlflows_file_store_reads_back_the_same(tracked, tmp_path, monkeypatch):
    """The ./mlruns layout (MLflow 3 refuses it unless MLFLOW_ALLOW_FILE_STORE=true), exported twice."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    result, _, _ = tracked
    uri = (tmp_path / "mlruns").as_uri()
    exported = result.to_mlflow(uri, experiment="file")
    client = MlflowClient(uri)
    read = read_back(client, exported.experiment_id)
    assert_matches(read, result)
    assert result.to_mlflow(uri, experiment="file") == exported
    assert read_back(client, exported.experiment_id) == read, "exported again: the same runs, no epoch twice"


def test_exporting_again_updates_the_same_runs_and_repeats_no_epoch(tracked, store):
    result, _, exported = tracked
    before = read_back(store.client, exported.experiment_id)
    again = result.to_mlflow(store.uri, experiment="export")
    assert again == exported
    after = read_back(store.client, exported.experiment_id)
    assert after == before
    assert len(store.client.search_runs([exported.experiment_id])) == len(result.table) + 1


def test_a_live_run_writes_what_its_export_writes_and_an_export_into_it_adds_nothing(tracked, store):
    result, live, exported = tracked
    read = read_back(store.client, live.experiment_id)
    assert_matches(read, result)
    same_content(read, read_back(store.client, exported.experiment_id))
    assert result.to_mlflow(store.uri, experiment="live") == live  # the export finds the live run's parent
    assert read_back(store.client, live.experiment_id) == read


@pytest.mark.parametrize(
    ("strategy", "epochs"),
    [
        (sweeps.Halving(n=4, min_epochs=1, eta=2, refill=True, samples=9), 3),
        (sweeps.PBT(population=4, interval=1, seed=2), 3),
    ],
    ids=["halving-refill", "pbt"],
)
def test_a_strategy_that_edits_its_population_is_tracked_trial_by_trial(data, store, request, strategy, epochs):
    name = request.node.callspec.id
    store.experiment(name)
    tracker = MLflowTracker(store.uri, experiment=name, flush_every=0)
    result = sweeps.run(
        data,
        space={"learning_rate": space.loguniform(1e-4, 1.0)},
        strategy=copy.deepcopy(strategy),
        epochs=epochs,
        callbacks=[tracker],
    )
    read = read_back(store.client, tracker.runs.experiment_id)
    assert_matches(read, result)
    states = {t["tags"]["sweepax.state"]: t["status"] for t in read["trials"].values()}
    if name == "halving-refill":
        assert states["pruned"] == "KILLED" and len(read["trials"]) > 4, "refill started trials in freed slots"
    else:
        assert any("hparam_learning_rate" in t["metrics"] for t in read["trials"].values())


class Forgetful(MLflowTracker):
    """A tracker whose process dies when the run stops: what it buffered is never written (as after SIGKILL)."""

    def on_sweep_end(self, result):
        if result is not None:
            super().on_sweep_end(result)


def test_a_stopped_run_resumed_continues_the_same_runs_without_repeating_or_losing_an_epoch(
    data, store, tmp_path, monkeypatch
):
    """Stopped before its third checkpoint is written, the run resumes from the second and delivers epoch 3 again:
    a tracker that wrote it skips it; one that lost its buffer (Forgetful) gets epochs 1-3 from the result."""
    sweep = dict(space={"learning_rate": [1e-3, 1e-2, 3.0]}, epochs=4, checkpoint_every=1, plots=False)
    run_dir = tmp_path / "run"
    for name in ("writes", "forgets"):
        store.experiment(name)
    original, saves = checkpoints.Checkpoints.save, []

    def save_twice(self, snapshot):
        saves.append(1)
        if len(saves) == 3:
            self.wait()
            raise Stop()  # the third checkpoint never written: the newest on disk is after epoch 2
        return original(self, snapshot)

    monkeypatch.setattr(checkpoints.Checkpoints, "save", save_twice)
    first = [MLflowTracker(store.uri, "writes", flush_every=0), Forgetful(store.uri, "forgets", flush_every=1e9)]
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=run_dir, callbacks=first, **sweep)
    monkeypatch.setattr(checkpoints.Checkpoints, "save", original)
    stopped = read_back(store.client, first[0].runs.experiment_id)
    assert (stopped["status"], stopped["tags"]["sweepax.status"]) == ("RUNNING", "stopped")
    assert {n: len(t["metrics"].get("val_loss", [])) for n, t in stopped["trials"].items()} == {0: 3, 1: 3, 2: 1}
    lost = read_back(store.client, first[1].runs.experiment_id)
    assert {n: len(t["metrics"].get("val_loss", [])) for n, t in lost["trials"].items()} == {0: 0, 1: 0, 2: 1}

    second = [MLflowTracker(store.uri, "writes", flush_every=0), MLflowTracker(store.uri, "forgets", flush_every=0)]
    result = sweeps.run(data, run_dir=run_dir, resume=True, callbacks=second, **sweep)
    assert "callbacks" not in result.config, result.config.get("callbacks")
    for before, after in zip(first, second):
        assert after.runs == before.runs  # the same parent and children
        assert_matches(read_back(store.client, after.runs.experiment_id), result)


def test_an_export_through_a_real_mlflow_server(tracked, store, server):
    """`mlflow server` over sqlite: the tracker makes the experiment, writes through the REST API (artifacts
    through the server's proxy), and a second export repeats nothing."""
    result, _, exported = tracked
    url = server.wait()
    runs = result.to_mlflow(url, experiment="served")
    client = MlflowClient(url)
    read = read_back(client, runs.experiment_id)
    assert_matches(read, result)
    same_content(read, read_back(store.client, exported.experiment_id))
    assert [a.path for a in client.list_artifacts(runs.parent_run_id)] == ["config.json", "plots", "table.csv"]
    assert result.to_mlflow(url, experiment="served") == runs
    assert read_back(client, runs.experiment_id) == read


# (params, epochs x metrics per epoch, tags, summary metrics): a trial's usual request; a sweep's settings over one
# request of params; a long PBT trial; one epoch larger than a request; more tags than one request takes.
BATCHES = [(2, (3, 4), 1, 2), (250, (0, 0), 4, 0), (5, (400, 9), 1, 2), (0, (1, 2500), 0, 0), (0, (2, 3), 150, 900)]


@pytest.mark.parametrize(("params", "epochs", "tags", "summary"), BATCHES)
def test_log_batches_stay_within_mlflow_limits_and_mark_each_epoch_once_complete(params, epochs, tags, summary):
    n_epochs, per_epoch = epochs
    given = dict(
        params=[f"p{i}" for i in range(params)],
        epochs=[(e, [f"m{e}.{k}" for k in range(per_epoch)]) for e in range(1, n_epochs + 1)],
        tags=[f"t{i}" for i in range(tags)],
        metrics=[f"s{i}" for i in range(summary)],
    )
    batches = list(log_batches(**given))
    seen_params, seen_metrics, seen_tags, marked = [], [], [], []
    for batch_params, metrics, batch_tags, last in batches:
        epoch_tag = last is not None
        assert len(batch_params) <= MAX_PARAMS and len(metrics) <= MAX_METRICS
        assert len(batch_tags) + epoch_tag <= MAX_TAGS
        assert len(batch_params) + len(metrics) + len(batch_tags) + epoch_tag <= MAX_ENTITIES
        assert batch_params or metrics or batch_tags, "no empty request"
        seen_params += batch_params
        seen_metrics += metrics
        seen_tags += batch_tags
        if epoch_tag:  # every metric of epochs up to `last` has been sent by now, and none of a later one
            marked.append(last)
            sent = {m for m in seen_metrics if m.startswith("m")}
            assert all(m in sent for e, ms in given["epochs"] if e <= last for m in ms)
            assert not any(m in sent for e, ms in given["epochs"] if e > last for m in ms)
    assert seen_params == given["params"] and seen_tags == given["tags"]
    assert seen_metrics == [m for _, ms in given["epochs"] for m in ms] + given["metrics"]
    assert marked == sorted(set(marked)) and marked[-1:] == ([n_epochs] if n_epochs else [])


def test_without_mlflow_installed_the_tracker_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` meets where it is not installed
    with pytest.raises(ImportError, match=r'pip install "sweepax\[mlflow\]"'):
        MLflowTracker("sqlite:///never.db")


def test_the_runs_are_known_once_the_sweep_started(store):
    tracker = MLflowTracker(store.uri)
    with pytest.raises(ValueError, match="once the sweep has started"):
        _ = tracker.runs
