"""64 learning rates of a small CNN on scikit-learn's 8x8 digits, trained at once as one vectorized population.

    python -m pip install scikit-learn            # or: python -m pip install -e ".[dev]"
    python examples/digits_cnn.py                 # 64 learning rates x 10 epochs -> runs/digits_cnn
    python examples/digits_cnn.py --quick         # 4 learning rates x 1 epoch on 300 images: does it run?

The data: scikit-learn's bundled digits (1,797 images of 8x8 pixels, values 0..16, ten classes), scaled to
[0, 1] and shaped (rows, 8, 8, 1). `sweeps.Dataset.from_arrays` splits them for us, 80/20 stratified by class.
The model: `models.CNN` (two 3x3 convolutions with ReLU, 2x2 max pooling, a dense layer, a 10-way head), your
own Flax Linen module as far as the engine is concerned. Every trial starts from the same weights and sees the
same minibatches, so the trials differ by their learning rate only. The best trial is chosen on validation
accuracy, so its number is an optimistic estimate of new digits (`test_fraction=0.1` in `from_arrays` holds out
rows that choose nothing). The command line cannot read arrays (its `[data]` is a CSV file), so this sweep is a
Python script, not a config file.

A run keeps its folder: `sweeps report runs/digits_cnn` draws the plots again, and
`sweeps.load_model("runs/digits_cnn").predict(images)` labels new (rows, 8, 8, 1) images.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

import sweeps
from models import CNN
from sweeps import space


def digits(rows: int | None = None) -> sweeps.Dataset:
    """scikit-learn's digits as a multiclass `Dataset` of (rows, 8, 8, 1) float32 images in [0, 1]; the first
    `rows` images only when given."""
    from sklearn.datasets import load_digits  # the one dependency beyond sweepax: pip install scikit-learn

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1)
    y = bunch.target  # (1797,) ints 0..9
    if rows is not None:
        x, y = x[:rows], y[:rows]
    return sweeps.Dataset.from_arrays(x, y, task="multiclass")  # 80% train, 20% validation, stratified


def sweep(
    trials: int = 64,
    epochs: int = 10,
    rows: int | None = None,
    batch_size: int = 32,
    run_dir: str = "runs/digits_cnn",
) -> tuple[sweeps.Result, float]:
    """Trains `trials` learning rates, log-spaced from 1e-4 to 1e-1, for `epochs` epochs each; returns the result
    and the wall seconds of `sweeps.run` (compilation included). A run already in `run_dir` is replaced."""
    data = digits(rows)
    started = time.perf_counter()
    result = sweeps.run(
        data,
        model=CNN(channels=(16, 32), dense=64, classes=10),
        space={"learning_rate": space.loguniform(1e-4, 1e-1)},
        strategy=sweeps.Grid(n=trials),
        optimizer="adam",
        epochs=epochs,
        batch_size=batch_size,
        objective="val_accuracy",
        run_dir=run_dir,
        overwrite=True,
    )
    return result, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=64, help="learning rates (default 64)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial (default 10)")
    parser.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    parser.add_argument("--out", default="runs/digits_cnn", help="the run folder (default runs/digits_cnn)")
    parser.add_argument("--quick", action="store_true", help="4 learning rates x 1 epoch on 300 images")
    args = parser.parse_args(argv)
    trials, epochs, rows = (4, 1, 300) if args.quick else (args.trials, args.epochs, None)
    result, wall_s = sweep(trials, epochs, rows, args.batch_size, args.out)
    best = result.best()
    complete = int((result.table["state"] == "complete").sum())
    print(f"{len(result.table)} learning rates x {epochs} epochs, {complete} complete, in {wall_s:.1f} s")
    print(
        f"best: trial {int(best['number'])}, learning_rate {best['params_learning_rate']:.3g}, epoch "
        f"{int(best['best_epoch'])}: val_accuracy {best['best_val_accuracy']:.4f}, val_loss {best['best_val_loss']:.4f}"
    )
    print(f"run folder: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
