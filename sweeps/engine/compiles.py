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
from collections.abc import Callable, Iterator
from typing import Any

import jax

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

# LLVM at -O1 on a CPU: XLA's default level spends a first run's compile in LLVM passes that these
# programs do not gain from (benchmarks/README.md, "Issue 13": the lesson's initialisation compiled in
# 0.61-0.68 s instead of 0.99-1.21 s, its epoch in 1.07 s instead of 1.18 s, same results, same speed).
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def jit(fun: Callable, **kwargs: Any) -> Callable:
    """`jax.jit` with the engine's compiler options: `CPU_COMPILER_OPTIONS` when the default backend is a
    CPU, XLA's defaults on an accelerator. Call it when a program is built, not at import (it asks JAX
    for its backend)."""
    options = CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    return jax.jit(fun, compiler_options=options, **kwargs)


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
