"""Mixed precision: `precision="bfloat16"` computes the model in bfloat16 on float32 master weights; float32 stays the
default and unchanged.

Tolerances: on these small problems a bfloat16 member's best val_loss is within 0.01 (absolute) of the float32 member's
with the same learning rate (bfloat16 keeps 8 significant bits: its outputs differ from float32's in the third
digit, and a few epochs add that up); a stopped and resumed bfloat16 sweep equals the uninterrupted one exactly.
"""

import copy
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx

import sweeps
from models.cnn import CNN
from sweeps import space
from sweeps.cli.config import load_config
from sweeps.cli.config_schema import settings_from_config
from sweeps.driver.resuming import SettingsChanged
from sweeps.engine import Structure, epoch_parts, precision
from sweeps.settings import SweepConfig

from helpers import Stop, crash_after_saves, synthetic

SWEEP = dict(
    space={"learning_rate": space.loguniform(1e-3, 3e-2)},
    strategy=sweeps.Grid(n=3),
    epochs=3,
    batch_size=32,
    plots=False,
    keep_models=1,
)
CLOSE = 0.01  # |best val_loss (bfloat16) - best val_loss (float32)|, same trial
# Population strategies in bfloat16, stopped after their second checkpoint and resumed, in either lane setting.
POPULATION_SWEEPS = {
    "refill": dict(
        space={"learning_rate": space.loguniform(1e-3, 3e-2), "hidden": [(8,), (16,)]},
        strategy=sweeps.Halving(n=4, min_epochs=1, eta=2, refill=True, samples=6, seed=1),
        epochs=2,
    ),
    "pbt": dict(
        space={"learning_rate": space.loguniform(1e-3, 3e-2)},
        strategy=sweeps.PBT(population=4, interval=1, seed=0),
        epochs=2,
    ),
}


@pytest.fixture(scope="module")
def data():
    return synthetic("binary", rows=300)


@pytest.fixture(scope="module")
def float32_run(data):
    return sweeps.run(data, **copy.deepcopy(SWEEP))


def test_float32_is_the_default_and_unchanged(data, float32_run, tmp_path, monkeypatch):
    assert SweepConfig().precision == "float32"
    explicit = sweeps.run(data, precision="float32", run_dir=tmp_path / "run", **copy.deepcopy(SWEEP))
    pd.testing.assert_frame_equal(explicit.table, float32_run.table)
    pd.testing.assert_frame_equal(explicit.history, float32_run.history)
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["precision"] == "float32" == explicit.config["precision"]


def test_bfloat16_trains_close_to_float32(data, float32_run, tmp_path):
    low = sweeps.run(data, precision="bfloat16", run_dir=tmp_path / "run", **copy.deepcopy(SWEEP))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "bfloat16"
    assert (low.table["state"] == "complete").all()
    loss = low.history[(low.history["metric"] == "loss") & (low.history["split"] == "train")]
    for _, trial in loss.groupby("trial"):
        values = trial.sort_values("epoch")["value"].to_numpy()
        assert np.isfinite(values).all() and values[-1] < values[0], "finite, and the loss goes down"
    np.testing.assert_allclose(low.table["best_val_loss"], float32_run.table["best_val_loss"], rtol=0, atol=CLOSE)
    assert not np.array_equal(low.table["best_val_loss"], float32_run.table["best_val_loss"]), "bfloat16 did compute"


def _dots_and_grads(structure: Structure, x: jax.Array, hp: dict):
    """The dtypes of every matrix product in one member's training step, and of its gradient."""
    params = jax.tree.map(lambda leaf: jnp.full(leaf.shape, 0.1, leaf.dtype), structure.network.param_shapes())
    params = structure.network.stored(params)

    def loss(p):
        outputs = precision.network_outputs(structure, p, x, hp, train=True, key=jax.random.key(0))
        return jnp.sum(outputs), outputs

    jaxpr = jax.make_jaxpr(jax.grad(loss, has_aux=True))(params)
    dots = {str(eqn.outvars[0].aval.dtype) for eqn in _equations(jaxpr.jaxpr) if eqn.primitive.name == "dot_general"}
    grads, outputs = jax.eval_shape(jax.grad(loss, has_aux=True), params)  # traced, not run
    return dots, {str(leaf.dtype) for leaf in jax.tree.leaves(grads)}, outputs.dtype


def _equations(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):
                yield from _equations(inner)


class NNXNet(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(8, 16, rngs=rngs)
        self.head = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x, *, train: bool = False):
        return self.head(nnx.relu(self.hidden(x)))


MODELS = {  # (structure fields, one minibatch of rows)
    "mlp-dropout": (dict(hidden=(16,), activation="relu", dropout=True, n_features=8, n_outputs=1), (4, 8)),
    "cnn": (dict(module=CNN(channels=(4,), dense=8, classes=3), input_shape=(8, 8, 1), n_outputs=3), (4, 8, 8, 1)),
    "nnx": (dict(module=NNXNet, input_shape=(8,), n_features=8, n_outputs=1), (4, 8)),
}


@pytest.mark.parametrize("name", MODELS)
def test_bfloat16_runs_every_matrix_product_in_bfloat16_and_returns_float32(name):
    fields, rows = MODELS[name]
    base = dict(
        hidden=(), activation="", batch_size=4, optimizer="adam", schedule="constant", clip=False, dropout=False,
        task="binary", n_features=64, n_outputs=1,
    )  # fmt: skip
    structure = Structure(**{**base, **fields, "precision": "bfloat16"})
    hp = {"dropout": jnp.float32(0.25)}
    dots, grads, outputs = _dots_and_grads(structure, jnp.ones(rows), hp)
    assert dots == {"bfloat16"} and grads == {"float32"} and outputs == jnp.float32
    dots, grads, outputs = _dots_and_grads(Structure(**{**base, **fields}), jnp.ones(rows), hp)
    assert dots == {"float32"} and grads == {"float32"} and outputs == jnp.float32
    _, forward = epoch_parts(structure, 1)  # validation's forward casts as training does
    params = jax.tree.map(lambda leaf: jnp.zeros((2, *leaf.shape), leaf.dtype), structure.network.param_shapes())
    hps = {"dropout": jnp.zeros(2, jnp.float32)}
    assert jax.eval_shape(forward, structure.network.stored(params), hps, jnp.ones(rows)).dtype == jnp.float32


@pytest.mark.parametrize(("name", "lanes", "resume_lanes"), [("refill", 1, 2), ("pbt", 2, 1)])
def test_bfloat16_population_strategies_stopped_and_resumed_give_the_same_run(
    data, tmp_path, monkeypatch, name, lanes, resume_lanes
):
    settings = {"checkpoint_every": 1, "plots": False, "keep_models": 1, "precision": "bfloat16"}
    settings |= copy.deepcopy(POPULATION_SWEEPS[name])
    monkeypatch.setenv("SWEEPS_LANES", str(lanes))
    whole = sweeps.run(data, run_dir=tmp_path / "whole", **copy.deepcopy(settings))
    assert (whole.table["state"] != "failed").all() and whole.table["best_val_loss"].notna().all()
    if name == "refill":
        assert len(whole.table) > 4, "halving refilled freed slots"
    undo = crash_after_saves(monkeypatch, 2)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=tmp_path / "run", **copy.deepcopy(settings))
    undo()
    monkeypatch.setenv("SWEEPS_LANES", str(resume_lanes))
    with pytest.raises(SettingsChanged, match=r"precision: 'bfloat16' -> 'float32'"):
        sweeps.run(data, run_dir=tmp_path / "run", resume=True, **{**copy.deepcopy(settings), "precision": "float32"})
    resumed = sweeps.run(data, run_dir=tmp_path / "run", resume=True, **copy.deepcopy(settings))
    pd.testing.assert_frame_equal(resumed.table, whole.table)
    pd.testing.assert_frame_equal(resumed.history, whole.history)


def test_a_run_folder_recorded_without_precision_resumes_as_float32(data, float32_run, tmp_path, monkeypatch):
    settings = {**copy.deepcopy(SWEEP), "checkpoint_every": 1}
    undo = crash_after_saves(monkeypatch, 1)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=tmp_path / "run", **copy.deepcopy(settings))
    undo()
    manifest_path = tmp_path / "run" / "run.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["settings"]["precision"]  # as a run started before the setting existed recorded it
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(SettingsChanged, match=r"precision: 'float32' -> 'bfloat16'"):
        sweeps.run(data, run_dir=tmp_path / "run", resume=True, precision="bfloat16", **copy.deepcopy(settings))
    resumed = sweeps.run(data, run_dir=tmp_path / "run", resume=True, **copy.deepcopy(settings))
    pd.testing.assert_frame_equal(resumed.table, float32_run.table)


def test_precision_is_a_checked_setting_and_a_config_file_key(tmp_path):
    for bad in ("fp16", "bf16", None, 16):
        rule = r"precision must be one of \['float32', 'bfloat16'\], but got precision="
        with pytest.raises(ValueError, match=rule + re.escape(repr(bad))):
            SweepConfig(precision=bad)
    with pytest.raises(ValueError, match=r"but got precision='fp16'; pass precision='bfloat16'"):
        sweeps.run(synthetic("binary", rows=50), precision="fp16")
    example = Path(__file__).resolve().parents[1] / "data" / "examples" / "churn_lr.toml"
    config = load_config(example, ['train.precision="bfloat16"'])
    assert config["train"]["precision"] == "bfloat16" and settings_from_config(config).precision == "bfloat16"
    assert load_config(example)["train"]["precision"] == "float32"
    with pytest.raises(ValueError, match=r"\[train\] precision in --set train.precision=\"fp16\": precision must be"):
        load_config(example, ['train.precision="fp16"'])
    written = tmp_path / "sweep.toml"
    churn = example.parents[1] / "telco_customer_churn.csv"
    written.write_text(f'[data]\npath = "{churn}"\ntarget = "Churn"\n[train]\nprecision = "half"\n')
    with pytest.raises(ValueError, match=rf"\[train\] precision in {re.escape(str(written))}: .*got precision='half'"):
        load_config(written)
