"""Where one epoch's time goes: one warm epoch of a population under `jax.profiler.trace`, its trace read back.

Builds the lesson's (or `--workload wide`'s) population of `--n` members, compiles the engine's epoch, runs
one warm-up epoch and one timed epoch untraced, then one epoch under `jax.profiler.trace(dir)` and parses the
Chrome-trace JSON that JAX writes beside its XPlane (`plugins/profile/<run>/<host>.trace.json.gz`; it also
opens in ui.perfetto.dev). It prints, as a markdown table:

- the epoch's wall time untraced (the median of `--repeats` epochs) and traced, and model-epochs/s untraced;
- the device timeline: on a GPU the kernels of the `/device:GPU:N` streams; on a TPU its "XLA Ops" line;
  on a CPU, which has no device lane, the XLA thunks (events carrying an `hlo_op`) on the host's threads;
- its time summed by kernel (or op) name, self time (a CPU `while` thunk holds the ops of its body: they
  are charged to themselves, the `while` keeps only its own), the top `--top`;
- the number of kernel launches (CPU: thunks run), and the host gaps: time inside the timeline's span
  when nothing runs on it (the device waits for the host), with their count and the largest;
- the roofline counts from the shapes (`epoch_cost.roofline`): the traffic an unfused step must move,
  and the GB/s this epoch implies by that count.

A trace with no such lane is said so, and the wall time is still printed. `--out` writes the summary as
JSON. On an accelerator `--n` defaults to 16384 (lesson) or 1024 (wide), on a CPU to 256 (lesson) or 8.

This file is never imported by the library. Run it from the repository root:

    python benchmarks/profile_epoch.py --n 256
    python benchmarks/profile_epoch.py --workload wide --n 8 --out /tmp/profile-wide.json
    python benchmarks/profile_epoch.py --n 16384 --trace-dir $OUT/trace --out $OUT/profile.json   # a GPU
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import jax
from engine_modes import Engine, memory_check
from machine import device_name, engine_commit
from workloads import learning_rates, make_workloads

DEFAULT_N = {True: {"lesson": 16384, "wide": 1024}, False: {"lesson": 256, "wide": 8}}  # by accelerator, workload
DERIVED_LINES = ("XLA Modules", "Steps", "XLA TraceMe", "Framework Name Scope", "TensorFlow Name Scope", "Source code")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", default="lesson", choices=("lesson", "wide"), help="default lesson")
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help="members (default on an accelerator 16384 lesson, 1024 wide; on a CPU 256 lesson, 8 wide)",
    )
    parser.add_argument("--top", type=int, default=15, help="kernels (ops) listed by time (default 15)")
    parser.add_argument("--repeats", type=int, default=3, help="untraced epochs timed, median (default 3)")
    parser.add_argument(
        "--trace-dir", type=Path, default=None, help="where JAX writes the trace (default a new temporary folder)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the summary here as JSON")
    args = parser.parse_args(argv)
    if args.n is not None and args.n < 1:
        parser.error(f"--n must be >= 1, but got {args.n}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, but got {args.repeats}")
    if args.top < 1:
        parser.error(f"--top must be >= 1, but got {args.top}")
    return args


# --------------------------------------------------------------------------- the trace file


def find_trace(trace_dir: Path) -> Path | None:
    """The Chrome-trace JSON of the newest run under `trace_dir`/plugins/profile: `*.trace.json.gz` (what the
    profiler writes), else `perfetto_trace.json.gz` (what `create_perfetto_trace=True` adds); None if neither."""
    runs = sorted((trace_dir / "plugins" / "profile").glob("*/"), key=os.path.getmtime)
    for run in reversed(runs):
        for pattern in ("*.trace.json.gz", "perfetto_trace.json.gz", "*.trace.json"):
            found = sorted(run.glob(pattern))
            if found:
                return found[0]
    return None


def load_events(path: Path) -> list[dict[str, Any]]:
    """The trace's events (Chrome trace format: a dict with `traceEvents`, or a bare list)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        trace = json.load(f)
    return trace.get("traceEvents", []) if isinstance(trace, dict) else trace


def timeline_lanes(events: list[dict[str, Any]]) -> tuple[str | None, list[tuple[Any, Any]], list[str]]:
    """(what the lanes are, their (pid, tid), their names): where the compiled program's work shows in the trace.

    A GPU's streams (`/device:GPU:N` threads named `Stream ...`); else a device's `XLA Ops` line (a TPU); else
    every other thread of a `/device:` process but the derived lines (modules, steps, name scopes); else, as on
    a CPU, the host threads whose events carry an `hlo_op` (the XLA CPU runtime's thunks). (None, [], []) when
    none of these is in the trace."""
    processes, threads = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            processes[e.get("pid")] = str((e.get("args") or {}).get("name", ""))
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[e.get("pid"), e.get("tid")] = str((e.get("args") or {}).get("name", ""))
    device = {key: name for key, name in threads.items() if processes.get(key[0], "").startswith("/device:")}
    choices = (
        ("device streams", {k: n for k, n in device.items() if n.startswith("Stream")}),
        ("device XLA Ops", {k: n for k, n in device.items() if n == "XLA Ops"}),
        ("device lines", {k: n for k, n in device.items() if not n.startswith(DERIVED_LINES)}),
    )
    for kind, lanes in choices:
        used = {(e.get("pid"), e.get("tid")) for e in events if e.get("ph") == "X"} & set(lanes)
        if used:
            keys = sorted(used, key=str)
            return kind, keys, [f"{processes.get(k[0], k[0])} / {lanes[k]}" for k in keys]
    host = sorted(
        {(e.get("pid"), e.get("tid")) for e in events if e.get("ph") == "X" and "hlo_op" in (e.get("args") or {})},
        key=str,
    )
    if host:
        names = [f"{processes.get(k[0], k[0])} / {threads.get(k, k[1])}" for k in host]
        return "host threads running XLA thunks (no device lane: CPU)", host, names
    return None, [], []


def lane_events(events: list[dict[str, Any]], lanes: list[tuple[Any, Any]], host: bool) -> list[dict[str, Any]]:
    """The complete ('X') events on `lanes` with a duration, less the runtime's `end: ...` markers; on host lanes
    only the thunks (events that carry an `hlo_op`)."""
    wanted = set(lanes)
    return [
        e
        for e in events
        if e.get("ph") == "X"
        and (e.get("pid"), e.get("tid")) in wanted
        and "dur" in e
        and not str(e.get("name", "")).startswith("end: ")
        and (not host or "hlo_op" in (e.get("args") or {}))
    ]


def self_times(ops: list[dict[str, Any]]) -> list[float]:
    """Each op's duration less the ops nested in it on its own lane (a `while` thunk holds its body's ops), in µs,
    in the order of `ops`."""
    own = [float(e["dur"]) for e in ops]
    by_lane = defaultdict(list)
    for i, e in enumerate(ops):
        by_lane[e.get("pid"), e.get("tid")].append(i)
    for indices in by_lane.values():
        indices.sort(key=lambda i: (float(ops[i]["ts"]), -float(ops[i]["dur"])))
        stack: list[int] = []  # enclosing ops, innermost last
        for i in indices:
            start = float(ops[i]["ts"])
            while stack and start >= float(ops[stack[-1]]["ts"]) + float(ops[stack[-1]]["dur"]):
                stack.pop()
            if stack:
                own[stack[-1]] -= float(ops[i]["dur"])
            stack.append(i)
    return [max(t, 0.0) for t in own]


def busy_intervals(ops: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """The union of the ops' [start, end) in µs over every lane: when something runs on the timeline."""
    spans = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in ops)
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def summarize(events: list[dict[str, Any]], top: int = 15) -> dict[str, Any]:
    """Where the time goes on the trace's device timeline (`timeline_lanes`): time by kernel name (self time),
    kernel launches, busy time and host gaps. Without a timeline: `{"timeline": None, ...}` saying why."""
    kind, lanes, lane_names = timeline_lanes(events)
    if kind is None:
        return {"timeline": None, "note": "the trace has no device lane and no XLA op events: no kernel times"}
    ops = lane_events(events, lanes, host=not kind.startswith("device"))
    own = self_times(ops)
    by_name: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for e, t in zip(ops, own):
        entry = by_name[str(e.get("name"))]
        entry[0] += 1
        entry[1] += t
    kernel_us = sum(own)
    busy = busy_intervals(ops)
    span_us = busy[-1][1] - busy[0][0] if busy else 0.0
    busy_us = sum(end - start for start, end in busy)
    gaps = [b[0] - a[1] for a, b in zip(busy[:-1], busy[1:])]
    ranked = sorted(by_name.items(), key=lambda item: -item[1][1])
    return {
        "timeline": kind,
        "lanes": lane_names,
        "kernel_launches": len(ops),
        "distinct_kernels": len(by_name),
        "kernel_time_s": kernel_us / 1e6,  # self times summed: lanes side by side count twice
        "busy_s": busy_us / 1e6,  # the union over lanes
        "span_s": span_us / 1e6,  # first kernel's start to last kernel's end
        "host_gaps_s": (span_us - busy_us) / 1e6,
        "host_gaps": len(gaps),
        "largest_gap_us": max(gaps, default=0.0),
        "top": [
            {"name": name, "launches": count, "time_s": t / 1e6, "share": t / kernel_us if kernel_us else 0.0}
            for name, (count, t) in ranked[:top]
        ],
    }


# --------------------------------------------------------------------------- the epoch


def profile(workload_name: str, n: int, trace_dir: Path, top: int = 15, repeats: int = 3) -> dict[str, Any]:
    """One warm epoch of `n` members of the workload under the profiler, summarized (`summarize`), with the epoch's
    wall times (untraced: the median of `repeats` epochs), compile time and the roofline counts from the shapes."""
    workload = make_workloads()[workload_name]
    fit = memory_check(workload, n)
    if fit["memory_estimate_mb"] > fit["memory_available_mb"]:
        raise SystemExit(
            f"a population of {n} needs about {fit['memory_estimate_mb']:.0f} MB by the engine's estimate, but "
            f"{fit['memory_available_mb']:.0f} MB are available: choose a smaller --n"
        )
    engine = Engine(workload, traffic=False)
    pop, _, _ = engine.population(learning_rates(n))
    program, compile_s, cost = engine.compiled(pop)
    pop, warmup_s = engine.run_epoch(program, pop, 0)
    untraced = []
    for epoch in range(1, repeats + 1):
        pop, seconds = engine.run_epoch(program, pop, epoch)
        untraced.append(seconds)
    untraced_s = statistics.median(untraced)
    trace_dir.mkdir(parents=True, exist_ok=True)
    traced_s, path = None, None
    try:
        with jax.profiler.trace(str(trace_dir)):
            start = time.perf_counter()
            pop, _ = engine.run_epoch(program, pop, repeats + 1)
            traced_s = time.perf_counter() - start
        path = find_trace(trace_dir)
        if path is None:
            summary = {"timeline": None, "note": f"no *.trace.json.gz under {trace_dir}/plugins/profile"}
        else:
            summary = summarize(load_events(path), top)
    except Exception as error:  # a profiler plugin missing or failing here: the wall times still stand
        summary = {"timeline": None, "note": f"the profiler failed ({type(error).__name__}: {error})"}
    return {
        "workload": workload_name,
        "n": n,
        "device": device_name(),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "cpus": os.cpu_count(),
        "date": datetime.date.today().isoformat(),
        "engine_commit": engine_commit(),
        "steps_per_epoch": workload.steps_per_epoch,
        "compile_s": compile_s,
        "warmup_epoch_s": warmup_s,
        "epoch_s": untraced_s,
        "untraced_epochs_s": untraced,
        "traced_epoch_s": traced_s,
        "model_epochs_per_s": n / untraced_s,
        "unfused_gbs": n / untraced_s * cost["unfused_epoch_bytes"] / 1e9,
        **{k: cost[k] for k in ("unfused_step_bytes", "unfused_epoch_bytes", "roofline_flops")},
        "trace_file": None if path is None else str(path),
        **summary,
    }


def markdown(result: dict[str, Any]) -> str:
    """The summary as two markdown tables (the epoch; the top kernels), or the epoch alone without a timeline."""
    r, traced = result, result["traced_epoch_s"]
    lines = [
        f"{r['workload']}, N = {r['n']}, {r['device']} ({r['backend']}), jax {r['jax']}: one epoch of "
        f"{r['steps_per_epoch']} steps",
        "",
        "| what | value |",
        "|---|---|",
        f"| epoch wall time, untraced (median of {len(r['untraced_epochs_s'])}) | {1e3 * r['epoch_s']:.1f} ms "
        f"({r['model_epochs_per_s']:,.0f} model-epochs/s) |",
        f"| epoch wall time, traced | {'n/a' if traced is None else f'{1e3 * traced:.1f} ms'} |",
        f"| unfused traffic at the untraced rate | {r['unfused_gbs']:.3g} GB/s "
        f"({r['unfused_epoch_bytes'] / 1e6:.2f} MB per model-epoch) |",
    ]
    if r.get("timeline") is None:
        lines.append(f"| device timeline | none: {r.get('note', 'no trace')} |")
        return "\n".join(lines)
    launches = "thunks run" if r["timeline"].startswith("host") else "kernel launches"
    lines += [
        f"| timeline | {r['timeline']}: {len(r['lanes'])} lane(s) |",
        f"| {launches} | {r['kernel_launches']:,} ({r['distinct_kernels']} names; "
        f"{r['kernel_launches'] / r['steps_per_epoch']:.1f} per step) |",
        f"| busy (union of lanes) | {1e3 * r['busy_s']:.1f} ms of a {1e3 * r['span_s']:.1f} ms span "
        f"({100 * r['busy_s'] / traced:.0f}% of the traced wall time) |",
        f"| host gaps inside the span | {1e3 * r['host_gaps_s']:.1f} ms in {r['host_gaps']:,} gaps "
        f"(largest {r['largest_gap_us']:.0f} µs) |",
        f"| outside the span (launch, sync) | {1e3 * (traced - r['span_s']):.1f} ms |",
        "",
        "| kernel (op) | launches | self ms | share of kernel time |",
        "|---|---|---|---|",
    ]
    for k in r["top"]:
        name = k["name"] if len(k["name"]) <= 80 else k["name"][:77] + "..."
        lines.append(f"| `{name}` | {k['launches']:,} | {1e3 * k['time_s']:.2f} | {100 * k['share']:.1f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    accelerator = jax.default_backend() != "cpu"
    n = args.n or DEFAULT_N[accelerator][args.workload]
    trace_dir = args.trace_dir or Path(tempfile.mkdtemp(prefix="sweeps-profile-"))
    print(f"profiling one epoch of {args.workload} at N = {n}; trace -> {trace_dir}", flush=True)
    result = profile(args.workload, n, trace_dir, args.top, args.repeats)
    print(markdown(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"summary -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
