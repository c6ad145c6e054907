"""Settings as data: what the user asks (`SweepConfig`) and what the machine offers (`Resources`), frozen and
checked when made; a config file's keys are their fields; config.json records both; planning asks no strategy."""

import dataclasses
import json

import pytest

import sweeps
import sweeps.sweep
from models import MLP
from sweeps import space
from sweeps.cli.config import load_config
from sweeps.cli.config_schema import DEFAULTS, field_sections, settings_from_config
from sweeps.driver.run_folder import differences
from sweeps.planning.planner import plan
from sweeps.settings import Resources, SweepConfig

from helpers import synthetic


def test_a_sweep_config_is_frozen_and_checked_when_made():
    config = SweepConfig(space={"learning_rate": [1e-3, 1e-2]}, early_stopping={"patience": 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 5
    assert config.early_stopping == {"metric": "val_loss", "patience": 3, "min_delta": 0.0}, "defaults filled in"
    assert isinstance(config.space["learning_rate"], space.Choice) and isinstance(config.strategy, sweeps.Grid)
    for bad, message in [
        ({"seeds": 0}, r"seeds must be an integer >= 1, but got seeds=0"),
        ({"keep_models": -1}, r"keep_models must be an integer >= 0"),
        ({"init": "random"}, r"init must be one of \['shared', 'per_trial'\], but got init='random'"),
        ({"divergence_threshold": 0}, r"divergence_threshold must be > 0 or None, but got 0"),
        ({"checkpoint_every": 0}, r"checkpoint_every must be an integer >= 1"),
        ({"early_stopping": {"patince": 3}}, r"unknown early_stopping keys \['patince'\]"),
        ({"space": {"learning_rat": [1e-3]}}, r"learning_rat"),
    ]:
        with pytest.raises(ValueError, match=message):
            SweepConfig(**bad)
    with pytest.raises(TypeError, match="strategy must be a sweeps.Strategy"):
        SweepConfig(strategy="grid")


def test_a_config_files_train_and_run_keys_are_the_fields_of_sweep_config():
    sections = field_sections()
    fields = {f.name: f for f in dataclasses.fields(SweepConfig)}
    train = [name for name, section in sections.items() if section == "train"]
    run = [name for name, section in sections.items() if section == "run"]
    assert list(DEFAULTS["train"]) == train, "one schema: [train] is SweepConfig's train fields, in order"
    trackers = ["log", "mlflow_uri", "mlflow_experiment", "tensorboard_dir"]
    assert list(DEFAULTS["run"]) == ["dir", "devices", *trackers, *run], "[run]: folder, devices, trackers, fields"
    for name in train + run:
        assert DEFAULTS[sections[name]][name] == fields[name].default, name
    config = load_config("data/examples/churn_lr.toml", ["train.epochs=3", "run.keep_models=2", "train.seed=7"])
    settings = settings_from_config(config)
    assert (settings.epochs, settings.keep_models, settings.seed) == (3, 2, 7)
    assert settings.model == MLP(hidden=tuple(config["model"]["hidden"]), activation=config["model"]["activation"])


def test_plan_is_pure_and_config_json_records_the_settings_and_the_resources(tmp_path):
    data = synthetic("binary", rows=200)
    resources = Resources.detect(memory_budget=2**28)
    config = SweepConfig(space={"learning_rate": [1e-3, 1e-2]}, epochs=1, keep_models=1)
    planned = plan(config, data, resources)
    assert planned.config is config and planned.resources is resources
    assert plan(config, data, resources) == planned, "the same inputs, the same plan: nothing asked or changed"
    with pytest.raises(ValueError, match=r"objective 'val_rmse' is not computed for a binary task"):
        plan(dataclasses.replace(config, objective="val_rmse"), data, resources)
    result = sweeps.run(
        data, space={"learning_rate": [1e-3, 1e-2]}, epochs=1, keep_models=1, plots=False, run_dir=tmp_path / "r"
    )
    written = json.loads((tmp_path / "r" / "config.json").read_text())
    assert set(written["resources"]) == {"devices", "memory_budget", "lanes", "cache_bytes"}
    assert written["run"] == {"checkpoint_every": None, "keep_checkpoints": 2, "keep_models": 1, "plots": False}
    assert not (tmp_path / "r" / "plots").exists(), "plots=False draws none"
    with pytest.raises(TypeError, match=r"plots must be true or false, but got plots='no'"):
        SweepConfig(plots="no")
    assert written["epochs"] == 1 and written["strategy"]["name"] == "grid" and written == result.config
    assert "fuse" not in written and SweepConfig.recorded_fuse(written) is True, "the default, fuse=True, unwritten"
    manifest = json.loads((tmp_path / "r" / "run.json").read_text())
    assert manifest["resources"] == written["resources"], "a resume plans with the resources the run started with"


def test_fuse_is_a_checked_bool_that_sweeps_run_passes_and_config_json_records_when_off(monkeypatch):
    assert SweepConfig().fuse is True and DEFAULTS["train"]["fuse"] is True, "fusion on unless asked otherwise"
    made = []
    monkeypatch.setattr(sweeps.sweep, "execute", lambda config, *a, **k: made.append(config))  # nothing trains
    sweeps.run(synthetic("binary", rows=50), space={"learning_rate": [1e-3]}, fuse=False)
    sweeps.run(synthetic("binary", rows=50), space={"learning_rate": [1e-3]})
    assert [config.fuse for config in made] == [False, True]
    for bad in ("no", 1, None):
        with pytest.raises(ValueError, match=rf"fuse must be True or False, but got fuse={bad!r}; pass fuse=False"):
            SweepConfig(fuse=bad)
    off, on = SweepConfig(fuse=False).record(), SweepConfig().record()
    assert off["fuse"] is False and SweepConfig.recorded_fuse(off) is False
    # the default is not written: a record without the key (every record made before the setting existed) is the
    # default's and reads as True, so such a run folder resumes; a run started with fusion off resumes only with it off
    assert "fuse" not in on and SweepConfig.recorded_fuse(on) is True
    assert differences(off, on) == ["fuse: False -> '<absent>'"] and differences(on, off) != []


def test_resources_record_what_a_resumed_run_plans_with():
    resources = Resources.detect()
    record = {"devices": resources.devices.count, "memory_budget": 12345678, "lanes": 3, "cache_bytes": None}
    again = resources.planned_as(record)
    assert (again.memory_budget, again.lanes, again.cache_bytes) == (12345678, 3, None)
    assert again.devices == resources.devices and again.record() == record
    with pytest.raises(ValueError, match="lanes must be an integer >= 1"):
        dataclasses.replace(resources, lanes=0)
