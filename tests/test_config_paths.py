"""Where a config's data file is found (issue 20, item 5) and `--set` before the checks (item 10).

A relative `[data] path` is read from the config file's folder; a `--set data.path=...` from the working
directory (it was typed there). Overrides apply before any value is checked, so a template with a
placeholder path runs with `--set`, and a run folder whose CSV moved resumes with `--set data.path=...`.
"""

import json
import shutil

import pandas as pd
import pytest
from test_cli import CHURN, ROOT, run_cli, table_of, write_config

from sweeps.cli.config import load_config

from helpers import Stop, crash_after_saves


def small_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.read_csv(CHURN).head(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A config beside its CSV (500 rows, written as the relative path "rows.csv", a checkpoint every epoch),
    run to the end from a folder that holds another rows.csv (300 rows): (config, its CSV's absolute path, the run
    folder, stdout). The same sweep serves the tests of both items: one run, one compiled program."""
    base = tmp_path_factory.mktemp("project")
    csv = small_csv(base / "project" / "rows.csv", 500)  # the config's own data, beside it
    small_csv(base / "rows.csv", 300)  # another rows.csv where the command is run
    config = write_config(base / "project", path="rows.csv", extra="[run]\ncheckpoint_every = 1\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        code, out, err = run_cli(["run", config, "--out", base / "whole"])
    assert code == 0, err
    return config, str(csv.resolve()), base / "whole", out


# --- 5: a relative path is read from the config file's folder -------------------------------------------


def test_a_relative_data_path_is_the_config_folders_file_not_the_working_directorys(project):
    _, own, run_dir, out = project
    assert f"data:   {own}, predicting 'Churn'" in out, "the banner names the file by its absolute path"
    manifest = json.loads((run_dir / "run.json").read_text())
    recorded = json.loads((run_dir / "config.json").read_text())
    for where in (manifest["settings"], recorded):
        assert where["data"]["source"] == own
        assert sum(where["data"]["rows"].values()) == 500, "trained on the config's 500 rows, not the other 300"
    assert manifest["metadata"]["sweep_config"]["data"]["path"] == own
    assert recorded["sweep_config"]["data"]["path"] == own


def test_a_path_given_with_set_is_read_from_the_working_directory(tmp_path, monkeypatch):
    small_csv(tmp_path / "project" / "churn.csv", 40)
    here = small_csv(tmp_path / "churn.csv", 30)
    config = write_config(tmp_path / "project", path="churn.csv")
    monkeypatch.chdir(tmp_path)
    loaded = load_config(config, ["data.path=churn.csv"])
    assert loaded["data"]["path"] == str(here.resolve())
    assert loaded["overrides"] == [f"data.path={here.resolve()}"], "recorded as resume will replay it, anywhere"


def test_a_path_written_relative_to_the_working_directory_says_how_to_write_it(tmp_path, monkeypatch):
    small_csv(tmp_path / "data" / "churn.csv", 30)
    config = write_config(tmp_path / "configs", path="data/churn.csv")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as refused:
        load_config(config)
    message = str(refused.value)
    assert "[data] path 'data/churn.csv'" in message and str(tmp_path / "configs" / "data" / "churn.csv") in message
    assert "path = '../data/churn.csv'" in message, message


@pytest.mark.parametrize("example", sorted((ROOT / "data" / "examples").glob("*.toml")), ids=lambda p: p.stem)
def test_the_shipped_examples_find_their_data_from_any_folder(example, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config(example)["data"]["path"] == str((ROOT / "data" / "telco_customer_churn.csv").resolve())


# --- 10: --set applies before the values are checked ------------------------------------------------------


@pytest.mark.parametrize("placeholder", ['path = "FILL_ME_IN.csv"\n', ""], ids=["placeholder", "absent"])
def test_a_template_with_a_placeholder_path_runs_with_set(tmp_path, placeholder):
    template = tmp_path / "template.toml"
    template.write_text(f'[data]\n{placeholder}target = "Churn"\n[space]\nlearning_rate = 0.01\n')
    with pytest.raises(ValueError, match="FILL_ME_IN.csv" if placeholder else r"\[data\] path is missing"):
        load_config(template)
    rows = small_csv(tmp_path / "rows.csv", 500)
    assert load_config(template, [f"data.path={rows}"])["data"]["path"] == str(rows.resolve())
    code, out, err = run_cli(["run", template, "--set", f"data.path={rows}", "--dry-run"])
    assert code == 0, err
    assert "1 trials in 1 structure groups" in out


def test_an_override_that_breaks_a_value_is_still_named_after_the_file_was_fixed(tmp_path):
    template = tmp_path / "template.toml"
    template.write_text('[data]\npath = "FILL_ME_IN.csv"\ntarget = "Churn"\n')
    with pytest.raises(ValueError, match=r"\[model\] hidden in --set model.hidden=wide must be"):
        load_config(template, [f"data.path={CHURN}", "model.hidden=wide"])
    with pytest.raises(
        ValueError,
        match=r"path .*missing.csv. in --set data.path=missing.csv is not a file.*relative to the working dir",
    ):
        load_config(template, ["data.path=missing.csv"])


@pytest.fixture(scope="module")
def moved(project):
    """`project`'s run killed after its second checkpoint, whose config and CSV then moved away, and the same run
    uninterrupted: (run folder, the CSV's new place, the uninterrupted run's folder)."""
    config, csv, whole, _ = project
    base = whole.parent
    with pytest.MonkeyPatch.context() as patch:
        undo = crash_after_saves(patch, 2)
        with pytest.raises(Stop):
            run_cli(["run", config, "--out", base / "run"])
        undo()
    new_place = base / "elsewhere" / "rows.csv"
    new_place.parent.mkdir()
    shutil.move(csv, new_place)
    config.unlink()  # the run folder went to another machine: neither the config nor the CSV are where they were
    return base / "run", new_place, whole


def test_a_moved_run_says_how_to_point_it_at_its_data(moved):
    run_dir, _, _ = moved
    code, _, err = run_cli(["resume", run_dir])
    assert code == 2 and "Traceback" not in err
    assert "rows.csv" in err and f"sweeps resume {run_dir} --set data.path=" in err, err


def test_a_run_whose_csv_moved_resumes_with_set_data_path_and_must_be_the_same_data(moved, tmp_path):
    run_dir, new_place, whole = moved
    other = small_csv(tmp_path / "other.csv", 450)
    code, _, err = run_cli(["resume", run_dir, "--set", f"data.path={other}"])
    assert code == 2 and "data: the arrays differ" in err, err
    code, out, err = run_cli(["resume", run_dir, "--set", f"data.path={new_place}"])
    assert code == 0, err
    pd.testing.assert_frame_equal(table_of(run_dir), table_of(whole))
    recorded = json.loads((run_dir / "config.json").read_text())
    assert recorded["data"]["source"] == str(new_place.resolve()), "config.json names where the data is now"
