"""The network one member trains: the built-in MLP in its fast layout, or the user's own Flax model.

A `Network` is what the engine asks of a model, in four pure functions: `init` one member's parameters
from its key, `apply` them to a minibatch (training) or to rows (evaluation), and convert between the
population's layout and the module's own (`stored`, `own_layout`). The epoch vmaps them over the
population, so a user's module needs nothing from sweepax beyond being a Flax module:

- its attributes fix shapes and so belong to the structure key (members that differ there train in
  different programs, as the MLP's `hidden` does);
- a keyword argument of its `__call__` with a number as default (a dropout rate, a stochastic-depth
  rate) is a *call hyperparameter*: the space may sweep it, and each member receives its own value as
  a traced () float32 array (`call_hparams`);
- a keyword argument named `train` or `training` receives True while training and False when
  evaluating, `deterministic` the opposite; the 'dropout' rng stream is always given (an NNX module takes
  its key as a `rngs` argument).

A Linen module is given as itself; an NNX module as what builds it from `rngs` (its class, or
`functools.partial(Net, ...)`: `NNXNetwork`), so that each member is built from its own key. Only the
parameters train: a module with other variables (`nn.BatchNorm`'s `batch_stats`, NNX's `BatchStat` or random
state) is refused before anything compiles (`sweeps.planning.checks.check_model_fits`), as is one whose output
does not fit the task.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from models import MLP

# A `__call__` keyword the engine sets to say "training" (True) or "evaluating" (False), and the value it
# gets while training; evaluation gets the opposite.
TRAIN_FLAGS = {"train": True, "training": True, "deterministic": False}
EVAL_KEY = 0  # the 'dropout' key evaluation passes (a deterministic module never draws from it)


@functools.cache
def call_signature(module: Any) -> tuple[tuple[tuple[str, float], ...], str | None]:
    """What a user's module's `__call__` takes besides its input: its call hyperparameters as
    ((name, default), ...) in signature order, and its train flag's name (or None). `module`: a Linen module,
    or a function of `rngs` that builds an NNX module (`is_nnx_factory`). An argument named `rngs` is where an
    NNX module takes its dropout key (`NNXNetwork`): neither a flag nor a hyperparameter.

    Raises:
      TypeError: a parameter past the input has no default, or a default that is neither a number nor a
        bool (the engine could not give it a value per member).

    Examples:
      >>> class Net(nn.Module):
      ...     def __call__(self, x, *, train=False, drop_rate=0.1):
      ...         return x
      >>> call_signature(Net())
      ((('drop_rate', 0.1),), 'train')
    """
    cls = type(abstract_nnx(module)) if is_nnx_factory(module) else type(module)
    parameters = list(inspect.signature(cls.__call__).parameters.values())[1:]  # past self
    if not parameters or parameters[0].kind not in (parameters[0].POSITIONAL_ONLY, parameters[0].POSITIONAL_OR_KEYWORD):
        raise TypeError(
            f"{class_path(module)}.__call__ must take the input rows as its first argument: __call__(self, x)"
        )
    hparams, flag = [], None
    for p in parameters[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "rngs":
            continue
        if p.name in TRAIN_FLAGS:
            flag = p.name
        elif isinstance(p.default, numbers.Real) and not isinstance(p.default, bool):
            hparams.append((p.name, float(p.default)))
        else:
            got = "no default" if p.default is p.empty else f"the default {p.default!r}"
            raise TypeError(
                f"{class_path(module)}.__call__ takes {p.name!r} with {got}: sweeps calls the model with its input, "
                f"a train flag ({', '.join(TRAIN_FLAGS)}) and call hyperparameters, each a keyword with a number as "
                f"default (a traced value per member); give {p.name!r} a number as default, or make it an attribute "
                "of the module"
            )
    return tuple(hparams), flag


def class_path(module: Any) -> str:
    """`package.module.Class` of a model (of the class an NNX factory builds), for messages."""
    cls = nnx_class(module) if is_nnx_factory(module) else type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def is_nnx_factory(model: Any) -> bool:
    """Whether `model` is how sweeps takes an NNX model: a class of `flax.nnx.Module`, or a function (e.g.
    `functools.partial(Net, din, dout)`, a lambda) that builds one from `rngs=`; not a built module, whose
    initial values are already drawn (`sweeps.planning.checks.check_model` says so)."""
    if isinstance(model, type):
        return issubclass(model, nnx.Module)
    return callable(model) and not isinstance(model, nn.Module | nnx.Module)


@functools.cache
def abstract_nnx(factory: Any) -> nnx.Module:
    """The NNX module `factory` builds, its arrays as shapes only (`nnx.eval_shape`: nothing is computed)."""
    return nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(0)))


def nnx_class(factory: Any) -> type:
    """The class an NNX factory builds."""
    if isinstance(factory, type):
        return factory
    if isinstance(factory, functools.partial) and isinstance(factory.func, type):
        return factory.func
    return type(abstract_nnx(factory))


@dataclasses.dataclass(frozen=True)
class Network:
    """One member's model as the engine trains it (hashable: part of a structure's key).

    Attributes:
      module: the Flax module; for the built-in MLP, with its head's width set from the task.
      input_shape: one row's shape, e.g. (features,) or (H, W, C).
      builtin: the built-in MLP: kernels stored transposed (`stored`), its dropout
        rate from the `dropout` hyperparameter, dropout drawn only where `dropout` says a member uses it.
      dropout: built-in only: whether the program draws dropout masks at all.
    """

    module: nn.Module
    input_shape: tuple[int, ...]
    builtin: bool = True
    dropout: bool = False

    @functools.cached_property
    def signature(self) -> tuple[tuple[tuple[str, float], ...], str | None]:
        return ((("dropout", 0.0),), None) if self.builtin else call_signature(self.module)

    @property
    def call_hparams(self) -> tuple[str, ...]:
        """The hyperparameters the module reads when called: one traced value per member."""
        return tuple(name for name, _ in self.signature[0])

    def init(self, key: jax.Array, hp: dict[str, jax.Array]) -> Any:
        """One member's parameters in the population's layout, scaled by its `init_scale`."""
        rows = jnp.zeros((1, *self.input_shape), jnp.float32)
        if self.builtin:
            tree = self.module.init(key, rows, **self.widths(hp))["params"]
        else:
            tree = self.module.init(key, rows, **self.call_kwargs(hp, train=False))["params"]
        return self.stored(jax.tree.map(lambda leaf: leaf * hp["init_scale"], tree))

    def apply(
        self, params: Any, x: jax.Array, hp: dict[str, jax.Array], *, train: bool, key: jax.Array | None = None
    ) -> jax.Array:
        """One member's outputs (batch, outputs) on rows `x` (batch, *input_shape); `key`: the member's dropout
        key while training (evaluation passes a fixed one, which a deterministic module never draws from)."""
        variables = {"params": self.own_layout(params)}
        if self.builtin:
            if not train:
                return self.module.apply(variables, x, **self.widths(hp))
            rngs = {"dropout": key} if self.dropout else {}  # a program without dropout draws no mask
            return self.module.apply(variables, x, hp["dropout"], not self.dropout, **self.widths(hp), rngs=rngs)
        key = jax.random.PRNGKey(EVAL_KEY) if key is None else key
        return self.module.apply(variables, x, **self.call_kwargs(hp, train), rngs={"dropout": key})

    def param_shapes(self) -> Any:
        """One member's parameter tree in the module's own layout as `jax.ShapeDtypeStruct`s (nothing runs)."""
        key = jax.ShapeDtypeStruct((2,), jnp.uint32)
        hp = {"init_scale": jax.ShapeDtypeStruct((), jnp.float32), **self.shape_hparams()}
        return jax.eval_shape(lambda key, hp: self.own_layout(self.init(key, hp)), key, hp)

    def layers(self) -> list[Any]:
        """The matrix products and convolutions of one row's forward (jaxpr equations, inner jaxprs included,
        in order): `jax.make_jaxpr` traces, nothing is computed. What estimates of activation memory and FLOPs
        read a user's model from."""
        hp = {name: jax.ShapeDtypeStruct((), jnp.float32) for name in self.call_hparams} | self.shape_hparams()
        rows = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
        params = jax.eval_shape(self.stored, self.param_shapes())
        traced = jax.make_jaxpr(lambda p, h, x: self.apply(p, x, h, train=False))(params, hp, rows)
        return list(_layer_equations(traced.jaxpr))

    @property
    def padded(self) -> bool:
        """Whether members of different widths and depths share this network, each passing its own widths (the
        built-in MLP with `min_depth`: `MLP`): the population then holds them as the traced `hidden`."""
        return self.builtin and self.module.min_depth is not None

    def shape_hparams(self) -> dict[str, jax.ShapeDtypeStruct]:
        """What a member holds besides its hyperparameters to say its own shape: in a padded network, its
        widths `hidden` (len(module.hidden),) int32, zero past its depth."""
        return {"hidden": jax.ShapeDtypeStruct((len(self.module.hidden),), jnp.int32)} if self.padded else {}

    def widths(self, hp: Mapping[str, Any]) -> dict[str, Any]:
        """The built-in MLP's `widths` argument for a member: its own widths where the network is padded."""
        return {"widths": hp["hidden"]} if self.padded else {}

    def call_kwargs(self, hp: dict[str, Any], train: bool) -> dict[str, Any]:
        """The keywords a user's module is called with: its call hyperparameters (a member's values from `hp`,
        else their defaults) and its train flag."""
        hparams, flag = self.signature
        kwargs = {name: hp[name] if name in hp else default for name, default in hparams}
        if flag is not None:
            kwargs[flag] = TRAIN_FLAGS[flag] if train else not TRAIN_FLAGS[flag]
        return kwargs

    def stored(self, tree: Any) -> Any:
        """A parameter tree in the module's layout -> the population's (the built-in MLP's kernels (out, in)).

        Works on trees with leading (trial) axes and on numpy arrays alike; a user's module keeps its own."""
        return stored(tree) if self.builtin else tree

    def own_layout(self, tree: Any) -> Any:
        """The population's parameter tree as the module takes it (`stored`'s inverse)."""
        return self.stored(tree)  # swapping the last two axes is its own inverse

    def label(self) -> str:
        """`hidden=[64] relu` for the built-in MLP; the class and attributes of a user's module, `CNN(width=8)`."""
        if self.padded:
            depth = len(self.module.hidden)
            depths = f"depth {self.module.min_depth}-{depth}" if self.module.min_depth < depth else f"depth {depth}"
            return f"hidden<={list(self.module.hidden)} {self.module.activation} (padded: {depths})"
        if self.builtin:
            return f"hidden={list(self.module.hidden)} {self.module.activation}"
        fields = [f for f in dataclasses.fields(self.module) if f.name not in ("parent", "name")]
        return (
            f"{type(self.module).__name__}({', '.join(f'{f.name}={getattr(self.module, f.name)!r}' for f in fields)})"
        )


@dataclasses.dataclass(frozen=True)
class NNXNetwork(Network):
    """A user's Flax NNX model: `module` is the function that builds it from `rngs` (`is_nnx_factory`).

    Each member is built from its own key (`factory(rngs=nnx.Rngs(key))` under `jax.vmap`, as NNX's ensemble
    pattern does) and its `nnx.Param` state kept as a plain dict of arrays (`nnx.to_pure_dict`); a call merges
    it into the module's graph again (`nnx.merge`). The dropout key reaches the module through a `rngs`
    argument of its `__call__` (`nnx.Dropout(rate)` built without rngs, called with `rngs=rngs`): a module
    that keeps random state or batch statistics is refused before anything compiles.
    """

    builtin: bool = False

    @functools.cached_property
    def parts(self) -> tuple[Any, Any, Any]:
        """(graph definition, the `nnx.Param` state's shapes, every other state's)."""
        return nnx.split(abstract_nnx(self.module), nnx.Param, ...)

    def init(self, key: jax.Array, hp: dict[str, jax.Array]) -> Any:
        params = nnx.to_pure_dict(nnx.state(self.module(rngs=nnx.Rngs(key)), nnx.Param))
        return jax.tree.map(lambda leaf: leaf * hp["init_scale"], params)

    def apply(
        self, params: Any, x: jax.Array, hp: dict[str, jax.Array], *, train: bool, key: jax.Array | None = None
    ) -> jax.Array:
        graphdef, shapes, rest = self.parts
        state = jax.tree.map(lambda leaf: leaf, shapes)  # a copy: replace_by_pure_dict fills it in place
        nnx.replace_by_pure_dict(state, params)
        model = nnx.merge(graphdef, state, rest)
        kwargs = self.call_kwargs(hp, train)
        if self.takes_rngs:
            kwargs["rngs"] = jax.random.PRNGKey(EVAL_KEY) if key is None else key
        return model(x, **kwargs)

    @functools.cached_property
    def takes_rngs(self) -> bool:
        """Whether the module's `__call__` takes its dropout key (`rngs`)."""
        return "rngs" in inspect.signature(type(abstract_nnx(self.module)).__call__).parameters

    def stored(self, tree: Any) -> Any:
        return tree

    def label(self) -> str:
        factory = self.module
        if isinstance(factory, functools.partial):
            given = [*map(repr, factory.args), *(f"{k}={v!r}" for k, v in factory.keywords.items())]
            return f"{nnx_class(factory).__name__}({', '.join(given)})"
        return f"{nnx_class(factory).__name__}(...)"


def network_of(model: Any, input_shape: tuple[int, ...]) -> Network:
    """The network of a user's model (a Linen module, or an NNX factory) on rows of `input_shape`."""
    if is_nnx_factory(model):
        return NNXNetwork(model, input_shape)
    return Network(model, input_shape, builtin=False)


def model_record(model: Any) -> dict[str, Any]:
    """The model as config.json and models.json record it: the built-in MLP's hidden and activation; a Linen
    module's class (`package.module:Class`) and attributes (their repr where JSON cannot hold them); an NNX
    factory's class, its arguments (`positional`, `args`: a `functools.partial`'s, none for a class; None for
    another function, which no record can rebuild) and `"api": "nnx"`."""
    if type(model) is MLP:  # exactly the built-in one: a subclass is a model of the user's own
        return {"hidden": list(model.hidden), "activation": model.activation}
    if is_nnx_factory(model):
        cls = nnx_class(model)
        if isinstance(model, functools.partial):
            positional, args = [jsonable(v) for v in model.args], {k: jsonable(v) for k, v in model.keywords.items()}
        else:
            positional, args = ([], {}) if isinstance(model, type) else (None, None)
        extra = {"positional": positional, "api": "nnx"}
    else:
        cls = type(model)
        fields = [f.name for f in dataclasses.fields(model) if f.name not in ("parent", "name")]
        args, extra = {name: jsonable(getattr(model, name)) for name in fields}, {}
    return {
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "args": args,
        "call_hparams": dict(call_signature(model)[0]),
        **extra,
    }


def jsonable(value: Any) -> Any:
    """`value` as JSON holds it: numbers, strings, None, lists and dicts of them; anything else as its repr."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    return repr(value)


def stored(flax_params: Any) -> Any:
    """The built-in MLP's parameter tree in the population's layout: every dense kernel transposed to (out, in)
    (`Network.stored` for any network).

    The model's layers (`models.mlp.Dense`, features first) multiply by a kernel in this layout as
    it is stored, and the weight gradient of the whole population comes out of one matrix product
    in it, so the optimizer updates it in streaming passes and the step has no transposes (flax's
    (in, out) made each of Adam's passes read the gradient transposed; benchmarks/README.md,
    "Issue 13"). Leading axes (the trial axis) are kept; `flax_layout` is the inverse. Works on jax
    and numpy arrays alike.
    """
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: leaf.swapaxes(-1, -2) if path[-1].key == "kernel" else leaf, flax_params
    )


def flax_layout(params: Any) -> Any:
    """The population's parameter tree (`stored`) as flax's modules take it: kernels (in, out)."""
    return stored(params)  # swapping the last two axes is its own inverse


LAYER_PRIMITIVES = ("dot_general", "conv_general_dilated")


def _layer_equations(jaxpr) -> Iterator[Any]:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in LAYER_PRIMITIVES:
            yield eqn
        for value in eqn.params.values():
            for inner in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(inner, "jaxpr", inner)
                if hasattr(inner, "eqns"):
                    yield from _layer_equations(inner)


def builtin_network(
    hidden: tuple[int, ...],
    activation: str,
    n_features: int,
    n_outputs: int,
    dropout: bool,
    min_depth: int | None = None,
):
    """The built-in MLP's network; `min_depth`: the padded network of members of different widths and depths
    (`MLP`)."""
    mlp = MLP(hidden=hidden, activation=activation, outputs=n_outputs, min_depth=min_depth)
    return Network(mlp, (n_features,), True, dropout)


def n_values(shapes: Any) -> int:
    """Numbers in a tree of shapes."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
