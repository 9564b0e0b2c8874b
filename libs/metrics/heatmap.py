"""Heatmaps of where people stand, from a camera's raw ``objects_log`` files.

Every person of every raw row (one row per logger ``TimeInterval``) is counted once, at the
foot point of its box (bottom centre: ``((x1 + x2) / 2, y2)``), in a grid of ``columns x
rows`` cells laid over the image.  A second grid counts only the people flagged
``"violating"``.  Rows are picked by the local date of their timestamp (the rule of the
reports), rows of the same instant count once (the last one written wins, as in the reports).

Image size.  The raw log holds box pixels but not the size of the frame they were measured
in, so the caller says which size to use; :func:`choose_image_size` takes, in this order:

1. ``[App] Resolution`` when set: every frame is resized to it before detection;
2. the size of the camera's live preview JPEG (written by ``video_logger`` from the processed
   frame), when the file is there;
3. the largest box extents seen in the chosen rows (``max x2``, ``max y2``): the grid then
   spans the part of the image people were seen in.  With no people at all there is no size
   and the grids are all zero.

Points outside the image (boxes reaching past its edges) count in the nearest border cell.

Parsed raw files are cached by path and checked against their size and modification time
before each use, so a file that grew or changed is read again (never stale); the cache holds
at most :data:`CACHE_BYTES` of arrays.
"""

from __future__ import annotations

import csv
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path

import cv2
import numpy as np

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
