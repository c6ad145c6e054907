"""Compilations counted from JAX's own record of them, not from a counter in the library.

JAX reports every XLA compilation as a `/jax/core/compile/backend_compile_duration`
monitoring event with the compiled function's name. `compile_log()` listens
for those events while it is open: the sweep reports how many programs it
compiled and how long that took, and tests assert that a second sweep of the
same structure compiles nothing.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> with compile_log() as log:
  ...     _ = jax.jit(lambda x: x * 2.0)(jnp.ones(3))
  >>> log.count() >= 1
  True
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

# On a CPU: LLVM at -O1 and XLA's elemental fusion emitters instead of its MLIR ones. XLA's defaults
# spend a first run's compile on work these small programs do not gain from (benchmarks/README.md,
# "Issue 13", items 11 and 12). And no YNNPACK fusions: the population's skinny matrix products
# ((members x 64, 45) by (45, batch) and back) ran slower in them than in XLA's own dot (item 15 there,
# `python benchmarks/compiler_options.py --drop xla_cpu_experimental_ynn_fusion_type`).
CPU_COMPILER_OPTIONS = {
    "xla_backend_optimization_level": 1,
    "xla_cpu_use_fusion_emitters": False,
    "xla_cpu_experimental_ynn_fusion_type": "",
}


@functools.cache
def compiler_options(backend: str) -> dict[str, Any] | None:
    """The compiler options of the engine's programs on `backend`: `CPU_COMPILER_OPTIONS` on a CPU, those
    this XLA knows (it refuses a program with an option it does not know, and options come and go
    between versions); XLA's defaults on an accelerator."""
    if backend != "cpu":
        return None
    if _compiles({**CPU_COMPILER_OPTIONS}):
        return dict(CPU_COMPILER_OPTIONS)
    known = {name: value for name, value in CPU_COMPILER_OPTIONS.items() if _compiles({name: value})}
    return known or None


def _compiles(options: dict[str, Any]) -> bool:
    """Whether XLA takes `options`: one compilation of a one-operation program."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(1.0).compile()
    except jax.errors.JaxRuntimeError:
        return False
    return True


def jit(fun: Callable, **kwargs: Any) -> Callable:
    """`jax.jit` with the engine's compiler options for the default backend (`compiler_options`). Call it
    when a program is built, not at import (it asks JAX for its backend)."""
    return jax.jit(fun, compiler_options=compiler_options(jax.default_backend()), **kwargs)


@dataclasses.dataclass
class CompileLog:
    """The compilations seen while the log was open: (function name, seconds) in order."""

    events: list[tuple[str, float]] = dataclasses.field(default_factory=list)

    def count(self, name: str | None = None) -> int:
        """Compilations of functions called `name` (all when None)."""
        return sum(1 for fun, _ in self.events if name is None or fun == name)

    def seconds(self, name: str | None = None) -> float:
        """Seconds spent compiling functions called `name` (all when None)."""
        return float(sum(s for fun, s in self.events if name is None or fun == name))

    def names(self) -> list[str]:
        return [fun for fun, _ in self.events]


@contextlib.contextmanager
def compile_log() -> Iterator[CompileLog]:
    """Collects JAX's compile events while open (thread-safe enough: listeners only append)."""
    log = CompileLog()

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE_EVENT:
            log.events.append((str(kwargs.get("fun_name", "?")), float(duration)))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield log
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
