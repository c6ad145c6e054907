"""Fused shapes against one program per structure (issue 23): the same sweep with `fuse` on and off.

  python benchmarks/fused_shapes.py churn-three
      `sweeps run data/examples/churn_three.toml` (5 batch sizes x 18 trials) cold (SWEEPS_CACHE_DIR=off), each
      setting in a fresh process: the whole process's wall time, its compile seconds and programs.
  python benchmarks/fused_shapes.py widths-depths [--lrs 64] [--epochs 20] [--steady-only]
      widths {16, 32, 64, 128, 256} x depths {1, 2, 3} x `--lrs` learning rates (1e-4 to 1e-1) x `--epochs` on the
      churn data, batch 32, Adam: end to end through `sweeps.run` in a fresh process per setting, cold; and the
      steady-state model-epochs/s of the planned groups (each group's first chunk, epochs after its first,
      one population at a time; chunks times the count of chunks).

Each mode prints one JSON line (and appends it to `--json`); a comparison follows. The machine's load is part of
every row (`loadavg_1m` before): measure on a quiet machine. Never imported by the library.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHURN_THREE = ROOT / "data" / "examples" / "churn_three.toml"
CHURN = ROOT / "data" / "telco_customer_churn.csv"
WIDTHS, DEPTHS = (16, 32, 64, 128, 256), (1, 2, 3)

WIDTHS_DEPTHS = """
import json, sys, time
start = time.perf_counter()
import numpy as np
import sweeps
fuse, lrs, epochs, run_dir = sys.argv[1] == "true", int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
data = sweeps.load_csv({churn!r}, target="Churn")
hidden = [(w,) * d for w in {widths!r} for d in {depths!r}]
space = {{"learning_rate": list(np.logspace(-4, -1, lrs)), "hidden": sweeps.space.choice(hidden)}}
result = sweeps.run(data, space=space, strategy=sweeps.Grid(), epochs=epochs, batch_size=32, fuse=fuse, plots=False,
                    run_dir=run_dir)
print(json.dumps({{"sweep_s": time.perf_counter() - start, "best_val_loss": float(result.best()["value"])}}))
"""


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def process(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Runs `command` to its end: (wall seconds of the whole process, its stdout)."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return wall, done.stdout


def run_record(run_dir: Path) -> dict[str, Any]:
    """What config.json says of the programs: compile seconds, programs built, groups."""
    config = json.loads((run_dir / "config.json").read_text())
    models = config.get("models") or [{}]
    return {
        "sweep_wall_s": config.get("wall_s"),
        "compile_s": config.get("compile_s"),
        "programs": len(config.get("compile_by_structure", [])),
        "groups": [g["structure"] for g in config.get("groups", [])],
        "best_value": models[0].get("value"),
    }


def churn_three() -> list[dict[str, Any]]:
    rows = []
    env = {**os.environ, "SWEEPS_CACHE_DIR": "off", "PYTHONPATH": str(ROOT)}
    for fuse in ("true", "false"):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            load = loadavg()
            command = [sys.executable, "-m", "sweeps", "run", str(CHURN_THREE), "--set", f"train.fuse={fuse}"]
            wall, _ = process([*command, "--out", str(out)], env)
            rows.append(
                {"benchmark": "churn-three", "fuse": fuse == "true", "process_s": round(wall, 2), "loadavg_1m": load}
                | run_record(out)
            )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def widths_depths(lrs: int, epochs: int, steady_only: bool, settings=(True, False)) -> list[dict[str, Any]]:
    rows = []
    env = {**os.environ, "SWEEPS_CACHE_DIR": "off", "PYTHONPATH": str(ROOT)}
    script = WIDTHS_DEPTHS.format(churn=str(CHURN), widths=WIDTHS, depths=DEPTHS)
    for fuse in settings:
        row = {"benchmark": "widths-depths", "fuse": fuse, "trials": lrs * len(WIDTHS) * len(DEPTHS), "epochs": epochs}
        row |= steady_state(lrs, epochs, fuse)
        if not steady_only:
            with tempfile.TemporaryDirectory() as tmp:
                load = loadavg()
                wall, out = process([sys.executable, "-c", script, str(fuse).lower(), str(lrs), str(epochs), tmp], env)
                row |= {"process_s": round(wall, 2), "loadavg_1m": load} | json.loads(out.splitlines()[-1])
                row |= run_record(Path(tmp))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def steady_state(lrs: int, epochs: int, fuse: bool, repeats: int = 2) -> dict[str, Any]:
    """Model-epochs/s of the groups the sweep plans (for `epochs` epochs: the cost model weighs them) once
    compiled: each group's first chunk trained one epoch (compiling), then `repeats` epochs timed; a group's epoch
    is its chunk's times its count of chunks."""
    import sweeps
    from sweeps.driver.populations import ChunkRunner, controls_for, new_population

    data = sweeps.load_csv(CHURN, target="Churn")
    hidden = [(w,) * d for w in WIDTHS for d in DEPTHS]
    space = {"learning_rate": list(np.logspace(-4, -1, lrs)), "hidden": sweeps.space.choice(hidden)}
    planned = sweeps.dry_run(data, space=space, strategy=sweeps.Grid(), epochs=epochs, batch_size=32, fuse=fuse)
    controls = controls_for(data, None, None)
    seconds, members = 0.0, 0
    for group in planned.groups:
        chunk = group.chunks[0]
        runner = ChunkRunner(group.structure, data, 0, None, controls)
        pop, _ = runner.epoch(new_population(group.structure, chunk, group.population, 0), 0)
        times = []
        for epoch in range(1, repeats + 1):
            start = time.perf_counter()
            pop, _ = runner.epoch(pop, epoch)
            times.append(time.perf_counter() - start)
        seconds += min(times) * group.n_chunks
        members += len(group.trials)
    return {"steady_model_epochs_per_s": round(members / seconds, 1), "steady_groups": len(planned.groups)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["churn-three", "widths-depths"])
    parser.add_argument("--lrs", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steady-only", action="store_true", help="widths-depths: skip the end-to-end runs")
    parser.add_argument("--json", type=Path, help="append the rows to this JSON-lines file")
    parser.add_argument("--fuse", choices=["both", "on", "off"], default="both", help="widths-depths: which settings")
    args = parser.parse_args(argv)
    if args.benchmark == "churn-three":
        rows = churn_three()
        fused, apart = rows
        print(
            f"churn_three cold, whole process: fused {fused['process_s']} s ({fused['programs']} program), "
            f"one program per structure {apart['process_s']} s ({apart['programs']} programs): "
            f"{fused['process_s'] / apart['process_s']:.2f} of it"
        )
    else:
        settings = {"both": (True, False), "on": (True,), "off": (False,)}[args.fuse]
        rows = widths_depths(args.lrs, args.epochs, args.steady_only, settings)
        if len(rows) == 1:
            return 0
        fused, apart = rows
        line = (
            f"widths x depths x {args.lrs} learning rates: steady state {fused['steady_model_epochs_per_s']} "
            f"model-epochs/s fused ({fused['steady_groups']} programs) against {apart['steady_model_epochs_per_s']} "
            f"({apart['steady_groups']})"
        )
        if "process_s" in fused:
            line += f"; end to end {fused['process_s']} s against {apart['process_s']} s"
        print(line)
    if args.json:
        with args.json.open("a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
