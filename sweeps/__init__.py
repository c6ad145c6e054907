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
from sweeps.compilation_cache import enable_compilation_cache
from sweeps.data import Dataset, load_csv
from sweeps.loop import Interrupted
from sweeps.lr_find import LRFind, lr_find
from sweeps.planning import Plan, plan
from sweeps.results import Result, load_result
from sweeps.strategies import PBT, Bayes, Grid, Halving, QuasiRandom, Random, Strategy
from sweeps.sweep import run
from sweeps.trained import TrainedModel, load_model

__all__ = [
    "Bayes",
    "Dataset",
    "enable_compilation_cache",
    "Grid",
    "Halving",
    "PBT",
    "Interrupted",
    "LRFind",
    "QuasiRandom",
    "Random",
    "Result",
    "Strategy",
    "TrainedModel",
    "load_csv",
    "load_model",
    "load_result",
    "lr_find",
    "plan",
    "Plan",
    "run",
    "space",
]
