"""The experiment trackers a config file names: `[run] log = ["mlflow", "tensorboard"]`, made into callbacks.

Each tracker is a `sweeps.Callback` in a module of its own (`mlflow_tracker`, `tensorboard_tracker`), imported
only when named, so the core install needs neither package.

Examples:
  >>> check_names(["tensorbard"])  # doctest: +ELLIPSIS
  Traceback (most recent call last):
  ...
  ValueError: [run] log names an unknown tracker 'tensorbard' (did you mean 'tensorboard'?); it takes a list of ...
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from sweeps.tracking.callbacks import Callback

NAMES = ("mlflow", "tensorboard")


def trackers(
    names: Sequence[str],
    *,
    mlflow_uri: str | None = None,
    mlflow_experiment: str | None = None,
    tensorboard_dir: str | Path | None = None,
) -> list[Callback]:
    """The trackers `names` asks for, each once: "mlflow" (`MLflowTracker(mlflow_uri, mlflow_experiment)`: None for
    MLflow's own default URI, `MLFLOW_TRACKING_URI` or ./mlruns; the run folder's name as the experiment) and
    "tensorboard" (`TensorBoardTracker(tensorboard_dir)`: None for RUN_DIR/tensorboard).

    Raises:
      ValueError: a name that is not a tracker's (with the nearest one), or not a list of names.
    """
    check_names(names)
    made: list[Callback] = []
    if "mlflow" in names:
        from sweeps.tracking.mlflow_tracker import MLflowTracker

        made.append(MLflowTracker(tracking_uri=mlflow_uri, experiment=mlflow_experiment))
    if "tensorboard" in names:
        from sweeps.tracking.tensorboard_tracker import TensorBoardTracker

        made.append(TensorBoardTracker(logdir=tensorboard_dir))
    return made


def check_names(names: Sequence[str]) -> None:
    """`[run] log`'s value, checked without importing any tracker."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f'[run] log takes a list of tracker names ("mlflow", "tensorboard"), but got {names!r}')
    for name in names:
        if name not in NAMES:
            near = difflib.get_close_matches(name, NAMES, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            choices = ", ".join(f'"{n}"' for n in NAMES)
            raise ValueError(f"[run] log names an unknown tracker {name!r}{hint}; it takes a list of {choices}")
