"""Compiling: the seconds per structure, the next structure's programs compiled ahead, and the cache on disk.

Compilations are counted from JAX's own record of them, not from a counter in the library: JAX
reports every XLA compilation as a `/jax/core/compile/backend_compile_duration` event with the
compiled function's name. `compile_log()` listens for those events while it is open (a run reports
how many programs it compiled and how long that took; tests assert that a second sweep of the same
structure compiles nothing). `CompileTimes` attributes the same events to the structure, program
and population size whose code caused them: the scheduler opens `program(structure, "epoch", size)`
around the call that compiles, and the listener reads it from the thread the event fires in. A run
writes the result into config.json as `compile_by_structure`; `sweeps run --dry-run --compile`
prints it.

`Ahead` runs one compilation at a time in a background thread: while a work item trains, the
scheduler lowers and compiles the next new structure's initialisation and epoch (`jit(...).lower(shapes)
.compile()` puts them in JAX's cache, so that item's first call does not compile): a small population's
training leaves a core idle (benchmarks/README.md, "Issue 13", item 7). A failed background
compilation is raised where the item that needs it starts, naming the structure.

`enable_compilation_cache` keeps compiled programs on disk between processes: the `sweeps` command
turns it on; API users call `sweeps.enable_compilation_cache()` once (the library never changes JAX's
configuration on its own).

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from sweeps.engine import Structure
  >>> s = Structure(hidden=(4,), activation="relu", batch_size=8, optimizer="adam", schedule="constant",
  ...               clip=False, dropout=False, task="binary", n_features=3, n_outputs=1)
  >>> times, x = CompileTimes(), jnp.ones(7)
  >>> with times.listening(), times.program(s, "epoch", 8):
  ...     _ = jax.jit(lambda x: x * 3.0)(x)
  >>> [(p["program"], p["population"], p["compilations"]) for p in times.by_structure()[0]["programs"]]
  [('epoch', 8, 1)]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

from sweeps.driver.populations import ChunkRunner, compile_population, controls_for
from sweeps.engine import Split, Structure
from sweeps.engine.kernel import kernel_plan
from sweeps.planning.planner import Group, Plan, Round, Trial

OFF = ("off", "none", "false", "0", "no")  # SWEEPS_CACHE_DIR values that turn the cache off, in any case
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # one XLA compilation and its seconds
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"  # a program loaded from the persistent cache


@dataclasses.dataclass
class ProgramTime:
    """One program of one structure at one population size: XLA's compile seconds and how many compilations.

    `ahead`: compiled in the background while an earlier group trained (its seconds overlap
    training); `cache_hits`: compilations answered by the persistent compilation cache.
    """

    program: str  # "initialisation", "epoch" or "edits" (a strategy's between-epoch changes)
    population: int
    seconds: float = 0.0
    compilations: int = 0
    cache_hits: int = 0
    ahead: bool = False


class CompileTimes:
    """JAX's compile events by (structure, program, population size), for config.json and the dry run."""

    def __init__(self) -> None:
        self._programs: dict[Structure, dict[tuple[str, int], ProgramTime]] = {}
        self._waited: dict[Structure, float] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def listening(self) -> Iterator[CompileTimes]:
        """Listens to JAX's compile events while open."""
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        jax.monitoring.register_event_listener(self._on_event)
        try:
            yield self
        finally:
            jax.monitoring.unregister_event_duration_listener(self._on_duration)
            jax.monitoring.unregister_event_listener(self._on_event)

    @contextlib.contextmanager
    def program(self, structure: Structure, program: str, population: int, ahead: bool = False) -> Iterator[None]:
        """Compilations in this thread while open count for `structure`'s `program` at `population` members."""
        with self._lock:
            entries = self._programs.setdefault(structure, {})
            entry = entries.setdefault((program, int(population)), ProgramTime(program, int(population)))
            entry.ahead = entry.ahead or ahead
        previous = getattr(self._local, "entry", None)
        self._local.entry = entry
        try:
            yield
        finally:
            self._local.entry = previous

    def waited(self, structure: Structure, seconds: float) -> None:
        """The main thread waited `seconds` for `structure`'s programs compiling in the background."""
        with self._lock:
            self._waited[structure] = self._waited.get(structure, 0.0) + seconds

    def _on_duration(self, event: str, duration: float, **kwargs: Any) -> None:
        entry = getattr(self._local, "entry", None)
        if event == BACKEND_COMPILE_EVENT and entry is not None:
            with self._lock:
                entry.seconds += float(duration)
                entry.compilations += 1

    def _on_event(self, event: str, **kwargs: Any) -> None:
        entry = getattr(self._local, "entry", None)
        if event == CACHE_HIT_EVENT and entry is not None:
            with self._lock:
                entry.cache_hits += 1

    def by_structure(self) -> list[dict[str, Any]]:
        """One entry per structure, in the order they first compiled or trained (config.json's `compile_by_structure`).

        Each: `structure` (its label), `compile_s` (XLA's compile seconds, all its programs),
        `waited_s` (how long the sweep waited for its background compilation), and `programs`:
        `program`, `population`, `compile_s`, `compilations`, `cache_hits`, `ahead`. An epoch or
        initialisation with `compilations` 0 reused a program this process had already compiled.
        """
        with self._lock:
            out = []
            for structure, entries in self._programs.items():
                programs = [
                    {
                        "program": p.program,
                        "population": p.population,
                        "compile_s": round(p.seconds, 3),
                        "compilations": p.compilations,
                        "cache_hits": p.cache_hits,
                        "ahead": p.ahead,
                    }
                    for p in entries.values()
                    if p.compilations or p.program != "edits"  # edits only where a strategy changed something
                ]
                out.append(
                    {
                        "structure": structure.label(),
                        "compile_s": round(sum(p.seconds for p in entries.values()), 3),
                        "waited_s": round(self._waited.get(structure, 0.0), 3),
                        "programs": programs,
                    }
                )
            return out


class Ahead:
    """One background compilation at a time, keyed by what it compiles; its error is raised where it is needed.

    Examples:
      >>> ahead = Ahead()
      >>> ahead.start("B", lambda: None)
      >>> ahead.wait("B", "structure B") >= 0.0  # the seconds waited
      True
      >>> ahead.close()
    """

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._key: Hashable | None = None
        self._future: Future | None = None

    @property
    def pending(self) -> bool:
        """A compilation was started and its group has not waited for it yet."""
        return self._future is not None

    def start(self, key: Hashable, compile_fn: Callable[[], None]) -> None:
        """Runs `compile_fn` in the background thread; one at a time (`pending` must be False)."""
        if self.pending:
            raise RuntimeError(f"a background compilation of {self._key!r} is pending; wait for it first")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeps-compile")
        self._key, self._future = key, self._executor.submit(compile_fn)

    def wait(self, key: Hashable, what: str) -> float:
        """Waits for the background compilation of `key`, if that is the one started; returns the seconds waited.

        Raises:
          RuntimeError: the background compilation failed (its error is the cause).
        """
        if self._future is None or self._key != key:
            return 0.0
        future, self._future, self._key = self._future, None, None
        started = time.perf_counter()
        try:
            future.result()
        except Exception as error:
            raise RuntimeError(
                f"compiling the programs of {what} ahead of time (in the background, while the previous group "
                f"trained) failed: {type(error).__name__}: {error}"
            ) from error
        return time.perf_counter() - started

    def close(self) -> None:
        """Waits for a compilation still running (XLA cannot be stopped midway), ends the thread; drops its error."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._executor, self._future, self._key = None, None, None


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


class Programs:
    """A sweep's compiled programs: each structure's runner (its compiled epoch with the sweep's data on the
    devices), the compile seconds per structure (`times`), and the next new structure's programs compiled
    in the background while a work item trains (`ahead`)."""

    def __init__(self, plan: Plan):
        self.plan, self.times = plan, CompileTimes()
        config, devices, data = plan.config, plan.devices, plan.data
        self.stop_metric = config.early_stopping["metric"] if config.early_stopping else None
        self.controls = controls_for(data, config.early_stopping, config.divergence_threshold, config.loss)
        splits = (Split(data.x_train, data.y_train), Split(data.x_val, data.y_val))
        self.splits = devices.replicate(jax.tree.map(np.asarray, splits))  # once per sweep
        self._ahead = Ahead()
        self._compiled: set[tuple[Any, int]] = set()  # (structure, population) compiled or compiling
        self._runners: dict[Structure, ChunkRunner] = {}
        self._making = threading.Lock()

    def runner(self, group: Group) -> ChunkRunner:
        """The group's compiled epoch with the sweep's data on its devices: one per structure, whichever thread asks
        first (a lane, or the compile-ahead thread): two would be two jitted functions, each compiling the epoch."""
        with self._making:
            return self._runner(group)

    def _runner(self, group: Group) -> ChunkRunner:
        if group.structure not in self._runners:
            config, devices = self.plan.config, self.plan.devices
            kernel, why_not = kernel_plan(config.kernel, group.structure, devices.count, devices.devices[0].platform)
            if why_not:
                warnings.warn(
                    f"kernel={config.kernel!r}: {group.structure.label()} trains on the XLA path: {why_not}",
                    stacklevel=2,
                )
            self._runners[group.structure] = ChunkRunner(
                group.structure,
                self.plan.data,
                config.seed,
                self.stop_metric,
                self.controls,
                config.objective,
                splits=self.splits,
                fetch=self.plan.devices.fetch,
                kernel=kernel,
                steps=f"xla: {why_not}" if why_not else "xla",
            )
        return self._runners[group.structure]

    def started(self, group: Group) -> None:
        """A work item of `group` starts: its programs compile with it, not ahead."""
        self._compiled.add((group.structure, group.population))

    def wait(self, group: Group) -> None:
        """Waits for `group`'s programs if they are compiling in the background (timed as `waited_s`)."""
        structure, size = group.structure, group.population
        self.times.waited(structure, self._ahead.wait((structure, size), f"{structure.label()} (population {size})"))

    def ahead(self, later: list[tuple[Group, tuple[Trial, ...]]]) -> None:
        """Starts compiling, in the background, the first of the `later` work items whose programs are not
        compiled yet (one at a time); its lane waits for it when it starts the item (`wait`)."""
        if self._ahead.pending:
            return
        for group, chunk in later:
            key = (group.structure, group.population)
            if key not in self._compiled:
                self._compiled.add(key)
                self._ahead.start(key, lambda group=group, chunk=chunk: self.compile(group, chunk, ahead=True))
                return

    def compile(self, group: Group, chunk: tuple[Trial, ...], ahead: bool = False) -> None:
        """Compiles (runs nothing) a work item's initialisation and epoch, timed into `times`."""
        structure, size, config = group.structure, group.population, self.plan.config
        with self.times.program(structure, "initialisation", size, ahead):
            shapes = compile_population(structure, chunk, size, config.seed, config.init, self.plan.devices)
        with self.times.program(structure, "epoch", size, ahead):
            self.runner(group).compile(shapes)

    def compile_round(self, planned: Round) -> list[dict[str, Any]]:
        """Compiles every group of a round (no training): the dry run's compile seconds per structure."""
        with self.times.listening():
            for group in planned.groups:
                if (group.structure, group.population) not in self._compiled:
                    self.started(group)
                    self.compile(group, group.chunks[0])
        return self.times.by_structure()

    def steps(self) -> dict[str, str]:
        """Where each structure's steps ran: "xla", "pallas" (the kernel), or "xla: <why not the kernel>" (config.json's
        `steps_by_structure` where `kernel="pallas"` was asked for)."""
        with self._making:
            return {structure.label(): runner.steps for structure, runner in self._runners.items()}

    def close(self) -> None:
        """Waits for a background compilation still running."""
        self._ahead.close()


def enable_compilation_cache(folder: str | None = None) -> str | None:
    """Keeps compiled programs on disk, so a second run of the same structures skips compilation.

    Args:
      folder: where; default $SWEEPS_CACHE_DIR, else $XDG_CACHE_HOME/sweepax/xla, else
        ~/.cache/sweepax/xla. SWEEPS_CACHE_DIR=off (or none, false, 0, no, in any case; with no
        folder given) leaves the cache off.

    Returns:
      The folder in use, or None when it is off.

    Examples:
      >>> import jax
      >>> before = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
      >>> enable_compilation_cache("/tmp/sweepax-cache-doctest")
      '/tmp/sweepax-cache-doctest'
      >>> jax.config.update("jax_compilation_cache_dir", before[0])  # as it was, for the tests that follow
      >>> jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
    """
    folder = folder or os.environ.get("SWEEPS_CACHE_DIR")
    if folder is not None and folder.strip().lower() in OFF:
        return None
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "sweepax", "xla")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return folder
