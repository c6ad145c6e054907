"""A loss-against-learning-rate curve and what it suggests: smoothed, its steepest descent, where it diverges.

`analyse` reads both of `sweeps.lr_find`'s curves the same way. The loss is smoothed against log10
of the rate by a local linear fit with a Gaussian window (no lag, no bias at the ends, and its slope
is the derivative). The *suggestion* is the rate where the smoothed loss falls fastest, among the
rates up to its minimum. Past the minimum, a rate *diverges* where its loss is not finite or rises
above `factor` times the best or above the untrained model's loss; `max_stable` is the largest rate
before the first that diverges.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

CLIP_OVER_START = 1.25  # before smoothing, losses are clipped to this many times the untrained model's loss


@dataclasses.dataclass(frozen=True)
class Curve:
    """One method's loss against the learning rate, and what it suggests.

    Attributes:
      method: "vectorized" or "classic".
      learning_rates: (points,) float64, ascending: the rates tried (classic: the steps it ran).
      losses: (points,) float64 training loss at each rate; inf where a vectorized member diverged.
      smoothed: (points,) float64 the smoothed loss (non-finite and exploded losses clipped first).
      suggestion: the rate of the smoothed loss's steepest descent.
      max_stable: the largest rate before the first that diverges (the largest tried when none did).
      diverged_at: the first rate past the minimum that diverges, or None.
      stopped_at: the classic run's last rate when it stopped itself (its loss exploded), else None.
    """

    method: str
    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float
    max_stable: float
    diverged_at: float | None
    stopped_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "suggestion": self.suggestion,
            "max_stable": self.max_stable,
            "diverged_at": self.diverged_at,
            "stopped_at": self.stopped_at,
            "learning_rates": self.learning_rates.tolist(),
            "losses": [v if math.isfinite(v) else None for v in self.losses.tolist()],
            "smoothed": self.smoothed.tolist(),
        }


def analyse(method: str, rates: np.ndarray, losses: np.ndarray, start_loss: float, factor: float, smoothing: float):
    """A `Curve` from (rates ascending, losses): smoothed, its steepest descent and its divergence point.

    Args:
      rates: (points,) ascending, > 0; losses: (points,) any values (non-finite counts as diverged).
      start_loss: the untrained model's loss: past the minimum, a loss above it has diverged.
      factor: past the minimum, a loss above `factor` times the best has diverged (a classic curve's
        losses, one minibatch each, are judged by their smoothed values; a vectorized curve's by their own).
      smoothing: the Gaussian window's standard deviation in decades (at least half the rates' spacing).

    Examples:
      >>> rates = np.logspace(-3, 1, 9)
      >>> curve = analyse("vectorized", rates, np.array([1.0, 0.99, 0.97, 0.9, 0.5, 0.3, 0.25, 5.0, np.inf]),
      ...                 start_loss=1.0, factor=4.0, smoothing=0.1)
      >>> round(curve.suggestion, 4), round(curve.max_stable, 4), round(curve.diverged_at, 4)
      (0.1, 1.0, 3.1623)
    """
    rates, losses = np.asarray(rates, np.float64), np.asarray(losses, np.float64)
    if len(rates) == 0:
        raise ValueError(f"the {method} range test recorded no loss: its very first step diverged; lower min_lr")
    ceiling = CLIP_OVER_START * start_loss  # exploded losses bend the smoothed curve without swamping it
    clipped = np.where(np.isfinite(losses), np.minimum(losses, ceiling), ceiling)
    t = np.log10(rates)
    spacing = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    smoothed, slope = local_linear(t, clipped, max(smoothing, spacing / 2))
    # A vectorized point is a whole training at its rate: whether it diverged is its own loss's to say.
    # A classic point is one minibatch's loss, a noisy sample: its smoothed curve says.
    level = clipped if method == "vectorized" else smoothed
    low = int(np.argmin(level))
    limit = min(factor * level[low], start_loss)
    bad = ~np.isfinite(losses) | (level > limit)
    past = np.flatnonzero(bad[low + 1 :])
    if len(past):
        first = low + 1 + int(past[0])
        max_stable, diverged_at = rates[first - 1], float(rates[first])
    else:
        max_stable, diverged_at = rates[-1], None
    steepest = int(np.argmin(slope[: int(np.argmin(smoothed[: low + 1])) + 1]))
    return Curve(method, rates, losses, smoothed, float(rates[steepest]), float(max_stable), diverged_at)


def local_linear(t: np.ndarray, y: np.ndarray, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian-weighted local linear fit of `y` against ascending `t` at every point: (value, slope).

    Unlike a moving average, the fit has no lag and no bias at the ends; its slope is the derivative.
    """
    value, slope = np.empty_like(y), np.empty_like(y)
    starts = np.searchsorted(t, t - 4 * bandwidth, side="left")
    ends = np.searchsorted(t, t + 4 * bandwidth, side="right")
    for i in range(len(t)):
        d, yy = t[starts[i] : ends[i]] - t[i], y[starts[i] : ends[i]]
        w = np.exp(-0.5 * (d / bandwidth) ** 2)
        s0, s1, s2 = w.sum(), (w * d).sum(), (w * d * d).sum()
        t0, t1 = (w * yy).sum(), (w * d * yy).sum()
        det = s0 * s2 - s1 * s1
        if det <= 1e-12 * s0 * max(s2, 1e-300):  # one point in the window: no slope to fit
            value[i], slope[i] = t0 / s0, 0.0
        else:
            value[i], slope[i] = (s2 * t0 - s1 * t1) / det, (s0 * t1 - s1 * t0) / det
    return value, slope
