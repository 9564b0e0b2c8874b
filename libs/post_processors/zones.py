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
people-now figures but neither start nor extend a visit.  Each entry is a ``zone_entry``
record (:class:`libs.records.ZoneEntry`: ``zone``, ``track_id``), logged by the
``file_system_logger`` to ``<camera dir>/events/zone_entry/<date>.csv``.  A visit that ends
(no sighting for more than ``GapTolerance``, or the end of the stream) is a ``zone_exit``
record (:class:`libs.records.ZoneExit`, stamped at its last sighting plus one frame interval:
the last step between two frames; no CSV log).

**Estimated occupancy** of the space behind the camera's counting lines, from the cumulative
``frame.metrics["line_counts"]`` of ``line_crossing`` (which must run before this step):
a running balance over all lines, ``balance = max(0, balance + ins - outs)`` updated at every
frame with that frame's new crossings.  Clamping at each step (rather than taking
``max(0, in - out)`` of the totals) means people who were already inside when counting began
and then walk out do not leave a debt that hides the next arrivals: the estimate never goes
negative and starts counting again from 0.  The same balance per line is also given.

**Output**: in ``frame.metrics`` (for the stages after this one and the frame summary)

- ``zone_counts``: ``{region: {"people": in it now, "entries": entries since start}}``;
- ``estimated_occupancy`` (int) and ``line_occupancy`` (``{line: int}``), when line counts
  are present;

and as records the ``zone_entry``/``zone_exit`` events of the frame and, on the frames of
the pipeline's sample clock (``frame.sample_due``), a ``presence_log`` sample
(:class:`libs.records.PresenceSample`), written by the ``file_system_logger`` to
``<camera dir>/presence_log/<date>.csv``.  Its counters run from one sample to the next, so
summing a column over the rows of an hour gives that hour's total.  Columns, report columns
first:

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

**End of a run.**  Entries made after the last sample go on the pipeline's end-of-stream
frame (:meth:`Zones.finish`) as one more ``presence_log`` sample, with a ``zone_exit`` for
every visit still open.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import Field

from libs.config.models import PluginConfig, form
from libs.frame import Frame
from libs.geometry import points_in_polygon
from libs.metrics.reports import Measure, RawLogSpec, ReportKind, register_source_spec
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.records import PresenceSample, ZoneEntry, ZoneExit, ZonePresence

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
    STATE = (
        "t0", "last_inside", "visit_start", "total_entries", "pending_entries", "line_seen",
        "line_balance", "balance", "last_ts", "last_now", "step",
    )

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
        self.t0: datetime | None = None
        # Per region: track id -> seconds (since t0) of its last sighting inside, and of
        # the first sighting of its visit.
        self.last_inside: list[dict[int, float]] = [{} for _ in self.regions]
        self.visit_start: list[dict[int, float]] = [{} for _ in self.regions]
        self.total_entries = [0] * len(self.regions)
        self.pending_entries = [0] * len(self.regions)  # since the previous sample
        self.line_seen: dict[str, tuple[int, int]] = {}
        self.line_balance: dict[str, int] = {}
        self.balance = 0
        self.last_ts: datetime | None = None
        self.last_now: float | None = None
        self.step = 0.0  # the last step between two frames (s): a frame's worth of time

    def seconds(self, ts: datetime) -> float:
        if self.t0 is None:
            self.t0 = ts
        return (ts - self.t0).total_seconds()

    def process(self, frame: Frame) -> Frame:
        now = self.seconds(frame.timestamp)
        if self.last_now is not None and now > self.last_now:
            self.step = now - self.last_now
        self.last_now = now
        self.last_ts = frame.timestamp
        dets = frame.detections
        ids = dets.track_ids
        inside = membership(dets.foot_points(), self.regions)
        dets.attributes[ZONES_ATTRIBUTE] = zone_tuples(inside, self.names)
        sighted = (ids >= 0) & (dets.scores > 0)
        for r, name in enumerate(self.names):
            known = self.last_inside[r]
            for tid in ids[inside[r] & sighted].tolist():
                last = known.get(tid)
                if last is None or now - last > self.gap:
                    if last is not None:  # the earlier visit ended long ago
                        self._exit(frame, r, tid)
                    self.total_entries[r] += 1
                    self.pending_entries[r] += 1
                    self.visit_start[r][tid] = now
                    frame.emit(ZoneEntry, zone=name, track_id=tid)
                known[tid] = now
            for tid in [t for t, last in known.items() if now - last > self.gap]:
                self._exit(frame, r, tid)  # any later sighting is a new entry anyway

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

        if frame.sample_due:
            if self.roi_rows.any():
                in_roi = int((inside[self.roi_rows].any(axis=0) & tracked).sum())
            else:
                in_roi = int(tracked.sum())
            self._sample(frame, in_roi, people_now)
        return frame

    def _exit(self, frame: Frame, r: int, tid: int) -> None:
        """The visit of track ``tid`` to region ``r`` ended: a ``zone_exit`` record."""
        last = self.last_inside[r].pop(tid)
        enter = self.visit_start[r].pop(tid, last)
        assert self.t0 is not None
        exit_s = last + self.step
        frame.emit(ZoneExit, timestamp=self.t0 + timedelta(seconds=exit_s),
                   zone=self.names[r], track_id=tid,
                   enter=self.t0 + timedelta(seconds=enter), seconds=round(exit_s - enter, 3))

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

    def _sample(self, frame: Frame, in_roi: int, people_now: np.ndarray) -> PresenceSample:
        """Emit the ``presence_log`` sample (entries since the previous one, then reset)."""
        pending = self.pending_entries
        entrances = sum(n for n, r in zip(pending, self.regions, strict=True) if r.entrance)
        roi_entries = sum(n for n, r in zip(pending, self.regions, strict=True) if r.roi)
        sample = frame.emit(
            PresenceSample, people=in_roi, entries=entrances, zone_entries=roi_entries,
            estimated_occupancy=self.balance,
            zones={name: ZonePresence(people=int(people_now[r]), entries=pending[r])
                   for r, name in enumerate(self.names)},
        )
        self.pending_entries = [0] * len(self.regions)
        return sample

    def finish(self, end: Frame) -> None:
        """End of the stream: every open visit ends (``zone_exit``) and the entries not yet
        in a sample go on ``end`` as one more ``presence_log`` sample (nobody in view)."""
        if self.last_ts is None:
            return
        for r, known in enumerate(self.last_inside):
            for _, tid in sorted((last, tid) for tid, last in known.items()):
                self._exit(end, r, tid)
        if any(self.pending_entries):
            self._sample(end, 0, np.zeros(len(self.regions), np.int64))
        self.last_ts = None
