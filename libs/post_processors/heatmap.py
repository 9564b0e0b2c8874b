"""``heatmap``: where people spend time, per camera and local hour; and where engaged people
cluster.

Person-seconds.  Every frame stands for the camera time since the previous frame of the same
camera (``t[i] - t[i-1]`` from the frame timestamps, at most ``MaxFrameInterval`` seconds: a
stalled stream does not turn one frame into minutes; the first frame of a run stands for the
interval to the second one).  Each person of the frame adds that many seconds to the cell of
their foot point, so a person standing in one cell for 10 s adds 10 person-seconds there at
7 fps as at 25 fps, and ``sum(grid) / seconds`` is the mean number of people in view.

Grids (``[App] HeatmapResolution`` = ``columns, rows``), see :mod:`libs.metrics.heatmap`:

- image space: foot points normalised by the frame size;
- floor plane, for a calibrated camera (``CalibrationImagePoints``/``CalibrationFloorPoints``
  usable): the person's ``floor_xy`` attribute (written by ``social_distance`` with
  CalibratedDistance) or, without it, the foot point mapped through the calibration here.
  The grid covers, with square cells, ``FloorExtent`` when set, else the floor extent of the
  camera's ``ROI`` polygon (or of the image corners without an ROI), cut at the horizon and
  capped to ``FloorMaxDistance`` metres around the calibration points; people outside it are
  counted apart (``floor_outside``).

Each grid has a ``violations`` twin counting only people flagged ``in_violation``.

Files.  Counts accumulate in memory and are merged into ``<camera folder>/heatmaps/
<YYYY-MM-DD>T<HH>.npz`` (the local hour of the frames) on a background writer thread: when a
frame of another hour arrives, every ``FlushSeconds`` of wall-clock time, at each resume
checkpoint of a recording (which is saved only once those merges are on disk, so a killed run
resumes after frames the grids hold, never after frames they lost), and at the end of the
run.  The frame loop never reads or writes a file.  Each file is replaced atomically and
holds ``last_us``, the newest frame folded into it, in the same write as the counts.  The
first time a run meets an hour, it asks the writer thread for that file's ``last_us`` (frames
of that hour are held in memory until the answer comes, normally within milliseconds) and
from then on folds only frames newer than it.  So a restarted worker that replays part of a
recording neither loses nor double counts: frames already in the file are skipped, later ones
are added, and the per-frame intervals are the same as in an uninterrupted run.  The same
rule skips a frame whose timestamp is not after the previous one of its hour.

Clusters (``Clusters = True``): the engagement service's heatmap.  The positions of *engaged*
people (the ``engaged`` attribute of an engagement stage running before this one; without it
every person counts as engaged) of the last ``WindowSeconds`` are clustered with DBSCAN
(``Eps``, ``MinSamples``; see :mod:`libs.metrics.clusters`) every ``UpdatePeriod`` seconds of
the camera's clock (slots aligned to the Unix epoch).  Positions are floor metres for a
calibrated camera (radius ``EpsMetres``) and image pixels otherwise (``Eps``).  The result,
``{"timestamp", "space", "eps", "min_samples", "window_seconds", "clusters": [{"position":
[x, y], "intensity": engaged person-seconds, "radius", "samples"}, ...]}`` (floor clusters
also carry ``image_position``, the centre drawn back into the image), is
``frame.metrics["engagement_clusters"]`` on every frame, a ``clusters`` record on the update
frames (:class:`libs.records.Clusters`; its CSV log has ``Frame``, ``Space`` and ``Clusters``
as JSON) and the file ``<camera folder>/heatmaps/clusters.json``.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import numpy as np
from pydantic import BeforeValidator, Field, field_validator

from libs.calibration import CalibrationError, FloorCalibration
from libs.clock import IntervalGate, aware
from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.frame import Frame
from libs.metrics.clusters import ClusterWindow
from libs.metrics.heatmap import (
    CLUSTERS_FILE,
    DEFAULT_FLOOR_MAX_DISTANCE,
    FloorGrid,
    HourGrids,
    floor_grid_for,
    grid_over,
    grid_writer,
    heatmaps_dir,
    hour_key,
    hour_path,
    image_cells,
    merge_into,
    read_watermark,
    to_us,
)
from libs.metrics.reports import camera_dir
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.records import Cluster, Clusters

if TYPE_CHECKING:
    from collections.abc import Callable

    from libs.config.models import LookoutConfig, SourceConfig

log = logging.getLogger(__name__)

NAME = "heatmap"
MAX_PENDING_FRAMES = 5000  # frames held for an hour's watermark before the loop waits for it
CLOSE_TIMEOUT_S = 60.0


def _split_extent(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        return [p.strip() for p in text.split(",")]
    return value


Extent = Annotated[tuple[float, float, float, float] | None, BeforeValidator(_split_extent)]


class HeatmapConfig(PluginConfig):
    """``[SourcePostProcessor_N] Name = heatmap``."""

    max_frame_interval: float = Field(
        2.0,
        alias="MaxFrameInterval",
        gt=0,
        description="Most seconds one frame may stand for (a longer gap since the previous "
        "frame counts as this much).",
        json_schema_extra=form("a number of seconds > 0"),
    )
    flush_seconds: float = Field(
        10.0,
        alias="FlushSeconds",
        gt=0,
        description="Wall-clock seconds between two writes of the current hour's file.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    floor_extent: Extent = Field(
        None,
        alias="FloorExtent",
        description="Floor area of the floor grids, metres 'x_min,y_min,x_max,y_max'; empty "
        "uses the floor extent of each calibrated camera's ROI (or image).",
        json_schema_extra=form("'x_min,y_min,x_max,y_max' in metres, or empty"),
    )
    floor_max_distance: float = Field(
        DEFAULT_FLOOR_MAX_DISTANCE,
        alias="FloorMaxDistance",
        gt=0,
        description="Metres around the calibration points a floor grid may reach at most.",
        json_schema_extra=form("a number of metres > 0"),
    )
    clusters: bool = Field(
        True, alias="Clusters", description="Cluster the positions of engaged people."
    )
    window_seconds: float = Field(
        3600.0,
        alias="WindowSeconds",
        gt=0,
        description="Seconds of positions the clusters are computed from.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    eps: float = Field(
        40.0,
        alias="Eps",
        gt=0,
        description="Cluster radius in pixels (cameras without calibration).",
        json_schema_extra=form("a number of pixels > 0"),
    )
    eps_metres: float = Field(
        1.0,
        alias="EpsMetres",
        gt=0,
        description="Cluster radius in metres (calibrated cameras).",
        json_schema_extra=form("a number of metres > 0"),
    )
    min_samples: int = Field(
        2,
        alias="MinSamples",
        ge=1,
        description="Positions (people x frames) within the radius that make a cluster core.",
        json_schema_extra=form("an integer >= 1"),
    )
    update_period: float = Field(
        10.0,
        alias="UpdatePeriod",
        gt=0,
        description="Seconds of the camera's clock between two cluster updates.",
        json_schema_extra=form("a number of seconds > 0"),
    )

    @field_validator("floor_extent")
    @classmethod
    def _extent(
        cls, value: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if value is not None:
            x0, y0, x1, y1 = value
            if not (np.isfinite(value).all() and x0 < x1 and y0 < y1):
                raise ValueError("FloorExtent needs x_min < x_max and y_min < y_max")
        return value


def camera_calibration(source: SourceConfig) -> FloorCalibration | None:
    """The camera's floor calibration, None when it has none or an unusable one."""
    if not source.calibration_image_points or not source.calibration_floor_points:
        return None
    try:
        return FloorCalibration.from_points(
            source.calibration_image_points, source.calibration_floor_points
        )
    except CalibrationError as exc:
        log.warning("camera %s: no floor heatmap, the calibration is unusable: %s",
                    source.id, exc)
        return None


@dataclass
class _Sample:
    """What one frame adds, computed once in the frame loop."""

    ts_us: int
    hour: str
    cells: np.ndarray  # image cell per person
    violating: np.ndarray  # bool per person
    floor_cells: np.ndarray | None  # floor cell per person, -1 outside the grid
    engaged: np.ndarray  # (K, 2) cluster positions
    size: tuple[int, int]


def _lookup(path: Path, answer: Future[int | None]) -> None:
    """Writer thread: the watermark of an hour file (after every merge queued before)."""
    try:
        answer.set_result(read_watermark(path))
    except BaseException:
        if not answer.done():
            answer.set_result(None)
        raise


class _Hour:
    """The counts of one local hour not yet written, and which frames it may take."""

    def __init__(self, key: str, path: Path, delta: HourGrids, lookup: Future[int | None]):
        self.key = key
        self.path = path
        self.delta = delta
        self.lookup = lookup
        self.resolved = False
        self.watermark: int | None = None
        self.pending: list[tuple[_Sample, float]] = []
        self.skipped = 0

    def ready(self, wait: float | None = 0.0) -> bool:
        """Whether the file's watermark is known (waiting up to ``wait`` seconds; None
        waits as long as it takes); folds the held frames once it is."""
        if self.resolved:
            return True
        if wait == 0.0 and not self.lookup.done():
            return False
        self.watermark = self.lookup.result(timeout=wait)
        self.resolved = True
        held, self.pending = self.pending, []
        for sample, weight in held:
            self.fold(sample, weight)
        return True

    def offer(self, sample: _Sample, weight: float) -> None:
        if self.ready():
            self.fold(sample, weight)
            return
        self.pending.append((sample, weight))
        if len(self.pending) >= MAX_PENDING_FRAMES:
            self.ready(wait=None)

    def fold(self, s: _Sample, weight: float) -> None:
        if self.watermark is not None and s.ts_us <= self.watermark:
            self.skipped += 1
            return
        self.watermark = s.ts_us
        d = self.delta
        if not d.frames:
            d.first_us = s.ts_us
        d.last_us = s.ts_us
        d.frames += 1
        d.samples += len(s.cells)
        d.seconds += weight
        d.image_size = s.size
        if not len(s.cells):
            return
        np.add.at(d.image_presence.reshape(-1), s.cells, weight)
        np.add.at(d.image_violations.reshape(-1), s.cells[s.violating], weight)
        if s.floor_cells is not None and d.floor_presence is not None \
                and d.floor_violations is not None:
            inside = s.floor_cells >= 0
            np.add.at(d.floor_presence.reshape(-1), s.floor_cells[inside], weight)
            bad = inside & s.violating
            np.add.at(d.floor_violations.reshape(-1), s.floor_cells[bad], weight)
            d.floor_outside[0] += weight * int(np.count_nonzero(~inside))
            d.floor_outside[1] += weight * int(np.count_nonzero(~inside & s.violating))


@POST_PROCESSORS.register(NAME)
class Heatmap(PostProcessor):
    Config: ClassVar[type[PluginConfig]] = HeatmapConfig
    phase = "after_tracker"
    # The hour grids are not here: every resume checkpoint first merges them into their files
    # (see checkpoint), and a file's watermark keeps a resumed run from adding a sample twice.
    STATE = ("window", "_gate", "latest_clusters", "_held", "_prev_us", "_current",
             "frames_skipped")

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        settings = plugin_settings(HeatmapConfig, config)
        super().__init__(settings, source, app)
        self.settings = settings
        self.tz = app.app.tzinfo
        self.columns, self.rows = app.app.heatmap_resolution
        self.folder = heatmaps_dir(camera_dir(app, source.id))
        self.calibration = camera_calibration(source)
        self.floor: FloorGrid | None = None
        self._floor_ready = False
        self.max_interval_us = round(settings.max_frame_interval * 1_000_000)
        self.writer = grid_writer(source.id)
        self._hours: dict[str, _Hour] = {}
        self._current: str | None = None
        self._prev_us: int | None = None
        self._held: _Sample | None = None
        self._last_flush = time.monotonic()
        self._closed = False
        self.frames_skipped = 0
        self.window: ClusterWindow | None = None
        self._gate: IntervalGate | None = None
        self.cluster_space = "floor" if self.calibration is not None else "image"
        self.latest_clusters: dict[str, Any] | None = None
        if settings.clusters:
            eps = settings.eps_metres if self.calibration is not None else settings.eps
            self.window = ClusterWindow(settings.window_seconds, eps, settings.min_samples)
            self._gate = IntervalGate(settings.update_period)
        self._image_of_floor = (
            np.linalg.inv(self.calibration.homography) if self.calibration is not None else None
        )

    # -- per frame -------------------------------------------------------------------------

    def _setup_floor(self, width: int, height: int) -> None:
        self._floor_ready = True
        cal = self.calibration
        if cal is None:
            return
        if self.settings.floor_extent is not None:
            self.floor = grid_over(self.settings.floor_extent, self.columns, self.rows,
                                   cal.homography)
        else:
            polygon = (np.asarray(self.source.roi, np.float64) if self.source.roi else
                       np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64))
            self.floor = floor_grid_for(cal.homography, polygon, cal.floor_points_m,
                                        self.columns, self.rows,
                                        self.settings.floor_max_distance)
        if self.floor is None:
            log.warning("camera %s: no part of the ROI/image is on the floor; no floor heatmap",
                        self.source.id)
        else:
            x0, y0, x1, y1 = self.floor.extent
            log.info("camera %s: floor heatmap %.2f..%.2f x %.2f..%.2f m, %.3f m cells",
                     self.source.id, x0, x1, y0, y1, self.floor.cell)

    def sample(self, frame: Frame) -> _Sample:
        dets = frame.detections
        n = len(dets)
        height, width = frame.height, frame.width
        if not self._floor_ready:
            self._setup_floor(width, height)
        ts = aware(frame.timestamp, self.tz)
        feet = dets.foot_points()
        flags = dets.attributes.get("in_violation")
        violating = np.asarray(flags, bool).reshape(n) if flags is not None else np.zeros(n, bool)
        floor_xy: np.ndarray | None = None
        if self.calibration is not None:
            given = dets.attributes.get("floor_xy")
            floor_xy = (np.asarray(given, np.float64).reshape(n, 2) if given is not None
                        else self.calibration.to_floor(feet))
        engaged_flags = dets.attributes.get("engaged")
        engaged = (np.asarray(engaged_flags, bool).reshape(n) if engaged_flags is not None
                   else np.ones(n, bool))
        where = floor_xy if floor_xy is not None else feet
        return _Sample(
            ts_us=to_us(ts),
            hour=hour_key(ts, self.tz),
            cells=image_cells(feet, width, height, self.columns, self.rows),
            violating=violating,
            floor_cells=self.floor.cells(floor_xy) if self.floor and floor_xy is not None
            else None,
            engaged=np.asarray(where, np.float64)[engaged],
            size=(width, height),
        )

    def process(self, frame: Frame) -> Frame:
        if self._closed:
            return frame
        s = self.sample(frame)
        if self._prev_us is None:
            self._held = s  # its interval is known with the next frame
        else:
            weight = min(max(s.ts_us - self._prev_us, 0), self.max_interval_us) / 1_000_000
            if self._held is not None:
                self._emit(self._held, weight)
                self._held = None
            self._emit(s, weight)
        self._prev_us = s.ts_us
        if s.hour != self._current:
            self._current = s.hour
            self.flush()
        elif time.monotonic() - self._last_flush >= self.settings.flush_seconds:
            self.flush()
        if self.window is not None:
            self._update_clusters(frame)
        return frame

    def _emit(self, s: _Sample, weight: float) -> None:
        hour = self._hours.get(s.hour)
        if hour is None:
            path = hour_path(self.folder, s.hour)
            answer: Future[int | None] = Future()
            self.writer.submit(partial(_lookup, path, answer))
            hour = _Hour(s.hour, path, HourGrids.zeros(self.columns, self.rows, self.floor),
                         answer)
            self._hours[s.hour] = hour
        hour.offer(s, weight)
        if self.window is not None:
            self.window.add(s.ts_us, s.engaged, weight)

    # -- clusters --------------------------------------------------------------------------

    def _update_clusters(self, frame: Frame) -> None:
        assert self.window is not None and self._gate is not None
        if self._gate.due(aware(frame.timestamp, self.tz)):
            found = [c.as_dict(3 if self.cluster_space == "floor" else 1)
                     for c in self.window.clusters()]
            if self._image_of_floor is not None:
                for item in found:
                    p = self._image_of_floor @ np.array([*item["position"], 1.0])
                    item["image_position"] = (
                        [round(float(p[0] / p[2]), 1), round(float(p[1] / p[2]), 1)]
                        if p[2] > 0 else None
                    )
            ts = aware(frame.timestamp, self.tz).astimezone(self.tz)
            self.latest_clusters = {
                "timestamp": ts.isoformat(timespec="milliseconds"),
                "space": self.cluster_space,
                "eps": self.window.eps,
                "min_samples": self.settings.min_samples,
                "window_seconds": self.settings.window_seconds,
                "engaged_attribute": "engaged" in frame.detections.attributes,
                "clusters": found,
            }
            frame.emit(Clusters, frame=frame.index, space=self.cluster_space,
                       eps=float(self.window.eps), min_samples=self.settings.min_samples,
                       window_seconds=float(self.settings.window_seconds),
                       clusters=tuple(Cluster(**item) for item in found))
            data = json.dumps({"camera_id": self.source.id, **self.latest_clusters})
            self.writer.write_file(self.folder / CLUSTERS_FILE, data.encode("utf-8"))
        frame.metrics["engagement_clusters"] = self.latest_clusters

    # -- files -----------------------------------------------------------------------------

    def checkpoint(self, done: Callable[[dict[str, int]], None]) -> bool:
        """Merge every hour's counts so far into its file, then call ``done({})`` on the
        writer thread once those merges are on disk (after any retries a full disk needs):
        the resume point never passes a frame the grids have not kept.  While an hour's
        watermark is still being read (its frames are held, not counted yet), ``done`` is
        not called: that checkpoint is skipped and the next one tries again."""
        if self._closed:
            return False
        if self.flush():
            self.writer.submit(lambda: done({}))
        return True

    def flush(self, final: bool = False) -> bool:
        """Hand every hour's new counts to the writer thread; forget finished hours.  False
        when some hour's counts could not be handed over yet (its watermark unknown)."""
        self._last_flush = time.monotonic()
        complete = True
        for key, hour in list(self._hours.items()):
            try:
                if not hour.ready(wait=CLOSE_TIMEOUT_S if final else 0.0):
                    complete = False
                    continue
            except TimeoutError:  # concurrent.futures' is this one since 3.11
                log.error("camera %s: heatmap writer stuck; counts of hour %s not written",
                          self.source.id, key)
                complete = False
                continue
            self.frames_skipped += hour.skipped
            hour.skipped = 0
            delta = hour.delta
            if delta.frames:
                hour.delta = HourGrids.zeros(self.columns, self.rows, self.floor)
                self.writer.submit(partial(merge_into, hour.path, delta))
            if final or key != self._current:
                del self._hours[key]
        return complete

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._held = None  # a run of one frame stands for no time
        try:
            self.flush(final=True)
        finally:
            self.writer.close(CLOSE_TIMEOUT_S)
