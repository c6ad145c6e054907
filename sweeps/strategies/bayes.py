"""`Bayes`: batched Bayesian optimization through Optuna's ask-and-tell interface, round by round.

A sequential optimizer proposes one trial, waits for its result, proposes the
next. A vectorized engine wants a whole population per compiled program, so
`Bayes` works in rounds: each round asks Optuna for `per_round` trials, the
loop trains them together, and each is told its objective (its `value`: the
objective at its best epoch; a diverged trial is told as failed, never as a
number). The next round's proposals use everything told so far.

Within a round the proposals are asked before any result is known. TPE would
then propose the same promising point again and again; `constant_liar=True`
(Optuna's remedy) counts the round's pending trials as bad results while it
proposes, so a round's trials spread out. The first round, with nothing told
yet, samples the space at random (TPE, GP) or around its centre (CMA-ES).

The strategy's state is what it was told: every finished trial's params,
value and state (and the pending round's params). Each round rebuilds an
Optuna study from it (`study.add_trial`) with a sampler seeded from (seed,
round), so a checkpoint holds plain JSON and a resumed sweep asks exactly
what the uninterrupted one would have.

Examples:
  >>> from sweeps import Bayes, space
  >>> strategy = Bayes(rounds=3, per_round=4, seed=0)  # doctest: +SKIP
  >>> strategy.start("val_loss", "minimize")  # doctest: +SKIP
  >>> len(strategy.ask({"learning_rate": space.loguniform(1e-4, 1e-1)}))  # doctest: +SKIP
  4
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sweeps.engine.hparams import normalize
from sweeps.space import Float, as_space
from sweeps.strategies.base import Strategy
from sweeps.strategies.optuna_bridge import distributions, encode, import_optuna, quiet, to_config

SAMPLERS = ("tpe", "gp", "cmaes")


@dataclasses.dataclass(eq=False)
class Bayes(Strategy):
    """Bayesian optimization in `rounds` rounds of `per_round` trials each (Optuna's samplers).

    Args:
      rounds: how many rounds (>= 1). The budget is `rounds * per_round` configurations.
      per_round: configurations asked, and trained together, per round (>= 1). Every round's
        populations are padded to this size, so each structure compiles once for the whole sweep.
      sampler: "tpe" (Optuna's TPESampler, multivariate, constant_liar=True: any space),
        "gp" (GPSampler: Gaussian-process expected improvement; needs PyTorch), or
        "cmaes" (CmaEsSampler, one generation per round: continuous and integer axes only;
        needs the `cmaes` package, part of the extra).
      seed: the sampler's seed; the same seed asks the same trials given the same results.

    Raises:
      ImportError: when Optuna (or the sampler's package) is not installed, naming the install command.
      ValueError: for rounds or per_round < 1, or an unknown sampler.
    """

    rounds: int = 4
    per_round: int = 16
    sampler: str = "tpe"
    seed: int = 0

    def __post_init__(self):
        for name in ("rounds", "per_round"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Bayes({name}=...) must be an integer >= 1, but got {name}={value!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"Bayes(sampler=...) must be one of {list(SAMPLERS)}, but got sampler={self.sampler!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"Bayes(seed=...) must be an integer, but got seed={self.seed!r}")
        import_optuna(f'Bayes(sampler="{self.sampler}")')
        if self.sampler == "gp":
            _require("torch", 'Bayes(sampler="gp") (Optuna\'s GPSampler)', "pip install torch")
        if self.sampler == "cmaes":
            _require("cmaes", 'Bayes(sampler="cmaes") (Optuna\'s CmaEsSampler)', 'pip install "sweepax[bayes]"')
        self.start("val_loss", "minimize")

    # --- the strategy interface ------------------------------------------------------------

    def start(self, objective: str, direction: str) -> None:
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"direction must be 'minimize' or 'maximize', but got direction={direction!r}")
        self.objective, self.direction = objective, direction
        self.asked = 0  # rounds asked so far
        self.told: list[dict[str, Any]] = []  # {"params", "system_attrs", "state", "value"} per finished trial
        self.pending: list[dict[str, Any]] = []  # the round asked and not yet told

    def ask(self, space):
        space = as_space(space)
        dists = self._distributions(space)
        optuna = import_optuna("Bayes")
        with quiet(optuna):
            study = self._study(optuna, dists)
            trials = [study.ask(dists) for _ in range(int(self.per_round))]
            frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
        configs = [to_config(t.params, space) for t in trials]
        self.pending = [
            {
                "params": dict(t.params),
                "config": {name: _plain(config[name]) for name in t.params},  # as the table will show it
                "system_attrs": _jsonable(frozen[t.number].system_attrs),
            }
            for t, config in zip(trials, configs)
        ]
        self.asked += 1
        return configs

    def tell(self, table) -> None:
        for trial in self.pending:
            rows = _rows_of(table, trial["config"])
            if rows.empty:
                raise ValueError(
                    f"Bayes was told a table without the configuration it asked for ({trial['config']}); tell it "
                    f"the rows of the round it asked for"
                )
            values = rows["value"].to_numpy(dtype=float)
            complete = bool((rows["state"] == "complete").all()) and bool(np.isfinite(values).all())
            # a configuration told as one point: the mean over its seeds; diverged under any seed: failed
            told = {"params": trial["params"], "system_attrs": trial["system_attrs"]}
            self.told.append(
                {
                    **told,
                    "state": "complete" if complete else "fail",
                    "value": float(values.mean()) if complete else None,
                }
            )
        self.pending = []

    def another_round(self) -> bool:
        return self.asked < self.rounds

    def round_size(self) -> int:
        return int(self.per_round)

    def planned_rounds(self) -> int:
        return int(self.rounds)

    def state_dict(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "direction": self.direction,
            "asked": self.asked,
            "told": self.told,
            "pending": self.pending,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.objective, self.direction = state["objective"], state["direction"]
        self.asked = int(state["asked"])
        self.told = [dict(t) for t in state["told"]]
        self.pending = [dict(t) for t in state["pending"]]

    # --- Optuna ------------------------------------------------------------------------------

    def _distributions(self, space) -> dict[str, Any]:
        """The swept axes as Optuna distributions; a space this sampler cannot search is refused."""
        dists = distributions(space)
        if not dists:
            raise ValueError(
                "Bayes needs at least one swept axis (a range or several values), but every entry of the space "
                f"is one fixed value ({sorted(space) or 'an empty space'}); add e.g. "
                "learning_rate = space.loguniform(1e-4, 1e-1)"
            )
        if self.sampler == "cmaes":
            categorical = [name for name, axis in space.items() if name in dists and not _numeric_range(axis)]
            if categorical:
                raise ValueError(
                    f'Bayes(sampler="cmaes") searches continuous and integer axes only, but {categorical} '
                    f"{'is a categorical axis' if len(categorical) == 1 else 'are categorical axes'} (CMA-ES cannot "
                    'order their values); use sampler="tpe" or "gp", or fix or remove those axes'
                )
        return dists

    def _study(self, optuna, dists):
        """A fresh in-memory study holding every trial told so far, its sampler seeded from (seed, round)."""
        seed = int(np.random.SeedSequence([int(self.seed), self.asked]).generate_state(1)[0])
        # the first round samples at random; every later one models what it was told (failures included:
        # Optuna counts only complete trials towards its start-up, which would keep a round with a
        # diverged trial random)
        startup = int(self.per_round) if self.asked == 0 else 1
        if self.sampler == "tpe":
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
        elif self.sampler == "gp":
            sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
        else:
            sampler = optuna.samplers.CmaEsSampler(
                seed=seed, popsize=max(int(self.per_round), 2), n_startup_trials=0, warn_independent_sampling=False
            )
        study = optuna.create_study(direction=self.direction, sampler=sampler)
        states = {"complete": optuna.trial.TrialState.COMPLETE, "fail": optuna.trial.TrialState.FAIL}
        study.add_trials(
            [
                optuna.trial.create_trial(
                    params=t["params"],
                    distributions={name: dists[name] for name in t["params"]},
                    value=t["value"],
                    state=states[t["state"]],
                    system_attrs=t["system_attrs"],
                )
                for t in self.told
            ]
        )
        return study


def _require(module: str, what: str, install: str) -> None:
    try:
        __import__(module)
    except ImportError as e:
        raise ImportError(f"{what} needs the {module!r} package, which is not installed: {install}") from e


def _numeric_range(axis) -> bool:
    """A continuous axis, or a choice of every integer in a range (what CMA-ES can search)."""
    if isinstance(axis, Float):
        return True
    values = axis.values
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    return ints and sorted(values) == list(range(min(values), max(values) + 1))


def _jsonable(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's system attributes (CMA-ES keeps its state there) that JSON can hold."""
    out = {}
    for key, value in attrs.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


def _rows_of(table, config: Mapping[str, Any]):
    """The table's rows (one per seed) of a configuration the strategy asked for.

    A cell is matched by the value as the table writes it; an empty cell (a conditional
    hyperparameter the trial's optimizer does not read) matches anything.
    """
    keep = np.ones(len(table), bool)
    for name, value in config.items():
        column = table[f"params_{name}"].to_numpy(dtype=object)
        wanted = encode(normalize(name, value))
        for i, cell in enumerate(column):
            if keep[i] and not _empty(cell) and encode(cell) != wanted:
                keep[i] = False
    return table[keep]


def _empty(cell: Any) -> bool:
    return cell is None or (isinstance(cell, float) and math.isnan(cell))
