"""The machine a benchmark runs on: its name, its matmul peak and copy bandwidth, memory in use, threads.

The fractions of peak in the throughput table are against the best matmul and copy rates measured
during the run (`MachineSamples`): on a shared machine they move with the load.

Part of `benchmarks/throughput.py` (also used by `device_scaling.py`, `lanes.py`, `compiler_options.py`);
never imported by the library.
"""

from __future__ import annotations

import platform
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from epoch_cost import roofline_rates

from sweeps.planning.lanes import cpu_cores, lanes_from_environment

ROOT = Path(__file__).resolve().parents[1]


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


# --------------------------------------------------------------------------- peak rates


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
    allocation (on CPU far slower than the copy itself: benchmarks/README.md,
    "What each row holds").
    """
    copy = jax.jit(lambda v: v + 1.0, donate_argnums=0)
    x = copy(jnp.zeros(megabytes * 2**20 // 4, jnp.float32))
    nbytes = x.nbytes

    def step():
        nonlocal x
        x = copy(x)
        return x

    return 2 * nbytes / median_seconds(step, repeats) / 1e9


class MachineSamples:
    """The machine's matmul peak and copy bandwidth, measured at the start, before each workload and at the
    end; a row's fractions of peak use the best of the run."""

    def __init__(self, quick: bool, accelerator: bool):
        self.quick, self.accelerator = quick, accelerator
        self.samples: list[tuple[str, float, float]] = []  # (when, matmul GFLOP/s, copy GB/s)

    def measure(self, when: str) -> None:
        quick, accelerator = self.quick, self.accelerator
        peak = matmul_peak_gflops(1024 if quick else (8192 if accelerator else 2048), repeats=3 if quick else 7)
        bandwidth = memory_bandwidth_gbs(64 if quick else (1024 if accelerator else 256), repeats=3 if quick else 7)
        self.samples.append((when, peak, bandwidth))
        print(
            f"[{when}] matmul peak {peak:.1f} GFLOP/s (float32 jnp.dot), "
            f"memory bandwidth {bandwidth:.1f} GB/s (x + 1 copy)"
        )

    def annotate(self, row: dict[str, Any]) -> dict[str, Any]:
        """`row` with the best peak and bandwidth so far, every sample, and its GFLOP/s and fractions of them.

        Two counts: XLA's (`gflops` and `peak_fraction` from `flops`; `xla_bandwidth_fraction` from `bytes`, which
        includes traffic that stays in cache, so it can pass 1) and the shapes' (`epoch_cost.roofline_rates`: the
        unfused step's traffic, its share of the copy bandwidth and the roof it implies)."""
        peak, bandwidth = max(p for _, p, _ in self.samples), max(b for _, _, b in self.samples)
        row = {
            **row,
            "matmul_peak_gflops": peak,
            "mem_bandwidth_gbs": bandwidth,
            "machine_samples": [{"when": w, "matmul_gflops": p, "copy_gbs": b} for w, p, b in self.samples],
        }
        if not row.get("skipped") and "flops" in row:
            row["gflops"] = row["flops"] * row["model_epochs_per_s"] / 1e9
            row["peak_fraction"] = row["gflops"] / peak
            row["xla_bandwidth_fraction"] = row["bytes"] * row["model_epochs_per_s"] / 1e9 / bandwidth
        if not row.get("skipped") and "unfused_epoch_bytes" in row:
            row.update(roofline_rates(row, peak, bandwidth))
        return row


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
    return max_rss_mb(), "process peak RSS (ru_maxrss)"


def max_rss_mb() -> float:
    """The process's peak resident memory as `getrusage` reports it."""
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# --------------------------------------------------------------------------- threads


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
