"""``file_system_logger``: raw CSV logs of cameras and areas, the input of every report.

Camera logs (:class:`SourceFileSystemLogger`) are written only from the camera's records
(:mod:`libs.records`, docs/events.md): each sample or event whose kind has CSV columns is one
row.  The raw log is the ``objects_log`` sample, one per tick of the pipeline's sample clock
(``TimeInterval`` seconds of the camera's own clock, video time for recordings; slots aligned
to the Unix epoch, so the same recording always yields the same rows), in
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

Every line crossing (``line_crossing`` event) is a row of
``<LogDirectory>/<camera_id>/line_crossings/<YYYY-MM-DD>.csv``::

    Timestamp,Frame,Line,TrackId,Direction

with ``Direction`` ``in`` or ``out`` (see :mod:`libs.post_processors.line_crossing`).

The analytics' other samples (``presence_log``, ``dwell_log``...) go to
``<LogDirectory>/<camera_id>/<kind>/<YYYY-MM-DD>.csv`` and their events to
``<LogDirectory>/<camera_id>/events/<kind>/<YYYY-MM-DD>.csv``.  The columns are derived from
the record classes (one source of truth): ``Timestamp``, then the ``csv`` column each field
names, in declaration order; a per-region field (``<zone>`` columns) spreads over one column
per region and sub-field (``People_a, Entries_a, People_b, ...``).  Booleans are written 1/0,
null as an empty cell, times in App ``TimeZone``, lists and objects as compact JSON, the
seconds of ``audience`` and ``engagement`` events with three decimals (:data:`THREE_DECIMALS`).
Records with no CSV column (``frame_summary``, ``distancing_*``, ``occupancy_*``,
``mask_state``, ``zone_exit``, ``camera_state``) are not written.

With ``ScreenshotPeriod`` > 0 a JPEG of the frame is written every that many minutes of the
camera's clock to ``<ScreenshotsDirectory>/<camera_id>/<YYYYMMDDTHHMMSS+ZZZZ>.jpg`` (ISO 8601
basic form, local time).

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

import dataclasses
import json
import logging
import os
import typing
from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
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
from libs.records import (
    AreaOccupancySample,
    Clusters,
    DetectedObject,
    LineCrossing,
    ObjectsSample,
    Record,
    Struct,
    fields_of,
    format_time,
)
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
# Float fields the CSV has always written with exactly three decimals (seconds of a track);
# every other float is written as Python prints it.
THREE_DECIMALS: dict[str, frozenset[str]] = {
    "audience": frozenset({"present", "stopped", "looking"}),
    "engagement": frozenset({"observed_seconds", "engaged_seconds"}),
}
ZONE = "<zone>"


# ---------------------------------------------------------------------------------------
# Records to CSV rows
# ---------------------------------------------------------------------------------------


def _plain_json(value: Any) -> Any:
    if isinstance(value, Struct):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return format_time(value)
    return value


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _detections_cell(items: Sequence[DetectedObject]) -> str:
    """``objects_log.Detections``: boxes in whole pixels, as the raw log always had them."""
    return _json([{"id": d.id, "bbox": [round(v) for v in d.bbox], "score": d.score,
                   "violating": d.violating} for d in items])


def _clusters_cell(rec: Clusters) -> str:
    """``clusters.Clusters``: clusters of image space carry no ``image_position``."""
    items = [c.to_dict() for c in rec.clusters]
    if rec.space == "image":
        for item in items:
            if item.get("image_position") is None:
                item.pop("image_position", None)
    return _json(items)


Cell = Callable[[Record], Any]


def _plain(name: str) -> Cell:
    return lambda rec: getattr(rec, name)


def _zone_cell(name: str, zone: str, sub: str) -> Cell:
    return lambda rec: getattr(getattr(rec, name)[zone], sub)


def _csv_fields(cls: type[Record]) -> list[dataclasses.Field[Any]]:
    return [f for f in fields_of(cls) if f.metadata.get("csv")]


def has_csv(cls: type[Record]) -> bool:
    """Whether records of ``cls`` have a CSV log (some field names a column)."""
    return bool(_csv_fields(cls))


def csv_columns(rec: Record) -> tuple[tuple[str, ...], tuple[tuple[str, Cell], ...]]:
    """Header names and cell getters of ``rec``'s CSV row: ``Timestamp``, then each field
    whose metadata names a column, in declaration order; a field of per-region structs
    (``<zone>`` columns) spreads over one column per region and sub-field, regions in the
    record's order."""
    cls = type(rec)
    header = ["Timestamp"]
    cells: list[tuple[str, Cell]] = []
    for f in _csv_fields(cls):
        if ZONE not in f.metadata["csv"]:
            header.append(f.metadata["csv"])
            cells.append((f.name, _plain(f.name)))
            continue
        per_zone = getattr(rec, f.name)
        sub_fields = [s for s in fields_of(_zone_struct(cls, f.name))
                      if ZONE in s.metadata.get("csv", "")]
        for zone in per_zone:
            for sub in sub_fields:
                header.append(sub.metadata["csv"].replace(ZONE, zone))
                cells.append((sub.name, _zone_cell(f.name, zone, sub.name)))
    return tuple(header), tuple(cells)


def _zone_struct(cls: type[Record], name: str) -> type[Struct]:
    hint = typing.get_type_hints(cls)[name]
    value_type = typing.get_args(hint)[1]
    assert isinstance(value_type, type) and issubclass(value_type, Struct)
    return value_type


def cell_value(rec: Record, name: str, value: Any, tz: tzinfo) -> Any:
    """Field ``name`` of ``rec`` (its value ``value``) as its CSV cell (module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return f"{value:.3f}" if name in THREE_DECIMALS.get(rec.kind, ()) else value
    if isinstance(value, datetime):
        return format_timestamp(value, tz)
    if isinstance(value, tuple | dict | Struct):
        if isinstance(rec, ObjectsSample) and name == "detections":
            return _detections_cell(rec.detections)
        if isinstance(rec, Clusters) and name == "clusters":
            return _clusters_cell(rec)
        return _json(_plain_json(value))
    return value


def csv_cells(rec: Record, tz: tzinfo) -> dict[str, Any]:
    """``rec``'s CSV row as ``{column: cell}`` (the ``Timestamp`` included), as written."""
    names, cells = csv_columns(rec)
    values = [format_timestamp(rec.timestamp, tz)]
    values += [cell_value(rec, name, cell(rec), tz) for name, cell in cells]
    return dict(zip(names, values, strict=True))


def _layout_key(rec: Record) -> tuple[Any, ...]:
    """What the columns of ``rec`` depend on: its kind and its regions' names."""
    zones = tuple(tuple(getattr(rec, f.name)) for f in _csv_fields(type(rec))
                  if ZONE in f.metadata["csv"])
    return (rec.kind, zones)



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
        period = self.settings.screenshot_period
        self._shots = IntervalGate(period * 60) if period > 0 else None
        self._folders: dict[str, Path | None] = {}
        self._layouts: dict[tuple[Any, ...], tuple[str, tuple[tuple[str, Cell], ...]]] = {}
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

    def screenshot_path(self, ts: datetime) -> Path:
        stamp = ts.astimezone(self.tz).strftime("%Y%m%dT%H%M%S%z")
        return self.screenshot_dir / f"{stamp}.jpg"

    def record_folder(self, rec: Record) -> Path | None:
        """The folder of ``rec``'s CSV log; None for a kind with no CSV log (the frame
        summary, the events that have no columns: docs/events.md)."""
        kind = rec.kind
        if kind in self._folders:
            return self._folders[kind]
        cls = type(rec)
        camera = self.log_dir.parent
        folder: Path | None
        if cls.CATEGORY == "summary" or not has_csv(cls):
            folder = None
        elif cls.CATEGORY == "sample":
            folder = camera / kind
        elif kind == LineCrossing.KIND:
            folder = camera / LINE_EVENTS_FOLDER
        else:
            folder = camera / EVENTS_FOLDER / kind
        self._folders[kind] = folder
        return folder

    def take(self, records: Sequence[Record]) -> None:
        """Write each camera record with a CSV log to it (the records of this camera: a
        worker feeds each camera's logger its own frames): a sample of kind K to
        ``<camera>/K/<date>.csv``, an event to ``<camera>/events/K/<date>.csv``
        (``line_crossing`` to ``<camera>/line_crossings/<date>.csv``); the date is the local
        date of the record's ``timestamp``."""
        if self._closed:
            return
        for rec in records:
            if rec.source != "camera":
                continue
            folder = self.record_folder(rec)
            if folder is None:
                continue
            header, line = self.row_of(rec)
            day = rec.timestamp.astimezone(self.tz).date().isoformat()
            self._append(folder / f"{day}.csv", line, header)

    def row_of(self, rec: Record) -> tuple[str, str]:
        """The header line and the row of ``rec`` (module docstring for the formats)."""
        key = _layout_key(rec)
        layout = self._layouts.get(key)
        if layout is None:
            names, cells = csv_columns(rec)
            layout = self._layouts[key] = (csv_line(names), cells)
        header, cells = layout
        values: list[Any] = [format_timestamp(rec.timestamp, self.tz)]
        for name, cell in cells:
            values.append(cell_value(rec, name, cell(rec), self.tz))
        return header, csv_line(values)

    def log(self, frame: Frame) -> None:
        """Screenshots (their own ``ScreenshotPeriod`` clock, which a replayed frame moves
        on too), then the frame's records (:meth:`take`)."""
        if self._closed:  # a last frame racing a shutdown: nothing to do
            return
        ts = aware(frame.timestamp, self.tz)
        shot_due = self._shots is not None and self._shots.due(ts)
        if frame.replay:  # its records are on disk already; the clock above moved on
            return
        if frame.records:
            self.take(frame.records)
        if shot_due and frame.has_image:
            image = frame.image.copy()
            path = self.screenshot_path(ts)
            # Skippable: while the disk is full a screenshot is skipped and counted, not kept.
            self.writer.submit(lambda: write_jpeg(path, image, SCREENSHOT_JPEG_QUALITY),
                               skippable=True)

    def finish(self, end: Frame) -> None:
        """The end-of-stream frame: its records (the last samples, the sessions still
        open), whatever the interval."""
        if end.records:
            self.take(end.records)

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

    def last_logged(self) -> datetime | None:
        """The timestamp of the last row of the newest daily log (rows are in time order)."""
        days = sorted(self.log_dir.glob("????-??-??.csv"))
        for path in reversed(days):
            try:
                with open(path, "rb") as fh:
                    fh.seek(0, os.SEEK_END)
                    fh.seek(max(0, fh.tell() - 4096))
                    tail = fh.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            for line in reversed(tail):
                try:
                    return datetime.fromisoformat(line.split(",", 1)[0])
                except ValueError:
                    continue  # the header, a torn or cut first line
        return None

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
