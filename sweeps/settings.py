"""A sweep's settings as data: what the user asked for (`SweepConfig`) and what the machine offers (`Resources`).

Both are frozen and checked when made, so a bad value is refused before anything is planned,
with the rule and the value. `sweeps.run(...)` builds a `SweepConfig` from its keywords; a TOML
file maps onto the same fields (each field's `section` says where it is written:
`sweeps.cli.config_schema`); `config.json` records both objects (`SweepConfig.record`,
`Resources.record`). What depends on the data (an objective the task computes, a batch size
the rows allow) is checked when the sweep is planned (`sweeps.planning.planner`).

Examples:
  >>> import sweeps
  >>> config = SweepConfig(space={"learning_rate": sweeps.space.loguniform(1e-4, 1e-1)}, epochs=5)
  >>> config.epochs, type(config.strategy).__name__
  (5, 'Grid')
  >>> SweepConfig(seeds=0)
  Traceback (most recent call last):
  ...
  ValueError: seeds must be an integer >= 1, but got seeds=0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

from models import MLP
from sweeps.driver.devices import Devices, select_devices
from sweeps.engine import call_signature, memory, model_record
from sweeps.engine import hparams as registry
from sweeps.engine.kernel import KERNELS
from sweeps.engine.metrics import Metric, OwnMetrics, direction, function_path, metrics_record
from sweeps.engine.precision import PRECISIONS, check_precision
from sweeps.planning.checks import (
    check_early_stopping,
    check_int,
    check_loss,
    check_metrics,
    check_model,
    check_space_for_model,
)
from sweeps.space import Axis, Choice, as_space, axis_to_config
from sweeps.strategies import Grid, Strategy

# How a trial's initialisation and dropout keys are derived: from (sweep seed, seed index), common random
# numbers shared by every configuration, or from (sweep seed, trial number).
INIT_MODES = ("shared", "per_trial")


def _section(name: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    """A field written under `[name]` in a config file."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"section": name})


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything a user asks of a sweep, checked: the model, the space, the strategy, the training defaults,
    the objective, early stopping and the run folder's checkpoints and kept models.

    Attributes (as `sweeps.run` documents them): `model` ([model] in a config file), `loss` and `metrics` (Python
    functions: `sweeps.run` only, not a config file), `space` ([space]),
    `strategy` ([strategy]); [train]: `optimizer`, `epochs`, `batch_size` (defaults for trials whose space
    does not set them), `seeds`, `seed`, `objective`, `early_stopping`, `max_population`,
    `divergence_threshold`, `init`, `fuse`, `kernel`, `precision`; [run]: `checkpoint_every`, `keep_checkpoints`,
    `keep_models`, `plots`.
    """

    model: Any = _section("model", factory=MLP)  # a Linen module, or what builds an NNX module from rngs
    loss: Callable | None = _section("model", None)
    metrics: Mapping[str, Metric] = _section("model", factory=dict)
    space: Mapping[str, Axis] = _section("space", factory=dict)
    strategy: Strategy = _section("strategy", factory=Grid)
    optimizer: str = _section("train", "adam")
    epochs: int = _section("train", 10)
    batch_size: int = _section("train", 32)
    seeds: int = _section("train", 1)
    seed: int = _section("train", 0)
    objective: str = _section("train", "val_loss")
    early_stopping: Mapping[str, Any] | None = _section("train", None)
    max_population: int | None = _section("train", None)
    divergence_threshold: float | None = _section("train", 10.0)
    init: str = _section("train", "shared")
    fuse: bool = _section("train", True)  # the planner may train differing built-in MLPs or batch sizes as one program
    kernel: str = _section("train", "xla")  # where a step runs: the XLA path, or the Pallas kernel (`KERNELS`)
    precision: str = _section("train", PRECISIONS[0])  # what the model computes in (sweeps.engine.precision)
    checkpoint_every: int | None = _section("run", None)
    keep_checkpoints: int = _section("run", 2)
    keep_models: int = _section("run", 5)
    plots: bool = _section("run", True)

    def __post_init__(self):
        model = MLP() if self.model is None else self.model
        check_model(model)
        check_loss(self.loss)
        metrics = check_metrics(self.metrics)
        axes = as_space(self.space)
        own = None if type(model) is MLP else dict(call_signature(model)[0])
        check_space_for_model(axes, own)
        for name, axis in axes.items():
            registry.check_name(name, model=own)
            if isinstance(axis, Choice):  # every listed value, even one a strategy may never draw (inf, nan)
                registry.check_values(name, axis.values)
        strategy = Grid() if self.strategy is None else self.strategy
        if not isinstance(strategy, Strategy):
            raise TypeError(
                "strategy must be a sweeps.Strategy: sweeps.Grid(...), Random(...), QuasiRandom(...) or Bayes(...), "
                f"but got {strategy!r}"
            )
        if strategy.round_size() is not None:
            check_int(f"{type(strategy).__name__}.round_size()", strategy.round_size(), 1)
        check_int("seeds", self.seeds, 1)
        check_int("seed", self.seed, 0)
        if self.max_population is not None:
            check_int("max_population", self.max_population, 1)
        threshold = self.divergence_threshold
        if threshold is not None and not (isinstance(threshold, (int, float)) and threshold > 0):
            raise ValueError(f"divergence_threshold must be > 0 or None, but got {threshold!r}")
        if self.init not in INIT_MODES:
            raise ValueError(f"init must be one of {list(INIT_MODES)}, but got init={self.init!r}")
        if not isinstance(self.fuse, bool):
            raise ValueError(
                f"fuse must be True or False, but got fuse={self.fuse!r}; pass fuse=False to train one program per "
                "structure, or True (the default) to let the planner fuse structures where it pays"
            )
        if self.kernel not in KERNELS:
            raise ValueError(
                f"kernel must be one of {list(KERNELS)}, but got kernel={self.kernel!r}; 'xla' (the default) steps on "
                "the XLA path, 'pallas' keeps each member's state on chip for the whole epoch where the model allows"
            )
        check_precision(self.precision)
        if self.checkpoint_every is not None:
            check_int("checkpoint_every", self.checkpoint_every, 1)
        check_int("keep_checkpoints", self.keep_checkpoints, 1)
        check_int("keep_models", self.keep_models, 0)
        if not isinstance(self.plots, bool):
            raise TypeError(f"plots must be true or false, but got plots={self.plots!r}")
        stop = check_early_stopping(self.early_stopping)  # its metric is checked against the task when planned
        settled = {"model": model, "metrics": metrics, "space": axes, "strategy": strategy, "early_stopping": stop}
        for name, value in settled.items():
            object.__setattr__(self, name, value)

    @property
    def module(self) -> nn.Module | None:
        """The user's own model, None for the built-in MLP (which the engine builds from hidden and activation)."""
        return None if type(self.model) is MLP else self.model

    @property
    def own_metrics(self) -> OwnMetrics:
        """The user's metrics as a compiled program's key holds them: ((name, fn, direction), ...)."""
        return tuple((name, metric.fn, metric.direction) for name, metric in self.metrics.items())

    @property
    def directions(self) -> dict[str, str]:
        """The user's metrics' directions, name -> "maximize" or "minimize" (what `sweeps.engine.metrics.direction`
        takes)."""
        return {name: metric.direction for name, metric in self.metrics.items()}

    def direction(self, metric: str) -> str:
        """Which way `metric` is better: a user's metric as its `Metric` says, the task's by name
        (`sweeps.engine.metrics.direction`)."""
        return direction(metric, self.directions)

    @property
    def model_hparams(self) -> dict[str, float] | None:
        """The call hyperparameters of the user's model (name -> default: `sweeps.engine.call_signature`), None for
        the built-in MLP."""
        return None if self.module is None else dict(call_signature(self.module)[0])

    @property
    def defaults(self) -> dict[str, Any]:
        """What a trial takes when neither its space nor its strategy sets it."""
        defaults = {"optimizer": self.optimizer, "epochs": self.epochs, "batch_size": self.batch_size}
        if self.module is None:
            return {**defaults, "hidden": self.model.hidden, "activation": self.model.activation}
        return {**defaults, **self.model_hparams}

    def record(self) -> dict[str, Any]:
        """The settings that decide the results, as config.json records them (and a resume compares). A user's loss
        and metrics are recorded by their functions' `module:qualname` (never imported again), only when given;
        `fuse` only when False and `kernel` only when not "xla": a record without them (every record made before
        the settings existed) reads as the defaults (`recorded_fuse`), so such a run folder resumes under them, and
        one started with fuse=False only with fuse=False. `precision` is always written; a record without it (made
        before the setting existed) reads as float32 (`recorded_precision`)."""
        strategy = self.strategy
        own = {}
        if self.loss is not None:
            own["loss"] = function_path(self.loss)
        if self.metrics:
            own["metrics"] = metrics_record(self.own_metrics)
        fuse = {} if self.fuse else {"fuse": False}
        kernel = {} if self.kernel == "xla" else {"kernel": self.kernel}
        return {
            "model": model_record(self.model),
            **own,
            "space": {name: axis_to_config(axis) for name, axis in self.space.items()},
            "strategy": {
                "name": type(strategy).__name__.lower(),
                **(dataclasses.asdict(strategy) if dataclasses.is_dataclass(strategy) else {}),
            },
            "optimizer": self.optimizer,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "seeds": self.seeds,
            "init": self.init,
            **fuse,
            **kernel,
            "precision": self.precision,
            "seed": self.seed,
            "objective": self.objective,
            "direction": self.direction(self.objective),
            "early_stopping": dict(self.early_stopping) if self.early_stopping else None,
            "max_population": self.max_population,
            "divergence_threshold": self.divergence_threshold,
        }

    @staticmethod
    def recorded_fuse(record: Mapping[str, Any]) -> bool:
        """The `fuse` a settings record (config.json, run.json's settings) was made with: absent means True."""
        return bool(record.get("fuse", True))

    @staticmethod
    def recorded_precision(record: Mapping[str, Any]) -> str:
        """The `precision` a settings record (config.json, run.json's settings) was made with: absent means float32."""
        return str(record.get("precision", PRECISIONS[0]))

    def run_options(self) -> dict[str, Any]:
        """The run folder's settings (checkpoints, kept models): config.json records them; a resume may change them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["section"] == "run"}


@dataclasses.dataclass(frozen=True)
class Resources:
    """What the machine offers a sweep: its devices, the memory budget per device, the work items it can train
    side by side (lanes), and a CPU's last-level cache (chunks are also sized by speed within it).

    `Resources.detect()` measures them; a resumed run is planned with the ones its manifest recorded
    (`Resources.from_record`), so its chunks are cut as they first were.
    """

    devices: Devices
    memory_budget: int  # bytes per device, shared by the chunks lanes train at once
    lanes: int = 1  # work items trained side by side where nothing between epochs reaches into them
    cache_bytes: int | None = None  # a CPU's last-level cache; None on an accelerator

    def __post_init__(self):
        check_int("memory_budget", self.memory_budget, 1)
        check_int("lanes", self.lanes, 1)

    @classmethod
    def detect(cls, devices: Any = None, memory_budget: int | None = None) -> Resources:
        """The machine as this process sees it: `devices` as `sweeps.run` takes them (None: every device),
        half of each device's free memory unless `memory_budget` (bytes per device) is given, one lane per core
        on a CPU (`SWEEPS_LANES` sets it) and the CPU's cache."""
        from sweeps.planning.lanes import machine_lanes

        layout = devices if isinstance(devices, Devices) else select_devices(devices)
        cpu = layout.local[0].platform == "cpu"
        return cls(
            devices=layout,
            memory_budget=layout.budget_bytes() if memory_budget is None else int(memory_budget),
            lanes=machine_lanes(layout),
            cache_bytes=memory.cache_bytes() if cpu else None,
        )

    def record(self) -> dict[str, Any]:
        """As config.json and the run's manifest record them."""
        return {
            "devices": self.devices.count,
            "memory_budget": self.memory_budget,
            "lanes": self.lanes,
            "cache_bytes": self.cache_bytes,
        }

    def planned_as(self, record: Mapping[str, Any]) -> Resources:
        """These devices with the budget, lanes and cache a run recorded when it started (its chunks' cut)."""
        return dataclasses.replace(
            self,
            memory_budget=int(record["memory_budget"]),
            lanes=int(record.get("lanes", 1)),
            cache_bytes=record.get("cache_bytes"),
        )
