"""What exporting a large sweep into an experiment tracker costs: seconds and trials per second.

    python benchmarks/tracker_export.py                                  # 10,000 trials, 3 epochs, into sqlite
    python benchmarks/tracker_export.py --trials 500 --store file sqlite # both local MLflow stores, a small sweep
    python benchmarks/tracker_export.py --run-dir runs/big               # an existing run (trained there if missing)
    python benchmarks/tracker_export.py --uri http://127.0.0.1:5000      # a running `mlflow server`
    python benchmarks/tracker_export.py --to tensorboard                 # TensorBoard's event files

The sweep: `sweeps.Random(n=--trials)` over learning_rate (loguniform 1e-4..1e-1) and weight_decay (loguniform
1e-5..1e-1) with AdamW, the built-in MLP hidden=(8,), `--epochs` epochs, on the shipped churn data
(data/telco_customer_churn.csv, target "Churn"). It is trained into `--run-dir` (default: a new folder under
--out), or loaded from there when that folder holds a finished run, and its training time printed.

Then the export is timed twice into one fresh store: the first writes everything (a parent run, a child per
trial with its params, tags, every epoch's metrics and its status: `Result.to_mlflow`), the second finds the
same runs and writes nothing again (a re-export). `--store` picks local MLflow stores (sqlite: a database file;
file: the ./mlruns folder layout, which MLflow 3 keeps in maintenance mode and refuses unless
MLFLOW_ALLOW_FILE_STORE=true, set here for it); `--uri` a tracking URI of your own instead. Printed: trials,
metric values written, seconds, trials/s, as a markdown table, then the rows as JSON.

`--to` names the tracker: mlflow, or tensorboard (`Result.to_tensorboard`, event files: no --store); a new one
is one more entry of EXPORTS. This folder is never imported by the library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import device_name, engine_commit  # noqa: E402

import sweeps  # noqa: E402
from models import MLP  # noqa: E402
from sweeps import space  # noqa: E402

CHURN = ROOT / "data" / "telco_customer_churn.csv"


def sweep_result(run_dir: Path, trials: int, epochs: int) -> tuple[sweeps.Result, float | None]:
    """The benchmark's sweep: loaded from `run_dir` when it holds a finished run (training seconds None), else
    trained there."""
    if (run_dir / "finished.json").is_file():
        return sweeps.load_result(run_dir), None
    data = sweeps.load_csv(CHURN, target="Churn")
    start = time.perf_counter()
    result = sweeps.run(
        data,
        space={"learning_rate": space.loguniform(1e-4, 1e-1), "weight_decay": space.loguniform(1e-5, 1e-1)},
        strategy=sweeps.Random(n=trials),
        model=MLP(hidden=(8,)),
        optimizer="adamw",
        epochs=epochs,
        run_dir=run_dir,
        keep_models=1,
    )
    return result, time.perf_counter() - start


def export_mlflow(result: sweeps.Result, target: str, folder: Path) -> Callable[[], Any]:
    """`Result.to_mlflow` into `target` ("sqlite", "file", or a tracking URI): what one export calls."""
    if target == "sqlite":
        uri = f"sqlite:///{folder}/mlflow.db"
    elif target == "file":
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses its file store without it
        uri = (folder / "mlruns").as_uri()
    else:
        uri = target
    experiment = f"tracker_export_{time.strftime('%Y%m%d_%H%M%S')}_{folder.name}"
    return lambda: result.to_mlflow(uri, experiment=experiment)


def export_tensorboard(result: sweeps.Result, target: str, folder: Path) -> Callable[[], Any]:
    """`Result.to_tensorboard` into `folder`/tensorboard (TensorBoard has one store: event files)."""
    return lambda: result.to_tensorboard(folder / "tensorboard")


# tracker -> what makes its export: (result, store or URI, a fresh folder) -> a function doing one export
EXPORTS = {"mlflow": export_mlflow, "tensorboard": export_tensorboard}


def mlflow_version() -> str:
    try:
        import mlflow
    except ImportError:
        return "not installed"
    return mlflow.__version__


def values_written(result: sweeps.Result) -> int:
    """Metric values an export writes: every history row, and each trial's `value` and `best_epoch`."""
    return len(result.history) + 2 * len(result.table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--run-dir", type=Path, help="an existing run to export, or where to train it")
    parser.add_argument("--to", choices=sorted(EXPORTS), default="mlflow")
    parser.add_argument("--store", nargs="+", choices=["sqlite", "file"], default=["sqlite"])
    parser.add_argument("--uri", help="a tracking URI of your own (a server's) instead of --store")
    parser.add_argument("--out", type=Path, help="where the stores go (default: a new folder under /tmp)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="sweeps-tracker-export-"))
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # a new experiment in a local database keeps its artifacts in ./mlruns
    run_dir = args.run_dir or out / "run"
    result, train_s = sweep_result(run_dir, args.trials, args.epochs)
    trials, values = len(result.table), values_written(result)
    print(f"{device_name()}, {os.cpu_count()} CPUs; sweepax {engine_commit()}, mlflow {mlflow_version()}; {run_dir}")
    if train_s is not None:
        print(f"trained {trials} trials x {args.epochs} epochs in {train_s:.1f} s")
    rows = []
    targets = ["events"] if args.to == "tensorboard" else [args.uri] if args.uri else args.store
    for target in targets:
        folder = out / f"{args.to}-{target if not args.uri else 'uri'}"
        folder.mkdir(parents=True, exist_ok=True)
        export = EXPORTS[args.to](result, target, folder)
        for what in ("export", "re-export"):
            start = time.perf_counter()
            export()
            seconds = time.perf_counter() - start
            written = values if what == "export" else 0
            rows.append(
                {"to": args.to, "store": target, "what": what, "trials": trials, "values": written, "s": seconds}
            )
    print("| to | store | what | trials | metric values written | s | trials/s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        rate = row["trials"] / row["s"]
        print(
            f"| {row['to']} | {row['store']} | {row['what']} | {row['trials']:,} | {row['values']:,} | "
            f"{row['s']:.1f} | {rate:,.0f} |"
        )
    print(json.dumps({"train_s": train_s, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
