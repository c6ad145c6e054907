"""The member step on the XLA path against the Pallas kernel (issue 25), in float32 and bfloat16.

For each workload (`lesson`: the churn MLP 45 -> 64 -> 1, batch 32; `wide`: 64 -> 512 x 3 -> 1, batch 256) and each
path (`xla`; `pallas-bKwW`: the kernel with K members and W Triton warps per program instance) and precision, the
epoch of N members as one population, N = 4,096, 16,384, 65,536 by default: model-epochs per second (the median
timed epoch, compile excluded; `engine_modes.bench_vmap`, the rows of `throughput.py` with the traffic an unfused
step must move and the roofline fractions), skipped where the memory estimate or the time budget says so, and a row
with the error where a path does not compile or run. First, on the card itself, the equivalence the tests show on a
CPU in Pallas's interpreter: N = 64 members (learning rates 1e-4 .. 1e-2) trained 2 epochs by the kernel and by the
XLA path, matmuls at float32's full precision (`jax.default_matmul_precision("highest")`: the GPU's default TF32
would differ by itself), the largest |difference| of any parameter and whether the same members diverged.

On a CPU the kernel runs interpreted (slow): `--quick` is the CPU smoke run. One JSON line per row on stdout (and
`--out`), a markdown table at the end.

    python benchmarks/kernel_paths.py                                   # on a GPU: everything, ~6 minutes
    python benchmarks/kernel_paths.py --workload lesson --n 16384 --blocks 1 2 4 --warps 2 4 8
    python benchmarks/kernel_paths.py --quick                           # CPU smoke run (interpreted kernel)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from engine_modes import Engine, measure_vmap  # noqa: E402
from machine import MachineSamples, device_name  # noqa: E402
from workloads import Workload, make_workloads  # noqa: E402

from sweeps.engine import flat_params  # noqa: E402
from sweeps.engine.kernel import KernelPlan, unsupported  # noqa: E402


def check_rates(n: int) -> np.ndarray:
    """Rates that train stably (1e-4 .. 1e-2): past them a member's trajectory is chaotic, and any rounding (the
    order of a sum) grows into a visible difference that says nothing about the kernel."""
    return np.logspace(-4, -2, n)


def paths(blocks: list[int], warps: list[int], interpret: bool) -> dict[str, KernelPlan | None]:
    """The XLA path and the kernel at each (block, warps): `pallas-b1w4` = 1 member, 4 warps per instance."""
    plans = {f"pallas-b{b}w{w}": KernelPlan(block=b, interpret=interpret, warps=w) for b in blocks for w in warps}
    return {"xla": None, **plans}


def equivalence(workload: Workload, n: int, plan: KernelPlan, epochs: int = 2) -> dict[str, Any]:
    """N members trained `epochs` epochs on the XLA path and in the kernel: the largest |parameter difference|."""
    trained = []
    with jax.default_matmul_precision("highest"):
        for kernel in (None, plan):
            engine = Engine(workload, traffic=False, kernel=kernel)
            pop, _, _ = engine.population(check_rates(n))
            program, _, _ = engine.compiled(pop)
            for epoch in range(epochs):
                pop, _ = engine.run_epoch(program, pop, epoch)
            trained.append(pop)
    a, b = trained
    finite = ~np.asarray(a.diverged)
    difference = np.abs(flat_params(a.params)[finite] - flat_params(b.params)[finite])
    return {
        "check": "equivalence",
        "workload": workload.name,
        "precision": workload.precision,
        "n": n,
        "epochs": epochs,
        "block": plan.block,
        "max_abs_param_difference": float(difference.max()) if difference.size else 0.0,
        "max_abs_param": float(np.abs(flat_params(a.params)[finite]).max()) if difference.size else 0.0,
        "same_diverged": bool(np.array_equal(np.asarray(a.diverged), np.asarray(b.diverged))),
        "diverged": int((~finite).sum()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", nargs="+", default=["lesson", "wide"], choices=["lesson", "wide"])
    parser.add_argument("--n", nargs="+", type=int, default=[4096, 16384, 65536])
    parser.add_argument("--blocks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--warps", nargs="+", type=int, default=[4, 8], help="Triton warps per program instance")
    parser.add_argument("--precision", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per row (after one warm-up)")
    parser.add_argument("--budget-s", type=float, default=40.0, help="skip an N predicted to take longer")
    parser.add_argument("--check-n", type=int, default=64, help="members in the equivalence check (0: none)")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: N 8, block 2, one epoch")
    parser.add_argument("--out", type=Path, help="also write the JSON lines here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.blocks, args.warps, args.epochs, args.check_n = [8], [2], [4], 1, 4
        args.workload = ["lesson"]
    interpret = jax.default_backend() != "gpu"
    device = device_name()
    machine = MachineSamples(args.quick, accelerator=not interpret)  # the copy bandwidth and matmul peak
    machine.measure("start")
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        row = {"device": device, "backend": jax.default_backend(), "jax": jax.__version__, **row}
        rows.append(row)
        line = json.dumps(row, default=str)
        print(line, flush=True)
        if args.out:
            with args.out.open("a") as out:
                out.write(line + "\n")

    workloads = make_workloads()
    for name in args.workload:
        for precision in args.precision:
            workload = Workload(
                name, workloads[name].hidden, workloads[name].batch_size, workloads[name]._load, precision=precision
            )
            why = unsupported(workload.structure())
            if why:
                emit({"workload": name, "precision": precision, "skipped": f"the kernel does not take it: {why}"})
                continue
            if args.check_n and name == "lesson":
                try:
                    emit(equivalence(workload, args.check_n, KernelPlan(block=args.blocks[0], interpret=interpret)))
                except Exception as error:  # recorded, the measurements go on
                    emit({"check": "equivalence", "workload": name, "precision": precision, "error": repr(error)[:400]})
            for path, plan in paths(args.blocks, args.warps, interpret).items():
                engine = Engine(workload, kernel=plan)
                start = time.perf_counter()
                try:
                    for row in measure_vmap(engine, args.n, args.epochs, args.budget_s):
                        emit({"workload": name, "precision": precision, "path": path, **machine.annotate(row)})
                except Exception as error:  # a path that does not compile or run is a result too
                    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:400]
                    emit({"workload": name, "precision": precision, "path": path, "error": first})
                print(f"# {name} {precision} {path}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    print(f"\n| workload | precision | path | N | model-epochs/s | epoch s | compile s |  ({device})")
    print("|---|---|---|---:|---:|---:|---:|")
    for row in rows:
        if "path" not in row:
            continue
        rate = row.get("skipped", row.get("error"))
        if "model_epochs_per_s" in row:
            rate = f"{row['model_epochs_per_s']:,.0f}"
        print(
            f"| {row['workload']} | {row['precision']} | {row['path']} | {row.get('n', '')} | {rate} | "
            f"{row.get('epoch_s', float('nan')):.4g} | {row.get('compile_s', float('nan')):.3g} |"
        )
    for row in rows:
        if row.get("check") == "equivalence":
            print(f"equivalence: {json.dumps(row)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
