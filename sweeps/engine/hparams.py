"""Every hyperparameter sweepax knows: its default, its range, and its kind.

A *traced* hyperparameter does not change any array's shape: it becomes an
array with one value per member in the population state, so one compiled
program serves every value. A *structural* one (batch size, layer widths,
activation, optimizer family, schedule) decides the shapes or the code, and
so the compiled program: trials are grouped by these values.

The choices of `optimizer` and `schedule` are the registries `OPTIMIZERS`
(`optimizers.py`) and `SCHEDULES` (`schedules.py`), read here and reached
through this module from outside the engine.

Examples:
  >>> from sweeps.engine.hparams import HPARAMS
  >>> HPARAMS["learning_rate"].traced, HPARAMS["batch_size"].traced
  (True, False)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

from models.mlp import ACTIVATIONS
from sweeps.engine.optimizers import OPTIMIZERS
from sweeps.engine.schedules import SCHEDULES


@dataclasses.dataclass(frozen=True)
class HParam:
    """One hyperparameter: `check(value)` returns an error text or None."""

    name: str
    default: Any
    traced: bool
    rule: str
    check: Callable[[Any], bool]
    doc: str


def _real(low=-math.inf, high=math.inf, low_open=False, high_open=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return above and below

    return check


def _whole(low: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _layout(v):
    return isinstance(v, tuple) and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in v)


def _one_of(options):
    return lambda v: v in options


_SPECS = [
    # name, default, traced, rule, check, doc
    ("learning_rate", 1e-3, True, "> 0", _real(0, low_open=True), "step size; where a schedule is set, its peak"),
    ("b1", 0.9, True, "in [0, 1)", _real(0, 1, high_open=True), "Adam/AdamW first-moment decay"),
    ("b2", 0.999, True, "in [0, 1)", _real(0, 1, high_open=True), "Adam/AdamW second-moment decay"),
    ("eps", 1e-8, True, "> 0", _real(0, low_open=True), "Adam/AdamW/RMSprop/Adagrad denominator term"),
    ("weight_decay", 1e-4, True, ">= 0", _real(0), "decoupled weight decay (AdamW only)"),
    ("momentum", 0.9, True, "in [0, 1)", _real(0, 1, high_open=True), "SGD momentum (momentum, nesterov)"),
    ("l2", 0.0, True, ">= 0", _real(0), "L2 penalty `l2 * sum(kernel**2)` added to the loss"),
    ("dropout", 0.0, True, "in [0, 1)", _real(0, 1, high_open=True), "dropout rate after each hidden layer"),
    ("init_scale", 1.0, True, "> 0", _real(0, low_open=True), "multiplies the default initialisation"),
    (
        "clip_norm",
        None,
        True,
        "> 0 (absent = off)",
        lambda v: v is None or _real(0, low_open=True)(v),
        "global gradient-norm clipping",
    ),
    (
        "warmup_fraction",
        0.1,
        True,
        "in [0, 1)",
        _real(0, 1, high_open=True),
        "share of the steps spent warming up (warmup_cosine, onecycle)",
    ),
    ("decay_rate", 0.5, True, "in (0, 1]", _real(0, 1, low_open=True), "learning-rate factor per epoch (exponential)"),
    ("final_lr_fraction", 0.0, True, "in [0, 1]", _real(0, 1), "final learning rate over the peak (cosine schedules)"),
    ("epochs", 10, True, "an integer >= 1", _whole(1), "training epochs; a member stops at its own budget"),
    ("batch_size", 32, False, "an integer >= 1 and <= the training rows", _whole(1), "rows per minibatch"),
    ("hidden", (64,), False, "a tuple of widths >= 1", _layout, "hidden layer widths, e.g. (64,) or (128, 64)"),
    ("activation", "relu", False, f"one of {sorted(ACTIVATIONS)}", _one_of(ACTIVATIONS), "hidden activation"),
    ("optimizer", "adam", False, f"one of {list(OPTIMIZERS)}", _one_of(OPTIMIZERS), "optimizer family"),
    ("schedule", "constant", False, f"one of {list(SCHEDULES)}", _one_of(SCHEDULES), "learning-rate schedule"),
]

HPARAMS: dict[str, HParam] = {spec[0]: HParam(*spec) for spec in _SPECS}
TRACED = tuple(name for name, hp in HPARAMS.items() if hp.traced)
STRUCTURAL = tuple(name for name, hp in HPARAMS.items() if not hp.traced)
# Read only by some optimizers or schedules: a trial whose optimizer and schedule do not read one
# trains the same whatever its value (a conditional hyperparameter, in Optuna's words).
CONDITIONAL = tuple(
    dict.fromkeys(name for reads in [*(o.reads for o in OPTIMIZERS.values()), *SCHEDULES.values()] for name in reads)
)


# The built-in MLP's own: a user's model fixes its shapes itself and reads only the call hyperparameters it declares.
MLP_ONLY = ("hidden", "activation", "dropout")


def reads(hparams: Mapping[str, Any], model: Mapping[str, float] | None = None) -> set[str]:
    """The hyperparameters a trial with these (resolved) values actually uses.

    `model`: a user's model's call hyperparameters (name -> default, `Network.call_hparams`), None for the
    built-in MLP: the user's model reads those and none of the MLP's own (`MLP_ONLY`).

    Examples:
      >>> sorted(reads({"optimizer": "sgd", "schedule": "constant"}) & set(CONDITIONAL))
      []
      >>> sorted(reads({"optimizer": "adamw", "schedule": "exponential"}) & set(CONDITIONAL))
      ['b1', 'b2', 'decay_rate', 'eps', 'weight_decay']
    """
    used = (set(HPARAMS) - set(CONDITIONAL)) | {name for name in hparams if name not in HPARAMS}  # the model's own
    if model is not None:
        used = (used - set(MLP_ONLY)) | set(model)
    return used | set(OPTIMIZERS[hparams["optimizer"]].reads) | set(SCHEDULES[hparams["schedule"]])


def readers(name: str) -> list[str]:
    """The optimizers and schedules that read a conditional hyperparameter, for messages."""
    return [o.name for o in OPTIMIZERS.values() if name in o.reads] + [s for s, r in SCHEDULES.items() if name in r]


def check_name(name: str, where: str = "space", model: Mapping[str, float] | None = None) -> None:
    """Refuses an unknown hyperparameter name, suggesting the nearest one; `model`: the user's model's call
    hyperparameters (name -> default), known too."""
    model = model or {}
    if name in HPARAMS or name in model:
        return
    known = [*HPARAMS, *model]
    near = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    own = (
        f" (your model's __call__ declares {', '.join(model)})"
        if model
        else " (a hyperparameter of your own model is a keyword argument of its __call__ with a number as default)"
    )
    raise ValueError(f"unknown hyperparameter {name!r} in {where}{hint}; known: {', '.join(known)}{own}")


def normalize(name: str, value: Any) -> Any:
    """Brings a value to its canonical type (ints stay ints, lists become tuples)."""
    if name == "hidden":
        if isinstance(value, int):
            return (value,)
        return tuple(int(w) if isinstance(w, float) and w.is_integer() else w for w in value)
    if name in ("batch_size", "epochs") and isinstance(value, float) and value.is_integer():
        return int(value)
    if (
        (name not in HPARAMS or HPARAMS[name].traced)
        and isinstance(value, int)
        and not isinstance(value, bool)
        and name != "epochs"
    ):
        return float(value)
    return value


def check_value(name: str, value: Any) -> None:
    """Refuses a value outside its range, naming the hyperparameter, the value and the rule.

    A float hyperparameter must be a finite number: inf and nan are refused whatever the rule.

    Examples:
      >>> check_value("learning_rate", float("inf"))
      Traceback (most recent call last):
      ...
      ValueError: learning_rate must be a finite number > 0, but got learning_rate=inf
    """
    hp = HPARAMS.get(name) or HParam(name, None, True, "a number", _real(), "a call hyperparameter of the model")
    if not hp.check(value):
        non_finite = isinstance(value, float) and not math.isfinite(value)
        rule = f"a finite number {hp.rule}" if non_finite else hp.rule
        raise ValueError(f"{name} must be {rule}, but got {name}={value!r}")


def check_values(name: str, values: Any) -> None:
    """Checks every value a space entry can give a trial (one value, or each of a list's), before any is drawn."""
    for value in values:
        check_value(name, normalize(name, value))


def resolve(hparams: Mapping[str, Any], model: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Defaults filled in for every hyperparameter (and the user's model's call hyperparameters, `model`:
    name -> default), each value checked."""
    out = {}
    defaults = {**{name: hp.default for name, hp in HPARAMS.items()}, **(model or {})}
    for name, default in defaults.items():
        value = normalize(name, hparams[name]) if name in hparams else default
        check_value(name, value)
        out[name] = value
    return out
