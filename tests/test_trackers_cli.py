"""The trackers from a config file: `[run] log = ["mlflow", "tensorboard"]` follows a run live, a `sweeps resume`
continues the same tracker runs, and `sweeps export` of the finished run adds nothing."""

import pytest
from test_cli import run_cli, write_config

import sweeps

from helpers import Stop, crash_after_saves

mlflow = pytest.importorskip("mlflow")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def test_a_config_file_tracks_a_run_live_across_a_resume_and_an_export_adds_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a new experiment in a local database keeps its artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    log = ['run.log=["mlflow", "tensorboard"]', f"run.mlflow_uri={uri}", "run.checkpoint_every=1"]
    config = write_config(tmp_path)
    restore = crash_after_saves(monkeypatch, 2)
    with pytest.raises(Stop):
        run_cli(["run", config, "--out", run_dir, "--quiet", *(f"--set={s}" for s in log)])
    restore()
    code, _, err = run_cli(["resume", run_dir, "--quiet"])
    assert code == 0, err
    result = sweeps.load_result(run_dir)
    assert run_cli(["export", run_dir, "--to", "mlflow", "--uri", uri])[0] == 0
    assert run_cli(["export", run_dir, "--to", "tensorboard"])[0] == 0

    client = mlflow.MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "run"]
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["sweepax.run_id"] == result.config["run_id"]
    children = {int(r.data.tags["sweepax.trial"]): r for r in runs if r not in parents}
    assert sorted(children) == sorted(result.table["number"]) and len(children) == 4
    val_loss = result.history[result.history["metric"] == "loss"].query("split == 'val'")
    for number, run in children.items():
        steps = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_loss")]
        curve = val_loss[val_loss["trial"] == number]
        assert [s for s, _ in steps] == curve["epoch"].tolist(), "every epoch once, across the stop and the export"
        assert [v for _, v in steps] == pytest.approx(curve["value"].tolist(), rel=1e-6)
        assert run.info.status == "FINISHED"

    for number in result.table["number"]:
        events = event_accumulator.EventAccumulator(str(run_dir / "tensorboard" / f"trial_{number:05d}")).Reload()
        steps = [e.step for e in events.Scalars("val_loss")]
        assert steps == val_loss[val_loss["trial"] == number]["epoch"].tolist()
