"""Removes detections that are not separate people in the watched area (before the tracker).

In this order:

1. boxes larger than ``MaxBoxSize`` of the frame area (a box over half the image is rarely
   one person);
2. people whose foot point (bottom centre of the box) is outside the camera's ``ROI``
   polygon, when it has one (points on the polygon's edge count as inside);
3. score-ordered non-maximum suppression: a box overlapping a kept, higher-scoring box with
   IoU above ``NMSThreshold`` is a duplicate and is removed.

Oversized and out-of-area boxes go first so they cannot suppress a real person in step 3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from libs.config.models import PluginConfig, form
from libs.frame import Frame
from libs.geometry import nms, points_in_polygon
from libs.post_processors import POST_PROCESSORS, PostProcessor

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig


class ObjectsFilteringConfig(PluginConfig):
    """``[SourcePostProcessor_N] Name = objects_filtering``."""

    nms_threshold: float = Field(
        0.98,
        alias="NMSThreshold",
        ge=0.0,
        le=1.0,
        description="A box overlapping a higher-scoring kept box with IoU above this is "
        "removed as a duplicate; 1 turns the suppression off.",
        json_schema_extra=form("a number from 0 to 1"),
    )
    max_box_size: float = Field(
        0.5,
        alias="MaxBoxSize",
        gt=0.0,
        le=1.0,
        description="Boxes covering more than this fraction of the frame area are removed; "
        "1 keeps every box.",
        json_schema_extra=form("a number greater than 0 and at most 1"),
    )


@POST_PROCESSORS.register("objects_filtering")
class ObjectsFiltering(PostProcessor):
    Config = ObjectsFilteringConfig
    phase = "before_tracker"

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        if not isinstance(config, ObjectsFilteringConfig):
            config = ObjectsFilteringConfig.model_validate(config.model_dump(by_alias=True))
        super().__init__(config, source, app)
        self.nms_threshold = float(config.nms_threshold)
        self.max_box_size = float(config.max_box_size)
        self.roi: np.ndarray | None = (
            np.asarray(source.roi, dtype=np.float64) if source.roi else None
        )

    def keep_mask(self, frame: Frame) -> np.ndarray:
        """Boolean mask of the detections this step keeps."""
        dets = frame.detections
        boxes = dets.boxes
        keep = np.ones(len(dets), dtype=bool)
        if len(dets) == 0:
            return keep
        if self.max_box_size < 1.0:
            w = np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None)
            h = np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)
            frame_area = float(frame.width * frame.height)
            keep &= (w * h) <= self.max_box_size * frame_area
        if self.roi is not None:
            keep &= points_in_polygon(dets.foot_points(), self.roi)
        if self.nms_threshold < 1.0 and np.count_nonzero(keep) > 1:
            candidates = np.flatnonzero(keep)
            kept = candidates[nms(boxes[candidates], dets.scores[candidates], self.nms_threshold)]
            keep[:] = False
            keep[kept] = True
        return keep

    def process(self, frame: Frame) -> Frame:
        keep = self.keep_mask(frame)
        if not keep.all():
            frame.detections = frame.detections.select(keep)
        return frame
