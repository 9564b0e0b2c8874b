"""``faces``: head regions, crops, and faces found where they were pasted into a frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from libs.config.models import LookoutConfig
from libs.post_processors.faces import (
    Faces,
    box_iou,
    crop_region,
    from_relative,
    head_regions,
    head_sides,
    to_relative,
)
from tests.faces_helpers import (
    MASKED_FACE,
    UNMASKED_FACE,
    frame_of,
    load,
    person_with_face,
    read_face,
    scene,
    section,
)


def faces_stage(tmp_path: Path, shared: Path, **keys: object) -> Faces:
    config: LookoutConfig = load(tmp_path, shared, section(4, "faces", **keys))
    settings = next(p for p in config.source_post_processors if p.name == "faces")
    return Faces(settings, config.sources[0], config)


# ---------------------------------------------------------------------------------------
# Geometry, by hand
# ---------------------------------------------------------------------------------------


def test_head_side_is_a_fifth_of_a_standing_person_and_half_an_upper_body() -> None:
    boxes = np.array([
        [100, 50, 140, 250],  # standing, 40 x 200: max(40, 20) = 40, min(40, 40, 200) = 40
        [0, 0, 100, 120],  # upper body, 100 x 120: max(24, 50) = 50
        [0, 0, 30, 300],  # thin, 30 x 300: max(60, 15) = 60, capped by the width 30
        [0, 0, 80, 20],  # flat, 80 x 20: max(4, 40) = 40, capped by the height 20
    ], np.float32)
    np.testing.assert_allclose(head_sides(boxes, 0.2), [40, 50, 30, 20])


def test_head_region_is_the_padded_square_at_the_top_centre() -> None:
    # side 40, centre x (100 + 140) / 2 = 120, centre y 50 + 0.45 * 40 = 68, half 1.5 * 20 = 30
    region = head_regions(np.array([[100, 50, 140, 250]]), 0.2, 1.5)
    np.testing.assert_allclose(region, [[90, 38, 150, 98]])
    assert region.dtype == np.float32 and head_regions(np.zeros((0, 4))).shape == (0, 4)


def test_crop_outside_the_frame_repeats_the_border() -> None:
    image = np.arange(4 * 5, dtype=np.uint8).reshape(4, 5)  # rows 0-3, columns 0-4
    crop, used = crop_region(image, np.array([-2.0, -1.0, 2.0, 2.0]))
    np.testing.assert_array_equal(used, [-2, -1, 2, 2])
    assert crop.shape == (3, 4)
    # columns -2, -1 repeat column 0; row -1 repeats row 0
    np.testing.assert_array_equal(crop, [[0, 0, 0, 1], [0, 0, 0, 1], [5, 5, 5, 6]])
    far, _ = crop_region(image, np.array([10.0, 10.0, 12.0, 11.0]))
    np.testing.assert_array_equal(far, [[19, 19]])  # the nearest pixel, the bottom-right one
    resized, _ = crop_region(image, np.array([0.0, 0.0, 5.0, 4.0]), (10, 8))
    assert resized.shape == (8, 10)


def test_relative_points_follow_the_person_box() -> None:
    person = np.array([100.0, 50.0, 140.0, 250.0])
    rel = to_relative(np.array([[110.0, 60.0], [130.0, 90.0]]), person)
    np.testing.assert_allclose(rel, [[0.25, 0.05], [0.75, 0.2]])
    moved = np.array([110.0, 50.0, 190.0, 450.0])  # 10 px right, twice the size
    np.testing.assert_allclose(from_relative(rel, moved), [[130.0, 70.0], [170.0, 130.0]])


# ---------------------------------------------------------------------------------------
# Faces found where they were pasted
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [40, 64, 100])
def test_yunet_finds_a_pasted_face_inside_the_person_box(
    tmp_path: Path, shared: Path, side: int
) -> None:
    stage = faces_stage(tmp_path, shared, FaceDetector="yunet", EveryFrames=1)
    image, person, pasted = person_with_face(read_face(UNMASKED_FACE), face_side=side)
    frame = stage.process(frame_of(image, [person], [7]))
    attrs = frame.detections.attributes
    assert box_iou(attrs["face_box"][0], np.array(pasted, np.float64)) > 0.6
    assert attrs["face_score"][0] >= 0.6 and bool(attrs["face_fresh"][0])
    marks = attrs["face_landmarks"][0]
    assert np.isfinite(marks).all()
    # eyes above the nose, nose above the mouth, left before right: a real face's layout
    assert marks[0, 0] < marks[1, 0] and marks[3, 0] < marks[4, 0]
    assert max(marks[0, 1], marks[1, 1]) < marks[2, 1] < min(marks[3, 1], marks[4, 1])
    x1, y1, x2, y2 = pasted
    assert ((marks[:, 0] > x1) & (marks[:, 0] < x2) & (marks[:, 1] > y1)
            & (marks[:, 1] < y2)).all()
    assert np.isnan(attrs["face_mask_prob"][0])
    assert frame.metrics["faces_searched"] == 1


def test_masked_face_model_finds_a_masked_face_without_landmarks(
    tmp_path: Path, shared: Path
) -> None:
    stage = faces_stage(tmp_path, shared, FaceDetector="masked", EveryFrames=1)
    image, person, pasted = person_with_face(read_face(MASKED_FACE), face_side=64)
    attrs = stage.process(frame_of(image, [person], [3])).detections.attributes
    box = attrs["face_box"][0]
    centre = (box[:2] + box[2:]) / 2
    x1, y1, x2, y2 = pasted
    assert x1 < centre[0] < x2 and y1 < centre[1] < y2
    assert attrs["face_score"][0] >= 0.6
    assert np.isnan(attrs["face_landmarks"][0]).all()
    assert attrs["face_mask_prob"][0] > 0.9  # the model says: masked


def test_no_face_in_an_empty_scene(tmp_path: Path, shared: Path) -> None:
    stage = faces_stage(tmp_path, shared, EveryFrames=1)
    person = np.array([280, 90, 380, 400], np.float32)
    attrs = stage.process(frame_of(scene(), [person], [1])).detections.attributes
    assert np.isnan(attrs["face_box"]).all() and attrs["face_score"][0] == 0
    assert bool(attrs["face_fresh"][0])  # searched, nothing found


def test_contract_dtypes_and_shapes_with_and_without_people(
    tmp_path: Path, shared: Path
) -> None:
    stage = faces_stage(tmp_path, shared)
    image, person, _ = person_with_face(read_face(UNMASKED_FACE))
    for boxes in ([], [person, person + 200]):
        attrs = stage.process(frame_of(image, boxes, list(range(len(boxes))))).detections
        n = len(boxes)
        a = attrs.attributes
        assert a["face_box"].shape == (n, 4) and a["face_box"].dtype == np.float32
        assert a["face_score"].shape == (n,) and a["face_score"].dtype == np.float32
        assert a["face_landmarks"].shape == (n, 5, 2)
        assert a["face_landmarks"].dtype == np.float32
        assert a["face_fresh"].shape == (n,) and a["face_fresh"].dtype == bool
        assert a["face_mask_prob"].shape == (n,) and a["face_mask_prob"].dtype == np.float32


# ---------------------------------------------------------------------------------------
# Cost bounds
# ---------------------------------------------------------------------------------------


def test_every_frames_carries_the_face_with_the_person(tmp_path: Path, shared: Path) -> None:
    stage = faces_stage(tmp_path, shared, FaceDetector="yunet", EveryFrames=3)
    image, person, _ = person_with_face(read_face(UNMASKED_FACE))
    first = stage.process(frame_of(image, [person], [5], 0.0)).detections.attributes
    found = first["face_box"][0].copy()
    marks = first["face_landmarks"][0].copy()
    shift = np.array([10, 0, 10, 0], np.float32)
    for k in (1, 2):  # the same image, the box 10 px further right on each frame
        moved = person + k * shift
        attrs = stage.process(frame_of(image, [moved], [5], 0.04 * k, k)).detections.attributes
        assert not attrs["face_fresh"][0]
        np.testing.assert_allclose(attrs["face_box"][0], found + k * shift, atol=1e-3)
        np.testing.assert_allclose(attrs["face_landmarks"][0], marks + np.array([10.0 * k, 0.0]),
                                   atol=1e-3)
        assert attrs["face_score"][0] == first["face_score"][0]
        assert np.isnan(attrs["face_mask_prob"][0])
    third = stage.process(frame_of(image, [person], [5], 0.12, 3)).detections.attributes
    assert third["face_fresh"][0]  # searched again on the third frame after the first


def test_max_faces_takes_the_longest_waiting_then_the_biggest(
    tmp_path: Path, shared: Path
) -> None:
    stage = faces_stage(tmp_path, shared, FaceDetector="yunet", EveryFrames=1, MaxFaces=1)
    image = scene()
    boxes = [[10, 10, 60, 260], [100, 10, 180, 410], [300, 10, 370, 360]]  # heads 50, 80, 70
    searched = []
    for k in range(4):
        attrs = stage.process(frame_of(image, boxes, [1, 2, 3], 0.04 * k, k)).detections
        assert int(np.count_nonzero(attrs.attributes["face_fresh"])) == 1
        searched.append(int(np.flatnonzero(attrs.attributes["face_fresh"])[0]))
    # never searched first, biggest head first (80, 70, 50), then the one waiting longest
    assert searched == [1, 2, 0, 1]


def test_heads_below_min_face_size_are_not_searched(tmp_path: Path, shared: Path) -> None:
    stage = faces_stage(tmp_path, shared, EveryFrames=1, MinFaceSize=30)
    image = scene()
    # heads: min(max(0.2 * 100, 0.5 * 20), 20, 100) = 20 px (skipped); 50 px (searched)
    frame = stage.process(frame_of(image, [[10, 10, 30, 110], [100, 10, 200, 260]], [1, 2]))
    attrs = frame.detections.attributes
    assert attrs["face_fresh"].tolist() == [False, True]
    assert np.isnan(attrs["face_box"][0]).all()
    assert frame.metrics["faces_searched"] == 1


def test_models_are_shared_between_cameras(tmp_path: Path, shared: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = faces_stage(tmp_path / "a", shared)
    b = faces_stage(tmp_path / "b", shared)
    assert a.finder.yunet is b.finder.yunet and a.finder.masked is b.finder.masked


def test_missing_model_file_is_a_clear_error(tmp_path: Path, shared: Path) -> None:
    with pytest.raises(FileNotFoundError, match="YunetModelPath"):
        faces_stage(tmp_path, shared, YunetModelPath="models/nothing.onnx")
