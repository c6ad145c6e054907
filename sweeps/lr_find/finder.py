"""`sweeps.lr_find`: the learning-rate range test, two ways, side by side.

- **Vectorized**: `points` constant learning rates, log-spaced from `min_lr` to `max_lr`, trained
  together for `epochs` epochs as one population through `sweeps.run`. Every rate starts from the
  same weights and sees the same minibatches (common random numbers), so the curve of the last
  epoch's training loss against the rate shows the rate's effect alone.
- **Classic** (Leslie Smith, 2015): one model trained for as many minibatches (at least 100) while its
  rate grows by the same factor every step from `min_lr` to `max_lr`; the loss of every minibatch
  is recorded, and the run stops itself once its smoothed loss explodes past `divergence_factor`
  times its best (`sweeps/engine/lr_range.py`, one jitted scan).

Both curves are read the same way (`sweeps/lr_curve.py`, `analyse`): the loss is smoothed against log10 of the rate (a
local linear fit with a Gaussian window: `smoothing` decades for the classic run's noisy minibatch
losses, half the spacing of the rates for the vectorized curve, whose points are whole epochs); the
*suggestion* is the rate where the smoothed loss falls fastest (its steepest negative slope), among
the rates up to its minimum; a rate *diverges* where, past the minimum, its loss (the classic run's:
smoothed) is not finite or rises above `divergence_factor` times the best or above the untrained
model's loss; `max_stable` is the largest rate before the first that diverges. The result's
`suggestion`, `max_stable` and `range` are the vectorized curve's: each of its points is a whole
training at one rate, from the same start, so it is the steadier estimate; the classic curve's own
numbers are in `result.classic`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from models import MLP
from sweeps import space as axes
from sweeps.data import Dataset, check_batch_size
from sweeps.engine import (
    Split,
    batch_indices,
    geometric_rates,
    init_population,
    keys,
    make_mean_loss,
    make_range_test,
    stack_hparams,
    structure_of,
)
from sweeps.engine import hparams as registry
from sweeps.lr_find.curve import Curve, analyse
from sweeps.planning.checks import check_int, check_model
from sweeps.strategies import Grid
from sweeps.sweep import run, versions

PLOT_FILE = "lr_find.png"
JSON_FILE = "lr_find.json"
CLASSIC_BETA = 0.98  # the classic run's stopping rule smooths its loss like fastai's LRFinder
CLASSIC_MIN_STEPS = 100  # the classic run takes at least this many steps (more epochs of minibatches if needed)
# Set by lr_find's own arguments, so refused in `hparams`.
OWN_ARGUMENTS = ("learning_rate", "epochs", "schedule", "optimizer", "batch_size", "hidden", "activation")


@dataclasses.dataclass(frozen=True)
class LRFind:
    """The result of `lr_find`: both curves, the suggested range, the settings and the plot's path.

    Attributes:
      vectorized: the population of constant rates (its analysis gives `suggestion` and `max_stable`).
      classic: the single run with a growing rate, or None when it was not run.
      start_loss: the untrained model's mean training loss (every member and the classic run start there).
      settings: the arguments that decided the curves.
      wall_s: seconds from the call to the result, compilation included.
      path: the PNG written into `run_dir`, or None.
    """

    vectorized: Curve
    classic: Curve | None
    start_loss: float
    settings: dict[str, Any]
    wall_s: float
    path: Path | None = None

    @property
    def suggestion(self) -> float:
        """The rate where the loss falls fastest (the vectorized curve's steepest descent)."""
        return self.vectorized.suggestion

    @property
    def max_stable(self) -> float:
        """The largest rate before divergence (the vectorized curve's)."""
        return self.vectorized.max_stable

    @property
    def range(self) -> tuple[float, float]:
        """(low, high): from where the loss falls fastest to the largest rate before divergence."""
        return self.suggestion, self.max_stable

    def plot(self, path: str | Path) -> Path:
        """Draws both curves, the suggestion and the range into a PNG at `path`; returns the path."""
        from sweeps.results.plots.lr_find import plot_lr_find  # matplotlib only when drawing

        return plot_lr_find(self, Path(path))

    def summary(self) -> list[str]:
        """What the CLI prints: the range, both methods' numbers, and a hint when the range was too narrow."""
        low, high = self.range
        v, c = self.vectorized, self.classic
        lines = [f"suggested learning rate range: {low:.3g} to {high:.3g}"]
        lines.append(
            f"  vectorized ({len(v.learning_rates)} constant rates, {self.settings['epochs']} epoch(s)): "
            f"steepest descent at {v.suggestion:.3g}, largest stable rate {v.max_stable:.3g}, "
            + (f"first diverging {v.diverged_at:.3g}" if v.diverged_at is not None else "none diverged")
        )
        if c is not None:
            stop = f"; the run stopped itself at {c.stopped_at:.3g}" if c.stopped_at is not None else ""
            lines.append(
                f"  classic (one run, {len(c.learning_rates)} steps of a growing rate): steepest descent at "
                f"{c.suggestion:.3g}, largest stable rate {c.max_stable:.3g}, "
                + (f"first diverging {c.diverged_at:.3g}" if c.diverged_at is not None else "none diverged")
                + stop
            )
        if v.diverged_at is None:
            lines.append(f"  no rate up to max_lr={self.settings['max_lr']:g} diverged: raise it to find the limit")
        if v.suggestion == v.learning_rates[0]:
            lines.append(f"  the loss falls fastest at min_lr={self.settings['min_lr']:g}: lower it")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "suggestion": self.suggestion,
            "max_stable": self.max_stable,
            "range": list(self.range),
            "start_loss": self.start_loss,
            "settings": self.settings,
            "wall_s": self.wall_s,
            "vectorized": self.vectorized.to_json(),
            "classic": None if self.classic is None else self.classic.to_json(),
        }


def lr_find(
    data: Dataset,
    *,
    model: MLP | None = None,
    optimizer: str = "adam",
    batch_size: int = 32,
    epochs: int = 1,
    min_lr: float = 1e-6,
    max_lr: float = 10.0,
    points: int = 64,
    hparams: Mapping[str, Any] | None = None,
    seed: int = 0,
    divergence_factor: float = 4.0,
    smoothing: float = 0.25,
    classic: bool = True,
    run_dir: str | Path | None = None,
) -> LRFind:
    """The learning-rate range test: a population of constant rates and Smith's growing-rate run, side by side.

    Args:
      data: a `Dataset` (`sweeps.load_csv`).
      model: the network; default `MLP(hidden=(64,), activation="relu")`.
      optimizer, batch_size: the optimizer family and minibatch size, as in `sweeps.run`.
      epochs: the budget: each constant rate trains this many epochs; the classic run takes as many minibatches
        (at least `CLASSIC_MIN_STEPS`, 100, running on into further epochs where one is shorter).
      min_lr, max_lr: the range tested, 0 < min_lr < max_lr.
      points: constant rates in the vectorized population (log-spaced, ends included), >= 3.
      hparams: fixed values of other traced hyperparameters, e.g. `{"momentum": 0.9, "dropout": 0.1}`.
      seed: the sweep seed: the initial weights (shared by every rate and the classic run) and minibatch order.
      divergence_factor: a loss above this many times the best (smoothed) loss counts as diverged (> 1).
      smoothing: the classic curve's smoothing window (a Gaussian's standard deviation), in decades of
        learning rate (> 0). The vectorized curve, each point a whole epoch's mean, is only smoothed
        enough to take its slope: a window of half the spacing between its rates.
      classic: also run the classic single growing-rate test.
      run_dir: a folder to write `lr_find.png` and `lr_find.json` into (created if missing); None writes nothing.

    Returns:
      An `LRFind`: `suggestion`, `max_stable`, `range`, both curves, `plot(path)`.

    Examples:
      >>> import numpy as np, sweeps
      >>> from models import MLP
      >>> x = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
      >>> y = (x @ np.array([1.0, -1.0, 0.5, 0.0]) > 0).astype(np.float32)
      >>> data = sweeps.Dataset.from_arrays(x[:240], y[:240], x[240:], y[240:], task="binary")
      >>> found = sweeps.lr_find(data, model=MLP(hidden=(8,)), optimizer="sgd", min_lr=1e-3, max_lr=1e3, points=16)
      >>> low, high = found.range
      >>> bool(low < high < found.vectorized.diverged_at)
      True
    """
    started = time.perf_counter()
    model = MLP() if model is None else model
    fixed = check_lr_find(data, model, optimizer, batch_size, epochs, min_lr, max_lr, points, hparams)
    check_factors(divergence_factor, smoothing)
    hp = registry.resolve(
        {"optimizer": optimizer, "batch_size": batch_size, "hidden": model.hidden, "activation": model.activation}
        | {"epochs": epochs, **fixed}
    )
    structure = structure_of(hp, data)
    pop = init_population(structure, stack_hparams([hp], 1), np.array([0]), seed, key_indices=np.array([0]))
    member = jax.tree.map(lambda a: a[0], (pop.params, pop.opt_state, pop.hparams, pop.dropout_key))
    train = Split(jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    start_loss = float(make_mean_loss(structure)(member[0], train))

    rates, losses = vectorized_losses(data, model, optimizer, batch_size, epochs, min_lr, max_lr, points, fixed, seed)
    vectorized = analyse("vectorized", rates, losses, start_loss, divergence_factor, smoothing=0.0)
    found_classic = None
    if classic:
        rates, losses, stopped = classic_losses(
            structure, member, train, epochs, min_lr, max_lr, seed, divergence_factor
        )
        found_classic = analyse("classic", rates, losses, start_loss, divergence_factor, smoothing)
        found_classic = dataclasses.replace(found_classic, stopped_at=float(rates[-1]) if stopped else None)
    settings = {
        "model": {"hidden": list(model.hidden), "activation": model.activation},
        "optimizer": optimizer,
        "batch_size": batch_size,
        "epochs": epochs,
        "min_lr": float(min_lr),
        "max_lr": float(max_lr),
        "points": points,
        "hparams": dict(fixed),
        "seed": seed,
        "divergence_factor": float(divergence_factor),
        "smoothing": float(smoothing),
        "data": str(data.source),
    }
    found = LRFind(vectorized, found_classic, start_loss, settings, round(time.perf_counter() - started, 3))
    if run_dir is not None:
        found = write(found, Path(run_dir))
    return found


def vectorized_losses(data, model, optimizer, batch_size, epochs, min_lr, max_lr, points, fixed, seed):
    """`points` constant rates trained as one population (`sweeps.run`): (rates, last epoch's train loss).

    A member the engine marked diverged (its loss or weights stopped being finite) gets an infinite loss.
    """
    result = run(
        data,
        model=model,
        space={"learning_rate": axes.loguniform(min_lr, max_lr), **fixed},
        strategy=Grid(n=points),
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        divergence_threshold=None,  # keep training whatever is finite: the curve shows how far it climbs
    )
    table = result.table.sort_values("params_learning_rate")
    losses = np.where(table["state"] == "complete", table["final_train_loss"].to_numpy(float), np.inf)
    return table["params_learning_rate"].to_numpy(float), losses


def classic_losses(structure, member, train: Split, epochs, min_lr, max_lr, seed, divergence_factor):
    """Smith's single run: (rates, losses) of every minibatch until it stopped, and whether it stopped itself.

    It takes `epochs` epochs of minibatches in the sweep's order (`keys.batch_order_key`), or as many
    more epochs as `CLASSIC_MIN_STEPS` needs, its rate growing geometrically from `min_lr` to `max_lr`.
    """
    params, opt_state, hp, dropout_key = member
    n_rows, batch_size = int(train.x.shape[0]), structure.batch_size
    steps_per_epoch = -(-n_rows // batch_size)
    steps = max(epochs * steps_per_epoch, CLASSIC_MIN_STEPS)
    batches = [
        batch_indices(keys.batch_order_key(seed, epoch), n_rows, batch_size)
        for epoch in range(-(-steps // steps_per_epoch))
    ]
    indices = jnp.concatenate([b[0] for b in batches])[:steps]
    weights = jnp.concatenate([b[1] for b in batches])[:steps]
    rates = geometric_rates(min_lr, max_lr, steps)
    losses = make_range_test(structure)(
        params,
        opt_state,
        hp,
        dropout_key,
        train,
        indices,
        weights,
        rates,
        jnp.float32(CLASSIC_BETA),
        jnp.float32(divergence_factor),
    )
    losses = np.asarray(losses, np.float64)
    stopped = bool(np.isnan(losses).any())
    ran = int(np.argmax(np.isnan(losses))) if stopped else len(losses)
    return np.asarray(rates, np.float64)[:ran], losses[:ran], stopped


def check_range(min_lr: Any, max_lr: Any, points: Any, epochs: Any) -> None:
    """The range test's own arguments, refused with the rule and the value (before anything loads or compiles)."""
    for name, value in (("min_lr", min_lr), ("max_lr", max_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, but got {name}={value!r}")
    if not min_lr < max_lr:
        raise ValueError(f"min_lr < max_lr must hold, but got (min_lr={min_lr!r}, max_lr={max_lr!r})")
    check_int("points", points, 3)
    check_int("epochs", epochs, 1)


def check_factors(divergence_factor: Any, smoothing: Any) -> None:
    for name, value, low in (("divergence_factor", divergence_factor, 1.0), ("smoothing", smoothing, 0.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > low):
            raise ValueError(f"{name} must be a finite number > {low:g}, but got {name}={value!r}")


def check_lr_find(data, model, optimizer, batch_size, epochs, min_lr, max_lr, points, hparams) -> dict[str, Any]:
    """Every argument of `lr_find` checked; returns the fixed `hparams`, normalized."""
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a sweeps.Dataset (from sweeps.load_csv), but got {type(data).__name__}")
    check_model(model)
    if type(model) is not MLP:
        raise ValueError(
            f"lr_find takes the built-in models.MLP (model=MLP(hidden=..., activation=...)), not "
            f"{type(model).__qualname__}: the range test of your own model is not built yet; sweep the learning rate "
            "of your model with sweeps.run(data, model=..., space={'learning_rate': space.loguniform(1e-5, 1)})"
        )
    check_range(min_lr, max_lr, points, epochs)
    registry.check_value("optimizer", optimizer)
    registry.check_value("batch_size", batch_size)
    check_batch_size(data, batch_size)
    fixed = {}
    for name, value in dict(hparams or {}).items():
        registry.check_name(name, where="hparams")
        if name in OWN_ARGUMENTS:
            raise ValueError(
                f"hparams may not set {name!r}: lr_find sets the learning rate and trains at constant rates for "
                f"`epochs`; pass optimizer=, batch_size=, epochs= and model=MLP(hidden=..., activation=...) instead"
            )
        fixed[name] = registry.normalize(name, value)
        registry.check_value(name, fixed[name])
    return fixed


def write(found: LRFind, run_dir: Path) -> LRFind:
    """Writes `lr_find.png` and `lr_find.json` into `run_dir`; returns the result with its `path`."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = found.plot(run_dir / PLOT_FILE)
        (run_dir / JSON_FILE).write_text(json.dumps({**found.to_json(), "versions": versions()}, indent=1) + "\n")
    except OSError as e:
        raise ValueError(
            f"cannot write the range test into {run_dir}: {e.strerror or e}; pass a folder you can write to"
        ) from e
    return dataclasses.replace(found, path=path)
