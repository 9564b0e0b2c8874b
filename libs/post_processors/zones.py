"""``zones``: who is in each named region of a camera, who came in, and an occupancy estimate.

**Regions.**  A camera's ``Zones`` (regions of interest) and ``EntryZones`` (entrances) are
named image polygons (see :class:`libs.config.models.Zone`).  A person is in a region when
their foot point (bottom centre of the box) is, boundary included
(:func:`libs.geometry.points_in_polygon`, one vectorised test per region over everybody).
Every row gets the per-person attribute ``zones``: a tuple of the names of the regions its
foot point is in, ``Zones`` first then ``EntryZones``, each in configuration order (``()`` =
none).  A name listed in both keys with the same polygon is one region, and an entrance.

**Visits and entries.**  A track's *visit* of a region is a run of sightings inside it where
two consecutive sightings are at most ``GapTolerance`` seconds apart (frame clock: video time
for recordings), the same rule as the ``dwell`` post-processor's sessions.  An *entry* is the
start of a visit: the first sighting of the track inside the region, or the first after more
than ``GapTolerance`` seconds without one.  A box jittering across the edge, or a person
hidden for a moment, therefore enters once; someone who leaves and comes back later enters
again.  A track first seen inside a region (someone stepping through a door at the image
border) enters it.  A *sighting* is a row the tracker matched to a detection in this frame
(score > 0): the KalmanTracker's coasting rows (score 0, a predicted box) count in the
people-now figures but neither start nor extend a visit.  Each entry is an event
``zone_entry`` (``Zone``, ``TrackId``), logged by the ``file_system_logger`` to
``<camera dir>/events/zone_entry/<date>.csv``.

**Estimated occupancy** of the space behind the camera's counting lines, from the cumulative
``frame.metrics["line_counts"]`` of ``line_crossing`` (which must run before this step):
a running balance over all lines, ``balance = max(0, balance + ins - outs)`` updated at every
frame with that frame's new crossings.  Clamping at each step (rather than taking
``max(0, in - out)`` of the totals) means people who were already inside when counting began
and then walk out do not leave a debt that hides the next arrivals: the estimate never goes
negative and starts counting again from 0.  The same balance per line is also given.

**Output** in ``frame.metrics``:

- ``zone_counts``: ``{region: {"people": in it now, "entries": entries since start}}``;
- ``estimated_occupancy`` (int) and ``line_occupancy`` (``{line: int}``), when line counts
  are present;
- ``events``: the ``zone_entry`` events of the frame;
- ``samples["presence_log"]``: the raw-log row, written by the ``file_system_logger`` every
  ``TimeInterval`` to ``<camera dir>/presence_log/<date>.csv``.  Its counters run from one
  logged row to the next (this step mirrors the logger's row clock), so summing a column over
  the rows of an hour gives that hour's total.  Columns, report columns first:

  ``People``: people (tracked rows) in at least one of ``Zones``, all tracked people when the
  camera has no ``Zones``; ``Entries``: entries into ``EntryZones`` since the previous row
  (people passing through the entrances: the traffic count); ``ZoneEntries``: entries into
  ``Zones`` since the previous row; ``EstimatedOccupancy``: the line balance (0 without
  counting lines); then per region ``People_<name>`` and ``Entries_<name>``.

The ``presence`` report (hourly, daily, weekly, live) of ``presence_log`` gives per period
``SumEntries`` (people who came through the entrances), ``SumZoneEntries``, ``AvgPeople``,
``MaxPeople`` and ``Avg``/``MaxEstimatedOccupancy``.  The per-region columns stay in the raw
log (the report engine's columns are fixed, region names are per camera); the ``zone_entry``
events give per-region counts for any interval exactly.

**End of a run.**  Entries made after the last logged row are written by :meth:`Zones.close`
as one more ``presence_log`` row, straight to the file (the pipeline has closed its loggers by
then), or handed to an end-of-stream frame by :meth:`Zones.flush`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from libs.clock import IntervalGate, aware
from libs.config.models import PluginConfig, form
from libs.frame import Frame
from libs.geometry import points_in_polygon
from libs.metrics.reports import Measure, RawLogSpec, ReportKind, register_source_spec
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.storage import sample_interval

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig

log = logging.getLogger(__name__)

PRESENCE_LOG = "presence_log"
ZONE_ENTRY_EVENT = "zone_entry"
ZONES_ATTRIBUTE = "zones"

PRESENCE = ReportKind(
    "presence",
    (
        Measure("People", "People"),
        Measure("Entries", "Entries"),
        Measure("ZoneEntries", "ZoneEntries"),
        Measure("EstimatedOccupancy", "EstimatedOccupancy"),
    ),
    description=("People in the camera's Zones (all people without Zones), entries through "
                 "its EntryZones (Entries: people who passed through) and into its Zones "
                 "(ZoneEntries), and the occupancy estimated from its counting lines, never "
                 "below 0 (zones step)."),
)
PRESENCE_REPORTS = register_source_spec(RawLogSpec(PRESENCE_LOG, (PRESENCE,)))


# ---------------------------------------------------------------------------------------
# Shared with the dwell step
# ---------------------------------------------------------------------------------------


class Region:
    """A named polygon of one camera; ``entrance`` when it is (also) one of EntryZones."""

    __slots__ = ("entrance", "name", "polygon", "roi")

    def __init__(self, name: str, polygon: np.ndarray, roi: bool, entrance: bool) -> None:
        self.name = name
        self.polygon = polygon
        self.roi = roi
        self.entrance = entrance


def camera_regions(source: SourceConfig) -> list[Region]:
    """``Zones`` then ``EntryZones`` of ``source``; a name in both (same polygon) is one."""
    regions: dict[str, Region] = {}
    for zone, entrance in [(z, False) for z in source.zones] + [
        (z, True) for z in source.entry_zones
    ]:
        poly = np.asarray(zone.points, np.float64).reshape(-1, 2)
        known = regions.get(zone.name)
        if known is None:
            regions[zone.name] = Region(zone.name, poly, not entrance, entrance)
        elif known.polygon.shape == poly.shape and np.array_equal(known.polygon, poly):
            known.entrance = True
        else:
            raise ValueError(
                f"camera {source.id}: zone {zone.name!r} is in Zones and EntryZones with "
                "different points"
            )
    return list(regions.values())


def membership(points: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    """``(R, N)`` bool: foot point ``n`` lies in region ``r`` (vectorised over people)."""
    inside = np.zeros((len(regions), len(points)), bool)
    if len(points):
        for r, region in enumerate(regions):
            inside[r] = points_in_polygon(points, region.polygon)
    return inside


def zone_tuples(inside: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The ``zones`` attribute: per person (column of ``inside``) the tuple of region names."""
    n = inside.shape[1]
    out = np.empty(n, dtype=object)
    cache: dict[bytes, tuple[str, ...]] = {}
    for k in range(n):
        column = inside[:, k]
        key = column.tobytes()
        value = cache.get(key)
        if value is None:
            value = cache[key] = tuple(names[int(r)] for r in np.flatnonzero(column))
        out[k] = value
    return out


def membership_from_attribute(attribute: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """``(R, N)`` bool back from a ``zones`` attribute (names it does not know are ignored)."""
    index = {name: r for r, name in enumerate(names)}
    inside = np.zeros((len(names), len(attribute)), bool)
    for k, value in enumerate(attribute):
        for name in value or ():
            r = index.get(name)
            if r is not None:
                inside[r, k] = True
    return inside


class SampleClock:
    """Which frames the ``file_system_logger`` writes a raw row for.

    The logger writes ``samples`` only with the first frame of each ``TimeInterval`` slot
    (slots aligned to the Unix epoch).  A step whose sample columns count "since the previous
    row" keeps its counters running and resets them on the frames this clock calls due: it is
    the logger's own :class:`IntervalGate`, fed the same timestamps, so both agree frame by
    frame as long as every processed frame is logged (the pipeline logs every frame).
    """

    def __init__(self, app: LookoutConfig | None) -> None:
        self.tz: tzinfo = app.app.tzinfo if app is not None else UTC
        self.interval = sample_interval(app)
        self.gate = IntervalGate(self.interval)

    def due(self, ts: datetime) -> bool:
        return self.gate.due(aware(ts, self.tz))

    def next_row_time(self, ts: datetime) -> datetime:
        """Start of the logger slot after the one holding ``ts``: a frame stamped so is
        given a row of its own (an end-of-stream frame carrying the last counts)."""
        ts = aware(ts, self.tz)
        slot = self.gate.slot(ts)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        start = epoch + timedelta(microseconds=(slot + 1) * self.gate.step_us)
        return start.astimezone(ts.tzinfo)


def add_events(frame: Frame, events: list[dict[str, Any]]) -> None:
    if events:
        frame.metrics.setdefault("events", []).extend(events)


def add_sample(frame: Frame, folder: str, row: dict[str, int]) -> None:
    frame.metrics.setdefault("samples", {})[folder] = row


# ---------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------


class ZonesConfig(PluginConfig):
    gap_tolerance: float = Field(
        2.0,
        alias="GapTolerance",
        ge=0.0,
        description="Seconds a track may go unseen in a region and still be on the same "
        "visit: a re-entry within this time is not a new entry (use the dwell step's value).",
        json_schema_extra=form("a number of seconds >= 0"),
    )

    def cross_check(self, config: LookoutConfig) -> list[tuple[str | None, str | None, str]]:
        if not self.enabled:
            return []
        problems: list[tuple[str | None, str | None, str]] = []
        sources = config.sources  # a disabled camera keeps its regions
        if not any(s.zones or s.entry_zones or s.counting_lines for s in sources):
            problems.append(
                (None, "Name", "zones is enabled but no camera has Zones, EntryZones or "
                 "CountingLines")
            )
        for src in sources:
            try:
                camera_regions(src)
            except ValueError as exc:
                problems.append((src.section, "EntryZones", str(exc)))
        names = [p.name for p in config.source_post_processors if p.enabled]
        if "line_crossing" in names and names.index("line_crossing") > names.index("zones"):
            problems.append(
                (None, "Name", "zones must come after line_crossing (it reads its counts)")
            )
        return problems


@POST_PROCESSORS.register("zones")
class Zones(PostProcessor):
    """Presence per region, entries and the line-based occupancy estimate (module doc)."""

    Config: ClassVar[type[PluginConfig]] = ZonesConfig
    phase = "after_tracker"

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        if not isinstance(config, ZonesConfig):
            config = ZonesConfig.model_validate(config.model_dump(by_alias=True))
        super().__init__(config, source, app)
        self.settings = config
        self.gap = float(config.gap_tolerance)
        self.regions = camera_regions(source)
        self.names = [r.name for r in self.regions]
        self.roi_rows = np.array([r.roi for r in self.regions], bool)
        self.clock = SampleClock(app)
        self.t0: datetime | None = None
        # Per region: track id -> seconds (since t0) of its last sighting inside.
        self.last_inside: list[dict[int, float]] = [{} for _ in self.regions]
        self.total_entries = [0] * len(self.regions)
        self.pending_entries = [0] * len(self.regions)  # since the previous logged row
        self.line_seen: dict[str, tuple[int, int]] = {}
        self.line_balance: dict[str, int] = {}
        self.balance = 0
        self.last_ts: datetime | None = None
        self.flushed = False

    def seconds(self, ts: datetime) -> float:
        if self.t0 is None:
            self.t0 = ts
        return (ts - self.t0).total_seconds()

    def process(self, frame: Frame) -> Frame:
        now = self.seconds(frame.timestamp)
        self.last_ts = frame.timestamp
        dets = frame.detections
        ids = dets.track_ids
        inside = membership(dets.foot_points(), self.regions)
        dets.attributes[ZONES_ATTRIBUTE] = zone_tuples(inside, self.names)
        sighted = (ids >= 0) & (dets.scores > 0)
        events: list[dict[str, Any]] = []
        for r, name in enumerate(self.names):
            known = self.last_inside[r]
            for tid in ids[inside[r] & sighted].tolist():
                last = known.get(tid)
                if last is None or now - last > self.gap:
                    self.total_entries[r] += 1
                    self.pending_entries[r] += 1
                    events.append({"kind": ZONE_ENTRY_EVENT, "timestamp": frame.timestamp,
                                   "Zone": name, "TrackId": tid})
                known[tid] = now
            for tid in [t for t, last in known.items() if now - last > self.gap]:
                del known[tid]  # any later sighting is a new entry anyway
        add_events(frame, events)

        tracked = ids >= 0
        people_now = (inside & tracked[None, :]).sum(axis=1)
        frame.metrics["zone_counts"] = {
            name: {"people": int(people_now[r]), "entries": self.total_entries[r]}
            for r, name in enumerate(self.names)
        }
        line_counts = frame.metrics.get("line_counts")
        if line_counts is not None:
            self._update_balance(line_counts)
            frame.metrics["estimated_occupancy"] = self.balance
            frame.metrics["line_occupancy"] = dict(self.line_balance)

        if self.roi_rows.any():
            in_roi = int((inside[self.roi_rows].any(axis=0) & tracked).sum())
        else:
            in_roi = int(tracked.sum())
        add_sample(frame, PRESENCE_LOG, self._row(in_roi, people_now))
        if self.clock.due(frame.timestamp):
            self.pending_entries = [0] * len(self.regions)
        return frame

    def _update_balance(self, line_counts: dict[str, dict[str, int]]) -> None:
        total_in = total_out = 0
        for line, counts in line_counts.items():
            now_in, now_out = int(counts.get("in", 0)), int(counts.get("out", 0))
            was_in, was_out = self.line_seen.get(line, (0, 0))
            # Counts only grow; a smaller count means the counter restarted from 0.
            d_in = now_in - was_in if now_in >= was_in else now_in
            d_out = now_out - was_out if now_out >= was_out else now_out
            self.line_seen[line] = (now_in, now_out)
            self.line_balance[line] = max(0, self.line_balance.get(line, 0) + d_in - d_out)
            total_in += d_in
            total_out += d_out
        self.balance = max(0, self.balance + total_in - total_out)

    def _row(self, in_roi: int, people_now: np.ndarray) -> dict[str, int]:
        entrances = sum(n for n, r in zip(self.pending_entries, self.regions, strict=True)
                        if r.entrance)
        roi_entries = sum(n for n, r in zip(self.pending_entries, self.regions, strict=True)
                          if r.roi)
        row = {"People": in_roi, "Entries": entrances, "ZoneEntries": roi_entries,
               "EstimatedOccupancy": self.balance}
        for r, name in enumerate(self.names):
            row[f"People_{name}"] = int(people_now[r])
            row[f"Entries_{name}"] = self.pending_entries[r]
        return row

    def flush(self, frame: Frame) -> Frame:
        """End of the stream: put the entries not yet in a logged row on ``frame``, an
        end-of-stream frame (nobody in it) for the loggers to log after the last real one,
        stamped in a logger slot of its own (:meth:`SampleClock.next_row_time`)."""
        add_sample(frame, PRESENCE_LOG, self._row(0, np.zeros(len(self.regions), np.int64)))
        self.pending_entries = [0] * len(self.regions)
        self.flushed = True
        return frame

    def finish(self, end: Frame) -> None:
        """End of the stream: the entries not yet in a logged row go on ``end`` (unless
        :meth:`flush` ran, or there are none)."""
        if self.flushed or self.last_ts is None or not any(self.pending_entries):
            return
        self.flush(end)
