"""``engagement``: who faces the camera's target, and for how long (after the tracker).

**Target.**  One point ``x,y`` or one segment ``x1,y1 x2,y2`` in image pixels: ``Target`` for
every camera, ``CameraTargets`` (``cam1: x,y; cam2: x1,y1 x2,y2``) per camera.  Without either,
the target is the bottom edge of the image, ``0,H-1 W-1,H-1``: with the camera on the display
(the usual set-up), a person looking at the display faces the camera, and that is "down" in the
image.

**Direction** ``attributes["direction"]``, a unit vector in image coordinates (x right, y
down), NaN when unknown:

* from the head yaw (``head_yaw``, degrees, + = the person's left) when the ``head_pose`` stage
  knows it.  The head is projected on the image plane: a person facing the camera (yaw 0)
  points straight down the image, ``(0, 1)``, towards the camera; turning the head to their
  left turns the vector towards the image's right (the person faces us, so their left is our
  right): ``direction = (sin yaw, cos yaw)``; yaw +90 is ``(1, 0)``, -90 is ``(-1, 0)``.
  Pitch is ignored (the image plane has no up or down of the head).
* from the source's message when it gives one (``input_direction``, a Redis source of
  detection messages, :mod:`processor.redis_source`), normalised: it replaces both others;
* else from the person's motion: the foot point's velocity over the last ``MotionWindow``
  seconds, when its speed is at least ``MinSpeed`` box heights per second (someone walking
  faces where they go; someone standing still without a head pose has no direction).

**Engaged** ``attributes["engaged"]`` (bool): the angle between the direction and the vector
from the person's reference point (``Point``: the foot point by default) to the nearest point of
the target is at most ``AngleTolerance`` degrees.  The nearest point of a segment is the foot
of the perpendicular from the person, or the nearer end when the foot falls outside it.  So
with the default target (the bottom edge) a person is engaged when they face straight down the
image, that is the camera on the display, wherever they stand; someone walking along the
bottom of the image is not.  All people of a frame are computed at once (numpy).

**Time** (integer microseconds of the frame clock, sample and hold; see
:mod:`libs.post_processors._track_time`): each track's observed and engaged seconds, its first
and last seen time.  A track unseen for more than ``EndAfterSeconds`` has ended: it becomes an
``engagement`` record (:class:`libs.records.EngagementSession`: ``TrackId, FirstSeen,
LastSeen, ObservedSeconds, EngagedSeconds``, stamped at its last-seen time) and is counted in
the next ``engagement_log`` sample.  ``finish()`` ends every open track on the pipeline's
end-of-stream frame.

**Samples** ``engagement_log`` (:class:`libs.records.EngagementSample`, on every frame of the
pipeline's sample clock, each counting what happened since the previous sample, so any hour,
day or week is an exact sum):

* ``People``: tracks that ended (each person once, when they leave);
* ``EngagedPeople``: of those, the ones engaged for any time;
* ``EngagementMs``: their engaged time, milliseconds (each track rounded once);
* ``ObservedMs``: milliseconds of camera clock covered (frame gaps over ``MaxGapSeconds``
  excluded): the seconds the camera collected statistics.

From the reports: detected people ``SumPeople``, engaged people ``SumEngagedPeople``, total
engagement ``SumEngagementMs / 1000``, seconds observed ``SumObservedMs / 1000``, per hour,
day or week, and the average engagement ``SumEngagementMs / SumEngagedPeople / 1000`` exactly.

**Live figures** in ``frame.metrics``:

* ``engagement``: ``{"people": {track_id: {"engaged", "engagement_seconds", "last_seen"}},
  "totals": {"detected_people", "engaged_people", "total_engagement_seconds",
  "observed_seconds"}}`` since the camera started (open tracks included);
* ``engagement_window``: every ``UpdatePeriod`` seconds of camera clock (the reference
  service's ``db_update_period``), the last ``WindowSeconds`` (default ``UpdatePeriod``):
  ``{"from", "to", "unique_people", "engaged_people", "engagement_seconds", "person_ids",
  "engaged_ids"}``; the newest figures ride on every frame until the next update.

**Updates** ``engagement_update`` (:class:`libs.records.EngagementUpdate`), on the frame of each
window update: the window's figures, the totals, and the state ``{engaged, engagement seconds,
last seen}`` of every person seen in the window (tracks that ended within it included), for the
sinks on the event bus (Redis per-person keys, InfluxDB's real-time measurements).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from libs.clock import IntervalGate, aware
from libs.config.models import PluginConfig, form
from libs.frame import Frame
from libs.metrics.reports import Measure, RawLogSpec, ReportKind, register_source_spec
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.post_processors._track_time import (
    US_PER_S,
    FootHistory,
    elapsed_us,
    micros,
    ms_of,
)
from libs.records import (
    EngagementPerson,
    EngagementSample,
    EngagementSession,
    EngagementUpdate,
)

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig

ENGAGEMENT_LOG_FOLDER = "engagement_log"
ENGAGEMENT_COLUMNS = ("People", "EngagedPeople", "EngagementMs", "ObservedMs")
ENGAGEMENT_REPORT = ReportKind(
    "engagement", tuple(Measure(column, column) for column in ENGAGEMENT_COLUMNS),
    description=("People who left (People), those engaged with the camera's target "
                 "(EngagedPeople), their engagement (EngagementMs) and the camera time "
                 "observed (ObservedMs); average engagement = SumEngagementMs / "
                 "SumEngagedPeople."),
)
ENGAGEMENT_SPEC = register_source_spec(RawLogSpec(ENGAGEMENT_LOG_FOLDER, (ENGAGEMENT_REPORT,)))

_EPS = 1e-9


# ---------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------


def parse_target(text: str) -> np.ndarray:
    """``'x,y'`` -> ``(1, 2)``; ``'x1,y1 x2,y2'`` -> ``(2, 2)`` float64; ValueError else."""
    parts = text.split()
    if len(parts) not in (1, 2):
        raise ValueError(f"target {text!r} is not 'x,y' or 'x1,y1 x2,y2'")
    points = []
    for part in parts:
        xy = part.split(",")
        if len(xy) != 2:
            raise ValueError(f"target point {part!r} is not 'x,y'")
        try:
            x, y = float(xy[0]), float(xy[1])
        except ValueError as exc:
            raise ValueError(f"target point {part!r} is not two numbers") from exc
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"target point {part!r} is not finite")
        points.append((x, y))
    target = np.array(points, np.float64)
    if len(target) == 2 and np.allclose(target[0], target[1]):
        target = target[:1]  # a segment of length 0 is its point
    return target


def parse_camera_targets(text: str) -> dict[str, np.ndarray]:
    """``'cam1: x,y; cam2: x1,y1 x2,y2'`` -> ``{camera_id: target}``."""
    out: dict[str, np.ndarray] = {}
    for chunk in text.split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if ":" not in chunk:
            raise ValueError(f"{chunk!r} is not 'camera_id: x,y' or 'camera_id: x1,y1 x2,y2'")
        camera, coords = (c.strip() for c in chunk.split(":", 1))
        if not camera:
            raise ValueError(f"{chunk!r} has no camera id")
        if camera in out:
            raise ValueError(f"camera {camera!r} has two targets")
        out[camera] = parse_target(coords)
    return out


def format_target(target: np.ndarray | list[tuple[float, float]]) -> str:
    """A target as :func:`parse_target` reads it: ``'x,y'`` or ``'x1,y1 x2,y2'``."""
    points = np.asarray(target, np.float64).reshape(-1, 2)
    if len(points) not in (1, 2) or not np.isfinite(points).all():
        raise ValueError("a target is one point or two (a segment), finite")
    return " ".join(f"{_coord(x)},{_coord(y)}" for x, y in points)


def format_camera_targets(targets: dict[str, np.ndarray]) -> str:
    """``{camera_id: target}`` as :func:`parse_camera_targets` reads it."""
    return "; ".join(f"{camera}: {format_target(t)}" for camera, t in targets.items())


def _coord(value: float) -> str:
    text = f"{float(value):.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def bottom_edge(width: int, height: int) -> np.ndarray:
    """The default target: the image's bottom edge."""
    return np.array([[0.0, height - 1.0], [width - 1.0, height - 1.0]], np.float64)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0])


def _angle_deg(d: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle in degrees between unit vectors ``d`` and vectors ``v`` (0 where ``v`` is 0)."""
    dot = d[:, 0] * v[:, 0] + d[:, 1] * v[:, 1]
    angle = np.degrees(np.arctan2(np.abs(_cross(d, v)), dot))
    return np.where(np.hypot(v[:, 0], v[:, 1]) < _EPS, 0.0, angle)


def target_angles(points: np.ndarray, directions: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(N,)`` degrees between each direction and the target seen from each point.

    ``points`` and ``directions`` are ``(N, 2)`` (directions need not be unit length);
    ``target`` is ``(1, 2)`` (a point) or ``(2, 2)`` (a segment).  The angle is taken to the
    target's nearest point: the point itself, or on a segment the foot of the perpendicular
    from the person (an end when the foot falls outside).  0 for a person on the target; NaN
    where the direction is unknown (NaN or zero).
    """
    p = np.asarray(points, np.float64).reshape(-1, 2)
    d = np.asarray(directions, np.float64).reshape(-1, 2)
    length = np.hypot(d[:, 0], d[:, 1])
    known = np.isfinite(length) & (length > _EPS)
    unit = np.where(known[:, None], d / np.where(known, length, 1.0)[:, None], 0.0)
    t = np.asarray(target, np.float64).reshape(-1, 2)
    if len(t) == 1:
        nearest = np.broadcast_to(t[0], p.shape)
    else:
        seg = t[1] - t[0]
        s = np.clip(((p - t[0]) @ seg) / float(seg @ seg), 0.0, 1.0)
        nearest = t[0] + s[:, None] * seg
    v = nearest - p
    # Within half a pixel of the target: facing anything, the target is there.
    v = np.where((np.hypot(v[:, 0], v[:, 1]) <= 0.5)[:, None], 0.0, v)
    return np.where(known, _angle_deg(unit, v), np.nan)


def yaw_directions(yaw_deg: np.ndarray) -> np.ndarray:
    """``(N, 2)`` image-plane unit vectors from head yaw (+ = the person's left): facing the
    camera is ``(0, 1)`` (down the image), yaw +90 is ``(1, 0)``.  NaN rows for NaN yaw."""
    r = np.radians(np.asarray(yaw_deg, np.float64))
    return np.stack([np.sin(r), np.cos(r)], axis=1)


def motion_directions(
    velocity: np.ndarray, heights: np.ndarray, min_speed: float
) -> np.ndarray:
    """Unit vectors of ``velocity`` (pixels/s) where the speed is at least ``min_speed``
    box heights per second; NaN rows elsewhere."""
    v = np.asarray(velocity, np.float64).reshape(-1, 2)
    speed = np.hypot(v[:, 0], v[:, 1])
    h = np.maximum(np.asarray(heights, np.float64), 1.0)
    ok = np.isfinite(speed) & (speed > _EPS) & (speed >= min_speed * h)
    safe = np.where(ok, speed, 1.0)
    return np.where(ok[:, None], v / safe[:, None], np.nan)


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


class EngagementConfig(PluginConfig):
    """``[SourcePostProcessor_N] Name = engagement``."""

    target: str = Field(
        "",
        alias="Target",
        description="The target of every camera without a CameraTargets entry, in image "
        "pixels: a point 'x,y' or a segment 'x1,y1 x2,y2'. Empty: the bottom edge of the image "
        "(a camera mounted on the display).",
        json_schema_extra=form("'x,y' or 'x1,y1 x2,y2', or empty"),
    )
    camera_targets: str = Field(
        "",
        alias="CameraTargets",
        description="Targets per camera id, replacing Target for those cameras.",
        json_schema_extra=form("'camera_id: x,y; camera_id2: x1,y1 x2,y2', or empty"),
    )
    angle_tolerance: float = Field(
        30.0,
        alias="AngleTolerance",
        gt=0.0,
        le=180.0,
        description="A person is engaged when their direction is within this many degrees of "
        "the target.",
        json_schema_extra=form("degrees, more than 0 and at most 180"),
    )
    point: Literal["foot", "center"] = Field(
        "foot",
        alias="Point",
        description="The person's point the target is seen from: the bottom centre of the box "
        "(foot) or its centre.",
        json_schema_extra=form("foot or center"),
    )
    motion_window: float = Field(
        1.0,
        alias="MotionWindow",
        gt=0.0,
        description="Seconds of track history whose displacement gives the motion direction.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    min_speed: float = Field(
        0.2,
        alias="MinSpeed",
        ge=0.0,
        description="Least speed, in box heights per second, for the motion to give a "
        "direction (slower people without a head pose have none).",
        json_schema_extra=form("a number >= 0"),
    )
    max_gap_seconds: float = Field(
        2.0,
        alias="MaxGapSeconds",
        gt=0.0,
        description="A track (or the camera) unseen for longer than this does not count the "
        "gap as observed time.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    end_after_seconds: float = Field(
        3.0,
        alias="EndAfterSeconds",
        gt=0.0,
        description="A track unseen for longer than this has ended (keep it above the "
        "tracker's MaxLostSeconds).",
        json_schema_extra=form("a number of seconds > 0"),
    )
    update_period: float = Field(
        5.0,
        alias="UpdatePeriod",
        gt=0.0,
        description="Seconds of camera clock between two updates of the real-time window "
        "figures (db_update_period).",
        json_schema_extra=form("a number of seconds > 0"),
    )
    window_seconds: float = Field(
        0.0,
        alias="WindowSeconds",
        ge=0.0,
        description="Length of the real-time window in seconds; 0 uses UpdatePeriod.",
        json_schema_extra=form("a number of seconds >= 0"),
    )

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if value:
            parse_target(value)
        return value

    @field_validator("camera_targets")
    @classmethod
    def _camera_targets(cls, value: str) -> str:
        parse_camera_targets(value)
        return value

    def cross_check(self, config: LookoutConfig) -> list[tuple[str | None, str | None, str]]:
        if not self.enabled:
            return []
        known = {s.id for s in config.sources}
        unknown = sorted(set(parse_camera_targets(self.camera_targets)) - known)
        if unknown:
            return [(None, "CameraTargets", f"no camera {', '.join(map(repr, unknown))}")]
        return []


# ---------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------


@dataclass
class TrackEngagement:
    """One track's engagement so far (microseconds)."""

    track_id: int
    first_seen: datetime
    last_seen: datetime
    observed_us: int = 0
    engaged_us: int = 0
    engaged: bool = False  # the state at last_seen, held until the next sighting


@dataclass
class _Pending:
    """Ended tracks not yet in a raw-log row."""

    people: int = 0
    engaged_people: int = 0
    engagement_ms: int = 0


@POST_PROCESSORS.register("engagement")
class Engagement(PostProcessor):
    STATE = (
        "motion", "updates", "tracks", "pending", "observed_us", "published_observed_ms",
        "last_frame", "ended_people", "ended_engaged", "ended_engaged_us", "recent",
        "window_figures", "ended_engaged_us_of",
    )
    Config: ClassVar[type[PluginConfig]] = EngagementConfig
    phase = "after_tracker"

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        if not isinstance(config, EngagementConfig):
            config = EngagementConfig.model_validate(config.model_dump(by_alias=True))
        super().__init__(config, source, app)
        self.settings = config
        per_camera = parse_camera_targets(config.camera_targets)
        self.target: np.ndarray | None = per_camera.get(
            source.id, parse_target(config.target) if config.target else None
        )
        self.tolerance = float(config.angle_tolerance)
        self.max_gap_us = micros(config.max_gap_seconds)
        self.end_after_us = micros(config.end_after_seconds)
        self.window = timedelta(seconds=config.window_seconds or config.update_period)
        self.tz = app.app.tzinfo
        self.motion = FootHistory(config.motion_window)
        self.updates = IntervalGate(config.update_period)
        self.tracks: dict[int, TrackEngagement] = {}
        self.pending = _Pending()
        self.observed_us = 0
        self.published_observed_ms = 0
        self.last_frame: datetime | None = None
        # Totals of ended tracks, for the running totals.
        self.ended_people = 0
        self.ended_engaged = 0
        self.ended_engaged_us = 0
        # (time, track id, engaged now, engaged microseconds credited at this frame)
        self.recent: deque[tuple[datetime, int, bool, int]] = deque()
        self.window_figures: dict[str, Any] | None = None
        # Tracks that ended, while they may still be in the window: id -> engaged us.
        self.ended_engaged_us_of: dict[int, int] = {}

    # -- per frame ----------------------------------------------------------------------

    def target_for(self, frame: Frame) -> np.ndarray:
        if self.target is not None:
            return self.target
        return bottom_edge(frame.width, frame.height)

    def directions(self, frame: Frame) -> np.ndarray:
        """``(N, 2)`` directions: head yaw where known, else motion, else NaN."""
        dets = frame.detections
        velocity, heights = self.motion.velocity(dets.track_ids)
        direction = motion_directions(velocity, heights, self.settings.min_speed)
        yaw = dets.attributes.get("head_yaw")
        if yaw is not None:
            head = yaw_directions(np.asarray(yaw, np.float64).reshape(len(dets)))
            known = np.isfinite(head).all(axis=1)
            direction = np.where(known[:, None], head, direction)
        given = dets.attributes.get("input_direction")  # from the source's messages (Redis)
        if given is not None:
            d = np.asarray(given, np.float64).reshape(len(dets), 2)
            length = np.hypot(d[:, 0], d[:, 1])
            known = np.isfinite(length) & (length > _EPS)
            unit = d / np.where(known, length, 1.0)[:, None]
            direction = np.where(known[:, None], unit, direction)
        return direction

    def process(self, frame: Frame) -> Frame:
        ts = aware(frame.timestamp, self.tz)
        dets = frame.detections
        ids = dets.track_ids
        tracked = ids >= 0
        points = dets.foot_points() if self.settings.point == "foot" else dets.centers()
        self.motion.update(ts, ids[tracked], dets.foot_points()[tracked], dets.heights()[tracked])
        direction = self.directions(frame)
        direction[~tracked] = np.nan
        angle = target_angles(points, direction, self.target_for(frame))
        engaged = np.nan_to_num(angle, nan=np.inf) <= self.tolerance + 1e-9
        dets.attributes["direction"] = direction.astype(np.float32)
        dets.attributes["engaged"] = engaged

        if self.last_frame is not None:
            step = elapsed_us(self.last_frame, ts)
            if 0 < step <= self.max_gap_us:
                self.observed_us += step
        self.last_frame = ts
        people: dict[int, dict[str, Any]] = {}
        for k in np.flatnonzero(tracked).tolist():
            tid = int(ids[k])
            track = self.tracks.get(tid)
            credit = 0
            if track is None:
                track = self.tracks[tid] = TrackEngagement(tid, ts, ts)
            else:
                gap = elapsed_us(track.last_seen, ts)
                if 0 < gap <= self.max_gap_us:
                    track.observed_us += gap
                    if track.engaged:
                        credit = gap
                        track.engaged_us += gap
                track.last_seen = ts
            track.engaged = bool(engaged[k])
            self.recent.append((ts, tid, track.engaged, credit))
            people[tid] = {
                "engaged": track.engaged,
                "engagement_seconds": track.engaged_us / US_PER_S,
                "last_seen": ts,
            }
        self._end_tracks(frame, ts)
        if frame.sample_due:
            self._sample(frame)
        self._update_window(ts, frame)
        frame.metrics["engagement"] = {"people": people, "totals": self.totals()}
        if self.window_figures is not None:
            frame.metrics["engagement_window"] = self.window_figures
        return frame

    # -- tracks that end ----------------------------------------------------------------

    def _end(self, frame: Frame, track: TrackEngagement) -> EngagementSession:
        del self.tracks[track.track_id]
        self.motion.forget([track.track_id])
        engaged_ms = ms_of(track.engaged_us)
        self.pending.people += 1
        self.ended_people += 1
        self.ended_engaged_us += track.engaged_us
        self.ended_engaged_us_of[track.track_id] = track.engaged_us
        if track.engaged_us > 0:
            self.pending.engaged_people += 1
            self.pending.engagement_ms += engaged_ms
            self.ended_engaged += 1
        return frame.emit(
            EngagementSession,
            timestamp=track.last_seen,
            track_id=track.track_id,
            first_seen=track.first_seen,
            last_seen=track.last_seen,
            observed_seconds=track.observed_us / US_PER_S,
            engaged_seconds=engaged_ms / 1000,
        )

    def _end_tracks(self, frame: Frame, now: datetime) -> None:
        gone = [
            t for t in self.tracks.values() if elapsed_us(t.last_seen, now) > self.end_after_us
        ]
        for t in sorted(gone, key=lambda t: (t.last_seen, t.track_id)):
            self._end(frame, t)

    def _counts(self) -> dict[str, Any]:
        """The counts since the previous sample."""
        return {
            "people": self.pending.people,
            "engaged_people": self.pending.engaged_people,
            "engagement_ms": self.pending.engagement_ms,
            "observed_ms": ms_of(self.observed_us) - self.published_observed_ms,
        }

    def _sample(self, frame: Frame) -> EngagementSample:
        """Emit the ``engagement_log`` sample (counts since the previous one; reset)."""
        sample = frame.emit(EngagementSample, **self._counts())
        self.published_observed_ms = ms_of(self.observed_us)
        self.pending = _Pending()
        return sample

    def totals(self) -> dict[str, Any]:
        """Since the camera started, open tracks included."""
        open_engaged = [t.engaged_us for t in self.tracks.values() if t.engaged_us > 0]
        return {
            "detected_people": self.ended_people + len(self.tracks),
            "engaged_people": self.ended_engaged + len(open_engaged),
            "total_engagement_seconds": (self.ended_engaged_us + sum(open_engaged)) / US_PER_S,
            "observed_seconds": self.observed_us / US_PER_S,
        }

    # -- the real-time window -----------------------------------------------------------

    def _update_window(self, now: datetime, frame: Frame | None = None) -> None:
        start = now - self.window
        while self.recent and self.recent[0][0] <= start:
            self.recent.popleft()
        if not self.updates.due(now):
            return
        seen: set[int] = set()
        engaged_ids: set[int] = set()
        credited = 0
        last: dict[int, tuple[datetime, bool]] = {}
        for when, tid, engaged, credit in self.recent:
            seen.add(tid)
            if engaged or credit:
                engaged_ids.add(tid)
            credited += credit
            last[tid] = (when, engaged)
        for tid in [t for t in self.ended_engaged_us_of if t not in seen]:
            del self.ended_engaged_us_of[tid]  # out of the window: not needed again
        self.window_figures = {
            "from": start,
            "to": now,
            "unique_people": len(seen),
            "engaged_people": len(engaged_ids),
            "engagement_seconds": credited / US_PER_S,
            "person_ids": sorted(seen),
            "engaged_ids": sorted(engaged_ids),
        }
        if frame is not None:
            self._emit_update(frame, start, now, last)

    def _emit_update(self, frame: Frame, start: datetime, now: datetime,
                     last: dict[int, tuple[datetime, bool]]) -> None:
        """The ``engagement_update`` record of the window just computed."""
        figures = self.window_figures
        assert figures is not None
        people = []
        for tid in figures["person_ids"]:
            when, engaged = last[tid]
            track = self.tracks.get(tid)
            engaged_us = track.engaged_us if track is not None else \
                self.ended_engaged_us_of.get(tid, 0)
            people.append(EngagementPerson(track_id=tid, engaged=engaged,
                                           engagement_seconds=engaged_us / US_PER_S,
                                           last_seen=when))
        totals = self.totals()
        frame.emit(
            EngagementUpdate,
            timestamp=now,
            window_from=start,
            unique_people=figures["unique_people"],
            engaged_people=figures["engaged_people"],
            engagement_seconds=figures["engagement_seconds"],
            person_ids=tuple(figures["person_ids"]),
            engaged_ids=tuple(figures["engaged_ids"]),
            detected_people=totals["detected_people"],
            total_engaged_people=totals["engaged_people"],
            total_engagement_seconds=totals["total_engagement_seconds"],
            observed_seconds=totals["observed_seconds"],
            people=tuple(people),
        )

    # -- the end of the run ---------------------------------------------------------------

    def finish(self, end: Frame) -> None:
        """End of the stream: the open tracks end; their records and the last sample go on
        ``end`` (nothing when the camera never showed a frame or there is nothing new)."""
        if self.last_frame is None:
            return
        self.last_frame = None
        tracks = sorted(self.tracks.values(), key=lambda t: (t.last_seen, t.track_id))
        for t in tracks:
            self._end(end, t)
        if tracks or any(self._counts().values()):
            self._sample(end)
