"""Your own Flax model named on the command line: `package.module:Class` and its attributes.

A Linen class is built with its attributes, `Class(**args)`; an NNX class becomes what builds it from `rngs`,
`functools.partial(Class, **args)` (sweeps builds one per member from its trial's key, as
`sweeps.run(model=functools.partial(...))` does).

A config file's `[model] class` (with the attributes under `[model.args]`), or a `--model` option of
`sweeps resume` and `sweeps predict`, names a module class by import path. Sweeps imports it only because
the user named it: `sweeps run FILE` imports the class the user's config file names; a run folder's
record of a class is compared with what the user names, never imported (design item 11): `sweeps resume`
and `sweeps predict` find a class among the modules this process has already imported (sweepax's own
`models`), else ask for `--model`.

The module is looked up as Python looks it up, with the working directory searched first (as `python -m`
does): `class = "mynets:Net"` finds `mynets.py` in the folder the command runs in.

Examples:
  >>> from sweeps.cli.model_class import build_module, import_class, split_class_path
  >>> split_class_path("models.cnn:CNN", "[model] class")
  ('models.cnn', 'CNN')
  >>> build_module(import_class("models.cnn:CNN", "[model] class"), {"channels": [8, 16]}, "[model.args]").channels
  (8, 16)
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import importlib
import inspect
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import flax.linen as nn

FLAX_FIELDS = ("parent", "name")  # every Linen module's own dataclass fields, never the user's attributes


def split_class_path(text: Any, where: str) -> tuple[str, str]:
    """`package.module:Class` -> ("package.module", "Class"), or a ValueError naming `where` it was written.

    A dotted qualname after the colon (`nets:Outer.Inner`) names a nested class."""
    example = 'e.g. "models.cnn:CNN" or "mynets:Net" (mynets.py in the working directory)'
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where} must name a class as 'package.module:Class', {example}, but got {text!r}")
    module, sep, qualname = text.strip().partition(":")
    if not sep:
        dotted = text.rpartition(".")
        hint = f"; did you mean {dotted[0] + ':' + dotted[2]!r}?" if dotted[1] else ""
        raise ValueError(
            f"{where} = {text!r} has no ':' between the module and the class{hint} a model class is named "
            f"'package.module:Class', {example}"
        )
    identifiers = module.split(".") + qualname.split(".")
    if not all(part.isidentifier() for part in identifiers):
        raise ValueError(f"{where} = {text!r} is not 'package.module:Class' (Python names around one ':'), {example}")
    return module, qualname


def imported_class(text: str) -> type | None:
    """The class `package.module:Class` names, when this process has already imported its module; else None.

    Never imports anything: this is how a class recorded in a run folder is found."""
    module, _, qualname = str(text).partition(":")
    owner = sys.modules.get(module)
    if owner is None:
        return None
    cls = functools.reduce(lambda obj, part: getattr(obj, part, None), qualname.split("."), owner)
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


def import_class(text: Any, where: str) -> type[nn.Module]:
    """Imports the Flax module class (Linen or NNX) `text` names (`package.module:Class`), because the user named it.

    Args:
      text: the class path as the user wrote it.
      where: where it was written, for messages (`[model] class in sweep.toml`, `--model`).

    Raises:
      ValueError: the name is not 'package.module:Class', its module cannot be imported (not found, or it
        raised while importing: the error is named), or the module has no such attribute.
      TypeError: the name is not a subclass of flax.linen.Module or flax.nnx.Module.
    """
    module_name, qualname = split_class_path(text, where)
    importlib.invalidate_caches()  # a module written since this process started is found too
    try:
        with _working_directory_importable():
            owner = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and module_name.startswith(e.name) and module_name[len(e.name) :][:1] in ("", "."):
            raise ValueError(
                f"{where} names {text!r}, but its module {module_name!r} cannot be imported (no module named "
                f"{e.name!r} in the working directory {os.getcwd()} or on the Python path); run sweeps from the "
                "folder that holds it, add its folder to PYTHONPATH, or pip install its package"
            ) from e
        raise ValueError(
            f"importing {module_name!r} ({where}) failed: it imports {e.name!r}, which is not installed ({e}); "
            "install it, or fix the module"
        ) from e
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything while it is imported
        raise ValueError(
            f"importing {module_name!r} ({where}) failed with {type(e).__name__}: {e}; fix the module "
            "(--verbose shows the traceback)"
        ) from e
    cls = functools.reduce(lambda obj, part: getattr(obj, part, None), qualname.split("."), owner)
    if cls is None:
        found = _module_classes(owner)
        near = difflib.get_close_matches(qualname, found, n=1, cutoff=0.5)
        hint = f"; did you mean {module_name}:{near[0]}?" if near else ""
        listed = f"its Flax modules: {', '.join(found)}" if found else "it defines no Flax Linen module"
        raise ValueError(f"{where}: module {module_name!r} has no {qualname!r}{hint} ({listed})")
    if not (isinstance(cls, type) and (issubclass(cls, nn.Module) or _is_nnx(cls))):
        what = f"a {type(cls).__name__}" if not isinstance(cls, type) else "a class, but not a Flax module"
        raise TypeError(
            f"{where} names {text!r}, which is {what}: name a subclass of flax.linen.Module or flax.nnx.Module, the "
            "model every trial trains"
        )
    return cls


def build_module(cls: type, args: Mapping[str, Any], where: str) -> Any:
    """`cls(**args)` for a Linen class, `functools.partial(cls, **args)` for an NNX class (built once here, shapes
    only, so that a bad argument is refused now), the attributes as a config file or JSON gives them: a list
    becomes a tuple (Flax modules are hashed, and a tuple is what a kept model's record turns back into).

    Raises:
      ValueError: an argument that is not one of the class's attributes (with the nearest one and the list),
        or the constructor refused the values (its message, and the attributes with their defaults).
    """
    if not isinstance(args, Mapping):
        raise ValueError(f"{where} must be a table of the class's attributes, like {{channels = [16, 32]}}")
    attributes = attribute_defaults(cls)
    listing = ", ".join(f"{k}={_shown(v)}" for k, v in attributes.items()) or "none"
    for name in args:
        if name not in attributes:
            near = difflib.get_close_matches(name, list(attributes), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(
                f"{where}: {_label(cls)} has no attribute {name!r}{hint} its attributes (and defaults): {listing}"
            )
    try:
        given = {name: _tuples(value) for name, value in args.items()}
        if _is_nnx(cls):
            from sweeps.engine import abstract_nnx

            abstract_nnx(functools.partial(cls, **given))  # its constructor runs on shapes: nothing is computed
            return functools.partial(cls, **given)
        return cls(**given)
    except Exception as e:  # noqa: BLE001 - the user's constructor may raise anything
        missing = [k for k, v in attributes.items() if v is _REQUIRED and k not in args]
        need = f"; give {', '.join(missing)} (no default)" if missing else ""
        raise ValueError(
            f"{where}: {_label(cls)}(**{dict(args)}) failed with {type(e).__name__}: {e}{need}; its attributes "
            f"(and defaults): {listing}"
        ) from e


_REQUIRED = inspect.Parameter.empty


def attribute_defaults(cls: type) -> dict[str, Any]:
    """A Linen module class's own attributes (dataclass fields, Flax's `parent` and `name` left out) -> default;
    an NNX class's constructor arguments but `rngs`."""
    if _is_nnx(cls):
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        return {
            p.name: p.default
            for p in parameters
            if p.name != "rngs" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
    out = {}
    for field in dataclasses.fields(cls):
        if field.name in FLAX_FIELDS or not field.init:
            continue
        if field.default is not dataclasses.MISSING:
            out[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            out[field.name] = field.default_factory()
        else:
            out[field.name] = _REQUIRED
    return out


def _tuples(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


def _shown(value: Any) -> str:
    return "(required)" if value is _REQUIRED else repr(value)


def _label(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _module_classes(owner: Any) -> list[str]:
    """The Linen module classes a module defines (for a message)."""
    return sorted(
        name
        for name, value in vars(owner).items()
        if isinstance(value, type) and issubclass(value, nn.Module) and value.__module__ == owner.__name__
    )


def _is_nnx(value: Any) -> bool:
    try:
        from flax import nnx
    except ImportError:
        return False
    return isinstance(value, type) and issubclass(value, nnx.Module)


@contextlib.contextmanager
def _working_directory_importable() -> Iterator[None]:
    """The working directory first on the import path while a named module is imported (as `python -m` has it);
    the `sweeps` console script otherwise starts without it."""
    cwd = os.getcwd()
    present = any(os.path.abspath(p or ".") == cwd for p in sys.path)
    if not present:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if not present:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)
