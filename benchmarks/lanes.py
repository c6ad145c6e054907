"""Lanes: two small populations trained one after the other against side by side (`sweeps.lanes`).

For each population size N and pair of batch sizes, two lesson populations (the churn MLP 45 -> 64
-> 1, N learning rates each, one per batch size) train `--epochs` epochs each, first one after the
other, then at the same time in two threads (as the sweep's lanes do), `--repeats` times
alternating; each line is one repeat. Compile and a warm-up epoch are excluded. The ratio is what
`sweeps.planning.lanes.LANE_PARAMETERS` was chosen from: lanes pay while a population leaves cores idle.

    python benchmarks/lanes.py                       # N 8 18 32 64 128 256, batches 16+32 and 128+256
    python benchmarks/lanes.py --n 18 64 --epochs 5

`--split`: the cut of one group for lanes (`sweeps.planning.lanes.lane_chunk_size`). For each N, the lesson's
N learning rates (batch 32) train as one population, as the lane cut's chunks side by side (one
thread per lane), and as the same chunks one after the other in one thread; repeats alternate, each
line gives seconds per epoch of all N and the ratio whole / cut in lanes. `--hidden` sets the
hidden layers of the model on the churn data (default 64: the lesson's).

    python benchmarks/lanes.py --split --n 32 64 128 256
    python benchmarks/lanes.py --split --n 64 --hidden 128,128

This file is never imported by the library. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
from engine_modes import Engine
from machine import device_name, engine_commit, in_threads, lanes_here, slug
from workloads import Workload, learning_rates, lesson_data, make_workloads

from sweeps.engine import n_params
from sweeps.planning.lanes import cpu_cores, lane_chunk_size

RESULTS = Path(__file__).resolve().parent / "results"


def populations(n: int, batch_sizes: tuple[int, ...]) -> list[list]:
    """Per batch size: [engine, compiled epoch, population after one warm-up epoch]."""
    out = []
    for batch_size in batch_sizes:
        engine = Engine(Workload("lesson", (64,), batch_size, lesson_data), False)
        pop, _, _ = engine.population(learning_rates(n))
        program, _, _ = engine.compiled(pop)
        pop, _ = engine.run_epoch(program, pop, 0)
        out.append([engine, program, pop])
    return out


def train(entry: list, epochs: int) -> None:
    engine, program, pop = entry
    for epoch in range(1, epochs + 1):
        pop, _ = engine.run_epoch(program, pop, epoch)
    entry[2] = pop


def one_after_the_other(entries: list[list], epochs: int) -> float:
    start = time.perf_counter()
    for entry in entries:
        train(entry, epochs)
    return time.perf_counter() - start


def side_by_side(entries: list[list], epochs: int) -> float:
    return in_threads(lambda j: train(entries[j], epochs), len(entries))


def split(ns: list[int], hidden: tuple[int, ...], epochs: int, repeats: int, log) -> None:
    """`--split` (module docstring)."""
    engine = Engine(Workload("lesson", hidden, 32, lesson_data), False)
    print(f"hidden {list(hidden)}: {n_params(engine.workload.structure())} parameters per member")
    lanes = lanes_here()
    print(f"{'N':>5} {'chunks':>9} {'whole s/epoch':>14} {'cut, lanes':>11} {'cut, one thread':>16} {'ratio':>6}")
    for n in ns:
        size = lane_chunk_size(engine.workload.structure(), n, n, lanes)
        rates = learning_rates(n)
        entries = []  # the whole population, then the chunks: each [engine, program, population after epoch 0]
        for part in [rates] + [rates[i : i + size] for i in range(0, n, size)]:
            pop = engine.population(part)[0]
            program = engine.compiled(pop)[0]
            entries.append([engine, program, engine.run_epoch(program, pop, 0)[0]])
        whole, chunks = entries[0], entries[1:]
        in_lanes = [chunks[j::lanes] for j in range(lanes)]
        for _ in range(repeats):
            alone = one_after_the_other([whole], epochs) / epochs
            cut = side_by_side_lists(in_lanes, epochs) / epochs
            one_thread = one_after_the_other(chunks, epochs) / epochs
            row = {
                "device": device_name(),
                "split": True,
                "hidden": list(hidden),
                "n": n,
                "chunks": len(chunks),
                "chunk_population": size,
                "lanes": lanes,
                "whole_epoch_s": round(alone, 4),
                "cut_lanes_epoch_s": round(cut, 4),
                "cut_one_thread_epoch_s": round(one_thread, 4),
                "commit": engine_commit(),
            }
            log.write(json.dumps(row) + "\n")
            line = f"{n:>5} {len(chunks):>4} x {size:<3} {alone:>14.3f} {cut:>11.3f} {one_thread:>16.3f}"
            print(f"{line} {alone / cut:>6.2f}")


def side_by_side_lists(lanes: list[list[list]], epochs: int) -> float:
    """Each lane's entries trained epoch by epoch in its own thread."""

    def lane(j: int) -> None:
        for epoch in range(1, epochs + 1):
            for entry in lanes[j]:
                engine, program, pop = entry
                entry[2], _ = engine.run_epoch(program, pop, epoch)

    return in_threads(lane, len(lanes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[8, 18, 32, 64, 128, 256])
    parser.add_argument("--batches", nargs="+", default=["16,32", "128,256"], help="pairs of batch sizes")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--split", action="store_true", help="one group whole against cut for lanes (docstring)")
    parser.add_argument("--hidden", default="64", help="--split: hidden widths, comma-separated (default 64)")
    args = parser.parse_args()
    device = device_name()
    out = args.out or RESULTS / f"lanes-{slug(device)}-{time.strftime('%Y-%m-%d')}.jsonl"
    member = n_params(make_workloads()["lesson"].structure())
    print(f"{device}, {cpu_cores()} cores, jax {jax.__version__}; {member} parameters per member")
    if args.split:
        with out.open("a") as log:
            split(args.n, tuple(int(w) for w in args.hidden.split(",")), args.epochs, args.repeats, log)
        print(f"rows appended to {out}")
        return
    print(
        f"{'N':>5} {'parameters':>10} {'batches':>8} {'one after the other s':>22} {'side by side s':>15} {'ratio':>6}"
    )
    with out.open("a") as log:
        for n in args.n:
            for pair in args.batches:
                batch_sizes = tuple(int(b) for b in pair.split(","))
                entries = populations(n, batch_sizes)
                for _ in range(args.repeats):
                    alone = one_after_the_other(entries, args.epochs)
                    both = side_by_side(entries, args.epochs)
                    row = {
                        "device": device,
                        "n": n,
                        "parameters": n * member,
                        "batch_sizes": list(batch_sizes),
                        "epochs": args.epochs,
                        "one_after_the_other_s": round(alone, 4),
                        "side_by_side_s": round(both, 4),
                        "ratio": round(alone / both, 3),
                        "commit": engine_commit(),
                    }
                    log.write(json.dumps(row) + "\n")
                    print(f"{n:>5} {n * member:>10} {pair:>8} {alone:>22.3f} {both:>15.3f} {alone / both:>6.2f}")
    print(f"rows appended to {out}")


if __name__ == "__main__":
    main()
