"""``demographics``: face alignment geometry, per-track aggregation, opt-in, and no images
written anywhere (with the real models on real UTKFace faces)."""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from libs.config import load_config
from libs.frame import EMOTIONS, Detections, Frame
from libs.post_processors.demographics import (
    AGE_SIZE,
    GENDER_SIZE,
    TEMPLATE,
    Demographics,
    DemographicsConfig,
    FaceModels,
    align_face,
    alignment_matrix,
    chips_tensor,
    emotion_tensor,
    face_crop,
)
from tests.audience_helpers import config_in, write_config
from tests.conftest import SHARED

UTK = SHARED / "data" / "faces" / "demographics" / "utkface"
START = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def rotated_landmarks(scale: float, angle_deg: float, offset: tuple[float, float]) -> np.ndarray:
    """The template (unit chip) scaled, rotated about its origin and moved: a known face."""
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (TEMPLATE.astype(np.float64) * scale) @ rot.T + np.array(offset)


# ---------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [AGE_SIZE, GENDER_SIZE])
def test_alignment_inverts_a_known_similarity(size: int) -> None:
    marks = rotated_landmarks(scale=150.0, angle_deg=20.0, offset=(300.0, 120.0))
    m = alignment_matrix(marks, size)
    mapped = marks @ m[:, :2].T + m[:, 2]
    assert mapped == pytest.approx(TEMPLATE * size, abs=1e-3)
    # a similarity of scale size/150 rotated back by 20 degrees
    assert math.hypot(m[0, 0], m[1, 0]) == pytest.approx(size / 150.0, rel=1e-5)
    assert math.degrees(math.atan2(m[1, 0], m[0, 0])) == pytest.approx(-20.0, abs=1e-3)


def test_aligned_chip_puts_the_landmarks_on_the_template() -> None:
    image = np.zeros((400, 600, 3), np.uint8)
    marks = rotated_landmarks(scale=200.0, angle_deg=-15.0, offset=(250.0, 100.0))
    for k, (x, y) in enumerate(marks):
        cv2.circle(image, (round(x), round(y)), 6, (0, 50 * (k + 1), 255), -1)
    chip = align_face(image, marks, AGE_SIZE)
    assert chip.shape == (AGE_SIZE, AGE_SIZE, 3) and chip.dtype == np.uint8
    for k, (tx, ty) in enumerate(TEMPLATE * AGE_SIZE):
        y, x = round(float(ty)), round(float(tx))
        assert chip[y, x, 2] > 200 and abs(int(chip[y, x, 1]) - 50 * (k + 1)) < 30


def test_tensors() -> None:
    chip = np.full((GENDER_SIZE, GENDER_SIZE, 3), (104, 117, 123), np.uint8)  # BGR
    t = chips_tensor([chip, chip])
    assert t.shape == (2, 3, GENDER_SIZE, GENDER_SIZE) and t.dtype == np.float32
    # RGB order: (123 - 122.782) / 256, (117 - 117.001) / 256, (104 - 104.298) / 256
    assert t[0, :, 0, 0] == pytest.approx([0.218 / 256, -0.001 / 256, -0.298 / 256], abs=1e-6)
    grey = np.array([[0, 255], [255, 0]], np.uint8)
    e = emotion_tensor([grey, np.full((48, 48), 255, np.uint8)])
    assert e.shape == (2, 64, 64, 1) and e.min() >= -1.0 and e.max() <= 1.0
    assert e[1] == pytest.approx(np.ones((64, 64, 1)))
    assert face_crop(np.zeros((10, 10, 3), np.uint8), np.array([9.0, 9.0, 20.0, 20.0])) is None
    crop = face_crop(np.zeros((10, 10, 3), np.uint8), np.array([-3.0, 2.2, 5.5, 9.0]))
    assert crop is not None and crop.shape == (7, 6, 3)


# ---------------------------------------------------------------------------------------
# Per-track aggregation (stub models with known answers)
# ---------------------------------------------------------------------------------------


class StubModels:
    """Answers in the order faces are given: ages, P(male) and emotions from lists."""

    def __init__(self, ages: list[float], male: list[float], emotions: list[int]) -> None:
        self.age_list, self.male_list, self.emotion_list = ages, male, emotions
        self.emotion = object()
        self.calls: list[int] = []

    def ages(self, chips: list[np.ndarray]) -> np.ndarray:
        assert all(c.shape == (AGE_SIZE, AGE_SIZE, 3) for c in chips)
        self.calls.append(len(chips))
        return np.array([self.age_list.pop(0) for _ in chips], np.float32)

    def male_probabilities(self, chips: list[np.ndarray]) -> np.ndarray:
        assert all(c.shape == (GENDER_SIZE, GENDER_SIZE, 3) for c in chips)
        return np.array([self.male_list.pop(0) for _ in chips], np.float32)

    def emotions(self, faces: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(faces), len(EMOTIONS)), np.float32)
        for k in range(len(faces)):
            out[k, self.emotion_list.pop(0)] = 1.0
        return out


def face_frame(index: int, ids: list[int], visible: list[bool], width: float = 80.0) -> Frame:
    n = len(ids)
    boxes = np.array([[100.0 * k, 50.0, 100.0 * k + 90.0, 400.0] for k in range(n)], np.float32)
    face = np.array([[100.0 * k, 50.0, 100.0 * k + width, 50.0 + width] for k in range(n)],
                    np.float32)
    marks = np.stack([rotated_landmarks(width, 0.0, (100.0 * k, 50.0)) for k in range(n)])
    marks = marks.astype(np.float32)
    for k, shown in enumerate(visible):
        if not shown:
            face[k] = np.nan
            marks[k] = np.nan
    det = Detections(boxes=boxes, scores=np.full(n, 0.9), track_ids=np.array(ids),
                     attributes={"face_box": face, "face_landmarks": marks})
    image = np.full((480, 640, 3), 128, np.uint8)
    return Frame("pets-view1", index, START + index * timedelta(milliseconds=100), image, det)


def test_aggregation_per_track(tmp_path, shared) -> None:
    config = config_in(tmp_path, shared)
    section = DemographicsConfig.model_validate(
        {"Name": "demographics", "Enabled": True, "EveryFrames": 2, "MaxSamples": 3})
    models = StubModels(ages=[30, 50, 34, 61, 45], male=[0.75, 0.25, 0.5, 0.25, 0.25],
                        emotions=[3, 6, 3, 0, 0])
    stage = Demographics(section, config.sources[0], config, models=models)  # type: ignore[arg-type]
    got = []
    # track 1's face on frames 0-7; track 2's face hidden until frame 4
    for index in range(8):
        frame = stage.process(face_frame(index, [1, 2], [True, index >= 4]))
        got.append(frame.detections.attributes)
    # track 1 measured on frames 0, 2, 4 (then MaxSamples = 3 stops it); track 2 on frame 4
    # (its first visible face) and 6; frame 4 measures both faces in one batch
    assert models.calls == [1, 1, 2, 1]
    first = got[0]
    assert first["age"].dtype == np.float32 and first["gender"].dtype == np.int8
    assert first["age"][0] == 30.0 and first["gender"][0] == 1 and first["emotion"][0] == 3
    assert math.isnan(first["age"][1]) and first["gender"][1] == -1 and first["emotion"][1] == -1
    last = got[-1]
    # track 1: ages 30, 50, 34 -> median 34; P(male) 0.75, 0.25, 0.5 -> mean 0.5 -> male;
    # emotions happy, neutral, happy -> happy.
    assert (last["age"][0], last["gender"][0], EMOTIONS[last["emotion"][0]]) == (34, 1, "happy")
    # track 2: ages 61, 45 -> 53; P(male) 0.25, 0.25 -> female; angry twice
    assert (last["age"][1], last["gender"][1], EMOTIONS[last["emotion"][1]]) == (53, 0, "angry")
    assert (stage.tracks[1].samples, stage.tracks[2].samples) == (3, 2)
    # a track unseen for ForgetSeconds (10 s) is forgotten
    stage.process(face_frame(200, [3], [False]))
    assert set(stage.tracks) == {3}


def test_opt_in_and_never_without_faces(tmp_path, shared) -> None:
    assert DemographicsConfig.model_validate({"Name": "demographics"}).enabled is False
    extra = "\n[SourcePostProcessor_9]\nName = demographics\n"
    config = config_in(tmp_path, shared, extra)
    section = next(p for p in config.source_post_processors if p.name == "demographics")
    assert section.enabled is False
    from processor.pipeline import CameraPipeline

    class NoDetector:
        def close(self) -> None: ...

    pipeline = CameraPipeline(config, config.sources[0], detector=NoDetector(),  # type: ignore[arg-type]
                              with_loggers=False)
    assert "demographics" not in [name for name, _ in pipeline.after]
    pipeline.close()
    # enabled, but no faces stage: everybody stays unknown, nothing is run
    models = StubModels([], [], [])
    on = DemographicsConfig.model_validate({"Name": "demographics", "Enabled": True})
    stage = Demographics(on, config.sources[0], config, models=models)  # type: ignore[arg-type]
    frame = face_frame(0, [1, 2], [True, True])
    frame.detections.attributes.clear()
    out = stage.process(frame).detections.attributes
    assert np.isnan(out["age"]).all() and (out["gender"] == -1).all() and models.calls == []


def test_missing_model_files_are_config_errors(tmp_path, shared) -> None:
    from libs.config import ConfigError

    extra = ("\n[SourcePostProcessor_9]\nName = demographics\nEnabled = True\n"
             "AgeModel = models/nope.onnx\n")
    with pytest.raises(ConfigError, match=r"nope\.onnx"):
        load_config(write_config(tmp_path, shared, extra))


# ---------------------------------------------------------------------------------------
# The real models, and no images anywhere
# ---------------------------------------------------------------------------------------


def utk_faces(count: int) -> list[tuple[np.ndarray, dict[str, str]]]:
    with open(UTK / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if 25 <= int(r["age"]) <= 50][:count]
    return [(np.asarray(cv2.imread(str(UTK / r["file"]))), r) for r in rows]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_real_models_on_real_faces_write_no_images(tmp_path, shared, monkeypatch) -> None:
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    config = config_in(tmp_path, shared)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    before = files_under(tmp_path)

    def no_images(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was encoded or written")

    for name in ("imwrite", "imencode", "imwritemulti"):
        monkeypatch.setattr(cv2, name, no_images, raising=False)

    faces = utk_faces(2)
    detector = cv2.FaceDetectorYN.create(
        str(shared / "models" / "face_yunet_2023mar.onnx"), "", (200, 200), 0.6, 0.3, 5000)
    canvas = np.full((480, 640, 3), 90, np.uint8)
    boxes, face_boxes, marks = [], [], []
    for k, (img, _) in enumerate(faces):
        x0 = 60 + 300 * k
        canvas[100:300, x0:x0 + 200] = img
        detector.setInputSize((200, 200))
        _, found = detector.detect(img)
        f = found[np.argmax(found[:, -1])]
        face_boxes.append([x0 + f[0], 100 + f[1], x0 + f[0] + f[2], 100 + f[1] + f[3]])
        marks.append(f[4:14].reshape(5, 2) + np.array([x0, 100], np.float32))
        boxes.append([x0, 100, x0 + 200, 470])
    section = DemographicsConfig.model_validate(
        {"Name": "demographics", "Enabled": True, "EveryFrames": 1, "MaxSamples": 4})
    stage = Demographics(section, config.sources[0], config)
    for index in range(6):
        det = Detections(
            boxes=np.array(boxes, np.float32), scores=np.full(2, 0.9),
            track_ids=np.array([1, 2]),
            attributes={"face_box": np.array(face_boxes, np.float32),
                        "face_landmarks": np.array(marks, np.float32)})
        frame = stage.process(Frame("pets-view1", index, START + timedelta(seconds=index),
                                    canvas.copy(), det))
    stage.close()
    attrs = frame.detections.attributes
    for k, (_, label) in enumerate(faces):
        assert stage.tracks[k + 1].samples == 4
        assert attrs["gender"][k] == (1 if label["gender"] == "male" else 0)
        assert abs(float(attrs["age"][k]) - int(label["age"])) < 20
        assert 0 <= attrs["emotion"][k] < len(EMOTIONS)
    after = files_under(tmp_path)
    assert after == before
    assert not any(p.suffix.lower() in IMAGE_SUFFIXES for p in files_under(config.data_dir))


def test_face_models_batch_like_single(shared) -> None:
    m = shared / "models"
    models = FaceModels(m / "age_cydral_v1.onnx", m / "gender_cydral_v1.onnx",
                        m / "emotion_mini_xception_fer2013_64.onnx")
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 255, (AGE_SIZE, AGE_SIZE, 3), dtype=np.uint8) for _ in range(3)]
    batch = models.ages(chips)
    single = np.array([models.ages([c])[0] for c in chips])
    assert batch == pytest.approx(single, abs=1e-3)
    assert ((batch >= 0.25) & (batch <= 80)).all()
    probs = models.emotions([c[:, :, 0] for c in chips])
    assert probs.shape == (3, 7) and probs.sum(axis=1) == pytest.approx(np.ones(3), abs=1e-4)
    assert models.ages([]).shape == (0,) and models.emotions([]).shape == (0, 7)
