"""Search-space axes: what values a hyperparameter may take.

An axis is either continuous (`loguniform`, `uniform`), for which a strategy
picks points, or discrete (`choice`, `integer`, `powers_of_two`, a plain list),
whose values it can enumerate. A plain scalar in a space is a fixed value.

Examples:
  >>> from sweeps import space
  >>> lr = space.loguniform(1e-4, 1e-1)
  >>> [float(round(v, 6)) for v in lr.grid(4)]
  [0.0001, 0.001, 0.01, 0.1]
  >>> space.powers_of_two(16, 128).values
  (16, 32, 64, 128)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Float:
    """A continuous axis on [low, high], sampled on a log scale when `log`."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"bounds must be finite, but got (low={self.low}, high={self.high})")
        if not self.low <= self.high:
            raise ValueError(f"`low <= high` must hold, but got (low={self.low}, high={self.high})")
        if self.log and not self.low > 0:
            raise ValueError(f"a log axis needs `low > 0`, but got (low={self.low}, high={self.high})")

    def grid(self, n: int) -> np.ndarray:
        """`n` points from low to high, log-spaced on a log axis."""
        if n == 1:
            return np.array([math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2])
        if self.log:
            return np.geomspace(self.low, self.high, n)
        return np.linspace(self.low, self.high, n)

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def bounds(self) -> tuple[float, float]:
        return self.low, self.high


@dataclasses.dataclass(frozen=True)
class Choice:
    """A discrete axis: one of `values`, enumerated in the order given."""

    values: tuple
    log: bool = False

    def __post_init__(self):
        if len(self.values) == 0:
            raise ValueError("a choice needs at least one value, but got an empty list")

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def bounds(self) -> tuple[Any, Any]:
        return min(self.values), max(self.values)


Axis = Float | Choice


def loguniform(low: float, high: float) -> Float:
    """A continuous axis sampled uniformly in log space (learning rates, decays)."""
    return Float(float(low), float(high), log=True)


def uniform(low: float, high: float) -> Float:
    """A continuous axis sampled uniformly (dropout, momentum)."""
    return Float(float(low), float(high), log=False)


def choice(values) -> Choice:
    """One of the given values (activations, optimizers, hidden layouts)."""
    return Choice(tuple(_freeze(v) for v in values))


def integer(low: int, high: int, log: bool = False) -> Choice:
    """Every integer in [low, high]; `log=True` marks the axis for log plots."""
    if int(low) != low or int(high) != high:
        raise ValueError(f"integer bounds must be whole numbers, but got (low={low}, high={high})")
    if not low <= high:
        raise ValueError(f"`low <= high` must hold, but got (low={low}, high={high})")
    if log and low < 1:
        raise ValueError(f"a log integer axis needs `low >= 1`, but got (low={low}, high={high})")
    return Choice(tuple(range(int(low), int(high) + 1)), log=log)


def powers_of_two(low: int, high: int) -> Choice:
    """Powers of two from low to high inclusive (batch sizes): 16, 32, 64, ..."""
    if not (low >= 1 and high >= low):
        raise ValueError(f"`1 <= low <= high` must hold, but got (low={low}, high={high})")
    values = tuple(2**k for k in range(int(math.ceil(math.log2(low))), int(math.floor(math.log2(high))) + 1))
    if not values:
        raise ValueError(f"no power of two lies in [low={low}, high={high}]")
    return Choice(values, log=True)


def _freeze(value: Any) -> Any:
    """Lists become tuples, so values (e.g. hidden=[64, 64]) can be hashed and grouped."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def as_axis(value: Any) -> Axis:
    """Reads one entry of a user's space: an axis, a list of values, or one fixed value."""
    if isinstance(value, (Float, Choice)):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return choice(list(value))
    return Choice((_freeze(value),))


def as_space(space: Mapping[str, Any] | None) -> dict[str, Axis]:
    """A user's space dict, every value made an axis."""
    if space is None:
        return {}
    if not isinstance(space, Mapping):
        raise TypeError(f"space must be a dict of name -> axis, but got {type(space).__name__}")
    return {str(name): axis_from_config(str(name), value) for name, value in space.items()}


def axis_to_config(axis: Axis) -> Any:
    """The axis as written in a config file: `{"loguniform": [lo, hi]}`, `{"choice": [...]}`, or one value."""
    if isinstance(axis, Float):
        return {"loguniform" if axis.log else "uniform": [axis.low, axis.high]}
    values = [list(v) if isinstance(v, tuple) else v for v in axis.values]
    if len(values) == 1:
        return values[0]
    return {"choice": values, "log": True} if axis.log else {"choice": values}


_AXIS_FORMS = {
    "loguniform": lambda args: loguniform(*args),
    "uniform": lambda args: uniform(*args),
    "choice": lambda args: choice(args),
    "integer": lambda args: integer(*args),
    "powers_of_two": lambda args: powers_of_two(*args),
}


def axis_from_config(name: str, value: Any) -> Axis:
    """Reads an axis written in a config file.

    Forms: `{loguniform = [lo, hi]}`, `{uniform = [lo, hi]}`, `{integer = [lo, hi], log = true}`,
    `{powers_of_two = [lo, hi]}`, `{choice = [...]}`, a list of values, or one value.
    """
    if name == "hidden" and isinstance(value, (list, tuple)) and all(isinstance(w, int) for w in value):
        return Choice((tuple(value),))  # one layout, e.g. hidden = [64, 64]
    if not isinstance(value, Mapping):
        return as_axis(value)
    forms = [key for key in value if key in _AXIS_FORMS]
    extra = set(value) - set(_AXIS_FORMS) - {"log"}
    if len(forms) != 1 or extra:
        raise ValueError(
            f"space entry {name!r} must have exactly one of {sorted(_AXIS_FORMS)} (and optionally log), "
            f"but got keys {sorted(value)}; e.g. {name} = {{loguniform = [1e-4, 1e-1]}}"
        )
    form = forms[0]
    args = value[form]
    if form == "integer":
        return integer(*args, log=bool(value.get("log", False)))
    if form == "choice":
        axis = choice(args)
        return Choice(axis.values, log=bool(value.get("log", False)))
    if not isinstance(args, (list, tuple)) or len(args) != 2:
        raise ValueError(f"space entry {name!r}: {form} needs [low, high], but got {args!r}")
    return _AXIS_FORMS[form](args)
