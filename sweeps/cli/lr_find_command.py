"""`sweeps lr-find CONFIG`: the learning-rate range test on a sweep's config file.

It reads what `sweeps run` reads: `[data]`, `[model]`, `[train] optimizer, batch_size, seed`, and the
fixed values of `[space]` (a single value, e.g. `dropout = 0.1` or `optimizer = "sgd"`). The
learning rate, the epochs and the schedule are the range test's own; any other hyperparameter that
`[space]` sweeps is refused, since the test trains one configuration.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from models import MLP
from sweeps.cli.commands import RUNS
from sweeps.cli.summary import show_path

OWN = ("learning_rate", "epochs", "schedule")  # the range test sets these itself

EXAMPLES = """\
examples:
  sweeps lr-find data/examples/churn_lr.toml
  sweeps lr-find data/examples/churn_lr.toml --min-lr 1e-5 --max-lr 1 --points 32 --epochs 2 --out runs/lr-find
  sweeps lr-find my.toml --set space.optimizer=momentum --set space.momentum=0.95 --set space.dropout=0.1

Two tests side by side, from the same initial weights: POINTS constant learning rates, log-spaced
from --min-lr to --max-lr, trained together for --epochs epochs as one vectorized population; and
Leslie Smith's classic single run, its rate growing every minibatch from --min-lr to --max-lr
(at least 100 steps), stopped once its loss explodes. It prints the suggested range, from the rate
where the loss falls fastest (steepest descent against log rate) to the largest rate before
divergence, and writes lr_find.png and lr_find.json into --out (default: the config's run folder).
"""


def add_parser(commands) -> argparse.ArgumentParser:
    """Registers `lr-find` on the `sweeps` command's subparsers."""
    parser = commands.add_parser(
        "lr-find",
        help="find the learning rate range for a config's model and data",
        description="The learning-rate range test on a config file's data, model and optimizer.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", metavar="CONFIG.toml", help="a sweep config file (as for `sweeps run`)")
    parser.add_argument("--min-lr", type=float, default=1e-6, help="the smallest rate tested (default 1e-6)")
    parser.add_argument("--max-lr", type=float, default=10.0, help="the largest rate tested (default 10)")
    parser.add_argument("--points", type=int, default=64, help="constant rates in the vectorized test (default 64)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs each constant rate trains (default 1)")
    parser.add_argument("--out", metavar="DIR", help="where to write lr_find.png and lr_find.json")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, as for `sweeps run`; repeat for more",
    )
    parser.set_defaults(handler=lr_find_command)
    return parser


def lr_find_command(args: argparse.Namespace) -> int:
    from sweeps.cli.config import load_config
    from sweeps.cli.config_schema import load_data
    from sweeps.lr_find.finder import check_range, lr_find

    started = time.perf_counter()
    check_range(args.min_lr, args.max_lr, args.points, args.epochs)  # before the data is read
    config = load_config(args.config, args.overrides)
    options, notes = options_from_config(config)
    out = Path(args.out) if args.out else Path(config["run"]["dir"] or RUNS / Path(args.config).stem)
    data = load_data(config)
    model = options["model"]
    print(
        f"lr-find: {show_path(config['data']['path'])}, predicting {config['data']['target']!r}; "
        f"MLP hidden {list(model.hidden)} {model.activation}, {options['optimizer']}, batch {options['batch_size']}; "
        f"{args.points} rates from {args.min_lr:g} to {args.max_lr:g}, {args.epochs} epoch(s)",
        flush=True,
    )
    for note in notes:
        print(f"note: {note}")
    found = lr_find(
        data,
        **options,
        epochs=args.epochs,
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        points=args.points,
        run_dir=out,
    )
    print()
    print("\n".join(found.summary()))
    print(f"wall time: {time.perf_counter() - started:.1f} s in all, {found.wall_s:.1f} s of it compiling and training")
    print(f"plot: {show_path(found.path)}")
    return 0


def options_from_config(config) -> tuple[dict, list[str]]:
    """`lr_find`'s keyword arguments from a resolved config, and notes on what it leaves out.

    Raises:
      ValueError: when `[space]` sweeps a hyperparameter other than the learning rate, epochs or schedule.
    """
    from sweeps.cli.config_schema import model_from_config, space_from_config
    from sweeps.space import Float

    if "class" in config["model"]:  # refused before anything is imported or read
        raise ValueError(
            f"lr-find takes the built-in MLP ([model] hidden and activation), not your own model "
            f"{config['model']['class']}: the range test of your own model is not supported yet; sweep the learning "
            "rate with `sweeps run` instead ([space] learning_rate = {loguniform = [1e-6, 1]}, strategy grid)"
        )
    model = model_from_config(config)
    options = {"optimizer": config["train"]["optimizer"], "batch_size": config["train"]["batch_size"]}
    structure = {"hidden": model.hidden, "activation": model.activation}
    hparams, notes = {}, []
    for name, axis in space_from_config(config).items():
        if name in OWN:
            if name != "learning_rate":
                notes.append(f"[space] {name} is left out: the range test trains at constant rates for --epochs")
            continue
        if isinstance(axis, Float) or len(axis.values) > 1:
            raise ValueError(
                f"lr-find trains one configuration, but [space] sweeps {name} ({config['space'][name]!r}); "
                f"fix it, e.g. --set space.{name}=VALUE"
            )
        value = axis.values[0]
        if name in ("optimizer", "batch_size"):
            options[name] = value
        elif name in structure:
            structure[name] = value
        else:
            hparams[name] = value
    options["model"] = MLP(hidden=tuple(structure["hidden"]), activation=structure["activation"])
    return {**options, "hparams": hparams, "seed": config["train"]["seed"]}, notes
