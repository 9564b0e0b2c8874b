"""``audience``: people passing by and people interested, per track (after the tracker).

The audience measures of Angus.ai's audience analytics, from the tracks of one camera.  Per
track, with the frame clock (integer microseconds, sample and hold, gaps over
``MaxGapSeconds`` not counted; see :mod:`libs.post_processors._track_time`):

* **present**: time between the track's sightings;
* **stopped**: time while the person stood still, that is while the foot point's speed over
  the last ``MotionWindow`` seconds was below ``StopSpeed`` *box heights* per second (relative
  to the person's own box height, so near and far people and any resolution are alike: 0.2
  is about 0.35 m/s for a 1.7 m person; someone walking does 0.6-1).  The first sighting
  has no speed yet and counts as moving;
* **looking**: time while the ``looking`` attribute (the ``head_pose`` stage) was true; where a
  frame has no ``looking`` but has ``engaged`` (the ``engagement`` stage), that; where a
  frame has neither, the track's looking time is unknown (empty in the event).

When a track ends (unseen for more than ``EndAfterSeconds``, or at ``close()``) it is
classified:

* **passing by**: present >= ``PassingSeconds`` (1 s);
* **interested**: stopped >= ``StopSeconds`` (3 s) *and* looking > ``LookSeconds`` (1 s); an
  unknown looking time is never interested.

Event ``audience`` per track, logged at its last-seen time:
``TrackId, Present, Stopped, Looking, PassingBy, Interested, AgeBand, Gender, Emotion`` (times in
seconds with 3 decimals, flags 0/1).  The last three come from the ``demographics`` stage's
``age``/``gender``/``emotion`` attributes (the track's latest known values): empty when no frame
of the track had them (demographics off), ``unknown`` when it had them without an answer.

Raw log ``audience_log``: one row per logger ``TimeInterval``, each counting the tracks that
ended since the previous row, so hourly, daily, weekly and whole-range figures are exact sums:
``People`` (all ended tracks), ``PassingBy``, ``Interested``, ``InterestedStopMs`` and
``InterestedLookMs`` (stop and looking time of the interested, milliseconds), and the
interested by age band (``InterestedAge0To17``, ``18To34``, ``35To54``, ``55Plus``,
``AgeUnknown``), gender (``InterestedMale``, ``Female``, ``GenderUnknown``) and emotion
(``InterestedAngry`` ... ``InterestedNeutral``, ``EmotionUnknown``).  The breakdown columns
count only tracks that carried demographics attributes, so they are all 0 when demographics are
off, and each group sums to ``Interested`` when they are on.  The conversion ratio is
``Interested / PassingBy``; the average stop (attention) time of the interested is
``InterestedStopMs (InterestedLookMs) / Interested``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from libs.clock import aware
from libs.config.models import PluginConfig, form
from libs.frame import EMOTIONS, Frame
from libs.metrics.reports import Measure, RawLogSpec, ReportKind, register_source_spec
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.post_processors._track_time import (
    US_PER_S,
    FootHistory,
    elapsed_us,
    micros,
    ms_of,
)
from libs.records import AudienceSample, AudienceSession, fields_of

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig

AUDIENCE_LOG_FOLDER = "audience_log"
# (band name, first age, first age of the next band); ages are years, NaN unknown.
AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("0-17", 0.0, 18.0),
    ("18-34", 18.0, 35.0),
    ("35-54", 35.0, 55.0),
    ("55+", 55.0, math.inf),
)
UNKNOWN = "unknown"
GENDERS = ("male", "female")


def _band_column(band: str) -> str:
    low, _, high = band.partition("-")
    return f"Age{low.rstrip('+')}Plus" if band.endswith("+") else f"Age{low}To{high}"


AGE_COLUMNS = {band: f"Interested{_band_column(band)}" for band, _, _ in AGE_BANDS}
AGE_COLUMNS[UNKNOWN] = "InterestedAgeUnknown"
GENDER_COLUMNS = {"male": "InterestedMale", "female": "InterestedFemale",
                  UNKNOWN: "InterestedGenderUnknown"}
EMOTION_COLUMNS = {e: f"Interested{e.capitalize()}" for e in EMOTIONS}
EMOTION_COLUMNS[UNKNOWN] = "InterestedEmotionUnknown"
BREAKDOWNS: dict[str, dict[str, str]] = {
    "age": AGE_COLUMNS, "gender": GENDER_COLUMNS, "emotion": EMOTION_COLUMNS,
}
AUDIENCE_COLUMNS: tuple[str, ...] = (
    "People", "PassingBy", "Interested", "InterestedStopMs", "InterestedLookMs",
    *AGE_COLUMNS.values(), *GENDER_COLUMNS.values(), *EMOTION_COLUMNS.values(),
)
# audience_log column -> AudienceSample field (the record names its columns).
SAMPLE_FIELDS = {f.metadata["csv"]: f.name for f in fields_of(AudienceSample)}
assert tuple(SAMPLE_FIELDS) == AUDIENCE_COLUMNS, "AudienceSample columns differ from the log's"
AUDIENCE_REPORT = ReportKind(
    "audience", tuple(Measure(column, column) for column in AUDIENCE_COLUMNS),
    description=("People who left, passing by, interested (stopped and looking), the stop "
                 "and attention time of the interested (ms) and the interested per age "
                 "band, gender and emotion (when demographics are enabled)."),
)
AUDIENCE_SPEC = register_source_spec(RawLogSpec(AUDIENCE_LOG_FOLDER, (AUDIENCE_REPORT,)))


def age_band(age: float) -> str:
    """The band of ``age`` years; ``unknown`` for NaN."""
    if not math.isfinite(age):
        return UNKNOWN
    for band, low, high in AGE_BANDS:
        if low <= age < high:
            return band
    return AGE_BANDS[0][0] if age < 0 else UNKNOWN


class AudienceConfig(PluginConfig):
    """``[SourcePostProcessor_N] Name = audience``."""

    passing_seconds: float = Field(
        1.0,
        alias="PassingSeconds",
        ge=0.0,
        description="A person present at least this many seconds is passing by.",
        json_schema_extra=form("a number of seconds >= 0"),
    )
    stop_seconds: float = Field(
        3.0,
        alias="StopSeconds",
        ge=0.0,
        description="Least time stopped, in seconds, of an interested person.",
        json_schema_extra=form("a number of seconds >= 0"),
    )
    look_seconds: float = Field(
        1.0,
        alias="LookSeconds",
        ge=0.0,
        description="An interested person looked for more than this many seconds.",
        json_schema_extra=form("a number of seconds >= 0"),
    )
    stop_speed: float = Field(
        0.2,
        alias="StopSpeed",
        gt=0.0,
        description="A person moving slower than this many box heights per second (their own "
        "box height) has stopped.",
        json_schema_extra=form("a number > 0"),
    )
    motion_window: float = Field(
        1.0,
        alias="MotionWindow",
        gt=0.0,
        description="Seconds of track history whose displacement gives the speed.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    max_gap_seconds: float = Field(
        2.0,
        alias="MaxGapSeconds",
        gt=0.0,
        description="A track unseen for longer than this does not count the gap as present.",
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


@dataclass
class TrackAudience:
    """One track's times (microseconds) and its latest demographics."""

    track_id: int
    first_seen: datetime
    last_seen: datetime
    present_us: int = 0
    stopped_us: int = 0
    looking_us: int = 0
    looking_known: bool = False
    stopped: bool = False  # states at last_seen, held until the next sighting
    looking: bool = False
    demographics: bool = False
    age: float = math.nan
    gender: int = -1
    emotion: int = -1


@dataclass(frozen=True)
class Verdict:
    """A finished track, classified."""

    track: TrackAudience
    passing_by: bool
    interested: bool

    @property
    def age_band(self) -> str:
        return age_band(self.track.age)

    @property
    def gender(self) -> str:
        g = self.track.gender
        return GENDERS[0] if g == 1 else GENDERS[1] if g == 0 else UNKNOWN

    @property
    def emotion(self) -> str:
        e = self.track.emotion
        return EMOTIONS[e] if 0 <= e < len(EMOTIONS) else UNKNOWN


@dataclass
class _Pending:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AUDIENCE_COLUMNS, 0))


@POST_PROCESSORS.register("audience")
class Audience(PostProcessor):
    STATE = ("motion", "tracks", "pending", "last_frame")
    Config: ClassVar[type[PluginConfig]] = AudienceConfig
    phase = "after_tracker"

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        if not isinstance(config, AudienceConfig):
            config = AudienceConfig.model_validate(config.model_dump(by_alias=True))
        super().__init__(config, source, app)
        self.settings = config
        self.tz = app.app.tzinfo
        self.passing_us = micros(config.passing_seconds)
        self.stop_us = micros(config.stop_seconds)
        self.look_us = micros(config.look_seconds)
        self.max_gap_us = micros(config.max_gap_seconds)
        self.end_after_us = micros(config.end_after_seconds)
        self.motion = FootHistory(config.motion_window)
        self.tracks: dict[int, TrackAudience] = {}
        self.pending = _Pending()
        self.last_frame: datetime | None = None

    def classify(self, track: TrackAudience) -> Verdict:
        interested = (
            track.looking_known
            and track.stopped_us >= self.stop_us
            and track.looking_us > self.look_us
        )
        return Verdict(track, track.present_us >= self.passing_us, interested)

    def stopped(self, frame: Frame) -> np.ndarray:
        """``(N,)`` whether each person stands still (unknown speed: no)."""
        velocity, heights = self.motion.velocity(frame.detections.track_ids)
        speed = np.hypot(velocity[:, 0], velocity[:, 1])
        limit = self.settings.stop_speed * np.maximum(np.nan_to_num(heights, nan=1.0), 1.0)
        return np.asarray(np.isfinite(speed) & (speed < limit))

    @staticmethod
    def looking(frame: Frame) -> np.ndarray | None:
        """``(N,)`` looking flags from ``looking``, else ``engaged``; None when neither."""
        attrs = frame.detections.attributes
        for key in ("looking", "engaged"):
            flags = attrs.get(key)
            if flags is not None:
                return np.asarray(flags, bool).reshape(len(frame.detections))
        return None

    def process(self, frame: Frame) -> Frame:
        ts = aware(frame.timestamp, self.tz)
        dets = frame.detections
        ids = dets.track_ids
        tracked = ids >= 0
        self.motion.update(ts, ids[tracked], dets.foot_points()[tracked], dets.heights()[tracked])
        still = self.stopped(frame)
        looking = self.looking(frame)
        attrs = dets.attributes
        ages, genders, emotions = attrs.get("age"), attrs.get("gender"), attrs.get("emotion")
        has_demographics = ages is not None or genders is not None or emotions is not None
        self.last_frame = ts
        for k in np.flatnonzero(tracked).tolist():
            tid = int(ids[k])
            track = self.tracks.get(tid)
            if track is None:
                track = self.tracks[tid] = TrackAudience(tid, ts, ts)
            else:
                gap = elapsed_us(track.last_seen, ts)
                if 0 < gap <= self.max_gap_us:
                    track.present_us += gap
                    if track.stopped:
                        track.stopped_us += gap
                    if track.looking:
                        track.looking_us += gap
                track.last_seen = ts
            track.stopped = bool(still[k])
            track.looking = bool(looking[k]) if looking is not None else False
            track.looking_known |= looking is not None
            if has_demographics:
                track.demographics = True
                if ages is not None and math.isfinite(float(ages[k])):
                    track.age = float(ages[k])
                if genders is not None and int(genders[k]) >= 0:
                    track.gender = int(genders[k])
                if emotions is not None and int(emotions[k]) >= 0:
                    track.emotion = int(emotions[k])
        gone = [t for t in self.tracks.values() if elapsed_us(t.last_seen, ts) > self.end_after_us]
        for t in sorted(gone, key=lambda t: (t.last_seen, t.track_id)):
            self._end(frame, t)
        if frame.sample_due:
            self._sample(frame)
        return frame

    def _end(self, frame: Frame, track: TrackAudience) -> AudienceSession:
        """The track ended: its ``audience`` record, and its counts join the next sample."""
        del self.tracks[track.track_id]
        self.motion.forget([track.track_id])
        verdict = self.classify(track)
        counts = self.pending.counts
        counts["People"] += 1
        counts["PassingBy"] += int(verdict.passing_by)
        if verdict.interested:
            counts["Interested"] += 1
            counts["InterestedStopMs"] += ms_of(track.stopped_us)
            counts["InterestedLookMs"] += ms_of(track.looking_us)
            if track.demographics:
                counts[AGE_COLUMNS[verdict.age_band]] += 1
                counts[GENDER_COLUMNS[verdict.gender]] += 1
                counts[EMOTION_COLUMNS[verdict.emotion]] += 1
        demo = track.demographics
        return frame.emit(
            AudienceSession,
            timestamp=track.last_seen,
            track_id=track.track_id,
            present=track.present_us / US_PER_S,
            stopped=track.stopped_us / US_PER_S,
            looking=track.looking_us / US_PER_S if track.looking_known else None,
            passing_by=verdict.passing_by,
            interested=verdict.interested,
            age_band=verdict.age_band if demo else None,
            gender=verdict.gender if demo else None,
            emotion=verdict.emotion if demo else None,
        )

    def _sample(self, frame: Frame) -> AudienceSample:
        """Emit the ``audience_log`` sample (tracks ended since the previous one; reset)."""
        counts = self.pending.counts
        self.pending = _Pending()
        fields: dict[str, Any] = {SAMPLE_FIELDS[column]: n for column, n in counts.items()}
        return frame.emit(AudienceSample, **fields)

    def finish(self, end: Frame) -> None:
        """End of the stream: the open tracks end; their records and the last sample go on
        ``end`` (nothing when there is nothing to record)."""
        if self.last_frame is None:
            return
        self.last_frame = None
        tracks = sorted(self.tracks.values(), key=lambda t: (t.last_seen, t.track_id))
        for t in tracks:
            self._end(end, t)
        if tracks or any(self.pending.counts.values()):
            self._sample(end)
