"""A Flax NNX MLP with layer norm and dropout on the shipped churn data: learning rate and a call hyperparameter.

    python examples/churn_nnx.py                  # 16 random trials x 5 epochs -> runs/churn_nnx
    python examples/churn_nnx.py --quick          # 4 trials x 1 epoch: does it run?

The model is NNX's, given as what builds it from `rngs` (`functools.partial(NormedMLP, features, width)`):
sweepax builds one per member from the trial's own key under `jax.vmap`, as NNX's ensemble pattern does, and
trains its `nnx.Param` state. Its dropout is built without rngs and takes each member's key when called
(`rngs`); `scale`, a keyword of `__call__` with a number as default, is a call hyperparameter: each member gets
its own value as a traced array, and the space sweeps it by name.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Sequence
from pathlib import Path

from flax import nnx

import sweeps
from sweeps import space

CHURN = Path(__file__).resolve().parents[1] / "data" / "telco_customer_churn.csv"


class NormedMLP(nnx.Module):
    """Linear -> LayerNorm -> relu (times `scale`) -> dropout -> one logit."""

    def __init__(self, features: int, width: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(features, width, rngs=rngs)
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.dropout = nnx.Dropout(0.1)  # no rngs: each member's key comes with the call
        self.head = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, x, *, train: bool = False, rngs=None, scale: float = 1.0):
        h = nnx.relu(self.norm(self.hidden(x))) * scale
        return self.head(self.dropout(h, deterministic=not train, rngs=rngs))


def sweep(trials: int = 16, epochs: int = 5, run_dir: str = "runs/churn_nnx") -> tuple[sweeps.Result, float]:
    """Random search over the learning rate and `scale`; returns the result and the seconds `sweeps.run` took."""
    data = sweeps.load_csv(CHURN, target="Churn")
    started = time.perf_counter()
    result = sweeps.run(
        data,
        model=functools.partial(NormedMLP, data.n_features, 32),
        space={"learning_rate": space.loguniform(1e-4, 1e-1), "scale": space.uniform(0.5, 1.5)},
        strategy=sweeps.Random(n=trials, seed=0),
        epochs=epochs,
        run_dir=run_dir,
        overwrite=True,
    )
    return result, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 trials x 1 epoch")
    parser.add_argument("--run-dir", default="runs/churn_nnx")
    args = parser.parse_args(argv)
    trials, epochs = (4, 1) if args.quick else (16, 5)
    result, seconds = sweep(trials, epochs, args.run_dir)
    best = result.best()
    print(f"{trials} trials x {epochs} epochs in {seconds:.1f} s")
    print(
        f"best: trial {int(best['number'])}, learning_rate {best['params_learning_rate']:.2g}, "
        f"scale {best['params_scale']:.2f}: val_loss {best['best_val_loss']:.4f}, val_auc {best['best_val_auc']:.4f}"
    )
    print(f"run folder: {args.run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
