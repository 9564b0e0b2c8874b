"""``video_logger``: a live annotated preview of each camera.

At most ``MaxFPS`` times per wall-clock second, :meth:`VideoLogger.log` copies the frame's
image and what to draw, and hands them to a background thread through a latest-only slot
(when the encoder is busy, a newer frame replaces the waiting one).  That thread draws the
boxes (green, red when in violation), track ids, the ROI, lines between violating pairs and
a status text (people, violations, occupancy and the frame's time), encodes a JPEG and
replaces ``<PreviewDirectory>/<camera_id>/live.jpg`` atomically, which the API serves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import Field

from libs.clock import aware
from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.frame import Frame
from libs.loggers import SOURCE_LOGGERS, SourceLogger
from libs.loggers.drawing import Annotations, annotate
from libs.loggers.file_system_logger import write_jpeg
from libs.loggers.writer import LatestOnlyWorker
from libs.records import FrameSummary, Record
from processor.summary import frame_figures

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig

log = logging.getLogger(__name__)

NAME = "video_logger"
DEFAULT_PREVIEW_DIRECTORY = "processor/static/previews"
PREVIEW_FILE = "live.jpg"


def preview_path(config: LookoutConfig, camera_id: str) -> Path:
    """Where the live preview of ``camera_id`` is written (the enabled video_logger's
    ``PreviewDirectory``, or the default)."""
    directory = DEFAULT_PREVIEW_DIRECTORY
    for section in config.source_loggers:
        if section.name == NAME and section.enabled:
            directory = str(getattr(section, "preview_directory", directory))
            break
    return config.data_path(directory) / camera_id / PREVIEW_FILE


class VideoLoggerConfig(PluginConfig):
    max_fps: float = Field(
        5.0,
        alias="MaxFPS",
        gt=0,
        description="Previews per wall-clock second at most.",
        json_schema_extra=form("a number > 0"),
    )
    preview_directory: str = Field(
        DEFAULT_PREVIEW_DIRECTORY,
        alias="PreviewDirectory",
        description="Where <camera_id>/live.jpg is written (relative to DataDirectory).",
    )
    jpeg_quality: int = Field(
        80,
        alias="JpegQuality",
        ge=1,
        le=100,
        description="JPEG quality of the preview.",
        json_schema_extra=form("an integer from 1 to 100"),
    )


@dataclass
class PreviewJob:
    image: np.ndarray
    annotations: Annotations


@SOURCE_LOGGERS.register(NAME)
class VideoLogger(SourceLogger):
    Config: ClassVar[type[PluginConfig]] = VideoLoggerConfig
    needs_image = True  # draws previews: not made for a camera without images

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        super().__init__(config, source, app)
        self.settings = plugin_settings(VideoLoggerConfig, config)
        self.tz = app.app.tzinfo
        self.path = (
            app.data_path(self.settings.preview_directory) / source.id / PREVIEW_FILE
        )
        self._min_gap = 1.0 / self.settings.max_fps
        self._last: float | None = None
        self._closed = False
        self._worker: LatestOnlyWorker[PreviewJob] = LatestOnlyWorker(
            self._render, name=f"preview-{source.id}"
        )

    @property
    def previews_written(self) -> int:
        return self._worker.handled

    def take(self, records: Sequence[Record]) -> None:
        """Nothing to store: this sink draws the frames :meth:`log` gets."""

    def log(self, frame: Frame) -> None:
        if self._closed or not frame.has_image:
            return
        now = time.monotonic()
        if self._last is not None and now - self._last < self._min_gap:
            return
        self._last = now
        self._worker.offer(self.job(frame))

    def job(self, frame: Frame) -> PreviewJob:
        """Copies of what the preview needs, so the frame can move on."""
        det = frame.detections
        figures = frame_figures(frame)  # per-person flags and pairs
        summary = next((r for r in reversed(frame.records) if isinstance(r, FrameSummary)),
                       None)
        if summary is not None:  # the figures every other sink gets
            people, violating = summary.detected_objects, summary.violating_objects
            occupancy_now, threshold = summary.occupancy, summary.occupancy_threshold
        else:  # a replayed frame (its records dropped) or a frame logged outside a pipeline
            people, violating = figures.people, figures.violating_people
            occupancy_now = figures.occupancy
            threshold = int(frame.metrics.get("occupancy_threshold") or 0)
        ts = aware(frame.timestamp, self.tz).astimezone(self.tz)
        occupancy = f"occupancy {occupancy_now}"
        if threshold:
            occupancy += f"/{threshold}"
        text = [
            f"{self.source.id}  {ts.isoformat(timespec='seconds')}",
            f"people {people}  violations {violating}  {occupancy}",
        ]
        annotations = Annotations(
            boxes=det.boxes.copy(),
            track_ids=det.track_ids.copy(),
            in_violation=figures.in_violation.copy(),
            pair_indexes=list(figures.pair_indexes),
            roi=list(self.source.roi),
            text_lines=text,
        )
        return PreviewJob(frame.image.copy(), annotations)

    def _render(self, job: PreviewJob) -> None:
        image = annotate(job.image, job.annotations)
        write_jpeg(self.path, image, self.settings.jpeg_quality)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the waiting preview (if any) is written."""
        return self._worker.flush(timeout)

    def close(self) -> None:
        self._closed = True
        self._worker.close()
