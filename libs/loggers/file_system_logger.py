"""``file_system_logger``: raw CSV logs of cameras and areas, the input of every report.

Camera rows (:class:`SourceFileSystemLogger`), one per ``TimeInterval`` seconds of the
camera's own clock (video time for recordings), in
``<LogDirectory>/<camera_id>/objects_log/<YYYY-MM-DD>.csv``::

    Timestamp,Frame,DetectedObjects,ViolatingObjects,ViolatingPairs,Occupancy,
    EnvironmentScore,Detections,ViolationsIndexes

- ``Timestamp``: ISO 8601 with milliseconds and the UTC offset of App ``TimeZone``
  (``2024-10-27T01:30:00.000+01:00``).  The file's date is the local date of its rows.
- ``Frame``: the frame index in the camera's stream.
- ``DetectedObjects``: people in the frame (after the ROI and tracker);
  ``ViolatingObjects``: people closer than the distance limit to someone (people, not pairs);
  ``ViolatingPairs``: pairs closer than the limit; ``Occupancy``: the occupancy count (people
  when no occupancy post-processor ran).
- ``EnvironmentScore``: ``1 - ViolatingObjects / DetectedObjects``, 1 when nobody is there.
- ``Detections``: compact JSON ``[{"id":7,"bbox":[x1,y1,x2,y2],"score":0.91,"violating":false}]``
  (pixels rounded to integers, ``id`` -1 when untracked); ``ViolationsIndexes``: JSON list of
  ``[i, j]`` pairs, indexes into ``Detections``.

Every line crossing (``line_crossing`` post-processor) is an event row in
``<LogDirectory>/<camera_id>/line_crossings/<YYYY-MM-DD>.csv``::

    Timestamp,Frame,Line,TrackId,Direction

with ``Direction`` ``in`` or ``out`` (see :mod:`libs.post_processors.line_crossing`).

Further analytics use two generic channels (see :mod:`libs.post_processors`):
``frame.metrics["samples"]`` (``{folder: {column: number}}``) is logged with every raw row to
``<LogDirectory>/<camera_id>/<folder>/<YYYY-MM-DD>.csv`` (``Timestamp`` + the columns, the
input of their reports), and ``frame.metrics["events"]`` (dicts with ``kind`` and
``timestamp``) to ``<LogDirectory>/<camera_id>/events/<kind>/<YYYY-MM-DD>.csv``.

A row is written for the first frame of each ``TimeInterval`` slot; slots are aligned to the
Unix epoch, so the same recording always yields the same rows.  With ``ScreenshotPeriod`` > 0
a JPEG of the frame is written every that many minutes of the camera's clock to
``<ScreenshotsDirectory>/<camera_id>/<YYYYMMDDTHHMMSS+ZZZZ>.jpg`` (ISO 8601 basic form, local
time).

Area rows (:class:`AreaFileSystemLogger`), one per ``occupancy_log`` sample of the area
(the supervisor's area aggregation, :mod:`processor.areas`, makes one per ``TimeInterval`` of
the area's clock: the latest timestamp any member camera reported), in
``<LogDirectory>/<area_id>/occupancy_log/<YYYY-MM-DD>.csv``::

    Timestamp,Occupancy,Threshold,Violation,Cameras

``Occupancy`` is the sum of the member cameras' latest counts; a camera that has not
reported for more than ``processor.areas.STALE_AFTER`` (30 s) of the area clock counts as 0,
so a stopped camera does not freeze its last count into the area forever.  ``Threshold`` is
the limit in force (``OccupancyRules`` at the local time, else ``OccupancyThreshold``; 0 =
no limit);
``Violation`` is 1 when a limit is set and exceeded; ``Cameras`` is JSON ``{camera_id: count}``
with the counts used (0 for stale or silent cameras).

All writing happens on a :class:`~libs.loggers.writer.BackgroundWriter` thread.  While the
disk is full rows are kept in order and written once space is back (never a torn row);
screenshots are skipped and counted; ``write_health()`` says which state a logger is in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np
from pydantic import Field

from libs.clock import IntervalGate, aware, format_timestamp
from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.frame import Frame
from libs.loggers import AREA_LOGGERS, SOURCE_LOGGERS, AreaLogger, SourceLogger
from libs.loggers.writer import BackgroundWriter, WriteHealth, atomic_write_bytes
from libs.records import AreaOccupancySample, Record
from libs.storage import (  # noqa: F401
    AREA_LOG_FOLDER,
    DEFAULT_AREA_LOG_DIRECTORY,
    DEFAULT_SCREENSHOTS_DIRECTORY,
    DEFAULT_SOURCE_LOG_DIRECTORY,
    DEFAULT_TIME_INTERVAL,
    EVENTS_FOLDER,
    FILE_SYSTEM_LOGGER,
    LINE_EVENTS_FOLDER,
    SOURCE_LOG_FOLDER,
    area_log_root,
    csv_line,
    file_sizes,
    screenshots_root,
    source_log_root,
)

if TYPE_CHECKING:
    from libs.config.models import AreaConfig, LookoutConfig, SourceConfig

log = logging.getLogger(__name__)

NAME = FILE_SYSTEM_LOGGER
LINE_EVENT_COLUMNS = ("Timestamp", "Frame", "Line", "TrackId", "Direction")
SOURCE_LOG_COLUMNS = (
    "Timestamp",
    "Frame",
    "DetectedObjects",
    "ViolatingObjects",
    "ViolatingPairs",
    "Occupancy",
    "EnvironmentScore",
    "Detections",
    "ViolationsIndexes",
)
AREA_LOG_COLUMNS = ("Timestamp", "Occupancy", "Threshold", "Violation", "Cameras")
SCREENSHOT_JPEG_QUALITY = 90

@dataclass(frozen=True)
class FrameSummary:
    """The per-frame numbers every logger records, with the fall-backs applied."""

    people: int
    violating_people: int
    violating_pairs: int
    occupancy: int
    environment_score: float
    in_violation: np.ndarray
    pair_indexes: list[tuple[int, int]] = field(default_factory=list)


def _metric_int(metrics: dict[str, Any], key: str, default: int) -> int:
    value = metrics.get(key)
    if value is None:
        return default
    return int(value)


def frame_summary(frame: Frame) -> FrameSummary:
    """People, violations and occupancy of ``frame``.

    Uses the post-processors' ``frame.metrics`` when present; otherwise people are the
    detections, violations come from the ``in_violation`` attribute (or are 0) and
    occupancy equals people.
    """
    det = frame.detections
    n = len(det)
    flags = det.attributes.get("in_violation")
    in_violation = (
        np.asarray(flags, dtype=bool).reshape(n) if flags is not None else np.zeros(n, bool)
    )
    metrics = frame.metrics
    raw_pairs = metrics.get("violating_pair_indexes")
    pairs = [(int(i), int(j)) for i, j in raw_pairs] if raw_pairs is not None else []
    people = _metric_int(metrics, "people", n)
    violating = _metric_int(metrics, "violating_people", int(in_violation.sum()))
    violating_pairs = _metric_int(metrics, "violating_pairs", len(pairs))
    occupancy = _metric_int(metrics, "occupancy", people)
    score = 1.0 if people <= 0 else min(1.0, max(0.0, 1.0 - violating / people))
    return FrameSummary(people, violating, violating_pairs, occupancy, score, in_violation, pairs)


def detections_json(frame: Frame, in_violation: np.ndarray) -> str:
    det = frame.detections
    items = [
        {
            "id": int(det.track_ids[k]),
            "bbox": [round(float(v)) for v in det.boxes[k]],
            "score": round(float(det.scores[k]), 3),
            "violating": bool(in_violation[k]),
        }
        for k in range(len(det))
    ]
    return json.dumps(items, separators=(",", ":"))


def write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    """Encode ``image`` (BGR) as JPEG and write it atomically."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for {path}")
    atomic_write_bytes(path, buf.tobytes())


# ---------------------------------------------------------------------------------------
# Camera logger
# ---------------------------------------------------------------------------------------


class SourceFileSystemConfig(PluginConfig):
    time_interval: float = Field(
        DEFAULT_TIME_INTERVAL,
        alias="TimeInterval",
        gt=0,
        description="Seconds of the camera's clock (video time for recordings) between two "
        "rows of the raw log.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    log_directory: str = Field(
        DEFAULT_SOURCE_LOG_DIRECTORY,
        alias="LogDirectory",
        description="Where the per-camera raw logs are written (relative to DataDirectory).",
    )
    screenshot_period: float = Field(
        0,
        alias="ScreenshotPeriod",
        ge=0,
        description="Minutes of the camera's clock between two screenshots; 0 takes none.",
        json_schema_extra=form("a number of minutes >= 0"),
    )
    screenshots_directory: str = Field(
        DEFAULT_SCREENSHOTS_DIRECTORY,
        alias="ScreenshotsDirectory",
        description="Where screenshots are written (relative to DataDirectory).",
    )


@SOURCE_LOGGERS.register(NAME)
class SourceFileSystemLogger(SourceLogger):
    """Writes a camera's raw log and screenshots; see the module docstring for the layout.

    ``writer`` lets a worker share one :class:`BackgroundWriter` between its loggers; without
    it the logger owns a writer and closes it in :meth:`close`.
    """

    Config: ClassVar[type[PluginConfig]] = SourceFileSystemConfig

    def __init__(
        self,
        config: PluginConfig,
        source: SourceConfig,
        app: LookoutConfig,
        writer: BackgroundWriter | None = None,
    ) -> None:
        super().__init__(config, source, app)
        self.settings = plugin_settings(SourceFileSystemConfig, config)
        self.tz = app.app.tzinfo
        self.log_dir = app.data_path(self.settings.log_directory) / source.id / SOURCE_LOG_FOLDER
        self.screenshot_dir = app.data_path(self.settings.screenshots_directory) / source.id
        self._owns_writer = writer is None
        self.writer = writer if writer is not None else BackgroundWriter(name=f"log-{source.id}")
        self._rows = IntervalGate(self.settings.time_interval)
        period = self.settings.screenshot_period
        self._shots = IntervalGate(period * 60) if period > 0 else None
        self._header = csv_line(SOURCE_LOG_COLUMNS)
        self._events_header = csv_line(LINE_EVENT_COLUMNS)
        self._closed = False
        self._touched: set[Path] = set()  # files written since the last checkpoint

    def _append(self, path: Path, line: str, header: str) -> None:
        self._touched.add(path)
        self.writer.append_line(path, line, header=header)

    def checkpoint(self, done: Callable[[dict[str, int]], None]) -> bool:
        touched, self._touched = self._touched, set()
        self.writer.submit(lambda: done(file_sizes(touched)))
        return True

    def log_path(self, ts: datetime) -> Path:
        return self.log_dir / f"{ts.astimezone(self.tz).date().isoformat()}.csv"

    def events_path(self, ts: datetime) -> Path:
        day = ts.astimezone(self.tz).date().isoformat()
        return self.log_dir.parent / LINE_EVENTS_FOLDER / f"{day}.csv"

    def screenshot_path(self, ts: datetime) -> Path:
        stamp = ts.astimezone(self.tz).strftime("%Y%m%dT%H%M%S%z")
        return self.screenshot_dir / f"{stamp}.jpg"

    def take(self, records: Sequence[Record]) -> None:
        """TODO(records): write records (being moved over from frame.metrics)."""

    def log(self, frame: Frame) -> None:
        if self._closed:  # a last frame racing a shutdown: nothing to do
            return
        ts = aware(frame.timestamp, self.tz)
        row_due = self._rows.due(ts)
        shot_due = self._shots is not None and self._shots.due(ts)
        if frame.replay:  # its records are on disk already; the gates above moved on
            return
        if row_due:
            self._append(self.log_path(ts), self.row(frame, ts), self._header)
            self._log_samples(frame, ts)
        self._log_events(frame)
        for event in frame.metrics.get("line_events", ()):
            ets = aware(event["timestamp"], self.tz)
            self._append(
                self.events_path(ets),
                csv_line([format_timestamp(ets, self.tz), event["frame"], event["line"],
                          event["track_id"], event["direction"]]),
                self._events_header,
            )
        if shot_due:
            image = frame.image.copy()
            path = self.screenshot_path(ts)
            # Skippable: while the disk is full a screenshot is skipped and counted, not kept.
            self.writer.submit(lambda: write_jpeg(path, image, SCREENSHOT_JPEG_QUALITY),
                               skippable=True)

    def finish(self, end: Frame) -> None:
        """The end-of-stream frame: its samples and events, whatever the interval (no raw
        log row: nobody is in an end frame)."""
        if self._closed:
            return
        self._log_samples(end, aware(end.timestamp, self.tz))
        self._log_events(end)

    def _log_samples(self, frame: Frame, ts: datetime) -> None:
        """Analytics' periodic figures: ``metrics["samples"] = {folder: {column: number}}``."""
        for folder, values in frame.metrics.get("samples", {}).items():
            self._append(
                self.log_dir.parent / folder / f"{ts.astimezone(self.tz).date()}.csv",
                csv_line([format_timestamp(ts, self.tz), *values.values()]),
                csv_line(["Timestamp", *values]),
            )

    def _log_events(self, frame: Frame) -> None:
        """Analytics' events: ``metrics["events"] = [{"kind": ..., "timestamp": ..., ...}]``."""
        for event in frame.metrics.get("events", ()):
            ets = aware(event["timestamp"], self.tz)
            fields = {k: v for k, v in event.items() if k not in ("kind", "timestamp")}
            self._append(
                self.log_dir.parent / EVENTS_FOLDER / event["kind"]
                / f"{ets.astimezone(self.tz).date()}.csv",
                csv_line([format_timestamp(ets, self.tz), *fields.values()]),
                csv_line(["Timestamp", *fields]),
            )

    def row(self, frame: Frame, ts: datetime) -> str:
        summary = frame_summary(frame)
        return csv_line(
            [
                format_timestamp(ts, self.tz),
                frame.index,
                summary.people,
                summary.violating_people,
                summary.violating_pairs,
                summary.occupancy,
                round(summary.environment_score, 4),
                detections_json(frame, summary.in_violation),
                json.dumps([list(p) for p in summary.pair_indexes], separators=(",", ":")),
            ]
        )

    def write_health(self) -> WriteHealth:
        """Whether this logger's writes succeed now (see :meth:`BackgroundWriter.health`)."""
        return self.writer.health()

    def close(self) -> None:
        self._closed = True
        if self._owns_writer:
            self.writer.close()
        else:  # bounded: a full disk must not hold a shutdown forever
            self.writer.flush(self.writer.close_grace)


# ---------------------------------------------------------------------------------------
# Area logger
# ---------------------------------------------------------------------------------------


class AreaFileSystemConfig(PluginConfig):
    time_interval: float = Field(
        1.0,
        alias="TimeInterval",
        gt=0,
        description="Seconds of the area's clock (the member cameras' timestamps) between "
        "two rows of the area's occupancy log.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    log_directory: str = Field(
        DEFAULT_AREA_LOG_DIRECTORY,
        alias="LogDirectory",
        description="Where the per-area raw logs are written (relative to DataDirectory).",
    )


@AREA_LOGGERS.register(NAME)
class AreaFileSystemLogger(AreaLogger):
    """Writes an area's occupancy log from its ``occupancy_log`` samples (made by the
    supervisor's area aggregation, :mod:`processor.areas`); see the module docstring."""

    Config: ClassVar[type[PluginConfig]] = AreaFileSystemConfig

    def __init__(
        self,
        config: PluginConfig,
        area: AreaConfig,
        app: LookoutConfig,
        writer: BackgroundWriter | None = None,
    ) -> None:
        super().__init__(config, area, app)
        self.settings = plugin_settings(AreaFileSystemConfig, config)
        self.tz = app.app.tzinfo
        self.log_dir = app.data_path(self.settings.log_directory) / area.id / AREA_LOG_FOLDER
        self._owns_writer = writer is None
        self.writer = writer if writer is not None else BackgroundWriter(name=f"log-{area.id}")
        self._header = csv_line(AREA_LOG_COLUMNS)
        self._closed = False

    def log_path(self, ts: datetime) -> Path:
        return self.log_dir / f"{ts.astimezone(self.tz).date().isoformat()}.csv"

    def take(self, records: Sequence[Record]) -> None:
        if self._closed:
            return
        for rec in records:
            if isinstance(rec, AreaOccupancySample) and rec.source_id == self.area.id:
                self.writer.append_line(self.log_path(rec.timestamp), self.row(rec),
                                        self._header)

    def row(self, rec: AreaOccupancySample) -> str:
        cameras = json.dumps(dict(sorted(rec.cameras.items())), separators=(",", ":"))
        return csv_line(
            [
                format_timestamp(rec.timestamp, self.tz),
                rec.occupancy,
                rec.threshold,
                int(rec.violation),
                cameras,
            ]
        )

    def write_health(self) -> WriteHealth:
        """Whether this logger's writes succeed now (see :meth:`BackgroundWriter.health`)."""
        return self.writer.health()

    def close(self) -> None:
        self._closed = True
        if self._owns_writer:
            self.writer.close()
        else:  # bounded: a full disk must not hold a shutdown forever
            self.writer.flush(self.writer.close_grace)
