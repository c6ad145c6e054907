"""The peers: `keras` (the lesson's code, one Keras model per learning rate), `torch` (a plain PyTorch loop,
one model per learning rate) and `torch-vmap` (a `torch.func` ensemble of the N models, torch_peers.py).

Each reports the engine's cost of one member's epoch (they train the same model with the same optimizer),
so their GFLOP/s compare with the engine's. A peer that does not import here is skipped with a note;
`keras` and `torch` train the MLP workloads only (they are skipped, with a note, on a user's model), and
`torch-vmap` trains the MLP workloads and models.cnn.CNN (`torch_model`).

torch's OpenMP threads spin while they wait: on a machine busy with other processes, set
OMP_WAIT_POLICY=PASSIVE (which the rows record) or `--torch-threads 1` (benchmarks/README.md,
"The strongest peer: torch-vmap").

Part of `benchmarks/throughput.py`; never imported by the library.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from engine_modes import Engine
from machine import current_rss_mb, peak_memory_mb, reset_peak_memory
from sequential_modes import rows_per_n
from workloads import SEED, Workload, learning_rates

from models.cnn import CNN


def keras_available() -> str | None:
    """None when Keras 3 imports (on the JAX backend unless KERAS_BACKEND says otherwise), else why not."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras  # noqa: F401
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def torch_available() -> str | None:
    try:
        import torch  # noqa: F401
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def bench_keras(workload: Workload, trials: int, epochs: int, budget_s: float) -> list[dict[str, Any]]:
    """The lesson's code: one Keras model per learning rate, `model.fit` with validation data each epoch."""
    import keras

    data = workload.data

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    def one_trial(lr: float) -> dict[str, Any]:
        start = time.perf_counter()
        keras.utils.set_random_seed(SEED)
        layers = [keras.Input((data.n_features,))]
        layers += [keras.layers.Dense(width, activation="relu") for width in workload.hidden]
        layers += [keras.layers.Dense(1, activation="sigmoid")]
        model = keras.Sequential(layers)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=lr), loss="binary_crossentropy", metrics=["accuracy"]
        )
        timer = EpochTimer()
        model.fit(
            data.x_train,
            data.y_train,
            batch_size=workload.batch_size,
            epochs=epochs + 1,
            validation_data=(data.x_val, data.y_val),
            callbacks=[timer],
            verbose=0,
        )
        return {"trial_s": time.perf_counter() - start, "epoch_times": timer.times}

    return _time_trials(one_trial, trials, budget_s, {"backend": keras.backend.backend(), "version": keras.__version__})


def bench_torch(workload: Workload, trials: int, epochs: int, budget_s: float) -> list[dict[str, Any]]:
    """A plain PyTorch loop: one model per learning rate, Adam, shuffled minibatches, validation each epoch."""
    import torch
    from torch_peers import mlp

    data = workload.data
    x_train, y_train = torch.tensor(np.asarray(data.x_train)), torch.tensor(np.asarray(data.y_train))
    x_val, y_val = torch.tensor(np.asarray(data.x_val)), torch.tensor(np.asarray(data.y_val))
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def model_and_optimizer(lr: float):
        torch.manual_seed(SEED)
        model = mlp(workload.widths())
        return model, torch.optim.Adam(model.parameters(), lr=lr)

    def steps(model, optimizer, order):
        for i in range(0, order.shape[0], workload.batch_size):
            rows = order[i : i + workload.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[rows]).squeeze(-1), y_train[rows])
            loss.backward()
            optimizer.step()

    # Intra-op threads help large layers and hurt tiny ones (benchmarks/README.md, "Results (CPU)", the
    # torch note): give torch its faster setting of the two.
    speed = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        model, optimizer = model_and_optimizer(1e-3)
        order = torch.randperm(x_train.shape[0])[: 20 * workload.batch_size]
        steps(model, optimizer, order)  # warm
        start = time.perf_counter()
        steps(model, optimizer, order)
        speed[threads] = time.perf_counter() - start
    torch.set_num_threads(min(speed, key=speed.get))

    def one_trial(lr: float) -> dict[str, Any]:
        start = time.perf_counter()
        model, optimizer = model_and_optimizer(lr)
        times = []
        for _ in range(epochs + 1):
            epoch_start = time.perf_counter()
            model.train()
            steps(model, optimizer, torch.randperm(x_train.shape[0]))
            model.eval()
            with torch.no_grad():
                logits = model(x_val).squeeze(-1)
                val_loss, val_accuracy = (
                    loss_fn(logits, y_val).item(),
                    ((logits > 0).float() == y_val).float().mean().item(),
                )
                del val_loss, val_accuracy  # computed, as the engine and keras do each epoch; not reported
            times.append(time.perf_counter() - epoch_start)
        return {"trial_s": time.perf_counter() - start, "epoch_times": times}

    return _time_trials(
        one_trial,
        trials,
        budget_s,
        {"version": torch.__version__, "threads": torch.get_num_threads(), "seconds_per_20_steps_by_threads": speed},
    )


def _time_trials(one_trial, trials: int, budget_s: float, info: dict) -> list[dict[str, Any]]:
    """One untimed warm-up trial, then up to `trials` timed ones within `budget_s` (at least one)."""
    rss_before = current_rss_mb()
    reset_peak_memory()
    lrs = learning_rates(trials)
    one_trial(float(lrs[0]))  # warm-up: imports, thread pools, first traces
    records, started = [], time.perf_counter()
    for lr in lrs:
        if records and time.perf_counter() - started > budget_s:
            break
        records.append(one_trial(float(lr)))
    peak, source = peak_memory_mb()
    for r in records:
        # compile_s: a new model is traced and compiled by its first epoch; what that costs over a steady epoch
        r.update(
            compile_s=max(r["epoch_times"][0] - statistics.mean(r["epoch_times"][1:]), 0.0),
            peak_mem_mb=peak,
            peak_mem_source=source,
            rss_before_mb=rss_before,
            framework=info,
        )
    return records


def framework_rows(records, ns, steps, cost) -> list[dict[str, Any]]:
    rows = rows_per_n(records, ns, steps)
    for row in rows:
        used = records[: row["timed_trials"]]
        row["compile_s"] = statistics.mean(r["compile_s"] for r in used)  # per trial: every model compiles anew
        row["sweep_s"] = row["n"] * row["trial_s"]
        row.pop("first_epoch_overhead_s", None)
        row["framework"] = records[0]["framework"]
        row.update(cost)
    return rows


def bench_torch_vmap(workload: Workload, n: int, epochs: int, threads: int) -> dict[str, Any]:
    """The torch.func ensemble of N members: one warm-up epoch, then `epochs` timed epochs (torch_peers.py)."""
    rss_before = current_rss_mb()
    reset_peak_memory()
    record, grad, probe = train_torch_ensemble(workload, n, epochs + 1, threads)
    peak, peak_source = peak_memory_mb()
    warmup_s, times = record["epoch_times"][0], record["epoch_times"][1:]
    return {
        "n": n,
        "model_epochs_per_s": n / statistics.median(times),  # the median epoch: robust to load spikes
        "model_epochs_per_s_mean": n * epochs / sum(times),
        "epoch_s": statistics.median(times),
        "step_us": statistics.median(times) / workload.steps_per_epoch * 1e6,
        "sweep_s": record["total_s"],  # building the stacked ensemble, the warm-up and the timed epochs
        "compile_s": max(warmup_s - statistics.median(times), 0.0),  # no compiler: the first epoch's extra cost
        "warmup_epoch_s": warmup_s,
        "init_s": record["init_s"],
        "timed_trials": n,
        "extrapolated": False,
        "peak_mem_mb": peak,
        "peak_mem_source": peak_source,
        "rss_before_mb": rss_before,
        "framework": torch_info(threads, grad, probe),
    }


def train_torch_ensemble(
    workload: Workload, n: int, epochs: int, threads: int
) -> tuple[dict[str, Any], str, dict[str, float]]:
    """The torch.func ensemble of n members trained `epochs` epochs on `threads` threads, with the faster
    gradient method for this N: (torch_peers.train_ensemble's record, the method, the probe's seconds)."""
    import torch
    import torch_peers

    torch.set_num_threads(threads)
    data = workload.data
    grad, probe = fastest_grad(workload, n)
    record = torch_peers.train_ensemble(
        data.x_train,
        data.y_train,
        data.x_val,
        data.y_val,
        torch_model(workload),
        workload.batch_size,
        learning_rates(n),
        epochs,
        SEED,
        grad,
        data.task,
    )
    return record, grad, probe


def torch_model(workload: Workload):
    """What torch_peers.Ensemble trains for `workload`: the MLP's widths, or the torch twin of its own model
    (`torch_peers.cnn` for models.cnn.CNN, the only user's model with a twin).

    Raises:
      ValueError: a user's model with no torch twin here.
    """
    import torch_peers

    model = workload.model
    if model is None:
        return workload.widths()
    if isinstance(model, CNN):
        return functools.partial(torch_peers.cnn, workload.data.input_shape, model.channels, model.dense, model.classes)
    raise ValueError(
        f"torch-vmap has no torch twin of {workload.label()} (workload {workload.name!r}): it trains the MLP "
        "workloads and models.cnn.CNN"
    )


def fastest_grad(workload: Workload, n: int, steps: int = 20, rounds: int = 3) -> tuple[str, dict[str, float]]:
    """The faster of torch_peers.GRADS for this N, and each one's seconds per `steps` steps.

    The methods take turns `rounds` times and each keeps its best time, so that a burst of load
    from another process does not pick the slower one.
    """
    import torch_peers

    data = workload.data
    model = torch_model(workload)
    seconds = {grad: math.inf for grad in torch_peers.GRADS}
    for _ in range(rounds):
        for grad in seconds:
            taken = torch_peers.seconds_per_steps(
                data.x_train, data.y_train, model, workload.batch_size, learning_rates(n), grad, steps, data.task
            )
            seconds[grad] = min(seconds[grad], taken)
    return min(seconds, key=seconds.get), seconds


def torch_info(threads: int, grad: str, probe: dict[str, float]) -> dict[str, Any]:
    import torch

    return {
        "version": torch.__version__,
        "threads": threads,
        "threads_set_by": "torch.set_num_threads (--torch-threads; default the machine's cores)",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),  # PASSIVE: no spinning threads on a busy machine
        "grad": grad,
        "seconds_per_20_steps_by_grad": probe,  # the best of 3 turns each
    }


def measure_torch_vmap(engine: Engine, ns: list[int], epochs: int, budget: float, threads: int) -> Iterator[dict]:
    """Mode `torch-vmap`, one row per N; an N whose time predicted from the last one exceeds `budget` is skipped."""
    why = torch_available()
    if why is not None:
        print(f"note: skipping mode torch-vmap: it does not import here ({why})")
        return
    cost = engine.one_member_cost()
    cost = {**cost, "flops_source": cost["flops_source"] + " (the engine's, 1 member)"}
    last = None  # seconds per member-epoch of the last measured N
    for n in ns:
        predicted = None if last is None else (epochs + 1) * n * last
        if predicted is not None and predicted > budget:
            yield {"n": n, "skipped": f"predicted {predicted:.0f} s > budget {budget:.0f} s"}
            continue
        row = bench_torch_vmap(engine.workload, n, epochs, threads)
        last = 1 / row["model_epochs_per_s"]
        yield {**row, **cost}


def measure_framework(
    mode: str, engine: Engine, ns: list[int], epochs: int, trials: int, budget: float
) -> Iterator[dict]:
    """Mode `keras` or `torch`: up to `trials` trials timed one by one, a row per N from them (the MLP workloads
    only: a user's model is skipped with a note)."""
    if engine.workload.model is not None:
        print(f"note: skipping mode {mode} on {engine.workload.name}: it trains the MLP workloads only")
        return
    why = keras_available() if mode == "keras" else torch_available()
    if why is not None:
        print(f"note: skipping mode {mode}: it does not import here ({why})")
        return
    cost = engine.one_member_cost()
    bench = bench_keras if mode == "keras" else bench_torch
    records = bench(engine.workload, min(max(ns), trials), epochs, budget)
    cost = {**cost, "flops_source": cost["flops_source"] + " (the engine's, 1 member)"}
    yield from framework_rows(records, ns, engine.workload.steps_per_epoch, cost)
