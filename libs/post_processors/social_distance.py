"""Physical distancing: which tracked people stand closer than ``DistThreshold`` centimetres.

Distances between every pair of people are computed at once, by the camera's method
(``[Source_N] DistMethod``, or this step's ``DefaultDistMethod`` when that is empty):

``CalibratedDistance``
    Each person's foot point (bottom centre of the box) is mapped to the floor with the
    camera's :class:`~libs.calibration.FloorCalibration`; the distance is the Euclidean
    distance on the floor, metres x 100.  The floor positions are stored per person as
    ``attributes["floor_xy"]`` (float32 metres).
``CenterPointsDistance``
    Distance in pixels between the two box centres, times the pair's scale.
``FourCornerPointsDistance``
    The smallest of the four distances between *corresponding* corners of the two boxes
    (top-left to top-left, top-right to top-right, bottom-right to bottom-right,
    bottom-left to bottom-left), in pixels, times the pair's scale.

Without calibration, pixels become centimetres through the people's own size: a pair's
scale is ``PersonHeight / mean(height_i, height_j)`` (box heights in pixels, at least 1).

Results: ``attributes["in_violation"]`` (a person with at least one other person strictly
closer than the threshold) and ``frame.metrics`` keys ``people``, ``violating_people``,
``violating_pairs`` (pairs, counted separately from people: three people in a row with both
gaps too small are 3 people but 2 pairs), ``violating_pair_indexes`` (``(i, j)`` with
``i < j``, row indexes of the frame's detections), ``min_distance_cm`` (None with fewer than
two people, or when no pair's distance is known) and ``dist_method``.

Events: a ``distancing_start`` record (:class:`libs.records.DistancingStart`) on the first
frame with a violation after a frame without one (or the first frame), and a
``distancing_end`` (:class:`libs.records.DistancingEnd`: how long, the most people and pairs in
violation on one frame of the episode) on the first frame without one after it, or on the
end-of-stream frame when the stream ends during a violation.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from pydantic import Field

from libs.calibration import CalibrationError, FloorCalibration
from libs.config.models import DistMethod, PluginConfig, form
from libs.frame import Frame
from libs.geometry import pairwise_distances
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.records import DistancingEnd, DistancingStart

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig

log = logging.getLogger(__name__)

CALIBRATED: Final = "CalibratedDistance"
CENTER: Final = "CenterPointsDistance"
FOUR_CORNER: Final = "FourCornerPointsDistance"


class SocialDistanceConfig(PluginConfig):
    """``[SourcePostProcessor_N] Name = social_distance``."""

    default_dist_method: DistMethod = Field(
        CENTER,
        alias="DefaultDistMethod",
        description="Distance method of cameras whose DistMethod is empty.",
        json_schema_extra=form(
            "CalibratedDistance, CenterPointsDistance or FourCornerPointsDistance"
        ),
    )
    dist_threshold: float = Field(
        150.0,
        alias="DistThreshold",
        gt=0.0,
        description="People closer than this many centimetres are in violation.",
        json_schema_extra=form("a number of centimetres > 0"),
    )
    person_height: float = Field(
        170.0,
        alias="PersonHeight",
        gt=0.0,
        description="Assumed height of a person in centimetres; turns pixels into "
        "centimetres for CenterPointsDistance and FourCornerPointsDistance.",
        json_schema_extra=form("a number of centimetres > 0"),
    )

    def method_for(self, source: SourceConfig) -> DistMethod:
        """The distance method used for ``source``."""
        return source.dist_method or self.default_dist_method

    def cross_check(self, config: LookoutConfig) -> list[tuple[str | None, str | None, str]]:
        """Every enabled camera measured with CalibratedDistance needs a usable calibration."""
        if not self.enabled:
            return []
        problems: list[tuple[str | None, str | None, str]] = []
        for source in config.enabled_sources():
            if self.method_for(source) != CALIBRATED:
                continue
            try:
                calibration_of(source)
            except CalibrationError as exc:
                problems.append((source.section or None, "CalibrationImagePoints", str(exc)))
        return problems


def calibration_of(source: SourceConfig) -> FloorCalibration:
    """The camera's floor calibration; CalibrationError when it is missing or unusable."""
    if not source.calibration_image_points or not source.calibration_floor_points:
        raise CalibrationError(
            "DistMethod CalibratedDistance needs CalibrationImagePoints and "
            "CalibrationFloorPoints (4 or more image points and their floor positions in "
            "metres)"
        )
    return FloorCalibration.from_points(
        source.calibration_image_points, source.calibration_floor_points
    )


@POST_PROCESSORS.register("social_distance")
class SocialDistance(PostProcessor):
    STATE = ("_episode",)
    Config = SocialDistanceConfig
    phase = "after_tracker"

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        if not isinstance(config, SocialDistanceConfig):
            config = SocialDistanceConfig.model_validate(config.model_dump(by_alias=True))
        super().__init__(config, source, app)
        self.method: DistMethod = config.method_for(source)
        self.threshold_cm = float(config.dist_threshold)
        self.person_height_cm = float(config.person_height)
        # The violation going on: (its first frame's time, most people, most pairs in it).
        self._episode: tuple[datetime, int, int] | None = None
        self.calibration: FloorCalibration | None = (
            calibration_of(source) if self.method == CALIBRATED else None
        )
        if self.calibration is not None:
            log.info(
                "camera %s: CalibratedDistance from %d points, reprojection error %.3f m RMS, "
                "%.3f m max", source.id, len(source.calibration_image_points),
                self.calibration.reprojection_error_m, self.calibration.max_error_m,
            )

    def distances_cm(self, frame: Frame) -> np.ndarray:
        """``(N, N)`` distances in centimetres between the frame's people (diagonal 0).

        Stores ``attributes["floor_xy"]`` when the camera is calibrated.  A pair whose
        distance cannot be known (a foot point beyond the horizon) is NaN.
        """
        dets = frame.detections
        if self.calibration is not None:
            floor = self.calibration.to_floor(dets.foot_points())
            dets.attributes["floor_xy"] = floor.astype(np.float32)
            return pairwise_distances(floor) * 100.0
        boxes = dets.boxes.astype(np.float64)
        heights = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
        scale = (2.0 * self.person_height_cm) / (heights[:, None] + heights[None, :])
        if self.method == CENTER:
            centres = np.stack(
                [(boxes[:, 0] + boxes[:, 2]) * 0.5, (boxes[:, 1] + boxes[:, 3]) * 0.5], axis=1
            )
            return pairwise_distances(centres) * scale
        # FourCornerPointsDistance: corresponding corners share their x (x1 or x2) and y
        # (y1 or y2) columns, so the four corner distances come from two x and two y gaps.
        dx1 = boxes[:, None, 0] - boxes[None, :, 0]
        dx2 = boxes[:, None, 2] - boxes[None, :, 2]
        dy1 = boxes[:, None, 1] - boxes[None, :, 1]
        dy2 = boxes[:, None, 3] - boxes[None, :, 3]
        sx1, sx2, sy1, sy2 = dx1 * dx1, dx2 * dx2, dy1 * dy1, dy2 * dy2
        nearest2 = np.minimum(np.minimum(sx1 + sy1, sx2 + sy1), np.minimum(sx2 + sy2, sx1 + sy2))
        return np.sqrt(nearest2) * scale

    def process(self, frame: Frame) -> Frame:
        self._measure(frame)
        self._episode_events(frame)
        return frame

    def _episode_events(self, frame: Frame) -> None:
        """``distancing_start`` / ``distancing_end`` when a violation starts or ends."""
        m = frame.metrics
        people, pairs = int(m["violating_people"]), int(m["violating_pairs"])
        if pairs > 0:
            if self._episode is None:
                dets = frame.detections
                flags = dets.attributes["in_violation"]
                frame.emit(DistancingStart, frame=frame.index, violating_objects=people,
                           violating_pairs=pairs,
                           track_ids=tuple(dets.track_ids[flags].tolist()),
                           min_distance_cm=m.get("min_distance_cm"))
                self._episode = (frame.timestamp, people, pairs)
            else:
                started, most_people, most_pairs = self._episode
                self._episode = (started, max(most_people, people), max(most_pairs, pairs))
        elif self._episode is not None:
            self._end_episode(frame)

    def _end_episode(self, frame: Frame) -> None:
        assert self._episode is not None
        started, most_people, most_pairs = self._episode
        self._episode = None
        frame.emit(DistancingEnd, frame=frame.index, started=started,
                   seconds=(frame.timestamp - started).total_seconds(),
                   max_violating_objects=most_people, max_violating_pairs=most_pairs)

    def finish(self, end: Frame) -> None:
        """End of the stream during a violation: its ``distancing_end`` goes on ``end``."""
        if self._episode is not None:
            self._end_episode(end)

    def _measure(self, frame: Frame) -> None:
        dets = frame.detections
        n = len(dets)
        metrics: dict[str, Any] = frame.metrics
        metrics["people"] = n
        metrics["dist_method"] = self.method
        if n < 2:
            if self.calibration is not None:
                floor = self.calibration.to_floor(dets.foot_points())
                dets.attributes["floor_xy"] = floor.astype(np.float32)
            dets.attributes["in_violation"] = np.zeros(n, dtype=bool)
            metrics["violating_people"] = 0
            metrics["violating_pairs"] = 0
            metrics["violating_pair_indexes"] = []
            metrics["min_distance_cm"] = None
            return

        dist = self.distances_cm(frame)
        upper = np.triu(np.ones((n, n), dtype=bool), k=1)
        close = (dist < self.threshold_cm) & upper  # NaN compares False: never a violation
        rows, cols = np.nonzero(close)
        in_violation = np.zeros(n, dtype=bool)
        in_violation[rows] = True
        in_violation[cols] = True
        dets.attributes["in_violation"] = in_violation
        pair_dist = dist[upper]
        finite = pair_dist[np.isfinite(pair_dist)]
        metrics["violating_people"] = int(np.count_nonzero(in_violation))
        metrics["violating_pairs"] = len(rows)
        metrics["violating_pair_indexes"] = list(zip(rows.tolist(), cols.tolist(), strict=True))
        metrics["min_distance_cm"] = float(finite.min()) if len(finite) else None
