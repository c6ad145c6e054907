"""What the throughput benchmark writes: where its files go, its console lines, the markdown tables, the plot.

Part of `benchmarks/throughput.py` (`output_path` also serves `strategies.py`); never imported by the library.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"  # the campaigns' files, tracked: never a --quick run's
TABLES_OF_THEIR_OWN = ("sweeps.run", "end-to-end")  # modes whose rows are not throughput rows


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


def console_line(row: dict[str, Any]) -> str | None:
    """The line printed as a row is measured: a throughput row's rate, times and GFLOP/s, or why it was
    skipped; None for the rows with tables of their own (their runs print as they go)."""
    if row.get("skipped"):
        return f"  {row['workload']:>6} {row['mode']:>10} N={row['n']:<6} skipped: {row['skipped']}"
    if row.get("mode") in TABLES_OF_THEIR_OWN:
        return None
    return (
        f"  {row['workload']:>6} {row['mode']:>10} N={row['n']:<6} "
        f"{row['model_epochs_per_s']:9.3g} model-epochs/s"
        f"  sweep {row['sweep_s']:.3g} s  compile {row['compile_s']:.2f} s{compile_parts(row)}"
        f"  timed trials {row['timed_trials']}"
        f"  {row['gflops']:.3g} GFLOP/s (XLA's count){unfused_traffic(row)}"
    )


def unfused_traffic(row: dict[str, Any]) -> str:
    """ "  unfused 1.2 GB/s = 3.1% of copy (roof 2,740 model-epochs/s)" for a row with the roofline's rates
    (`epoch_cost.roofline_rates`), "" for one without."""
    if "unfused_gbs" not in row:
        return ""
    return (
        f"  unfused {row['unfused_gbs']:.3g} GB/s = {100 * row['unfused_bandwidth_fraction']:.2g}% of copy"
        f" (roof {row['unfused_roof_model_epochs_per_s']:,.0f} model-epochs/s)"
    )


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


def compile_parts(row: dict[str, Any]) -> str:
    """ " (epoch 1.10 + init 0.62)" for the engine's rows (compile_s is their sum); "" for the others."""
    if "compile_epoch_s" not in row:
        return ""
    return f" (epoch {row['compile_epoch_s']:.2f} + init {row['compile_init_s']:.2f})"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The throughput rows, then the memory runs' and the end-to-end comparisons' tables.

    The roofline columns count from the shapes (`epoch_cost.roofline`): GFLOP/s and % of the matmul peak from
    the hand-counted FLOPs; "unfused GB/s" is the traffic an unfused member step must move (parameters, gradient
    and optimizer state) x the rate, against the measured copy bandwidth; "unfused roof" is that bandwidth over
    the bytes per model-epoch. XLA's bytes accessed (which count traffic that stays in cache) are only in the
    last-but-one column, per member-step and against the analytic minimum."""
    head = (
        "| workload | mode | N | model-epochs/s | µs per step | sweep s | compile s (epoch + init) | timed trials "
        "| GFLOP/s (shapes) | % of matmul peak | unfused GB/s | % of copy bandwidth | unfused roof, model-epochs/s "
        "| XLA's kB per member-step (x minimum) | peak MB |"
    )
    throughput = [r for r in rows if r.get("mode") not in TABLES_OF_THEIR_OWN]
    lines = [head, "|" + "---|" * (head.count("|") - 1)] if throughput else []
    for r in throughput:
        if r.get("skipped"):
            lines.append(f"| {r['workload']} | {r['mode']} | {r['n']} | skipped: {r['skipped']} |" + " |" * 11)
            continue
        timed = f"{r['timed_trials']}{' (extrap.)' if r.get('extrapolated') else ''}"
        traffic = "n/a"
        engine = r["mode"] in ("vmap", "lanes", "sequential", "sequential-lanes")  # others carry the engine's cost
        if engine and r.get("bytes_source", "").startswith("xla") and r.get("steps_per_epoch"):
            traffic = f"{r['bytes'] / r['steps_per_epoch'] / 1e3:.0f} ({r['bytes'] / r['bytes_analytic']:.2f}x)"
        if "unfused_gbs" in r:
            roof = (
                f"{r['roofline_gflops']:.3g} | {100 * r['roofline_peak_fraction']:.2g} | {r['unfused_gbs']:.3g} "
                f"| {100 * r['unfused_bandwidth_fraction']:.2g} | {r['unfused_roof_model_epochs_per_s']:,.0f}"
            )
        else:
            roof = "n/a | n/a | n/a | n/a | n/a"
        lines.append(
            f"| {r['workload']} | {r['mode']} | {r['n']} | {r['model_epochs_per_s']:.3g} | {r['step_us']:.0f} "
            f"| {r['sweep_s']:.3g} | {r['compile_s']:.2f} | {timed} | {roof} | {traffic} | {r['peak_mem_mb']:.0f} |"
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
            workload = r.get("workload", "lesson")
            trials = f"{r['n']} x {r['epochs']}" + ("" if workload == "lesson" else f" ({workload})")
            lines.append(
                f"| {trials} | {r['sweeps_run_s']:.1f} | {r['torch_vmap_s']:.1f} | {r['ratio']:.2f}x "
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
    styles = {"lesson": "-", "wide": "--", "digits-cnn": "-."}
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
