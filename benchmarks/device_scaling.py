"""Throughput against the device count: one population sharded over 1, 2, 4, 8 ... devices.

`python benchmarks/throughput.py --devices [COUNT ...]` runs this. For each device count it
builds populations of N members directly into the sharding the sweep uses (`sweeps.driver.devices`:
the trial axis split over a one-axis mesh, the data replicated), runs the engine's compiled
epoch, and fetches the metrics to the host after every epoch, as the sweep loop does.

On a CPU the devices are forced host devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=COUNT`), one subprocess per count since the
flag must be set before JAX starts: they share the same cores, so the table shows what
splitting costs, not a speed-up. On an accelerator machine the counts are subsets of its cards,
measured in one process.

This file is never imported by the library.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CPU_COUNTS = (1, 2, 4, 8)
CPU_NS = (64, 256, 1024)


def measure(count: int, workload_name: str, ns: list[int], epochs: int) -> list[dict[str, Any]]:
    """Rows for one device count, in this process (its JAX must see at least `count` devices)."""
    import jax
    import numpy as np
    from machine import device_name, engine_commit
    from workloads import SEED, learning_rates, make_workloads

    from sweeps.driver.devices import select_devices
    from sweeps.driver.populations import controls_for
    from sweeps.engine import PADDING, Split, keys, make_train_epoch, stack_hparams

    layout = select_devices(count)
    workload = make_workloads()[workload_name]
    data = workload.data
    structure = workload.structure()
    splits = layout.replicate(
        jax.tree.map(np.asarray, (Split(data.x_train, data.y_train), Split(data.x_val, data.y_val)))
    )
    controls = controls_for(data, None, None)
    epoch_fn = make_train_epoch(structure)
    rows = []
    for n in ns:
        size = layout.pad(n)
        hparams = stack_hparams(workload.trial_params(learning_rates(n)), size)
        numbers = np.where(np.arange(size) < n, np.arange(size), PADDING)
        pop = layout.init_population(structure, hparams, numbers, SEED, np.maximum(numbers, 0))
        jax.block_until_ready(pop)
        order = [keys.batch_order_key(SEED, e) for e in range(epochs + 1)]
        start = time.perf_counter()
        program = epoch_fn.lower(pop, *splits, order[0], controls).compile()
        compile_s = time.perf_counter() - start
        times = []
        for e in range(epochs + 1):  # the first epoch warms up and is not timed
            start = time.perf_counter()
            pop, metrics = program(pop, *splits, order[e], controls)
            layout.fetch(metrics)  # what the loop does after every epoch
            times.append(time.perf_counter() - start)
        del pop
        epoch_s = statistics.median(times[1:])
        rows.append(
            {
                "workload": workload_name,
                "mode": "vmap-sharded",
                "devices": layout.count,
                "device": device_name(),
                "n": n,
                "population": size,
                "per_device": size // layout.count,
                "epochs": epochs,
                "epoch_s": epoch_s,
                "model_epochs_per_s": n / epoch_s,
                "compile_s": compile_s,
                "warmup_epoch_s": times[0],
                "jax": jax.__version__,
                "cpus": os.cpu_count(),
                "loadavg_1m": os.getloadavg()[0],
                "engine_commit": engine_commit(),
            }
        )
        print(
            f"  devices {layout.count}  N={n:<6} {n / epoch_s:9.4g} model-epochs/s  compile {compile_s:.2f} s",
            file=sys.stderr,
            flush=True,
        )
    return rows


def run(counts: list[int] | None, workload: str, ns: list[int] | None, epochs: int, out: Path) -> list[dict]:
    """Every count's rows: subprocesses with forced host devices on a CPU, subsets of the cards elsewhere."""
    import jax

    accelerator = jax.default_backend() != "cpu"
    if accelerator:
        available = len(jax.devices())
        counts = counts or sorted({2**i for i in range(available.bit_length()) if 2**i <= available} | {available})
        ns = ns or [1024, 4096, 16384]
        rows = [row for count in counts for row in measure(count, workload, ns, epochs)]
    else:
        counts, ns = counts or list(CPU_COUNTS), ns or list(CPU_NS)
        rows = []
        for count in counts:
            env = {
                **os.environ,
                "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}",
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]),
            }
            print(f"{count} forced host device{'s' * (count != 1)} (a subprocess)", flush=True)
            args = [str(count), workload, json.dumps(ns), str(epochs)]
            done = subprocess.run(
                [sys.executable, __file__, *args], env=env, stdout=subprocess.PIPE, text=True, check=True
            )
            rows += [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    base = {r["n"]: r["model_epochs_per_s"] for r in rows if r["devices"] == min(counts)}
    for row in rows:
        row["vs_fewest_devices"] = row["model_epochs_per_s"] / base[row["n"]] if row["n"] in base else None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def markdown(rows: list[dict]) -> str:
    fewest = min(r["devices"] for r in rows)
    lines = [
        f"| devices | N | members per device | model-epochs/s | vs {fewest} device{'s' * (fewest != 1)} "
        "| epoch s | compile s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["n"], r["devices"])):
        ratio = f"{r['vs_fewest_devices']:.2f}x" if r.get("vs_fewest_devices") else "-"
        lines.append(
            f"| {r['devices']} | {r['n']} | {r['per_device']} | {r['model_epochs_per_s']:.3g} | {ratio} "
            f"| {r['epoch_s']:.3g} | {r['compile_s']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # the worker of one count: JSON rows on stdout
    count, workload_name, ns_json, epochs = sys.argv[1:5]
    for row in measure(int(count), workload_name, json.loads(ns_json), int(epochs)):
        print(json.dumps(row), flush=True)
