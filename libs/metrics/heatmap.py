"""Heatmaps of where people stand: hourly grids of person-seconds, and the raw-log fallback.

Hourly grids (the main source)
------------------------------
The ``heatmap`` post-processor (:mod:`libs.post_processors.heatmap`) accumulates, per camera,
how many *person-seconds* were spent in each cell of a grid of ``[App] HeatmapResolution``
(``columns, rows``) cells, and writes one compressed ``.npz`` per local hour of ``[App]
TimeZone``: ``<camera folder>/heatmaps/<YYYY-MM-DD>T<HH>.npz`` (the hour's local start; the
repeated hour of a daylight-saving fall-back shares one file, and both halves belong to the
same local date).  Each file holds, as :class:`HourGrids`:

- ``image_presence`` / ``image_violations``: ``(rows, columns)`` person-seconds, by the foot
  point (bottom centre of the box) normalised by the frame size, so cell ``(r, c)`` covers
  ``x in [c, c + 1) * width / columns`` and ``y in [r, r + 1) * height / rows``; points
  outside the image count in the nearest border cell.  ``violations`` counts only people
  flagged ``in_violation``.
- for a calibrated camera, ``floor_presence`` / ``floor_violations`` on the floor plane:
  square cells of ``cell`` metres from ``(x0, y0)`` (see :class:`FloorGrid`), with the
  homography used (image pixels -> metres) so the grid can be drawn back onto the image.
  Person-seconds outside that grid are kept in ``floor_outside`` (presence, violations).
- ``seconds`` (camera time the hour's frames stand for), ``frames``, ``samples`` (people x
  frames), ``first_us`` / ``last_us`` (the first and last frame folded in, microseconds since
  the Unix epoch), ``image_size`` (of the last frame).

A range of local dates (optionally only some hours of the day) is answered by adding the
hourly grids (:func:`sum_hours`): any range is exact because nothing is averaged or resampled.
Files whose grid differs from the newest file of the range (HeatmapResolution or calibration
changed) cannot be added cell by cell; they are left out and listed with the reason.

Raw-log fallback
----------------
:func:`compute_heatmap` counts the people of a camera's raw ``objects_log`` rows instead.  It
serves periods logged before the ``heatmap`` post-processor was enabled (or with it
disabled), in image space only, and in another unit: people per raw row (one row per logger
``TimeInterval``), not person-seconds.  Every person of every row is counted once, at its foot
point.  Rows are picked by the local date of their timestamp (the rule of the reports), rows of
the same instant count once (the last one written wins, as in the reports).

The raw log holds box pixels but not the size of the frame they were measured in, so the
caller says which size to use; :func:`choose_image_size` takes, in this order:

1. ``[App] Resolution`` when set: every frame is resized to it before detection;
2. the size of the camera's live preview JPEG (written by ``video_logger`` from the processed
   frame), when the file is there;
3. the largest box extents seen in the chosen rows (``max x2``, ``max y2``): the grid then
   spans the part of the image people were seen in.  With no people at all there is no size
   and the grids are all zero.

Parsed raw files are cached by path and checked against their size and modification time
before each use, so a file that grew or changed is read again (never stale); the cache holds
at most :data:`CACHE_BYTES` of arrays.

Rendering
---------
:func:`render_overlay` colours a grid with ``cv2.applyColorMap`` (JET: blue cold, red hot;
linear, square-root or logarithmic in the cell value over the grid's maximum, optionally
after a Gaussian blur) and alpha-blends the cells that have a value over a background
picture; a floor grid is drawn back through its homography, so it lands on the floor of the
camera's view.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from libs.loggers.writer import BackgroundWriter, atomic_write_bytes

log = logging.getLogger(__name__)

CACHE_BYTES = 256 * 1024 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

IMAGE_SIZE_RESOLUTION = "resolution"
IMAGE_SIZE_PREVIEW = "preview"
IMAGE_SIZE_EXTENTS = "bbox-extents"


@dataclass(frozen=True)
class FilePoints:
    """The people of one raw file: per row its instant and people count, per person the
    foot point, the box's right edge and the violation flag (rows in file order)."""

    row_us: np.ndarray  # int64 microseconds since the Unix epoch
    counts: np.ndarray  # int64 people per row
    foot_x: np.ndarray  # float32
    foot_y: np.ndarray  # float32 (= y2)
    right: np.ndarray  # float32 (= x2)
    violating: np.ndarray  # bool
    skipped: int = 0

    @property
    def nbytes(self) -> int:
        arrays = (self.row_us, self.counts, self.foot_x, self.foot_y, self.right, self.violating)
        return sum(a.nbytes for a in arrays)

    @classmethod
    def empty(cls) -> FilePoints:
        f32 = np.zeros(0, np.float32)
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), f32, f32, f32, np.zeros(0, bool))


def to_us(ts: datetime) -> int:
    """An aware instant as integer microseconds since the Unix epoch."""
    return (ts - _EPOCH) // _MICROSECOND


def read_points(path: Path) -> FilePoints:
    """Parse a raw ``objects_log`` file; unreadable lines are skipped and counted.

    A missing file reads as empty.  A line without its final newline (torn by a crash while
    being written) is skipped, as the reports do.
    """
    try:
        f = open(path, encoding="utf-8", errors="replace", newline="")  # noqa: SIM115
    except FileNotFoundError:
        return FilePoints.empty()
    except OSError as exc:
        log.warning("%s: unreadable raw log (%s)", path, exc)
        return FilePoints.empty()
    row_us: list[int] = []
    counts: list[int] = []
    boxes: list[tuple[float, float, float]] = []
    flags: list[bool] = []
    skipped = 0
    with f:
        header_line = f.readline()
        if not header_line.endswith("\n"):
            return FilePoints.empty()
        header = next(csv.reader([header_line]), [])
        try:
            ts_at = header.index("Timestamp")
            det_at = header.index("Detections")
        except ValueError:
            log.warning("%s: header %r lacks Timestamp or Detections", path, header)
            return FilePoints.empty()
        for line in f:
            if not line.endswith("\n"):
                skipped += 1
                continue
            try:
                parts = next(csv.reader([line]))
                ts = datetime.fromisoformat(parts[ts_at])
                if ts.tzinfo is None:
                    raise ValueError("timestamp without offset")
                people = _people(json.loads(parts[det_at]))
            except (ValueError, IndexError, TypeError, KeyError, StopIteration):
                skipped += 1
                continue
            row_us.append(to_us(ts))
            counts.append(len(people))
            for x1, x2, y2, violating in people:
                boxes.append(((x1 + x2) * 0.5, y2, x2))
                flags.append(violating)
    pts = np.asarray(boxes, np.float32).reshape(-1, 3)
    return FilePoints(
        np.asarray(row_us, np.int64),
        np.asarray(counts, np.int64),
        np.ascontiguousarray(pts[:, 0]),
        np.ascontiguousarray(pts[:, 1]),
        np.ascontiguousarray(pts[:, 2]),
        np.asarray(flags, bool),
        skipped,
    )


def _people(items: object) -> list[tuple[float, float, float, bool]]:
    """``(x1, x2, y2, violating)`` of each detection of a row; ValueError when malformed."""
    if not isinstance(items, list):
        raise ValueError("Detections is not a list")
    out = []
    for item in items:
        bbox = item["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise ValueError("bbox is not [x1, y1, x2, y2]")
        x1, _, x2, y2 = (float(v) for v in bbox)
        if not all(np.isfinite((x1, x2, y2))):
            raise ValueError("bbox is not finite")
        out.append((x1, x2, y2, bool(item.get("violating", False))))
    return out


class PointsCache:
    """Parsed raw files by path, valid while the file's size and mtime are unchanged."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Path, tuple[tuple[int, int], FilePoints]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.reads = 0

    def get(self, path: Path) -> FilePoints:
        try:
            st = path.stat()
        except OSError:
            self._drop(path)
            return FilePoints.empty()
        key = (st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._items.get(path)
            if hit is not None and hit[0] == key:
                self._items.move_to_end(path)
                return hit[1]
        points = read_points(path)  # outside the lock: files are read in parallel
        with self._lock:
            self.reads += 1
            old = self._items.pop(path, None)
            if old is not None:
                self._bytes -= old[1].nbytes
            if points.nbytes <= self.max_bytes:
                self._items[path] = (key, points)
                self._bytes += points.nbytes
                while self._bytes > self.max_bytes and self._items:
                    _, (_, evicted) = self._items.popitem(last=False)
                    self._bytes -= evicted.nbytes
        return points

    def _drop(self, path: Path) -> None:
        with self._lock:
            old = self._items.pop(path, None)
            if old is not None:
                self._bytes -= old[1].nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


POINTS_CACHE = PointsCache()


def local_day_bounds(first: date, last: date, tz: tzinfo) -> tuple[int, int]:
    """``[start, end)`` in epoch microseconds of local dates ``first`` to ``last`` in ``tz``."""
    start = to_us(datetime.combine(first, time(), tzinfo=tz))
    if last >= date.max:
        return start, np.iinfo(np.int64).max
    end = to_us(datetime.combine(last + timedelta(days=1), time(), tzinfo=tz))
    return start, end


def jpeg_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of an image file, None when it is missing or unreadable."""
    try:
        data = np.fromfile(path, np.uint8)
    except (FileNotFoundError, OSError):
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    return int(image.shape[1]), int(image.shape[0])


def choose_image_size(
    resolution: tuple[int, int] | None, preview: Path | None
) -> tuple[tuple[int, int] | None, str | None]:
    """The frame size to normalise by, and where it came from (see the module docstring).
    ``(None, None)`` means: use the box extents of the data."""
    if resolution is not None and resolution[0] > 0 and resolution[1] > 0:
        return (int(resolution[0]), int(resolution[1])), IMAGE_SIZE_RESOLUTION
    if preview is not None:
        size = jpeg_size(preview)
        if size is not None and size[0] > 0 and size[1] > 0:
            return size, IMAGE_SIZE_PREVIEW
    return None, None


@dataclass
class Heatmap:
    columns: int
    rows: int
    image_size: tuple[int, int] | None
    image_size_source: str | None
    samples: int
    detections: int
    violating_detections: int
    presence: np.ndarray  # (rows, columns) int64
    violations: np.ndarray  # (rows, columns) int64


def _last_per_instant(row_us: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows to keep: selected, and the last one of its instant."""
    idx = np.flatnonzero(selected)
    keep = np.zeros(len(row_us), bool)
    if idx.size:
        reversed_us = row_us[idx][::-1]
        _, first_in_reversed = np.unique(reversed_us, return_index=True)
        keep[idx[idx.size - 1 - first_in_reversed]] = True
    return keep


def _grid(xs: np.ndarray, ys: np.ndarray, size: tuple[int, int], columns: int,
          rows: int) -> np.ndarray:
    width, height = size
    col = np.clip(np.floor(xs.astype(np.float64) * columns / width), 0, columns - 1)
    row = np.clip(np.floor(ys.astype(np.float64) * rows / height), 0, rows - 1)
    flat = row.astype(np.int64) * columns + col.astype(np.int64)
    return np.bincount(flat, minlength=columns * rows).reshape(rows, columns)


def compute_heatmap(
    files: Sequence[Path],
    start_us: int,
    end_us: int,
    columns: int,
    rows: int,
    image_size: tuple[int, int] | None = None,
    image_size_source: str | None = None,
    cache: PointsCache | None = None,
) -> Heatmap:
    """Presence and violation grids of the rows of ``files`` in ``[start_us, end_us)``.

    ``files`` are read in the order given (later ones win for repeated instants); missing
    files are skipped.  Without ``image_size`` the box extents of the chosen rows are used.
    """
    if columns < 1 or rows < 1:
        raise ValueError("a heatmap needs at least one column and one row")
    store = cache if cache is not None else POINTS_CACHE
    parts = [store.get(path) for path in files]
    row_us = np.concatenate([p.row_us for p in parts]) if parts else np.zeros(0, np.int64)
    counts = np.concatenate([p.counts for p in parts]) if parts else np.zeros(0, np.int64)
    keep_rows = _last_per_instant(row_us, (row_us >= start_us) & (row_us < end_us))
    keep = np.repeat(keep_rows, counts)
    empty32 = np.zeros(0, np.float32)
    foot_x = np.concatenate([p.foot_x for p in parts])[keep] if parts else empty32
    foot_y = np.concatenate([p.foot_y for p in parts])[keep] if parts else empty32
    right = np.concatenate([p.right for p in parts])[keep] if parts else empty32
    violating = (
        np.concatenate([p.violating for p in parts])[keep] if parts else np.zeros(0, bool)
    )

    size = image_size
    source = image_size_source if image_size is not None else None
    if size is None and foot_x.size:
        width, height = float(right.max()), float(foot_y.max())
        if width > 0 and height > 0:
            size, source = (int(np.ceil(width)), int(np.ceil(height))), IMAGE_SIZE_EXTENTS
    if size is None:
        zeros = np.zeros((rows, columns), np.int64)
        presence, violations = zeros, zeros.copy()
    else:
        presence = _grid(foot_x, foot_y, size, columns, rows)
        violations = _grid(foot_x[violating], foot_y[violating], size, columns, rows)
    return Heatmap(
        columns=columns,
        rows=rows,
        image_size=size,
        image_size_source=source,
        samples=int(keep_rows.sum()),
        detections=int(foot_x.size),
        violating_detections=int(violating.sum()),
        presence=presence,
        violations=violations,
    )


# ---------------------------------------------------------------------------------------
# Hourly grids
# ---------------------------------------------------------------------------------------

HEATMAPS_FOLDER = "heatmaps"
CLUSTERS_FILE = "clusters.json"
FORMAT_VERSION = 1
HOUR_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2})\.npz$")
SPACES = ("image", "floor")
KINDS = ("presence", "violations")
Space = Literal["image", "floor"]
Kind = Literal["presence", "violations"]
# A floor grid is never larger than this many metres from the calibration points' centre.
DEFAULT_FLOOR_MAX_DISTANCE = 100.0


class HeatmapFileError(ValueError):
    """An hourly heatmap file that cannot be read (torn, foreign or of another version)."""


def grid_writer(camera_id: str) -> BackgroundWriter:
    """The background thread that stores a camera's hourly grids (the ``heatmap`` stage's own
    store, off its frame loop: the stage hands it reads and merges)."""
    return BackgroundWriter(name=f"heatmap-{camera_id}")


def heatmaps_dir(camera_folder: Path) -> Path:
    """``<camera folder>/heatmaps`` (the camera folder is the raw logs' ``<root>/<id>``)."""
    return camera_folder / HEATMAPS_FOLDER


def hour_key(ts: datetime, tz: tzinfo) -> str:
    """``YYYY-MM-DDTHH``: the local hour of ``ts`` in ``tz``, the name of its file."""
    return ts.astimezone(tz).strftime("%Y-%m-%dT%H")


def hour_path(folder: Path, key: str) -> Path:
    return folder / f"{key}.npz"


def image_cells(points: np.ndarray, width: int, height: int, columns: int,
                rows: int) -> np.ndarray:
    """Flat cell index (``row * columns + column``) of each point ``(N, 2)`` of a
    ``width x height`` image; points outside count in the nearest border cell."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    col = np.clip(np.floor(p[:, 0] * columns / width), 0, columns - 1)
    row = np.clip(np.floor(p[:, 1] * rows / height), 0, rows - 1)
    col = np.nan_to_num(col, nan=0.0)
    row = np.nan_to_num(row, nan=0.0)
    return row.astype(np.int64) * columns + col.astype(np.int64)


@dataclass(frozen=True)
class FloorGrid:
    """A grid of square cells of ``cell`` metres on the floor: cell ``(r, c)`` covers
    ``x in x0 + [c, c + 1) * cell`` and ``y in y0 + [r, r + 1) * cell`` (floor metres, the
    axes of the camera's CalibrationFloorPoints).  ``homography`` maps image pixels to floor
    metres."""

    x0: float
    y0: float
    cell: float
    columns: int
    rows: int
    homography: np.ndarray

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``x_min, y_min, x_max, y_max`` in metres."""
        return (self.x0, self.y0, self.x0 + self.columns * self.cell,
                self.y0 + self.rows * self.cell)

    def cells(self, floor_xy: np.ndarray) -> np.ndarray:
        """Flat cell index of each floor point ``(N, 2)``; ``-1`` outside the grid or NaN."""
        p = np.asarray(floor_xy, np.float64).reshape(-1, 2)
        with np.errstate(invalid="ignore"):
            col = np.floor((p[:, 0] - self.x0) / self.cell)
            row = np.floor((p[:, 1] - self.y0) / self.cell)
            inside = (col >= 0) & (col < self.columns) & (row >= 0) & (row < self.rows)
        flat = np.full(len(p), -1, np.int64)
        flat[inside] = row[inside].astype(np.int64) * self.columns + col[inside].astype(np.int64)
        return flat

    def same_as(self, other: FloorGrid) -> bool:
        return (
            (self.columns, self.rows) == (other.columns, other.rows)
            and np.allclose((self.x0, self.y0, self.cell), (other.x0, other.y0, other.cell),
                            rtol=0.0, atol=1e-9)
            and np.allclose(self.homography, other.homography, rtol=1e-9, atol=1e-12)
        )

    def as_dict(self) -> dict[str, Any]:
        x0, y0, x1, y1 = self.extent
        return {
            "cell_m": self.cell,
            "extent_m": {"x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1},
            "homography": self.homography.tolist(),
        }


def grid_over(extent: Sequence[float], columns: int, rows: int,
              homography: np.ndarray) -> FloorGrid:
    """The grid of ``columns x rows`` square cells, centred on ``extent`` (``x_min, y_min,
    x_max, y_max`` metres) and just covering it: the cell side is the larger of
    ``width / columns`` and ``height / rows``."""
    x_min, y_min, x_max, y_max = (float(v) for v in extent)
    if not (x_max > x_min and y_max > y_min) or not np.isfinite([x_min, y_min, x_max, y_max]).all():
        raise ValueError(f"a floor extent needs x_min < x_max and y_min < y_max, got {extent}")
    cell = max((x_max - x_min) / columns, (y_max - y_min) / rows)
    cx, cy = (x_min + x_max) / 2.0, (y_min + y_max) / 2.0
    return FloorGrid(cx - columns * cell / 2.0, cy - rows * cell / 2.0, cell, columns, rows,
                     np.asarray(homography, np.float64).reshape(3, 3))


def _clip_in_front(polygon: np.ndarray, homography: np.ndarray, w_min: float) -> np.ndarray:
    """The part of an image polygon where the homography's ``w >= w_min`` (in front of the
    horizon), by Sutherland-Hodgman clipping against that half-plane."""
    h = homography
    w = polygon @ h[2, :2] + h[2, 2]
    out: list[np.ndarray] = []
    n = len(polygon)
    for k in range(n):
        p, q = polygon[k], polygon[(k + 1) % n]
        wp, wq = w[k], w[(k + 1) % n]
        if wp >= w_min:
            out.append(p)
        if (wp >= w_min) != (wq >= w_min):
            t = (w_min - wp) / (wq - wp)
            out.append(p + t * (q - p))
    return np.array(out, np.float64).reshape(-1, 2)


def floor_grid_for(
    homography: np.ndarray,
    polygon_px: np.ndarray,
    floor_points_m: np.ndarray,
    columns: int,
    rows: int,
    max_distance: float = DEFAULT_FLOOR_MAX_DISTANCE,
) -> FloorGrid | None:
    """The floor grid of a calibrated camera: over the floor extent of ``polygon_px`` (the
    camera's ROI, or the image corners).

    A homography maps straight lines to straight lines, so the floor area seen through the
    polygon lies within the bounding box of its mapped corners.  The part of the polygon at
    or beyond the horizon has no floor position and is cut off first; what is left is capped
    to ``max_distance`` metres around the centre of the calibration points (a camera seeing
    the horizon would otherwise get a grid reaching kilometres away).  None when nothing of
    the polygon is on the floor.
    """
    h = np.asarray(homography, np.float64).reshape(3, 3)
    poly = np.asarray(polygon_px, np.float64).reshape(-1, 2)
    ref = np.asarray(floor_points_m, np.float64).reshape(-1, 2)
    inside = _clip_in_front(poly, h, 1e-9)
    if len(inside) < 3:
        return None
    mapped = (h[:, :2] @ inside.T + h[:, 2:3]).T
    floor = mapped[:, :2] / mapped[:, 2:3]
    centre = ref.mean(axis=0) if len(ref) else floor.mean(axis=0)
    lo = np.maximum(floor.min(axis=0), centre - max_distance)
    hi = np.minimum(floor.max(axis=0), centre + max_distance)
    if not (hi > lo).all():
        return None
    return grid_over((lo[0], lo[1], hi[0], hi[1]), columns, rows, h)


@dataclass
class HourGrids:
    """The person-seconds of one camera in one local hour (or a part of it, before merging);
    see the module docstring."""

    image_presence: np.ndarray
    image_violations: np.ndarray
    floor: FloorGrid | None = None
    floor_presence: np.ndarray | None = None
    floor_violations: np.ndarray | None = None
    floor_outside: np.ndarray = field(default_factory=lambda: np.zeros(2))
    seconds: float = 0.0
    frames: int = 0
    samples: int = 0
    first_us: int = 0
    last_us: int = 0
    image_size: tuple[int, int] = (0, 0)

    @classmethod
    def zeros(cls, columns: int, rows: int, floor: FloorGrid | None) -> HourGrids:
        shape = (rows, columns)
        return cls(
            np.zeros(shape),
            np.zeros(shape),
            floor,
            np.zeros((floor.rows, floor.columns)) if floor else None,
            np.zeros((floor.rows, floor.columns)) if floor else None,
        )

    def merged(self, newer: HourGrids) -> HourGrids:
        """This file's counts plus ``newer`` (a later part of the same hour).

        A space whose grid differs between the two (HeatmapResolution or the calibration
        changed within the hour) keeps only ``newer``'s counts: cells of different grids
        cannot be added.
        """
        out = HourGrids(
            newer.image_presence.copy(),
            newer.image_violations.copy(),
            seconds=self.seconds + newer.seconds,
            frames=self.frames + newer.frames,
            samples=self.samples + newer.samples,
            first_us=min(self.first_us, newer.first_us) if self.frames else newer.first_us,
            last_us=max(self.last_us, newer.last_us),
            image_size=newer.image_size if newer.frames else self.image_size,
        )
        if self.image_presence.shape == newer.image_presence.shape:
            out.image_presence += self.image_presence
            out.image_violations += self.image_violations
        else:
            log.warning("heatmap hour: image grid changed from %s to %s; older counts dropped",
                        self.image_presence.shape, newer.image_presence.shape)
        if newer.floor is None:
            out.floor, out.floor_presence, out.floor_violations = (
                self.floor, self.floor_presence, self.floor_violations)
            out.floor_outside = self.floor_outside.copy()
        elif self.floor is None or not self.floor.same_as(newer.floor):
            if self.floor is not None:
                log.warning("heatmap hour: floor grid changed; older floor counts dropped")
            out.floor, out.floor_presence, out.floor_violations = (
                newer.floor, newer.floor_presence, newer.floor_violations)
            out.floor_outside = newer.floor_outside.copy()
        else:
            assert self.floor_presence is not None and self.floor_violations is not None
            assert newer.floor_presence is not None and newer.floor_violations is not None
            out.floor = newer.floor
            out.floor_presence = self.floor_presence + newer.floor_presence
            out.floor_violations = self.floor_violations + newer.floor_violations
            out.floor_outside = self.floor_outside + newer.floor_outside
        return out

    def to_bytes(self) -> bytes:
        """The ``.npz`` form: ``meta`` = ``[version, first_us, last_us, frames, samples,
        width, height, seconds]`` (float64: microsecond instants are exact below 2**53), the
        grids, and for the floor ``floor_meta`` = ``[x0, y0, cell, homography (9, row by
        row), outside presence, outside violations]``.  Few members: each costs a header
        parse when read."""
        meta = [FORMAT_VERSION, self.first_us, self.last_us, self.frames, self.samples,
                self.image_size[0], self.image_size[1], self.seconds]
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(meta, np.float64),
            "image_presence": self.image_presence,
            "image_violations": self.image_violations,
        }
        if self.floor is not None:
            assert self.floor_presence is not None and self.floor_violations is not None
            f = self.floor
            arrays["floor_meta"] = np.concatenate(
                [[f.x0, f.y0, f.cell], f.homography.reshape(9), self.floor_outside.reshape(2)])
            arrays["floor_presence"] = self.floor_presence
            arrays["floor_violations"] = self.floor_violations
        buf = io.BytesIO()
        np.savez_compressed(buf, allow_pickle=False, **arrays)
        return buf.getvalue()


def _members(space: Space | None, kind: Kind | None) -> set[str]:
    names = {"meta"}
    for sp in SPACES if space is None else (space,):
        for kd in KINDS if kind is None else (kind,):
            names.add(f"{sp}_{kd}")
        if sp == "floor":
            names.add("floor_meta")
    return names


def _meta(z: Any, path: Path) -> np.ndarray:
    meta = np.asarray(z["meta"], np.float64).reshape(-1)
    if len(meta) != 8 or meta[0] != FORMAT_VERSION:
        raise HeatmapFileError(f"{path}: not a version {FORMAT_VERSION} heatmap file")
    return meta


def read_hour(path: Path, space: Space | None = None, kind: Kind | None = None) -> HourGrids:
    """An hourly file (only the grids of ``space``/``kind`` when given; the others are then
    empty ``(0, 0)`` arrays, or None for the floor).  FileNotFoundError when missing,
    HeatmapFileError when unreadable."""
    wanted = _members(space, kind)
    try:
        with np.load(path, allow_pickle=False) as z:
            have = set(z.files)
            if "meta" not in have:
                raise HeatmapFileError(f"{path}: not a heatmap file")
            meta = _meta(z, path)
            got = {name: z[name] for name in (wanted & have) - {"meta"}}
    except (FileNotFoundError, HeatmapFileError):
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise HeatmapFileError(f"{path}: unreadable heatmap file ({exc})") from exc
    try:
        empty = np.zeros((0, 0))
        floor = None
        outside = np.zeros(2)
        if "floor_meta" in got:
            fm = np.asarray(got["floor_meta"], np.float64).reshape(14)
            ref = got.get("floor_presence", got.get("floor_violations"))
            rows, columns = ref.shape if ref is not None else (0, 0)
            floor = FloorGrid(float(fm[0]), float(fm[1]), float(fm[2]), int(columns),
                              int(rows), fm[3:12].reshape(3, 3).copy())
            outside = fm[12:14].copy()

        def grid(name: str) -> np.ndarray | None:
            value = got.get(name)
            if value is None:
                return None
            arr = np.asarray(value, np.float64)
            if arr.ndim != 2:
                raise ValueError(f"{name} is not a grid")
            return arr

        presence, violations = grid("image_presence"), grid("image_violations")
        return HourGrids(
            image_presence=presence if presence is not None else empty,
            image_violations=violations if violations is not None else empty,
            floor=floor,
            floor_presence=grid("floor_presence"),
            floor_violations=grid("floor_violations"),
            floor_outside=outside,
            seconds=float(meta[7]),
            frames=int(meta[3]),
            samples=int(meta[4]),
            first_us=int(meta[1]),
            last_us=int(meta[2]),
            image_size=(int(meta[5]), int(meta[6])),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise HeatmapFileError(f"{path}: malformed heatmap file ({exc})") from exc


def read_watermark(path: Path) -> int | None:
    """``last_us`` of an hourly file: frames at or before it are already counted there.
    None when the file is missing or unreadable (then nothing of it can be double counted:
    :func:`merge_into` sets an unreadable file aside)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return int(_meta(z, path)[2])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("%s: unreadable heatmap file (%s)", path, exc)
        return None


def merge_into(path: Path, delta: HourGrids) -> None:
    """Add ``delta`` to the hourly file ``path`` (created when missing), atomically.

    An unreadable file is renamed ``<name>.corrupt`` (kept for inspection) and replaced.
    Run it on one writer thread per camera so two merges of a file never interleave.
    """
    try:
        merged = read_hour(path).merged(delta)
    except FileNotFoundError:
        merged = delta
    except HeatmapFileError as exc:
        log.error("%s; set aside as .corrupt", exc)
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name(path.name + ".corrupt"))
        merged = delta
    atomic_write_bytes(path, merged.to_bytes())


# ---------------------------------------------------------------------------------------
# Range sums
# ---------------------------------------------------------------------------------------


def parse_hours(text: str) -> frozenset[int]:
    """``"9-17"``, ``"8,12-13,20"``: hours of the day 0-23 (ranges include both ends);
    ValueError when malformed."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        ends = part.split("-")
        if len(ends) > 2 or not all(e.strip().isdigit() and len(e.strip()) <= 2 for e in ends):
            raise ValueError(f"{part[:20]!r} is not an hour 0-23 or a range like 9-17")
        lo, hi = int(ends[0]), int(ends[-1])
        if not (0 <= lo <= 23 and 0 <= hi <= 23) or lo > hi:
            raise ValueError(f"{part!r} is not an hour 0-23 or a range like 9-17")
        out.update(range(lo, hi + 1))
    if not out:
        raise ValueError("no hours given")
    return frozenset(out)


def hour_files(folder: Path, first: date, last: date,
               hours: Iterable[int] | None = None) -> list[tuple[str, Path]]:
    """``(hour key, path)`` of the hourly files of local dates ``first`` to ``last`` (and of
    ``hours`` of the day when given), in time order."""
    wanted = None if hours is None else frozenset(hours)
    out: list[tuple[str, Path]] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    lo, hi = first.isoformat(), last.isoformat()
    for entry in entries:
        m = HOUR_FILE.match(entry.name)
        if m is None or not (lo <= m.group(1) <= hi):
            continue
        if wanted is not None and int(m.group(2)) not in wanted:
            continue
        out.append((entry.name[:-4], Path(entry.path)))
    out.sort()
    return out


@dataclass
class HeatmapSum:
    """Hourly grids of one space and kind added over a range."""

    space: Space
    kind: Kind
    grid: np.ndarray
    floor: FloorGrid | None = None
    image_size: tuple[int, int] | None = None
    hours: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    frames: int = 0
    samples: int = 0
    outside: float = 0.0

    @property
    def total(self) -> float:
        return float(self.grid.sum())


def sum_hours(
    files: Sequence[tuple[str, Path]],
    space: Space,
    kind: Kind,
    columns: int,
    rows: int,
) -> HeatmapSum:
    """The grids of ``space``/``kind`` of ``files`` (from :func:`hour_files`) added.

    Each file is read (only the members needed) once per call: about half a millisecond
    for a 150x150 grid, so a week of hours takes ~0.1 s and the longest range the API
    allows (366 days) a few seconds.

    The newest file with a grid of that space sets the grid (its shape, and for the floor
    its cells and homography); files with another grid, without one (an uncalibrated hour
    for the floor) or unreadable are skipped and listed with the reason.  Without any file
    the grid is ``rows x columns`` zeros.
    """
    loaded: list[tuple[str, HourGrids]] = []
    skipped: list[dict[str, str]] = []

    for key, path in files:
        try:
            loaded.append((key, read_hour(path, space, kind)))
        except FileNotFoundError:
            continue  # removed since it was listed
        except HeatmapFileError as exc:
            skipped.append({"hour": key, "reason": str(exc).replace(str(path), path.name)})
    name = f"{space}_{kind}"
    ref: HourGrids | None = None
    ref_grid: np.ndarray | None = None
    for _, hg in reversed(loaded):
        ref_grid = _pick(hg, name)
        if ref_grid is not None:
            ref = hg
            break
    if ref is None or ref_grid is None:
        for key, _ in loaded:
            skipped.append({"hour": key, "reason": "no floor grid (camera not calibrated)"})
        skipped.sort(key=lambda s: s["hour"])
        return HeatmapSum(space, kind, np.zeros((rows, columns)), skipped=skipped)
    total = np.zeros_like(ref_grid)
    out = HeatmapSum(space, kind, total, floor=ref.floor if space == "floor" else None)
    for key, hg in loaded:
        grid = _pick(hg, name)
        if grid is None:
            skipped.append({"hour": key, "reason": "no floor grid (camera not calibrated)"})
            continue
        if grid.shape != ref_grid.shape or (
            space == "floor" and hg.floor is not None and ref.floor is not None
            and not hg.floor.same_as(ref.floor)
        ):
            skipped.append({"hour": key, "reason": "another grid (HeatmapResolution or "
                            "calibration changed)"})
            continue
        total += grid
        out.seconds += hg.seconds
        out.frames += hg.frames
        out.samples += hg.samples
        if space == "floor":
            out.outside += float(hg.floor_outside[0 if kind == "presence" else 1])
        if hg.image_size[0] > 0:
            out.image_size = hg.image_size
        out.hours.append({"hour": key, "seconds": round(hg.seconds, 6),
                          "total": round(float(grid.sum()), 6)})
    skipped.sort(key=lambda s: s["hour"])
    out.skipped = skipped
    return out


def _pick(hg: HourGrids, name: str) -> np.ndarray | None:
    value: np.ndarray | None = getattr(hg, name)
    return value


def days_of(hours: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-hour entries of a :class:`HeatmapSum` added per local date."""
    days: dict[str, dict[str, Any]] = {}
    for item in hours:
        day = days.setdefault(item["hour"][:10], {"date": item["hour"][:10], "hours": 0,
                                                  "seconds": 0.0, "total": 0.0})
        day["hours"] += 1
        day["seconds"] += item["seconds"]
        day["total"] += item["total"]
    for day in days.values():
        day["seconds"] = round(day["seconds"], 6)
        day["total"] = round(day["total"], 6)
    return list(days.values())


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------

GREY = 128
DEFAULT_ALPHA = 0.6


Scale = Literal["linear", "sqrt", "log"]
SCALES = ("linear", "sqrt", "log")
MAX_BLUR_CELLS = 10.0
BLUR_CUT = 1e-3


def heat_levels(grid: np.ndarray, scale: Scale = "linear", blur: float = 0.0) -> np.ndarray:
    """``uint8`` levels of a grid, 0 for empty cells (cells with a value get at least 1 so
    they stay visible), 255 for the largest.

    ``blur`` first smooths the grid with a Gaussian of that many cells (sigma; empty cells
    near busy ones get a little; what ends below :data:`BLUR_CUT` of the largest value is
    dropped, so the far tails do not tint everything).  Then the value ``v`` of a cell over the
    largest ``m`` becomes ``v / m`` (``linear``), ``sqrt(v / m)`` (``sqrt``: a cell with a
    quarter of the time shows half way) or ``log(1 + v / s) / log(1 + m / s)`` with ``s`` the
    smallest value above zero (``log``)."""
    g: np.ndarray = np.nan_to_num(np.asarray(grid, np.float64), nan=0.0, posinf=0.0,
                                  neginf=0.0)
    g = np.maximum(g, 0.0)
    if blur > 0 and g.size:
        sigma = min(float(blur), MAX_BLUR_CELLS)
        g = np.asarray(cv2.GaussianBlur(g, (0, 0), sigmaX=sigma, sigmaY=sigma,
                                        borderType=cv2.BORDER_CONSTANT), np.float64)
        g[g < BLUR_CUT * float(g.max())] = 0.0  # the Gaussian's far tails stay clear
    top = float(g.max()) if g.size else 0.0
    if top <= 0.0:
        return np.zeros(g.shape, np.uint8)
    if scale == "sqrt":
        value = np.sqrt(g / top)
    elif scale == "log":
        low = float(g[g > 0].min())
        value = np.log1p(g / low) / np.log1p(top / low)
    else:
        value = g / top
    levels = np.rint(value * 255.0)
    levels[(g > 0) & (levels < 1)] = 1
    return levels.astype(np.uint8)


def _floor_lookup(floor: FloorGrid, width: int, height: int, image_size: tuple[int, int],
                  ) -> np.ndarray:
    """Per pixel of a ``width x height`` picture, the flat floor cell it shows (-1 none).

    The picture may be a rescaled frame: its pixels are scaled to the frame's
    ``image_size`` (the homography's pixels) first."""
    sx = image_size[0] / width if image_size[0] > 0 else 1.0
    sy = image_size[1] / height if image_size[1] > 0 else 1.0
    u = (np.arange(width, dtype=np.float64) + 0.5) * sx
    v = (np.arange(height, dtype=np.float64) + 0.5) * sy
    h = floor.homography
    uu, vv = np.meshgrid(u, v)
    x = h[0, 0] * uu + h[0, 1] * vv + h[0, 2]
    y = h[1, 0] * uu + h[1, 1] * vv + h[1, 2]
    w = h[2, 0] * uu + h[2, 1] * vv + h[2, 2]
    valid = w > 0.0
    safe = np.where(valid, w, 1.0)
    xy = np.stack([x / safe, y / safe], axis=-1).reshape(-1, 2)
    flat = floor.cells(xy)
    flat[~valid.reshape(-1)] = -1
    return flat.reshape(height, width)


def render_overlay(
    grid: np.ndarray,
    background: np.ndarray | None,
    image_size: tuple[int, int] | None = None,
    floor: FloorGrid | None = None,
    alpha: float = DEFAULT_ALPHA,
    scale: Scale = "linear",
    blur: float = 0.0,
) -> np.ndarray:
    """A BGR picture: ``background`` (or a grey canvas of ``image_size``; of 4 pixels per
    cell when that is unknown too) with the grid's non-empty cells coloured (JET over
    :func:`heat_levels`) and alpha-blended over it.  With ``floor`` the grid is a floor grid
    and is drawn through its homography; else it covers the whole picture (image space)."""
    rows, columns = grid.shape
    if background is None:
        if image_size is not None and image_size[0] > 0 and image_size[1] > 0:
            width, height = image_size
        else:
            width, height = max(1, 4 * columns), max(1, 4 * rows)
        canvas = np.full((height, width, 3), GREY, np.uint8)
    else:
        canvas = np.asarray(background)
        if canvas.ndim == 2:
            canvas = np.asarray(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR))
        elif canvas.shape[2] == 4:
            canvas = np.asarray(cv2.cvtColor(canvas, cv2.COLOR_BGRA2BGR))
        height, width = canvas.shape[:2]
    levels = heat_levels(grid, scale, blur)
    if levels.size == 0 or not levels.any():
        return canvas.copy()
    if floor is None:
        per_pixel = cv2.resize(levels, (width, height), interpolation=cv2.INTER_NEAREST)
    else:
        lookup = _floor_lookup(floor, width, height, image_size or (width, height))
        flat = levels.reshape(-1)
        per_pixel = np.where(lookup >= 0, flat[np.maximum(lookup, 0)], 0).astype(np.uint8)
    colour = cv2.applyColorMap(per_pixel, cv2.COLORMAP_JET)
    mask = per_pixel > 0
    a = float(np.clip(alpha, 0.0, 1.0))
    out = canvas.copy()
    blended = canvas[mask].astype(np.float32) * (1.0 - a) + colour[mask].astype(np.float32) * a
    out[mask] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    data: bytes = buf.tobytes()
    return data


def read_picture(path: Path) -> np.ndarray | None:
    """A picture file as BGR, None when missing or unreadable."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None


def read_clusters(path: Path) -> dict[str, Any] | None:
    """The latest clusters a camera's ``heatmap`` post-processor wrote, None when none."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable clusters file (%s)", path, exc)
        return None
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------------------------------
# Answers (the API's JSON)
# ---------------------------------------------------------------------------------------

UNIT_HOURLY = "person-seconds"
UNIT_RAW = "people per raw-log row"


def _size_dict(size: tuple[int, int] | None) -> dict[str, int] | None:
    return {"width": size[0], "height": size[1]} if size else None


def _grid_list(grid: np.ndarray, digits: int = 6) -> list[Any]:
    out: list[Any] = np.round(np.asarray(grid, np.float64), digits).tolist()
    return out


def sum_answer(result: HeatmapSum) -> dict[str, Any]:
    """The JSON of a range sum of hourly grids."""
    rows, columns = result.grid.shape
    size = result.image_size
    if result.space == "floor" and result.floor is not None:
        cell: dict[str, Any] | None = {"width_m": result.floor.cell,
                                       "height_m": result.floor.cell}
    elif result.space == "image":
        cell = {"width_fraction": 1.0 / columns, "height_fraction": 1.0 / rows}
        if size:
            cell.update(width_px=size[0] / columns, height_px=size[1] / rows)
    else:
        cell = None
    total = result.total
    body: dict[str, Any] = {
        "source": "hourly",
        "unit": UNIT_HOURLY,
        "columns": columns,
        "rows": rows,
        "shape": [rows, columns],
        "cell_size": cell,
        "image_size": _size_dict(size),
        "seconds": round(result.seconds, 6),
        "frames": result.frames,
        "samples": result.samples,
        "total": round(total, 6),
        "mean_people": round(total / result.seconds, 6) if result.seconds > 0 else None,
        "hours_covered": result.hours,
        "days": days_of(result.hours),
        "skipped_hours": result.skipped,
        "grid": _grid_list(result.grid),
    }
    if result.space == "floor":
        body["floor"] = result.floor.as_dict() if result.floor is not None else None
        body["outside"] = round(result.outside, 6)
    return body


def raw_answer(hm: Heatmap, kind: Kind) -> dict[str, Any]:
    """The JSON of a raw-log heatmap (both grids, and ``grid`` = the one of ``kind``)."""
    grid = hm.presence if kind == "presence" else hm.violations
    return {
        "source": "raw-log",
        "unit": UNIT_RAW,
        "columns": hm.columns,
        "rows": hm.rows,
        "shape": [hm.rows, hm.columns],
        "image_size": _size_dict(hm.image_size),
        "image_size_source": hm.image_size_source,
        "samples": hm.samples,
        "detections": hm.detections,
        "violating_detections": hm.violating_detections,
        "total": int(grid.sum()),
        "heatmap": hm.presence.tolist(),
        "violations": hm.violations.tolist(),
        "grid": grid.tolist(),
    }
