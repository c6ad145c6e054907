"""Checks of a sweep's run-wide arguments: the rule and the value in every message."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import MLP
from sweeps.engine import NNXNetwork, abstract_nnx, call_signature, class_path, is_nnx_factory, network_of
from sweeps.engine import hparams as registry
from sweeps.engine.metrics import OWN_NAMES, Metric, OwnMetrics, function_path, metric_names
from sweeps.space import Axis, Float

EARLY_STOPPING_KEYS = ("metric", "patience", "min_delta")


def check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, but got {name}={value!r}")


def check_model(model: Any) -> None:
    """Refuses what cannot train: anything but a Flax Linen module or an NNX factory (`is_nnx_factory`), a built
    NNX module (its initial values are drawn: sweeps builds one per member from its own key), the built-in
    `models.MLP` with a field the engine sets itself, or a module whose `__call__` the engine cannot call
    (`call_signature`). A subclass of the MLP is a model of the user's own: it trains as it is, never replaced
    by the built-in one."""
    if isinstance(model, nnx.Module):
        cls = type(model).__qualname__
        raise TypeError(
            f"model={cls}(...) is a built NNX module, whose initial values are already drawn: sweeps builds one per "
            f"member from the trial's own key, so pass what builds it from rngs: model=functools.partial({cls}, "
            f"<its arguments but rngs>), or model=lambda rngs: {cls}(..., rngs=rngs)"
        )
    if is_nnx_factory(model):
        try:
            built = abstract_nnx(model)
        except Exception as e:  # noqa: BLE001 - the user's constructor may raise anything
            raise ValueError(f"model={model!r:.80} could not build a module from rngs=nnx.Rngs(0): {e}") from e
        if not isinstance(built, nnx.Module):
            raise TypeError(f"model={model!r:.80} built {type(built).__name__}, not a flax.nnx.Module")
        call_signature(model)
        return
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a Flax module: a Linen module (e.g. models.MLP(hidden=(64,)) or your own), or what builds "
            f"an NNX module from rngs (its class, or functools.partial(Net, ...)), but got {class_path(model)}: "
            f"{model!r:.80}"
        )
    if type(model) is not MLP:
        call_signature(model)
        return
    carried = ("hidden", "activation", "parent")  # parent: flax's, None for a module made outside another
    for field in dataclasses.fields(MLP):
        value = getattr(model, field.name)
        if field.name not in carried and value != field.default:
            reason = "set from the task (1 output, or one per class)" if field.name == "outputs" else "not used"
            raise ValueError(
                f"model=MLP(..., {field.name}={value!r}): {field.name} is {reason} by the engine, which builds "
                f"the built-in MLP from hidden and activation; leave it out: pass model=MLP(hidden=..., "
                "activation=...), or a module of your own"
            )


def check_space_for_model(space: Mapping[str, Axis], model: Mapping[str, float] | None) -> None:
    """Refuses the built-in MLP's shapes (`hidden`, `activation`) in the space of a sweep of the user's own
    model (`model`: its call hyperparameters; None for the built-in MLP)."""
    if model is None:
        return
    for name in ("hidden", "activation"):
        if name in space:
            raise ValueError(
                f"{name} is in the space, but it shapes only the built-in models.MLP, and this sweep trains your own "
                f"model, whose shapes are its attributes: remove {name} from the space and set your module's own "
                "attributes (a sweep over them is one sweep per module)"
            )


def check_metric(what: str, metric: str, task: str, own: OwnMetrics = ()) -> None:
    """Refuses a metric name the sweep does not record: the task's metrics and the user's (`own`)."""
    valid = metric_names(task, own)
    if metric not in valid:
        raise ValueError(f"{what} {metric!r} is not computed for a {task} task; choose one of {valid}")


def check_loss(loss: Any) -> None:
    """Refuses a `loss` that is neither None (the task's) nor a function (what it returns: `check_code_fits`)."""
    if loss is not None and not callable(loss):
        raise TypeError(
            f"loss must be a function loss(outputs, targets) -> per-example losses (batch,), or None for the task's, "
            f"but got {loss!r:.80}"
        )


def check_metrics(metrics: Any) -> dict[str, Metric]:
    """A user's `metrics={"name": sweeps.Metric(fn, "maximize" | "minimize")}`, checked (what each function returns:
    `check_code_fits`): a plain function (no direction), a name that is not a Python identifier or that is one of
    the task's metrics, are refused with the fix."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f'metrics must be a dict of name -> sweeps.Metric(fn, "maximize" or "minimize"), but got {metrics!r:.80}'
        )
    for name, metric in metrics.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                f"metric name {name!r} is not a Python identifier: it names the columns best_val_<name> and "
                "final_val_<name>; use letters, digits and underscores (e.g. 'f1_score')"
            )
        if name in OWN_NAMES:
            raise ValueError(
                f"metric name {name!r} is one of sweeps' own metrics ({', '.join(sorted(OWN_NAMES))}), recorded as "
                f"val_{name} already: give yours another name (e.g. 'my_{name}')"
            )
        if name.startswith(("val_", "train_", "test_")):
            bare = name.split("_", 1)[1]
            raise ValueError(
                f"metric name {name!r} starts with its split: metrics are recorded as val_<name>, so this one would be "
                f"val_{name}; name it {bare!r} (recorded as val_{bare})"
            )
        if not isinstance(metric, Metric):
            fn = getattr(metric, "__name__", "fn")
            given = f"the plain function {fn}" if callable(metric) else repr(metric)[:80]
            raise ValueError(
                f"metrics[{name!r}] is {given}, not a sweeps.Metric: sweeps needs to know which way it is "
                f'better (to pick best epochs, trials and kept models): pass sweeps.Metric({fn}, "maximize") or '
                f'sweeps.Metric({fn}, "minimize")'
            )
    return dict(metrics)


def check_early_stopping(early_stopping, task: str | None = None, own: OwnMetrics = ()) -> dict | None:
    """Early stopping's settings with their defaults filled in; the metric is checked against `task` (and the user's
    metrics, `own`) when given."""
    if early_stopping is None or early_stopping is False:
        return None
    if not isinstance(early_stopping, Mapping):
        raise TypeError(
            f"early_stopping must be a dict like {{'metric': 'val_loss', 'patience': 5}}, but got {early_stopping!r}"
        )
    unknown = set(early_stopping) - set(EARLY_STOPPING_KEYS)
    if unknown:
        raise ValueError(f"unknown early_stopping keys {sorted(unknown)}; known: {list(EARLY_STOPPING_KEYS)}")
    stop = {"metric": "val_loss", "patience": 5, "min_delta": 0.0, **early_stopping}
    if task is not None:
        check_metric("early_stopping metric", stop["metric"], task, own)
    check_int("early_stopping patience", stop["patience"], 1)
    if not (isinstance(stop["min_delta"], (int, float)) and stop["min_delta"] >= 0):
        raise ValueError(f"early_stopping min_delta must be >= 0, but got {stop['min_delta']!r}")
    stop["min_delta"] = float(stop["min_delta"])
    return stop


def check_reads(space: Mapping[str, Axis], trials: list, model: Mapping[str, float] | None = None) -> None:
    """Refuses a swept hyperparameter no trial (`planning.Trial`) reads; warns about a fixed one that is ignored.

    `model`: the call hyperparameters of the user's model (name -> default), None for the built-in MLP."""
    kinds = {(t.hparams["optimizer"], t.hparams["schedule"]): t.hparams for t in trials}  # what a trial reads
    used = set().union(*(registry.reads(hparams, model) for hparams in kinds.values()))
    for name, axis in space.items():
        if name in used:
            continue
        swept = isinstance(axis, Float) or len(axis.values) > 1
        if model is not None and name not in registry.CONDITIONAL:  # the user's model does not declare it
            message = (
                f"{name} is set but your model does not read it: its __call__ declares the call hyperparameters "
                f"{', '.join(model) or '(none)'}"
            )
            if swept:
                raise ValueError(
                    f"{message}; add `{name}: float = ...` as a keyword argument of __call__ and use it, or remove "
                    f"{name} from the space"
                )
            warnings.warn(f"{message}: its value is ignored", UserWarning, stacklevel=4)
            continue
        optimizers = sorted({optimizer for optimizer, _ in kinds})
        schedules = sorted({schedule for _, schedule in kinds})
        read = sorted(used & set(registry.CONDITIONAL))
        message = (
            f"{name} is set but no trial reads it: optimizer {', '.join(optimizers)} with schedule "
            f"{', '.join(schedules)} reads {', '.join(read) or 'none of the optional ones'} besides learning_rate; "
            f"{name} is read by {', '.join(registry.readers(name))}"
        )
        if swept:
            raise ValueError(f"{message}: remove it from the space, or sweep an optimizer or schedule that reads it")
        warnings.warn(f"{message}: its value is ignored", UserWarning, stacklevel=4)


CALLED_WITH = (
    "it is called with one member's raw model outputs (rows, outputs) and the targets (rows,) as the model trains on "
    "them"
)
TRACER_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)
TASK_OUTPUTS = {"binary": "one logit per row", "multiclass": "one logit per class", "regression": "one value per row"}


def check_model_fits(module: nn.Module | None, data) -> Any:
    """Refuses a model that cannot train on `data`, before anything compiles: the built-in MLP on rows that are not
    flat feature vectors; a user's module (traced with `jax.eval_shape`, two members under `jax.vmap` in
    training mode as the epoch runs them) that does not take the rows' shape, turns a traced value into a
    Python one, keeps variables besides its parameters (batch statistics), or whose output does not fit
    the task. Returns the dtype of the model's outputs (what a user's loss and metrics receive)."""
    shape = tuple(data.x_train.shape[1:])
    if module is None:
        if len(shape) != 1:
            raise ValueError(
                f"the built-in models.MLP takes rows of features (rows, features), but the data's rows have shape "
                f"{shape}: pass a model of your own that takes them (a CNN, say), or flatten x with "
                "x.reshape(len(x), -1)"
            )
        return jnp.dtype(jnp.float32)
    network = network_of(module, shape)
    name = class_path(module)
    hp = {n: jnp.zeros((2,), jnp.float32) for n in network.call_hparams} | {"init_scale": jnp.ones((2,), jnp.float32)}
    keys = jax.ShapeDtypeStruct((2, 2), jnp.uint32)
    rows = jax.ShapeDtypeStruct((3, *shape), jnp.float32)

    traced = functools.partial(
        _shapes_of,
        f"model {name}",
        f"cannot take the data's rows: called on a batch of shape {(3, *shape)} (rows of shape {shape}) it failed",
        "make its first layer take that shape, or give the data in the shape the model takes",
        advice=" and pass numbers that change per member as call hyperparameters",
    )

    def linen_init(keys, hp, x):
        return jax.vmap(lambda k, h: module.init(k, x[:1], **network.call_kwargs(h, train=False)))(keys, hp)

    def init(keys, hp):
        return jax.vmap(network.init)(keys, hp)

    def train(params, hp, keys, x):
        return jax.vmap(lambda p, h, k: network.apply(p, x, h, train=True, key=k))(params, hp, keys)

    if isinstance(network, NNXNetwork):
        kinds = sorted({type(v).__name__ for v in jax.tree.leaves(network.parts[2], is_leaf=_is_variable)})
        if kinds:
            raise ValueError(
                f"model {name} keeps state besides its nnx.Param: {', '.join(kinds)} (BatchStat: nnx.BatchNorm; "
                "RngKey, RngCount: a layer built with rngs=, such as nnx.Dropout(rate, rngs=rngs)): sweeps trains "
                "parameters only and gives each member its own dropout key when it calls the model; use "
                "nnx.LayerNorm, build nnx.Dropout(rate) without rngs, give __call__ an argument `rngs=None` and call "
                "the dropout with rngs=rngs"
            )
    else:
        variables = traced(linen_init, keys, hp, rows)
        others = sorted(set(variables) - {"params"})
        if others:
            raise ValueError(
                f"model {name} keeps the variable collection(s) {others} besides its parameters (nn.BatchNorm "
                "keeps running statistics in 'batch_stats'): sweeps trains parameters only; use nn.LayerNorm or "
                "nn.GroupNorm"
            )
    params = traced(init, keys, hp)
    outputs = traced(train, params, hp, keys, rows)
    want = (2, 3, data.n_outputs)
    if outputs.shape != want:
        raise ValueError(
            f"model {name} outputs shape {outputs.shape[1:]} for a batch of 3 rows, but a {data.task} task with "
            f"{data.n_outputs} output{'s' * (data.n_outputs != 1)} needs {want[1:]} ({TASK_OUTPUTS[data.task]}): "
            f"make its last layer nn.Dense({data.n_outputs})"
        )
    return outputs.dtype


LOSS_ROWS = 3  # the minibatch a user's loss is traced on (`check_code_fits`)


def check_code_fits(loss: Callable | None, own: OwnMetrics, data, dtype: Any = jnp.float32) -> None:
    """Refuses a user's loss or metric that does not fit, before anything compiles: each is traced with
    `jax.eval_shape` on one member's outputs as the epoch gives them (`dtype`: the model's, `check_model_fits`)
    and the targets: the loss on a minibatch of LOSS_ROWS rows must return per-example losses (LOSS_ROWS,) of a
    float dtype, a metric on the validation split's rows one number ()."""
    y_dtype = jax.dtypes.canonicalize_dtype(data.y_val.dtype)

    def shapes(n: int) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
        return jax.ShapeDtypeStruct((n, data.n_outputs), dtype), jax.ShapeDtypeStruct((n,), y_dtype)

    def given(n: int) -> str:
        outputs, y = shapes(n)
        return f"outputs {outputs.shape} {outputs.dtype} and targets {y.shape} {y.dtype}"

    if loss is not None:
        what = f"loss {function_path(loss)}"
        got = _shapes_of(what, f"fails on {given(LOSS_ROWS)}", CALLED_WITH, loss, *shapes(LOSS_ROWS))
        if not _is_array(got) or got.shape != (LOSS_ROWS,) or not jnp.issubdtype(got.dtype, jnp.floating):
            raise ValueError(
                f"{what} returns {_described(got)} for {given(LOSS_ROWS)} (a minibatch of {LOSS_ROWS} rows), but a "
                f"loss returns one float per row, shape ({LOSS_ROWS},): sweeps weights them by the minibatch's row "
                "weights and averages them itself; return the per-example losses, not their mean"
            )
    n = int(data.y_val.shape[0])
    for name, fn, _ in own:
        what = f"metric {name!r} ({function_path(fn)})"
        got = _shapes_of(what, f"fails on {given(n)}", CALLED_WITH, fn, *shapes(n))
        if not _is_array(got) or got.shape != () or not jnp.issubdtype(got.dtype, jnp.number):
            raise ValueError(
                f"{what} returns {_described(got)} for the validation split's {given(n)}, but a metric returns one "
                "number per member, shape (): reduce it over the rows (e.g. jnp.mean(...))"
            )


def _is_array(value: Any) -> bool:
    return isinstance(value, jax.ShapeDtypeStruct)


def _described(value: Any) -> str:
    if _is_array(value):
        return f"shape {value.shape} {value.dtype}"
    return f"{type(value).__name__} {jax.tree.map(lambda a: a.shape, value)!r:.120}"


def _is_variable(leaf: Any) -> bool:
    return isinstance(leaf, nnx.Variable)


def _shapes_of(what: str, failed: str, fix: str, fn: Callable, *args, advice: str = "") -> Any:
    """`jax.eval_shape(fn, *args)` of the user's model, loss or metric (`what`), its failures said in the user's
    words: a traced value made a Python one (`advice` added to the fix), a random stream sweeps does not give,
    or anything else: `{what} {failed} (the error); {fix}`."""
    try:
        return jax.eval_shape(fn, *args)
    except TRACER_ERRORS as e:
        raise ValueError(
            f"{what} cannot be traced: it turns a traced array into a Python value ({_first_line(e, 200)}); it runs "
            f"inside the compiled epoch under jax.vmap, so keep the computation in jax.numpy (jnp.where, not `if`)"
            f"{advice}"
        ) from e
    except flax.errors.InvalidRngError as e:
        raise ValueError(
            f"{what} asks for a random stream sweeps does not give ({str(e).split(' (https')[0]}): each member "
            "gets its own 'dropout' stream (its trial's keys); draw from self.make_rng('dropout') (Linen), or from "
            "the `rngs` argument of __call__ (NNX)"
        ) from e
    except Exception as e:  # noqa: BLE001 - flax, XLA and the user's code raise many kinds
        raise ValueError(f"{what} {failed} ({_first_line(e, 300)}); {fix}") from e


def _first_line(error: Exception, limit: int) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0][:limit] if str(error) else ''}"
