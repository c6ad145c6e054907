"""The engine's modes: `vmap` (N trials as one population) and `lanes` (as `sweeps.run` cuts them here).

`Engine` holds one workload's data on the device and its compiled epochs, shared with the
sequential modes (`sequential_modes.py`), which train a population of one through the same program.

Part of `benchmarks/throughput.py`; never imported by the library.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from epoch_cost import epoch_cost
from machine import current_rss_mb, in_threads, lanes_here, peak_memory_mb, reset_peak_memory
from workloads import SEED, Workload, learning_rates

from sweeps.driver.compiling import compile_log
from sweeps.engine import (
    Controls,
    Population,
    Split,
    init_population,
    keys,
    make_train_epoch,
    memory,
    stack_hparams,
)
from sweeps.engine.kernel import KernelPlan
from sweeps.planning.lanes import lane_chunk_size


class Engine:
    """Device-resident data and the compiled epochs of one workload, shared by vmap and sequential."""

    def __init__(self, workload: Workload, traffic: bool = True, kernel: KernelPlan | None = None):
        data = workload.data
        self.workload, self.traffic, self.kernel = workload, traffic, kernel  # kernel: the Pallas kernel's plan
        self.train = Split(jnp.asarray(data.x_train), jnp.asarray(data.y_train))
        self.val = Split(jnp.asarray(data.x_val), jnp.asarray(data.y_val))
        self.controls = Controls(jnp.float32(np.inf), jnp.int32(1), jnp.float32(0.0), jnp.float32(data.y_std))
        self._compiled: dict[int, tuple[Any, float, dict]] = {}

    def population(self, lrs) -> tuple[Population, float, float]:
        """A fresh population of one member per learning rate, the seconds it took to build, and XLA's
        compile seconds among them (the initialisation's programs; 0 when this size was built before)."""
        params = self.workload.trial_params(lrs)
        start = time.perf_counter()
        with compile_log() as compiled:
            pop = init_population(
                self.workload.structure(), stack_hparams(params, len(params)), np.arange(len(params)), SEED
            )
            jax.block_until_ready(pop)
        return pop, time.perf_counter() - start, compiled.seconds()

    def compiled(self, pop: Population) -> tuple[Any, float, dict]:
        """(compiled epoch, compile seconds, cost per member-epoch) for this population size, cached."""
        if pop.size not in self._compiled:
            epoch = make_train_epoch(self.workload.structure(), kernel=self.kernel)
            start = time.perf_counter()
            program = epoch.lower(pop, self.train, self.val, self.order_key(0), self.controls).compile()
            compile_s = time.perf_counter() - start
            self._compiled[pop.size] = (
                program,
                compile_s,
                epoch_cost(self.workload, pop, self.train, self.val, self.traffic),
            )
        return self._compiled[pop.size]

    def one_member_cost(self) -> dict[str, Any]:
        """One member's epoch cost (the frameworks train the same model with the same optimizer)."""
        if 1 not in self._compiled:
            self.compiled(self.population(learning_rates(1))[0])
        return self._compiled[1][2]

    def order_key(self, epoch: int):
        return keys.batch_order_key(SEED, epoch)

    def run_epoch(self, program, pop: Population, epoch: int) -> tuple[Population, float]:
        start = time.perf_counter()
        pop, metrics = program(pop, self.train, self.val, self.order_key(epoch), self.controls)
        jax.block_until_ready((pop, metrics))
        return pop, time.perf_counter() - start


def memory_check(workload: Workload, n: int) -> dict[str, Any]:
    """The engine's estimate for a population of `n` (sweeps.engine.memory.population_bytes, the figure
    `sweeps.run` plans chunks with) against the memory free on the device now (sweeps.engine.memory.available_bytes:
    an accelerator's bytes_limit - bytes_in_use, or the host's available RAM on CPU)."""
    data = workload.data
    estimate = memory.population_bytes(workload.structure(), n, data.n_train, data.n_val)
    return {"memory_estimate_mb": estimate / 2**20, "memory_available_mb": memory.available_bytes() / 2**20}


def is_out_of_memory(error: BaseException) -> bool:
    text = f"{type(error).__name__}: {error}"
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower() or isinstance(error, MemoryError)


# --------------------------------------------------------------------------- vmap


def bench_vmap(engine: Engine, n: int, epochs: int) -> dict[str, Any]:
    """N trials as one population: one warm-up epoch, then `epochs` timed epochs."""
    rss_before = current_rss_mb()
    reset_peak_memory()
    pop, init_s, compile_init_s = engine.population(learning_rates(n))
    program, compile_epoch_s, cost = engine.compiled(pop)
    pop, warmup_s = engine.run_epoch(program, pop, 0)
    times = []
    for e in range(1, epochs + 1):
        pop, seconds = engine.run_epoch(program, pop, e)
        times.append(seconds)
    peak, peak_source = peak_memory_mb()
    del pop
    timed = sum(times)
    return {
        "n": n,
        "model_epochs_per_s": n / statistics.median(times),  # the median epoch: robust to load spikes
        "model_epochs_per_s_mean": n * epochs / timed,
        "epoch_s": statistics.median(times),
        "step_us": statistics.median(times) / engine.workload.steps_per_epoch * 1e6,
        "sweep_s": compile_epoch_s + compile_init_s + warmup_s + timed,
        "compile_s": compile_epoch_s + compile_init_s,  # the epoch's program and the initialisation's
        "compile_epoch_s": compile_epoch_s,
        "compile_init_s": compile_init_s,
        "warmup_epoch_s": warmup_s,
        "init_s": init_s,
        "timed_trials": n,
        "extrapolated": False,
        "peak_mem_mb": peak,
        "peak_mem_source": peak_source,
        "rss_before_mb": rss_before,
        **cost,
    }


def measure_vmap(engine: Engine, ns: list[int], epochs: int, budget: float) -> Iterator[dict[str, Any]]:
    """Mode `vmap`, one row per N as it is measured. An N is skipped (a row that says why) where the memory
    estimate exceeds what is free, where a smaller N ran out of memory despite its estimate, or where the
    time predicted from the last N measured exceeds `budget` seconds."""
    last = None  # (n, seconds per member-epoch, compile seconds) of the last measured N
    out_of_memory_at = None  # the N that ran out of memory despite its estimate: larger ones are not tried
    for n in ns:
        fit = memory_check(engine.workload, n)
        gib = fit["memory_estimate_mb"] / 1024, fit["memory_available_mb"] / 1024
        if fit["memory_estimate_mb"] > fit["memory_available_mb"]:
            yield {"n": n, **fit, "skipped": f"memory estimate {gib[0]:.3g} GiB > available {gib[1]:.3g} GiB"}
            continue
        if out_of_memory_at is not None:
            yield {"n": n, **fit, "skipped": f"not tried: N={out_of_memory_at} ran out of memory"}
            continue
        if last is not None:
            predicted = last[2] + (epochs + 1) * n * last[1]
            if predicted > budget:
                yield {"n": n, **fit, "skipped": f"predicted {predicted:.0f} s > budget {budget:.0f} s"}
                continue
        try:
            row = bench_vmap(engine, n, epochs)
        except Exception as error:  # the estimate said it fits, the allocator disagreed
            if not is_out_of_memory(error):
                raise
            out_of_memory_at = n
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300].replace("|", "/")
            print(f"  out of memory at N={n}: {first_line}")
            yield {
                "n": n,
                **fit,
                "skipped": f"out of memory at run time (memory "
                f"estimate {gib[0]:.3g} GiB, available {gib[1]:.3g} GiB): {first_line}",
            }
            continue
        last = (n, 1 / row["model_epochs_per_s"], row["compile_s"])
        yield {**fit, **row}


# --------------------------------------------------------------------------- lanes


def bench_lanes(engine: Engine, n: int, epochs: int) -> dict[str, Any]:
    """N trials as `sweeps.run` trains them here: chunks of `lane_chunk_size` members, each epoch of every chunk
    trained in one of `lanes` threads (chunk j in thread j mod lanes), after one warm-up epoch. The last chunk is
    padded with copies of its last learning rate; the rate counts the N trials only."""
    lanes = lanes_here()
    size = lane_chunk_size(engine.workload.structure(), n, n, lanes)
    rates = learning_rates(n)
    chunks = [rates[i : i + size] for i in range(0, n, size)]
    chunks[-1] = np.concatenate([chunks[-1], np.full(size - len(chunks[-1]), chunks[-1][-1])])
    lanes = min(lanes, len(chunks))
    rss_before = current_rss_mb()
    reset_peak_memory()
    built = [engine.population(chunk) for chunk in chunks]
    pops = [pop for pop, _, _ in built]
    program, compile_epoch_s, cost = engine.compiled(pops[0])

    def epoch(e: int) -> float:
        def lane(j: int) -> None:
            for i in range(j, len(pops), lanes):
                pops[i], _ = engine.run_epoch(program, pops[i], e)

        return in_threads(lane, lanes)

    warmup_s = epoch(0)
    times = [epoch(e) for e in range(1, epochs + 1)]
    peak, peak_source = peak_memory_mb()
    compile_init_s = built[0][2]
    pops.clear()
    return {
        "n": n,
        "model_epochs_per_s": n / statistics.median(times),
        "model_epochs_per_s_mean": n * epochs / sum(times),
        "epoch_s": statistics.median(times),
        "step_us": statistics.median(times) / engine.workload.steps_per_epoch * 1e6,
        "sweep_s": compile_epoch_s + compile_init_s + warmup_s + sum(times),
        "compile_s": compile_epoch_s + compile_init_s,
        "compile_epoch_s": compile_epoch_s,
        "compile_init_s": compile_init_s,
        "warmup_epoch_s": warmup_s,
        "init_s": sum(seconds for _, seconds, _ in built),
        "timed_trials": n,
        "extrapolated": False,
        "lanes": lanes,
        "chunks": len(chunks),
        "chunk_population": size,
        "peak_mem_mb": peak,
        "peak_mem_source": peak_source,
        "rss_before_mb": rss_before,
        **cost,
    }


def measure_lanes(engine: Engine, ns: list[int], epochs: int) -> Iterator[dict[str, Any]]:
    """Mode `lanes`, one row per N (skipped where the memory estimate exceeds what is free)."""
    for n in ns:
        fit = memory_check(engine.workload, n)
        if fit["memory_estimate_mb"] > fit["memory_available_mb"]:
            yield {"n": n, **fit, "skipped": "memory estimate > available"}
            continue
        row = bench_lanes(engine, n, epochs)
        yield {**fit, **row}
        print(f"           {row['chunks']} chunks of {row['chunk_population']} in {row['lanes']} lanes")
