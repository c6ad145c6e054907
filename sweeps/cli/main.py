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
import os
import sys
import threading
from collections.abc import Sequence

from sweeps.cli.commands import (
    add_process_flags,
    export_command,
    predict_command,
    report_command,
    resume_command,
    run_command,
)
from sweeps.cli.config_schema import strategy_help
from sweeps.cli.lr_find_command import add_parser as add_lr_find_parser
from sweeps.driver.compiling import enable_compilation_cache
from sweeps.driver.signals import Interrupted

USER_ERRORS = (ValueError, FileNotFoundError, TypeError, ImportError)  # ImportError: an optional extra is missing
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_SIGNAL_BASE = 128  # a run stopped by signal N after saving a checkpoint exits 128 + N (130 Ctrl-C, 143 SIGTERM)
SIGPIPE = 13  # signal.SIGPIPE where there is one: stdout's reader went away (141)

_RUN_EXAMPLES = """\
examples:
  sweeps run data/examples/churn_lr.toml
  sweeps run data/examples/churn_lr.toml --set train.epochs=5 --set strategy.n=8 --out runs/quick
  sweeps run data/examples/churn_three.toml --dry-run   (the groups and memory, without training)
  sweeps run data/examples/churn_three.toml --dry-run --compile   (also compile and cache the programs:
                                                         the seconds per structure; the run then starts at once)
  sweeps run my.toml --set 'space.learning_rate={loguniform=[1e-3,1]}' --set 'model.hidden=[128,64]'
  sweeps run data/examples/churn_own_model.toml --set 'model.args.width=32'   (your own model's attribute)
  (quote a value with braces, commas or spaces, or the shell splits it)

the config file (TOML), every key optional but [data] path and target:
  [data]      path (a relative one is read from the config file's folder; with --set, from the working
              directory), target, task, val_fraction, test_fraction, seed, drop, sep, encoding,
              max_categories (30), min_frequency (5): one-hot limits per text column, rarer values pooled
  [model]     hidden (e.g. [64] or [128, 64]), activation: the built-in MLP; or your own Flax Linen module:
              class = "package.module:Class" (e.g. "models.cnn:CNN"; a module in the working directory,
              on PYTHONPATH or installed), its attributes under [model.args] (e.g. channels = [16, 32]:
              an array becomes a tuple); not both. --set model.class=... replaces the file's model;
              [space] may then sweep its __call__'s number keywords (data/examples/churn_own_model.toml)
  [space]     hyperparameter = value | [values] | {loguniform = [lo, hi]} | {uniform = [lo, hi]}
              | {choice = [...]} | {integer = [lo, hi]} | {powers_of_two = [lo, hi]}
              e.g. learning_rate, batch_size, dropout, weight_decay, hidden, optimizer
{strategy}
  [train]     optimizer, epochs, batch_size, seeds, seed, objective,
              early_stopping = {metric, patience, min_delta}, max_population,
              divergence_threshold (false = off), init ("shared" or "per_trial"),
              fuse (false: one program per structure; default: differing MLPs or batch sizes may share one),
              precision ("float32", default; "bfloat16": bf16 matrix products and activations, float32 weights),
              kernel ("xla", default; "pallas": the built-in MLP's members keep their state on chip for an epoch)
  [run]       dir, checkpoint_every (epochs; default: every 60 s), keep_checkpoints, keep_models,
              plots (false: none drawn; `sweeps report` draws them later),
              devices (a count like 4 or device ids like [0, 1]; default: every device),
              log (trackers that watch the run live: ["mlflow", "tensorboard"]; pip install
              "sweepax[mlflow]" / "sweepax[tensorboard]"), mlflow_uri, mlflow_experiment, tensorboard_dir
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
  sweeps export runs/churn_lr --to mlflow     write it into MLflow (or tensorboard, optuna)
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

    export_parser = commands.add_parser(
        "export",
        help="write a finished run into MLflow, TensorBoard or an Optuna storage",
        description="Write every trial of a finished run folder into an experiment tracker: MLflow (one parent run "
        "for the sweep, one child run per trial with its params and every epoch's metrics), TensorBoard (the HParams "
        "plugin's layout: one folder per trial) or an Optuna storage (for optuna-dashboard). Exporting a run to MLflow "
        "or TensorBoard again updates what the last export (or the live run, [run] log) wrote: nothing is written "
        "twice; an Optuna storage refuses a study name it already holds.",
        epilog="examples:\n  sweeps export runs/churn_lr --to mlflow   (MLflow's default store; then: mlflow ui)\n"
        "  sweeps export runs/churn_lr --to mlflow --uri http://127.0.0.1:5000 --experiment churn\n"
        "  sweeps export runs/churn_lr --to tensorboard   (into runs/churn_lr/tensorboard; then: tensorboard "
        "--logdir runs/churn_lr/tensorboard)\n"
        "  sweeps export runs/churn_lr --to optuna   (into sqlite:///runs/churn_lr/optuna.db; then: "
        "optuna-dashboard sqlite:///runs/churn_lr/optuna.db)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export_parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder")
    export_parser.add_argument("--to", required=True, choices=("mlflow", "tensorboard", "optuna"), help="where to")
    export_parser.add_argument(
        "--uri",
        help="mlflow: the tracking URI (default: MLFLOW_TRACKING_URI, else MLflow's own default); optuna: the "
        "storage URL (default sqlite:///RUN_DIR/optuna.db)",
    )
    export_parser.add_argument(
        "--experiment", metavar="NAME", help="mlflow: the experiment; optuna: the study (default: RUN_DIR's name)"
    )
    export_parser.add_argument(
        "--logdir", metavar="DIR", help="tensorboard: the log folder (default RUN_DIR/tensorboard)"
    )
    export_parser.set_defaults(handler=export_command)

    resume_parser = commands.add_parser(
        "resume",
        help="continue a run folder from its newest checkpoint",
        description="Continue a sweep that stopped (killed, pre-empted, Ctrl-C, a full disk) from its newest "
        "checkpoint; a run stopped during its final write gets its results written. The result equals that of an "
        "uninterrupted run. The run's config file is read again: when it or the data changed since the start, the "
        "differences are listed and nothing runs (--saved-config continues with the configuration the run saved; "
        "--fork runs the new one in a new folder).",
        epilog="examples:\n  sweeps resume runs/churn_three\n  sweeps resume runs/churn_three --fork runs/longer "
        "--set train.divergence_threshold=20\n  sweeps resume runs/mine --model mynets:Net   (a run of your own model: "
        "you name its class)",
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
    resume_parser.add_argument(
        "--model",
        metavar="package.module:Class",
        help="a run of your own model: import its class because you name it here (a run folder never makes sweeps "
        "import code); needed unless this process already imports it (sweepax's own models.*)",
    )
    resume_parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_process_flags(resume_parser)
    resume_parser.set_defaults(handler=resume_command)

    predict_parser = commands.add_parser(
        "predict",
        help="apply a run's saved best model to new rows",
        description="Predict the target of every row of a CSV file with a run's best model (or --trial N's, or "
        "--top K: the K best saved trials averaged), after the preprocessing fitted on the run's training split.",
        epilog="examples:\n  sweeps predict runs/churn_lr new_customers.csv --out predictions.csv\n"
        "  sweeps predict runs/churn_lr new_customers.csv --top 5   (the 5 best saved trials, averaged)\n"
        "  sweeps predict runs/mine new_customers.csv --model mynets:Net   (a run of your own model: you name its "
        "class)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict_parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder with saved models")
    predict_parser.add_argument("csv", metavar="ROWS.csv", help="the rows to predict (the target column may be absent)")
    predict_parser.add_argument(
        "--out", metavar="FILE", help="where to write the predictions (default ROWS.predictions.csv)"
    )
    predict_parser.add_argument("--trial", type=int, help="a saved trial's number instead of the best")
    predict_parser.add_argument(
        "--top",
        type=int,
        metavar="K",
        help="the ensemble of the K best saved trials instead of one: their probabilities (or values) averaged",
    )
    predict_parser.add_argument("--sep", help="the CSV's separator (default: detected)")
    predict_parser.add_argument(
        "--model",
        metavar="package.module:Class",
        help="a run of your own model: import its class because you name it here (a run folder never makes sweeps "
        "import code); needed unless this process already imports it (sweepax's own models.*)",
    )
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


# --- the console script ----------------------------------------------------------------


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
