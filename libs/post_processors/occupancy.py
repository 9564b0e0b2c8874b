"""People count of one camera against its ``OccupancyThreshold`` (after the tracker).

``frame.metrics``: ``occupancy`` (tracked people left after filtering), ``occupancy_threshold``
(the camera's ``OccupancyThreshold``, 0 = no limit) and ``over_capacity`` (the threshold is set
and the count is above it).  Sums over the cameras of an area are the area logger's job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from libs.config.models import PluginConfig
from libs.frame import Frame
from libs.post_processors import POST_PROCESSORS, PostProcessor

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig


@POST_PROCESSORS.register("occupancy")
class Occupancy(PostProcessor):
    Config = PluginConfig
    phase = "after_tracker"

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        super().__init__(config, source, app)
        self.threshold = int(source.occupancy_threshold)

    def process(self, frame: Frame) -> Frame:
        occupancy = len(frame.detections)
        frame.metrics["occupancy"] = occupancy
        frame.metrics["occupancy_threshold"] = self.threshold
        frame.metrics["over_capacity"] = bool(self.threshold > 0 and occupancy > self.threshold)
        return frame
