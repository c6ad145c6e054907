"""A messy CSV through the whole command: a high-cardinality text column and a row counter.

    python benchmarks/messy_columns.py                         # this checkout, outputs in /tmp/sweepax-messy-columns
    python benchmarks/messy_columns.py --repo /tmp/old --label before --out /tmp/messy
    python benchmarks/messy_columns.py --dropped               # also the sweep with both columns dropped

The shipped churn CSV plus two columns a real export often has: `city`, `--cities` random text
values (numpy seed `--seed`, uninformative: drawn independently of every other column) and
`row`, a row counter (1, 2, ..., rows). The example sweep `data/examples/churn_lr.toml` (64
learning rates, 20 epochs, batch 32) then runs on it through `python -m sweeps run` of the
checkout `--repo` (default: this one), once as `--dry-run` (the plan and its memory estimate)
and once for real under `/usr/bin/time -v` (the peak resident memory of the whole process).
Reported: the encoded width (features), the dry run's memory estimate per chunk (memory_mb) and
the chunks trained at once (lanes), the peak RSS, the best trial's val_auc and val_loss, wall time.

Everything is written under `--out` (default /tmp/sweepax-messy-columns), never into the
repository: the CSV, the config, the run folders, each command's output and `summary.json`.
This folder is never imported by the library.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "data/examples/churn_lr.toml"
CHURN = "data/telco_customer_churn.csv"


def messy_csv(path: Path, cities: int, seed: int) -> dict:
    """The churn CSV with `city` (random text, `cities` values) and `row` (1..rows) added."""
    frame = pd.read_csv(ROOT / CHURN)
    rng = np.random.default_rng(seed)
    names = np.array([f"city_{i:04d}" for i in range(cities)], dtype=object)
    frame.insert(1, "city", names[rng.integers(cities, size=len(frame))])
    frame.insert(0, "row", np.arange(1, len(frame) + 1))
    frame.to_csv(path, index=False)
    return {"rows": len(frame), "city_values": int(frame["city"].nunique()), "row_values": int(frame["row"].nunique())}


def config_file(path: Path, csv: Path, drop: list[str]) -> None:
    """The example config with its data path replaced (and `drop` set)."""
    text = (ROOT / EXAMPLE).read_text()
    text = re.sub(r'(?m)^path = "[^"]*"', f"path = {json.dumps(str(csv))}", text)
    if drop:
        text = re.sub(r"(?m)^target = (.*)$", lambda m: f"target = {m.group(1)}\ndrop = {json.dumps(drop)}", text)
    path.write_text(text)


def command(repo: Path, args: list[str], log: Path, timed: bool = False) -> tuple[str, float, int | None]:
    """Runs `python -m sweeps ARGS` from `repo`; returns (stdout and stderr, wall seconds, max RSS kB)."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    argv = [sys.executable, "-m", "sweeps", *args]
    if timed:
        argv = ["/usr/bin/time", "-v", *argv]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    output = done.stdout + done.stderr
    log.write_text(output)
    if done.returncode != 0:
        raise SystemExit(f"`{' '.join(argv)}` failed (exit {done.returncode}); its output is in {log}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", output)
    return output, wall, int(rss.group(1)) if rss else None


def dry_run_numbers(output: str) -> dict:
    """The plan's table (groups, chunks, memory_mb), the lanes and the features line of a dry run."""
    lines = output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["group", "structure"])
    columns = lines[head].split()
    row = lines[head + 1].split()
    table = dict(zip(columns[-7:], row[-7:]))  # the structure label has spaces; the numbers end the row
    lanes = re.search(r"lanes: (\d+) work items", output)
    features = re.search(r"^data: (\d+) features", output, re.MULTILINE)
    return {
        "chunks": int(table["chunks"]),
        "population": int(table["population"]),
        "memory_mb_per_chunk": float(table["memory_mb"]),
        "lanes": int(lanes.group(1)) if lanes else 1,
        "dry_run_width_line": next((line for line in lines if line.startswith("data: ")), None),
        "dry_run_features": int(features.group(1)) if features else None,
    }


def sweep(repo: Path, out: Path, name: str, csv: Path, drop: list[str]) -> dict:
    """Dry run, then the timed run, of the example config on `csv`; the numbers of both."""
    config = out / f"{name}.toml"
    config_file(config, csv, drop)
    run_dir = out / f"run-{name}"
    dry, _, _ = command(repo, ["run", str(config), "--out", str(run_dir), "--dry-run"], out / f"{name}-dry-run.txt")
    planned = dry_run_numbers(dry)
    output, wall, rss = command(
        repo, ["run", str(config), "--out", str(run_dir), "--overwrite"], out / f"{name}-run.txt", timed=True
    )
    table = pd.read_csv(run_dir / "table.csv")
    saved = json.loads((run_dir / "config.json").read_text())
    complete = table[table["state"] == "complete"].sort_values("best_val_loss", kind="stable")
    best = complete.iloc[0]
    return {
        "name": name,
        "drop": drop,
        "features": saved["data"]["features"],
        "preprocessing": saved["data"]["preprocessing"],
        **planned,
        "estimate_mb_at_once": planned["memory_mb_per_chunk"] * min(planned["lanes"], planned["chunks"]),
        "max_rss_mb": None if rss is None else round(rss / 1024, 1),
        "wall_s": round(wall, 1),
        "best_trial": int(best["number"]),
        "best_learning_rate": float(best["params_learning_rate"]),
        "best_val_loss": float(best["best_val_loss"]),
        "best_val_auc": float(best["best_val_auc"]),
        "max_val_auc": float(complete["best_val_auc"].max()),
        "diverged": int((table["state"] == "diverged").sum()),
        "summary_tail": output.strip().splitlines()[-8:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/sweepax-messy-columns"), help="where every output goes")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout whose `python -m sweeps` runs")
    parser.add_argument("--label", default="this", help="a name for this checkout's results (e.g. before, after)")
    parser.add_argument("--cities", type=int, default=3000, help="distinct values of the random `city` column")
    parser.add_argument("--seed", type=int, default=0, help="numpy seed of the `city` column")
    parser.add_argument("--dropped", action="store_true", help="also run with `city` and `row` dropped (drop=)")
    args = parser.parse_args()
    out = args.out.resolve() / args.label
    if out.resolve().is_relative_to(ROOT / "benchmarks" / "results"):
        raise SystemExit(f"--out {args.out} is inside benchmarks/results/, which is tracked; pick a folder in /tmp")
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "churn_messy.csv"
    made = messy_csv(csv, args.cities, args.seed)
    repo = args.repo.resolve()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
    results = [sweep(repo, out, "messy", csv, [])]
    if args.dropped:
        results.append(sweep(repo, out, "dropped", csv, ["city", "row"]))
    summary = {
        "label": args.label,
        "repo": str(repo),
        "commit": commit.stdout.strip() or None,
        "csv": {"path": str(csv), **made, "seed": args.seed},
        "config": EXAMPLE,
        "results": results,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for r in results:
        at_once = min(r["lanes"], r["chunks"])
        print(
            f"{args.label} {r['name']}: {r['features']} features; dry run {r['memory_mb_per_chunk']} MB per chunk x "
            f"{at_once} at once = {r['estimate_mb_at_once']:.1f} MB; peak RSS {r['max_rss_mb']} MB; "
            f"best trial {r['best_trial']} (lr {r['best_learning_rate']:.4g}): val_auc {r['best_val_auc']:.4f}, "
            f"val_loss {r['best_val_loss']:.4f}; {r['diverged']} diverged; {r['wall_s']} s"
        )
    print(f"written: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
