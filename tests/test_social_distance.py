"""social_distance (all three methods) and occupancy on hand-computable synthetic scenes."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from libs.calibration import CalibrationError, FloorCalibration
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
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.records import DistancingEnd, DistancingStart, OccupancyOver, OccupancyUnder

# 1 px = 1 cm on the floor: image square (0..100 px) <-> floor square (0..1 m).
UNIT_IMAGE = [(0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0)]
UNIT_FLOOR = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]


def lookout(sources: list[SourceConfig], post: list[PluginConfig]) -> LookoutConfig:
    return LookoutConfig(
        path=Path("test.ini"),
        app=AppConfig(),
        api=ApiConfig(),
        core=CoreConfig(),
        detector=DetectorConfig(),
        tracker=TrackerConfig(Name="IOUTracker"),
        sources=sources,
        areas=[],
        source_post_processors=post,
        source_loggers=[],
        area_loggers=[],
        periodic_tasks=[],
    )


def build(
    name: str = "social_distance", source_keys: dict[str, Any] | None = None, **keys: Any
) -> PostProcessor:
    cls = POST_PROCESSORS.get(name)
    config = cls.Config.model_validate({"Name": name, **keys})
    source = SourceConfig(Id="cam", VideoPath="cam.avi", **(source_keys or {}))
    return cls(config, source, lookout([source], [config]))


def calibrated(**keys: Any) -> PostProcessor:
    return build(
        source_keys={
            "DistMethod": "CalibratedDistance",
            "CalibrationImagePoints": UNIT_IMAGE,
            "CalibrationFloorPoints": UNIT_FLOOR,
        },
        **keys,
    )


def frame_of(boxes: list[list[float]] | np.ndarray) -> Frame:
    arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    dets = Detections(boxes=arr, scores=np.ones(len(arr)), track_ids=np.arange(1, len(arr) + 1))
    return Frame(
        camera_id="cam",
        index=0,
        timestamp=datetime.now(UTC),
        image=np.zeros((1, 1, 3), np.uint8),
        detections=dets,
    )


def person(x: float, feet_y: float, height: float = 170.0, width: float = 60.0) -> list[float]:
    """A box of ``height`` px whose bottom centre is at (x, feet_y)."""
    return [x - width / 2, feet_y - height, x + width / 2, feet_y]


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


def test_registered_after_the_tracker_with_defaults() -> None:
    cls = POST_PROCESSORS.get("social_distance")
    assert cls.phase == "after_tracker"
    dumped = cls.Config.model_validate({"Name": "social_distance"}).model_dump(by_alias=True)
    assert dumped["DefaultDistMethod"] == "CenterPointsDistance"
    assert dumped["DistThreshold"] == 150
    assert dumped["PersonHeight"] == 170


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DistThreshold", 0),
        ("DistThreshold", -5),
        ("PersonHeight", 0),
        ("DefaultDistMethod", "Euclid"),
        ("Bogus", "1"),
    ],
)
def test_config_rejects_bad_values(key: str, value: Any) -> None:
    cls = POST_PROCESSORS.get("social_distance")
    with pytest.raises(ValidationError):
        cls.Config.model_validate({"Name": "social_distance", key: value})


def test_camera_dist_method_overrides_the_default() -> None:
    stage = build(
        DefaultDistMethod="FourCornerPointsDistance",
        source_keys={"DistMethod": "CenterPointsDistance"},
    )
    out = stage.process(frame_of([person(0, 200), person(100, 200)]))
    assert out.metrics["dist_method"] == "CenterPointsDistance"
    stage = build(DefaultDistMethod="FourCornerPointsDistance")
    assert stage.process(frame_of([person(0, 200)])).metrics["dist_method"] == (
        "FourCornerPointsDistance"
    )


INI_HEAD = "[App]\nTimeZone = UTC\n"
COLLINEAR = "0,0; 100,0; 200,0; 50,100"


def _ini(sources: str, default: str = "CenterPointsDistance", enabled: bool = True) -> str:
    return (
        INI_HEAD
        + sources
        + f"[SourcePostProcessor_0]\nName = social_distance\nDefaultDistMethod = {default}\n"
        + f"Enabled = {enabled}\n"
    )


def _source(
    n: int, method: str = "", image: str = "", floor: str = "", enabled: bool = True
) -> str:
    text = f"[Source_{n}]\nId = cam{n}\nVideoPath = cam{n}.avi\nEnabled = {enabled}\n"
    if method:
        text += f"DistMethod = {method}\n"
    if image:
        text += f"CalibrationImagePoints = {image}\nCalibrationFloorPoints = {floor}\n"
    return text


def test_cross_check_reports_missing_and_degenerate_calibration_per_source() -> None:
    unit_img = "; ".join(f"{x:g},{y:g}" for x, y in UNIT_IMAGE)
    unit_floor = "; ".join(f"{x:g},{y:g}" for x, y in UNIT_FLOOR)
    text = _ini(
        _source(1, "CalibratedDistance")  # missing
        + _source(2, "CalibratedDistance", COLLINEAR, unit_floor)  # degenerate
        + _source(3, "CalibratedDistance", unit_img, unit_floor)  # fine
        + _source(4)  # default method: centre points, needs nothing
        + _source(5, "CalibratedDistance", enabled=False)  # disabled: not checked
    )
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, "test.ini", check_files=False)
    problems = info.value.problems
    assert [(p.section, p.key) for p in problems] == [
        ("Source_1", "CalibrationImagePoints"),
        ("Source_2", "CalibrationImagePoints"),
    ]
    assert "needs CalibrationImagePoints and CalibrationFloorPoints" in problems[0].message
    with pytest.raises(CalibrationError) as direct:
        FloorCalibration.from_points(
            [tuple(map(float, p.split(","))) for p in COLLINEAR.split(";")], UNIT_FLOOR
        )
    assert problems[1].message == str(direct.value)


@pytest.mark.parametrize(
    ("default", "enabled", "problems"),
    [
        ("CalibratedDistance", True, 1),
        ("CenterPointsDistance", True, 0),
        ("CalibratedDistance", False, 0),
    ],
)
def test_cross_check_follows_the_default_method(default: str, enabled: bool, problems: int) -> None:
    text = _ini(_source(1), default=default, enabled=enabled)
    if problems:
        with pytest.raises(ConfigError) as info:
            parse_config_text(text, "test.ini", check_files=False)
        assert len(info.value.problems) == problems
        assert info.value.problems[0].section == "Source_1"
    else:
        config = parse_config_text(text, "test.ini", check_files=False)
        assert config.sources[0].id == "cam1"


def test_cross_check_called_directly() -> None:
    cls = POST_PROCESSORS.get("social_distance")
    config = cls.Config.model_validate(
        {"Name": "social_distance", "DefaultDistMethod": "CalibratedDistance"}
    )
    good = SourceConfig(
        Id="a",
        VideoPath="a.avi",
        CalibrationImagePoints=UNIT_IMAGE,
        CalibrationFloorPoints=UNIT_FLOOR,
    )
    bad = SourceConfig(Id="b", VideoPath="b.avi")
    found = config.cross_check(lookout([good, bad], [config]))  # type: ignore[attr-defined]
    assert len(found) == 1
    _, key, message = found[0]
    assert key == "CalibrationImagePoints"
    assert "CalibratedDistance" in message


def test_calibrated_stage_refuses_a_camera_without_calibration() -> None:
    with pytest.raises(CalibrationError):
        build(DefaultDistMethod="CalibratedDistance")


# ---------------------------------------------------------------------------------------
# Distances by hand
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("gap_px", [50.0, 100.0, 149.0, 150.0, 151.0, 300.0])
@pytest.mark.parametrize("height_px", [85.0, 170.0, 340.0])
def test_center_points_distance(gap_px: float, height_px: float) -> None:
    stage = build(DistThreshold=150, PersonHeight=170)
    out = stage.process(
        frame_of([person(100, 400, height_px), person(100 + gap_px, 400, height_px)])
    )
    cm = gap_px * 170.0 / height_px
    assert out.metrics["min_distance_cm"] == pytest.approx(cm)
    close = cm < 150.0
    assert out.metrics["violating_pairs"] == int(close)
    assert out.metrics["violating_people"] == 2 * int(close)
    assert out.detections.attributes["in_violation"].tolist() == [close, close]
    assert "floor_xy" not in out.detections.attributes


def test_center_points_scale_uses_mean_height_of_the_pair() -> None:
    stage = build(DistThreshold=1000, PersonHeight=180)
    # Heights 100 and 200 px (mean 150): 1.2 cm/px.  Centres: (100, 350) and (400, 300).
    a = [70.0, 300.0, 130.0, 400.0]
    b = [370.0, 200.0, 430.0, 400.0]
    out = stage.process(frame_of([a, b]))
    assert out.metrics["min_distance_cm"] == pytest.approx(math.hypot(300, 50) * 1.2)


def test_four_corner_points_distance_uses_the_nearest_corresponding_corners() -> None:
    stage = build(DefaultDistMethod="FourCornerPointsDistance", DistThreshold=65, PersonHeight=170)
    # Same height (170 px: 1 cm/px), different widths.  Corner gaps: left corners 60 px,
    # right corners 80 px; centres 70 px apart.
    a = [0.0, 0.0, 50.0, 170.0]
    b = [60.0, 0.0, 130.0, 170.0]
    out = stage.process(frame_of([a, b]))
    assert out.metrics["min_distance_cm"] == pytest.approx(60.0)
    assert out.metrics["violating_pairs"] == 1
    centre = build(DistThreshold=65, PersonHeight=170).process(frame_of([a, b]))
    assert centre.metrics["min_distance_cm"] == pytest.approx(70.0)
    assert centre.metrics["violating_pairs"] == 0


def test_four_corner_points_distance_takes_both_coordinates_of_a_corner() -> None:
    stage = build(DefaultDistMethod="FourCornerPointsDistance", PersonHeight=100)
    # Heights 100 and 100: 1 cm/px.  b is a shifted by (30, 40) -> every corner 50 px away.
    a = [0.0, 0.0, 40.0, 100.0]
    b = [30.0, 40.0, 70.0, 140.0]
    out = stage.process(frame_of([a, b]))
    assert out.metrics["min_distance_cm"] == pytest.approx(50.0)


def test_calibrated_distance_on_the_floor() -> None:
    stage = calibrated(DistThreshold=150)
    # Feet at (10, 20), (110, 20), (10, 200): floor (0.1, 0.2), (1.1, 0.2), (0.1, 2.0) m.
    out = stage.process(frame_of([person(10, 20, 50), person(110, 20, 300), person(10, 200, 80)]))
    floor = out.detections.attributes["floor_xy"]
    assert floor.dtype == np.float32
    np.testing.assert_allclose(floor, [[0.1, 0.2], [1.1, 0.2], [0.1, 2.0]], atol=1e-5)
    assert out.metrics["min_distance_cm"] == pytest.approx(100.0, abs=1e-3)
    assert out.metrics["violating_pair_indexes"] == [(0, 1)]
    assert out.detections.attributes["in_violation"].tolist() == [True, True, False]
    assert out.metrics["dist_method"] == "CalibratedDistance"


def test_feet_beyond_the_horizon_never_violate() -> None:
    # Floor = (100 x / y, 10000 / y): the horizon is the image row y = 0.
    image = [(0.0, 100.0), (100.0, 100.0), (100.0, 200.0), (0.0, 200.0)]
    floor = [(100 * x / y, 10000 / y) for x, y in image]
    stage = build(
        DistThreshold=1e6,
        source_keys={
            "DistMethod": "CalibratedDistance",
            "CalibrationImagePoints": image,
            "CalibrationFloorPoints": floor,
        },
    )
    out = stage.process(frame_of([person(50, 150), person(60, -10), person(70, 160)]))
    floor_xy = out.detections.attributes["floor_xy"]
    assert np.isnan(floor_xy[1]).all() and np.isfinite(floor_xy[[0, 2]]).all()
    assert out.detections.attributes["in_violation"].tolist() == [True, False, True]
    assert out.metrics["violating_pair_indexes"] == [(0, 2)]
    expected = float(np.linalg.norm(floor_xy[0].astype(float) - floor_xy[2].astype(float)))
    assert out.metrics["min_distance_cm"] == pytest.approx(expected * 100, rel=1e-4)


def test_three_in_a_row_counts_people_and_pairs_separately() -> None:
    stage = calibrated(DistThreshold=150)
    # 100 cm apart in a row: pairs (0,1) and (1,2) are close, (0,2) at 200 cm is not.
    out = stage.process(frame_of([person(0, 50), person(100, 50), person(200, 50)]))
    assert out.metrics["people"] == 3
    assert out.metrics["violating_people"] == 3
    assert out.metrics["violating_pairs"] == 2
    assert out.metrics["violating_pair_indexes"] == [(0, 1), (1, 2)]


def test_a_tight_group_of_three_is_three_pairs() -> None:
    stage = calibrated(DistThreshold=150)
    out = stage.process(
        frame_of([person(0, 0), person(100, 0), person(50, 80), person(1000, 1000)])
    )
    assert out.metrics["people"] == 4
    assert out.metrics["violating_people"] == 3
    assert out.metrics["violating_pairs"] == 3
    assert out.detections.attributes["in_violation"].tolist() == [True, True, True, False]


@pytest.mark.parametrize("n", [0, 1])
@pytest.mark.parametrize(
    "method", ["CenterPointsDistance", "FourCornerPointsDistance", "CalibratedDistance"]
)
def test_fewer_than_two_people(n: int, method: str) -> None:
    stage = (
        calibrated(DefaultDistMethod=method)
        if method == "CalibratedDistance"
        else build(DefaultDistMethod=method)
    )
    out = stage.process(frame_of([person(50, 50)][:n]))
    assert out.metrics["people"] == n
    assert out.metrics["violating_people"] == 0
    assert out.metrics["violating_pairs"] == 0
    assert out.metrics["violating_pair_indexes"] == []
    assert out.metrics["min_distance_cm"] is None
    assert out.detections.attributes["in_violation"].shape == (n,)
    if method == "CalibratedDistance":
        assert out.detections.attributes["floor_xy"].shape == (n, 2)


def _reference_cm(boxes: np.ndarray, method: str, person_cm: float) -> dict[tuple[int, int], float]:
    """Distances per pair with plain loops (1 px = 1 cm calibration for CalibratedDistance)."""
    out: dict[tuple[int, int], float] = {}
    for i, j in itertools.combinations(range(len(boxes)), 2):
        a, b = boxes[i].astype(float), boxes[j].astype(float)
        scale = person_cm / ((a[3] - a[1] + b[3] - b[1]) / 2)
        if method == "CenterPointsDistance":
            d = (
                math.dist(
                    ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2), ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
                )
                * scale
            )
        elif method == "FourCornerPointsDistance":
            corners = [(0, 1), (2, 1), (2, 3), (0, 3)]
            d = min(math.dist((a[x], a[y]), (b[x], b[y])) for x, y in corners) * scale
        else:
            d = math.dist(((a[0] + a[2]) / 2, a[3]), ((b[0] + b[2]) / 2, b[3]))
        out[(i, j)] = d
    return out


@pytest.mark.parametrize(
    "method", ["CenterPointsDistance", "FourCornerPointsDistance", "CalibratedDistance"]
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_scenes_match_a_per_pair_reference(method: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 25
    feet = rng.uniform(0, 800, (n, 2))
    heights = rng.uniform(80, 220, n)
    boxes = np.stack(
        [feet[:, 0] - heights * 0.2, feet[:, 1] - heights, feet[:, 0] + heights * 0.2, feet[:, 1]],
        axis=1,
    ).astype(np.float32)
    threshold = 120.0
    keys = {"DefaultDistMethod": method, "DistThreshold": threshold, "PersonHeight": 175}
    stage = calibrated(**keys) if method == "CalibratedDistance" else build(**keys)
    out = stage.process(frame_of(boxes))
    ref = _reference_cm(boxes, method, 175.0)
    close = sorted(p for p, d in ref.items() if d < threshold)
    assert close, "the scene should have some close pairs"
    assert out.metrics["violating_pair_indexes"] == close
    assert out.metrics["violating_pairs"] == len(close)
    people = sorted({k for pair in close for k in pair})
    assert out.metrics["violating_people"] == len(people)
    assert np.flatnonzero(out.detections.attributes["in_violation"]).tolist() == people
    assert out.metrics["min_distance_cm"] == pytest.approx(min(ref.values()), rel=1e-5)


def test_detections_are_not_removed_or_reordered() -> None:
    stage = build()
    frame = frame_of([person(0, 200), person(80, 200), person(500, 200)])
    boxes = frame.detections.boxes.copy()
    out = stage.process(frame)
    np.testing.assert_array_equal(out.detections.boxes, boxes)
    assert out.detections.track_ids.tolist() == [1, 2, 3]


# ---------------------------------------------------------------------------------------
# Occupancy
# ---------------------------------------------------------------------------------------


def test_occupancy_is_registered_after_the_tracker() -> None:
    assert POST_PROCESSORS.get("occupancy").phase == "after_tracker"


@pytest.mark.parametrize("threshold", [0, 2, 3, 5])
@pytest.mark.parametrize("people", [0, 1, 3, 4, 6])
def test_occupancy_against_threshold(threshold: int, people: int) -> None:
    stage = build("occupancy", source_keys={"OccupancyThreshold": threshold})
    out = stage.process(frame_of([person(100 * k, 300) for k in range(people)]))
    assert out.metrics["occupancy"] == people
    assert out.metrics["occupancy_threshold"] == threshold
    assert out.metrics["over_capacity"] is (threshold > 0 and people > threshold)


# ---------------------------------------------------------------------------------------
# Events: a distancing violation and an occupancy over its threshold start and end
# ---------------------------------------------------------------------------------------

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def timed(boxes: list[list[float]], k: int) -> Frame:
    """``frame_of(boxes)`` as frame ``k`` of a clip at 2 fps from T0."""
    frame = frame_of(boxes)
    frame.index, frame.timestamp = k, T0 + timedelta(seconds=0.5 * k)
    return frame


def end_of(k: int) -> Frame:
    return Frame("cam", -1, T0 + timedelta(seconds=0.5 * k, milliseconds=1),
                 np.zeros((1, 1, 3), np.uint8), sample_due=True)


def test_distancing_episodes_start_and_end() -> None:
    stage = calibrated(DistThreshold=150)
    apart = [person(0, 50), person(400, 50)]
    close2 = [person(0, 50), person(100, 50), person(400, 50)]  # 1 pair: people 1 and 2
    close3 = [person(0, 50), person(100, 50), person(200, 50)]  # 2 pairs, 3 people
    scenes = [apart, close2, close3, close2, apart, apart, close2]
    frames = [stage.process(timed(boxes, k)) for k, boxes in enumerate(scenes)]
    got = [(f.index, r) for f in frames for r in f.records]
    assert [(k, r.kind) for k, r in got] == [(1, "distancing_start"), (4, "distancing_end"),
                                             (6, "distancing_start")]
    start, end = got[0][1], got[1][1]
    assert isinstance(start, DistancingStart) and isinstance(end, DistancingEnd)
    assert (start.violating_objects, start.violating_pairs, start.track_ids) == (2, 1, (1, 2))
    assert start.min_distance_cm == pytest.approx(100.0)
    assert (end.started, end.seconds, end.frame) == (T0 + timedelta(seconds=0.5), 1.5, 4)
    assert (end.max_violating_objects, end.max_violating_pairs) == (3, 2)
    last = end_of(6)
    stage.finish(last)  # the stream ends during the second episode
    assert [(r.kind, r.seconds) for r in last.records] == [("distancing_end", 0.001)]


def test_occupancy_over_and_back_under_the_threshold() -> None:
    stage = build("occupancy", source_keys={"OccupancyThreshold": 2})
    counts = [1, 3, 4, 2, 2, 3]
    frames = [stage.process(timed([person(100 * i, 300) for i in range(n)], k))
              for k, n in enumerate(counts)]
    got = [(f.index, r) for f in frames for r in f.records]
    assert [(k, r.kind) for k, r in got] == [(1, "occupancy_over"), (3, "occupancy_under"),
                                             (5, "occupancy_over")]
    over, under = got[0][1], got[1][1]
    assert isinstance(over, OccupancyOver) and isinstance(under, OccupancyUnder)
    assert (over.occupancy, over.threshold) == (3, 2)
    assert (under.occupancy, under.started, under.seconds, under.peak) == (
        2, T0 + timedelta(seconds=0.5), 1.0, 4)
    last = end_of(5)
    stage.finish(last)
    assert [(r.kind, r.occupancy, r.peak) for r in last.records  # type: ignore[attr-defined]
            ] == [("occupancy_under", 0, 3)]
    quiet = build("occupancy", source_keys={"OccupancyThreshold": 0})  # no limit: no events
    assert not quiet.process(timed([person(0, 300)] * 5, 0)).records
