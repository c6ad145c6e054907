"""The user's own Flax Linen model (issue 22): it trains as it is, member for member, through every strategy, a
kill and a resume, and the models a sweep keeps; a model that cannot train is refused before anything compiles."""

import copy
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx
from test_checkpoints import kill

import sweeps
from models import MLP
from sweeps import space
from sweeps.driver.populations import controls_for, train_chunk
from sweeps.engine import flat_params
from sweeps.results.trained import _rebuilt

from helpers import Stop, crash_after_saves, synthetic, train_alone

SEED = 5


class CNN(nn.Module):
    """A small convolutional network of images (rows, H, W, C)."""

    channels: int = 4
    classes: int = 3

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        h = nn.relu(nn.Conv(self.channels, (3, 3))(x))
        h = nn.avg_pool(h, (2, 2), (2, 2)).reshape(x.shape[0], -1)
        return nn.Dense(self.classes)(h)


class Residual(nn.Module):
    """Layer norm, a residual block, flax's dropout at a fixed rate, and `drop`: a call hyperparameter (a traced
    value per member) that scales the block's branch, as stochastic depth's expectation does."""

    width: int = 8

    @nn.compact
    def __call__(self, x, *, train: bool = False, drop: float = 0.0):
        h = nn.relu(nn.LayerNorm()(nn.Dense(self.width)(x)))
        h = h + (1.0 - drop) * nn.Dense(self.width)(nn.Dropout(0.25, deterministic=not train)(h))
        return nn.Dense(1)(h)


def images(rows: int = 120, seed: int = 0) -> sweeps.Dataset:
    """Learnable 6x6 one-channel images of 3 classes (the class shifts a corner), split for us."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, rows)
    x = rng.normal(size=(rows, 6, 6, 1)).astype(np.float32)
    x[:, :3, :3, 0] += y[:, None, None]
    return sweeps.Dataset.from_arrays(x, y, task="multiclass")


class NormedMLP(nnx.Module):
    """An NNX MLP with layer norm, dropout keyed at call time (`rngs`), and a call hyperparameter `scale`."""

    def __init__(self, features: int, width: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(features, width, rngs=rngs)
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.dropout = nnx.Dropout(0.25)
        self.head = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, x, *, train: bool = False, rngs=None, scale: float = 1.0):
        h = nnx.relu(self.norm(self.hidden(x))) * scale
        return self.head(self.dropout(h, deterministic=not train, rngs=rngs))


CASES = {
    "cnn": (CNN(), images, {"learning_rate": [1e-2, 3e-2]}),
    "residual": (Residual(), lambda: synthetic("binary", rows=200), {"learning_rate": [1e-2], "drop": [0.0, 0.5]}),
    "nnx": (
        functools.partial(NormedMLP, 8, 8),
        lambda: synthetic("binary", rows=200),
        {"learning_rate": [1e-2], "scale": [0.5, 1.0]},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_member_trains_as_its_module_would_alone_with_flax_and_optax(case):
    module, make_data, grid = CASES[case]
    data = make_data()
    plan = sweeps.dry_run(data, model=module, space=grid, strategy=sweeps.Grid(), epochs=2, batch_size=32)
    (group,) = plan.groups
    (chunk,) = group.chunks
    pop, _ = train_chunk(group.structure, chunk, group.chunk_size, data, SEED, None, controls_for(data, None, None))
    vmapped = flat_params(pop.params, group.structure.network)
    for i, trial in enumerate(chunk):
        alone = train_alone(data, trial.hparams, trial.seed, SEED, module=module)
        error = float(np.abs(vmapped[i] - alone).max())
        assert error <= 1e-5, f"{case} trial {trial.number}: max |vmapped - alone| = {error:.2e}"
    assert not np.array_equal(vmapped[0], vmapped[1]), "the members differ: each is compared with its own"


def test_the_dry_run_names_the_module_and_counts_its_parameters_and_memory():
    plan = sweeps.dry_run(images(), model=CNN(channels=4), space={"learning_rate": [1e-3, 1e-2]})
    row = plan.table().iloc[0]
    assert row["structure"].startswith("CNN(channels=4, classes=3), batch 32")
    assert row["parameters"] == 4 * 9 + 4 + 4 * 9 * 3 + 3  # conv kernel and bias; dense on the 3x3x4 pooled map
    assert row["memory_mb"] > 0
    assert "rows of shape (6, 6, 1) (36 values each)" in plan.describe()


# Halving acts between epochs (its population is repacked and pruned; with refill, freed slots start new trials),
# PBT copies members and explores the model's own call hyperparameter; each is stopped at a checkpoint and resumed,
# lanes on and off.
OWN_SWEEPS = {
    "halving": {
        "strategy": sweeps.Halving(n=4, min_epochs=1, eta=2, seed=0),
        "space": {"learning_rate": space.loguniform(1e-3, 1e-1), "drop": space.uniform(0.0, 0.5)},
        "epochs": 3,
    },
    "refill": {
        "strategy": sweeps.Halving(n=4, min_epochs=1, eta=2, refill=True, samples=6, seed=0),
        "space": {"learning_rate": space.loguniform(1e-3, 1e-1), "drop": space.uniform(0.0, 0.5)},
        "epochs": 3,
    },
    "pbt": {
        "strategy": sweeps.PBT(population=4, interval=1, seed=0),
        "space": {"learning_rate": space.loguniform(1e-3, 1e-1), "drop": space.uniform(0.0, 0.5)},
        "epochs": 3,
    },
}


@pytest.fixture(scope="module")
def residual_data():
    return synthetic("binary", rows=200)


@pytest.mark.parametrize(("name", "lanes", "resume_lanes"), [("halving", 2, 1), ("refill", 1, 2), ("pbt", 1, 2)])
def test_a_sweep_of_an_own_model_stopped_and_resumed_gives_the_same_run(
    residual_data, tmp_path, monkeypatch, name, lanes, resume_lanes
):
    settings = {"model": Residual(), "checkpoint_every": 1, "plots": False, "keep_models": 2}
    whole = sweeps.run(residual_data, run_dir=tmp_path / "whole", **settings, **copy.deepcopy(OWN_SWEEPS[name]))
    assert (whole.table["state"] != "failed").all() and whole.table["params_drop"].notna().all()
    if name != "pbt":
        assert (whole.table["state"] == "pruned").any(), "halving pruned some trials"
    if name == "refill":
        assert len(whole.table) == 6, "freed slots started the sampled trials"
    monkeypatch.setenv("SWEEPS_LANES", str(lanes))
    undo = crash_after_saves(monkeypatch, 2)
    with pytest.raises(Stop):
        sweeps.run(residual_data, run_dir=tmp_path / "run", **settings, **copy.deepcopy(OWN_SWEEPS[name]))
    undo()
    monkeypatch.setenv("SWEEPS_LANES", str(resume_lanes))
    resumed = sweeps.run(
        residual_data, run_dir=tmp_path / "run", resume=True, **settings, **copy.deepcopy(OWN_SWEEPS[name])
    )
    pd.testing.assert_frame_equal(resumed.table, whole.table)
    pd.testing.assert_frame_equal(resumed.history, whole.history)
    # the kept model is the module itself, rebuilt from its recorded class (this test module is imported)
    model = sweeps.load_model(tmp_path / "run")
    assert model.trial == int(whole.best()["number"]) and "Residual(width=8)" in repr(model)
    again = sweeps.load_model(tmp_path / "run", model=Residual())
    rows = np.asarray(residual_data.x_val[:5])
    np.testing.assert_array_equal(model.predict_proba(rows), again.predict_proba(rows))
    assert model.predict(rows).shape == (5,)


# test_checkpoints' SIGKILL script trains these by name ("test_own_model:pbt") on synthetic("binary", rows=400)
KILLABLE = {"pbt": {"model": Residual(), "checkpoint_every": 1, "plots": False, **OWN_SWEEPS["pbt"]}}


def test_a_sweep_of_an_own_model_killed_with_sigkill_while_saving_resumes_to_the_same_run(tmp_path, monkeypatch):
    data = synthetic("binary", rows=400)
    whole = sweeps.run(data, **copy.deepcopy(KILLABLE["pbt"]))
    run_dir = kill(tmp_path, "test_own_model:pbt", 2, 2, "during_write")  # PBT between epochs, lanes on
    monkeypatch.setenv("SWEEPS_LANES", "1")
    resumed = sweeps.run(data, run_dir=run_dir, resume=True, **copy.deepcopy(KILLABLE["pbt"]))
    pd.testing.assert_frame_equal(resumed.table, whole.table)
    pd.testing.assert_frame_equal(resumed.history, whole.history)


def test_a_kept_cnn_predicts_new_images_as_its_validation_metrics_say(tmp_path):
    data = images()
    result = sweeps.run(data, model=CNN(), space={"learning_rate": [3e-2]}, epochs=3, run_dir=tmp_path / "r")
    model = sweeps.load_model(tmp_path / "r")
    accuracy = np.mean(model.predict(np.asarray(data.x_val)).astype(int) == data.y_val)
    assert accuracy == pytest.approx(result.best()["best_val_accuracy"], abs=1e-6)
    np.testing.assert_array_equal(model.predict(np.asarray(data.x_val)[0]), model.predict(np.asarray(data.x_val)[:1]))
    with pytest.raises(ValueError, match=r"takes rows of shape \(6, 6, 1\).*shape \(2, 36\)"):
        model.predict(np.zeros((2, 36), np.float32))


def test_a_model_class_this_process_has_not_imported_is_not_imported_for_a_run_folder():
    record = {"class": "some_package_never_imported.nets:Net", "args": {}, "call_hparams": {}}
    with pytest.raises(ValueError, match=r"has not imported.*sweeps.load_model\(run_dir, model=...\) with Net"):
        _rebuilt(record)


class Wide(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(x)


class Branching(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(1)(x)
        return h if float(h.mean()) > 0 else -h  # a traced value made a Python one


class Normed(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool = False):
        return nn.Dense(1)(nn.BatchNorm(use_running_average=not train)(x))


class NeedsArgument(nn.Module):
    @nn.compact
    def __call__(self, x, scale):
        return nn.Dense(1)(x) * scale


class Noisy(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool = False):
        noise = jax.random.normal(self.make_rng("noise"), x.shape) if train else 0.0
        return nn.Dense(1)(x + noise)


class Flat(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(x.reshape(x.shape[0], 7))


REFUSALS = [
    (Wide(), {}, r"outputs shape \(3, 10\).*binary task with 1 output needs \(3, 1\).*nn\.Dense\(1\)"),
    (Branching(), {}, r"cannot be traced.*TracerBoolConversionError|cannot be traced.*Concretization"),
    (Normed(), {}, r"'batch_stats'.*use nn\.LayerNorm or nn\.GroupNorm"),
    (NeedsArgument(), {}, r"takes 'scale' with no default.*give 'scale' a number as default"),
    (Flat(), {}, r"cannot take the data's rows: called on a batch of shape \(3, 8\)"),
    (Noisy(), {}, r"asks for a random stream.*\"noise\".*self\.make_rng\('dropout'\)"),
    (Residual(), {"dropout": [0.0, 0.2]}, r"dropout is set but your model does not read it.*declares.*drop"),
    (Residual(), {"hidden": [[8], [16]]}, r"hidden is in the space, but it shapes only the built-in models\.MLP"),
    (Residual(), {"drp": [0.1, 0.2]}, r"unknown hyperparameter 'drp'.*did you mean 'drop'"),
]


@pytest.mark.parametrize(("model", "grid", "message"), REFUSALS, ids=lambda v: type(v).__name__)
def test_a_model_that_cannot_train_is_refused_before_anything_compiles(binary_data, model, grid, message):
    with pytest.raises((ValueError, TypeError), match=message):
        sweeps.dry_run(binary_data, model=model, space={"learning_rate": [1e-3], **grid})


def test_the_built_in_mlp_takes_rows_of_features_only():
    with pytest.raises(ValueError, match=r"models\.MLP takes rows of features.*shape \(6, 6, 1\).*x\.reshape"):
        sweeps.dry_run(images(), model=MLP(hidden=(8,)), space={"learning_rate": [1e-3]})


def test_a_subclass_of_the_mlp_is_the_users_own_model_and_trains_as_written(binary_data):
    class Doubled(MLP):
        def __call__(self, x, *, train: bool = False):
            return 2.0 * super().__call__(x)

    plan = sweeps.dry_run(binary_data, model=Doubled(hidden=(8,)), space={"learning_rate": [1e-3]})
    structure = plan.groups[0].structure
    assert structure.module == Doubled(hidden=(8,)) and not structure.network.builtin
    x = jnp.ones((2, binary_data.n_features))
    params = structure.network.init(jnp.array([0, 1], jnp.uint32), {"init_scale": 1.0})
    doubled = structure.network.apply(params, x, {}, train=False)
    plain = MLP(hidden=(8,)).apply({"params": params}, x)
    np.testing.assert_allclose(np.asarray(doubled), 2.0 * np.asarray(plain), rtol=1e-6)


def test_the_learning_rate_range_test_says_it_takes_the_built_in_mlp(binary_data):
    with pytest.raises(ValueError, match=r"lr_find takes the built-in models\.MLP.*not Residual.*sweeps\.run"):
        sweeps.lr_find(binary_data, model=Residual(), points=4)


def test_a_kept_nnx_model_is_rebuilt_from_its_class_and_arguments(tmp_path):
    data = synthetic("binary", rows=200)
    factory = functools.partial(NormedMLP, 8, 8)
    result = sweeps.run(data, model=factory, space={"learning_rate": [1e-2, 3e-2]}, epochs=2, run_dir=tmp_path / "r")
    model = sweeps.load_model(tmp_path / "r")
    assert model.trial == int(result.best()["number"]) and "NormedMLP(8, 8)" in repr(model)
    rows = np.asarray(data.x_val)
    accuracy = np.mean(model.predict(rows).astype(float) == data.y_val)
    assert accuracy == pytest.approx(result.best()["best_val_accuracy"], abs=1e-6)


class RandomState(nnx.Module):
    def __init__(self, *, rngs):
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.head = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x, *, train: bool = False):
        return self.head(self.dropout(x, deterministic=not train))


class NNXNormed(nnx.Module):
    def __init__(self, *, rngs):
        self.norm = nnx.BatchNorm(8, rngs=rngs)
        self.head = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x, *, train: bool = False):
        return self.head(self.norm(x, use_running_average=not train))


NNX_REFUSALS = [
    (NormedMLP(8, 8, rngs=nnx.Rngs(0)), r"built NNX module.*functools\.partial\(NormedMLP"),
    (RandomState, r"keeps state besides its nnx\.Param: .*Rng.*build nnx\.Dropout\(rate\) without rngs"),
    (NNXNormed, r"keeps state besides its nnx\.Param: BatchStat.*nnx\.LayerNorm"),
    (functools.partial(NormedMLP, 5, 8), r"cannot take the data's rows: called on a batch of shape \(3, 8\)"),
]


@pytest.mark.parametrize(("model", "message"), NNX_REFUSALS, ids=["built", "rngs", "batchnorm", "shape"])
def test_an_nnx_model_that_cannot_train_is_refused_with_the_fix(binary_data, model, message):
    with pytest.raises((ValueError, TypeError), match=message):
        sweeps.dry_run(binary_data, model=model, space={"learning_rate": [1e-3]})
