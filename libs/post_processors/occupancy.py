"""People count of one camera against its ``OccupancyThreshold`` (after the tracker).

``frame.metrics``: ``occupancy`` (tracked people left after filtering), ``occupancy_threshold``
(the camera's ``OccupancyThreshold``, 0 = no limit) and ``over_capacity`` (the threshold is set
and the count is above it).  Sums over the cameras of an area are the area aggregation's job.

Events (threshold > 0): ``occupancy_over`` (:class:`libs.records.OccupancyOver`) on the first
frame above the threshold after one at or below it (or the first frame), and
``occupancy_under`` (:class:`libs.records.OccupancyUnder`: since when, how long, the peak) on
the first frame back at or below it, or on the end-of-stream frame.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from libs.config.models import PluginConfig
from libs.frame import Frame
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.records import OccupancyOver, OccupancyUnder

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig


@POST_PROCESSORS.register("occupancy")
class Occupancy(PostProcessor):
    STATE = ("_over",)
    Config = PluginConfig
    phase = "after_tracker"

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        super().__init__(config, source, app)
        self.threshold = int(source.occupancy_threshold)
        self._over: tuple[datetime, int] | None = None  # since when over the threshold, peak

    def process(self, frame: Frame) -> Frame:
        occupancy = len(frame.detections)
        over = self.threshold > 0 and occupancy > self.threshold
        frame.metrics["occupancy"] = occupancy
        frame.metrics["occupancy_threshold"] = self.threshold
        frame.metrics["over_capacity"] = over
        if over:
            if self._over is None:
                frame.emit(OccupancyOver, occupancy=occupancy, threshold=self.threshold)
                self._over = (frame.timestamp, occupancy)
            else:
                self._over = (self._over[0], max(self._over[1], occupancy))
        elif self._over is not None:
            self._under(frame, occupancy)
        return frame

    def _under(self, frame: Frame, occupancy: int) -> None:
        assert self._over is not None
        started, peak = self._over
        self._over = None
        frame.emit(OccupancyUnder, occupancy=occupancy, threshold=self.threshold,
                   started=started, seconds=(frame.timestamp - started).total_seconds(),
                   peak=peak)

    def finish(self, end: Frame) -> None:
        """The stream ends while over the threshold: ``occupancy_under`` (nobody) on ``end``."""
        if self._over is not None:
            self._under(end, 0)
