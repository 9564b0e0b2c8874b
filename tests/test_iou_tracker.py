"""IOUTracker on synthetic moving boxes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from libs.config.models import DetectorConfig, TrackerConfig
from libs.frame import Detections, Frame
from libs.geometry import iou_matrix
from libs.trackers import TRACKERS, Tracker

START = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
IMAGE = np.zeros((1, 1, 3), np.uint8)


def make_tracker(max_lost: int = 5, threshold: float = 0.3) -> Tracker:
    cls = TRACKERS.get("IOUTracker")
    config = cls.Config.model_validate(
        {"Name": "IOUTracker", "MaxLost": max_lost, "TrackerIOUThreshold": threshold}
    )
    return cls(config)


def frame_at(index: int, boxes: list[list[float]] | np.ndarray) -> Frame:
    arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return Frame(
        camera_id="cam",
        index=index,
        timestamp=START + timedelta(seconds=index / 7),
        image=IMAGE,
        detections=Detections(boxes=arr, scores=np.ones(len(arr))),
    )


def walker(x0: float, y0: float, vx: float, k: int) -> list[float]:
    x = x0 + vx * k
    return [x, y0, x + 40.0, y0 + 100.0]


def test_registered_with_tracker_config() -> None:
    cls = TRACKERS.get("IOUTracker")
    assert issubclass(cls, Tracker)
    assert issubclass(cls.Config, TrackerConfig)
    # Its least score defaults to the detector's default MinScore.
    assert cls.Config(Name="IOUTracker").min_score == DetectorConfig(Name="x").min_score


def test_detections_under_its_min_score_are_dropped() -> None:
    """The shipped detector keeps boxes down to 0.1 for KalmanTracker; IOUTracker takes its
    own MinScore and up, and says so (lookout evaluate reads it)."""
    cls = TRACKERS.get("IOUTracker")
    tracker = cls(cls.Config(Name="IOUTracker", MinScore=0.4))
    assert tracker.min_score == pytest.approx(0.4)
    boxes = np.array([walker(0, 0, 5, 0), walker(200, 0, 5, 0), walker(400, 0, 5, 0)])
    frame = frame_at(0, boxes)
    frame.detections = Detections(boxes=boxes, scores=[0.9, 0.15, 0.4])
    out = tracker.update(frame).detections
    assert out.scores.tolist() == pytest.approx([0.9, 0.4])
    assert out.boxes[:, 0].tolist() == [0, 400] and (out.track_ids >= 1).all()
    assert len(tracker.active_tracks()) == 2


def test_ids_follow_people_not_row_order() -> None:
    tracker = make_tracker()
    rng = np.random.default_rng(0)
    starts = [(0.0, 0.0, 5.0), (300.0, 0.0, -5.0), (0.0, 300.0, 3.0)]
    first_ids: list[int] = []
    for k in range(30):
        boxes = [walker(x, y, v, k) for x, y, v in starts]
        order = rng.permutation(3)
        frame = tracker.update(frame_at(k, [boxes[i] for i in order]))
        ids_by_person = np.empty(3, np.int64)
        ids_by_person[order] = frame.detections.track_ids
        if k == 0:
            first_ids = ids_by_person.tolist()
            assert sorted(first_ids) == [1, 2, 3]
        assert ids_by_person.tolist() == first_ids
    assert len(tracker.active_tracks()) == 3


@pytest.mark.parametrize("max_lost", [0, 1, 3, 5])
@pytest.mark.parametrize("gap", [1, 2, 3, 4, 6])
def test_a_track_survives_up_to_max_lost_missing_frames(max_lost: int, gap: int) -> None:
    tracker = make_tracker(max_lost=max_lost)
    k = 0
    for _ in range(5):
        tracker.update(frame_at(k, [walker(0, 0, 2, k)]))
        k += 1
    first_id = tracker.active_tracks()[0].track_id
    for missing in range(1, gap + 1):
        tracker.update(frame_at(k, []))
        k += 1
        alive = [t.track_id for t in tracker.active_tracks()]
        assert alive == ([first_id] if missing <= max_lost else [])
        if alive:
            assert tracker.active_tracks()[0].lost == missing
    frame = tracker.update(frame_at(k, [walker(0, 0, 2, k)]))
    returned_id = int(frame.detections.track_ids[0])
    if gap <= max_lost:
        assert returned_id == first_id
    else:
        assert returned_id == first_id + 1


def test_new_people_get_increasing_new_ids_and_ended_ids_are_not_reused() -> None:
    tracker = make_tracker(max_lost=1)
    seen: list[int] = []
    for k in range(40):
        # A new person every 10 frames at a new place; each stays 12 frames.
        boxes = [[200.0 * p, 0.0, 200.0 * p + 40, 100.0] for p in range(4) if 0 <= k - 10 * p < 12]
        frame = tracker.update(frame_at(k, boxes))
        for track_id in frame.detections.track_ids.tolist():
            if track_id not in seen:
                seen.append(track_id)
    assert seen == list(range(1, len(seen) + 1))
    assert len(seen) == 4


def test_first_and_last_seen_and_history() -> None:
    tracker = make_tracker(max_lost=3)
    for k in range(10):
        tracker.update(frame_at(k, [walker(0, 0, 4, k)]))
    for k in range(10, 12):  # lost for two frames
        tracker.update(frame_at(k, []))
    (track,) = tracker.active_tracks()
    assert track.first_frame == 0
    assert track.last_frame == 9
    assert track.first_seen == START
    assert track.last_seen == START + timedelta(seconds=9 / 7)
    assert track.hits == 10
    assert track.lost == 2
    np.testing.assert_allclose(track.box, walker(0, 0, 4, 9))
    assert len(track.history) == 10
    history = np.stack(list(track.history))
    np.testing.assert_allclose(history, [walker(0, 0, 4, k) for k in range(10)])


def test_iou_threshold_decides_between_continuing_and_starting_a_track() -> None:
    box = [0.0, 0.0, 100.0, 100.0]
    for shift in [10.0, 40.0, 60.0, 90.0]:
        for threshold in [0.2, 0.5, 0.7]:
            tracker = make_tracker(threshold=threshold)
            tracker.update(frame_at(0, [box]))
            moved = [box[0] + shift, 0.0, box[2] + shift, 100.0]
            frame = tracker.update(frame_at(1, [moved]))
            iou = float(iou_matrix(np.array([box]), np.array([moved]))[0, 0])
            expected = 1 if iou >= threshold else 2
            assert int(frame.detections.track_ids[0]) == expected, (shift, threshold, iou)


def test_zero_threshold_never_matches_boxes_that_do_not_overlap() -> None:
    tracker = make_tracker(threshold=0.0)
    tracker.update(frame_at(0, [[0, 0, 10, 10]]))
    frame = tracker.update(frame_at(1, [[50, 50, 60, 60]]))
    assert frame.detections.track_ids.tolist() == [2]


def _greedy_reference(tracks: np.ndarray, dets: np.ndarray, threshold: float) -> dict[int, int]:
    iou = iou_matrix(tracks, dets)
    pairs = sorted(
        ((iou[r, c], r, c) for r in range(len(tracks)) for c in range(len(dets))),
        key=lambda p: (-p[0], p[1], p[2]),
    )
    used_r: set[int] = set()
    used_c: set[int] = set()
    match: dict[int, int] = {}
    for value, r, c in pairs:
        if value < threshold or value <= 0 or r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        match[c] = r
    return match


def test_greedy_association_by_descending_iou() -> None:
    # Track 1 overlaps detection B better than A, but track 2 overlaps B best of all:
    # greedy gives B to track 2 and A to track 1.
    tracks = [[0, 0, 100, 100], [60, 0, 160, 100]]
    dets = [[-50, 0, 50, 100], [40, 0, 140, 100]]
    iou = iou_matrix(np.array(tracks, float), np.array(dets, float))
    assert iou[0, 1] > iou[0, 0] > 0.1 and iou[1, 1] > iou[0, 1] and iou[1, 0] == 0
    tracker = make_tracker(threshold=0.1)
    tracker.update(frame_at(0, tracks))
    frame = tracker.update(frame_at(1, dets))
    assert frame.detections.track_ids.tolist() == [1, 2]


@pytest.mark.parametrize("seed", range(8))
def test_association_equals_sorted_greedy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 30
    xy = rng.uniform(0, 400, (n, 2))
    tracks = np.concatenate([xy, xy + 50.0], axis=1).astype(np.float32)
    dets = tracks[rng.permutation(n)[: n - 5]] + rng.normal(0, 12, (n - 5, 4)).astype(np.float32)
    dets = np.concatenate([dets, rng.uniform(0, 400, (4, 4)).astype(np.float32)])
    dets[:, 2:] = np.maximum(dets[:, 2:], dets[:, :2] + 5)
    threshold = 0.3
    tracker = make_tracker(threshold=threshold)
    tracker.update(frame_at(0, tracks))
    frame = tracker.update(frame_at(1, dets))
    match = _greedy_reference(tracks, dets, threshold)
    ids = frame.detections.track_ids.tolist()
    new_ids = iter(range(n + 1, n + 1 + len(dets)))
    expected = [match[c] + 1 if c in match else next(new_ids) for c in range(len(dets))]
    assert ids == expected


def test_every_detection_gets_an_id_and_nothing_is_removed() -> None:
    rng = np.random.default_rng(5)
    tracker = make_tracker()
    for k in range(20):
        n = int(rng.integers(0, 12))
        xy = rng.uniform(0, 500, (n, 2))
        boxes = np.concatenate([xy, xy + 30], axis=1)
        frame = tracker.update(frame_at(k, boxes))
        assert len(frame.detections) == n
        assert (frame.detections.track_ids >= 1).all()
        assert len(set(frame.detections.track_ids.tolist())) == n


def test_one_hundred_people_take_well_under_a_millisecond_per_frame() -> None:
    rng = np.random.default_rng(7)
    n, frames = 100, 150
    xy = rng.uniform(0, 1800, (n, 2)) * [1, 0.5]
    v = rng.normal(0, 3, (n, 2))
    tracker = make_tracker()
    times = []
    for k in range(frames):
        v += rng.normal(0, 0.3, (n, 2))
        xy += v
        boxes = np.concatenate([xy, xy + np.array([40.0, 110.0])], axis=1)
        frame = frame_at(k, boxes)
        t0 = time.perf_counter()
        tracker.update(frame)
        times.append(time.perf_counter() - t0)
    median_ms = float(np.median(times) * 1000)
    print(f"IOUTracker, {n} people: median {median_ms:.3f} ms per frame")
    assert median_ms < 1.0, f"median {median_ms:.3f} ms per frame"
