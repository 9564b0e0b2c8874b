"""Area aggregation on the event bus: an area's occupancy from its cameras' frame summaries.

For each ``[Area_N]`` an :class:`AreaAggregator` keeps the latest occupancy of each member
camera (from their ``frame_summary`` records) and, once per ``TimeInterval`` of the area's
clock (the latest timestamp any member reported, on the epoch-aligned grid), makes an
``occupancy_log`` sample: the sum of the members' latest counts, where a camera that has not
reported for more than :data:`STALE_AFTER` (30 s) of the area clock counts as 0 (a stopped
camera does not freeze its last count into the area); the limit in force (``OccupancyRules``
at the local time, else ``OccupancyThreshold``; 0 = none); whether it is exceeded; and the
counts used.  On those same ticks it emits ``occupancy_over`` when the occupancy goes above a
limit and ``occupancy_under`` when it comes back (with how long and the peak).  After a
restart it makes no tick up to the newest sample already in the area's log (``after``): the
cameras resume at their checkpoints and send frames again that the killed run had already
turned into area samples.

The area's records go back on the bus: to the area's sinks (``[AreaLogger_N]``, such as the
file logger's ``occupancy_log``), the processor-wide outputs and the live stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from libs.clock import IntervalGate
from libs.config.occupancy_rules import occupancy_limit, parse_occupancy_rules
from libs.records import (
    AreaOccupancySample,
    FrameSummary,
    OccupancyOver,
    OccupancyUnder,
    Record,
    RecordIds,
)
from libs.storage import FILE_SYSTEM_LOGGER

if TYPE_CHECKING:
    from libs.config.models import AreaConfig, LookoutConfig

STALE_AFTER = timedelta(seconds=30)
DEFAULT_AREA_INTERVAL = 1.0  # s between two samples of an area (its file logger's TimeInterval)


def area_sample_interval(config: LookoutConfig) -> float:
    """``TimeInterval`` of the enabled area ``file_system_logger`` (else the default)."""
    for section in config.area_loggers:
        if section.name == FILE_SYSTEM_LOGGER and section.enabled:
            value = getattr(section, "time_interval", None)
            if value is not None:
                return float(value)
    return DEFAULT_AREA_INTERVAL


class AreaAggregator:
    """One area's occupancy (module docstring); :meth:`take` returns the area's records."""

    def __init__(self, area: AreaConfig, config: LookoutConfig,
                 ids: RecordIds | None = None, after: datetime | None = None) -> None:
        self.area = area
        # The newest sample the area's log already holds (a restart): the cameras resume at
        # their checkpoints and send frames again whose samples were made before.
        self.after = after
        self.tz = config.app.tzinfo
        self.rules = parse_occupancy_rules(area.occupancy_rules)
        self.members = list(dict.fromkeys(area.cameras))
        self._member_set = set(self.members)
        self.latest: dict[str, tuple[datetime, int]] = {}
        self.clock: datetime | None = None
        self.gate = IntervalGate(area_sample_interval(config))
        self.ids = ids if ids is not None else RecordIds()
        self._over: tuple[datetime, int] | None = None  # since when over its limit, peak

    def accepts(self, rec: Record) -> bool:
        return isinstance(rec, FrameSummary) and rec.source_id in self._member_set

    def take(self, records: Sequence[Record]) -> list[Record]:
        out: list[Record] = []
        for rec in records:
            if not self.accepts(rec):
                continue
            assert isinstance(rec, FrameSummary)
            ts = rec.timestamp
            previous = self.latest.get(rec.source_id)
            if previous is None or ts >= previous[0]:
                self.latest[rec.source_id] = (ts, rec.occupancy)
            if self.clock is None or ts > self.clock:
                self.clock = ts
            if self.gate.due(self.clock) and not self._logged(self.clock):
                out.extend(self._tick(self.clock))
        return out

    def _logged(self, clock: datetime) -> bool:
        """The area's log holds the sample of ``clock``'s slot already: that of ``after``
        or an earlier one (one sample a slot, made by the slot's first frame)."""
        return self.after is not None and self.gate.slot(clock) <= self.gate.slot(self.after)

    def counts(self, clock: datetime) -> dict[str, int]:
        counts: dict[str, int] = {}
        for camera_id in self.members:
            latest = self.latest.get(camera_id)
            fresh = latest is not None and clock - latest[0] <= STALE_AFTER
            counts[camera_id] = latest[1] if fresh and latest is not None else 0
        return counts

    def _record(self, cls: type[Record], ts: datetime, **fields: object) -> Record:
        return cls(id=self.ids(), source="area", source_id=self.area.id, timestamp=ts,
                   **fields)

    def _tick(self, clock: datetime) -> list[Record]:
        counts = self.counts(clock)
        occupancy = sum(counts.values())
        threshold = occupancy_limit(self.rules, self.area.occupancy_threshold,
                                    clock.astimezone(self.tz))
        violation = threshold > 0 and occupancy > threshold
        out = [self._record(AreaOccupancySample, clock, occupancy=occupancy,
                            threshold=threshold, violation=violation,
                            cameras=dict(sorted(counts.items())))]
        if violation and self._over is None:
            self._over = (clock, occupancy)
            out.append(self._record(OccupancyOver, clock, occupancy=occupancy,
                                    threshold=threshold))
        elif violation and self._over is not None:
            self._over = (self._over[0], max(self._over[1], occupancy))
        elif not violation and self._over is not None:
            started, peak = self._over
            self._over = None
            out.append(self._record(OccupancyUnder, clock, occupancy=occupancy,
                                    threshold=threshold, started=started,
                                    seconds=(clock - started).total_seconds(), peak=peak))
        return out
