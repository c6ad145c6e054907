"""The learning-rate range test (`sweeps.lr_find`, `sweeps lr-find`).

The synthetic binary task (tests/helpers.py, an MLP of 16 units, batch 32) has a stable range that
the vectorized sweep itself measures here: `sweeps.run` over the same 36 rates for 3 epochs says
which rates train (training loss below half the untrained model's) and from which rate training
diverges (loss not finite or above the untrained model's). Measured when this test was written:
SGD trains from 0.158 to 10 and diverges from 15.8; Adam trains from 0.01 to 0.631 and diverges
from 1.58. The range test, with one epoch, must suggest a rate inside the stable range and call
stable only rates below the first that diverges.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import pandas as pd
import pytest

import sweeps
import sweeps.cli.config_schema
from models import MLP, loss_fn
from sweeps import space
from sweeps.cli.main import main
from sweeps.engine import batch_indices, geometric_rates, keys
from sweeps.engine import hparams as registry
from sweeps.lr_find.curve import local_linear
from sweeps.results.plots.lr_find import draw_lr_find

from helpers import log_compilations, reference_optimizer, synthetic

RANGE = {"min_lr": 1e-4, "max_lr": 1e3, "points": 36}
MODEL = MLP(hidden=(16,))
SEED = 0


def stable_range(data, optimizer, start_loss):
    """(lowest rate that trains, highest rate that trains, first rate that diverges) after 3 epochs of each rate."""
    result = sweeps.run(
        data,
        model=MODEL,
        space={"learning_rate": space.loguniform(RANGE["min_lr"], RANGE["max_lr"])},
        strategy=sweeps.Grid(n=RANGE["points"]),  # the range test's population size: its compiled epoch is reused
        optimizer=optimizer,
        epochs=3,
        batch_size=32,
        divergence_threshold=None,
    )
    table = result.table.sort_values("params_learning_rate")
    rates, loss = table["params_learning_rate"].to_numpy(), table["final_train_loss"].to_numpy()
    trains = np.isfinite(loss) & (loss < start_loss / 2)
    diverges = ~np.isfinite(loss) | (loss > start_loss) | (table["state"] != "complete").to_numpy()
    first_trains = np.flatnonzero(trains)[0]
    first_diverges = first_trains + np.flatnonzero(diverges[first_trains:])[0]
    assert trains[first_trains:first_diverges].sum() >= 5, "the stable range is one stretch of rates"
    return rates[first_trains], rates[np.flatnonzero(trains)[-1]], rates[first_diverges]


@pytest.fixture(scope="module", params=["sgd", "adam"])
def case(request, binary_data, tmp_path_factory):
    """(optimizer, LRFind written into a run folder, that folder, the measured stable range)."""
    run_dir = tmp_path_factory.mktemp(f"lr_find_{request.param}")
    found = sweeps.lr_find(binary_data, model=MODEL, optimizer=request.param, **RANGE, run_dir=run_dir)
    return request.param, found, run_dir, stable_range(binary_data, request.param, found.start_loss)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_the_suggestion_lies_in_the_measured_stable_range(case):
    optimizer, found, _, (low, high, diverges) = case
    assert low <= found.suggestion <= high, (optimizer, found.suggestion, (low, high))
    assert found.max_stable < diverges, (optimizer, found.max_stable, diverges)
    assert found.range == (found.suggestion, found.max_stable) and found.suggestion < found.max_stable
    assert found.vectorized.diverged_at is not None and found.max_stable < found.vectorized.diverged_at
    # The classic single run finds the same region and stops itself once its loss explodes.
    classic = found.classic
    assert low <= classic.suggestion <= high, (optimizer, classic.suggestion, (low, high))
    assert classic.stopped_at is not None and classic.stopped_at < RANGE["max_lr"]
    assert np.all(np.isfinite(classic.losses[:-1])) and np.all(np.diff(classic.learning_rates) > 0)


def test_the_curves_start_where_the_untrained_model_is(case):
    _, found, _, _ = case
    v = found.vectorized
    assert len(v.learning_rates) == RANGE["points"]
    np.testing.assert_allclose(v.learning_rates[[0, -1]], [RANGE["min_lr"], RANGE["max_lr"]], rtol=1e-6)
    np.testing.assert_allclose(v.losses[0], found.start_loss, rtol=0.01)  # 1e-4 barely moves the weights
    assert found.classic.learning_rates[0] == pytest.approx(RANGE["min_lr"], rel=1e-6)


def test_the_plot_shows_both_curves_and_marks_the_suggestion(case):
    _, found, run_dir, _ = case
    assert (run_dir / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and found.path == run_dir / "lr_find.png"
    written = json.loads((run_dir / "lr_find.json").read_text())
    assert written["range"] == list(found.range) and written["versions"]["jax"] == jax.__version__
    assert len(written["vectorized"]["losses"]) == RANGE["points"]

    ax = draw_lr_find(found).axes[0]
    assert ax.get_xscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    vectorized = next(line for label, line in lines.items() if label.startswith("vectorized: 36 constant rates"))
    classic = next(line for label, line in lines.items() if label.startswith("classic: one run"))
    shown = np.isfinite(found.vectorized.losses) & (found.vectorized.losses <= ax.get_ylim()[1])
    np.testing.assert_allclose(vectorized.get_xdata(), found.vectorized.learning_rates[shown])
    np.testing.assert_allclose(classic.get_xdata(), found.classic.learning_rates)
    suggestion = next(line for label, line in lines.items() if label.startswith("suggestion (steepest descent)"))
    np.testing.assert_allclose(suggestion.get_xdata(), [found.suggestion] * 2)
    stable = next(line for label, line in lines.items() if label.startswith("largest stable rate"))
    np.testing.assert_allclose(stable.get_xdata(), [found.max_stable] * 2)
    assert any(label.startswith("classic's steepest descent") for label in lines)
    band = next(p for p in ax.patches if p.get_label().startswith("suggested range"))
    np.testing.assert_allclose([band.get_x(), band.get_x() + band.get_width()], found.range)  # a Rectangle
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"suggestion (steepest descent) {found.suggestion:.3g}" in legend


def test_a_second_range_compiles_nothing(case, binary_data):
    optimizer, *_ = case
    with log_compilations() as compiled:
        found = sweeps.lr_find(binary_data, model=MODEL, optimizer=optimizer, min_lr=1e-3, max_lr=1e2, points=36)
    assert compiled.count("jit(train_epoch)") == 0 and compiled.count("jit(range_test)") == 0, compiled
    assert found.vectorized.learning_rates[0] == pytest.approx(1e-3)


def test_the_classic_run_is_the_member_trained_alone_with_optax(case, binary_data):
    """The first 30 steps of the classic run equal plain Flax + optax with the same rates and minibatches."""
    optimizer, found, _, _ = case
    p = registry.resolve({"optimizer": optimizer, "hidden": MODEL.hidden})
    steps = 30
    data = binary_data
    total = max(-(-data.n_train // 32), 100)
    rates = geometric_rates(RANGE["min_lr"], RANGE["max_lr"], total)
    opt = reference_optimizer(p, lambda count: rates[count])
    model = MLP(hidden=MODEL.hidden, outputs=1)
    tree = model.init(keys.init_keys(SEED, np.array([0]))[0], jnp.zeros((1, data.n_features)))["params"]
    state = opt.init(tree)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    epochs = [batch_indices(keys.batch_order_key(SEED, e), data.n_train, 32) for e in range(2)]
    indices = jnp.concatenate([e[0] for e in epochs])
    weights = jnp.concatenate([e[1] for e in epochs])

    @jax.jit
    def step(tree, state, idx, w):
        def loss(tree):
            return jnp.sum(loss_fn("binary")(model.apply({"params": tree}, x[idx]), y[idx]) * w) / jnp.sum(w)

        value, grads = jax.value_and_grad(loss)(tree)
        updates, state = opt.update(grads, state, tree)
        return optax.apply_updates(tree, updates), state, value

    expected = []
    for t in range(steps):
        tree, state, value = step(tree, state, indices[t], weights[t])
        expected.append(float(value))
    np.testing.assert_allclose(found.classic.losses[:steps], expected, rtol=2e-5, atol=1e-6)


def test_local_linear_fits_a_line_exactly():
    t = np.linspace(-3, 1, 40)
    value, slope = local_linear(t, 0.5 - 0.2 * t, bandwidth=0.3)
    np.testing.assert_allclose(value, 0.5 - 0.2 * t, atol=1e-9)
    np.testing.assert_allclose(slope, -0.2, atol=1e-9)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"min_lr": 1.0, "max_lr": 0.1}, "min_lr < max_lr must hold, but got (min_lr=1.0, max_lr=0.1)"),
        ({"min_lr": 0.1, "max_lr": 0.1}, "min_lr < max_lr must hold, but got (min_lr=0.1, max_lr=0.1)"),
        ({"min_lr": 0.0}, "min_lr must be a finite number > 0, but got min_lr=0.0"),
        ({"points": 2}, "points must be an integer >= 3, but got points=2"),
        ({"epochs": 0}, "epochs must be an integer >= 1, but got epochs=0"),
        ({"divergence_factor": 1.0}, "divergence_factor must be a finite number > 1, but got divergence_factor=1.0"),
        ({"hparams": {"learning_rate": 0.1}}, "hparams may not set 'learning_rate'"),
        ({"hparams": {"momentun": 0.9}}, "did you mean 'momentum'?"),
        ({"hparams": {"dropout": 1.0}}, "dropout must be in [0, 1), but got dropout=1.0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1 and <= the training rows, but got batch_size=0"),
    ],
)
def test_bad_arguments_are_refused_with_the_rule_and_the_value(binary_data, arguments, message):
    with log_compilations() as compiled, pytest.raises(ValueError) as error:
        sweeps.lr_find(binary_data, **arguments)
    assert message in str(error.value)
    assert compiled.count("jit(train_epoch)") == 0 and compiled.count("jit(range_test)") == 0


# --- sweeps lr-find --------------------------------------------------------------------


def write_config(folder: pathlib.Path) -> pathlib.Path:
    """The synthetic task as a CSV and a config for it: the same shapes as `case`, so nothing compiles again."""
    data = synthetic("binary")
    x = np.concatenate([data.x_train, data.x_val])
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    frame["label"] = np.where(np.concatenate([data.y_train, data.y_val]) > 0, "yes", "no")
    frame.to_csv(folder / "synthetic.csv", index=False)
    config = folder / "small.toml"
    config.write_text(
        '[data]\npath = "synthetic.csv"\ntarget = "label"\n\n[model]\nhidden = [16]\n\n'
        "[space]\nlearning_rate = { loguniform = [1e-4, 1e-1] }\n\n"
        '[train]\noptimizer = "sgd"\nbatch_size = 32\nepochs = 20\n'
    )
    return config


def test_cli_prints_the_range_and_the_plot(tmp_path, capsys):
    config = write_config(tmp_path)
    out = tmp_path / "found"
    code = main(["lr-find", str(config), "--min-lr", "1e-4", "--max-lr", "1e3", "--points", "36", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    lines = printed.out.splitlines()
    assert lines[0].startswith("lr-find: ")
    assert "MLP hidden [16] relu, sgd, batch 32; 36 rates from 0.0001 to 1000" in lines[0]
    found = json.loads((out / "lr_find.json").read_text())
    low, high = found["range"]
    assert f"suggested learning rate range: {low:.3g} to {high:.3g}" in lines
    assert any(line.startswith("  classic (one run, ") for line in lines)
    assert lines[-1] == f"plot: {out / 'lr_find.png'}" and (out / "lr_find.png").is_file()
    assert found["settings"]["optimizer"] == "sgd" and found["settings"]["epochs"] == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--min-lr", "1", "--max-lr", "0.1"], "min_lr < max_lr must hold, but got (min_lr=1.0, max_lr=0.1)"),
        (["--points", "2"], "points must be an integer >= 3, but got points=2"),
        (["--epochs", "0"], "epochs must be an integer >= 1, but got epochs=0"),
    ],
)
def test_cli_refuses_bad_arguments_before_reading_the_data(tmp_path, capsys, monkeypatch, flags, message):
    config = write_config(tmp_path)
    monkeypatch.setattr(sweeps.cli.config_schema, "load_csv", lambda *a, **k: pytest.fail("the data was read"))
    assert main(["lr-find", str(config), *flags]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_cli_refuses_a_swept_hyperparameter(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path)
    monkeypatch.setattr(sweeps.cli.config_schema, "load_csv", lambda *a, **k: pytest.fail("the data was read"))
    assert main(["lr-find", str(config), "--set", "space.dropout=[0.0, 0.5]"]) == 2
    err = capsys.readouterr().err
    assert "lr-find trains one configuration, but [space] sweeps dropout ([0.0, 0.5])" in err
    assert "--set space.dropout=VALUE" in err
