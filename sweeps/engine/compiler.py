"""How the engine's programs are compiled: `jit` with the engine's compiler options for the backend.

Compilations are counted and timed outside the engine, from JAX's own compile events
(`sweeps.driver.compiling`).

Examples:
  >>> import jax.numpy as jnp
  >>> float(jit(lambda x: x * 2.0)(jnp.float32(1.5)))
  3.0
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

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
