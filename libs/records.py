"""Typed records: everything the pipeline hands to its sinks.

Three categories of record leave a camera's (or an area's) pipeline:

- **samples**, one per log kind every sample-clock tick (the rows of today's raw CSV logs:
  ``objects_log``, ``presence_log``, ``dwell_log``...); their ``kind`` is the log's folder name;
- **events**, as they happen (a line crossing, a dwell session that closed, a distancing
  violation that started...); where the file logger already writes ``events/<kind>/``, the
  kind is that folder name;
- the **frame summary**, one per processed frame (the live figures).

Every record is a frozen, slotted dataclass with a common envelope (``schema``, ``kind``,
``id``, ``source``, ``source_id``, ``timestamp``) and the fields of its kind.  Values are
checked and normalised when the record is made (numpy scalars become ``int``/``float``/
``bool``, lists become tuples, a time without a time zone or a NaN is refused), so a stage's
mistake fails where it is made, not in a sink.  :meth:`Record.to_json` gives the stable JSON
form (sorted keys, compact, no NaN, times as ISO 8601 with their offset) and
:meth:`Record.from_json` reads it back, refusing unknown kinds, unknown or missing fields and
newer schema versions.  :data:`RECORD_TYPES` maps each kind to its class.

Ids (:class:`RecordIds`): 32 lower-case hex digits, a 128-bit value made of an 80-bit random
prefix drawn once per generator from the operating system's CSPRNG and a 48-bit sequence
number.  One generator per pipeline run: ids of one run never repeat (the sequence), ids of
two runs differ unless both drew the same 80-bit prefix (probability below ``R**2 / 2**81``
for ``R`` runs: 4e-13 for a million runs).  No clock is involved, so neither a clock set back
nor a recording processed twice can make two ids equal.  A recording's pipeline uses
:meth:`RecordIds.for_recording` instead: ids that follow from the record's place (camera,
recordings, frame, kind, rank), so a resumed run gives a record it produces again its id.

``docs/events.md`` documents every kind and field; ``tests/test_records.py`` fails when it and
this module disagree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import re
import secrets
import threading
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Literal, Self, TypeVar

import numpy as np

SCHEMA_VERSION = 1
ENVELOPE = ("schema", "kind", "id", "source", "source_id", "timestamp")
CATEGORIES = ("sample", "event", "summary")
ID_PATTERN = re.compile(r"[0-9a-f]{32}")
PREFIX_BITS = 80
SEQUENCE_BITS = 48


class RecordError(ValueError):
    """A record that cannot be made or read: the message names the kind and the field."""


class UnknownKindError(RecordError):
    """A kind no record type is registered for."""


# ---------------------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------------------


class RecordIds:
    """Makes record ids: ``{prefix:020x}{sequence:012x}`` (module docstring).

    Make one per pipeline run (or per process); it is safe to share between threads.
    ``prefix`` is for tests only: a fixed prefix makes ids reproducible.
    """

    def __init__(self, prefix: int | None = None) -> None:
        if prefix is None:
            prefix = secrets.randbits(PREFIX_BITS)
        if not 0 <= prefix < 1 << PREFIX_BITS:
            raise ValueError(f"prefix must be an unsigned {PREFIX_BITS}-bit integer")
        self.prefix = prefix
        self._head = f"{prefix:020x}"
        self._next = 0
        self._lock = threading.Lock()
        self._key: bytes | None = None  # for_recording: ids from the record's place
        self._frame: int | None = None
        self._ranks: dict[str, int] = {}

    @classmethod
    def for_recording(cls, key: str) -> RecordIds:
        """Ids of a recording's records, the same whichever run makes them: the id of a
        record made with ``frame`` given is the first 128 bits of SHA-256 over ``key`` (the
        camera and the fingerprint of its recordings), the frame index, the kind and the
        record's rank among the records of that kind on that frame.  A run resumed after a
        crash that produces a record again (same frame, kind and rank) gives it the id it
        had; a record that comes out differently (a crossing one frame later) gets another,
        so an id never names two different records."""
        ids = cls()
        ids._key = hashlib.sha256(key.encode()).digest()
        return ids

    def __call__(self, kind: str = "", frame: int | None = None) -> str:
        if self._key is not None and frame is not None:
            with self._lock:
                if frame != self._frame:
                    self._frame, self._ranks = frame, {}
                rank = self._ranks.get(kind, 0)
                self._ranks[kind] = rank + 1
            return hashlib.sha256(b"%s|%d|%s|%d" % (self._key, frame, kind.encode(),
                                                     rank)).hexdigest()[:32]
        with self._lock:
            seq = self._next
            self._next += 1
        if seq >> SEQUENCE_BITS:
            raise RecordError("record id sequence exhausted; make a new RecordIds")
        return f"{self._head}{seq:012x}"


# ---------------------------------------------------------------------------------------
# Field metadata and value conversion
# ---------------------------------------------------------------------------------------


def col(csv: str = "", unit: str = "", *, default: Any = dataclasses.MISSING,
        default_factory: Any = dataclasses.MISSING) -> Any:
    """A record field: ``csv`` names today's CSV column it maps to, ``unit`` its unit."""
    return field(default=default, default_factory=default_factory,
                 metadata={"csv": csv, "unit": unit})


Converter = Callable[[Any, bool, str], Any]


def _fail(path: str, expected: str, value: Any) -> RecordError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return RecordError(f"{path}: expected {expected}, got {shown}")


def _int(value: Any, from_json: bool, path: str) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise _fail(path, "an integer", value)
    return int(value)


def _float(value: Any, from_json: bool, path: str) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise _fail(path, "a number", value)
    out = float(value)
    if not math.isfinite(out):
        raise _fail(path, "a finite number", value)
    return out


def _bool(value: Any, from_json: bool, path: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise _fail(path, "true or false", value)
    return bool(value)


def _str(value: Any, from_json: bool, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, "a string", value)
    return value


_OFFSETS: dict[timedelta, timezone] = {}


def _datetime(value: Any, from_json: bool, path: str) -> datetime:
    if from_json:
        if not isinstance(value, str):
            raise _fail(path, "an ISO 8601 time with its UTC offset", value)
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _fail(path, "an ISO 8601 time with its UTC offset", value) from None
    if not isinstance(value, datetime):
        raise _fail(path, "a datetime", value)
    offset = value.utcoffset() if value.tzinfo is not None else None
    if offset is None:
        raise _fail(path, "a time-zone-aware time (with a UTC offset)", value)
    if type(value.tzinfo) is not timezone:
        # A fixed offset, the one the time had: records compare by instant (even in the
        # repeated hour of a DST change) and carry no zone database object between processes.
        tz = _OFFSETS.get(offset)
        if tz is None:
            tz = _OFFSETS.setdefault(offset, timezone(offset))
        value = value.astimezone(tz)
    return value


def format_time(ts: datetime) -> str:
    """ISO 8601 with its offset: milliseconds, or microseconds when they are not whole."""
    spec = "milliseconds" if ts.microsecond % 1000 == 0 else "microseconds"
    return ts.isoformat(timespec=spec)


def _converter(tp: Any) -> Converter:
    """A function that checks and normalises a value of type ``tp``."""
    if tp is int:
        return _int
    if tp is float:
        return _float
    if tp is bool:
        return _bool
    if tp is str:
        return _str
    if tp is datetime:
        return _datetime
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        choices = args

        def literal(value: Any, from_json: bool, path: str) -> Any:
            if not isinstance(value, str) or value not in choices:
                raise _fail(path, "one of " + ", ".join(map(repr, choices)), value)
            return value

        return literal
    if origin in (typing.Union, types.UnionType):
        inner_types = [a for a in args if a is not type(None)]
        if len(inner_types) != 1 or len(args) != 2:
            raise TypeError(f"unsupported union {tp}")
        inner = _converter(inner_types[0])

        def optional(value: Any, from_json: bool, path: str) -> Any:
            return None if value is None else inner(value, from_json, path)

        return optional
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _converter(args[0])

            def variadic(value: Any, from_json: bool, path: str) -> tuple[Any, ...]:
                if not isinstance(value, list | tuple):
                    raise _fail(path, "a list", value)
                return tuple(item(v, from_json, f"{path}[{i}]") for i, v in enumerate(value))

            return variadic
        items = [_converter(a) for a in args]

        def fixed(value: Any, from_json: bool, path: str) -> tuple[Any, ...]:
            if not isinstance(value, list | tuple) or len(value) != len(items):
                raise _fail(path, f"a list of {len(items)}", value)
            return tuple(c(v, from_json, f"{path}[{i}]") for i, (c, v) in
                         enumerate(zip(items, value, strict=True)))

        return fixed
    if origin is dict:
        if args[0] is not str:
            raise TypeError(f"unsupported mapping {tp}: keys must be str")
        item = _converter(args[1])

        def mapping(value: Any, from_json: bool, path: str) -> dict[str, Any]:
            if not isinstance(value, Mapping):
                raise _fail(path, "an object", value)
            out: dict[str, Any] = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise _fail(path, "string keys", k)
                out[k] = item(v, from_json, f"{path}[{k!r}]")
            return out

        return mapping
    if isinstance(tp, type) and issubclass(tp, Struct):
        struct = tp

        def nested(value: Any, from_json: bool, path: str) -> Struct:
            if isinstance(value, struct):
                return value
            if isinstance(value, Mapping):
                return struct._build(value, from_json, path)
            raise _fail(path, f"a {struct.__name__}", value)

        return nested
    raise TypeError(f"unsupported record field type {tp!r}")


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Struct):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _refuse_constant(name: str) -> Any:
    raise RecordError(f"JSON constant {name} is not allowed in a record")


# ---------------------------------------------------------------------------------------
# Structs and records
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Struct:
    """A frozen value with checked fields: the base of records and of their nested parts."""

    _converters: ClassVar[dict[str, Converter]] = {}

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key, conv in type(self)._converters.items():
            value = getattr(self, key)
            out = conv(value, False, f"{name}.{key}")
            if out is not value:
                object.__setattr__(self, key, out)

    @classmethod
    def _build(cls, data: Mapping[str, Any], from_json: bool, path: str) -> Any:
        fields = cls._converters
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise RecordError(f"{path}: unknown field(s) {', '.join(unknown)}")
        required = {f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                    if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise RecordError(f"{path}: missing field(s) {', '.join(missing)}")
        values = {k: fields[k](v, from_json, f"{path}.{k}") for k, v in data.items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form: plain dicts, lists, numbers, strings and ISO 8601 times."""
        return {k: _encode(getattr(self, k)) for k in type(self)._converters}


S = TypeVar("S", bound=type[Struct])


@typing.dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(col,))
def struct(cls: S) -> S:
    """Class decorator for a nested part of a record."""
    made = dataclass(frozen=True, slots=True, kw_only=True)(cls)
    hints = typing.get_type_hints(made)
    made._converters = {f.name: _converter(hints[f.name])  # type: ignore[attr-defined]
                        for f in dataclasses.fields(made)}
    return made  # type: ignore[return-value]


@dataclass(frozen=True, slots=True, kw_only=True)
class Record(Struct):
    """The envelope every record carries; subclasses add the fields of their kind."""

    KIND: ClassVar[str] = ""
    CATEGORY: ClassVar[str] = ""
    SCHEMA: ClassVar[int] = SCHEMA_VERSION
    SOURCES: ClassVar[tuple[str, ...]] = ("camera",)

    id: str = field(metadata={"csv": "", "unit": "32 hex digits"})
    source: Literal["camera", "area"] = field(metadata={"csv": "", "unit": ""})
    source_id: str = field(metadata={"csv": "", "unit": ""})
    timestamp: datetime = field(metadata={"csv": "Timestamp", "unit": ""})

    def __post_init__(self) -> None:
        Struct.__post_init__(self)
        cls = type(self)
        if not cls.KIND:
            raise RecordError("Record is abstract: make one of the kinds in RECORD_TYPES")
        if not ID_PATTERN.fullmatch(self.id):
            raise _fail(f"{cls.__name__}.id", "32 lower-case hex digits", self.id)
        if self.source not in cls.SOURCES:
            raise _fail(f"{cls.__name__}.source", " or ".join(cls.SOURCES), self.source)
        if not self.source_id:
            raise _fail(f"{cls.__name__}.source_id", "a non-empty camera or area id", "")

    @property
    def kind(self) -> str:
        return type(self).KIND

    @property
    def schema(self) -> int:
        return type(self).SCHEMA

    def to_dict(self) -> dict[str, Any]:
        out = Struct.to_dict(self)
        out["schema"] = self.schema
        out["kind"] = self.kind
        return out

    def to_json(self) -> str:
        """Stable JSON: sorted keys, no spaces, UTF-8 text, no NaN."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The record of ``data`` (a :meth:`to_dict` form); the type is looked up by kind,
        and must be ``cls`` or one of its subclasses."""
        if not isinstance(data, Mapping):
            raise RecordError(f"a record must be a JSON object, got {type(data).__name__}")
        kind = data.get("kind")
        if not isinstance(kind, str):
            raise RecordError("record without a string 'kind'")
        target = record_type(kind)
        if not issubclass(target, cls):
            raise RecordError(f"kind {kind!r} is a {target.__name__}, not a {cls.__name__}")
        schema = data.get("schema")
        if isinstance(schema, bool) or not isinstance(schema, int):
            raise RecordError(f"{kind}: 'schema' must be an integer, got {schema!r}")
        if schema > target.SCHEMA:
            raise RecordError(f"{kind}: schema {schema} is newer than this reader's "
                              f"{target.SCHEMA}")
        if schema < 1:
            raise RecordError(f"{kind}: schema {schema} does not exist")
        body = {k: v for k, v in data.items() if k not in ("kind", "schema")}
        if schema < target.SCHEMA:
            body = target.upgrade(body, schema)
        return target._build(body, True, kind)  # type: ignore[no-any-return]

    @classmethod
    def upgrade(cls, body: dict[str, Any], schema: int) -> dict[str, Any]:
        """The fields of an older ``schema`` of this kind in the current layout (JSON form,
        envelope included).  A kind that raises its ``SCHEMA`` overrides this."""
        raise RecordError(f"{cls.KIND}: no upgrade from schema {schema} to {cls.SCHEMA}")

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """The record of ``text`` (a :meth:`to_json` form); :class:`RecordError` if not."""
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise RecordError(f"not JSON: {exc}") from None
        return cls.from_dict(data)


R = TypeVar("R", bound=type[Record])
_TYPES: dict[str, type[Record]] = {}
RECORD_TYPES: Mapping[str, type[Record]] = types.MappingProxyType(_TYPES)


@typing.dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(col,))
def record(kind: str, category: str, sources: tuple[str, ...] = ("camera",)) -> Callable[[R], R]:
    """Class decorator: makes a record type of ``kind`` and registers it."""
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {CATEGORIES}")

    def decorate(cls: R) -> R:
        if kind in _TYPES:
            raise ValueError(f"record kind {kind!r} registered twice")
        made = struct(cls)
        made.KIND = kind
        made.CATEGORY = category
        made.SOURCES = sources
        _TYPES[kind] = made
        return made

    return decorate


def record_type(kind: str) -> type[Record]:
    """The record class of ``kind``; :class:`UnknownKindError` names the known kinds."""
    try:
        return _TYPES[kind]
    except KeyError:
        raise UnknownKindError(
            f"unknown record kind {kind!r}; known: {', '.join(sorted(_TYPES))}"
        ) from None


# ---------------------------------------------------------------------------------------
# Nested parts
# ---------------------------------------------------------------------------------------


@struct
class DetectedObject(Struct):
    """One person of a frame (an element of ``objects_log.detections``)."""

    id: int = col(csv="id")
    bbox: tuple[float, float, float, float] = col(csv="bbox", unit="px")
    score: float = col(csv="score")
    violating: bool = col(csv="violating")


@struct
class LineCount(Struct):
    """Crossings of one counting line since the camera started."""

    in_count: int = col(unit="people")
    out_count: int = col(unit="people")


@struct
class ZoneCount(Struct):
    """People in one region now and entries into it since the camera started."""

    people: int = col(unit="people")
    entries: int = col(unit="entries")


@struct
class ZonePresence(Struct):
    """One region's figures of a ``presence_log`` row."""

    people: int = col(csv="People_<zone>", unit="people")
    entries: int = col(csv="Entries_<zone>", unit="entries")


@struct
class ZoneDwell(Struct):
    """One region's figures of a ``dwell_log`` row."""

    sessions: int = col(csv="Sessions_<zone>", unit="sessions")
    dwell_ms: int = col(csv="DwellMs_<zone>", unit="ms")
    longest_ms: int = col(csv="LongestMs_<zone>", unit="ms")
    loitering: int = col(csv="Loitering_<zone>", unit="events")


@struct
class Cluster(Struct):
    """One DBSCAN cluster of engaged positions (heatmap stage)."""

    position: tuple[float, float] = col(csv="position", unit="m or px")
    intensity: float = col(csv="intensity", unit="person-seconds")
    radius: float = col(csv="radius", unit="m or px")
    samples: int = col(csv="samples", unit="positions")
    image_position: tuple[float, float] | None = col(csv="image_position", unit="px", default=None)


@struct
class EngagementPerson(Struct):
    """One person's engagement state in an ``engagement_update`` (engagement stage)."""

    track_id: int = col()
    engaged: bool = col()
    engagement_seconds: float = col(unit="s")
    last_seen: datetime = col()


STRUCT_TYPES: tuple[type[Struct], ...] = (
    DetectedObject, LineCount, ZoneCount, ZonePresence, ZoneDwell, Cluster, EngagementPerson,
)

# ---------------------------------------------------------------------------------------
# Samples: one per log kind and sample-clock tick
# ---------------------------------------------------------------------------------------


@record("objects_log", "sample")
class ObjectsSample(Record):
    """A row of ``<camera>/objects_log/<date>.csv``."""

    frame: int = col(csv="Frame", unit="frame index")
    detected_objects: int = col(csv="DetectedObjects", unit="people")
    violating_objects: int = col(csv="ViolatingObjects", unit="people")
    violating_pairs: int = col(csv="ViolatingPairs", unit="pairs")
    occupancy: int = col(csv="Occupancy", unit="people")
    environment_score: float = col(csv="EnvironmentScore", unit="0..1")
    detections: tuple[DetectedObject, ...] = col(csv="Detections")
    violations_indexes: tuple[tuple[int, int], ...] = col(csv="ViolationsIndexes")


@record("presence_log", "sample")
class PresenceSample(Record):
    """A row of ``<camera>/presence_log/<date>.csv`` (``zones`` stage)."""

    people: int = col(csv="People", unit="people")
    entries: int = col(csv="Entries", unit="entries")
    zone_entries: int = col(csv="ZoneEntries", unit="entries")
    estimated_occupancy: int = col(csv="EstimatedOccupancy", unit="people")
    zones: dict[str, ZonePresence] = col(csv="People_<zone>, Entries_<zone>")


@record("dwell_log", "sample")
class DwellSample(Record):
    """A row of ``<camera>/dwell_log/<date>.csv`` (``dwell`` stage)."""

    sessions: int = col(csv="Sessions", unit="sessions")
    dwell_ms: int = col(csv="DwellMs", unit="ms")
    longest_ms: int = col(csv="LongestMs", unit="ms")
    loitering: int = col(csv="Loitering", unit="events")
    bucket1: int = col(csv="Bucket1", unit="sessions")
    bucket2: int = col(csv="Bucket2", unit="sessions")
    bucket3: int = col(csv="Bucket3", unit="sessions")
    bucket4: int = col(csv="Bucket4", unit="sessions")
    bucket5: int = col(csv="Bucket5", unit="sessions")
    zones: dict[str, ZoneDwell] = col(
        csv="Sessions_<zone>, DwellMs_<zone>, LongestMs_<zone>, Loitering_<zone>")


@record("audience_log", "sample")
class AudienceSample(Record):
    """A row of ``<camera>/audience_log/<date>.csv`` (``audience`` stage)."""

    people: int = col(csv="People", unit="people")
    passing_by: int = col(csv="PassingBy", unit="people")
    interested: int = col(csv="Interested", unit="people")
    interested_stop_ms: int = col(csv="InterestedStopMs", unit="ms")
    interested_look_ms: int = col(csv="InterestedLookMs", unit="ms")
    interested_age_0_to_17: int = col(csv="InterestedAge0To17", unit="people")
    interested_age_18_to_34: int = col(csv="InterestedAge18To34", unit="people")
    interested_age_35_to_54: int = col(csv="InterestedAge35To54", unit="people")
    interested_age_55_plus: int = col(csv="InterestedAge55Plus", unit="people")
    interested_age_unknown: int = col(csv="InterestedAgeUnknown", unit="people")
    interested_male: int = col(csv="InterestedMale", unit="people")
    interested_female: int = col(csv="InterestedFemale", unit="people")
    interested_gender_unknown: int = col(csv="InterestedGenderUnknown", unit="people")
    interested_angry: int = col(csv="InterestedAngry", unit="people")
    interested_disgust: int = col(csv="InterestedDisgust", unit="people")
    interested_fear: int = col(csv="InterestedFear", unit="people")
    interested_happy: int = col(csv="InterestedHappy", unit="people")
    interested_sad: int = col(csv="InterestedSad", unit="people")
    interested_surprise: int = col(csv="InterestedSurprise", unit="people")
    interested_neutral: int = col(csv="InterestedNeutral", unit="people")
    interested_emotion_unknown: int = col(csv="InterestedEmotionUnknown", unit="people")


@record("engagement_log", "sample")
class EngagementSample(Record):
    """A row of ``<camera>/engagement_log/<date>.csv`` (``engagement`` stage)."""

    people: int = col(csv="People", unit="people")
    engaged_people: int = col(csv="EngagedPeople", unit="people")
    engagement_ms: int = col(csv="EngagementMs", unit="ms")
    observed_ms: int = col(csv="ObservedMs", unit="ms")


@record("attention_log", "sample")
class AttentionSample(Record):
    """A row of ``<camera>/attention_log/<date>.csv`` (``head_pose`` stage)."""

    people: int = col(csv="People", unit="people")
    looking: int = col(csv="Looking", unit="people")


@record("facemask_log", "sample")
class FacemaskSample(Record):
    """A row of ``<camera>/facemask_log/<date>.csv`` (``facemask`` stage)."""

    with_mask: int = col(csv="WithMask", unit="people")
    without_mask: int = col(csv="WithoutMask", unit="people")
    no_face: int = col(csv="NoFace", unit="people")


@record("occupancy_log", "sample", sources=("area",))
class AreaOccupancySample(Record):
    """A row of ``<area>/occupancy_log/<date>.csv`` (area aggregation)."""

    occupancy: int = col(csv="Occupancy", unit="people")
    threshold: int = col(csv="Threshold", unit="people")
    violation: bool = col(csv="Violation")
    cameras: dict[str, int] = col(csv="Cameras", unit="people")


# ---------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------


@record("line_crossing", "event")
class LineCrossing(Record):
    """A tracked person crossed a counting line (``line_crossings/<date>.csv``)."""

    frame: int = col(csv="Frame", unit="frame index")
    line: str = col(csv="Line")
    track_id: int = col(csv="TrackId")
    direction: Literal["in", "out"] = col(csv="Direction")


@record("zone_entry", "event")
class ZoneEntry(Record):
    """A visit of a region started (``events/zone_entry``)."""

    zone: str = col(csv="Zone")
    track_id: int = col(csv="TrackId")


@record("zone_exit", "event")
class ZoneExit(Record):
    """A visit of a region ended (stamped at its exit)."""

    zone: str = col()
    track_id: int = col()
    enter: datetime = col()
    seconds: float = col(unit="s")


@record("dwell", "event")
class DwellSession(Record):
    """A dwell session closed (``events/dwell``); stamped at ``exit``."""

    zone: str = col(csv="Zone")
    track_id: int = col(csv="TrackId")
    enter: datetime = col(csv="Enter")
    exit: datetime = col(csv="Exit")
    seconds: float = col(csv="Seconds", unit="s")


@record("loitering", "event")
class Loitering(Record):
    """A session reached ``LoiterSeconds`` (``events/loitering``)."""

    zone: str = col(csv="Zone")
    track_id: int = col(csv="TrackId")
    enter: datetime = col(csv="Enter")
    seconds: float = col(csv="Seconds", unit="s")


@record("distancing_start", "event")
class DistancingStart(Record):
    """People came closer than the distance limit after a frame without a violation."""

    frame: int = col(unit="frame index")
    violating_objects: int = col(unit="people")
    violating_pairs: int = col(unit="pairs")
    track_ids: tuple[int, ...] = col()
    min_distance_cm: float | None = col(unit="cm", default=None)


@record("distancing_end", "event")
class DistancingEnd(Record):
    """The first frame without a violation after a violation started."""

    frame: int = col(unit="frame index")
    started: datetime = col()
    seconds: float = col(unit="s")
    max_violating_objects: int = col(unit="people")
    max_violating_pairs: int = col(unit="pairs")


@record("occupancy_over", "event", sources=("camera", "area"))
class OccupancyOver(Record):
    """Occupancy went above its threshold."""

    occupancy: int = col(unit="people")
    threshold: int = col(unit="people")


@record("occupancy_under", "event", sources=("camera", "area"))
class OccupancyUnder(Record):
    """Occupancy came back to its threshold or below."""

    occupancy: int = col(unit="people")
    threshold: int = col(unit="people")
    started: datetime = col()
    seconds: float = col(unit="s")
    peak: int = col(unit="people")


@record("engagement", "event")
class EngagementSession(Record):
    """A track the engagement stage followed ended (``events/engagement``)."""

    track_id: int = col(csv="TrackId")
    first_seen: datetime = col(csv="FirstSeen")
    last_seen: datetime = col(csv="LastSeen")
    observed_seconds: float = col(csv="ObservedSeconds", unit="s")
    engaged_seconds: float = col(csv="EngagedSeconds", unit="s")


@record("audience", "event")
class AudienceSession(Record):
    """A track the audience stage followed ended (``events/audience``)."""

    track_id: int = col(csv="TrackId")
    present: float = col(csv="Present", unit="s")
    stopped: float = col(csv="Stopped", unit="s")
    looking: float | None = col(csv="Looking", unit="s", default=None)
    passing_by: bool = col(csv="PassingBy")
    interested: bool = col(csv="Interested")
    age_band: Literal["0-17", "18-34", "35-54", "55+", "unknown"] | None = col(
        csv="AgeBand", default=None)
    gender: Literal["male", "female", "unknown"] | None = col(csv="Gender", default=None)
    emotion: Literal["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
                     "unknown"] | None = col(csv="Emotion", default=None)


@record("mask_state", "event")
class MaskState(Record):
    """A track's smoothed mask verdict changed."""

    track_id: int = col()
    mask: Literal["mask", "no_mask", "unknown"] = col()
    previous: Literal["mask", "no_mask", "unknown"] = col()


@record("camera_state", "event")
class CameraState(Record):
    """The camera's state changed (the states of ``GET /status``)."""

    state: Literal["idle", "running", "finished", "failed", "stopped", "connecting",
                   "reconnecting", "stalled", "degraded"] = col()
    previous: Literal["idle", "running", "finished", "failed", "stopped", "connecting",
                      "reconnecting", "stalled", "degraded"] | None = col(default=None)
    reason: str | None = col(default=None)


@record("clusters", "event")
class Clusters(Record):
    """The heatmap stage re-clustered the engaged positions (``events/clusters``)."""

    frame: int = col(csv="Frame", unit="frame index")
    space: Literal["floor", "image"] = col(csv="Space")
    eps: float = col(unit="m or px")
    min_samples: int = col(unit="positions")
    window_seconds: float = col(unit="s")
    clusters: tuple[Cluster, ...] = col(csv="Clusters")


@record("engagement_update", "event")
class EngagementUpdate(Record):
    """The engagement stage's live figures, every ``UpdatePeriod`` of the camera clock."""

    window_from: datetime = col()
    unique_people: int = col(unit="people")
    engaged_people: int = col(unit="people")
    engagement_seconds: float = col(unit="s")
    person_ids: tuple[int, ...] = col()
    engaged_ids: tuple[int, ...] = col()
    detected_people: int = col(unit="people")
    total_engaged_people: int = col(unit="people")
    total_engagement_seconds: float = col(unit="s")
    observed_seconds: float = col(unit="s")
    people: tuple[EngagementPerson, ...] = col()


# ---------------------------------------------------------------------------------------
# Per-frame summary
# ---------------------------------------------------------------------------------------


@record("frame_summary", "summary")
class FrameSummary(Record):
    """The live figures of one processed frame."""

    frame: int = col(csv="Frame", unit="frame index")
    detected_objects: int = col(csv="DetectedObjects", unit="people")
    violating_objects: int = col(csv="ViolatingObjects", unit="people")
    violating_pairs: int = col(csv="ViolatingPairs", unit="pairs")
    occupancy: int = col(csv="Occupancy", unit="people")
    occupancy_threshold: int = col(unit="people")
    environment_score: float = col(csv="EnvironmentScore", unit="0..1")
    min_distance_cm: float | None = col(unit="cm", default=None)
    estimated_occupancy: int | None = col(unit="people", default=None)
    line_counts: dict[str, LineCount] = col(default_factory=dict)
    zone_counts: dict[str, ZoneCount] = col(default_factory=dict)


def fields_of(cls: type[Struct]) -> list[dataclasses.Field[Any]]:
    """The fields of ``cls`` that are not the envelope's, in declaration order."""
    envelope = set(ENVELOPE)
    own = dataclasses.fields(cls)  # type: ignore[arg-type]
    if issubclass(cls, Record):
        return [f for f in own if f.name not in envelope]
    return list(own)
