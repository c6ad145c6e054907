"""Where a sweep meets the tools people watch: callbacks as it trains, and the experiment trackers."""

from sweeps.tracking.callbacks import Callback, CallbackFailed, EpochEnd, SweepStart, TrialEnd, TrialStart
from sweeps.tracking.mlflow_tracker import MLflowRuns, MLflowTracker
from sweeps.tracking.tensorboard_tracker import TensorBoardTracker

__all__ = [
    "Callback",
    "CallbackFailed",
    "EpochEnd",
    "MLflowRuns",
    "MLflowTracker",
    "SweepStart",
    "TensorBoardTracker",
    "TrialEnd",
    "TrialStart",
]
