"""sweepax: train a whole hyperparameter sweep as one compiled, vectorized JAX program.

Examples:
  >>> import sweeps
  >>> from sweeps import space
  >>> data = sweeps.load_csv("data/telco_customer_churn.csv", target="Churn")  # doctest: +SKIP
  >>> result = sweeps.run(data, space={"learning_rate": space.loguniform(1e-4, 1e-1)},
  ...                     strategy=sweeps.Grid(n=64), epochs=20, batch_size=32)  # doctest: +SKIP
  >>> result.best()  # doctest: +SKIP
"""

from sweeps import space
from sweeps.data import Dataset, load_csv
from sweeps.driver.compiling import enable_compilation_cache
from sweeps.driver.signals import Interrupted
from sweeps.engine.metrics import Metric
from sweeps.lr_find.finder import LRFind, lr_find
from sweeps.planning.planner import Plan, Round, plan
from sweeps.results.ensemble import Ensemble
from sweeps.results.result import Result, load_result
from sweeps.results.trained import TrainedModel, load_model
from sweeps.settings import Resources, SweepConfig
from sweeps.strategies import PBT, Bayes, Grid, Halving, QuasiRandom, Random, Strategy
from sweeps.sweep import dry_run, run
from sweeps.tracking import Callback, EpochEnd, MLflowTracker, SweepStart, TensorBoardTracker, TrialEnd, TrialStart

__all__ = [
    "Bayes",
    "Callback",
    "Dataset",
    "dry_run",
    "EpochEnd",
    "Ensemble",
    "enable_compilation_cache",
    "Grid",
    "Halving",
    "PBT",
    "Interrupted",
    "LRFind",
    "Metric",
    "MLflowTracker",
    "QuasiRandom",
    "Random",
    "Resources",
    "Result",
    "Round",
    "Strategy",
    "SweepConfig",
    "SweepStart",
    "TensorBoardTracker",
    "TrainedModel",
    "TrialEnd",
    "TrialStart",
    "load_csv",
    "load_model",
    "load_result",
    "lr_find",
    "plan",
    "Plan",
    "run",
    "space",
]
