"""Search strategies at an equal budget: the best validation loss each finds, its wall time and compilations.

    python benchmarks/strategies.py                     # churn and diabetes, 5 sweep seeds (minutes: README)
    python benchmarks/strategies.py --quick             # a smoke subset: diabetes, 1 seed, a tiny budget
    python benchmarks/strategies.py --data diabetes --seeds 3

On each data set every strategy spends the same budget of model-epochs (trials x epochs, every trial
trained for the full epochs, no early stopping) over the same space:

    learning_rate loguniform(1e-4, 1), weight_decay loguniform(1e-5, 1e-1), dropout uniform(0, 0.5)
    (AdamW, the MLP 64 relu, batch 32)

  grid         Grid(n=4): 4 x 4 x 4 = 64 configurations (n**3 = the budget's trial count)
  random       Random(n=64, seed)
  quasirandom  QuasiRandom(n=64, seed)
  bayes        Bayes(rounds=4, per_round=16, sampler="tpe", seed): four rounds of 16
  halving      Halving(n, min_epochs=1, max_epochs=epochs, eta=3): synchronous successive halving,
               n the most trials whose rungs spend no more than the budget
  halving-refill  Halving(n=16, ..., refill=True, samples=that n): the same trials through 16 recycled slots
  pbt          PBT(population=16, interval=budget/16/10): 16 members trained budget/16 epochs each
  sequential   Optuna's TPESampler(seed) one trial at a time, each trial trained alone through
               sweeps.run (a population of one, the same engine): what a user of Optuna does today

each over `--seeds` sweep seeds (the sweep seed sets initialisations and minibatch order; the
strategy's seed is the same number). JAX's caches are cleared before every sweep (and before each
sequential study), so every row pays its own compilations, as a fresh process would (with --quick only
the epoch's program is built afresh: each row still compiles it). Rows: one JSON
line per data set x strategy x seed, with `best` (the lowest val_loss at any trial's best epoch),
`curve` (the best so far after each trial, trials in number order: the order a strategy asked for
them), `model_epochs`, `wall_s`, `compilations`. The summary table and the plot of best-so-far
against model-epochs allotted go next to the JSON lines. A trial that diverges is stopped, so a
strategy that proposes fewer diverging trials spends more of its allotted model-epochs. This folder
is never imported by the library.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reporting import output_path  # noqa: E402

import sweeps  # noqa: E402
from models import MLP  # noqa: E402
from sweeps import space  # noqa: E402
from sweeps.engine import make_train_epoch  # noqa: E402

SPACE = {
    "learning_rate": space.loguniform(1e-4, 1.0),
    "weight_decay": space.loguniform(1e-5, 1e-1),
    "dropout": space.uniform(0.0, 0.5),
}
DATA = {  # name: (file, target, epochs per trial)
    "churn": ("data/telco_customer_churn.csv", "Churn", 5),
    "diabetes": ("data/diabetes.csv", "progression", 30),
}
STRATEGIES = ("grid", "random", "quasirandom", "bayes", "sequential", "halving", "halving-refill", "pbt")
ETA = 3  # successive halving's reduction factor
CONCURRENT = 16  # members training at once for halving with refill, and PBT's population


def halving_schedule(n: int, epochs: int, eta: int = ETA) -> tuple[int, dict[int, int]]:
    """Synchronous successive halving of n trials, rungs 1, eta, eta**2 ... below `epochs`: the model-epochs
    it spends, and how many trials go on past each rung (the best 1/eta of all n, rounded up)."""
    spent, alive, done, rung, going_on = 0, n, 0, 1, {}
    while rung < epochs:
        spent += alive * (rung - done)
        alive, done = -(-alive // eta), rung
        going_on[rung], rung = alive, rung * eta
    return spent + alive * (epochs - done), going_on


def halving_spent(n: int, epochs: int, eta: int = ETA) -> int:
    """Model-epochs synchronous successive halving spends (`halving_schedule`)."""
    return halving_schedule(n, epochs, eta)[0]


def halving_trials(budget: int, epochs: int) -> int:
    """The most trials successive halving can start within `budget` model-epochs."""
    n = 1
    while halving_spent(n + 1, epochs) <= budget:
        n += 1
    return n


def strategy(name: str, trials: int, seed: int, epochs: int):
    """The strategy and the epochs per trial that spend `trials * epochs` model-epochs (about, for halving)."""
    grid_n = round(trials ** (1 / len(SPACE)))
    per_round = trials // 4
    budget = trials * epochs
    n_halving = halving_trials(budget, epochs)
    concurrent = min(CONCURRENT, max(2, trials // 4), n_halving)  # 16 at the default 64 trials
    return {
        "grid": lambda: (sweeps.Grid(n=grid_n), epochs),
        "random": lambda: (sweeps.Random(n=trials, seed=seed), epochs),
        "quasirandom": lambda: (sweeps.QuasiRandom(n=trials, seed=seed), epochs),
        "bayes": lambda: (sweeps.Bayes(rounds=4, per_round=per_round, sampler="tpe", seed=seed), epochs),
        "halving": lambda: (sweeps.Halving(n=n_halving, min_epochs=1, max_epochs=epochs, eta=ETA, seed=seed), epochs),
        "halving-refill": lambda: (
            sweeps.Halving(
                n=concurrent, min_epochs=1, max_epochs=epochs, eta=ETA, refill=True, samples=n_halving, seed=seed
            ),
            epochs,
        ),
        "pbt": lambda: (
            sweeps.PBT(population=concurrent, interval=max(1, budget // concurrent // 10), seed=seed),
            budget // concurrent,
        ),
    }[name]()


def fresh_caches(jax_caches: bool = True) -> None:
    """Every row compiles what it needs, as a new process would. Without `jax_caches` (--quick) only the epoch's
    program is built afresh, so each row still compiles it, and JAX keeps every other program and trace."""
    if jax_caches:
        jax.clear_caches()
    make_train_epoch.cache_clear()


def vectorized(data, name: str, trials: int, epochs: int, seed: int, jax_caches: bool = True) -> dict:
    fresh_caches(jax_caches)
    start = time.perf_counter()
    chosen, epochs = strategy(name, trials, seed, epochs)
    result = sweeps.run(
        data,
        model=MLP(hidden=(64,)),
        space=SPACE,
        strategy=chosen,
        optimizer="adamw",
        epochs=epochs,
        batch_size=32,
        seed=seed,
    )
    wall = time.perf_counter() - start
    table = result.table.sort_values("number")
    values = np.where(table["state"] != "diverged", table["value"], np.inf)  # a pruned trial's model is real too
    params = [c for c in table.columns if c.startswith("params_")]
    best = table.iloc[int(np.argmin(values))]
    return {
        "best_params": {c.removeprefix("params_"): best[c].item() for c in params},
        "grid_points": {c.removeprefix("params_"): sorted(table[c].unique().tolist()) for c in params}
        if name == "grid"
        else None,
        "trials": len(table),
        "model_epochs": int(table["epochs"].sum()),
        "wall_s": round(wall, 3),
        "compilations": result.config["compilations"],
        "compile_s": result.config["compile_s"],
        "rounds": result.config["rounds"],
        "diverged": int((table["state"] == "diverged").sum()),
        "pruned": int((table["state"] == "pruned").sum()),
        "curve": np.minimum.accumulate(values).tolist(),
        "epochs_per_trial": table["epochs"].tolist(),
    }


def sequential(data, trials: int, epochs: int, seed: int, jax_caches: bool = True) -> dict:
    """Optuna's TPE asks one trial, sweeps.run trains it alone (a population of one), TPE is told, repeat."""
    import optuna

    from sweeps.driver.compiling import compile_log

    fresh_caches(jax_caches)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {
        "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
        "weight_decay": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True),
        "dropout": optuna.distributions.FloatDistribution(0.0, 0.5),
    }
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    curve, spent, diverged = [], [], 0
    start = time.perf_counter()
    with compile_log() as compiled:
        for _ in range(trials):
            trial = study.ask(dists)
            result = sweeps.run(
                data,
                model=MLP(hidden=(64,)),
                space=dict(trial.params),
                strategy=sweeps.Grid(),
                optimizer="adamw",
                epochs=epochs,
                batch_size=32,
                seed=seed,
            )
            row = result.table.iloc[0]
            spent.append(int(row["epochs"]))
            if row["state"] == "complete":
                study.tell(trial, float(row["value"]))
                curve.append(min(curve[-1] if curve else np.inf, float(row["value"])))
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                curve.append(curve[-1] if curve else np.inf)
                diverged += 1
    wall = time.perf_counter() - start
    return {
        "trials": trials,
        "model_epochs": sum(spent),
        "wall_s": round(wall, 3),
        "compilations": compiled.count("jit(train_epoch)"),
        "compile_s": round(compiled.seconds(), 3),
        "rounds": trials,
        "diverged": diverged,
        "curve": curve,
        "epochs_per_trial": spent,
    }


def summarize(rows: list[dict]) -> str:
    """The markdown table: per data set and strategy, the best val_loss over seeds, and wins against random.

    The sweep seed moves every strategy's result together (initialisations, minibatch order), so the
    comparison that tells strategies apart is paired: in how many seeds a strategy's best beat random's.
    """
    lines = [
        "| data | strategy | trials | model-epochs spent (of allotted) | best val_loss: mean ± std (min-max) | "
        "better than random, same seed | wall s per sweep | of it compiling | compilations |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for data in dict.fromkeys(r["data"] for r in rows):
        random = {r["seed"]: r["best"] for r in rows if r["data"] == data and r["strategy"] == "random"}
        for name in STRATEGIES:
            mine = [r for r in rows if r["data"] == data and r["strategy"] == name]
            if not mine:
                continue
            best = [r["best"] for r in mine]
            spread = statistics.stdev(best) if len(best) > 1 else 0.0
            paired = [r for r in mine if r["seed"] in random]
            wins = f"{sum(r['best'] < random[r['seed']] for r in paired)} of {len(paired)}" if name != "random" else "-"
            spent = statistics.mean(r["model_epochs"] for r in mine)
            lines.append(
                f"| {data} | {name} | {mine[0]['trials']} | {spent:.0f} (of {mine[0]['allotted']}) | "
                f"{statistics.mean(best):.4f} ± {spread:.4f} ({min(best):.4f}-{max(best):.4f}) | {wins} | "
                f"{statistics.mean(r['wall_s'] for r in mine):.1f} | "
                f"{statistics.mean(r['compile_s'] for r in mine):.1f} | "
                f"{statistics.mean(r['compilations'] for r in mine):g} |"
            )
    return "\n".join(lines)


def notes(rows: list[dict]) -> list[str]:
    """What the table's numbers do not say by themselves (one line each): a grid too coarse to have inner
    points, model-epochs spent under the allotted (diverged trials stop at once) and over it (halving with
    refill promotes asynchronously). Read from the first seed's rows of each data set."""
    lines = []
    for data in dict.fromkeys(r["data"] for r in rows):
        mine = {r["strategy"]: r for r in rows if r["data"] == data and r["seed"] == min(x["seed"] for x in rows)}
        grid = mine.get("grid")
        if grid is not None and min(len(v) for v in grid["grid_points"].values()) < 3:
            per_axis = min(len(v) for v in grid["grid_points"].values())
            ends = ", ".join(f"{k} {' and '.join(f'{v:g}' for v in vs)}" for k, vs in grid["grid_points"].items())
            best = ", ".join(f"{k} {v:g}" for k, v in grid["best_params"].items())
            lines.append(
                f"{data}: grid: {grid['trials']} trials make {per_axis} points per axis, the ends of each range "
                f"({ends}): {grid['diverged']} of {grid['trials']} diverged, and its best ({grid['best']:.4f}) is "
                f"{best} trained {max(grid['epochs_per_trial'])} epochs; {3 ** len(SPACE)} or more trials "
                f"(--trials) give the grid inner points"
            )
        under = [
            f"{name} {r['diverged']} of {r['trials']}"
            + (
                f" (its rungs plan {halving_spent(r['trials'], max(r['epochs_per_trial']))})"
                if name == "halving"
                else ""
            )
            for name, r in mine.items()
            if r["model_epochs"] < r["allotted"]
        ]
        if under:
            lines.append(
                f"{data}: model-epochs spent under the allotted: a diverged trial stops at once (diverged: "
                f"{', '.join(under)})"
            )
        for name, r in mine.items():
            if r["model_epochs"] > r["allotted"] and name == "halving-refill":
                _, synchronous = halving_schedule(r["trials"], max(r["epochs_per_trial"]))
                went = {rung: sum(e > rung for e in r["epochs_per_trial"]) for rung in synchronous}
                lines.append(
                    f"{data}: halving-refill spent {r['model_epochs']} of {r['allotted']}: with refill a trial goes "
                    f"on at a rung when it is among the best 1/{ETA} (rounded up) of the trials that have reached "
                    f"that rung so far, not of all {r['trials']} (asynchronous, as ASHA), so more go on than the "
                    f"synchronous budget counts: past epoch {', '.join(map(str, went))}: "
                    f"{', '.join(map(str, went.values()))} trials (synchronous: "
                    f"{', '.join(map(str, synchronous.values()))})"
                )
            elif r["model_epochs"] > r["allotted"]:
                lines.append(f"{data}: {name} spent {r['model_epochs']} of {r['allotted']} model-epochs")
    return lines


def plot(rows: list[dict], path: Path) -> None:
    """Best-so-far val_loss against model-epochs allotted (trials x epochs), the mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["data"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.2), squeeze=False)
    for ax, data in zip(axes[0], names):
        means = []
        for name in STRATEGIES:
            mine = [r for r in rows if r["data"] == data and r["strategy"] == name]
            if not mine:
                continue
            curves = np.array([r["curve"] for r in mine])
            mean = np.mean(np.where(np.isfinite(curves), curves, np.nan), axis=0)
            allotted = np.arange(1, curves.shape[1] + 1) * mine[0]["allotted"] // curves.shape[1]
            ax.plot(allotted, mean, label=name, linestyle="--" if name == "sequential" else "-")
            means.append(mean)
        low = float(np.nanmin(np.concatenate(means)))  # curves differ in length: strategies start different counts
        high = float(np.nanpercentile([m[len(m) // 8] for m in means], 75))  # after an eighth of the budget
        ax.set_ylim(low - 0.1 * (high - low), high)
        ax.set_title(f"{data}: best val_loss so far, mean of {len(mine)} sweep seeds")
        ax.set_xlabel("model-epochs allotted (trials x epochs, in the order the strategy asked for them)")
        ax.set_ylabel("best val_loss so far")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def engine_commit() -> str | None:
    """The repository's commit, with "+changes" when tracked files differ from it."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "sweeps", "models"], cwd=ROOT)
    except OSError:
        return None
    return commit.stdout.strip() + ("+changes" if dirty.returncode else "") if commit.returncode == 0 else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", choices=list(DATA), default=list(DATA))
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=64, help="trials per sweep (a cube, for the grid); default 64")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="diabetes, 1 seed, 8 trials of 3 epochs; each row compiles its epoch afresh, JAX's other caches are kept "
        "(a smoke test)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="the JSON lines (default benchmarks/results/strategies-cpu-<date>.jsonl; with --quick, a new temporary "
        "folder)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.seeds, args.trials = ["diabetes"], 1, 8
    day = datetime.date.today().isoformat()
    out = output_path(args.out, f"strategies-cpu-{day}.jsonl", args.quick)
    machine = {
        "device": str(jax.devices()[0].device_kind),
        "processor": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "engine_commit": engine_commit(),
    }
    rows = []
    started = time.perf_counter()
    with out.open("w") as f:
        for data_name in args.data:
            path, target, epochs = DATA[data_name]
            epochs = 3 if args.quick else epochs
            data = sweeps.load_csv(ROOT / path, target=target)
            for name in args.strategies:
                for seed in range(args.seeds):
                    load = os.getloadavg()[0]
                    if name == "sequential":
                        row = sequential(data, args.trials, epochs, seed, jax_caches=not args.quick)
                    else:
                        row = vectorized(data, name, args.trials, epochs, seed, jax_caches=not args.quick)
                    row = {"data": data_name, "strategy": name, "seed": seed, "best": min(row["curve"]), **row}
                    row.update(machine, allotted=args.trials * epochs, loadavg_1m=round(load, 2))
                    rows.append(row)
                    f.write(json.dumps(row) + "\n")
                    f.flush()
                    print(
                        f"{data_name:6s} {name:12s} seed {seed}: best val_loss {row['best']:.4f}, "
                        f"{row['model_epochs']} model-epochs, {row['wall_s']:.1f} s, "
                        f"{row['compilations']} compilations, load {load:.1f}",
                        flush=True,
                    )
    table = "\n".join([summarize(rows), "", *(f"- {line}" for line in notes(rows))]).rstrip()
    print()
    print(table)
    print(f"\nwhole benchmark: {time.perf_counter() - started:.0f} s; rows: {out}")
    out.with_suffix(".md").write_text(table + "\n")
    plot(rows, out.with_suffix(".png"))
    print(f"table: {out.with_suffix('.md')}\nplot: {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
