"""What a checkpoint costs a long sweep: seconds training waits per save, seconds until it is on disk, bytes.

    python benchmarks/checkpoint_cost.py                 # the lesson sweep at N = 64 and 4096
    python benchmarks/checkpoint_cost.py --n 64 256 --repeats 5

A lesson population (churn MLP 45 -> 64 -> 1, Adam) of N members is trained for one epoch, then
saved `--repeats` times through `sweeps.driver.checkpoints.Checkpoints` exactly as the sweep loop saves
it (population, records of one epoch, meta): `blocked_s` is how long `save` holds the training loop
(orbax copies the arrays off the device, then writes in the background), `written_s` until the
files are complete (`wait`), `bytes` the size of one checkpoint folder on disk. Medians of the
repeats. This folder is never imported by the library.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sweeps  # noqa: E402
from sweeps import space  # noqa: E402
from sweeps.driver.checkpoints import Checkpoints  # noqa: E402
from sweeps.driver.populations import new_population  # noqa: E402
from sweeps.driver.scheduler import Scheduler  # noqa: E402
from sweeps.driver.state import Item  # noqa: E402


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(data, n: int, repeats: int) -> dict:
    plan = sweeps.dry_run(
        data, space={"learning_rate": space.loguniform(1e-4, 1e-1)}, strategy=sweeps.Grid(n=n), epochs=20, batch_size=32
    )
    (group,) = plan.groups
    (chunk,) = group.chunks
    scheduler = Scheduler(plan.plan)
    pop, metrics = scheduler.programs.runner(group).epoch(
        new_population(group.structure, chunk, group.chunk_size, 0), 0
    )
    scheduler.state.records.add(metrics)
    scheduler.state.flight[0] = Item(0, group, chunk, epochs=20, epoch=1, pop=pop)  # one item in flight, mid-chunk
    jax.block_until_ready(pop)
    blocked, written, sizes = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = Checkpoints(folder, keep=2, every=1)
        for _ in range(repeats):
            snapshot = scheduler.state.snapshot({}, {})
            start = time.perf_counter()
            step = checkpoints.save(snapshot)
            blocked.append(time.perf_counter() - start)
            checkpoints.wait()
            written.append(time.perf_counter() - start)
            sizes.append(folder_bytes(Path(folder) / "checkpoints" / str(step)))
        checkpoints.close()
    population_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(pop))
    return {
        "n": n,
        "blocked_s": statistics.median(blocked),
        "written_s": statistics.median(written),
        "bytes": int(statistics.median(sizes)),
        "population_bytes": population_bytes,
        "epoch_s_note": "one lesson epoch at this N is in benchmarks/README.md (throughput table)",
        "repeats": repeats,
        "device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
        "machine": platform.processor() or platform.machine(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", nargs="+", type=int, default=[64, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    data = sweeps.load_csv(ROOT / "data" / "telco_customer_churn.csv", target="Churn")
    rows = [measure(data, n, args.repeats) for n in args.n]
    print("| N | training waits per save (s) | until on disk (s) | checkpoint on disk (MB) | population (MB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['n']} | {r['blocked_s']:.3f} | {r['written_s']:.3f} | {r['bytes'] / 1e6:.1f} | "
            f"{r['population_bytes'] / 1e6:.1f} |"
        )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
