"""Where populations live: the population axis sharded over a one-dimensional mesh of devices.

Members need nothing from each other while they train (design item 7), so
the only layout a sweep needs is the population axis split over devices: a
`jax.sharding.NamedSharding` over a mesh with one axis, `"trials"`. Each
device holds `population / devices` members and a replicated copy of the
data; the compiled epoch then runs without collectives, and the per-epoch
metrics come back to the host once per epoch. Across processes
(`sweeps.driver.distributed`) the mesh spans every process's devices and the
population is one global array.

`Devices` is that layout: it pads population sizes to a multiple of the
device count, builds populations directly into the sharding (a jitted
initialisation with `out_shardings`, never on device 0 first), places the data
once, replicated, gives checkpoint restores their target shardings, and
fetches metrics to the host.

Examples:
  >>> layout = select_devices(None)  # every device of every process
  >>> layout.count >= 1 and layout.pad(5) % layout.count == 0
  True
  >>> select_devices(1).describe()  # doctest: +ELLIPSIS
  '1 device (cpu...)'
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sweeps.driver import distributed
from sweeps.engine import Population, Structure, compiler, init_structure, memory, population_builder

AXIS = "trials"  # the mesh axis the population axis is split over
_MAKING = threading.Lock()  # functools.cache may build a value twice when two threads ask for it at once


@dataclasses.dataclass(frozen=True)
class Devices:
    """The devices a sweep's populations are sharded over, and how arrays go onto them.

    Attributes:
      devices: the devices, in mesh order (every process's, when several processes run).
    """

    devices: tuple[jax.Device, ...]

    @property
    def count(self) -> int:
        return len(self.devices)

    @functools.cached_property
    def mesh(self) -> Mesh:
        return Mesh(np.array(self.devices, dtype=object), (AXIS,))

    @functools.cached_property
    def members(self) -> NamedSharding:
        """The population axis split over the mesh: each device holds `population / count` members."""
        return NamedSharding(self.mesh, PartitionSpec(AXIS))

    @functools.cached_property
    def replicated(self) -> NamedSharding:
        """A whole copy on every device (the data, the controls)."""
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def processes(self) -> int:
        return len({d.process_index for d in self.devices})

    @property
    def local(self) -> list[jax.Device]:
        """This process's devices among them."""
        return [d for d in self.devices if d.process_index == jax.process_index()]

    def pad(self, size: int) -> int:
        """`size` rounded up to a multiple of the device count (the sharded axis must divide evenly)."""
        return -(-int(size) // self.count) * self.count

    def describe(self) -> str:
        """One line: how many devices, of which kind, over how many processes."""
        kinds = sorted({d.platform if d.platform == "cpu" else d.device_kind for d in self.devices})
        text = f"{self.count} device{'s' * (self.count != 1)} ({', '.join(kinds)})"
        return text + (f" over {self.processes} processes" if self.processes > 1 else "")

    def summary(self) -> dict[str, Any]:
        """What config.json records: the count, the processes, the device ids and kinds."""
        return {
            "count": self.count,
            "processes": self.processes,
            "ids": [d.id for d in self.devices],
            "kinds": sorted({str(d.device_kind) for d in self.devices}),
            "platform": self.devices[0].platform,
        }

    # --- arrays onto the devices -----------------------------------------------------------

    def init_population(
        self,
        structure: Structure,
        hparams: Mapping[str, np.ndarray],
        numbers: np.ndarray,
        seed: int,
        key_indices: np.ndarray,
    ) -> Population:
        """`init_population` compiled with the members' sharding as its output: each device builds its own members."""
        if len(numbers) % self.count:
            raise ValueError(
                f"a population of {len(numbers)} members cannot be split evenly over {self.count} devices; "
                f"pad it to {self.pad(len(numbers))} (Devices.pad)"
            )
        return self.init_program(structure, seed)(dict(hparams), np.asarray(numbers), np.asarray(key_indices))

    def init_program(self, structure: Structure, seed: int) -> Callable:
        """The jitted program `init_population` runs, (hparams, numbers, key_indices) -> Population sharded
        over the members; `.lower(...).compile()` compiles it ahead of time."""
        with _MAKING:  # one program per key even when lanes and the compile-ahead thread ask at once
            return _sharded_init(init_structure(structure), int(seed), self.members)

    def place(self, tree: Any) -> Any:
        """`tree` (a population) with its leading axis split over the devices; arrays already so are left alone."""
        return jax.tree.map(lambda a: a if _has(a, self.members) else self._put(a, self.members), tree)

    def replicate(self, tree: Any) -> Any:
        """`tree` copied whole onto every device (the data splits: placed once per sweep)."""
        return jax.tree.map(lambda a: a if _has(a, self.replicated) else self._put(a, self.replicated), tree)

    def _put(self, array: Any, sharding: NamedSharding) -> jax.Array:
        if isinstance(array, jax.Array) and not array.is_fully_addressable:
            return jax.device_put(array, sharding)  # a global array: resharded by JAX
        host = np.asarray(array)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    def edit(self, fn: Callable[..., Population], pop: Population, *args: Any) -> Population:
        """A population edit (`sweeps.engine.edits`) applied across shards; the result stays split like `pop`.

        Every argument of an edit is per member ((trials,) or (trials, ...)), so each is split like
        the population: a copy from a member on another device moves only what it needs, and no
        device ends up holding the whole population.

        Examples:
          >>> from sweeps.engine import edits
          >>> # pop = layout.edit(edits.copy_members, pop, source)  # source: (trials,) int32
        """
        return self.place(fn(pop, *(self.place(a) for a in args)))

    def abstract(self, tree: Any) -> Any:
        """Shapes and dtypes of `tree` with the members' sharding: a restore target that lands sharded.

        Without a sharding orbax restores the layout that was saved, whatever the devices are now.
        """
        return jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(
                a.shape, a.dtype, sharding=self.members, weak_type=getattr(a, "weak_type", False)
            ),
            tree,
        )

    def fetch(self, tree: Any) -> Any:
        """The host copy (numpy) of arrays on the devices, from every process."""
        return distributed.fetch(tree)

    def budget_bytes(self) -> int:
        """Half the memory free on each device (the smallest, over every process): a population's budget per device.

        On CPU the devices share the host's RAM (forced host devices), so it is divided among them.
        """
        local = self.local
        if local[0].platform == "cpu":
            free = memory.available_bytes(local[0]) // len(local)
        else:
            free = min(memory.available_bytes(d) for d in local)
        return distributed.smallest(int(memory.MEMORY_FRACTION * free))


@functools.cache
def _sharded_init(structure: Structure, seed: int, sharding: NamedSharding):
    """The whole initialisation as one program whose outputs are born sharded."""
    builder = population_builder(structure)

    def build(hparams, numbers, key_indices):
        return builder(hparams, numbers.astype(jnp.int32), key_indices.astype(jnp.int32), seed)

    return compiler.jit(build, out_shardings=sharding)


def _has(array: Any, sharding: NamedSharding) -> bool:
    """Whether `array` is already laid out as `sharding`: the same sharding object's spec, not only an
    equivalent one (one device: every spec is equivalent, but jit's cache tells them apart)."""
    current = getattr(array, "sharding", None)
    return current is not None and current == sharding


def select_devices(devices: int | Sequence[int | jax.Device] | Devices | None = None) -> Devices:
    """The devices a sweep runs on.

    Args:
      devices: None for every device (of every process: `jax.devices()`); an int for that many
        (the first of each process's, in order); a list of device ids (`jax.devices()[i].id`) or
        devices for exactly those.

    Returns:
      A `Devices` layout.

    Raises:
      ValueError: a count out of range, an unknown or repeated id, a list that leaves a process
        without devices or gives processes different numbers of them; TypeError for anything else.

    Examples:
      >>> select_devices(1).count
      1
      >>> select_devices([0]).devices[0].id
      0
    """
    if isinstance(devices, Devices):
        return devices
    every = list(jax.devices())
    by_process: dict[int, list[jax.Device]] = {}
    for d in every:
        by_process.setdefault(d.process_index, []).append(d)
    if devices is None:
        return Devices(tuple(every))
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer, Sequence)) or isinstance(devices, str):
        raise TypeError(
            f"devices must be None (every device), a count like 4, or a list of device ids like [0, 1], "
            f"but got {devices!r}"
        )
    if isinstance(devices, (int, np.integer)):
        return _first_of_each_process(int(devices), every, by_process)
    return _listed(devices, every, by_process)


def _first_of_each_process(count: int, every: list, by_process: dict[int, list]) -> Devices:
    """`count` devices: the first `count / processes` of each process's."""
    processes = len(by_process)
    if not 1 <= count <= len(every) or count % processes:
        rule = f"between 1 and {len(every)}" + (
            f" and a multiple of the {processes} processes" if processes > 1 else ""
        )
        raise ValueError(
            f"devices must be {rule} (the devices JAX sees: {len(every)}), but got devices={count}; "
            f"pass None to use all of them"
        )
    each = count // processes
    return Devices(tuple(d for p in sorted(by_process) for d in by_process[p][:each]))


def _listed(devices: Sequence, every: list, by_process: dict[int, list]) -> Devices:
    """Exactly the devices (or device ids) listed: each once, as many of every process's."""
    known = {d.id: d for d in every}
    chosen = []
    for item in devices:
        ident = item.id if isinstance(item, jax.Device) else item
        if isinstance(ident, bool) or not isinstance(ident, (int, np.integer)) or ident not in known:
            raise ValueError(
                f"devices={list(devices)!r} names {item!r}, which is not a device id here; the ids are "
                f"{sorted(known)} (jax.devices())"
            )
        chosen.append(known[int(ident)])
    if not chosen or len({d.id for d in chosen}) != len(chosen):
        raise ValueError(f"devices must list each device id once and at least one, but got devices={list(devices)!r}")
    counts = {p: sum(d.process_index == p for d in chosen) for p in by_process}
    if len(set(counts.values())) != 1:
        raise ValueError(
            f"devices={list(devices)!r} gives the processes different numbers of devices ({counts}): every "
            f"process must hold the same number of the chosen devices; pick as many of each process's"
        )
    return Devices(tuple(chosen))


def resume_advice(started: int, here: int, platform: str, processes: int = 1) -> str:
    """How to continue a run whose checkpoints were cut for `started` devices, on a machine whose JAX sees `here`
    (of `platform`, over `processes` processes): only what this machine can do.

    Examples:
      >>> resume_advice(2, 8, "gpu")
      'resume on 2 devices: devices=2 (shell: --set run.devices=2)'
      >>> "XLA_FLAGS=--xla_force_host_platform_device_count=2" in resume_advice(2, 1, "cpu")
      True
    """
    if started <= here:
        return f"resume on {started} devices: devices={started} (shell: --set run.devices={started})"
    if platform == "cpu" and processes == 1:
        return (
            f"resume on {started} devices: this machine shows {here} CPU device{'s' * (here != 1)}; split its CPU into "
            f"{started} by starting the command with XLA_FLAGS=--xla_force_host_platform_device_count={started} in "
            f"its environment (the forced devices share its cores)"
        )
    over = f" over {processes} processes" if processes > 1 else ""
    return (
        f"this machine has {here} {platform} device{'s' * (here != 1)}{over}, so the run cannot continue here: resume "
        f"it where {started} devices are available (as many processes and devices per process as it started with)"
    )
