"""Several processes, one sweep: joining JAX's distributed runtime, and what the processes must agree on.

A sweep over several hosts is one JAX program per process (`jax.distributed`):
every process loads the data, plans the same sweep and runs the same loop, the
population is one global array over every process's devices, and the only
traffic between processes is what JAX and orbax send (the per-epoch metrics,
checkpoints) plus the few agreements below. Process 0 alone writes the run
folder's files; orbax writes checkpoints from every process, so the run folder
must be on a filesystem every process sees. On CPUs the processes exchange
arrays through JAX's CPU collectives (gloo, the default in jax 0.10).

With one process (the usual case) every function here is a no-op or a plain
local computation, so the single-process path pays nothing.

Examples:
  >>> is_writer()  # process 0, or the only process
  True
  >>> agreed({"lr": (1e-3, 1e-2)})  # one process: its own value
  {'lr': (0.001, 0.01)}
  >>> any_everywhere(False, True)
  (False, True)
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

log = logging.getLogger(__name__)


def join(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> bool:
    """Joins this process to a multi-process JAX run; returns whether it now runs with others.

    With `coordinator`, `num_processes` and `process_id` (the CLI's `--coordinator HOST:PORT
    --num-processes P --process-id I`) the processes meet at the coordinator (process 0 listens
    there) and each keeps every device it sees. With none of them, the environment a cluster
    launcher sets decides, as `jax.distributed.initialize()` reads it (SLURM, Open MPI, a Cloud
    TPU pod slice, Kubernetes): a launcher that started more than one process is joined (under
    SLURM, JAX gives each process the one GPU of its local rank); a lone process stays alone.
    Nothing happens when JAX is already joined (a caller ran `jax.distributed.initialize` itself).

    Must run before anything touches a JAX device.

    Raises:
      ValueError: some flags but not all of them, a malformed coordinator or counts, or a join that
        fails (the message names the coordinator and what to check).

    Examples:
      >>> join()  # no flags, no cluster launcher: one process
      False
    """
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    given = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    if all(v is None for v in given.values()):
        return _join_launched()
    _check_flags(given)
    if num_processes == 1:
        return False
    host, _, port = str(coordinator).rpartition(":")
    try:
        # explicit flags: no launcher detection, so each process keeps all its local devices (JAX's SLURM
        # detection would otherwise restrict a process to the one GPU of its local rank)
        jax.distributed.initialize(
            coordinator, num_processes=num_processes, process_id=process_id, cluster_detection_method="deactivate"
        )
    except Exception as e:  # noqa: BLE001
        raise ValueError(
            f"process {process_id} of {num_processes} could not join the coordinator {coordinator} "
            f"({type(e).__name__}: {e}); check that process 0 runs on {host} with the same --coordinator, that "
            f"port {port} is free there and reachable from here, and that every process got the same "
            f"--num-processes"
        ) from e
    return True


def _join_launched() -> bool:
    """Joins the processes a cluster launcher started (its environment says so); a lone process stays alone."""
    launcher = cluster_launcher()
    if launcher is None:
        return False
    try:
        jax.distributed.initialize()
    except Exception as e:  # noqa: BLE001 - JAX raises several kinds; the user needs to know which launcher
        raise ValueError(
            f"the {launcher} environment says this is one of several processes, but joining them failed "
            f"({type(e).__name__}: {e}); pass --coordinator HOST:PORT --num-processes P --process-id I "
            f"explicitly, or unset the launcher's variables to run alone"
        ) from e
    return jax.process_count() > 1


def _check_flags(given: dict[str, Any]) -> None:
    """--coordinator, --num-processes and --process-id: all three, each well formed."""
    missing = [flag for flag, v in given.items() if v is None]
    if missing:
        raise ValueError(
            f"joining several processes needs --coordinator, --num-processes and --process-id together, but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing; give all three (the same "
            f"--coordinator and --num-processes to every process, --process-id 0 to P-1), or none to run alone"
        )
    coordinator, num_processes, process_id = given.values()
    host, _, port = str(coordinator).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(
            f"--coordinator must be HOST:PORT (e.g. localhost:12355 or node001:12355), got {coordinator!r}"
        )
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"--num-processes must be an integer >= 1, but got {num_processes!r}")
    if isinstance(process_id, bool) or not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise ValueError(
            f"--process-id must be an integer in [0, {num_processes - 1}] for --num-processes {num_processes}, "
            f"but got {process_id!r}"
        )


def cluster_launcher() -> str | None:
    """The cluster launcher that started this process among several, as JAX detects it; None when alone.

    JAX's own detection (`jax.distributed.initialize()` with no arguments) is used, so SLURM
    (`srun`), Open MPI (`mpirun`), Cloud TPU pod slices and Kubernetes are recognised as JAX
    recognises them. A launcher that reports a single process (an `sbatch` script that did not
    call `srun`) counts as alone.
    """
    try:
        from jax._src.clusters import ClusterEnv  # JAX's detection; private, so guarded
    except ImportError:  # pragma: no cover - a JAX without it: only the explicit flags work
        return None
    for env in ClusterEnv._cluster_types:
        try:
            if env.opt_in_only_method or not env.is_env_present():
                continue
            if env.get_process_count() > 1:
                return env.__name__.removesuffix("Cluster") or env.__name__
        except Exception:  # noqa: BLE001 - a half-set environment: not a launcher we can join
            log.debug("cluster environment %s present but unreadable", env.__name__, exc_info=True)
    return None


def processes() -> int:
    return jax.process_count()


def index() -> int:
    return jax.process_index()


def is_writer() -> bool:
    """Whether this process writes the run folder's files: process 0 (the only one, alone)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process got here (no-op alone)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def agreed(value: Any) -> Any:
    """Process 0's `value`, on every process (alone: `value` itself).

    For what each process computes for itself but all must share exactly: the trials a strategy
    asks for, a memory budget read from the machine. Values are Python objects of this very
    program (pickled between the processes of one job, never read from disk).
    """
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    payload = np.frombuffer(pickle.dumps(value), np.uint8) if is_writer() else np.zeros(0, np.uint8)
    size = _from_bytes(multihost_utils.broadcast_one_to_all(_as_bytes(payload.size)))
    buffer = np.zeros(size, np.uint8)
    buffer[: payload.size] = payload
    received = np.asarray(multihost_utils.broadcast_one_to_all(buffer))
    return value if is_writer() else pickle.loads(received.tobytes())


def on_writer(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` run by process 0 alone (a file written once); its result, or its error, on every process.

    Alone, it is simply `fn(*args)`. With several processes the others wait for process 0 and raise
    the same `ValueError` or `OSError` it raised, so no process trains on while another has stopped.
    """
    if jax.process_count() == 1:
        return fn(*args)
    outcome: tuple[Any, BaseException | None] = (None, None)
    if is_writer():
        try:
            outcome = (fn(*args), None)
        except (ValueError, OSError) as e:
            outcome = (None, e)
    result, error = agreed(outcome)
    if error is not None:
        raise error
    return result


def any_everywhere(*flags: bool) -> tuple[bool, ...]:
    """Each flag OR-ed over the processes (alone: the flags), so all take the same branch."""
    if jax.process_count() == 1:
        return tuple(bool(f) for f in flags)
    from jax.experimental import multihost_utils

    gathered = np.asarray(multihost_utils.process_allgather(np.asarray(flags, np.int32)))
    return tuple(bool(v) for v in gathered.reshape(-1, len(flags)).any(axis=0))


def smallest(value: int) -> int:
    """The smallest of each process's `value` (alone: `value`)."""
    if jax.process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils

    gathered = np.asarray(multihost_utils.process_allgather(_as_bytes(value))).reshape(-1, 8)
    return min(_from_bytes(row) for row in gathered)


def _as_bytes(value: int) -> np.ndarray:
    """An int64 as 8 bytes: JAX (without x64) would cut an int64 array to int32 on the way."""
    return np.frombuffer(np.int64(value).tobytes(), np.uint8).copy()


def _from_bytes(data: Any) -> int:
    return int(np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.int64)[0])


def fetch(tree: Any) -> Any:
    """The host copy (numpy) of arrays that may be spread over several processes' devices."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(
        lambda a: np.asarray(a) if not isinstance(a, jax.Array) or a.is_fully_addressable else a,
        multihost_utils.process_allgather(tree, tiled=True),
    )
