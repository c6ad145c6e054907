"""TensorBoard: the HParams layout, read back with TensorBoard's own reader (and its server), live and exported.

One small sweep (6 trials on 300 synthetic rows, 3 epochs, one diverging; a conditional hyperparameter: `momentum`,
which only the momentum optimizer reads) is tracked live into its run folder and exported; the other tests train a
population strategy, or a run stopped and resumed, the same way. What TensorBoard shows must equal the table and the
history: every hyperparameter, every metric at every epoch (float32, as TensorBoard stores a scalar), each once.
"""

import dataclasses
import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
from google.protobuf import json_format
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

import sweeps
from sweeps import space
from sweeps.tracking.callbacks import SweepStart
from sweeps.tracking.tensorboard_tracker import EXPERIMENT_TAG, INDEX, SESSION_END_TAG, SESSION_START_TAG

from helpers import Stop, synthetic

SPACE = {
    "learning_rate": space.loguniform(1e-3, 30.0),  # trial 2 (4.4, momentum) diverges in its second epoch
    "optimizer": ["adam", "momentum"],
    "momentum": [0.0, 0.9],  # conditional: adam's trials leave it out
}
SWEEP = dict(space=SPACE, strategy=sweeps.Random(n=6, seed=0), epochs=3, progress=False, plots=False)
STATUS = {"complete": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE", "pruned": "STATUS_UNKNOWN"}


@pytest.fixture(scope="module")
def data():
    return synthetic("binary", rows=300)


@pytest.fixture(scope="module")
def live(data, tmp_path_factory):
    """The sweep tracked as it trains (into its run folder's `tensorboard`), and its export elsewhere."""
    run_dir = tmp_path_factory.mktemp("live") / "run"
    result = sweeps.run(data, run_dir=run_dir, callbacks=[sweeps.TensorBoardTracker()], **SWEEP)
    exported = result.to_tensorboard(tmp_path_factory.mktemp("export") / "tb")
    return result, run_dir / "tensorboard", exported


def read(logdir):
    """What TensorBoard reads from `logdir` (EventAccumulator, folder by folder): the root's experiment, and
    trial number -> its hparams, end status and scalars (tag -> [(step, value)])."""
    root = accumulate(logdir)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(root.PluginTagToContent("hparams")[EXPERIMENT_TAG])
    trials = {}
    for folder in sorted(logdir.glob("trial_*")):
        acc = accumulate(folder)
        content = acc.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content[SESSION_START_TAG]).session_start_info
        end = plugin_data_pb2.HParamsPluginData.FromString(content[SESSION_END_TAG]).session_end_info
        trials[int(folder.name.removeprefix("trial_"))] = {
            "hparams": {name: json_format.MessageToDict(value) for name, value in start.hparams.items()},
            "status": api_pb2.Status.Name(end.status),
            "scalars": {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]},
        }
    return experiment.experiment, trials


def accumulate(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def expected(result):
    """trial number -> what its folder must show: the table's params (with round and seed), its status, and the
    history's values at every epoch as float32, `value` at its last epoch."""
    table, history = result.table, result.history
    swept = [c.removeprefix("params_") for c in table.columns if c.startswith("params_")]
    named = history.assign(tag=history["split"] + "_" + history["metric"]).sort_values(["trial", "tag", "epoch"])
    trials = {}
    for row in table.to_dict(orient="records"):
        number = row["number"]
        cells = {name: row[f"params_{name}"] for name in swept}
        params = {name: v if isinstance(v, str) else float(v) for name, v in cells.items() if not pd.isna(v)}
        scalars = {
            tag: [(int(e), float(np.float32(v))) for e, v in zip(rows["epoch"], rows["value"])]
            for tag, rows in named[named["trial"] == number].groupby("tag")
        }
        scalars["value"] = [(row["epochs"], float(np.float32(row["value"])))]
        hparams = {**params, "round": float(row["round"]), "seed": float(row["seed"])}
        trials[number] = {"hparams": hparams, "status": STATUS[row["state"]], "scalars": scalars}
    return trials


def assert_shows(trials, result):
    """`trials` (as `read` gives them) show exactly the result's table and history."""
    want = expected(result)
    assert sorted(trials) == sorted(want)
    for number, trial in trials.items():
        assert trial["hparams"] == want[number]["hparams"], number
        assert trial["status"] == want[number]["status"], number
        assert sorted(trial["scalars"]) == sorted(want[number]["scalars"]), number
        for tag, points in want[number]["scalars"].items():
            np.testing.assert_array_equal(np.array(trial["scalars"][tag]), np.array(points), err_msg=f"{number} {tag}")


def sizes(logdir):
    return {str(p.relative_to(logdir)): p.stat().st_size for p in logdir.rglob("*tfevents*")}


def test_the_root_declares_every_swept_hyperparameter_with_its_domain_and_every_metric(live):
    result, _, exported = live
    experiment, _ = read(exported)
    hparams = {info.name: info for info in experiment.hparam_infos}
    assert list(hparams) == ["learning_rate", "optimizer", "momentum"], "round and seed do not vary here: left out"
    interval = hparams["learning_rate"].domain_interval
    assert (interval.min_value, interval.max_value) == (1e-3, 30.0)
    assert [v.string_value for v in hparams["optimizer"].domain_discrete.values] == ["adam", "momentum"]
    assert [v.number_value for v in hparams["momentum"].domain_discrete.values] == [0.0, 0.9]
    assert hparams["momentum"].type == api_pb2.DATA_TYPE_FLOAT64
    metrics = [info.name.tag for info in experiment.metric_infos]
    assert metrics == ["value", "train_loss", "val_accuracy", "val_auc", "val_loss"]
    assert result.table["params_momentum"].isna().any(), "the space has a trial without momentum"
    assert set(result.table["state"]) == {"complete", "diverged"}


@pytest.mark.parametrize(
    ("settings", "columns"),
    [
        ({"space": {"hidden": {"choice": [[64], [64, 32]]}}}, {"hidden": ("STRING", ["[64]", "[64, 32]"])}),
        ({"space": {"hidden": [64, 64]}}, {"hidden": ("STRING", ["[64, 64]"])}),  # one layout, as config.json has it
        ({"space": {"batch_size": {"choice": [16, 32], "log": True}}}, {"batch_size": ("FLOAT64", [16.0, 32.0])}),
        ({"space": {"dropout": {"uniform": [0.0, 0.5]}}}, {"dropout": ("FLOAT64", (0.0, 0.5))}),
        ({"space": {"x": {"choice": [True, False]}}}, {"x": ("BOOL", [True, False])}),
        ({"space": {"x": {"choice": [0.1, "auto"]}}}, {"x": ("STRING", ["0.1", "auto"])}),
        ({"seeds": 3}, {"seed": ("FLOAT64", [0.0, 1.0, 2.0])}),
        ({"strategy": {"name": "bayes", "rounds": 4}}, {"round": ("FLOAT64", None)}),
        ({"strategy": {"name": "halving", "brackets": True}, "seeds": 1}, {"round": ("FLOAT64", None)}),
        ({"strategy": {"name": "random", "n": 8}, "seeds": 1}, {}),
    ],
)
def test_each_column_has_the_type_and_domain_of_its_axis(settings, columns):
    from sweeps.tracking.tensorboard_tracker import hparam_columns, tensorboardx

    declared = hparam_columns(settings, tensorboardx())
    assert list(declared) == list(columns)
    for name, (kind, domain) in columns.items():
        info = api_pb2.HParamInfo.FromString(declared[name].SerializeToString())
        assert api_pb2.DataType.Name(info.type) == f"DATA_TYPE_{kind}"
        if isinstance(domain, tuple):
            assert (info.domain_interval.min_value, info.domain_interval.max_value) == domain
        else:
            values = [json_format.MessageToDict(v) for v in info.domain_discrete.values]
            assert values == (domain or [])


def test_each_trial_folder_shows_its_params_every_epoch_of_the_history_and_its_end(live):
    result, _, exported = live
    _, trials = read(exported)
    assert_shows(trials, result)


def test_a_live_run_writes_what_the_export_writes(live):
    result, tracked, exported = live
    (live_experiment, live_trials), (experiment, trials) = read(tracked), read(exported)
    assert live_trials == trials
    assert list(live_experiment.hparam_infos) == list(experiment.hparam_infos)
    assert list(live_experiment.metric_infos) == list(experiment.metric_infos)
    assert json.loads((tracked / INDEX).read_text())["run_id"] == result.config["run_id"]


def test_exporting_again_or_into_the_live_logdir_adds_nothing(live):
    result, tracked, exported = live
    before = sizes(exported), sizes(tracked)
    assert result.to_tensorboard(exported) == exported
    assert result.to_tensorboard(tracked) == tracked
    assert (sizes(exported), sizes(tracked)) == before
    assert_shows(read(exported)[1], result)


def test_a_logdir_behind_its_files_catches_up_and_cuts_a_torn_record(live, tmp_path):
    """A process killed after writing and before its index: the files hold more than the index says, the last
    record half written. The next export reads what is there and writes only what is missing."""
    result, _, exported = live
    logdir = tmp_path / "tb"
    result.to_tensorboard(logdir)
    index = json.loads((logdir / INDEX).read_text())
    (logdir / INDEX).write_text(json.dumps({**index, "written": {}}))
    trial = next(logdir.glob("trial_00002/*tfevents*"))
    trial.write_bytes(trial.read_bytes()[:-30])  # the last record (its end) torn
    result.to_tensorboard(logdir)
    assert sizes(logdir) == sizes(exported)
    assert_shows(read(logdir)[1], result)


def test_a_logdir_of_another_run_or_of_another_writer_is_refused(live, tmp_path):
    result, tracked, _ = live
    other = dataclasses.replace(result, config={**result.config, "run_id": "f" * 32})
    ids = f"another run \\(run_id {result.config['run_id']}.*not of this one \\(f{{32}}"
    with pytest.raises(RuntimeError, match=ids):
        other.to_tensorboard(tracked)
    foreign = tmp_path / "foreign"
    (foreign / "run_1").mkdir(parents=True)
    (foreign / "run_1" / "events.out.tfevents.1700000000.host").write_bytes(b"")
    with pytest.raises(RuntimeError, match="events that sweepax did not write .*run_1/events.out.tfevents"):
        result.to_tensorboard(foreign)


def test_without_a_logdir_a_sweep_without_a_run_folder_is_refused():
    start = SweepStart("0" * 32, None, {}, (), "val_loss", "minimize")
    with pytest.raises(ValueError, match=r"no run folder: pass TensorBoardTracker\(logdir=...\) or run with run_dir"):
        sweeps.TensorBoardTracker().on_sweep_start(start)


def test_a_missing_tensorboardx_is_refused_with_the_command(monkeypatch):
    for name in [name for name in sys.modules if name.split(".")[0] == "tensorboardX"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "sweepax\[tensorboard\]"'):
        sweeps.TensorBoardTracker("anywhere")


@pytest.mark.parametrize(
    "strategy",
    [sweeps.Halving(n=4, min_epochs=1, eta=2, refill=True, samples=8, seed=0), sweeps.PBT(population=4, interval=1)],
    ids=["halving-refill", "pbt"],
)
def test_a_strategy_that_edits_its_population_is_tracked_trial_by_trial(data, tmp_path, strategy):
    result = sweeps.run(
        data,
        space={"learning_rate": space.loguniform(1e-3, 1e-1)},
        strategy=strategy,
        epochs=3,
        progress=False,
        callbacks=[sweeps.TensorBoardTracker(tmp_path / "tb")],
    )
    experiment, trials = read(tmp_path / "tb")
    assert_shows(trials, result)
    if isinstance(strategy, sweeps.Halving):
        assert "pruned" in set(result.table["state"]) and len(result.table) > 4, "pruned, and refilled"
    else:
        assert "hparam_learning_rate" in trials[0]["scalars"] and "lineage_parent" in trials[0]["scalars"]
    assert {"value", "train_loss", "val_loss"} <= {info.name.tag for info in experiment.metric_infos}


def test_a_run_stopped_after_an_epoch_and_resumed_from_the_checkpoint_before_it_writes_each_epoch_once(
    data, tmp_path, monkeypatch
):
    from sweeps.driver import checkpoints

    delivered = []
    original, saves = checkpoints.Checkpoints.save, []

    def save(self, snapshot):  # the second checkpoint never happens: its epoch reached the trackers, then a kill
        saves.append(snapshot)
        if len(saves) == 2:
            raise Stop()
        return original(self, snapshot)

    def track(epoch):
        delivered.extend((number, metrics["epoch"]) for number, metrics in epoch.metrics.items())

    run_dir = tmp_path / "run"
    monkeypatch.setattr(checkpoints.Checkpoints, "save", save)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=run_dir, checkpoint_every=1, callbacks=[sweeps.TensorBoardTracker(), track], **SWEEP)
    monkeypatch.setattr(checkpoints.Checkpoints, "save", original)
    result = sweeps.run(
        data, run_dir=run_dir, resume=True, checkpoint_every=1, callbacks=[sweeps.TensorBoardTracker(), track], **SWEEP
    )
    assert len(delivered) > len(set(delivered)), "the resumed run re-delivered the epoch after its checkpoint"
    assert_shows(read(run_dir / "tensorboard")[1], result)


def test_tensorboard_serves_every_trial_with_every_column_in_its_hparams_dashboard(live):
    """A real `tensorboard` server on the live logdir: the HParams plugin's HTTP API lists every hyperparameter and
    metric, and every trial as a session group with its params (adam's without momentum) and metrics."""
    result, tracked, _ = live
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(tracked), "--port", str(port)]
    server = subprocess.Popen([*command, "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def post(route, request):
        body = json.dumps(request).encode()
        url = f"http://127.0.0.1:{port}/data/plugin/hparams/{route}"
        headers = {"Content-Type": "application/json"}
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=10) as response:
            return json.loads(response.read())

    statuses = list(STATUS.values()) + ["STATUS_RUNNING"]
    request = {"allowedStatuses": statuses, "colParams": [], "startIndex": 0, "sliceSize": 100}
    try:
        deadline, groups = time.monotonic() + 60, []
        while len(groups) < len(result.table) and time.monotonic() < deadline:
            try:
                groups = post("session_groups", request).get("sessionGroups", [])
            except OSError:
                if server.poll() is not None:
                    pytest.skip(f"tensorboard did not start: {server.stderr.read().decode()[-500:]}")
            time.sleep(0.5)
        if not groups:
            pytest.skip("tensorboard did not answer within 60 s")
        experiment = post("experiment", {"experimentName": ""})
    finally:
        server.kill()
        server.wait()
    assert [info["name"] for info in experiment["hparamInfos"]] == ["learning_rate", "momentum", "optimizer"]
    metrics = ["value", "train_loss", "val_accuracy", "val_auc", "val_loss"]
    assert [info["name"]["tag"] for info in experiment["metricInfos"]] == metrics
    want = expected(result)
    assert sorted(group["name"] for group in groups) == [f"trial_{n:05d}" for n in sorted(want)]
    for group in groups:
        number = int(group["name"].removeprefix("trial_"))
        assert group["hparams"] == want[number]["hparams"]
        values = {m["name"]["tag"]: (m["trainingStep"], m["value"]) for m in group["metricValues"]}
        assert sorted(values) == sorted(metrics)
        assert values["val_loss"] == want[number]["scalars"]["val_loss"][-1]
        assert group["sessions"][0]["status"] == want[number]["status"]
