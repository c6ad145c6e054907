"""Kill -9 a sweep at random moments, resume it, and check that the run folder equals an uninterrupted run's.

    python benchmarks/kill_resume.py                                   # 5 example configs x 20 kills
    python benchmarks/kill_resume.py --configs churn_lr --kills 3      # a quick look
    python benchmarks/kill_resume.py --configs churn_pbt --kills 6 --final-share 1   # every kill in the final write
    SWEEPS_LANES=1 python benchmarks/kill_resume.py ...                # or --lanes 1

For each example config (`data/examples/<name>.toml`) the script runs the sweep uninterrupted
(`python -m sweeps run CONFIG --out DIR --quiet`, with this interpreter, from the repository root, so
the code tested is this tree's): the reference; then once more, compared with the reference (the runs'
own determinism) and timed with the compilation cache warm, as the later runs find it. Then, per
kill, it starts the same run in a fresh folder and SIGKILLs it (its whole process group)

  - at a moment drawn uniformly over the second run's wall time plus `--margin` (a draw past the end
    finds the run finished: "after exit"), or
  - for a share of the kills (`--final-share`, default 0.3, at least one kill in four), in the final
    write: when `models/`, `config.json` or `table.parquet` first appears (polled every millisecond),
    a few milliseconds later;

about one kill in five (`--double-share`) also kills the first `sweeps resume`, at a random moment.
Then `python -m sweeps resume DIR --quiet` runs until it exits 0 (at most `--max-resumes`; a folder
killed before its `run.json` existed is started again with `sweeps run`, as a user would). The
finished folder is compared with the reference:

  - `table.csv` and `history.csv`: bytes;
  - `table.parquet` and `history.parquet`: read, and equal to the reference's (values and dtypes);
  - `config.json` parses; `sweeps.load_result` reads the folder; `plots/` holds the same files, none empty;
  - `models/models.json` names the same trials in the same order, and each kept model
    (`sweeps.load_model(dir, trial=t)`) gives exactly the reference's probabilities on the
    validation rows (values for regression).

A resume that exits non-zero, hangs past `--timeout`, or says "already finished" on a folder that
lacks (or cannot read) a result file is reported as such. One line per kill, a markdown summary per
config, and a JSON log (`kill_resume.json`) under `--out` (default: a new folder under /tmp).
Folders that came back identical are deleted; the others are kept for a look. This folder is never
imported by the library.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # compare with the code the runs use: this tree's

EXAMPLES = ROOT / "data" / "examples"
CONFIGS = ("churn_lr", "churn_three", "churn_bayes", "churn_halving", "churn_pbt")
# What a finished run folder holds; the final write makes them in this order (models/ first).
RESULT_FILES = ("config.json", "table.parquet", "table.csv", "history.parquet", "history.csv")
BYTE_FILES = ("table.csv", "history.csv")
FRAME_FILES = ("table.parquet", "history.parquet")
TRIGGERS = ("models", "config.json", "table.parquet", "history.parquet")  # a final-write kill waits for one of these
ALREADY_FINISHED = "already finished"


@dataclasses.dataclass
class Reference:
    config: str
    dir: Path
    wall_s: float
    appeared: dict[str, float]  # file -> seconds after the start when it first appeared


@dataclasses.dataclass
class Kill:
    config: str
    index: int
    target: str  # "uniform" or "final write (<trigger>)"
    kill_s: float | None = None  # seconds after the start when SIGKILL was sent (None: exited first)
    phase: str = ""
    double: bool = False
    second_kill_s: float | None = None
    second_phase: str = ""
    resumes: int = 0
    restarted: bool = False  # killed before run.json: started again with `sweeps run`
    failures: list[str] = dataclasses.field(default_factory=list)  # resume/run exits != 0, hangs
    finished_claims: list[str] = dataclasses.field(default_factory=list)  # "already finished" with files missing
    differences: list[str] = dataclasses.field(default_factory=list)
    identical: bool = False
    dir: str = ""


def sweeps_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweeps", *args]


def environment(lanes: int | None) -> dict[str, str]:
    env = dict(os.environ)  # PYTHONPATH passes through
    if lanes is not None:
        env["SWEEPS_LANES"] = str(lanes)
    return env


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the kill reaches every process it started
    )


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()


def phase(run_dir: Path) -> str:
    """How far a run folder had got: startup, training, saving models, final write (and which files exist)."""
    if not (run_dir / "run.json").is_file():
        return "startup (no run.json)"
    written = [name for name in RESULT_FILES if (run_dir / name).exists()]
    if written:
        return "final write (" + " ".join(written) + ")"
    if (run_dir / "models").exists():
        return "saving models"
    return "training"


def run_reference(config: str, out: Path, env: dict[str, str], timeout: float, name: str = "reference") -> Reference:
    """An uninterrupted run, timed, noting when each file of the final write first appeared."""
    run_dir = out / f"{config}-{name}"
    began = time.perf_counter()
    process = start(sweeps_command("run", str(EXAMPLES / f"{config}.toml"), "--out", str(run_dir), "--quiet"), env)
    appeared: dict[str, float] = {}
    watched = ("run.json", "checkpoints", "models", *RESULT_FILES, "plots")
    while process.poll() is None:
        for name in watched:
            if name not in appeared and (run_dir / name).exists():
                appeared[name] = round(time.perf_counter() - began, 3)
        if time.perf_counter() - began > timeout:
            kill_group(process)
            raise RuntimeError(f"the reference run of {config} took over {timeout:.0f} s")
        time.sleep(0.005)
    wall = time.perf_counter() - began
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the reference run of {config} failed (exit {process.returncode}): {stderr[-2000:]}")
    return Reference(config, run_dir, wall, appeared)


def run_until(command: list[str], env: dict[str, str], run_dir: Path, kill_at: float | None, trigger: str | None):
    """Runs `command`; SIGKILLs it `kill_at` seconds after the start, or `kill_at` after `trigger` appears.

    Returns (seconds at the kill or None when it exited first, the phase then, exit status or None).
    """
    began = time.perf_counter()
    process = start(command, env)
    seen = None
    while process.poll() is None:
        now = time.perf_counter() - began
        if trigger is not None and seen is None and (run_dir / trigger).exists():
            seen = now
        due = kill_at if trigger is None else (None if seen is None else seen + kill_at)
        if due is not None and now >= due:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return round(now, 3), phase(run_dir), None
        time.sleep(0.001)
    process.communicate()
    return None, "after exit", process.returncode


def finish(command: list[str], env: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """Runs `command` to its end (or kills it after `timeout`): exit status (None: hung) and its output."""
    process = start(command, env)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        return None, ""
    return process.returncode, stdout + stderr


def missing_files(run_dir: Path, plots: tuple[str, ...] = ()) -> list[str]:
    """Result files absent, empty or unreadable (the ones a finished run folder must hold, and `plots`)."""
    import pandas as pd

    gone = []
    lost = [p for p in plots if not (run_dir / "plots" / p).is_file() or (run_dir / "plots" / p).stat().st_size == 0]
    for name in (*RESULT_FILES, "models/models.json"):
        path = run_dir / name
        if not path.is_file() or path.stat().st_size == 0:
            gone.append(f"{name} {'empty' if path.is_file() else 'missing'}")
            continue
        try:
            if name.endswith(".parquet"):
                pd.read_parquet(path)
            elif name.endswith(".json"):
                json.loads(path.read_text())
            else:
                pd.read_csv(path)
        except Exception as e:  # noqa: BLE001 - any reader's error means the file is damaged
            gone.append(f"{name} unreadable ({type(e).__name__})")
    return gone + ([f"plots {len(lost)} of {len(plots)} missing or empty"] if lost else [])


class Comparer:
    """Compares finished run folders with one reference: files, frames and the kept models' probabilities."""

    def __init__(self, reference: Path, data):
        import pandas as pd

        self.reference = reference
        self.data = data  # the run's Dataset: its validation rows are what the kept models predict
        self.frames = {name: pd.read_parquet(self.reference / name) for name in FRAME_FILES}
        self.plots = tuple(sorted(p.name for p in (reference / "plots").iterdir()))
        self.trials = self._trials(self.reference)
        self.outputs = {t: self._outputs(self.reference, t) for t in self.trials}

    @staticmethod
    def _trials(run_dir: Path) -> list[int]:
        return [int(entry["trial"]) for entry in json.loads((run_dir / "models" / "models.json").read_text())["trials"]]

    def _outputs(self, run_dir: Path, trial: int):
        from sweeps import load_model

        model = load_model(run_dir, trial=trial)
        x = self.data.x_val
        return model.predict(x) if model.task == "regression" else model.predict_proba(x)

    def differences(self, run_dir: Path) -> list[str]:
        """What differs from the reference, one short phrase each (empty: identical)."""
        import numpy as np
        import pandas as pd

        from sweeps import load_result

        found = []
        for name in BYTE_FILES:
            found += _byte_difference(self.reference / name, run_dir / name)
        for name in FRAME_FILES:
            try:
                frame = pd.read_parquet(run_dir / name)
            except Exception as e:  # noqa: BLE001
                found.append(f"{name} unreadable ({type(e).__name__})")
                continue
            try:
                pd.testing.assert_frame_equal(frame, self.frames[name], check_exact=True)
            except AssertionError as e:
                found.append(f"{name} differs ({str(e).splitlines()[0]})")
        plots = set(self.plots)
        drawn = {p.name for p in (run_dir / "plots").glob("*") if p.stat().st_size > 0}
        if drawn != plots:
            extra = f", {sorted(drawn - plots)} extra" if drawn - plots else ""
            found.append(f"plots: {sorted(plots - drawn)} missing or empty{extra}")
        try:
            json.loads((run_dir / "config.json").read_text())
            load_result(run_dir)
        except Exception as e:  # noqa: BLE001
            found.append(f"load_result fails ({type(e).__name__}: {str(e)[:200]})")
        try:
            trials = self._trials(run_dir)
        except Exception as e:  # noqa: BLE001
            return [*found, f"models/models.json unreadable ({type(e).__name__})"]
        if trials != self.trials:
            found.append(f"kept models: trials {trials}, reference {self.trials}")
        for trial in (t for t in trials if t in self.outputs):
            try:
                outputs = self._outputs(run_dir, trial)
            except Exception as e:  # noqa: BLE001
                found.append(f"model trial {trial} does not load ({type(e).__name__}: {str(e)[:120]})")
                continue
            if outputs.shape != self.outputs[trial].shape or not np.array_equal(outputs, self.outputs[trial]):
                gap = np.max(np.abs(outputs - self.outputs[trial])) if outputs.shape == self.outputs[trial].shape else 0
                found.append(f"model trial {trial}: probabilities differ (max {gap:.3g})")
        return found


def _byte_difference(expected: Path, got: Path) -> list[str]:
    if not got.is_file():
        return [f"{got.name} missing"]
    a, b = expected.read_bytes(), got.read_bytes()
    if a == b:
        return []
    if not b:
        return [f"{got.name} empty"]
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return [f"{got.name} differs (bytes {len(b)} vs {len(a)}, first at {first})"]


def one_kill(kill: Kill, reference: Reference, comparer: Comparer, out: Path, env, args, rng: random.Random) -> None:
    run_dir = out / f"{kill.config}-kill{kill.index:02d}"
    kill.dir = str(run_dir)
    run = sweeps_command("run", str(EXAMPLES / f"{kill.config}.toml"), "--out", str(run_dir), "--quiet")
    resume = sweeps_command("resume", str(run_dir), "--quiet")
    timeout = max(60.0, 10 * reference.wall_s)
    if kill.target == "uniform":
        moment, trigger = rng.uniform(0, reference.wall_s * (1 + args.margin)), None
    else:
        trigger = kill.target.split("(")[1].rstrip(")")
        moment = rng.uniform(0, 0.005)  # within a few milliseconds of the file's appearance
    kill.kill_s, kill.phase, status = run_until(run, env, run_dir, moment, trigger)
    if kill.kill_s is None and status != 0:
        kill.failures.append(f"the run itself exited {status}")
    if kill.double and kill.kill_s is not None and (run_dir / "run.json").is_file():
        second = rng.uniform(0, reference.wall_s)
        kill.second_kill_s, kill.second_phase, status = run_until(resume, env, run_dir, second, None)
        kill.resumes += 1
        if kill.second_kill_s is None and status != 0:
            kill.failures.append(f"resume exited {status} (before the second kill)")
    for _ in range(args.max_resumes):
        if not (run_dir / "run.json").is_file():  # killed before the run folder existed: start it again
            kill.restarted = True
            status, output = finish(run, env, timeout)
        else:
            missing = missing_files(run_dir, comparer.plots)
            status, output = finish(resume, env, timeout)
            kill.resumes += 1
            if status == 0 and ALREADY_FINISHED in output and missing:
                kill.finished_claims.append(f"resume said '{ALREADY_FINISHED}' (exit 0) with {', '.join(missing)}")
        if status is None:
            kill.failures.append(f"hung past {timeout:.0f} s")
        elif status != 0:
            kill.failures.append(f"exit {status}: {_last_line(output)}")
        else:
            break
    else:
        kill.differences.append(f"no resume succeeded in {args.max_resumes}")
        return
    kill.differences += comparer.differences(run_dir)
    kill.identical = not kill.differences and not kill.finished_claims


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else "(no output)"


def plan_kills(config: str, count: int, args, rng: random.Random) -> list[Kill]:
    """Which kills target the final write (a `--final-share`, rounded up) and which kill twice."""
    final = sorted(rng.sample(range(count), min(count, math.ceil(count * args.final_share))))
    double = set(rng.sample(range(count), min(count, math.ceil(count * args.double_share))))
    first = rng.randrange(len(TRIGGERS))  # the triggers in turn, from a random one
    targets = {i: f"final write ({TRIGGERS[(first + k) % len(TRIGGERS)]})" for k, i in enumerate(final)}
    return [Kill(config, i, targets.get(i, "uniform"), double=i in double) for i in range(count)]


def describe(kill: Kill) -> str:
    when = "exited before the kill" if kill.kill_s is None else f"killed at {kill.kill_s:6.2f} s"
    second = ""
    if kill.double:
        second = (
            ", resume exited before its kill"
            if kill.second_kill_s is None
            else f", resume killed at {kill.second_kill_s:.2f} s ({kill.second_phase})"
        )
    again = ", started again (no run.json)" if kill.restarted else ""
    claimed = " ".join(kill.finished_claims)
    shown = [d for d in kill.differences if d.split(" ")[0].rstrip(":") not in claimed]  # not the claim's files
    verdict = "identical" if kill.identical else "NOT identical: " + "; ".join(kill.finished_claims + shown)
    failures = f" [resume failures: {'; '.join(kill.failures)}]" if kill.failures else ""
    return (
        f"{kill.config:13s} #{kill.index:02d} {kill.target:27s} {when} ({kill.phase}){second}{again}, "
        f"{kill.resumes} resume(s): {verdict}{failures}"
    )


def summary(kills: list[Kill]) -> str:
    lines = [
        "| config | kills | identical | not identical | resume failures | 'already finished' with files missing | "
        "phases hit | double kills |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config in dict.fromkeys(k.config for k in kills):
        mine = [k for k in kills if k.config == config]
        phases = {}
        for k in mine:
            name = k.phase.split(" (")[0]
            phases[name] = phases.get(name, 0) + 1
        lines.append(
            f"| {config} | {len(mine)} | {sum(k.identical for k in mine)} | {sum(not k.identical for k in mine)} | "
            f"{sum(bool(k.failures) for k in mine)} | {sum(bool(k.finished_claims) for k in mine)} | "
            f"{', '.join(f'{name} {n}' for name, n in phases.items())} | {sum(k.double for k in mine)} |"
        )
    return "\n".join(lines)


def code_under_test(env: dict[str, str]) -> str:
    where = subprocess.run(
        [sys.executable, "-c", "import sweeps; print(sweeps.__file__)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "sweeps"], cwd=ROOT).returncode
    return f"{where} (commit {commit.stdout.strip() or '?'}{'+changes' if dirty else ''})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--kills", type=int, default=20, help="kills per config (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    parser.add_argument("--out", type=Path, help="scratch folder (default: a new folder under /tmp)")
    parser.add_argument("--lanes", type=int, help="SWEEPS_LANES for every run (default: the environment's)")
    parser.add_argument("--margin", type=float, default=0.1, help="uniform kills span the reference's wall x (1+this)")
    parser.add_argument("--final-share", type=float, default=0.3, help="share of kills aimed at the final write")
    parser.add_argument("--double-share", type=float, default=0.2, help="share of kills that also kill the resume")
    parser.add_argument("--max-resumes", type=int, default=4, help="resumes tried per kill before giving up")
    parser.add_argument("--keep", action="store_true", help="keep the folders that came back identical too")
    args = parser.parse_args(argv)
    from sweeps.cli.config import load_config
    from sweeps.cli.config_schema import load_data

    for name in ("final_share", "double_share"):
        if not 0 <= getattr(args, name) <= 1:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 1, but got {getattr(args, name)}")
    if args.kills < 1 or args.max_resumes < 1:
        parser.error(f"--kills and --max-resumes must be >= 1, but got {args.kills} and {args.max_resumes}")
    out = args.out or Path(tempfile.mkdtemp(prefix="sweeps-kill-resume-"))
    out.mkdir(parents=True, exist_ok=True)
    env = environment(args.lanes)
    rng = random.Random(args.seed)
    print(f"code under test: {code_under_test(env)}; SWEEPS_LANES={env.get('SWEEPS_LANES', 'unset')}")
    print(f"scratch: {out}; seed {args.seed}, {args.kills} kills per config", flush=True)
    started = time.perf_counter()
    kills: list[Kill] = []
    references = {}
    log = out / "kill_resume.json"
    for config in args.configs:
        reference = run_reference(config, out, env, timeout=1800)
        comparer = Comparer(reference.dir, load_data(load_config(EXAMPLES / f"{config}.toml")))
        # a second uninterrupted run: the runs' own determinism, and the timing the kills are drawn over
        # (the first run fills the compilation cache, so later runs are faster)
        timed = run_reference(config, out, env, timeout=1800, name="uninterrupted")
        again = comparer.differences(timed.dir)
        references[config] = {
            "reference": dataclasses.asdict(reference) | {"dir": str(reference.dir)},
            "uninterrupted": dataclasses.asdict(timed) | {"dir": str(timed.dir)},
            "uninterrupted_differences": again,
        }
        shown = ", ".join(f"{name} {s:.2f}" for name, s in sorted(timed.appeared.items(), key=lambda i: i[1]))
        print(
            f"{config}: reference {reference.wall_s:.2f} s; a second uninterrupted run {timed.wall_s:.2f} s, "
            f"{'identical' if not again else 'NOT identical: ' + '; '.join(again)} (first seen at s: {shown})",
            flush=True,
        )
        if not again and not args.keep:
            shutil.rmtree(timed.dir, ignore_errors=True)
        for kill in plan_kills(config, args.kills, args, rng):
            one_kill(kill, timed, comparer, out, env, args, rng)
            kills.append(kill)
            print(describe(kill), flush=True)
            if kill.identical and not args.keep:
                shutil.rmtree(kill.dir, ignore_errors=True)
            log.write_text(
                json.dumps(
                    {"references": references, "kills": [dataclasses.asdict(k) for k in kills]}, indent=1, default=str
                )
            )
    print()
    print(summary(kills))
    total = sum(k.identical for k in kills)
    print(f"\n{total} of {len(kills)} resumed byte-identical; {time.perf_counter() - started:.0f} s; log: {log}")
    return 0 if total == len(kills) else 1


if __name__ == "__main__":
    sys.exit(main())
