"""Every hyperparameter of the lesson: traced ones in one program, structural ones grouped."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import sweeps
from models import MLP
from sweeps import space
from sweeps.driver.populations import controls_for, train_chunk
from sweeps.engine import flat_params
from sweeps.engine.hparams import HPARAMS
from sweeps.engine.hparams import OPTIMIZERS as OPTIMIZER_REGISTRY
from sweeps.engine.hparams import SCHEDULES as SCHEDULE_REGISTRY

from helpers import EPOCH, log_compilations, synthetic, train_alone

SEED = 3
OPTIMIZERS, SCHEDULES = tuple(OPTIMIZER_REGISTRY), tuple(SCHEDULE_REGISTRY)


MIXED = {
    "optimizer": space.choice(OPTIMIZERS),
    "schedule": space.choice(SCHEDULES),
    "learning_rate": space.loguniform(1e-3, 1e-2),
    "b1": space.uniform(0.8, 0.95),
    "b2": space.uniform(0.95, 0.999),
    "eps": space.loguniform(1e-8, 1e-6),
    "momentum": space.uniform(0.5, 0.95),
    "weight_decay": space.loguniform(1e-5, 1e-2),
    "l2": [0.0, 1e-3],
    "init_scale": space.uniform(0.5, 1.5),
    "clip_norm": [None, 0.5],
    "warmup_fraction": space.uniform(0.0, 0.4),
    "decay_rate": space.uniform(0.3, 0.9),
    "final_lr_fraction": space.uniform(0.0, 0.2),
    "epochs": [1, 2],
}


class EveryOptimizerAndSchedule(sweeps.Strategy):
    """Seven groups covering every optimizer and schedule, two random members each (clipped or with dropout in some)."""

    def ask(self, search):
        rng = np.random.default_rng(4)
        pairs = zip(OPTIMIZERS, SCHEDULES + SCHEDULES[:2])
        trials = []
        for k, (optimizer, schedule) in enumerate(pairs):
            for _ in range(2):
                values = {name: axis.sample(rng) for name, axis in search.items()}
                trials.append(
                    {
                        **values,
                        "optimizer": optimizer,
                        "schedule": schedule,
                        "clip_norm": 0.5 if k % 2 else None,
                        "dropout": 0.3 if k % 3 else 0.0,
                    }
                )
        return trials


def test_every_group_of_a_mixed_sweep_matches_training_alone():
    # what is compared is the optimizers and schedules, not the task or the width: regression and 8 hidden units
    # compile fastest (each group compiles its epoch, its initialisation and, for each member compared, a reference)
    data = synthetic("regression", rows=300)
    plan = sweeps.dry_run(
        data, model=MLP(hidden=(8,)), space=MIXED, strategy=EveryOptimizerAndSchedule(), batch_size=64
    )
    used = {(g.structure.optimizer, g.structure.schedule) for g in plan.groups}
    assert {o for o, _ in used} == set(OPTIMIZERS) and {s for _, s in used} == set(SCHEDULES)
    controls = controls_for(data, None, None)
    worst = 0.0
    for k, group in enumerate(plan.groups):
        (chunk,) = group.chunks
        assert len(chunk) == 2, "two members that differ train side by side"
        pop, _ = train_chunk(group.structure, chunk, group.chunk_size, data, SEED, None, controls)
        # one member per group compared with its training alone, the first and the second member in turn: every
        # kind of group and both lanes are compared (each reference is a compilation of its own)
        i = k % len(chunk)
        trial = chunk[i]
        alone = train_alone(data, trial.hparams, trial.seed, SEED)  # common random numbers: keys from the seed index
        error = float(np.abs(flat_params(pop.params)[i] - alone).max())
        worst = max(worst, error)
        assert error <= 1e-5, f"{group.structure.label()} trial {trial.number}: {error:.2e}"
    print(f"{len(plan.groups)} groups; worst max |vmapped - alone| = {worst:.2e}")


def test_the_mlp_is_a_stack_of_flax_dense_layers():
    """Computed features first, but flax's parameters and outputs: kept models load as before. Its kernels are
    lecun-normal as flax draws them, each output unit from its own key (`models.mlp.lecun_rows`)."""
    import flax.linen as nn

    class Stack(nn.Module):
        @nn.compact
        def __call__(self, x):
            for width in (16, 8):
                x = jnp.tanh(nn.Dense(width)(x))
            return nn.Dense(3)(x)

    x = jax.random.normal(jax.random.PRNGKey(0), (32, 5))
    ours = MLP(hidden=(16, 8), activation="tanh", outputs=3).init(jax.random.PRNGKey(1), x)
    theirs = Stack().init(jax.random.PRNGKey(1), x)
    assert jax.tree.map(np.shape, ours) == jax.tree.map(np.shape, theirs)
    out = MLP(hidden=(16, 8), activation="tanh", outputs=3).apply(ours, x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(Stack().apply(ours, x)), atol=1e-6, rtol=1e-6)
    init = jax.jit(MLP(hidden=(200,), outputs=1).init)  # one program, not a few hundred eager operations
    wide = init(jax.random.PRNGKey(2), jnp.zeros((1, 100)))["params"]["Dense_0"]
    kernel = np.asarray(wide["kernel"])  # lecun normal: standard deviation sqrt(1 / fan-in), truncated at 2 of them
    assert np.std(kernel) == pytest.approx(np.sqrt(1 / 100), rel=0.03)
    assert np.abs(kernel).max() <= 2 * np.sqrt(1 / 100) / 0.8796 + 1e-6
    assert np.all(np.asarray(wide["bias"]) == 0.0)


def test_zero_dropout_is_the_model_without_dropout():
    model = MLP(hidden=(16, 8), outputs=3)  # the shapes of the test above: its eager operations are compiled
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 5))
    params = model.init(jax.random.PRNGKey(1), x)
    plain = model.apply(params, x)
    zero = model.apply(params, x, jnp.float32(0.0), deterministic=False, rngs={"dropout": jax.random.PRNGKey(2)})
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(zero))
    half = model.apply(params, x, jnp.float32(0.5), deterministic=False, rngs={"dropout": jax.random.PRNGKey(2)})
    assert not np.array_equal(np.asarray(plain), np.asarray(half))


def test_structural_grid_compiles_one_program_per_structure():
    data = synthetic("regression", rows=300)  # the task is not what this is about: regression compiles fastest
    with log_compilations(fresh=True) as compiled:
        result = sweeps.run(
            data,
            space={
                "batch_size": [16, 64],
                "hidden": space.choice([(16,), (16, 8)]),
                "learning_rate": space.loguniform(1e-3, 1e-1),
                "momentum": [0.5, 0.8, 0.9],
            },
            strategy=sweeps.Grid(n=3),
            optimizer="momentum",
            epochs=1,
            fuse=False,
        )
    # 2 batch sizes x 2 layouts: 4 structures of 9 traced configurations each (fused, one: tests/test_fused_shapes.py)
    assert compiled.count(EPOCH) == 4
    assert result.config["compilations"] == 4
    assert len(result.table) == 36
    assert result.table["number"].is_unique
    assert set(result.table["params_hidden"]) == {"[16]", "[16, 8]"}


def test_each_member_stops_at_its_own_epoch_budget():
    # one structure of the structural grid above (data, optimizer, layout, batch size, 9 members): its program
    data = synthetic("regression", rows=300)
    search = {"epochs": [1, 3, 5], "learning_rate": [1e-2], "momentum": [0.5, 0.8, 0.9]}
    with log_compilations() as compiled:
        result = sweeps.run(data, space=search, epochs=99, optimizer="momentum", model=MLP(hidden=(16,)), batch_size=16)
    assert compiled.count(EPOCH) <= 1, "epoch budgets are data: one program (none if compiled earlier)"
    for _, trials in result.table.groupby("params_momentum"):
        assert trials["epochs"].tolist() == [1, 3, 5]
    for _, row in result.table.iterrows():
        curve = result.history[
            (result.history.trial == row["number"])
            & (result.history.metric == "loss")
            & (result.history.split == "val")
        ]
        assert curve["epoch"].max() == row["params_epochs"]
        assert row["final_val_loss"] == pytest.approx(curve["value"].iloc[-1])
    assert not result.table["stopped_early"].any()


def test_early_stopping_stops_a_member_and_restores_its_best_epoch():
    data = synthetic("binary", rows=200)
    patience = 2
    result = sweeps.run(
        data,
        space={"learning_rate": [3e-3, 0.3]},
        epochs=40,
        batch_size=8,
        early_stopping={"metric": "val_loss", "patience": patience},
    )
    stopped = result.table[result.table["stopped_early"]]
    assert len(stopped) >= 1
    for _, row in stopped.iterrows():
        assert row["epochs"] < 40
        curve = result.history[
            (result.history.trial == row["number"])
            & (result.history.metric == "loss")
            & (result.history.split == "val")
        ]["value"].to_numpy()
        assert len(curve) == row["epochs"]
        best = int(np.argmin(curve))
        assert row["best_epoch"] == best + 1
        assert row["best_val_loss"] == pytest.approx(curve[best])
        # it stopped after `patience` epochs without improvement
        assert row["epochs"] - row["best_epoch"] == patience


@pytest.mark.parametrize(
    "search, message",
    [
        ({"learning_rate": [-0.1]}, r"learning_rate must be > 0, but got learning_rate=-0.1"),
        ({"b1": [1.0]}, r"b1 must be in \[0, 1\), but got b1=1.0"),
        ({"dropout": [1.0]}, r"dropout must be in \[0, 1\)"),
        ({"batch_size": [100_000]}, r"batch_size=100000 is larger than the training split"),
        ({"learning_rat": [1e-3]}, r"unknown hyperparameter 'learning_rat'.*did you mean 'learning_rate'"),
        ({"activation": ["relux"]}, r"activation must be one of .*relu"),
        ({"optimizer": ["adamm"]}, r"optimizer must be one of"),
        ({"epochs": [0]}, r"epochs must be an integer >= 1"),
        ({"hidden": [[64, 0]]}, r"hidden must be a tuple of widths >= 1"),
        ({"clip_norm": [0.0]}, r"clip_norm must be > 0"),
    ],
)
def test_impossible_values_are_refused_before_compiling(binary_data, search, message):
    with log_compilations() as compiled, pytest.raises(ValueError, match=message):
        sweeps.run(binary_data, space=search, epochs=1)
    assert compiled.count(EPOCH) == 0


def test_bad_run_arguments_name_the_fix(binary_data):
    with pytest.raises(ValueError, match="Grid needs n="):
        sweeps.run(binary_data, space={"learning_rate": space.loguniform(1e-4, 1e-1)})
    with pytest.raises(ValueError, match="objective 'val_rmse' is not computed for a binary task"):
        sweeps.run(binary_data, objective="val_rmse")
    with pytest.raises(ValueError, match="unknown early_stopping keys"):
        sweeps.run(binary_data, early_stopping={"metrc": "val_loss"})
    with pytest.raises(ValueError, match="seeds must be an integer >= 1"):
        sweeps.run(binary_data, seeds=0)


# Item 18 of issue 20: a value that is not a finite number is refused for every float hyperparameter,
# wherever it enters (a fixed value, a list, a choice, a config file, `--set`), before anything compiles.
FLOATS = [name for name, hp in HPARAMS.items() if hp.traced and name != "epochs"]
NON_FINITE = [math.inf, -math.inf, math.nan]
VALID = 0.5  # a valid value of every float hyperparameter
GIVEN_AS = {
    "fixed": lambda value: value,
    "list": lambda value: [VALID, value],
    "choice": lambda value: space.choice([value, VALID]),
}


def test_the_float_table_is_every_float_hyperparameter():
    assert set(FLOATS) == {
        "learning_rate", "b1", "b2", "eps", "weight_decay", "momentum", "l2", "dropout", "init_scale",
        "clip_norm", "warmup_fraction", "decay_rate", "final_lr_fraction",
    }  # fmt: skip
    assert all(HPARAMS[name].check(VALID) for name in FLOATS)


@pytest.mark.parametrize("given_as", list(GIVEN_AS))
@pytest.mark.parametrize("value", NON_FINITE, ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("name", FLOATS)
def test_non_finite_hyperparameters_are_refused_before_compiling(binary_data, name, value, given_as):
    search = {name: GIVEN_AS[given_as](value)}
    message = rf"{name} must be a finite number .*, but got {name}={value!r}"
    with log_compilations() as compiled, pytest.raises(ValueError, match=message):
        sweeps.dry_run(binary_data, space=search, strategy=sweeps.Grid(), optimizer="adamw", epochs=1)
    assert compiled.count() == 0


def test_a_non_finite_value_in_a_list_is_refused_even_where_no_trial_draws_it(binary_data):
    # Random(n=1) draws one of the two values; the list is checked whole before the strategy asks.
    for seed in range(4):
        with pytest.raises(ValueError, match=r"learning_rate must be a finite number > 0, but got learning_rate=inf"):
            sweeps.dry_run(
                binary_data, space={"learning_rate": [1e-3, math.inf]}, strategy=sweeps.Random(n=1, seed=seed)
            )


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    data = synthetic("binary", rows=60, features=2)
    frame = pd.DataFrame(np.concatenate([data.x_train, data.x_val]), columns=["u", "v"])
    frame["y"] = np.concatenate([data.y_train, data.y_val]).astype(int)
    path = tmp_path_factory.mktemp("floats") / "small.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("given_as", ["config file", "--set"])
@pytest.mark.parametrize("text, shown", [("inf", "inf"), ("nan", "nan"), ("[0.5, -inf]", "-inf")])
@pytest.mark.parametrize("name", FLOATS)
def test_non_finite_hyperparameters_in_a_config_are_refused(small_csv, tmp_path, capsys, name, text, shown, given_as):
    from sweeps.cli.main import main

    config = tmp_path / "sweep.toml"
    space_line = f"{name} = {text}\n" if given_as == "config file" else ""
    config.write_text(
        f'[data]\npath = "{small_csv.as_posix()}"\ntarget = "y"\n[space]\n{space_line}'
        '[train]\noptimizer = "adamw"\nepochs = 1\nbatch_size = 8\n'
    )
    overrides = ["--set", f"space.{name}={text}"] if given_as == "--set" else []
    with log_compilations() as compiled:
        code = main(["run", str(config), "--dry-run", "--out", str(tmp_path / "run"), *overrides])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{name} must be a finite number" in err and f"{name}={shown}" in err, err
    assert compiled.count() == 0
