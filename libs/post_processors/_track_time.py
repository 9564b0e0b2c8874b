"""Helpers of the per-track analytics (``engagement``, ``audience``, ``demographics``).

Not a post-processor (the registry skips modules whose name starts with ``_``).

**Time.**  Durations are integer microseconds taken from the frame timestamps
(:func:`elapsed_us`), so ten frames 0.1 s apart make exactly 1 s and thresholds such as
"present >= 1 s" never wobble with floating point.  A track's time is *sample and hold*: at
each frame that shows the track, the time since the frame that last showed it is credited with
the state (stopped, looking, engaged...) it had then, unless the gap is longer than the
stage's ``MaxGapSeconds`` (a person lost for longer is not known to have been there).

**Samples.**  A stage emits its sample ("what happened since the previous sample") on the
frames of the pipeline's one sample clock (``frame.sample_due``), so no count is ever lost
between two samples.

**The end of a run.**  What a stage learns at the end of the stream (the tracks still open)
goes on the pipeline's end frame in its ``finish()`` and reaches the sinks like any other
record.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np

log = logging.getLogger(__name__)

US_PER_S = 1_000_000
_MICROSECOND = timedelta(microseconds=1)


def micros(seconds: float) -> int:
    """``seconds`` as integer microseconds (rounded)."""
    return round(seconds * US_PER_S)


def elapsed_us(earlier: datetime, later: datetime) -> int:
    """Microseconds from ``earlier`` to ``later`` (exact timedelta arithmetic)."""
    return (later - earlier) // _MICROSECOND


def ms_of(us: int) -> int:
    """Microseconds rounded to integer milliseconds (raw-log columns are integers)."""
    return (us + 500) // 1000


class FootHistory:
    """Each track's foot points over the last ``window`` seconds, for velocities.

    A track's velocity is the displacement from its baseline point (the newest one at least
    ``window`` seconds old, or the oldest one while the track is younger) to its newest point,
    divided by the time between them (pixels per second): a 1 s baseline averages the
    detector's box jitter away.  NaN until the track has two points at distinct times.
    """

    def __init__(self, window: float) -> None:
        self.window = float(window)
        self._base: datetime | None = None
        self._points: dict[int, deque[tuple[float, float, float, float]]] = {}

    def _seconds(self, ts: datetime) -> float:
        if self._base is None:
            self._base = ts
        return (ts - self._base) / _MICROSECOND / US_PER_S

    def update(self, ts: datetime, ids: np.ndarray, feet: np.ndarray, heights: np.ndarray) -> None:
        t = self._seconds(ts)
        edge = t - self.window + 1e-6
        for k, tid in enumerate(ids.tolist()):
            points = self._points.get(tid)
            if points is None:
                points = self._points[tid] = deque()
            points.append((t, float(feet[k, 0]), float(feet[k, 1]), float(heights[k])))
            # Keep the newest point at or before the window's start as the baseline.
            while len(points) > 1 and points[1][0] <= edge:
                points.popleft()

    def velocity(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 2)`` velocities in pixels per second and ``(N,)`` newest box heights."""
        n = len(ids)
        vel = np.full((n, 2), np.nan, np.float64)
        height = np.full(n, np.nan, np.float64)
        for k, tid in enumerate(ids.tolist()):
            points = self._points.get(tid)
            if not points:
                continue
            t1, x1, y1, h1 = points[-1]
            height[k] = h1
            t0, x0, y0, _ = points[0]
            if t1 > t0:
                vel[k] = ((x1 - x0) / (t1 - t0), (y1 - y0) / (t1 - t0))
        return vel, height

    def forget(self, ids: Iterable[int]) -> None:
        for tid in ids:
            self._points.pop(tid, None)
