"""objects_filtering: size limit, region of interest and duplicate suppression."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from libs.config import ConfigError, parse_config_text
from libs.config.models import (
    ApiConfig,
    AppConfig,
    CoreConfig,
    DetectorConfig,
    LookoutConfig,
    PluginConfig,
    SourceConfig,
    TrackerConfig,
)
from libs.frame import Detections, Frame
from libs.geometry import iou_matrix
from libs.post_processors import POST_PROCESSORS, PostProcessor

WIDTH, HEIGHT = 640, 480


def build(roi: list[tuple[float, float]] | None = None, **keys: Any) -> PostProcessor:
    cls = POST_PROCESSORS.get("objects_filtering")
    config = cls.Config.model_validate({"Name": "objects_filtering", **keys})
    source = SourceConfig(Id="cam", VideoPath="cam.avi", ROI=roi or [])
    app = LookoutConfig(
        path=Path("test.ini"),
        app=AppConfig(),
        api=ApiConfig(),
        core=CoreConfig(),
        detector=DetectorConfig(),
        tracker=TrackerConfig(Name="IOUTracker"),
        sources=[source],
        areas=[],
        source_post_processors=[config],
        source_loggers=[],
        area_loggers=[],
        periodic_tasks=[],
    )
    return cls(config, source, app)


def frame_of(boxes: list[list[float]] | np.ndarray, scores: list[float] | None = None) -> Frame:
    arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    n = len(arr)
    dets = Detections(
        boxes=arr,
        scores=np.asarray(scores if scores is not None else np.linspace(0.9, 0.5, n)),
        attributes={"row": np.arange(n)},
    )
    image = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (HEIGHT, WIDTH, 3))
    return Frame(
        camera_id="cam", index=0, timestamp=datetime.now(UTC), image=image, detections=dets
    )


def kept_rows(stage: PostProcessor, frame: Frame) -> list[int]:
    out = stage.process(frame)
    rows: list[int] = out.detections.attributes["row"].tolist()
    return rows


def test_registered_before_the_tracker_with_defaults() -> None:
    cls = POST_PROCESSORS.get("objects_filtering")
    assert cls.phase == "before_tracker"
    cfg = cls.Config.model_validate({"Name": "objects_filtering"})
    assert isinstance(cfg, PluginConfig)
    dumped = cfg.model_dump(by_alias=True)
    assert dumped["NMSThreshold"] == 0.98
    assert dumped["MaxBoxSize"] == 0.5


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("NMSThreshold", 1.5),
        ("NMSThreshold", -0.1),
        ("MaxBoxSize", 0.0),
        ("MaxBoxSize", 1.2),
        ("Unknown", 1),
    ],
)
def test_config_rejects_out_of_range_and_unknown_keys(key: str, value: float) -> None:
    cls = POST_PROCESSORS.get("objects_filtering")
    with pytest.raises(ValidationError):
        cls.Config.model_validate({"Name": "objects_filtering", key: value})


def test_config_through_the_loader_names_section_and_key() -> None:
    text = (
        "[Source_1]\nId = cam\nVideoPath = cam.avi\n"
        "[SourcePostProcessor_0]\nName = objects_filtering\nNMSThreshold = 0.7\n"
        "MaxBoxSize = 0.25\n"
    )
    config = parse_config_text(text, "test.ini", check_files=False)
    (pp,) = config.source_post_processors
    assert pp.model_dump(by_alias=True)["NMSThreshold"] == 0.7
    with pytest.raises(ConfigError) as info:
        parse_config_text(text.replace("0.25", "2"), "test.ini", check_files=False)
    (problem,) = info.value.problems
    assert (problem.section, problem.key) == ("SourcePostProcessor_0", "MaxBoxSize")
    assert problem.expected is not None


@pytest.mark.parametrize("max_size", [0.1, 0.25, 0.5, 0.9, 1.0])
def test_boxes_larger_than_max_box_size_are_removed(max_size: float) -> None:
    # Width and height fractions chosen so every area is exact in float32.
    sides = [
        (0.25, 0.25),
        (0.5, 0.25),
        (0.5, 0.5),
        (0.75, 0.5),
        (1.0, 0.5),
        (0.75, 0.75),
        (1.0, 0.75),
        (1.0, 1.0),
    ]
    fractions = [a * b for a, b in sides]
    boxes = [[0.0, 0.0, WIDTH * a, HEIGHT * b] for a, b in sides]
    stage = build(MaxBoxSize=max_size, NMSThreshold=1.0)
    expected = [k for k, f in enumerate(fractions) if f <= max_size]  # equal is kept
    assert kept_rows(stage, frame_of(boxes)) == expected


SQUARE_ROI = [(100.0, 100.0), (300.0, 100.0), (300.0, 300.0), (100.0, 300.0)]


def test_people_whose_feet_are_outside_the_roi_are_removed() -> None:
    feet = [(200, 200), (50, 200), (200, 301), (300, 250), (100, 100), (299, 299), (400, 400)]
    boxes = [[x - 10, y - 60, x + 10, y] for x, y in feet]
    stage = build(roi=SQUARE_ROI, NMSThreshold=1.0, MaxBoxSize=1.0)
    expected = [k for k, (x, y) in enumerate(feet) if 100 <= x <= 300 and 100 <= y <= 300]
    assert kept_rows(stage, frame_of(boxes)) == expected


def test_a_box_mostly_outside_with_feet_inside_is_kept() -> None:
    stage = build(roi=SQUARE_ROI)
    # Head far outside the ROI, feet inside.
    assert kept_rows(stage, frame_of([[150, 0, 250, 200]])) == [0]


def test_empty_roi_keeps_everyone() -> None:
    stage = build(roi=None, NMSThreshold=1.0, MaxBoxSize=1.0)
    boxes = [[x, y, x + 5, y + 5] for x, y in [(0, 0), (600, 10), (10, 470), (630, 470)]]
    assert kept_rows(stage, frame_of(boxes)) == [0, 1, 2, 3]


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8, 0.98])
def test_duplicates_above_the_nms_threshold_lose_to_the_higher_score(threshold: float) -> None:
    base = np.array([100.0, 100.0, 160.0, 260.0])
    shifts = [0.5, 3.0, 10.0, 25.0, 50.0]
    boxes = [base] + [base + np.array([s, 0.0, s, 0.0]) for s in shifts]
    scores = [0.6, 0.9, 0.5, 0.55, 0.4, 0.3]  # the first duplicate scores highest
    ious = iou_matrix(np.array(boxes), np.array(boxes))
    stage = build(NMSThreshold=threshold, MaxBoxSize=1.0)
    got = kept_rows(stage, frame_of(boxes, scores))
    assert 1 in got  # the best box always stays
    order = np.argsort(scores)[::-1]
    kept: list[int] = []
    for i in order.tolist():
        if all(ious[i, k] <= threshold for k in kept):
            kept.append(i)
    assert got == sorted(kept)
    assert len(got) < len(boxes)


def test_attributes_and_ids_stay_aligned() -> None:
    stage = build(roi=SQUARE_ROI, NMSThreshold=0.5, MaxBoxSize=0.5)
    boxes = [[150, 100, 200, 200], [0, 0, 20, 20], [151, 100, 201, 200], [200, 150, 240, 250]]
    frame = frame_of(boxes, [0.5, 0.9, 0.8, 0.7])
    frame.detections.track_ids = np.array([11, 12, 13, 14])
    out = stage.process(frame)
    rows = out.detections.attributes["row"].tolist()
    assert rows == [2, 3]
    np.testing.assert_array_equal(out.detections.boxes, np.asarray(boxes, np.float32)[rows])
    assert out.detections.track_ids.tolist() == [13, 14]
    np.testing.assert_allclose(out.detections.scores, [0.8, 0.7])


def test_oversized_box_does_not_suppress_a_person() -> None:
    person = [200.0, 100.0, 260.0, 250.0]
    big = [0.0, 0.0, 560.0, 400.0]  # 73% of the frame
    stage = build(NMSThreshold=0.01, MaxBoxSize=0.5)
    assert kept_rows(stage, frame_of([big, person], [0.99, 0.5])) == [1]


def test_no_detections() -> None:
    stage = build(roi=SQUARE_ROI)
    out = stage.process(frame_of(np.zeros((0, 4))))
    assert len(out.detections) == 0
