"""``dwell``: how long each person stays in the scene and in each region, and loitering.

**Sessions.**  One session per (track, region), where the regions are the camera's ``Zones``
and ``EntryZones`` (foot point inside, as the ``zones`` step decides; its ``zones`` attribute
is reused when that step ran first) plus the whole view, named ``scene``.  Times are frame
timestamps (the video's clock for recordings), in seconds.  A *sighting* is a row the tracker
matched to a detection in this frame (score > 0); coasting rows (score 0, a predicted box)
neither open nor extend a session.  A session holds the track's sightings in the region where
two consecutive ones are at most ``GapTolerance`` seconds apart: someone hidden behind a post,
or jittering across a region's edge, for up to that long stays on the same visit.  A session
closes at the first frame more than ``GapTolerance`` after its last sighting.

**Duration** of a session: ``Exit - Enter`` with ``Enter`` its first sighting and ``Exit`` its
last sighting plus one frame interval (each sighting stands for one frame's worth of time;
the interval is ``1 / FrameRate`` of the camera when set, else the median step between recent
frames).  So a track seen on frames ``f1..f2`` at ``fps`` lasts ``(f2 - f1 + 1) / fps``, the
convention of ``tracks.csv`` of the evaluation data.  A track's **time in scene** is the sum
of its ``scene`` sessions: from its first to its last confirmed sighting plus one frame,
gaps up to ``GapTolerance`` bridged (the KalmanTracker ends a track unseen for
``MaxLostSeconds``, so a track normally has one scene session).

**Output.**

- Per-person attribute ``dwell_seconds`` (float32, N): the current duration of the person's
  ``scene`` session (up to this frame), NaN for untracked rows.
- ``frame.metrics["dwell_live"]``: ``{region or "scene": {track id: seconds}}`` for the
  sessions sighted in this frame.
- Events (records, logged to ``<camera dir>/events/<kind>/<date>.csv``): ``dwell``
  (:class:`libs.records.DwellSession`: ``Zone, TrackId, Enter, Exit, Seconds``; stamped at
  ``Exit``) when a session closes, and ``loitering`` (:class:`libs.records.Loitering`:
  ``Zone, TrackId, Enter, Seconds``; stamped at the frame) once per session, at the first
  sighting where its duration reaches ``LoiterSeconds``.
- The ``dwell_log`` sample (:class:`libs.records.DwellSample`, ``<camera dir>/dwell_log/
  <date>.csv``), on every frame of the pipeline's sample clock (``frame.sample_due``).  Its
  figures are over the ``scene`` sessions that *closed* since the previous sample (a visit
  is counted when it closes,
  up to ``GapTolerance`` after its exit): ``Sessions``; ``DwellMs``, the sum of their
  durations in milliseconds (each rounded to the millisecond); ``LongestMs``, the longest;
  ``Loitering``, scene loitering events; ``Bucket1``..``Bucket5``, sessions by duration:
  with edges ``e1 < e2 < ...`` from ``Buckets`` (1 to 4 of them), ``Bucket1`` counts
  durations ``<= e1``, ``Bucket<i>`` those in ``(e<i-1>, e<i>]``, the bucket after the last
  edge the longer ones; buckets past it stay 0.  Then per region ``Sessions_<name>``,
  ``DwellMs_<name>``, ``LongestMs_<name>``, ``Loitering_<name>``.

**Reports** (``dwell``: hourly, daily, weekly, live) sum and compare the columns per period,
exactly: the average visit of a period is ``SumDwellMs / SumSessions / 1000`` seconds, the
longest ``MaxLongestMs / 1000``, and ``SumBucket<i>`` the visits per duration bucket.
(``AvgDwellMs`` and the other per-sample averages are per raw row, not per visit.)

**End of a run.**  Sessions still open when the stream ends are closed by
:meth:`Dwell.finish` (``Exit`` = last sighting + one frame, as always): their ``dwell``
events and a last ``dwell_log`` sample go on the pipeline's end-of-stream frame.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import numpy as np
from pydantic import BeforeValidator, Field, field_validator

from libs.config.models import PluginConfig, form
from libs.frame import Frame
from libs.metrics.reports import Measure, RawLogSpec, ReportKind, register_source_spec
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.post_processors.zones import (
    ZONES_ATTRIBUTE,
    camera_regions,
    membership,
    membership_from_attribute,
)
from libs.records import DwellSample, DwellSession, Loitering, ZoneDwell

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig

log = logging.getLogger(__name__)

DWELL_LOG = "dwell_log"
DWELL_EVENT = "dwell"
LOITERING_EVENT = "loitering"
SCENE = "scene"
DWELL_ATTRIBUTE = "dwell_seconds"
BUCKETS = 5  # report columns Bucket1..Bucket5: up to 4 configured edges
STEP_HISTORY = 15

DWELL = ReportKind(
    "dwell",
    (
        Measure("Sessions", "Sessions"),
        Measure("DwellMs", "DwellMs"),
        Measure("LongestMs", "LongestMs"),
        Measure("Loitering", "Loitering"),
        *(Measure(f"Bucket{i}", f"Bucket{i}") for i in range(1, BUCKETS + 1)),
    ),
    description=("Visits of the scene that ended in the period (dwell step): SumSessions "
                 "visits, average SumDwellMs / SumSessions ms, longest MaxLongestMs ms, "
                 "SumLoitering loitering events, SumBucket1..5 visits per duration bucket "
                 "(edges: the step's Buckets)."),
)
DWELL_REPORTS = register_source_spec(RawLogSpec(DWELL_LOG, (DWELL,)))


def _split_numbers(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class DwellConfig(PluginConfig):
    gap_tolerance: float = Field(
        2.0,
        alias="GapTolerance",
        ge=0.0,
        description="Seconds a person may go unseen (in the scene or a region) and still be "
        "on the same visit; a longer absence closes the session.",
        json_schema_extra=form("a number of seconds >= 0"),
    )
    loiter_seconds: float = Field(
        60.0,
        alias="LoiterSeconds",
        gt=0.0,
        description="A visit this long (seconds) raises one loitering event.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    buckets: Annotated[list[float], BeforeValidator(_split_numbers)] = Field(
        default_factory=lambda: [10.0, 30.0, 60.0, 300.0],
        alias="Buckets",
        description="Upper edges (seconds) of the dwell-time buckets of the reports, "
        "increasing: Bucket1 counts visits up to the first edge, the bucket after the last "
        "edge the longer ones.",
        json_schema_extra=form("1 to 4 increasing numbers of seconds, e.g. '10,30,60,300'"),
    )

    @field_validator("buckets")
    @classmethod
    def _edges(cls, value: list[float]) -> list[float]:
        if not 1 <= len(value) <= BUCKETS - 1:
            raise ValueError(f"give 1 to {BUCKETS - 1} bucket edges")
        if any(v <= 0 or not math.isfinite(v) for v in value):
            raise ValueError("bucket edges must be positive numbers of seconds")
        if any(b <= a for a, b in pairwise(value)):
            raise ValueError("bucket edges must increase")
        return value


@dataclass
class Session:
    enter: float  # seconds since the first frame
    last: float  # last sighting
    loitered: bool = False


class Tally:
    """Closed sessions of one region since the previous logged row."""

    __slots__ = ("buckets", "dwell_ms", "loitering", "longest_ms", "sessions")

    def __init__(self) -> None:
        self.sessions = 0
        self.dwell_ms = 0
        self.longest_ms = 0
        self.loitering = 0
        self.buckets = [0] * BUCKETS

    def add(self, ms: int, edges_ms: list[int]) -> None:
        self.sessions += 1
        self.dwell_ms += ms
        self.longest_ms = max(self.longest_ms, ms)
        self.buckets[bisect_left(edges_ms, ms)] += 1  # (e[i-1], e[i]] -> bucket i


@POST_PROCESSORS.register("dwell")
class Dwell(PostProcessor):
    """Dwell sessions per person and region, live dwell and loitering (module doc)."""
    STATE = ("steps", "t0", "now", "last_time", "sessions", "tallies", "flushed")

    Config: ClassVar[type[PluginConfig]] = DwellConfig
    phase = "after_tracker"

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        if not isinstance(config, DwellConfig):
            config = DwellConfig.model_validate(config.model_dump(by_alias=True))
        super().__init__(config, source, app)
        self.settings = config
        self.gap = float(config.gap_tolerance)
        self.loiter = float(config.loiter_seconds)
        self.edges_ms = [round(float(e) * 1000) for e in config.buckets]
        self.regions = camera_regions(source)
        self.names = [SCENE, *(r.name for r in self.regions)]
        self.fixed_step = 1.0 / float(source.frame_rate) if source.frame_rate else None
        self.steps: deque[float] = deque(maxlen=STEP_HISTORY)
        self.t0: datetime | None = None
        self.now = 0.0
        self.last_time: float | None = None
        # (region index, track id) -> open session; region 0 is the scene.
        self.sessions: dict[tuple[int, int], Session] = {}
        self.tallies = [Tally() for _ in self.names]
        self.flushed = False

    # -- time ---------------------------------------------------------------------------

    def frame_interval(self) -> float:
        if self.fixed_step is not None:
            return self.fixed_step
        return float(np.median(self.steps)) if self.steps else 0.0

    def instant(self, seconds: float) -> datetime:
        assert self.t0 is not None
        return self.t0 + timedelta(seconds=seconds)

    # -- frames -------------------------------------------------------------------------

    def process(self, frame: Frame) -> Frame:
        if self.t0 is None:
            self.t0 = frame.timestamp
        now = (frame.timestamp - self.t0).total_seconds()
        if self.last_time is not None and now > self.last_time:
            self.steps.append(now - self.last_time)
        self.last_time = self.now = now

        expired = [key for key, s in self.sessions.items() if now - s.last > self.gap]
        for key in expired:
            self._close(frame, key)

        dets = frame.detections
        ids = dets.track_ids
        n = len(dets)
        attribute = dets.attributes.get(ZONES_ATTRIBUTE)
        if not self.regions:
            inside = np.zeros((0, n), bool)
        elif attribute is not None:
            inside = membership_from_attribute(attribute, self.names[1:])
        else:
            inside = membership(dets.foot_points(), self.regions)
        sighted = (ids >= 0) & (dets.scores > 0)
        step = self.frame_interval()
        live: dict[str, dict[int, float]] = {}
        for r, name in enumerate(self.names):
            rows = sighted if r == 0 else sighted & inside[r - 1]
            if not rows.any():
                continue
            current = live.setdefault(name, {})
            for tid in ids[rows].tolist():
                session = self.sessions.get((r, tid))
                if session is None:
                    session = self.sessions[(r, tid)] = Session(now, now)
                session.last = now
                seconds = now + step - session.enter
                current[tid] = round(seconds, 3)
                if not session.loitered and seconds >= self.loiter:
                    session.loitered = True
                    self.tallies[r].loitering += 1
                    frame.emit(Loitering, zone=name, track_id=tid,
                               enter=self.instant(session.enter), seconds=round(seconds, 3))

        dwell = np.full(n, np.nan, np.float32)
        for k in np.flatnonzero(ids >= 0):
            session = self.sessions.get((0, int(ids[k])))
            if session is not None:
                dwell[k] = session.last + step - session.enter
        dets.attributes[DWELL_ATTRIBUTE] = dwell
        frame.metrics["dwell_live"] = live
        if frame.sample_due:
            self._sample(frame)
        return frame

    def _close(self, frame: Frame, key: tuple[int, int]) -> DwellSession:
        session = self.sessions.pop(key)
        r, tid = key
        exit_s = session.last + self.frame_interval()
        seconds = exit_s - session.enter
        self.tallies[r].add(round(seconds * 1000), self.edges_ms)
        exit_at = self.instant(exit_s)
        return frame.emit(DwellSession, timestamp=exit_at, zone=self.names[r], track_id=tid,
                          enter=self.instant(session.enter), exit=exit_at,
                          seconds=round(seconds, 3))

    def _sample(self, frame: Frame) -> DwellSample:
        """Emit the ``dwell_log`` sample (sessions closed since the previous one; reset)."""
        scene = self.tallies[0]
        b = scene.buckets
        sample = frame.emit(
            DwellSample, sessions=scene.sessions, dwell_ms=scene.dwell_ms,
            longest_ms=scene.longest_ms, loitering=scene.loitering,
            bucket1=b[0], bucket2=b[1], bucket3=b[2], bucket4=b[3], bucket5=b[4],
            zones={name: ZoneDwell(sessions=t.sessions, dwell_ms=t.dwell_ms,
                                   longest_ms=t.longest_ms, loitering=t.loitering)
                   for name, t in zip(self.names[1:], self.tallies[1:], strict=True)},
        )
        self.tallies = [Tally() for _ in self.names]
        return sample

    # -- end of the stream --------------------------------------------------------------

    def _order(self, key: tuple[int, int]) -> tuple[float, int, int]:
        return self.sessions[key].enter, key[0], key[1]

    def finish(self, end: Frame) -> None:
        """End of the stream: the sessions still open are closed, and their ``dwell``
        events and one more sample (closed sessions not yet in one) go on ``end``."""
        if self.t0 is None:
            return
        if not self.sessions and not any(t.sessions or t.loitering for t in self.tallies):
            return
        keys = sorted(self.sessions, key=self._order)
        for key in keys:
            self._close(end, key)
        self._sample(end)
        log.info("dwell of camera %s: %d sessions closed at the end of the run",
                 self.source.id, len(keys))
        self.t0 = None
