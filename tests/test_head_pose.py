"""``head_pose``: angle conventions, PnP on synthetic projections, the looking cone, time
looking per track, and the mesh on real faces of AFLW2000."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from libs.config import ConfigError
from libs.frame import Frame
from libs.metrics.reports import source_specs
from libs.post_processors.faces import YUNET_MODEL, YuNet, box_iou
from libs.post_processors.head_pose import (
    ATTENTION,
    ATTENTION_LOG_FOLDER,
    GENERIC_FACE_5,
    GENERIC_FACE_6,
    MESH_MODEL,
    FaceMesh,
    HeadPose,
    HeadPoseEstimator,
    angles_from_rotation,
    bearings,
    camera_matrix,
    in_cone,
    mesh_available,
    rotation_from_angles,
    solve_head_pose,
)
from libs.records import AttentionSample
from tests.faces_helpers import FACES_DIR, frame_of, load, scene, section

CAMERA = camera_matrix(640, 480, 60.0)
AFLW = FACES_DIR / "head_pose" / "aflw2000"


def project(model: np.ndarray, yaw: float, pitch: float, roll: float,
            position: tuple[float, float, float] = (0.0, 0.0, 3000.0)) -> np.ndarray:
    """Image points of ``model`` turned by the angles and placed at ``position``."""
    rvec, _ = cv2.Rodrigues(rotation_from_angles(yaw, pitch, roll))
    points, _ = cv2.projectPoints(model, rvec, np.array(position, np.float64), CAMERA, None)
    return points.reshape(-1, 2)


def head_pose_stage(tmp_path: Path, shared: Path, **keys: object) -> HeadPose:
    config = load(tmp_path, shared, section(4, "faces") + "\n" + section(5, "head_pose", **keys))
    settings = next(p for p in config.source_post_processors if p.name == "head_pose")
    return HeadPose(settings, config.sources[0], config)


def face_attributes(marks: np.ndarray, fresh: bool = True) -> dict[str, np.ndarray]:
    lo, hi = marks.min(axis=0), marks.max(axis=0)
    pad = (hi - lo) * 0.3
    return {
        "face_box": np.concatenate([lo - pad, hi + pad])[None].astype(np.float32),
        "face_landmarks": marks[None].astype(np.float32),
        "face_fresh": np.array([fresh]),
    }


def due(frame: Frame) -> Frame:
    """``frame`` as a tick of the pipeline's sample clock (a sample is taken on it)."""
    frame.sample_due = True
    return frame


def attention(frame: Frame) -> list[tuple[int, int]]:
    """``(people, looking)`` of the frame's ``attention_log`` samples."""
    return [(r.people, r.looking) for r in frame.records if isinstance(r, AttentionSample)]


# ---------------------------------------------------------------------------------------
# Conventions and the solve
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("angles", [(0, 0, 0), (30, -10, 5), (-60, 20, -15), (10, 45, 30)])
def test_angles_round_trip(angles: tuple[float, float, float]) -> None:
    got = angles_from_rotation(rotation_from_angles(*angles))
    np.testing.assert_allclose(got, angles, atol=1e-9)


def test_positive_yaw_turns_the_face_to_the_image_right_and_pitch_up() -> None:
    turned = project(GENERIC_FACE_6, 30, 0, 0)
    nose, eye_l, eye_r = turned[0], turned[2], turned[3]
    assert nose[0] > (eye_l[0] + eye_r[0]) / 2 + 10  # the person's left is our right
    frontal = project(GENERIC_FACE_6, 0, 0, 0)
    up = project(GENERIC_FACE_6, 0, 20, 0)
    # chin up: the nose tip rises towards the eye line in the image
    assert (up[0, 1] - up[2, 1]) < (frontal[0, 1] - frontal[2, 1]) - 5
    clockwise = project(GENERIC_FACE_6, 0, 0, 20)
    assert clockwise[3, 1] > clockwise[2, 1]  # roll +: the eye on the image's right is lower


@pytest.mark.parametrize("model", [GENERIC_FACE_6, GENERIC_FACE_5], ids=["mesh6", "yunet5"])
@pytest.mark.parametrize("angles", [(0, 0, 0), (35, -12, 8), (-25, 15, -5)])
def test_pnp_recovers_the_angles_of_a_projected_generic_face(
    model: np.ndarray, angles: tuple[float, float, float]
) -> None:
    points = project(model, *angles, position=(400.0, -200.0, 2500.0))
    pose = solve_head_pose(points, model, CAMERA)
    assert pose is not None
    np.testing.assert_allclose(pose, angles, atol=0.05)


def test_pnp_refuses_missing_points() -> None:
    points = project(GENERIC_FACE_5, 0, 0, 0)
    points[2] = np.nan
    assert solve_head_pose(points, GENERIC_FACE_5, CAMERA) is None


def test_cone_by_hand() -> None:
    yaw = np.array([0.0, 20.0, 20.01, -19.0, 5.0, np.nan, 0.0])
    pitch = np.array([0.0, -20.0, 0.0, 19.0, 25.0, 0.0, np.nan])
    assert in_cone(yaw, pitch, 0, 0, 20, 20).tolist() == [
        True, True, False, True, False, False, False,
    ]
    # a display 10 degrees to the person's left and 15 below: centre (10, -15)
    assert in_cone(np.array([10.0, 0.0]), np.array([-15.0, 0.0]), 10, -15, 5, 5).tolist() == [
        True, False,
    ]


def test_bearing_of_the_line_of_sight() -> None:
    camera = camera_matrix(640, 480, 90.0)  # f = 320
    yaw, pitch = bearings(np.array([[320.0, 240.0], [640.0, 240.0], [320.0, 0.0]]), camera)
    np.testing.assert_allclose(yaw, [0.0, 45.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(pitch, [0.0, 0.0, math.degrees(math.atan(240 / 320))],
                               atol=1e-9)


# ---------------------------------------------------------------------------------------
# The step on synthetic landmarks
# ---------------------------------------------------------------------------------------


def test_time_looking_is_sample_and_hold_with_a_gap_limit(tmp_path: Path, shared: Path) -> None:
    stage = head_pose_stage(tmp_path, shared, UseMesh=False, MaxGapSeconds=1.0)
    # (time, yaw): looking while |yaw| <= 20 (the face is at the image centre)
    steps = [(0.0, 0), (0.04, 0), (0.08, 0), (0.12, 60), (0.16, 0), (2.0, 0), (2.04, 0)]
    # credited: the gap before a frame when the track looked at the previous one;
    # 0.12 -> 0.16 follows a frame turned away, 0.16 -> 2.0 is longer than 1 s
    expected = [0.0, 0.04, 0.08, 0.12, 0.12, 0.12, 0.16]
    got, looking = [], []
    for k, (t, yaw) in enumerate(steps):
        marks = project(GENERIC_FACE_5, yaw, 0, 0)
        frame = frame_of(scene(), [[250, 100, 390, 470]], [3], t, k, face_attributes(marks))
        attrs = stage.process(frame).detections.attributes
        got.append(float(attrs["looking_seconds"][0]))
        looking.append(bool(attrs["looking"][0]))
        assert attrs["head_yaw"][0] == pytest.approx(yaw, abs=0.05)
    assert looking == [True, True, True, False, True, True, True]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert stage.methods == {"mesh": 0, "landmarks": 7, "none": 0}


def test_the_cone_points_at_the_camera_from_anywhere_in_the_image(
    tmp_path: Path, shared: Path
) -> None:
    # A face to the right of the image looking into the lens: its yaw is minus its bearing.
    tan = math.tan(math.radians(30.0))
    marks = project(GENERIC_FACE_5, -30.0, 0.0, 0.0, position=(3000.0 * tan, 0.0, 3000.0))
    for relative, expected in ((True, True), (False, False)):
        stage = head_pose_stage(tmp_path, shared, UseMesh=False, RelativeToCamera=relative)
        frame = frame_of(scene(), [[400, 100, 600, 470]], [1], 0.0, 0, face_attributes(marks))
        attrs = stage.process(frame).detections.attributes
        assert attrs["head_yaw"][0] == pytest.approx(-30.0, abs=0.05)
        assert bool(attrs["looking"][0]) is expected


def test_pitch_offset_calibrates_and_centre_moves_the_cone(tmp_path: Path, shared: Path) -> None:
    marks = project(GENERIC_FACE_5, 0.0, -25.0, 0.0)
    stage = head_pose_stage(tmp_path, shared, UseMesh=False, PitchOffset=5, PitchCenter=-20,
                            ConePitch=3)
    attrs = stage.process(frame_of(scene(), [[250, 100, 390, 470]], [1], 0.0, 0,
                                   face_attributes(marks))).detections.attributes
    assert attrs["head_pitch"][0] == pytest.approx(-20.0, abs=0.05)
    assert bool(attrs["looking"][0])


def test_carried_faces_keep_the_track_angles_and_no_face_is_unknown(
    tmp_path: Path, shared: Path
) -> None:
    stage = head_pose_stage(tmp_path, shared, UseMesh=False)
    marks = project(GENERIC_FACE_5, 40.0, 0.0, 0.0)
    box = [[250, 100, 390, 470]]
    stage.process(frame_of(scene(), box, [2], 0.0, 0, face_attributes(marks)))
    frontal = face_attributes(project(GENERIC_FACE_5, 0.0, 0.0, 0.0), fresh=False)
    carried = stage.process(frame_of(scene(), box, [2], 0.04, 1, frontal)).detections
    assert carried.attributes["head_yaw"][0] == pytest.approx(40.0, abs=0.05)
    gone = {"face_box": np.full((1, 4), np.nan, np.float32),
            "face_landmarks": np.full((1, 5, 2), np.nan, np.float32),
            "face_fresh": np.array([True])}
    out = stage.process(due(frame_of(scene(), box, [2], 0.08, 2, gone)))
    attrs = out.detections.attributes
    assert np.isnan(attrs["head_yaw"][0]) and np.isnan(attrs["head_pitch"][0])
    assert not attrs["looking"][0]
    assert attention(out) == [(1, 0)]


def test_contract_dtypes_and_samples(tmp_path: Path, shared: Path) -> None:
    stage = head_pose_stage(tmp_path, shared, UseMesh=False)
    marks = project(GENERIC_FACE_5, 0.0, 0.0, 0.0)
    attrs = face_attributes(marks)
    two = {k: np.concatenate([v, v]) for k, v in attrs.items()}
    out = stage.process(due(frame_of(scene(), [[250, 100, 390, 470]] * 2, [1, 2], 0.0, 0, two)))
    a = out.detections.attributes
    for key, dtype in (("head_yaw", np.float32), ("head_pitch", np.float32),
                       ("looking", np.bool_), ("looking_seconds", np.float32)):
        assert a[key].shape == (2,) and a[key].dtype == dtype, key
    assert attention(out) == [(2, 2)]
    empty = stage.process(due(frame_of(scene(), [], [], 0.04, 1)))
    assert empty.detections.attributes["head_yaw"].shape == (0,)
    assert attention(empty) == [(0, 0)]
    between = stage.process(frame_of(scene(), [], [], 0.08, 2))  # no sample-clock tick
    assert attention(between) == []


def test_head_pose_needs_faces_and_reports_attention(tmp_path: Path, shared: Path) -> None:
    with pytest.raises(ConfigError, match="head_pose needs an enabled faces step"):
        load(tmp_path, shared, section(4, "head_pose"))
    spec = next(s for s in source_specs() if s.folder == ATTENTION_LOG_FOLDER)
    assert spec.kinds == (ATTENTION,) and spec.columns == ("People", "Looking")
    assert ATTENTION.header(["Date"]) == [
        "Date", "Samples", "AvgPeople", "MaxPeople", "AvgLooking", "MaxLooking",
        "LookingSamples", "SumPeople", "SumLooking",
    ]


# ---------------------------------------------------------------------------------------
# Real faces (AFLW2000-3D; its yaw is the negative of head_yaw)
# ---------------------------------------------------------------------------------------


def aflw(name: str) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    with open(AFLW / "labels.csv", newline="") as fh:
        label = next(r for r in csv.DictReader(fh) if r["file"] == f"images/{name}")
    with open(AFLW / "boxes.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["file"] == f"images/{name}")
    box = np.array([float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max")])
    image = cv2.imread(str(AFLW / "images" / name))
    assert image is not None
    return image, (float(label["yaw"]), float(label["pitch"]), float(label["roll"])), box


@pytest.mark.skipif(not mesh_available(), reason="ai-edge-litert is not installed")
@pytest.mark.parametrize("name", ["image00061.jpg", "image01639.jpg", "image00424.jpg"])
def test_mesh_pose_of_real_faces(shared: Path, name: str) -> None:
    image, (yaw, pitch, _), box = aflw(name)
    faces = YuNet.shared(shared / YUNET_MODEL, 0.6).detect(image)
    boxes = np.stack([faces[:, 0], faces[:, 1], faces[:, 0] + faces[:, 2],
                      faces[:, 1] + faces[:, 3]], axis=1)
    best = int(np.argmax([box_iou(b, box) for b in boxes]))
    estimator = HeadPoseEstimator(FaceMesh.shared(shared / MESH_MODEL, 1))
    camera = camera_matrix(image.shape[1], image.shape[0], 60.0)
    pose, method = estimator.estimate(image, boxes[best], faces[best, 4:14].reshape(5, 2),
                                      camera)
    assert method == "mesh" and pose is not None
    assert abs(-pose[0] - yaw) < 12.0 and abs(pose[1] - pitch) < 15.0
