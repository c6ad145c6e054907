"""The runs through the public `sweeps.run`: the memory run (`--trials`: many lesson trials for one epoch)
and the cold end-to-end comparison (`--end-to-end N`: `sweeps.run` against the torch-vmap ensemble, each
in a fresh process, on the lesson or on `--end-to-end-workload`). Their rows have tables of their own
(`reporting.TABLES_OF_THEIR_OWN`).

Part of `benchmarks/throughput.py`; never imported by the library.
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

import jax
import numpy as np
from machine import current_rss_mb, max_rss_mb, peak_memory_mb, reset_peak_memory
from peer_modes import torch_info, train_torch_ensemble
from workloads import LR_HIGH, LR_LOW, learning_rates, lesson_data, make_workloads

import sweeps
from sweeps import space


def bench_trials(total: int, max_population: int | None) -> dict[str, Any]:
    """`total` lesson trials, one epoch, through the public `sweeps.run`: wall time and peak memory."""
    data = lesson_data()
    rss_before = current_rss_mb()
    reset_peak_memory()
    start = time.perf_counter()
    result = sweeps.run(
        data,
        space={"learning_rate": space.loguniform(1e-5, 1e-1)},
        strategy=sweeps.Grid(n=total),
        epochs=1,
        batch_size=32,
        max_population=max_population,
    )
    wall = time.perf_counter() - start
    peak, source = peak_memory_mb()
    maxrss = max_rss_mb()
    table = result.table
    status = table["state"].value_counts().to_dict() if "state" in table else {}
    return {
        "workload": "lesson",
        "mode": "sweeps.run",
        "n": total,
        "epochs": 1,
        "wall_s": wall,
        "sweep_s": wall,
        "model_epochs_per_s": total / wall,
        "max_population": max_population,
        "groups": result.config.get("groups"),
        "compilations": result.config.get("compilations"),
        "trial_states": {str(k): int(v) for k, v in status.items()},
        "peak_mem_mb": peak,
        "peak_mem_source": source,
        "ru_maxrss_mb": maxrss,
        "rss_before_mb": rss_before,
    }


def bench_end_to_end(n: int, epochs: int, threads: int, workload: str = "lesson") -> dict[str, Any]:
    """`sweeps.run` of n trials of `workload` x epochs against the torch-vmap ensemble, each in a fresh process.

    The sweeps.run process has the persistent compilation cache off (SWEEPS_CACHE_DIR=off, no
    JAX_COMPILATION_CACHE_DIR, JAX_ENABLE_COMPILATION_CACHE=false) and compiles everything it runs.
    Each side is timed inside its process from the loaded `Dataset` to the trained sweep: sweeps.run's
    planning, compilation, training and result table; the ensemble's tensors, construction and epochs
    (the probe that picks its gradient method runs before and is not counted). `process_s` adds the
    Python start and the imports.
    """
    print(f"end to end: {n} {workload} trials x {epochs} epochs, each side in a fresh process")
    engine = in_fresh_process(f"sweeps_run_end_to_end({n}, {epochs}, {workload!r})")
    print(f"  sweeps.run   {engine['seconds']:.1f} s (process {engine['process_s']:.1f} s)")
    peer = in_fresh_process(f"torch_vmap_end_to_end({n}, {epochs}, {threads}, {workload!r})")
    print(f"  torch-vmap   {peer['seconds']:.1f} s (process {peer['process_s']:.1f} s, {threads} threads)")
    ratio = peer["seconds"] / engine["seconds"]
    print(f"  ratio        torch-vmap / sweeps.run = {ratio:.2f}x")
    return {
        "workload": workload,
        "mode": "end-to-end",
        "n": n,
        "epochs": epochs,
        "sweeps_run_s": engine["seconds"],
        "torch_vmap_s": peer["seconds"],
        "ratio": ratio,
        "sweeps_run": engine,
        "torch_vmap": peer,
    }


def in_fresh_process(call: str) -> dict[str, Any]:
    """Evaluates `call` (a call of a function of this module) in a new Python process, cache off; its dict."""
    env = {**os.environ, "SWEEPS_CACHE_DIR": "off", "JAX_ENABLE_COMPILATION_CACHE": "false"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import sweep_runs; "
        f"print(json.dumps(sweep_runs.{call}))"
    )
    loadavg = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{call} failed in its process (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return {
        **json.loads(done.stdout.strip().splitlines()[-1]),
        "process_s": time.perf_counter() - start,
        "loadavg_1m_before": loadavg,
    }


def sweeps_run_end_to_end(n: int, epochs: int, workload: str = "lesson") -> dict[str, Any]:
    """One cold `sweeps.run`: n log-spaced learning rates x epochs of `workload`'s model at its batch size (the
    built-in MLP of its widths, or its own Flax model), run in a fresh process."""
    from models import MLP

    chosen = make_workloads()[workload]
    data = chosen.data
    model = MLP(hidden=chosen.hidden, activation="relu") if chosen.model is None else chosen.model
    start = time.perf_counter()
    result = sweeps.run(
        data,
        model=model,
        space={"learning_rate": space.loguniform(LR_LOW, LR_HIGH)},
        strategy=sweeps.Grid(n=n),
        optimizer="adam",
        epochs=epochs,
        batch_size=chosen.batch_size,
    )
    seconds = time.perf_counter() - start
    rates = np.sort(result.table["params_learning_rate"].to_numpy())
    return {
        "seconds": seconds,
        "compilations": result.config.get("compilations"),
        "groups": result.config.get("groups"),
        "trial_states": {str(k): int(v) for k, v in result.table["state"].value_counts().items()},
        "same_learning_rates": bool(np.allclose(rates, learning_rates(n))),
        "jax_compilation_cache_dir": jax.config.jax_compilation_cache_dir,
    }


def torch_vmap_end_to_end(n: int, epochs: int, threads: int, workload: str = "lesson") -> dict[str, Any]:
    """The torch.func ensemble of n members of `workload` trained `epochs` epochs, end to end (run in a fresh
    process)."""
    record, grad, probe = train_torch_ensemble(make_workloads()[workload], n, epochs, threads)
    return {
        "seconds": record["total_s"],
        "init_s": record["init_s"],
        "median_epoch_s": statistics.median(record["epoch_times"]),
        "finite_val_loss": int(np.isfinite(record["val_loss"]).sum()),
        **torch_info(threads, grad, probe),
    }
