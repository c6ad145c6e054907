"""Sweep throughput: one vectorized population against training the trials one by one.

Measures model-epochs per second (trials x epochs trained per wall-clock
second, compile excluded) for

- `vmap`: the engine, N trials as one population, one compiled epoch;
- `lanes`: the N trials as `sweeps.run` trains them on this machine: on a CPU of
  several cores cut into chunks trained side by side, one thread (lane) per core
  (`sweeps.lane_plan.lane_chunk_size`); elsewhere the same as `vmap`;
- `sequential`: the engine's own compiled epoch for a population of ONE,
  compiled once and run for each trial in turn (the fairest sequential
  baseline: same program, same XLA, no vectorization);
- `sequential-lanes`: the same, one trial at a time in each of as many
  threads as `lanes` uses (the sequential baseline given the lanes' threads);
- `keras`: Keras 3 `model.fit`, one model per learning rate (the lesson's code);
- `torch`: a plain PyTorch loop, one model per learning rate;
- `torch-vmap`: the strongest PyTorch peer, a `torch.func` ensemble of the N
  models as one vmapped forward, one backward and a vectorized Adam
  (benchmarks/torch_peers.py);

on two workloads (`lesson`: the churn MLP 45 -> 64 -> 1, batch 32;
`wide`: 64 -> 512 -> 512 -> 512 -> 1, batch 256, 100k synthetic rows), and
the memory run: `--trials 100000` lesson trials for one epoch through
`sweeps.run`; and `--end-to-end N`: `sweeps.run` of N lesson trials x
`--epochs` epochs, compile included, in a fresh process with the persistent
compilation cache off, against the torch-vmap ensemble training the same trials
end to end (a fresh process too). Each measurement is one JSON line; a markdown
table goes to stdout and a log-log plot next to the JSONL.

torch's OpenMP threads spin while they wait: on a machine busy with other
processes, torch with as many threads as cores ran the lesson 5-10x slower than
with OMP_WAIT_POLICY=PASSIVE (which the rows record) or `--torch-threads 1`.

This file is never imported by the library. Run it from the repository root:

    python benchmarks/throughput.py --quick
    python benchmarks/throughput.py --workload all --mode all
    python benchmarks/throughput.py --workload lesson --n 256
    python benchmarks/throughput.py --workload lesson --n 256 --mode torch-vmap
    python benchmarks/throughput.py --end-to-end 256 --epochs 20     # sweeps.run vs torch-vmap, cold
    OMP_WAIT_POLICY=PASSIVE python benchmarks/throughput.py --end-to-end 256 --epochs 20 --torch-threads 2
    python benchmarks/throughput.py --trials 100000
    python benchmarks/throughput.py --devices            # throughput against the device count
    python benchmarks/throughput.py --devices 1 2 4 8 --n 256 1024
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import sweeps
from sweeps import space
from sweeps.engine import keys, memory
from sweeps.engine.compiles import compile_log
from sweeps.engine.epoch import Controls, Split, make_train_epoch
from sweeps.engine.hparams import resolve
from sweeps.engine.population import Population, init_population, stack_hparams
from sweeps.engine.structure import structure_of
from sweeps.lane_plan import cpu_cores, lane_chunk_size, lanes_from_environment

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "data" / "telco_customer_churn.csv"
RESULTS = ROOT / "benchmarks" / "results"  # the campaigns' files, tracked: never a --quick run's


def output_path(given: Path | None, name: str, quick: bool) -> Path:
    """Where a benchmark writes `name`: the path given (--out); else benchmarks/results/ for a real
    campaign, and a new temporary folder for a --quick smoke run (printed), so a smoke run never
    touches the tracked results. The folder is created."""
    if given is None:
        given = (Path(tempfile.mkdtemp(prefix="sweeps-quick-")) if quick else RESULTS) / name
        if quick:
            print(f"--quick: writing into {given.parent} (benchmarks/results/ keeps the campaigns)", flush=True)
    given.parent.mkdir(parents=True, exist_ok=True)
    return given


WORKLOADS = ("lesson", "wide")
MODES = ("vmap", "lanes", "sequential", "sequential-lanes", "keras", "torch", "torch-vmap")
DEFAULT_MODES = ["vmap", "lanes", "sequential", "sequential-lanes"]
TABLES_OF_THEIR_OWN = ("sweeps.run", "end-to-end")  # modes whose rows are not throughput rows
CPU_NS = (1, 8, 64, 256, 1024)
ACCELERATOR_NS = (1, 8, 64, 256, 1024, 4096, 16384)
LR_LOW, LR_HIGH = 1e-4, 1e-1  # learning rates log-spaced over this range
SEED = 0
COST_KEYS = ("flops", "flops_source", "flops_analytic", "bytes", "bytes_source", "bytes_analytic")


# --------------------------------------------------------------------------- workloads


class Workload:
    """A model shape, a batch size and the data it trains on."""

    def __init__(self, name: str, hidden: tuple[int, ...], batch_size: int, load: Callable[[], sweeps.Dataset]):
        self.name, self.hidden, self.batch_size, self._load = name, hidden, batch_size, load
        self._data = None

    @property
    def data(self) -> sweeps.Dataset:
        if self._data is None:
            self._data = self._load()
        return self._data

    def trial_params(self, learning_rates) -> list[dict[str, Any]]:
        return [
            resolve({"learning_rate": float(lr), "batch_size": self.batch_size, "epochs": 10**6, "hidden": self.hidden})
            for lr in learning_rates
        ]

    def structure(self):
        return structure_of(self.trial_params([1e-3])[0], self.data)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.data.n_train // self.batch_size)

    def widths(self) -> list[int]:
        return [self.data.n_features, *self.hidden, self.data.n_outputs]


def lesson_data() -> sweeps.Dataset:
    return sweeps.load_csv(CHURN, target="Churn")


def wide_data(rows: int = 100_000, features: int = 64, seed: int = 0) -> sweeps.Dataset:
    """100k x 64 synthetic rows, labels from a fixed random linear rule plus noise, 80/20 split."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    w = rng.normal(size=features) / np.sqrt(features)
    y = (x @ w + 0.5 * rng.normal(size=rows) > 0).astype(np.float32)
    cut = int(rows * 0.8)
    return sweeps.Dataset.from_arrays(x[:cut], y[:cut], x[cut:], y[cut:], task="binary", source="synthetic-wide")


def make_workloads() -> dict[str, Workload]:
    return {
        "lesson": Workload("lesson", (64,), 32, lesson_data),
        "wide": Workload("wide", (512, 512, 512), 256, wide_data),
    }


def learning_rates(n: int) -> np.ndarray:
    return np.logspace(math.log10(LR_LOW), math.log10(LR_HIGH), n)


# --------------------------------------------------------------------------- the machine


def device_name() -> str:
    device = jax.devices()[0]
    if device.platform == "cpu":
        model = platform.processor() or "unknown"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return f"cpu: {model}"
    return str(device.device_kind)


def engine_commit() -> str:
    """The repository's commit, with "+dirty" when tracked files differ from it; "unknown" outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    jax.block_until_ready(fn())  # compile and warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(size: int, repeats: int = 7) -> float:
    """Achieved float32 GFLOP/s of one large jitted square matmul (median of `repeats`)."""
    a = jax.random.normal(jax.random.PRNGKey(1), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(2), (size, size), jnp.float32)
    dot = jax.jit(jnp.dot)
    return 2 * size**3 / median_seconds(lambda: dot(a, b), repeats) / 1e9


def memory_bandwidth_gbs(megabytes: int, repeats: int = 7) -> float:
    """GB/s of a large device copy `x + 1` (bytes read + bytes written), median of `repeats`.

    The buffer is donated, so the copy writes into memory already mapped:
    a fresh output buffer each call would time the page faults of a new
    allocation (on CPU about 10x slower than the copy itself).
    """
    copy = jax.jit(lambda v: v + 1.0, donate_argnums=0)
    x = copy(jnp.zeros(megabytes * 2**20 // 4, jnp.float32))
    nbytes = x.nbytes

    def step():
        nonlocal x
        x = copy(x)
        return x

    return 2 * nbytes / median_seconds(step, repeats) / 1e9


# --------------------------------------------------------------------------- peak memory


def reset_peak_memory() -> None:
    """Resets the kernel's peak-RSS counter (Linux: VmHWM), so the next reading is this measurement's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mb() -> tuple[float, str]:
    """(peak MB, source): the accelerator's peak bytes in use, else the process's peak RSS."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"] / 2**20, "device peak_bytes_in_use (process so far)"
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024, "process peak RSS (VmHWM, reset per measurement)"
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, "process peak RSS (ru_maxrss)"


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# --------------------------------------------------------------------------- work per epoch


def analytic_cost(workload: Workload) -> tuple[float, float]:
    """(FLOPs, bytes) of one member's epoch, counted by hand.

    FLOPs: 2*rows*(in*out) per dense layer forward, x3 for forward + backward
    on every (padded) training row, plus the validation forward. Bytes: each
    step reads and writes the parameters, gradients and Adam's two moments
    once (8 x 4 bytes per parameter) and writes and reads each activation and
    its gradient once; validation reads the parameters and the activations.
    """
    widths = workload.widths()
    dense = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    n_params = dense + sum(widths[1:])
    rows = workload.steps_per_epoch * workload.batch_size
    n_val = workload.data.n_val
    flops = 3 * 2 * rows * dense + 2 * n_val * dense
    step_bytes = 32 * n_params + 16 * workload.batch_size * sum(widths[1:])
    val_bytes = 4 * n_params + 4 * n_val * sum(widths)
    return float(flops), float(workload.steps_per_epoch * step_bytes + val_bytes)


def xla_cost(
    workload: Workload, pop: Population, train: Split, val: Split, traffic: bool
) -> tuple[float, float | None]:
    """(FLOPs, bytes accessed or None) of one epoch of `pop`, from XLA's cost analysis.

    XLA counts a loop's body once, so the epoch is costed in parts: the
    minibatch step times the steps per epoch, plus one validation forward
    pass over all members and all validation rows. FLOPs come from the
    lowered programs (cheap: no compile; fusion does not change FLOPs).
    With `traffic`, the parts are also compiled for their post-fusion bytes
    accessed; XLA charges a gather with its whole operand, so each step's
    minibatch gather is charged for the rows it reads instead of the whole
    training set.
    """
    from sweeps.engine.epoch import StepCarry, minibatch_step
    from sweeps.engine.structure import flax_layout

    structure = workload.structure()
    steps = workload.steps_per_epoch
    size = pop.size
    carry = StepCarry(
        params=pop.params,
        opt_state=pop.opt_state,
        step=pop.step,
        active=pop.active,
        diverged=pop.diverged,
        loss_sum=jnp.zeros(size, jnp.float32),
        loss_steps=jnp.zeros(size, jnp.int32),
    )
    batch = (jnp.zeros(workload.batch_size, jnp.int32), jnp.ones(workload.batch_size, jnp.float32))
    step = jax.jit(functools.partial(minibatch_step, structure, steps)).lower(
        pop.hparams, pop.dropout_key, train, carry, batch
    )

    def forward(params, x):
        return jax.vmap(lambda member: structure.model.apply({"params": flax_layout(member)}, x))(params)

    evaluation = jax.jit(forward).lower(pop.params, val.x)
    flops = steps * _analysis(step)["flops"] + _analysis(evaluation)["flops"]
    if not flops > 0:
        raise ValueError("cost analysis reported no FLOPs")
    if not traffic:
        return flops, None
    whole = train.x.nbytes + train.y.nbytes
    rows = workload.batch_size * (train.x.nbytes + train.y.nbytes) / train.x.shape[0]
    step_bytes = _analysis(step.compile())["bytes accessed"] - whole + rows
    return flops, steps * step_bytes + _analysis(evaluation.compile())["bytes accessed"]


def _analysis(stage) -> dict[str, float]:
    analysis = stage.cost_analysis()
    if not analysis and hasattr(stage, "compile"):
        analysis = stage.compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return analysis


def epoch_cost(workload: Workload, pop: Population, train: Split, val: Split, traffic: bool) -> dict[str, Any]:
    """FLOPs and bytes of one member's epoch: XLA's counts where they work, else the analytic ones."""
    flops_a, bytes_a = analytic_cost(workload)
    cost = {"flops_analytic": flops_a, "bytes_analytic": bytes_a}
    try:
        flops, accessed = xla_cost(workload, pop, train, val, traffic)
        cost.update(flops=flops / pop.size, flops_source="xla_cost_analysis")
    except Exception as error:  # an internal API moved, or no cost analysis on this backend
        print(f"note: XLA cost analysis unavailable ({type(error).__name__}: {error}); counting by hand")
        accessed = None
        cost.update(flops=flops_a, flops_source="analytic")
    if accessed is not None:
        cost.update(bytes=accessed / pop.size, bytes_source="xla_cost_analysis (compiled, after fusion)")
    else:
        cost.update(bytes=bytes_a, bytes_source="analytic (minimum traffic)")
    return cost


# --------------------------------------------------------------------------- the engine


class Engine:
    """Device-resident data and the compiled epochs of one workload, shared by vmap and sequential."""

    def __init__(self, workload: Workload, traffic: bool = True):
        data = workload.data
        self.workload, self.traffic = workload, traffic
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
            epoch = make_train_epoch(self.workload.structure())
            start = time.perf_counter()
            program = epoch.lower(pop, self.train, self.val, self.order_key(0), self.controls).compile()
            compile_s = time.perf_counter() - start
            self._compiled[pop.size] = (
                program,
                compile_s,
                epoch_cost(self.workload, pop, self.train, self.val, self.traffic),
            )
        return self._compiled[pop.size]

    def order_key(self, epoch: int):
        return keys.batch_order_key(SEED, epoch, self.workload.batch_size)

    def run_epoch(self, program, pop: Population, epoch: int) -> tuple[Population, float]:
        start = time.perf_counter()
        pop, metrics = program(pop, self.train, self.val, self.order_key(epoch), self.controls)
        jax.block_until_ready((pop, metrics))
        return pop, time.perf_counter() - start


def one_member_cost(engine: Engine) -> dict[str, Any]:
    """One member's epoch cost from the engine: the frameworks train the same model with the same optimizer."""
    one, _, _ = engine.population(learning_rates(1))
    return engine.compiled(one)[2]


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


def in_threads(work: Callable[[int], None], count: int) -> float:
    """Seconds to run work(0), ..., work(count - 1), each in its own thread, all at once."""
    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(j,)) for j in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def lanes_here() -> int:
    """The lanes `sweeps.run` plans for on this machine: `SWEEPS_LANES`, else one per CPU core; 1 on an accelerator."""
    return lanes_from_environment() or cpu_cores() if jax.default_backend() == "cpu" else 1


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
    first = jax.tree.map(lambda a: a[:1], everyone)
    program, compile_epoch_s, cost = engine.compiled(first)
    del first
    engine.run_epoch(program, jax.tree.map(lambda a: a[:1], everyone), 0)  # warms caches, not timed
    records, started = [], time.perf_counter()
    for i in range(trials):
        if records and time.perf_counter() - started > budget_s:
            break
        start = time.perf_counter()
        pop = jax.tree.map(lambda a, i=i: a[i : i + 1], everyone)
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


def bench_sequential_lanes(engine: Engine, trials: int, epochs: int) -> dict[str, Any]:
    """`trials` trials one at a time in each of `lanes` threads (trial i in thread i mod lanes), each trained
    one warm-up epoch and `epochs` timed ones through the one-member program. The rate: lanes over the
    median timed epoch (the threads train at the same time throughout)."""
    lanes = lanes_here()
    trials = max(trials, lanes)
    everyone, _, compile_init_s = engine.population(learning_rates(trials))
    first = jax.tree.map(lambda a: a[:1], everyone)
    program, compile_epoch_s, cost = engine.compiled(first)
    engine.run_epoch(program, first, 0)  # warms caches, not timed
    times: list[float] = []

    def lane(j: int) -> None:
        for i in range(j, trials, lanes):
            pop = jax.tree.map(lambda a, i=i: a[i : i + 1], everyone)
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


def sequential_rows(records: list[dict[str, Any]], ns: list[int], steps: int) -> list[dict[str, Any]]:
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


# --------------------------------------------------------------------------- keras and torch


def keras_available() -> str | None:
    """None when Keras 3 imports (on the JAX backend unless KERAS_BACKEND says otherwise), else why not."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras  # noqa: F401
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def torch_available() -> str | None:
    try:
        import torch  # noqa: F401
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def bench_keras(workload: Workload, trials: int, epochs: int, budget_s: float) -> list[dict[str, Any]]:
    """The lesson's code: one Keras model per learning rate, `model.fit` with validation data each epoch."""
    import keras

    data = workload.data

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    def one_trial(lr: float) -> dict[str, Any]:
        start = time.perf_counter()
        keras.utils.set_random_seed(SEED)
        layers = [keras.Input((data.n_features,))]
        layers += [keras.layers.Dense(width, activation="relu") for width in workload.hidden]
        layers += [keras.layers.Dense(1, activation="sigmoid")]
        model = keras.Sequential(layers)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=lr), loss="binary_crossentropy", metrics=["accuracy"]
        )
        timer = EpochTimer()
        model.fit(
            data.x_train,
            data.y_train,
            batch_size=workload.batch_size,
            epochs=epochs + 1,
            validation_data=(data.x_val, data.y_val),
            callbacks=[timer],
            verbose=0,
        )
        return {"trial_s": time.perf_counter() - start, "epoch_times": timer.times}

    return _time_trials(one_trial, trials, budget_s, {"backend": keras.backend.backend(), "version": keras.__version__})


def bench_torch(workload: Workload, trials: int, epochs: int, budget_s: float) -> list[dict[str, Any]]:
    """A plain PyTorch loop: one model per learning rate, Adam, shuffled minibatches, validation each epoch."""
    import torch
    from torch_peers import mlp

    data = workload.data
    x_train, y_train = torch.tensor(np.asarray(data.x_train)), torch.tensor(np.asarray(data.y_train))
    x_val, y_val = torch.tensor(np.asarray(data.x_val)), torch.tensor(np.asarray(data.y_val))
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def model_and_optimizer(lr: float):
        torch.manual_seed(SEED)
        model = mlp(workload.widths())
        return model, torch.optim.Adam(model.parameters(), lr=lr)

    def steps(model, optimizer, order):
        for i in range(0, order.shape[0], workload.batch_size):
            rows = order[i : i + workload.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[rows]).squeeze(-1), y_train[rows])
            loss.backward()
            optimizer.step()

    # Intra-op threads help large layers and hurt tiny ones (on a busy 2-core machine, 2 threads
    # made the lesson's loop 44x slower than 1 in one run): give torch its faster setting of the two.
    speed = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        model, optimizer = model_and_optimizer(1e-3)
        order = torch.randperm(x_train.shape[0])[: 20 * workload.batch_size]
        steps(model, optimizer, order)  # warm
        start = time.perf_counter()
        steps(model, optimizer, order)
        speed[threads] = time.perf_counter() - start
    torch.set_num_threads(min(speed, key=speed.get))

    def one_trial(lr: float) -> dict[str, Any]:
        start = time.perf_counter()
        model, optimizer = model_and_optimizer(lr)
        times = []
        for _ in range(epochs + 1):
            epoch_start = time.perf_counter()
            model.train()
            steps(model, optimizer, torch.randperm(x_train.shape[0]))
            model.eval()
            with torch.no_grad():
                logits = model(x_val).squeeze(-1)
                val_loss, val_accuracy = (
                    loss_fn(logits, y_val).item(),
                    ((logits > 0).float() == y_val).float().mean().item(),
                )
                del val_loss, val_accuracy  # computed, as the engine and keras do each epoch; not reported
            times.append(time.perf_counter() - epoch_start)
        return {"trial_s": time.perf_counter() - start, "epoch_times": times}

    return _time_trials(
        one_trial,
        trials,
        budget_s,
        {"version": torch.__version__, "threads": torch.get_num_threads(), "seconds_per_20_steps_by_threads": speed},
    )


def _time_trials(one_trial, trials: int, budget_s: float, info: dict) -> list[dict[str, Any]]:
    """One untimed warm-up trial, then up to `trials` timed ones within `budget_s` (at least one)."""
    rss_before = current_rss_mb()
    reset_peak_memory()
    lrs = learning_rates(trials)
    one_trial(float(lrs[0]))  # warm-up: imports, thread pools, first traces
    records, started = [], time.perf_counter()
    for lr in lrs:
        if records and time.perf_counter() - started > budget_s:
            break
        records.append(one_trial(float(lr)))
    peak, source = peak_memory_mb()
    for r in records:
        # compile_s: a new model is traced and compiled by its first epoch; what that costs over a steady epoch
        r.update(
            compile_s=max(r["epoch_times"][0] - statistics.mean(r["epoch_times"][1:]), 0.0),
            peak_mem_mb=peak,
            peak_mem_source=source,
            rss_before_mb=rss_before,
            framework=info,
        )
    return records


def framework_rows(records, ns, steps, cost) -> list[dict[str, Any]]:
    rows = sequential_rows(records, ns, steps)
    for row in rows:
        used = records[: row["timed_trials"]]
        row["compile_s"] = statistics.mean(r["compile_s"] for r in used)  # per trial: every model compiles anew
        row["sweep_s"] = row["n"] * row["trial_s"]
        row.pop("first_epoch_overhead_s", None)
        row["framework"] = records[0]["framework"]
        row.update(cost)
    return rows


def bench_torch_vmap(workload: Workload, n: int, epochs: int, threads: int) -> dict[str, Any]:
    """The torch.func ensemble of N members: one warm-up epoch, then `epochs` timed epochs (torch_peers.py)."""
    rss_before = current_rss_mb()
    reset_peak_memory()
    record, grad, probe = train_torch_ensemble(workload, n, epochs + 1, threads)
    peak, peak_source = peak_memory_mb()
    warmup_s, times = record["epoch_times"][0], record["epoch_times"][1:]
    return {
        "n": n,
        "model_epochs_per_s": n / statistics.median(times),  # the median epoch: robust to load spikes
        "model_epochs_per_s_mean": n * epochs / sum(times),
        "epoch_s": statistics.median(times),
        "step_us": statistics.median(times) / workload.steps_per_epoch * 1e6,
        "sweep_s": record["total_s"],  # building the stacked ensemble, the warm-up and the timed epochs
        "compile_s": max(warmup_s - statistics.median(times), 0.0),  # no compiler: the first epoch's extra cost
        "warmup_epoch_s": warmup_s,
        "init_s": record["init_s"],
        "timed_trials": n,
        "extrapolated": False,
        "peak_mem_mb": peak,
        "peak_mem_source": peak_source,
        "rss_before_mb": rss_before,
        "framework": torch_info(threads, grad, probe),
    }


def train_torch_ensemble(
    workload: Workload, n: int, epochs: int, threads: int
) -> tuple[dict[str, Any], str, dict[str, float]]:
    """The torch.func ensemble of n members trained `epochs` epochs on `threads` threads, with the faster
    gradient method for this N: (torch_peers.train_ensemble's record, the method, the probe's seconds)."""
    import torch
    import torch_peers

    torch.set_num_threads(threads)
    data = workload.data
    grad, probe = fastest_grad(workload, n)
    record = torch_peers.train_ensemble(
        data.x_train,
        data.y_train,
        data.x_val,
        data.y_val,
        workload.widths(),
        workload.batch_size,
        learning_rates(n),
        epochs,
        SEED,
        grad,
    )
    return record, grad, probe


def fastest_grad(workload: Workload, n: int, steps: int = 20, rounds: int = 3) -> tuple[str, dict[str, float]]:
    """The faster of torch_peers.GRADS for this N, and each one's seconds per `steps` steps.

    The methods take turns `rounds` times and each keeps its best time, so that a burst of load
    from another process does not pick the slower one.
    """
    import torch_peers

    data = workload.data
    seconds = {grad: math.inf for grad in torch_peers.GRADS}
    for _ in range(rounds):
        for grad in seconds:
            taken = torch_peers.seconds_per_steps(
                data.x_train, data.y_train, workload.widths(), workload.batch_size, learning_rates(n), grad, steps
            )
            seconds[grad] = min(seconds[grad], taken)
    return min(seconds, key=seconds.get), seconds


def torch_info(threads: int, grad: str, probe: dict[str, float]) -> dict[str, Any]:
    import torch

    return {
        "version": torch.__version__,
        "threads": threads,
        "threads_set_by": "torch.set_num_threads (--torch-threads; default the machine's cores)",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),  # PASSIVE: no spinning threads on a busy machine
        "grad": grad,
        "seconds_per_20_steps_by_grad": probe,  # the best of 3 turns each
    }


# --------------------------------------------------------------------------- the memory run


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
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 2**20
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


# --------------------------------------------------------------------------- end to end, cold


def bench_end_to_end(n: int, epochs: int, threads: int) -> dict[str, Any]:
    """`sweeps.run` of n lesson trials x epochs against the torch-vmap ensemble, each in a fresh process.

    The sweeps.run process has the persistent compilation cache off (SWEEPS_CACHE_DIR=off, no
    JAX_COMPILATION_CACHE_DIR, JAX_ENABLE_COMPILATION_CACHE=false) and compiles everything it runs.
    Each side is timed inside its process from the loaded `Dataset` to the trained sweep: sweeps.run's
    planning, compilation, training and result table; the ensemble's tensors, construction and epochs
    (the probe that picks its gradient method, about 2 s, runs before and is not counted). `process_s` adds the
    Python start and the imports.
    """
    print(f"end to end: {n} lesson trials x {epochs} epochs, each side in a fresh process")
    engine = in_fresh_process(f"sweeps_run_end_to_end({n}, {epochs})")
    print(f"  sweeps.run   {engine['seconds']:.1f} s (process {engine['process_s']:.1f} s)")
    peer = in_fresh_process(f"torch_vmap_end_to_end({n}, {epochs}, {threads})")
    print(f"  torch-vmap   {peer['seconds']:.1f} s (process {peer['process_s']:.1f} s, {threads} threads)")
    ratio = peer["seconds"] / engine["seconds"]
    print(f"  ratio        torch-vmap / sweeps.run = {ratio:.2f}x")
    return {
        "workload": "lesson",
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
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import throughput; "
        f"print(json.dumps(throughput.{call}))"
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


def sweeps_run_end_to_end(n: int, epochs: int) -> dict[str, Any]:
    """One cold `sweeps.run`: n log-spaced learning rates x epochs, the lesson model (run in a fresh process)."""
    from models import MLP

    data = lesson_data()
    start = time.perf_counter()
    result = sweeps.run(
        data,
        model=MLP(hidden=(64,), activation="relu"),
        space={"learning_rate": space.loguniform(LR_LOW, LR_HIGH)},
        strategy=sweeps.Grid(n=n),
        optimizer="adam",
        epochs=epochs,
        batch_size=32,
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


def torch_vmap_end_to_end(n: int, epochs: int, threads: int) -> dict[str, Any]:
    """The torch.func ensemble of n members trained `epochs` epochs, end to end (run in a fresh process)."""
    record, grad, probe = train_torch_ensemble(make_workloads()["lesson"], n, epochs, threads)
    return {
        "seconds": record["total_s"],
        "init_s": record["init_s"],
        "median_epoch_s": statistics.median(record["epoch_times"]),
        "finite_val_loss": int(np.isfinite(record["val_loss"]).sum()),
        **torch_info(threads, grad, probe),
    }


# --------------------------------------------------------------------------- output


def against_sequential(rows: list[dict[str, Any]]) -> str:
    """One line per workload and N where vmap or lanes ran beside sequential: their rates over sequential's."""
    rate = {(r["workload"], r["mode"], r["n"]): r["model_epochs_per_s"] for r in rows if "model_epochs_per_s" in r}
    lines = []
    for (workload, mode, n), sequential in rate.items():
        if mode != "sequential":
            continue
        parts = [
            f"{engine} {rate[(workload, engine, n)] / sequential:.2f}x"
            for engine in ("vmap", "lanes")
            if (workload, engine, n) in rate
        ]
        if (workload, "lanes", n) in rate and (workload, "sequential-lanes", n) in rate:
            ratio = rate[(workload, "lanes", n)] / rate[(workload, "sequential-lanes", n)]
            parts.append(f"(lanes against sequential-lanes {ratio:.2f}x)")
        if parts:
            lines.append(f"{workload} N={n}: against sequential: " + ", ".join(parts))
    return "\n".join(lines)


def _compile_parts(row: dict[str, Any]) -> str:
    """ " (epoch 1.10 + init 0.62)" for the engine's rows (compile_s is their sum); "" for the others."""
    if "compile_epoch_s" not in row:
        return ""
    return f" (epoch {row['compile_epoch_s']:.2f} + init {row['compile_init_s']:.2f})"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| workload | mode | N | model-epochs/s | µs per step | sweep s | compile s (epoch + init) | timed trials "
        "| GFLOP/s | % of matmul peak | % of bandwidth | kB per member-step (x minimum) | peak MB |"
    )
    throughput = [r for r in rows if r.get("mode") not in TABLES_OF_THEIR_OWN]
    lines = [head, "|" + "---|" * (head.count("|") - 1)] if throughput else []
    for r in throughput:
        if r.get("skipped"):
            lines.append(f"| {r['workload']} | {r['mode']} | {r['n']} | skipped: {r['skipped']} |" + " |" * 9)
            continue
        timed = f"{r['timed_trials']}{' (extrap.)' if r.get('extrapolated') else ''}"
        traffic = "n/a"
        engine = r["mode"] in ("vmap", "lanes", "sequential", "sequential-lanes")  # others carry the engine's cost
        if engine and r.get("bytes_source", "").startswith("xla") and r.get("steps_per_epoch"):
            traffic = f"{r['bytes'] / r['steps_per_epoch'] / 1e3:.0f} ({r['bytes'] / r['bytes_analytic']:.2f}x)"
        lines.append(
            f"| {r['workload']} | {r['mode']} | {r['n']} | {r['model_epochs_per_s']:.3g} | {r['step_us']:.0f} "
            f"| {r['sweep_s']:.3g} | {r['compile_s']:.2f} | {timed} | {r['gflops']:.3g} "
            f"| {100 * r['peak_fraction']:.2g} | {100 * r['bandwidth_fraction']:.2g} | {traffic} "
            f"| {r['peak_mem_mb']:.0f} |"
        )
    runs = [r for r in rows if r.get("mode") == "sweeps.run"]
    if runs:
        lines += [""] * bool(lines) + [
            "| trials | epochs | max_population | chunks x population | compilations | wall s | peak MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in runs:
            chunking = "; ".join(
                f"{g.get('chunks', '?')} x {g.get('population', g.get('chunk_size', '?'))}"
                for g in (r.get("groups") or [])
            )
            lines.append(
                f"| {r['n']} | {r['epochs']} | {r['max_population']} | {chunking} | {r['compilations']} "
                f"| {r['wall_s']:.0f} | {r['peak_mem_mb']:.0f} |"
            )
    comparisons = [r for r in rows if r.get("mode") == "end-to-end"]
    if comparisons:
        lines += [""] * bool(lines) + [
            "| trials x epochs | sweeps.run s (cold, compile included) | torch-vmap s | torch-vmap / sweeps.run "
            "| torch threads, gradient | load (1 min) before each |",
            "|---|---|---|---|---|---|",
        ]
        for r in comparisons:
            engine, peer = r["sweeps_run"], r["torch_vmap"]
            lines.append(
                f"| {r['n']} x {r['epochs']} | {r['sweeps_run_s']:.1f} | {r['torch_vmap_s']:.1f} | {r['ratio']:.2f}x "
                f"| {peer['threads']}, {peer['grad']} "
                f"| {engine['loadavg_1m_before']:.2f}, {peer['loadavg_1m_before']:.2f} |"
            )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for r in rows:
        if r.get("skipped") or r.get("mode") in TABLES_OF_THEIR_OWN:
            continue
        lines.setdefault((r["workload"], r["mode"]), []).append((r["n"], r["model_epochs_per_s"]))
    if not any(len(points) > 1 for points in lines.values()):
        return  # one N per line: nothing to draw
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    styles = {"lesson": "-", "wide": "--"}
    markers = {
        "vmap": "o",
        "lanes": "P",
        "sequential": "s",
        "sequential-lanes": "X",
        "keras": "^",
        "torch": "v",
        "torch-vmap": "D",
    }
    colors = {
        "vmap": "tab:green",
        "lanes": "tab:olive",
        "sequential": "tab:blue",
        "sequential-lanes": "tab:cyan",
        "keras": "tab:red",
        "torch": "tab:orange",
        "torch-vmap": "tab:purple",
    }
    for (workload, mode), points in sorted(lines.items()):
        points.sort()
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            styles.get(workload, ":"),
            marker=markers.get(mode, "x"),
            color=colors.get(mode),
            label=f"{workload} / {mode}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("trials N")
    ax.set_ylabel("model-epochs per second (steady state)")
    fig.text(
        0.01,
        0.01,
        "sequential, keras, torch: per-trial rates of the trials timed, the same for every N "
        "past the number timed; skipped rows are not drawn",
        fontsize=7,
        color="0.4",
    )
    ax.set_title(f"sweepax throughput, {device}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workload",
        nargs="+",
        default=None,
        choices=[*WORKLOADS, "all"],
        help="default: all (with --trials or --end-to-end alone: none, only those runs)",
    )
    parser.add_argument(
        "--mode",
        nargs="+",
        default=DEFAULT_MODES,
        choices=[*MODES, "all"],
        help=f"default: {' '.join(DEFAULT_MODES)}; 'all' adds keras, torch and torch-vmap where they import",
    )
    parser.add_argument(
        "--n",
        nargs="+",
        type=int,
        default=None,
        help=f"population sizes (default {list(CPU_NS)} on CPU, {list(ACCELERATOR_NS)} on an accelerator)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up epoch (default 3)")
    parser.add_argument(
        "--sequential-trials", type=int, default=8, help="most trials timed one by one in mode sequential (default 8)"
    )
    parser.add_argument(
        "--framework-trials",
        type=int,
        default=4,
        help="most trials timed for keras and torch, after a warm-up trial (default 4)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="seconds one measurement may take: a vmap N predicted to take longer is skipped, "
        "sequential modes stop timing new trials (default 300 on CPU, 600 on an accelerator)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSONL path (default benchmarks/results/<device>-<date>.jsonl; with --quick, a new temporary folder)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few-seconds subset: lesson, N 1 and 8, 1 epoch, the default modes",
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=None,
        help="the memory run: this many lesson trials for one epoch through sweeps.run (e.g. 100000)",
    )
    parser.add_argument(
        "--max-population",
        default="8192",
        help="max_population for --trials: a number, or 'auto' to let sweeps.run choose (default 8192)",
    )
    parser.add_argument(
        "--end-to-end",
        type=int,
        default=None,
        metavar="N",
        help="sweeps.run of N lesson trials x --epochs epochs (compile included, cache off, a fresh process) "
        "against the torch-vmap ensemble training the same, end to end; prints both and the ratio",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=os.cpu_count() or 1,
        help=f"torch.set_num_threads for torch-vmap and --end-to-end (default the machine's cores: {os.cpu_count()}); "
        "on a busy machine set OMP_WAIT_POLICY=PASSIVE too",
    )
    parser.add_argument(
        "--devices",
        nargs="*",
        type=int,
        default=None,
        metavar="COUNT",
        help="measure throughput against the device count instead (benchmarks/device_scaling.py): one population "
        "sharded over each COUNT devices (default 1 2 4 8 forced host devices on a CPU, one subprocess each; "
        "1, 2, 4, ... of the cards on an accelerator); --workload (default lesson), --n and --epochs apply",
    )
    args = parser.parse_args(argv)
    if args.devices is not None and any(c < 1 for c in args.devices):
        parser.error(f"every --devices count must be >= 1, but got {args.devices}")
    if args.end_to_end is not None and args.end_to_end < 1:
        parser.error(f"--end-to-end must be >= 1, but got {args.end_to_end}")
    if args.torch_threads < 1:
        parser.error(f"--torch-threads must be >= 1, but got {args.torch_threads}")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, but got {args.epochs}")
    if args.n is not None and min(args.n) < 1:
        parser.error(f"every --n must be >= 1, but got {args.n}")
    if args.quick:
        args.workload, args.mode, args.n, args.epochs = ["lesson"], DEFAULT_MODES, [1, 8], 1
        args.sequential_trials = min(args.sequential_trials, 4)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.devices is not None:
        return devices_main(args)
    started = time.perf_counter()
    backend = jax.default_backend()
    accelerator = backend != "cpu"
    device = device_name()
    ns = sorted(set(args.n or (ACCELERATOR_NS if accelerator else CPU_NS)))
    budget = args.budget_s if args.budget_s is not None else (600.0 if accelerator else 300.0)
    if args.workload is None:
        args.workload = [] if args.trials is not None or args.end_to_end is not None else ["all"]
    workloads = list(WORKLOADS) if "all" in args.workload else list(dict.fromkeys(args.workload))
    modes = list(MODES) if "all" in args.mode else list(dict.fromkeys(args.mode))
    date = datetime.date.today().isoformat()
    out = output_path(args.out, f"{slug(device.replace(':', ''))}-{date}.jsonl", args.quick)

    print(f"device: {device} ({backend}, {os.cpu_count()} CPUs), jax {jax.__version__}")
    quick = args.quick
    samples: list[tuple[str, float, float]] = []  # (when, matmul GFLOP/s, copy GB/s)

    def measure_machine(when: str) -> None:
        """The machine's matmul peak and copy bandwidth, measured again before each workload and at the end:
        on a shared machine they move with the load, and the fractions use the best of the run."""
        peak = matmul_peak_gflops(1024 if quick else (8192 if accelerator else 2048), repeats=3 if quick else 7)
        bandwidth = memory_bandwidth_gbs(64 if quick else (1024 if accelerator else 256), repeats=3 if quick else 7)
        samples.append((when, peak, bandwidth))
        print(
            f"[{when}] matmul peak {peak:.1f} GFLOP/s (float32 jnp.dot), "
            f"memory bandwidth {bandwidth:.1f} GB/s (x + 1 copy)"
        )

    def with_machine(row: dict[str, Any]) -> dict[str, Any]:
        peak, bandwidth = max(p for _, p, _ in samples), max(b for _, _, b in samples)
        row = {
            **row,
            "matmul_peak_gflops": peak,
            "mem_bandwidth_gbs": bandwidth,
            "machine_samples": [{"when": w, "matmul_gflops": p, "copy_gbs": b} for w, p, b in samples],
        }
        if not row.get("skipped") and "flops" in row:
            row["gflops"] = row["flops"] * row["model_epochs_per_s"] / 1e9
            row["peak_fraction"] = row["gflops"] / peak
            row["bandwidth_fraction"] = row["bytes"] * row["model_epochs_per_s"] / 1e9 / bandwidth
        return row

    measure_machine("start")
    common = {
        "device": device,
        "backend": backend,
        "jax": jax.__version__,
        "cpus": os.cpu_count(),
        "date": date,
        "engine_commit": engine_commit(),
    }

    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        row = with_machine({**common, **row, "loadavg_1m": os.getloadavg()[0]})
        rows.append(row)
        with out.open("a") as f:  # written as it goes, so an interrupted run keeps its rows
            f.write(json.dumps(row) + "\n")
        if row.get("skipped"):
            print(f"  {row['workload']:>6} {row['mode']:>10} N={row['n']:<6} skipped: {row['skipped']}")
        elif row.get("mode") not in TABLES_OF_THEIR_OWN:
            print(
                f"  {row['workload']:>6} {row['mode']:>10} N={row['n']:<6} "
                f"{row['model_epochs_per_s']:9.3g} model-epochs/s"
                f"  sweep {row['sweep_s']:.3g} s  compile {row['compile_s']:.2f} s{_compile_parts(row)}"
                f"  timed trials {row['timed_trials']}"
                f"  {row['gflops']:.3g} GFLOP/s"
            )

    out.write_text("")  # one file per run
    for index, name in enumerate(workloads):
        if index > 0 and not quick:
            measure_machine(f"before {name}")
        workload = make_workloads()[name]
        base = {
            "workload": name,
            "epochs": args.epochs,
            "batch_size": workload.batch_size,
            "hidden": list(workload.hidden),
            "train_rows": workload.data.n_train,
            "val_rows": workload.data.n_val,
            "steps_per_epoch": workload.steps_per_epoch,
        }
        engine = Engine(workload, traffic=not args.quick)
        engine_cost = None
        for mode in modes:
            print(f"{name} / {mode}")
            if mode == "vmap":
                last = None  # (n, seconds per member-epoch, compile seconds) of the last measured N
                out_of_memory_at = None  # the N that ran out of memory despite its estimate: larger ones are not tried
                for n in ns:
                    fit = memory_check(workload, n)
                    gib = fit["memory_estimate_mb"] / 1024, fit["memory_available_mb"] / 1024
                    if fit["memory_estimate_mb"] > fit["memory_available_mb"]:
                        emit(
                            {
                                **base,
                                "mode": mode,
                                "n": n,
                                **fit,
                                "skipped": f"memory estimate {gib[0]:.3g} GiB > available {gib[1]:.3g} GiB",
                            }
                        )
                        continue
                    if out_of_memory_at is not None:
                        emit(
                            {
                                **base,
                                "mode": mode,
                                "n": n,
                                **fit,
                                "skipped": f"not tried: N={out_of_memory_at} ran out of memory",
                            }
                        )
                        continue
                    if last is not None:
                        predicted = last[2] + (args.epochs + 1) * n * last[1]
                        if predicted > budget:
                            emit(
                                {
                                    **base,
                                    "mode": mode,
                                    "n": n,
                                    **fit,
                                    "skipped": f"predicted {predicted:.0f} s > budget {budget:.0f} s",
                                }
                            )
                            continue
                    try:
                        row = bench_vmap(engine, n, args.epochs)
                    except Exception as error:  # the estimate said it fits, the allocator disagreed
                        if not is_out_of_memory(error):
                            raise
                        out_of_memory_at = n
                        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300].replace(
                            "|", "/"
                        )
                        print(f"  out of memory at N={n}: {first_line}")
                        emit(
                            {
                                **base,
                                "mode": mode,
                                "n": n,
                                **fit,
                                "skipped": f"out of memory at run time (memory "
                                f"estimate {gib[0]:.3g} GiB, available {gib[1]:.3g} GiB): {first_line}",
                            }
                        )
                        continue
                    last = (n, 1 / row["model_epochs_per_s"], row["compile_s"])
                    emit({**base, "mode": mode, **fit, **row})
            elif mode == "lanes":
                for n in ns:
                    fit = memory_check(workload, n)
                    if fit["memory_estimate_mb"] > fit["memory_available_mb"]:
                        emit({**base, "mode": mode, "n": n, **fit, "skipped": "memory estimate > available"})
                        continue
                    row = bench_lanes(engine, n, args.epochs)
                    emit({**base, "mode": mode, **fit, **row})
                    print(f"           {row['chunks']} chunks of {row['chunk_population']} in {row['lanes']} lanes")
            elif mode == "sequential":
                records = bench_sequential(engine, min(max(ns), args.sequential_trials), args.epochs, budget)
                engine_cost = {k: records[0][k] for k in COST_KEYS}
                for row in sequential_rows(records, ns, workload.steps_per_epoch):
                    emit({**base, "mode": mode, **row})
            elif mode == "sequential-lanes":
                record = bench_sequential_lanes(engine, min(max(ns), args.sequential_trials), args.epochs)
                for n in ns:
                    timed = min(n, record["timed_trials"])
                    sweep_s = record["compile_s"] + n * record["trial_s"] / record["lanes"]
                    row = {**record, "n": n, "timed_trials": timed, "extrapolated": timed < n, "sweep_s": sweep_s}
                    emit({**base, "mode": mode, **row})
            elif mode == "torch-vmap":
                why = torch_available()
                if why is not None:
                    print(f"note: skipping mode {mode}: it does not import here ({why})")
                    continue
                if engine_cost is None:
                    engine_cost = one_member_cost(engine)
                cost = {**engine_cost, "flops_source": engine_cost["flops_source"] + " (the engine's, 1 member)"}
                last = None  # seconds per member-epoch of the last measured N
                for n in ns:
                    predicted = None if last is None else (args.epochs + 1) * n * last
                    if predicted is not None and predicted > budget:
                        skipped = f"predicted {predicted:.0f} s > budget {budget:.0f} s"
                        emit({**base, "mode": mode, "n": n, "skipped": skipped})
                        continue
                    row = bench_torch_vmap(workload, n, args.epochs, args.torch_threads)
                    last = 1 / row["model_epochs_per_s"]
                    emit({**base, "mode": mode, **row, **cost})
            else:
                why = keras_available() if mode == "keras" else torch_available()
                if why is not None:
                    print(f"note: skipping mode {mode}: it does not import here ({why})")
                    continue
                if engine_cost is None:
                    engine_cost = one_member_cost(engine)
                bench = bench_keras if mode == "keras" else bench_torch
                records = bench(workload, min(max(ns), args.framework_trials), args.epochs, budget)
                cost = {**engine_cost, "flops_source": engine_cost["flops_source"] + " (the engine's, 1 member)"}
                for row in framework_rows(records, ns, workload.steps_per_epoch, cost):
                    emit({**base, "mode": mode, **row})

    if args.trials is not None:
        max_population = None if args.max_population == "auto" else int(args.max_population)
        print(f"memory run: {args.trials} lesson trials, 1 epoch, sweeps.run(max_population={max_population})")
        row = bench_trials(args.trials, max_population)
        emit(row)
        print(
            f"  wall {row['wall_s']:.1f} s, peak memory {row['peak_mem_mb']:.0f} MB ({row['peak_mem_source']}), "
            f"ru_maxrss {row['ru_maxrss_mb']:.0f} MB, compilations {row['compilations']}"
        )
        print(f"  groups: {json.dumps(row['groups'])}")

    if args.end_to_end is not None:
        emit(bench_end_to_end(args.end_to_end, args.epochs, args.torch_threads))

    if not quick:
        measure_machine("end")
    rows = [with_machine(row) for row in rows]  # the fractions against the best peak of the whole run
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print()
    print(markdown_table(rows))
    ratios = against_sequential(rows)
    if ratios:
        print("\n" + ratios)
    png = out.with_suffix(".png")
    try:
        plot(rows, png, device)
    except ImportError as error:  # matplotlib is a dependency of the project, but a bare machine may lack it
        print(f"note: no plot ({type(error).__name__}: {error})")
    total = time.perf_counter() - started
    print(f"\n{len(rows)} rows -> {out}" + (f", plot -> {png}" if png.exists() else "") + f"; total {total:.0f} s")
    return 0


def devices_main(args: argparse.Namespace) -> int:
    """`--devices`: one population sharded over each device count; a markdown table and a JSONL file."""
    import device_scaling

    started = time.perf_counter()
    workload = (args.workload or ["lesson"])[0]
    if workload == "all":
        workload = "lesson"
    device = device_name()
    date = datetime.date.today().isoformat()
    out = args.out or RESULTS / f"{slug(device.replace(':', ''))}-{date}-devices.jsonl"
    print(f"device: {device} ({jax.default_backend()}, {os.cpu_count()} CPUs), jax {jax.__version__}")
    rows = device_scaling.run(args.devices or None, workload, args.n, args.epochs, out)
    print()
    print(device_scaling.markdown(rows))
    print(f"\n{len(rows)} rows -> {out}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
