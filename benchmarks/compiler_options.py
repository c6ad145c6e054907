"""The engine's CPU compiler options against a variant, epochs alternated in one process.

Two compiled epochs of the lesson model (45 -> 64 -> 1, batch 32, N learning rates), one with the
engine's options (`sweeps.engine.compiler.CPU_COMPILER_OPTIONS`) and one with them changed, train
their own populations epoch by epoch in alternation, so a slow phase of the machine hits both.
Prints the median epoch of each (after two warm-up epochs) and the sum of the last validation
losses (equal sums: the same numbers; a different sum: a different rounding somewhere).

    python benchmarks/compiler_options.py --n 18 64 256 --drop xla_cpu_experimental_ynn_fusion_type
    python benchmarks/compiler_options.py --n 256 --set xla_cpu_copy_insertion_use_region_analysis=true

This file is never imported by the library. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import numpy as np
from engine_modes import Engine
from machine import device_name
from workloads import learning_rates, make_workloads

from sweeps.engine import epoch_function
from sweeps.engine.compiler import CPU_COMPILER_OPTIONS


def parse_setting(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[18, 64, 256])
    parser.add_argument("--set", nargs="*", default=[], help="NAME=VALUE options of the variant")
    parser.add_argument("--drop", nargs="*", default=[], help="engine options the variant leaves at XLA's default")
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    variant = {k: v for k, v in CPU_COMPILER_OPTIONS.items() if k not in args.drop}
    variant.update(parse_setting(s) for s in args.set)
    options = {"engine": dict(CPU_COMPILER_OPTIONS), "variant": variant}
    print(f"{device_name()}, jax {jax.__version__}")
    for name, opts in options.items():
        print(f"  {name}: {opts}")
    workload = make_workloads()["lesson"]
    engine = Engine(workload, traffic=False)
    for n in args.n:
        runs = {}
        for name, opts in options.items():
            fn = jax.jit(
                epoch_function(workload.structure(), None, "val_loss"),
                donate_argnums=(0,),
                compiler_options=opts,
            )
            runs[name] = [fn, engine.population(learning_rates(n))[0], [], None]
        for epoch in range(args.epochs):
            for run in runs.values():
                start = time.perf_counter()
                run[1], metrics = run[0](run[1], engine.train, engine.val, engine.order_key(epoch), engine.controls)
                run[3] = float(np.asarray(metrics["val_loss"]).sum())
                run[2].append(time.perf_counter() - start)
        line = "  ".join(
            f"{name} {statistics.median(run[2][2:]) * 1e3:7.1f} ms (val_loss sum {run[3]:.5f})"
            for name, run in runs.items()
        )
        ratio = statistics.median(runs["engine"][2][2:]) / statistics.median(runs["variant"][2][2:])
        print(f"N = {n:5d}: {line}  engine / variant {ratio:.2f}", flush=True)


if __name__ == "__main__":
    main()
