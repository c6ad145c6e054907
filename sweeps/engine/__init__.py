"""The compiled engine: populations, the vectorized epoch and what it is built from.

Like optax's `_src`, this package knows arrays only: no pandas, no strategies,
no result tables, no terminal. Code outside it (the driver, the benchmarks,
the tests) uses the names in `__all__` below and nothing else; a test
(`tests/test_engine_facade.py`) reads every import outside the engine and
fails on one that reaches past them.

Two kinds of names:

- objects, imported from here: `from sweeps.engine import Population, make_train_epoch`;
- public modules, whose contents are theirs to use, like `optax.schedules`:
  `compiler`, `edits`, `hparams`, `kernel`, `keys`, `memory`, `metrics`, `precision`, `schedules`
  (`from sweeps.engine import hparams`, or `from sweeps.engine.hparams import HPARAMS`).

The other modules are private and may be split, renamed or moved freely:

  structure.py    Structure (what decides a compiled program), param_shapes, n_params
  network.py      Network: the model one member trains (the built-in MLP in its stored layout, or yours)
  population.py   Population (the carried state, trial axis first), init_population, flat_params
  member.py       one member's loss and update (what the epoch's step and the Pallas kernel are made of)
  epoch.py        the jitted, vmapped epoch: minibatch step, validation, masks
  optimizers.py   the optimizer registry (where the learning rate is applied); `hparams.OPTIMIZERS`
  lr_range.py     the learning-rate range test's compiled program (`sweeps.lr_find` drives it)

and the public ones:

  compiler.py     `jit` with the engine's compiler options
  edits.py        jitted edits between epochs: place, copy_members, set_hparams, mask_out
  hparams.py      every hyperparameter: default, rule, traced or structural; the optimizer and schedule choices
  kernel.py       the Pallas kernel that trains a block of members through an epoch on chip; `kernel_plan`
  keys.py         where a trial id becomes a random key
  memory.py       the memory estimate, how many members fit, how many train fastest together (CPU)
  metrics.py      validation metrics, a user's `Metric`, every metric's direction and the valid metric names
  precision.py    where a member's forward casts to its precision (float32, or bfloat16 on float32 master weights)
  schedules.py    learning-rate schedules with traced parameters
"""

from sweeps.engine import compiler, edits, hparams, kernel, keys, memory, metrics, precision, schedules
from sweeps.engine.epoch import Controls, Split, batch_indices, epoch_function, epoch_parts, make_train_epoch
from sweeps.engine.lr_range import geometric_rates, make_mean_loss, make_range_test
from sweeps.engine.network import (
    Network,
    NNXNetwork,
    abstract_nnx,
    call_signature,
    class_path,
    is_nnx_factory,
    model_record,
    network_of,
)
from sweeps.engine.population import (
    PADDING,
    Population,
    flat_params,
    init_population,
    population_builder,
    stack_hparams,
)
from sweeps.engine.structure import (
    Structure,
    fuse,
    holds,
    init_structure,
    n_params,
    param_shapes,
    structure_of,
    trial_fields,
)

__all__ = [
    # public modules
    "compiler",
    "edits",
    "hparams",
    "keys",
    "memory",
    "metrics",
    "precision",
    "kernel",
    "schedules",
    # what decides a compiled program
    "NNXNetwork",
    "Network",
    "Structure",
    "abstract_nnx",
    "is_nnx_factory",
    "network_of",
    "call_signature",
    "class_path",
    "model_record",
    "init_structure",
    "fuse",
    "holds",
    "n_params",
    "param_shapes",
    "structure_of",
    "trial_fields",
    # the population
    "PADDING",
    "Population",
    "flat_params",
    "init_population",
    "population_builder",
    "stack_hparams",
    # the epoch
    "Controls",
    "Split",
    "batch_indices",
    "epoch_function",
    "epoch_parts",
    "make_train_epoch",
    # the learning-rate range test
    "geometric_rates",
    "make_mean_loss",
    "make_range_test",
]
