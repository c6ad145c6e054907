"""The compiled engine: populations, the vectorized epoch and what it is built from.

Like optax's `_src`, this package knows arrays only: no pandas, no strategies,
no result tables, no terminal. The sweep loop (`sweeps/loop.py`) reaches it
through the names below.

  structure.py    Structure (what decides a compiled program), param_shapes, n_params, the stored layout
  population.py   Population (the carried state, trial axis first), init_population, flat_params
  epoch.py        the jitted, vmapped epoch: minibatch step, validation, masks
  edits.py        jitted edits between epochs: place, copy_members, set_hparams, mask_out
  hparams.py      every hyperparameter: default, rule, traced or structural
  optimizers.py   the optimizer registry (where the learning rate is applied)
  schedules.py    learning-rate schedules with traced parameters
  metrics.py      validation metrics and the valid metric names
  keys.py         where a trial id becomes a random key
  memory.py       the memory estimate, how many members fit, how many train fastest together (CPU)
  compiles.py     compilations counted from JAX's own compile events; `jit` with the engine's compiler options
"""

from sweeps.engine import edits, hparams, keys, memory, metrics
from sweeps.engine.compiles import CompileLog, compile_log
from sweeps.engine.epoch import Controls, Split, batch_indices, make_train_epoch
from sweeps.engine.population import PADDING, Population, flat_params, init_population, stack_hparams
from sweeps.engine.structure import Structure, n_params, param_shapes, structure_of

__all__ = [
    "PADDING",
    "CompileLog",
    "Controls",
    "Population",
    "Split",
    "Structure",
    "batch_indices",
    "compile_log",
    "edits",
    "flat_params",
    "hparams",
    "init_population",
    "keys",
    "make_train_epoch",
    "memory",
    "metrics",
    "n_params",
    "param_shapes",
    "stack_hparams",
    "structure_of",
]
