"""The commands: `sweeps run` (a sweep from a config file, or its dry run), `sweeps report`, `sweeps resume`
(continue a run folder) and `sweeps predict` (apply its saved model to new rows).

Also the flags that join several processes into one run (`sweeps run` and `sweeps resume`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import flax.linen as nn
import numpy as np
import pandas as pd

from sweeps.cli.model_class import build_module, import_class, imported_class, split_class_path
from sweeps.cli.summary import compile_lines, describe_config, show_path, summary_lines
from sweeps.driver.resuming import SettingsChanged

PREVIEW_ROWS = 5
RUNS = Path("runs")  # the default parent of run folders, relative to the working directory


# --- several processes --------------------------------------------------------------


def add_process_flags(parser: argparse.ArgumentParser) -> None:
    """--coordinator, --num-processes, --process-id: one run over several processes (jax.distributed)."""
    group = parser.add_argument_group(
        "several processes",
        "one sweep over the devices of several processes or hosts: start the same command in every process "
        "with the same --coordinator and --num-processes and its own --process-id (0 writes the run folder); "
        "without these flags a cluster launcher's environment (srun, mpirun, a TPU pod slice) is used",
    )
    group.add_argument("--coordinator", metavar="HOST:PORT", help="where process 0 listens, e.g. node001:12355")
    group.add_argument("--num-processes", type=int, metavar="P", help="how many processes take part")
    group.add_argument("--process-id", type=int, metavar="I", help="this process's number, 0 to P-1")


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
    from sweeps.driver.run_folder import holds_run, is_finished, refuse_foreign
    from sweeps.driver.run_lock import refuse_in_use

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


# --- sweeps export ---------------------------------------------------------------------


def export_command(args: argparse.Namespace) -> int:
    """`sweeps export RUN_DIR --to mlflow|tensorboard|optuna`: a finished run into a tracker (again: updated)."""
    from sweeps.results.result import load_result

    run_dir = Path(args.run_dir)
    result = load_result(run_dir)
    belongs = {"--uri": ("mlflow", "optuna"), "--experiment": ("mlflow", "optuna"), "--logdir": ("tensorboard",)}
    given = {"--uri": args.uri, "--experiment": args.experiment, "--logdir": args.logdir}
    wrong = [flag for flag, value in given.items() if value and args.to not in belongs[flag]]
    if wrong:
        raise ValueError(f"{', '.join(wrong)} does not go with --to {args.to}; see `sweeps export --help`")
    if args.to == "mlflow":
        runs = result.to_mlflow(tracking_uri=args.uri, experiment=args.experiment)
        where = args.uri or "MLflow's default tracking URI (MLFLOW_TRACKING_URI)"
        print(
            f"mlflow: {len(runs.trial_runs)} trials written as child runs of run {runs.parent_run_id} "
            f"(experiment id {runs.experiment_id}) at {where}"
        )
        print(f"        open it with: mlflow ui{f' --backend-store-uri {args.uri}' if args.uri else ''}")
    elif args.to == "tensorboard":
        logdir = result.to_tensorboard(args.logdir)
        print(f"tensorboard: {len(result.table)} trials written into {show_path(logdir)}")
        print(f"        open it with: tensorboard --logdir {show_path(logdir)}  (the HPARAMS tab)")
    else:
        storage = args.uri or f"sqlite:///{(run_dir / 'optuna.db').absolute()}"
        study = result.to_optuna(storage, study_name=args.experiment)
        print(f"optuna: {len(study.trials)} trials written to study {study.study_name!r} in {storage}")
        print(f"        open it with: optuna-dashboard {storage}")
    return 0


# --- sweeps resume ---------------------------------------------------------------------


def resume_command(args: argparse.Namespace) -> int:
    from sweeps.cli.config import load_config, plan_from_config, resolve_saved, sweep_from_config
    from sweeps.driver import distributed, run_folder, run_lock
    from sweeps.driver.checkpoints import restore_manifest
    from sweeps.results.result import load_result

    started = time.perf_counter()
    args.quiet = args.quiet or not distributed.is_writer()  # several processes: process 0 prints
    run_dir = Path(args.run_dir)
    restored = distributed.on_writer(restore_manifest, run_dir)  # run.json lost or damaged: its checkpoints' copy
    if restored and not args.quiet:
        print(f"note: {restored}", file=sys.stderr)
    manifest = run_folder.read_manifest(run_dir)
    if not args.fork:  # before the data loads (process 0 looks); the run itself then takes the lock
        distributed.on_writer(run_lock.refuse_in_use, run_dir)
    if run_folder.is_finished(run_dir) and not args.fork:
        print(
            f"{show_path(run_dir)} already finished: nothing to resume (`sweeps report {show_path(run_dir)}` shows it)"
        )
        return 0
    stored = manifest.get("metadata", {}).get("sweep_config")
    if stored is None:
        raise ValueError(
            f"{run_dir} was started from Python (sweeps.run), not from a config file: resume it there with "
            f"sweeps.run(..., run_dir={str(run_dir)!r}, resume=True)"
        )
    config_file = stored.get("config_file")
    _refuse_missing_data(stored, args, run_dir)
    if config_file and Path(config_file).is_file() and not args.saved_config:  # an edit shows up as a difference
        config = load_config(config_file, list(stored.get("overrides", [])) + list(args.overrides))
    else:
        config = resolve_saved(stored, args.overrides, where=f"the configuration saved in {show_path(run_dir)}")
    target = Path(args.fork) if args.fork else run_dir
    config["run"]["dir"] = str(target)
    planned = plan_from_config(config, model=resume_model(config, args, stored))
    what = f"forking {show_path(run_dir)} into {show_path(target)}" if args.fork else f"resuming {show_path(run_dir)}"
    if not args.quiet:
        print(f"{what}: {len(planned[2].trials)} trials in the first round", flush=True)
    try:
        result = sweep_from_config(
            config, progress=not args.quiet, planned=planned, resume=str(run_dir) if args.fork else True
        )
    except SettingsChanged as e:
        raise ValueError(changed_settings_advice(e, config_file, args.saved_config)) from e
    result = load_result(target) if result.run_dir is None else result
    if args.quiet:
        print(show_path(target))
        return 0
    print()
    print("\n".join(summary_lines(result)))
    print(f"wall time: {time.perf_counter() - started:.1f} s")
    print(f"run folder: {show_path(target)}")
    return 0


def resume_model(config: dict, args: argparse.Namespace, stored: dict) -> nn.Module | None:
    """The model `sweeps resume` continues: None for the built-in MLP (built from [model] hidden and activation);
    your own module, its class found without importing anything for the run folder's sake.

    The class is the one the configuration names (the config file as it is now, or the saved configuration), and
    its record in the run folder only says which class that is: sweeps imports it only when this command line
    names it (`--model package.module:Class`, or `--set model.class=...`); otherwise it must be a class this
    process has already imported (sweepax's own `models`, e.g. models.cnn:CNN). Its attributes are the
    configuration's `[model.args]`, data; the resumed run then compares the module's record with the run's.

    Raises:
      ValueError: the run trained your own module and the command names no class that this process has imported
        (the message gives the command with --model), or --model names another class than the configuration's.
    """
    spec = config["model"]
    where = show_path(args.run_dir)
    if "class" not in spec:
        if args.model:
            raise ValueError(
                f"--model names your own model class, but {where} trained the built-in MLP "
                f"(hidden {spec['hidden']} {spec['activation']}): leave --model out"
            )
        return None
    recorded = spec["class"]
    set_by_you = [t.partition("=")[2].strip() for t in args.overrides if t.partition("=")[0].strip() == "model.class"]
    named = args.model.strip() if args.model else (set_by_you[-1] if set_by_you else None)
    command = f"sweeps resume {where}" + (f" --fork {args.fork}" if args.fork else "")
    command += " --saved-config" if args.saved_config else ""
    if named is None:
        cls = imported_class(recorded)
        if cls is None:
            raise ValueError(
                f"{where} trained your own model {recorded}; sweeps imports a model's code only when you name it, "
                f"never because a run folder or the config file it records says so: name the class, "
                f"`{command} --model {recorded}` (run it where {recorded.partition(':')[0]} imports, as for "
                "`sweeps run`)"
            )
    else:
        split_class_path(named, "--model")
        if named != recorded:
            saved = (stored.get("model") or {}).get("class")
            hint = (
                f"; {named} is the class the run saved: continue with its saved configuration, "
                f"`{command} --saved-config --model {named}`"
                if saved == named and not args.saved_config
                else f"; name the configuration's class: --model {recorded}"
            )
            raise ValueError(
                f"--model {named} is not the model class of the configuration to resume ({recorded}){hint}"
            )
        cls = import_class(named, "--model")
    return build_module(cls, spec["args"], f"[model.args] of the configuration of {where}")


def changed_settings_advice(error: SettingsChanged, config_file: str | None, saved_config: bool) -> str:
    """`sweeps resume` refused a changed config or data: what differs, and commands that work from here (never the
    one that just failed)."""
    run_dir = show_path(error.run_dir)
    lines = [f"{run_dir} was started with other settings; what differs now:", *(f"  {c}" for c in error.changed)]
    if error.data_changed:
        lines.append(f"to continue the run: put back the data it was started with, then `sweeps resume {run_dir}`")
    elif not saved_config:
        edited = f"not {show_path(config_file)} as edited" if config_file else "not the edits"
        lines.append(
            f"to continue the run with the settings it saved ({edited}): `sweeps resume {run_dir} --saved-config`"
        )
    if error.forkable and not error.data_changed:
        lines.append(
            f"to go on under the new settings from its newest checkpoint, in a new folder: "
            f"`sweeps resume {run_dir} --fork NEW_DIR`"
        )
    elif config_file:
        lines.append(
            f"to train under the new settings, start a new run (its checkpoints hold trials of the old ones, which a "
            f"fork cannot continue): `sweeps run {show_path(config_file)} --out NEW_DIR`"
        )
    return "\n".join(lines)


def _refuse_missing_data(stored: dict, args: argparse.Namespace, run_dir: Path) -> None:
    """A run whose data file is no longer where it trained from (a moved folder, another machine): how to point
    it at the data, unless this command does (`--set data.path=...`)."""
    path = stored.get("data", {}).get("path")
    pointed = any(text.partition("=")[0].strip() == "data.path" for text in args.overrides)
    if path and not Path(path).is_file() and not pointed:
        where = show_path(run_dir)
        command = f"sweeps resume {where}{f' --fork {args.fork}' if args.fork else ''}"
        raise ValueError(
            f"{where} trained on {path}, which is not there any more (moved, or another machine); point the run at "
            f"its data with `{command} --set data.path=PATH` (the same data: its fingerprint is checked)"
        )


# --- sweeps predict --------------------------------------------------------------------


def predict_command(args: argparse.Namespace) -> int:
    from sweeps.data.reading import read_csv

    out = Path(args.out) if args.out else Path(args.csv).with_suffix(".predictions.csv")
    if out.is_dir():  # refused before anything is computed
        raise ValueError(f"--out {out} is a folder; name the file to write, e.g. --out {out / 'predictions.csv'}")
    if args.trial is not None and args.top is not None:
        raise ValueError(
            f"--trial {args.trial} predicts with one saved model and --top {args.top} with the {args.top} best "
            "averaged: pass one of them"
        )
    model = predict_model(args)
    frame = read_csv(args.csv, str(args.csv), sep=args.sep)
    predictions = predictions_frame(model, frame)
    try:
        predictions.to_csv(out, index=False)
    except OSError as e:
        raise ValueError(
            f"could not write the predictions to {out} ({e.strerror or e}); choose a file you can write with --out FILE"
        ) from e
    if args.top is None:
        info = model.info
        print(
            f"model: trial {model.trial} of {show_path(args.run_dir)} at its best epoch {info['best_epoch']} "
            f"({json.dumps({k: round(v, 4) for k, v in info['metrics'].items() if k.startswith('best_val')})})"
        )
    else:
        averaged = "values" if model.task == "regression" else "probabilities"
        print(
            f"model: the top {len(model.members)} saved trials of {show_path(args.run_dir)} (trials "
            f"{', '.join(str(t) for t in model.trials)}), each at its best epoch, their {averaged} averaged"
        )
    if model.last_report is not None and model.last_report.summary():
        print(f"note: {model.last_report.summary()}")
    print(f"{len(predictions)} rows predicted; the first {min(PREVIEW_ROWS, len(predictions))}:")
    print(predictions.head(PREVIEW_ROWS).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    score = agreement(model, frame, predictions)
    if score:
        print(score)
    print(f"predictions: {show_path(out)}")
    return 0


def predict_model(args: argparse.Namespace):
    """The saved model `sweeps predict` applies (with --top K, the ensemble of the K best saved trials). A run of
    your own module recorded its class, which `sweeps.load_model` finds only among the modules this process has
    imported (sweepax's own `models` are): `--model package.module:Class` imports it because you named it, and must
    name the class the run recorded.

    Raises:
      ValueError: the run's model is a class this process has not imported and --model does not name it (the
        message gives the command with --model), or --model names another class than the one saved.
    """
    from sweeps.results.trained import ModelNotImported, load_model

    where = show_path(args.run_dir)
    named = import_class(args.model, "--model") if args.model else None
    trial = f" --trial {args.trial}" if args.trial is not None else ""
    trial += f" --top {args.top}" if args.top is not None else ""  # the command to type again keeps the choice
    try:
        model = load_model(args.run_dir, trial=args.trial, top=args.top)
    except ModelNotImported as e:
        if named is not None:  # imported, so its class is not the saved one
            raise ValueError(
                f"--model {args.model.strip()} is not the model {where} saved ({e.class_path}): "
                f"`sweeps predict {where} {args.csv}{trial} --model {e.class_path}`"
            ) from e
        raise ValueError(
            f"the saved model of {where} is your own model {e.class_path}, which sweeps imports only when you name "
            f"it (a run folder never makes sweeps import code): `sweeps predict {where} {args.csv}{trial} --model "
            f"{e.class_path}`"
        ) from e
    best = model.members[0] if args.top is not None else model  # an ensemble's members are all of the run's model
    saved = best.info["structure"].get("class")
    if named is not None and saved != args.model.strip():
        what = f"your own model {saved}" if saved else "the built-in MLP"
        fix = f"--model {saved}" if saved else "leave --model out"
        raise ValueError(
            f"--model {args.model.strip()} is not the model {where} saved (trial {best.trial}: {what}): {fix}"
        )
    return model


def predictions_frame(model, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per input row: `prediction`, and for classification `p_<class>` per class."""
    out = pd.DataFrame({"prediction": model.predict(frame)})
    if model.task != "regression":
        for name, column in zip(model.class_names, model.predict_proba(frame).T):
            out[f"p_{name}"] = column
    return out


def agreement(model, frame: pd.DataFrame, predictions: pd.DataFrame) -> str | None:
    """When the rows carry the target, how well the predictions match it (accuracy or RMSE)."""
    target = model.preprocessing.target if model.preprocessing is not None else None
    if target is None or target not in frame:
        return None
    truth = frame[target]
    known = truth.notna().to_numpy()
    if model.task == "regression":
        error = predictions["prediction"].to_numpy()[known] - pd.to_numeric(truth[known]).to_numpy()
        return f"against the file's {target!r} column: RMSE {np.sqrt(np.mean(error**2)):.4g} over {known.sum()} rows"
    hits = predictions["prediction"].astype(str).to_numpy()[known] == truth[known].astype(str).to_numpy()
    return f"against the file's {target!r} column: accuracy {hits.mean():.4f} over {known.sum()} rows"


# --- small helpers ---------------------------------------------------------------------


def folder_files(run_dir: Path) -> list[str]:
    """The files of a run folder a reader opens first."""
    names = [n for n in ("table.csv", "history.csv", "config.json") if (run_dir / n).is_file()]
    plots = sorted((run_dir / "plots").glob("*.png"))
    return names + [f"plots/{p.name}" for p in plots]
