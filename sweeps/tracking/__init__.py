"""Where a sweep meets the tools people watch: callbacks as it trains, and the experiment trackers."""

from sweeps.tracking.callbacks import Callback, CallbackFailed, EpochEnd, SweepStart, TrialEnd, TrialStart

__all__ = ["Callback", "CallbackFailed", "EpochEnd", "SweepStart", "TrialEnd", "TrialStart"]
