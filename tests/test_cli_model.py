"""Your own Flax Linen model on the command line (issue 22 item 5): `[model] class = "package.module:Class"` with
`[model.args]`, imported because the user's config file names it; `sweeps resume` and `sweeps predict` of such a
run import a class only when the command line names it (`--model`), never because a run folder says so.

One sweep (4 trials of a small module written into a temporary folder, 400 churn rows, 2 epochs) serves the
tests that train: the API runs it, the command line runs it whole, and once killed and resumed; every run after
the first reuses its compiled program but the resumed one, whose class is imported again.
"""

import functools
import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest
from test_cli import CHURN, ROOT, run_cli, table_of, write_config
from test_config_paths import small_csv

import sweeps
import sweeps.cli.config_schema
from sweeps.cli.config import load_config
from sweeps.cli.main import main

from helpers import Stop, crash_after_saves

MODULE = "sweepax_cli_nets"  # written into the fixture's folder, imported from the working directory
NETS = """
import flax.linen as nn


class Net(nn.Module):
    widths: tuple = (16,)

    @nn.compact
    def __call__(self, x, *, train: bool = False, scale: float = 1.0):
        for width in self.widths:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(1)(x) * scale
"""
CONFIG = f"""\
[data]
path = "rows.csv"
target = "Churn"

[model]
class = "{MODULE}:Net"

[model.args]
widths = [8]

[space]
learning_rate = [1e-2, 3e-2]
scale = [1.0, 0.5]

[train]
epochs = 2
batch_size = 64

[run]
checkpoint_every = 1
keep_models = 2
plots = false
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A folder holding the module, a 400-row CSV and the config; the sweep run whole from there by the command
    line: (folder, config, run folder, stdout)."""
    base = tmp_path_factory.mktemp("own_model")
    (base / f"{MODULE}.py").write_text(NETS)
    small_csv(base / "rows.csv", 400)
    config = base / "own.toml"
    config.write_text(CONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)  # the module is found in the working directory, as `python -m` finds it
        code, out, err = run_cli(["run", config, "--out", base / "whole"])
    assert code == 0, err
    return base, config, base / "whole", out


@pytest.fixture
def in_project(project, monkeypatch):
    """The working directory is the project's folder, and the module is not imported (as in a new process)."""
    monkeypatch.chdir(project[0])
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    return project


def test_a_config_naming_a_class_trains_it_as_sweeps_run_with_that_module_does(project):
    base, _, run_dir, out = project
    assert f"train:  {MODULE}:Net(widths=[8]), adam, 2 epochs, batch 64" in out
    net = sys.modules[MODULE].Net
    result = sweeps.run(
        sweeps.load_csv(base / "rows.csv", target="Churn"),
        model=net(widths=(8,)),
        space={"learning_rate": [1e-2, 3e-2], "scale": [1.0, 0.5]},
        epochs=2,
        batch_size=64,
    )
    pd.testing.assert_frame_equal(sweeps.load_result(run_dir).table, result.table)
    assert result.table["params_scale"].tolist() == [1.0, 0.5, 1.0, 0.5]
    recorded = sweeps.load_result(run_dir).config
    assert recorded["sweep_config"]["model"] == {"class": f"{MODULE}:Net", "args": {"widths": [8]}}
    assert recorded["model"] == {"class": f"{MODULE}:Net", "args": {"widths": [8]}, "call_hparams": {"scale": 1.0}}


def test_resume_imports_the_class_only_when_the_command_names_it(in_project):
    base, config, whole, _ = in_project
    run_dir = base / "killed"
    with pytest.MonkeyPatch.context() as patch:
        undo = crash_after_saves(patch, 2)
        with pytest.raises(Stop):
            run_cli(["run", config, "--out", run_dir])
        undo()
    sys.modules.pop(MODULE)  # a new process: the run folder and its config file name the class, nothing imported it
    code, _, err = run_cli(["resume", run_dir])
    assert code == 2 and "never because a run folder or the config file it records says so" in err, err
    assert f"`sweeps resume killed --model {MODULE}:Net`" in err, "the command to type (paths shown from here)"
    assert MODULE not in sys.modules, "nothing was imported"
    code, _, err = run_cli(["resume", run_dir, "--model", "models.cnn:CNN"])
    assert code == 2 and f"is not the model class of the configuration to resume ({MODULE}:Net)" in err, err
    code, _, err = run_cli(["resume", run_dir, "--model", f"{MODULE}:Net", "--quiet"])
    assert code == 0, err
    pd.testing.assert_frame_equal(table_of(run_dir), table_of(whole))


def test_predict_imports_the_class_only_when_the_command_names_it(in_project, tmp_path):
    base, _, whole, _ = in_project
    out = tmp_path / "predictions.csv"
    argv = ["predict", whole, base / "rows.csv", "--out", out]
    code, _, err = run_cli(argv)
    assert code == 2 and f"--model {MODULE}:Net`" in err and "a run folder never makes sweeps import code" in err, err
    assert MODULE not in sys.modules and not out.exists()
    code, _, err = run_cli([*argv, "--model", "models.cnn:CNN"])
    assert code == 2 and "--model models.cnn:CNN is not the model whole saved" in err, err
    code, printed, err = run_cli([*argv, "--model", f"{MODULE}:Net"])
    assert code == 0, err
    predictions = pd.read_csv(out)
    assert list(predictions.columns) == ["prediction", "p_No", "p_Yes"] and len(predictions) == 400
    assert "against the file's 'Churn' column: accuracy " in printed


def write_broken_module(folder):
    (folder / "sweepax_cli_broken.py").write_text("raise RuntimeError('broken on purpose')\n")


CNN = 'class = "models.cnn:CNN"'
REFUSALS = {  # id: ([model] lines, --set overrides, what the message says)
    "no-colon": (
        'class = "models.cnn.CNN"',
        [],
        "has no ':' between the module and the class; did you mean",
    ),
    "no-module": ('class = "sweepax_no_such:Net"', [], "its module 'sweepax_no_such' cannot be imported"),
    "import-fails": ('class = "sweepax_cli_broken:Net"', [], "failed with RuntimeError: broken on purpose; fix the"),
    "no-class": ('class = "models.cnn:CNNN"', [], "has no 'CNNN'; did you mean models.cnn:CNN?"),
    "not-a-module": (
        'class = "collections:OrderedDict"',
        [],
        "which is a class, but not a Flax module: name a subclass of flax.linen.Module or flax.nnx.Module",
    ),
    "unknown-arg": (f"{CNN}\nargs = {{chanels = [4]}}", [], "has no attribute 'chanels'; did you mean 'channels'?"),
    "bad-arg": (f"{CNN}\nargs = {{channels = [0]}}", [], "failed with ValueError: channels must be"),
    "mixed": (f"{CNN}\nhidden = [8]", [], "and sets hidden, the built-in MLP's key: choose one model"),
    "args-alone": ("args = {width = 8}", [], "[model] names no class: add class ="),
    "set-both": ("hidden = [8]", ["model.class=models.cnn:CNN", "model.hidden=[4]"], "choose one model"),
    "set-no-colon": (
        "hidden = [8]",
        ["model.class=models.cnn.CNN"],
        "class in --set model.class=models.cnn.CNN",
    ),
}


@pytest.mark.parametrize(("model", "overrides", "message"), list(REFUSALS.values()), ids=list(REFUSALS))
def test_a_model_class_that_cannot_be_used_is_refused_with_the_fix_before_the_data_is_read(
    tmp_path, monkeypatch, capsys, model, overrides, message
):
    monkeypatch.setattr(sweeps.cli.config_schema, "load_csv", lambda *a, **k: pytest.fail("data loaded"))
    write_broken_module(tmp_path)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text(f'[data]\npath = "{CHURN.as_posix()}"\ntarget = "Churn"\n[model]\n{model}\n')
    argv = ["run", str(config), "--dry-run"] + [a for text in overrides for a in ("--set", text)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err


def test_set_model_class_replaces_the_files_mlp_and_the_shipped_example_plans(tmp_path, capsys):
    config = write_config(tmp_path)  # [model] hidden = [8]
    loaded = load_config(config, ["model.class=models.residual:ResidualMLP", "model.args.width=16"])
    assert loaded["model"] == {"class": "models.residual:ResidualMLP", "args": {"width": 16}}
    own = tmp_path / "own.toml"
    own.write_text(config.read_text().replace("hidden = [8]", 'class = "models.cnn:CNN"\nargs = {dense = 8}'))
    back = load_config(own, ["model.hidden=[4]"])["model"]
    assert back == {"hidden": [4], "activation": "relu"}, "--set model.hidden replaces the file's class and args"
    example = ROOT / "data" / "examples" / "churn_own_model.toml"
    assert main(["run", str(example), "--dry-run", "--set", "model.args.width=16", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "ResidualMLP(width=16, blocks=2, outputs=1), batch 64" in out and "16 trials in 1 structure groups" in out
    assert main(["lr-find", str(example)]) == 2
    assert "lr-find takes the built-in MLP" in capsys.readouterr().err


def load_example(name: str):
    """examples/<name>.py as a module (the folder is not a package: loaded from its file, as `python` runs it)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def test_the_digits_example_runs_on_a_tiny_budget(tmp_path, capsys):
    pytest.importorskip("sklearn")
    example = load_example("digits_cnn")
    assert example.main(["--quick", "--out", str(tmp_path / "digits")]) == 0
    out = capsys.readouterr().out
    assert "4 learning rates x 1 epochs, " in out and "val_accuracy " in out, out
    model = sweeps.load_model(tmp_path / "digits")  # models.cnn is imported: the kept CNN rebuilds from its record
    assert "CNN(channels=(16, 32), dense=64, classes=10)" in repr(model)
    assert model.predict(example.digits(300).x_val[:3]).shape == (3,)


def test_the_nnx_churn_example_runs_on_a_tiny_budget(tmp_path, capsys):
    example = load_example("churn_nnx")
    assert example.main(["--quick", "--run-dir", str(tmp_path / "nnx")]) == 0
    out = capsys.readouterr().out
    assert "4 trials x 1 epochs in " in out and "val_auc " in out, out
    table = pd.read_csv(tmp_path / "nnx" / "table.csv")
    assert len(table) == 4 and table["params_scale"].between(0.5, 1.5).all()
    # the example's module is not importable by name (loaded from its file): its model is passed back, as
    # sweeps.run took it; the bare class cannot build it, and says how
    with pytest.raises(ValueError, match=r"cannot build the model trial .* functools\.partial\(Class"):
        sweeps.load_model(tmp_path / "nnx", model=example.NormedMLP)
    model = sweeps.load_model(tmp_path / "nnx", model=functools.partial(example.NormedMLP, 45, 32))
    assert model.predict(np.zeros((2, 45), np.float32)).shape == (2,)


NNX_NETS = """
from flax import nnx


class NNXNet(nnx.Module):
    def __init__(self, features: int, width: int = 8, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(features, width, rngs=rngs)
        self.head = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, x, *, train: bool = False, scale: float = 1.0):
        return self.head(nnx.relu(self.hidden(x))) * scale
"""


def test_a_config_file_names_an_nnx_class_and_trains_what_sweeps_run_would(tmp_path, monkeypatch):
    (tmp_path / "sweepax_cli_nnx.py").write_text(NNX_NETS)
    small_csv(tmp_path / "rows.csv", 400)
    features = sweeps.load_csv(tmp_path / "rows.csv", target="Churn").n_features
    config = CONFIG.replace(f'class = "{MODULE}:Net"', 'class = "sweepax_cli_nnx:NNXNet"')
    config = config.replace("widths = [8]", f"features = {features}\nwidth = 8")
    (tmp_path / "nnx.toml").write_text(config)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["run", tmp_path / "nnx.toml", "--out", tmp_path / "run"])
    assert code == 0, err
    import sweepax_cli_nnx  # imported by the command above, from the working directory

    data = sweeps.load_csv(tmp_path / "rows.csv", target="Churn")
    python = sweeps.run(
        data,
        model=functools.partial(sweepax_cli_nnx.NNXNet, features=features, width=8),
        space={"learning_rate": [1e-2, 3e-2], "scale": [1.0, 0.5]},
        epochs=2,
        batch_size=64,
    )
    columns = ["number", "params_learning_rate", "params_scale", "value", "best_epoch"]
    pd.testing.assert_frame_equal(table_of(tmp_path / "run")[columns], python.table[columns], check_dtype=False)
    with pytest.raises(ValueError, match=r"NNXNet has no attribute 'widht'; did you mean 'width'"):
        sweeps.cli.config_schema.model_from_config(load_config(tmp_path / "nnx.toml", ["model.args.widht=4"]))
