"""`sweeps resume` and `sweeps predict`: continue a run folder, apply its saved model to new rows.

Also the flags that join several processes into one run (`sweeps run` and `sweeps resume`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sweeps.cli.summary import show_path, summary_lines
from sweeps.sweep import SettingsChanged

PREVIEW_ROWS = 5


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


# --- sweeps resume ---------------------------------------------------------------------


def resume_command(args: argparse.Namespace) -> int:
    from sweeps.cli.config import load_config, plan_from_config, resolve_saved, sweep_from_config
    from sweeps.driver import distributed, run_folder
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
        distributed.on_writer(run_folder.refuse_in_use, run_dir)
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
    planned = plan_from_config(config)
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
    from sweeps.results.trained import load_model

    out = Path(args.out) if args.out else Path(args.csv).with_suffix(".predictions.csv")
    if out.is_dir():  # refused before anything is computed
        raise ValueError(f"--out {out} is a folder; name the file to write, e.g. --out {out / 'predictions.csv'}")
    model = load_model(args.run_dir, trial=args.trial)
    frame = read_csv(args.csv, str(args.csv), sep=args.sep)
    predictions = predictions_frame(model, frame)
    try:
        predictions.to_csv(out, index=False)
    except OSError as e:
        raise ValueError(
            f"could not write the predictions to {out} ({e.strerror or e}); choose a file you can write with --out FILE"
        ) from e
    info = model.info
    print(
        f"model: trial {model.trial} of {show_path(args.run_dir)} at its best epoch {info['best_epoch']} "
        f"({json.dumps({k: round(v, 4) for k, v in info['metrics'].items() if k.startswith('best_val')})})"
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
