"""Sweep throughput: one vectorized population against training the trials one by one.

Measures model-epochs per second (trials x epochs trained per wall-clock
second, compile excluded) for

- `vmap`: the engine, N trials as one population, one compiled epoch;
- `lanes`: the N trials as `sweeps.run` trains them on this machine: on a CPU of
  several cores cut into chunks trained side by side, one thread (lane) per core
  (`sweeps.planning.lanes.lane_chunk_size`); elsewhere the same as `vmap`;
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

on three workloads (`lesson`: the churn MLP 45 -> 64 -> 1, batch 32;
`wide`: 64 -> 512 -> 512 -> 512 -> 1, batch 256, 100k synthetic rows;
`digits-cnn`: a user's own Flax model, `models.cnn.CNN()`, on scikit-learn's 8x8
digits, batch 32, named on its own: `--workload all` is lesson and wide), and
the memory run: `--trials 100000` lesson trials for one epoch through
`sweeps.run`; and `--end-to-end N`: `sweeps.run` of N lesson trials (or of
`--end-to-end-workload`'s) x `--epochs` epochs, compile included, in a fresh
process with the persistent compilation cache off, against the torch-vmap
ensemble training the same trials end to end (a fresh process too). keras and
torch train the MLP workloads only; torch-vmap trains digits-cnn as the same CNN
in PyTorch. Each measurement is one JSON line; a markdown table goes to stdout
and a log-log plot next to the JSONL.

torch's OpenMP threads spin while they wait: on a machine busy with other
processes, set OMP_WAIT_POLICY=PASSIVE (which the rows record) or `--torch-threads 1`
(benchmarks/README.md, "The strongest peer: torch-vmap").

The parts, one idea each: `workloads.py` (the models and data), `machine.py` (peak
rates, memory, threads), `epoch_cost.py` (FLOPs and bytes of an epoch), the modes
(`engine_modes.py`: vmap, lanes; `sequential_modes.py`; `peer_modes.py`: keras,
torch, torch-vmap; `sweep_runs.py`: the memory run and end to end) and
`reporting.py` (files, tables, plot); `device_scaling.py` is `--devices`. This file
holds the command line and the loop over workloads and modes.

This file is never imported by the library. Run it from the repository root:

    python benchmarks/throughput.py --quick
    python benchmarks/throughput.py --workload all --mode all
    python benchmarks/throughput.py --workload lesson --n 256
    python benchmarks/throughput.py --workload lesson --n 256 --mode torch-vmap
    python benchmarks/throughput.py --end-to-end 256 --epochs 20     # sweeps.run vs torch-vmap, cold
    OMP_WAIT_POLICY=PASSIVE python benchmarks/throughput.py --end-to-end 256 --epochs 20 --torch-threads 2
    python benchmarks/throughput.py --workload digits-cnn --mode vmap sequential torch-vmap --n 16 64 256 \
        --budget-s 900                                           # a user's CNN (needs scikit-learn)
    python benchmarks/throughput.py --end-to-end 64 --epochs 10 --end-to-end-workload digits-cnn
    python benchmarks/throughput.py --trials 100000
    python benchmarks/throughput.py --devices            # throughput against the device count
    python benchmarks/throughput.py --devices 1 2 4 8 --n 256 1024
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
from engine_modes import Engine, measure_lanes, measure_vmap
from machine import MachineSamples, device_name, engine_commit, slug
from peer_modes import measure_framework, measure_torch_vmap
from reporting import RESULTS, against_sequential, console_line, markdown_table, output_path, plot
from sequential_modes import measure_sequential, measure_sequential_lanes
from sweep_runs import bench_end_to_end, bench_trials
from workloads import MLP_WORKLOADS, WORKLOADS, make_workloads

MODES = ("vmap", "lanes", "sequential", "sequential-lanes", "keras", "torch", "torch-vmap")
DEFAULT_MODES = ["vmap", "lanes", "sequential", "sequential-lanes"]
CPU_NS = (1, 8, 64, 256, 1024)
ACCELERATOR_NS = (1, 8, 64, 256, 1024, 4096, 16384)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workload",
        nargs="+",
        default=None,
        choices=[*WORKLOADS, "all"],
        help=f"default: all, which is {' and '.join(MLP_WORKLOADS)} (with --trials or --end-to-end alone: none, only "
        "those runs); digits-cnn (scikit-learn's digits, models.cnn.CNN) is named on its own",
    )
    parser.add_argument(
        "--mode",
        nargs="+",
        default=None,
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
    parser.add_argument(
        "--epochs", type=int, default=None, help="timed epochs, after one warm-up epoch (default 3; --quick: 1)"
    )
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
        help="a few-seconds subset: lesson, N 1 and 8, 1 epoch, the default modes (--workload, --mode, --n and "
        "--epochs given with it are kept)",
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
        help="sweeps.run of N trials x --epochs epochs of the lesson (or of --end-to-end-workload; compile "
        "included, cache off, a fresh process) against the torch-vmap ensemble training the same, end to end; "
        "prints both and the ratio",
    )
    parser.add_argument(
        "--end-to-end-workload",
        default="lesson",
        choices=WORKLOADS,
        help="the workload --end-to-end trains (default lesson)",
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
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, but got {args.epochs}")
    if args.n is not None and min(args.n) < 1:
        parser.error(f"every --n must be >= 1, but got {args.n}")
    if args.quick:  # what was not given
        args.workload, args.n = args.workload or ["lesson"], args.n or [1, 8]
        args.epochs = args.epochs or 1
        args.sequential_trials = min(args.sequential_trials, 4)
    args.mode, args.epochs = args.mode or DEFAULT_MODES, args.epochs or 3
    return args


def mode_rows(mode: str, engine: Engine, ns: list[int], args: argparse.Namespace, budget: float) -> Iterator[dict]:
    """The rows of one mode on the engine's workload, each as soon as it is measured."""
    if mode == "vmap":
        return measure_vmap(engine, ns, args.epochs, budget)
    if mode == "lanes":
        return measure_lanes(engine, ns, args.epochs)
    if mode == "sequential":
        return measure_sequential(engine, ns, args.epochs, args.sequential_trials, budget)
    if mode == "sequential-lanes":
        return measure_sequential_lanes(engine, ns, args.epochs, args.sequential_trials)
    if mode == "torch-vmap":
        return measure_torch_vmap(engine, ns, args.epochs, budget, args.torch_threads)
    return measure_framework(mode, engine, ns, args.epochs, args.framework_trials, budget)


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
    workloads = list(MLP_WORKLOADS) if "all" in args.workload else list(dict.fromkeys(args.workload))
    modes = list(MODES) if "all" in args.mode else list(dict.fromkeys(args.mode))
    date = datetime.date.today().isoformat()
    out = output_path(args.out, f"{slug(device.replace(':', ''))}-{date}.jsonl", args.quick)

    print(f"device: {device} ({backend}, {os.cpu_count()} CPUs), jax {jax.__version__}")
    quick = args.quick
    machine = MachineSamples(quick, accelerator)
    machine.measure("start")
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
        row = machine.annotate({**common, **row, "loadavg_1m": os.getloadavg()[0]})
        rows.append(row)
        with out.open("a") as f:  # written as it goes, so an interrupted run keeps its rows
            f.write(json.dumps(row) + "\n")
        line = console_line(row)
        if line is not None:
            print(line)

    out.write_text("")  # one file per run
    for index, name in enumerate(workloads):
        if index > 0 and not quick:
            machine.measure(f"before {name}")
        workload = make_workloads()[name]
        base = {
            "workload": name,
            "epochs": args.epochs,
            "batch_size": workload.batch_size,
            **({"hidden": list(workload.hidden)} if workload.model is None else {"model": workload.label()}),
            "train_rows": workload.data.n_train,
            "val_rows": workload.data.n_val,
            "steps_per_epoch": workload.steps_per_epoch,
        }
        engine = Engine(workload, traffic=not args.quick)
        for mode in modes:
            print(f"{name} / {mode}")
            for row in mode_rows(mode, engine, ns, args, budget):
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
        emit(bench_end_to_end(args.end_to_end, args.epochs, args.torch_threads, args.end_to_end_workload))

    if not quick:
        machine.measure("end")
    rows = [machine.annotate(row) for row in rows]  # the fractions against the best peak of the whole run
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
