"""The sequential baselines: `sequential` (the trials one by one) and `sequential-lanes` (one by one in each
of as many threads as `lanes` uses), each trial a population of ONE through the engine's own compiled
epoch: the same program and the same XLA, no vectorization.

Part of `benchmarks/throughput.py`; never imported by the library.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
from engine_modes import Engine
from epoch_cost import COST_KEYS
from machine import current_rss_mb, in_threads, lanes_here, peak_memory_mb, reset_peak_memory
from workloads import learning_rates


def member(everyone, i: int):
    """Member i of a population as a population of one, in buffers of its own: the epoch donates its population,
    and a slice of a population of one would be the population itself."""
    return jax.tree.map(lambda a: jnp.array(a[i : i + 1], copy=True), everyone)


def bench_sequential(engine: Engine, trials: int, epochs: int, budget_s: float) -> list[dict[str, Any]]:
    """Up to `trials` trials one by one, each a population of one through the same compiled epoch.

    The populations are built together (one initialisation, then each member
    sliced out: the same state as building it alone) so that per-trial
    timing is the epochs only. Stops timing new trials once `budget_s` is
    spent (at least one trial is timed). Returns one record per timed trial.
    """
    rss_before = current_rss_mb()
    reset_peak_memory()
    everyone, _, compile_init_s = engine.population(learning_rates(trials))
    program, compile_epoch_s, cost = engine.compiled(member(everyone, 0))
    engine.run_epoch(program, member(everyone, 0), 0)  # warms caches, not timed
    records, started = [], time.perf_counter()
    for i in range(trials):
        if records and time.perf_counter() - started > budget_s:
            break
        start = time.perf_counter()
        pop = member(everyone, i)
        times = []
        for e in range(epochs + 1):
            pop, seconds = engine.run_epoch(program, pop, e)
            times.append(seconds)
        records.append({"trial_s": time.perf_counter() - start, "epoch_times": times})
        del pop
    peak, peak_source = peak_memory_mb()
    for r in records:
        r.update(compile_s=compile_epoch_s + compile_init_s, compile_epoch_s=compile_epoch_s)
        r.update(compile_init_s=compile_init_s, peak_mem_mb=peak, peak_mem_source=peak_source, rss_before_mb=rss_before)
        r.update(cost)
    return records


def rows_per_n(records: list[dict[str, Any]], ns: list[int], steps: int) -> list[dict[str, Any]]:
    """Rows for each N from the first min(N, timed) per-trial records; sweep seconds extrapolated to N trials."""
    rows = []
    for n in ns:
        used = records[: min(n, len(records))]
        steady = [t for r in used for t in r["epoch_times"][1:]]  # each trial's first epoch is its warm-up
        trial_s = statistics.mean(r["trial_s"] for r in used)
        compile_s = used[0].get("compile_s", 0.0)  # the epoch's program and the initialisation's
        first_extra = statistics.mean(
            max(r["epoch_times"][0] - statistics.mean(r["epoch_times"][1:]), 0.0) for r in used
        )
        rows.append(
            {
                "n": n,
                "model_epochs_per_s": 1 / statistics.median(steady),  # the median epoch: robust to load spikes
                "model_epochs_per_s_mean": len(steady) / sum(steady),
                "epoch_s": statistics.median(steady),
                "step_us": statistics.median(steady) / steps * 1e6,
                "sweep_s": compile_s + n * trial_s,
                "compile_s": compile_s,
                "compile_epoch_s": used[0].get("compile_epoch_s", 0.0),
                "compile_init_s": used[0].get("compile_init_s", 0.0),
                "first_epoch_overhead_s": first_extra,
                "trial_s": trial_s,
                "timed_trials": len(used),
                "extrapolated": len(used) < n,
                **{
                    k: used[0][k]
                    for k in ("peak_mem_mb", "peak_mem_source", "rss_before_mb", *COST_KEYS)
                    if k in used[0]
                },
            }
        )
    return rows


def measure_sequential(engine: Engine, ns: list[int], epochs: int, trials: int, budget: float) -> Iterator[dict]:
    """Mode `sequential`: up to `trials` trials timed one by one, a row per N from them (extrapolated past them)."""
    records = bench_sequential(engine, min(max(ns), trials), epochs, budget)
    yield from rows_per_n(records, ns, engine.workload.steps_per_epoch)


def bench_sequential_lanes(engine: Engine, trials: int, epochs: int) -> dict[str, Any]:
    """`trials` trials one at a time in each of `lanes` threads (trial i in thread i mod lanes), each trained
    one warm-up epoch and `epochs` timed ones through the one-member program. The rate: lanes over the
    median timed epoch (the threads train at the same time throughout)."""
    lanes = lanes_here()
    trials = max(trials, lanes)
    everyone, _, compile_init_s = engine.population(learning_rates(trials))
    program, compile_epoch_s, cost = engine.compiled(member(everyone, 0))
    engine.run_epoch(program, member(everyone, 0), 0)  # warms caches, not timed
    times: list[float] = []

    def lane(j: int) -> None:
        for i in range(j, trials, lanes):
            pop = member(everyone, i)
            for e in range(epochs + 1):
                pop, seconds = engine.run_epoch(program, pop, e)
                if e:
                    times.append(seconds)

    wall = in_threads(lane, lanes)
    epoch_s = statistics.median(times)
    return {
        "model_epochs_per_s": lanes / epoch_s,
        "model_epochs_per_s_mean": trials * (epochs + 1) / wall,
        "epoch_s": epoch_s,
        "step_us": epoch_s / engine.workload.steps_per_epoch * 1e6,
        "trial_s": wall * lanes / trials,
        "compile_s": compile_epoch_s + compile_init_s,
        "compile_epoch_s": compile_epoch_s,
        "compile_init_s": compile_init_s,
        "timed_trials": trials,
        "lanes": lanes,
        **dict(zip(("peak_mem_mb", "peak_mem_source"), peak_memory_mb())),
        **cost,
    }


def measure_sequential_lanes(engine: Engine, ns: list[int], epochs: int, trials: int) -> Iterator[dict]:
    """Mode `sequential-lanes`: one measurement of `trials` trials, a row per N extrapolated from it."""
    record = bench_sequential_lanes(engine, min(max(ns), trials), epochs)
    for n in ns:
        timed = min(n, record["timed_trials"])
        sweep_s = record["compile_s"] + n * record["trial_s"] / record["lanes"]
        yield {**record, "n": n, "timed_trials": timed, "extrapolated": timed < n, "sweep_s": sweep_s}
