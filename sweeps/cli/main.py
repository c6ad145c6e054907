"""The `sweeps` command: run a sweep from a TOML config, or report on a finished run folder.

    sweeps run data/examples/churn_lr.toml
    sweeps run data/examples/churn_lr.toml --set train.epochs=5 --out runs/quick
    sweeps report runs/churn_lr
    sweeps run sweep.toml --coordinator node001:12355 --num-processes 2 --process-id 0   (and 1 on the other host)

Errors a user can fix (a wrong key, a missing file, a bad value, a full disk)
print `error: <message>` on stderr and exit with status 2, without a traceback
or the checkpoint library's own error log; pass --verbose (or set
SWEEPS_TRACEBACK=1) to see them.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from sweeps.cli.commands import add_process_flags, predict_command, resume_command
from sweeps.cli.config_schema import strategy_help
from sweeps.cli.lr_find_command import add_parser as add_lr_find_parser
from sweeps.cli.summary import compile_lines, describe_config, show_path, summary_lines
from sweeps.driver.compiling import enable_compilation_cache
from sweeps.driver.signals import Interrupted

USER_ERRORS = (ValueError, FileNotFoundError, TypeError, ImportError)  # ImportError: an optional extra is missing
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_SIGNAL_BASE = 128  # a run stopped by signal N after saving a checkpoint exits 128 + N (130 Ctrl-C, 143 SIGTERM)
SIGPIPE = 13  # signal.SIGPIPE where there is one: stdout's reader went away (141)
RUNS = Path("runs")  # the default parent of run folders, relative to the working directory

_RUN_EXAMPLES = """\
examples:
  sweeps run data/examples/churn_lr.toml
  sweeps run data/examples/churn_lr.toml --set train.epochs=5 --set strategy.n=8 --out runs/quick
  sweeps run data/examples/churn_three.toml --dry-run   (the groups and memory, without training)
  sweeps run data/examples/churn_three.toml --dry-run --compile   (also compile and cache the programs:
                                                         the seconds per structure; the run then starts at once)
  sweeps run my.toml --set 'space.learning_rate={loguniform=[1e-3,1]}' --set 'model.hidden=[128,64]'
  (quote a value with braces, commas or spaces, or the shell splits it)

the config file (TOML), every key optional but [data] path and target:
  [data]      path (a relative one is read from the config file's folder; with --set, from the working
              directory), target, task, val_fraction, test_fraction, seed, drop, sep, encoding,
              max_categories (30), min_frequency (5): one-hot limits per text column, rarer values pooled
  [model]     hidden (e.g. [64] or [128, 64]), activation
  [space]     hyperparameter = value | [values] | {loguniform = [lo, hi]} | {uniform = [lo, hi]}
              | {choice = [...]} | {integer = [lo, hi]} | {powers_of_two = [lo, hi]}
              e.g. learning_rate, batch_size, dropout, weight_decay, hidden, optimizer
{strategy}
  [train]     optimizer, epochs, batch_size, seeds, seed, objective,
              early_stopping = {metric, patience, min_delta}, max_population,
              divergence_threshold (false = off), init ("shared" or "per_trial")
  [run]       dir, checkpoint_every (epochs; default: every 60 s), keep_checkpoints, keep_models,
              devices (a count like 4 or device ids like [0, 1]; default: every device)
  data/examples/churn_lr.toml is a commented example.

more than one device: every population is split over every device JAX sees (padded to a multiple
of their count; the table does not change). Several processes (hosts) join with --coordinator,
--num-processes and --process-id, or with none of them under a cluster launcher (srun, mpirun, a
Cloud TPU pod slice), as jax.distributed.initialize() detects it; every process runs the same
command, loads the data itself, and process 0 writes the run folder.

the run folder: --out DIR, else [run] dir, else runs/<config name> (runs/<name>-2, -3, ...
when that one is not empty). It gets run.json, config.json, table.csv/.parquet
(one row per trial), history.csv/.parquet (every metric by epoch), plots/, checkpoints/,
models/ (the best trials' weights: `sweeps predict`) and, last, finished.json. A killed run
continues with `sweeps resume RUN_DIR`; Ctrl-C saves a checkpoint first. One process at a time
runs in a folder (others are refused with its pid and host); a folder holding files sweepax did
not write is refused, never cleared.
"""
RUN_EXAMPLES = _RUN_EXAMPLES.replace("{strategy}", strategy_help("  [strategy]  "))  # the text has TOML's braces

MAIN_EXAMPLES = """\
examples:
  sweeps run data/examples/churn_lr.toml      train the lesson's 64 learning rates
  sweeps report runs/churn_lr                 summarize a finished run, redraw its plots
  sweeps resume runs/churn_lr                 continue a run that was killed
  sweeps predict runs/churn_lr rows.csv       predict new rows with the run's best model
  sweeps lr-find data/examples/churn_lr.toml  find the learning rate range before sweeping

`sweeps run --help` describes the config file.
"""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one subparser per command, each with its `handler`."""
    parser = argparse.ArgumentParser(
        prog="sweeps",
        description="Train a whole hyperparameter sweep as one compiled, vectorized JAX program.",
        epilog=MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run_parser = commands.add_parser(
        "run",
        help="run the sweep a config file describes",
        description="Run the sweep a TOML config file describes: load the data, train every trial, "
        "write the run folder and print the best trials.",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_parser.add_argument("config", metavar="CONFIG.toml", help="the sweep's config file")
    run_parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. train.epochs=5 or model.hidden=[128,64]; "
        "the value is read as TOML, else as plain text; repeat for more",
    )
    run_parser.add_argument("--out", metavar="DIR", help="the run folder (beats [run] dir)")
    run_parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run already in the run folder (everything it wrote is removed first, nothing else; never "
        "a folder another process runs in)",
    )
    run_parser.add_argument(
        "--quiet", action="store_true", help="no progress bar or summary; print only the run folder's path"
    )
    run_parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and print the devices, the structure groups, their population sizes and "
        "members per device, the programs to compile and the memory estimate per device; train nothing, "
        "write nothing, compile nothing (fast); any run folder will do, even one in use",
    )
    run_parser.add_argument(
        "--compile",
        action="store_true",
        help="with --dry-run: also compile every structure's programs (initialisation and epoch) ahead of time, "
        "without training, and print XLA's compile seconds per structure (a few seconds each); the compilation "
        "cache keeps them, so the run that follows starts at once",
    )
    add_process_flags(run_parser)
    run_parser.set_defaults(handler=run_command)

    report_parser = commands.add_parser(
        "report",
        help="summarize a finished run folder and redraw its plots",
        description="Print the best trials of a finished run folder and redraw its plots into RUN_DIR/plots.",
        epilog="examples:\n  sweeps report runs/churn_lr\n"
        "  sweeps report runs/churn_lr --optuna sqlite:///runs/churn_lr/optuna.db   (then: optuna-dashboard "
        "sqlite:///runs/churn_lr/optuna.db)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report_parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `sweeps run`")
    report_parser.add_argument(
        "--optuna",
        metavar="STORAGE",
        help="also write every trial into an Optuna storage, e.g. sqlite:///runs/churn_lr/optuna.db "
        '(then: optuna-dashboard STORAGE); needs pip install "sweepax[bayes]"',
    )
    report_parser.add_argument(
        "--study-name", metavar="NAME", help="the Optuna study's name (default: the run folder's name)"
    )
    report_parser.set_defaults(handler=report_command)

    resume_parser = commands.add_parser(
        "resume",
        help="continue a run folder from its newest checkpoint",
        description="Continue a sweep that stopped (killed, pre-empted, Ctrl-C, a full disk) from its newest "
        "checkpoint; a run stopped during its final write gets its results written. The result equals that of an "
        "uninterrupted run. The run's config file is read again: when it or the data changed since the start, the "
        "differences are listed and nothing runs (--saved-config continues with the configuration the run saved; "
        "--fork runs the new one in a new folder).",
        epilog="examples:\n  sweeps resume runs/churn_three\n  sweeps resume runs/churn_three --fork runs/longer "
        "--set train.divergence_threshold=20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    resume_parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `sweeps run`")
    resume_parser.add_argument(
        "--fork",
        metavar="NEW_DIR",
        help="start a new run in NEW_DIR from RUN_DIR's newest checkpoint, under the "
        "configuration as it is now (with --set)",
    )
    resume_parser.add_argument(
        "--saved-config",
        action="store_true",
        help="continue with the configuration saved in RUN_DIR/run.json, ignoring edits made to the config file "
        "since the run started",
    )
    resume_parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value (with --fork)",
    )
    resume_parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_process_flags(resume_parser)
    resume_parser.set_defaults(handler=resume_command)

    predict_parser = commands.add_parser(
        "predict",
        help="apply a run's saved best model to new rows",
        description="Predict the target of every row of a CSV file with a run's best model (or --trial N's), "
        "after the preprocessing fitted on the run's training split.",
        epilog="example:\n  sweeps predict runs/churn_lr new_customers.csv --out predictions.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict_parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder with saved models")
    predict_parser.add_argument("csv", metavar="ROWS.csv", help="the rows to predict (the target column may be absent)")
    predict_parser.add_argument(
        "--out", metavar="FILE", help="where to write the predictions (default ROWS.predictions.csv)"
    )
    predict_parser.add_argument("--trial", type=int, help="a saved trial's number instead of the best")
    predict_parser.add_argument("--sep", help="the CSV's separator (default: detected)")
    predict_parser.set_defaults(handler=predict_command)
    add_lr_find_parser(commands)
    for sub in commands.choices.values():
        sub.add_argument(
            "--verbose",
            action="store_true",
            help="on an error, print its traceback and the checkpoint library's own log too (as SWEEPS_TRACEBACK=1)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `sweeps` command line; returns the exit status (0 done, 2 a user error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2): argparse has printed why
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    enable_compilation_cache()
    verbose = getattr(args, "verbose", False) or bool(os.environ.get("SWEEPS_TRACEBACK"))
    try:
        with contextlib.nullcontext() if verbose else quiet_background_errors():
            if hasattr(args, "coordinator"):
                from sweeps.driver.distributed import join

                join(args.coordinator, args.num_processes, args.process_id)  # before anything touches a device
            return handle(args)
    except USER_ERRORS as e:
        if verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Interrupted as e:
        print(f"stopped: {e}", file=sys.stderr)
        return EXIT_SIGNAL_BASE + e.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


@contextlib.contextmanager
def quiet_background_errors():
    """Keeps the checkpoint library's own reports of a failed write off the screen (without --verbose).

    A failed write (a full disk) fails in orbax's background threads, which log a traceback each (dozens),
    and tensorstore then calls back into orbax's closed event loops ("Event loop is closed"): the same noise
    a damaged checkpoint's reads leave, dropped by `checkpoints.quiet_abandoned_reads`; the failure itself
    reaches the main thread, where it becomes one message.
    """
    from sweeps.driver.checkpoints import quiet_abandoned_reads

    absl, level = logging.getLogger("absl"), logging.getLogger("absl").level
    absl.setLevel(logging.CRITICAL)
    quiet_abandoned_reads()
    try:
        yield
    finally:
        absl.setLevel(level)


def handle(args: argparse.Namespace) -> int:
    """Runs the command's handler; an error raised while a Ctrl-C unwinds is that Ctrl-C.

    A second Ctrl-C stops at once, wherever it lands: in the middle of orbax starting its save thread,
    the cleanup after it then fails ("cannot join thread before it is started"); that is still the
    user's interrupt (exit 130), not a crash.
    """
    try:
        return args.handler(args)
    except Exception as e:
        seen, cause = set(), e.__context__
        while cause is not None and id(cause) not in seen:
            if isinstance(cause, KeyboardInterrupt):
                raise KeyboardInterrupt from e
            seen.add(id(cause))
            cause = cause.__context__
        raise


# --- sweeps run ----------------------------------------------------------------------


def run_command(args: argparse.Namespace) -> int:
    from sweeps.cli.config import load_config, plan_from_config, sweep_from_config
    from sweeps.driver import distributed

    started = time.perf_counter()
    if args.compile and not args.dry_run:
        raise ValueError(
            "--compile goes with --dry-run (compile and cache the programs, train nothing); a run compiles its "
            "programs anyway and records the seconds per structure in config.json (compile_by_structure)"
        )
    config = load_config(args.config, args.overrides)
    run_dir = distributed.agreed(choose_run_dir(args, config))  # several processes: process 0's choice
    config["run"]["dir"] = str(run_dir)
    planned = plan_from_config(config)  # every value checked and the first round planned, before the banner
    data, sweep_plan, first = planned
    if args.dry_run:  # writes nothing, so it takes any folder and no lock; it says what a run would meet there
        return dry_run(args, config, sweep_plan, first)
    if not distributed.is_writer():  # another process of a multi-process run: process 0 prints and writes
        sweep_from_config(config, progress=False, planned=planned, overwrite=args.overwrite)
        print(f"process {distributed.index()} of {distributed.processes()} finished; process 0 wrote {run_dir}")
        return 0
    if not args.quiet:
        rounds = sweep_plan.strategy.planned_rounds()
        print("\n".join(describe_config(config, args.config, len(first.trials), rounds)), flush=True)
        print(f"devices: {sweep_plan.devices.describe()}", flush=True)
        print(flush=True)
    result = sweep_from_config(config, progress=not args.quiet, planned=planned, overwrite=args.overwrite)
    if args.quiet:
        print(show_path(run_dir))
        return 0
    print()
    print("\n".join(summary_lines(result)))
    print(
        f"wall time: {time.perf_counter() - started:.1f} s in all, "
        f"{result.config.get('wall_s', math.nan):.1f} s of it compiling and training"
    )
    print(f"results: {', '.join(folder_files(run_dir))}")
    print(f"run folder: {show_path(run_dir)}")
    return 0


def dry_run(args: argparse.Namespace, config: dict, sweep_plan, first) -> int:
    """`sweeps run --dry-run`: the first round's plan; with --compile, every structure's programs compiled and cached,
    no training."""
    import jax

    from sweeps.driver import distributed
    from sweeps.driver.compiling import Programs

    writer = distributed.is_writer()
    if writer:
        rounds = sweep_plan.strategy.planned_rounds()
        print("\n".join(describe_config(config, args.config, len(first.trials), rounds)[:-1]))
        print()
        print(first.describe(), flush=True)
    report = wall_s = None
    if args.compile:
        if writer:
            print(f"compiling the programs of {len(first.groups)} structure groups (no training) ...", flush=True)
        started = time.perf_counter()
        report = Programs(sweep_plan).compile_round(first)
        wall_s = time.perf_counter() - started
    if writer:
        print("\n".join(compile_lines(report, wall_s, jax.config.jax_compilation_cache_dir)))
        try:
            check_run_dir(Path(config["run"]["dir"]), args.overwrite, "the run folder")
        except ValueError as e:
            print(f"note: the run itself would stop here: {e}")
        print(f"dry run: nothing trained, {'no run folder' if args.compile else 'nothing'} written")
    return 0


def choose_run_dir(args: argparse.Namespace, config: dict) -> Path:
    """--out, else [run] dir, else runs/<config stem> (or the first free runs/<stem>-2, -3, ...).

    Raises:
      ValueError: (not for a dry run, which writes nothing) when a folder named by --out or [run] dir is
        in use by another process, holds files sweepax did not write, or already holds a run (finished or
        not) and --overwrite was not given.
    """
    from sweeps.driver.run_folder import foreign_entries, holds_run

    if args.out:
        chosen, source = Path(args.out), "--out"
    elif config["run"]["dir"]:
        chosen, source = Path(config["run"]["dir"]), f"[run] dir of {args.config}"
    else:
        stem = Path(args.config).stem
        chosen, n = RUNS / stem, 1
        while (foreign_entries(chosen) or holds_run(chosen)) and not (args.overwrite and holds_run(chosen)):
            n += 1
            chosen = RUNS / f"{stem}-{n}"
        return chosen
    if not args.dry_run:
        check_run_dir(chosen, args.overwrite, f"{show_path(chosen)} (from {source})")
    return chosen


def check_run_dir(chosen: Path, overwrite: bool, shown: str) -> None:
    """Refuses, before anything loads, a run folder that `sweeps run` could not take (see `choose_run_dir`)."""
    from sweeps.driver.run_folder import holds_run, is_finished, refuse_foreign, refuse_in_use

    if chosen.exists() and not chosen.is_dir():
        raise ValueError(f"{shown} is a file; choose another run folder with --out DIR")
    refuse_in_use(chosen)
    refuse_foreign(chosen, shown)
    if holds_run(chosen) and not overwrite:
        where = show_path(chosen)
        if is_finished(chosen):
            state, way = "a finished run", f"`sweeps report {where}` shows it"
        else:
            state, way = "an unfinished run", f"continue it with `sweeps resume {where}`"
        raise ValueError(
            f"{shown} already holds {state}; {way}; replace it with --overwrite, or write elsewhere with --out DIR"
        )


# --- sweeps report -------------------------------------------------------------------


def report_command(args: argparse.Namespace) -> int:
    from sweeps.results.plots import plot_run
    from sweeps.results.result import load_result

    run_dir = Path(args.run_dir)
    result = load_result(run_dir)
    source = result.config.get("config_file")
    finished = result.config.get("finished")
    about = [f"from {show_path(source)}"] if source else []
    about += [f"finished {finished}"] if finished else []
    about = ", ".join(about)
    print(f"sweep: {show_path(run_dir)}{f' ({about})' if about else ''}")
    print()
    print("\n".join(summary_lines(result)))
    if "wall_s" in result.config:
        print(f"wall time: {result.config['wall_s']:.1f} s compiling and training")
    written = plot_run(result, run_dir / "plots")
    print("plots:")
    print("\n".join(f"  {show_path(p)}" for p in written))
    if args.optuna:
        study = result.to_optuna(args.optuna, study_name=args.study_name)
        print(f"optuna: {len(study.trials)} trials written to study {study.study_name!r} in {args.optuna}")
        print(f"        open it with: optuna-dashboard {args.optuna}")
    print(f"run folder: {show_path(run_dir)}")
    return 0


# --- small helpers ---------------------------------------------------------------------


def folder_files(run_dir: Path) -> list[str]:
    """The files of a run folder a reader opens first."""
    names = [n for n in ("table.csv", "history.csv", "config.json") if (run_dir / n).is_file()]
    plots = sorted((run_dir / "plots").glob("*.png"))
    return names + [f"plots/{p.name}" for p in plots]


def command() -> None:
    """`sweeps` and `python -m sweeps`: `main`, then, once every thread has finished and every exit handler (JAX's,
    orbax's, logging's) has run, an exit without the interpreter's teardown (freeing each compiled program and
    module, a noticeable wait after a sweep: benchmarks/README.md, "2026-11-28, second session", item 14):
    nothing written is left unflushed.
    After a Ctrl-C nothing is waited for: a second one may have stopped orbax mid-save, leaving threads that
    never end (the newest whole checkpoint is on disk either way)."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # the reader of stdout went away (`sweeps predict ... | head`)
        code = stdout_gone()
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon and code != EXIT_INTERRUPTED:
            thread.join()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = stdout_gone()
    sys.stderr.flush()
    os._exit(code)


def stdout_gone() -> int:
    """Stops quietly when nothing reads stdout any more: what is left for it goes to /dev/null (Python's recipe,
    `signal` docs, "Note on SIGPIPE"), and the status is that of a command stopped by SIGPIPE (141)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_SIGNAL_BASE + SIGPIPE


if __name__ == "__main__":
    command()
