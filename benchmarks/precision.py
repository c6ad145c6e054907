"""Mixed precision (issue 25): what `precision="bfloat16"` does to the best trial and to the speed of an epoch.

Two parts, each in float32 and in bfloat16:

- `quality`: the README's first example, the churn_lr sweep (data/examples/churn_lr.toml: the churn MLP 45 -> 64 -> 1,
  64 learning rates log-spaced over 1e-4..1, Adam, 20 epochs, batch 32) through `sweeps.run`: the best trial's
  (by val_loss) val_loss, val_auc and val_accuracy, and the run's wall seconds (compile included);
- `throughput`: the lesson workload (the same MLP at batch 32, N learning rates over 1e-4..1e-1, as
  benchmarks/throughput.py trains it) as one population of N through the engine's compiled epoch: model-epochs/s
  of the median of `--repeats` timed epochs after a warm-up one (compile excluded).

`--moments bfloat16` is the experiment behind keeping the optimizer's moments float32: Adam's first moment stored
in bfloat16 (optax's `mu_dtype`; optax keeps the second in float32), in this process only: the library offers no
such option (benchmarks/README.md, "Mixed precision").

    python benchmarks/precision.py                          # both parts, both precisions, N 64 256
    python benchmarks/precision.py --part quality --moments bfloat16
    python benchmarks/precision.py --part throughput --n 64 256 --repeats 7

This file is never imported by the library. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from machine import device_name, engine_commit
from workloads import CHURN, SEED, Workload, learning_rates, lesson_data

import sweeps
from models import MLP
from sweeps import space
from sweeps.engine import Controls, Split, init_population, keys, make_train_epoch, stack_hparams
from sweeps.engine.precision import PRECISIONS


def bfloat16_first_moments() -> None:
    """Adam's first moment kept in bfloat16 from now on, in this process (the registry entry replaced)."""
    from sweeps.engine.hparams import OPTIMIZERS  # the registry itself: replaced in place, read by every step

    def build(hp, lr):
        return optax.adam(lr, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], mu_dtype=jnp.bfloat16)

    OPTIMIZERS["adam"] = dataclasses.replace(OPTIMIZERS["adam"], build=build)


def quality(precision: str) -> dict:
    """The churn_lr example sweep in `precision`: its best trial's metrics and the run's wall seconds."""
    data = sweeps.load_csv(CHURN, target="Churn")
    start = time.perf_counter()
    result = sweeps.run(
        data,
        model=MLP(hidden=(64,), activation="relu"),
        space={"learning_rate": space.loguniform(1e-4, 1.0)},
        strategy=sweeps.Grid(n=64),
        optimizer="adam",
        epochs=20,
        batch_size=32,
        precision=precision,
        plots=False,
    )
    wall = time.perf_counter() - start
    best = result.best()
    table = result.table
    return {
        "best_trial": int(best["number"]),
        "best_learning_rate": float(best["params_learning_rate"]),
        "best_epoch": int(best["best_epoch"]),
        "val_loss": float(best["best_val_loss"]),
        "val_auc": float(best["best_val_auc"]),
        "val_accuracy": float(best["best_val_accuracy"]),
        "diverged": int((table["state"] == "diverged").sum()),
        "wall_s": round(wall, 2),
        "compile_s": result.config["compile_s"],
    }


def throughput(workload: Workload, precision: str, n: int, repeats: int) -> dict:
    """Model-epochs/s of N lesson members in one population: the median of `repeats` timed epochs after a warm-up."""
    data = workload.data
    structure = dataclasses.replace(workload.structure(), precision=precision)
    params = workload.trial_params(learning_rates(n))
    train = Split(jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    val = Split(jnp.asarray(data.x_val), jnp.asarray(data.y_val))
    controls = Controls(jnp.float32(np.inf), jnp.int32(1), jnp.float32(0.0), jnp.float32(data.y_std))
    pop = init_population(structure, stack_hparams(params, n), np.arange(n), SEED)
    start = time.perf_counter()
    program = make_train_epoch(structure).lower(pop, train, val, keys.batch_order_key(SEED, 0), controls).compile()
    compile_s = time.perf_counter() - start
    times = []
    for epoch in range(repeats + 1):  # the first is the warm-up
        start = time.perf_counter()
        pop, metrics = program(pop, train, val, keys.batch_order_key(SEED, epoch), controls)
        jax.block_until_ready((pop, metrics))
        times.append(time.perf_counter() - start)
    epoch_s = statistics.median(times[1:])
    return {
        "n": n,
        "model_epochs_per_s": round(n / epoch_s, 1),
        "epoch_s": round(epoch_s, 4),
        "epoch_s_all": [round(t, 4) for t in times[1:]],
        "compile_s": round(compile_s, 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("quality", "throughput", "all"), default="all")
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--n", nargs="+", type=int, default=[64, 256], help="population sizes (throughput)")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per N (throughput)")
    parser.add_argument("--moments", choices=PRECISIONS, default="float32", help="Adam's first moment (experiment)")
    args = parser.parse_args(argv)
    if args.moments == "bfloat16":
        bfloat16_first_moments()
    header = {"device": device_name(), "jax": jax.__version__, "commit": engine_commit(), "moments": args.moments}
    print(json.dumps(header), flush=True)
    if args.part in ("quality", "all"):
        for precision in args.precision:
            print(json.dumps({"part": "quality", "precision": precision, **quality(precision)}), flush=True)
    if args.part in ("throughput", "all"):
        workload = Workload("lesson", (64,), 32, lesson_data)
        for n in args.n:
            for precision in args.precision:
                row = throughput(workload, precision, n, args.repeats)
                print(json.dumps({"part": "throughput", "precision": precision, **row}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
