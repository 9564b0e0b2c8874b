"""``anonymizer``: blurred pixels exactly where faces and heads are, nothing else touched."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from libs.config import ConfigError
from libs.frame import Detections
from libs.post_processors.anonymizer import Anonymizer, blur_region, scaled_boxes
from libs.post_processors.faces import YUNET_MODEL, Faces, YuNet, head_regions
from tests.faces_helpers import (
    UNMASKED_FACE,
    frame_of,
    load,
    person_with_face,
    read_face,
    section,
)


def noise(seed: int = 1, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def energy(image: np.ndarray) -> float:
    """High-frequency energy: mean squared Laplacian of the grey image."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)
    return float(np.mean(cv2.Laplacian(grey, cv2.CV_64F) ** 2))


def pixel_box(region: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The whole-pixel rectangle a region covers, clipped to the image."""
    x1 = max(0, int(np.floor(region[0])))
    y1 = max(0, int(np.floor(region[1])))
    x2 = min(shape[1], int(np.ceil(region[2])))
    y2 = min(shape[0], int(np.ceil(region[3])))
    return x1, y1, x2, y2


def changed_only_inside(before: np.ndarray, after: np.ndarray,
                        boxes: list[tuple[int, int, int, int]]) -> None:
    """Pixels outside ``boxes`` byte-identical; inside, detail gone."""
    inside = np.zeros(before.shape[:2], bool)
    for x1, y1, x2, y2 in boxes:
        inside[y1:y2, x1:x2] = True
    assert np.array_equal(before[~inside], after[~inside])
    for x1, y1, x2, y2 in boxes:
        assert energy(after[y1:y2, x1:x2]) < 0.02 * energy(before[y1:y2, x1:x2])
        # nearly every pixel of a noise image changes
        assert np.mean(np.any(after[y1:y2, x1:x2] != before[y1:y2, x1:x2], axis=2)) > 0.9


def anonymizer(tmp_path: Path, shared: Path, **keys: object) -> Anonymizer:
    config = load(tmp_path, shared, section(4, "anonymizer", **keys))
    settings = next(p for p in config.source_post_processors if p.name == "anonymizer")
    return Anonymizer(settings, config.sources[0], config)


# ---------------------------------------------------------------------------------------
# The blur
# ---------------------------------------------------------------------------------------


def test_blur_removes_detail_inside_and_touches_nothing_outside() -> None:
    image = noise()
    before = image.copy()
    assert blur_region(image, np.array([100.2, 80.0, 219.5, 200.0]), 6)
    changed_only_inside(before, image, [(100, 80, 220, 200)])


def test_blur_is_clipped_to_the_frame() -> None:
    image = noise()
    before = image.copy()
    assert blur_region(image, np.array([-50.0, 400.0, 60.0, 560.0]))
    changed_only_inside(before, image, [(0, 400, 60, 480)])
    assert not blur_region(image, np.array([700.0, 10.0, 800.0, 50.0]))  # wholly outside
    assert not blur_region(image, np.array([10.0, 10.0, 10.0, 50.0]))  # empty


def test_scaled_boxes() -> None:
    np.testing.assert_allclose(scaled_boxes(np.array([[10, 20, 30, 60]]), 1.5),
                               [[5, 10, 35, 70]])


# ---------------------------------------------------------------------------------------
# What the step blurs
# ---------------------------------------------------------------------------------------


PERSON = np.array([250, 100, 350, 450], np.float32)
FACE = np.array([280, 115, 320, 160], np.float32)


def faces_attrs(box: np.ndarray, fresh: bool) -> dict[str, np.ndarray]:
    return {"face_box": box.reshape(1, 4).astype(np.float32), "face_fresh": np.array([fresh])}


def test_a_fresh_face_alone_is_blurred_with_blur_heads_no_face(
    tmp_path: Path, shared: Path
) -> None:
    stage = anonymizer(tmp_path, shared, FaceScale=1.5, BlurHeads="no_face")
    frame = frame_of(noise(), [PERSON], [1], attributes=faces_attrs(FACE, True))
    before = frame.image.copy()
    out = stage.process(frame)
    # 40 x 45 enlarged 1.5 times about (300, 137.5): 60 x 67.5
    changed_only_inside(before, out.image, [(270, 103, 330, 172)])
    assert out.metrics["anonymized_regions"] == 1


def test_by_default_the_head_is_blurred_with_the_face(tmp_path: Path, shared: Path) -> None:
    stage = anonymizer(tmp_path, shared, FaceScale=1.5)
    frame = frame_of(noise(), [PERSON], [1], attributes=faces_attrs(FACE, True))
    before = frame.image.copy()
    out = stage.process(frame)
    head = pixel_box(head_regions(PERSON[None])[0], before.shape)  # (247, 79, 353, 184)
    face = (270, 103, 330, 172)  # inside the head region
    assert head[0] <= face[0] and head[1] <= face[1] and face[2] <= head[2]
    changed_only_inside(before, out.image, [head])
    assert out.metrics["anonymized_regions"] == 2


def test_without_a_face_the_head_region_is_blurred(tmp_path: Path, shared: Path) -> None:
    stage = anonymizer(tmp_path, shared, BlurHeads="no_face")
    nan = np.full(4, np.nan, np.float32)
    frame = frame_of(noise(), [PERSON], [1], attributes=faces_attrs(nan, True))
    before = frame.image.copy()
    out = stage.process(frame)
    # head: min(max(0.2 * 350, 0.5 * 100), 100, 350) = 70, centre (300, 131.5), x 1.5 -> 105
    head = head_regions(PERSON[None], 0.2, 1.5)[0]
    np.testing.assert_allclose(head, [247.5, 79.0, 352.5, 184.0])
    changed_only_inside(before, out.image, [pixel_box(head, before.shape)])


def test_a_carried_face_is_blurred_with_its_head(tmp_path: Path, shared: Path) -> None:
    stage = anonymizer(tmp_path, shared, FaceScale=1.0, BlurHeads="no_face")
    frame = frame_of(noise(), [PERSON], [1], attributes=faces_attrs(FACE, False))
    before = frame.image.copy()
    out = stage.process(frame)
    head = pixel_box(head_regions(PERSON[None])[0], before.shape)
    inside = np.zeros(before.shape[:2], bool)
    inside[head[1]:head[3], head[0]:head[2]] = True
    assert np.array_equal(before[~inside], out.image[~inside])  # the face lies in the head
    assert energy(out.image[head[1]:head[3], head[0]:head[2]]) < 0.02 * energy(
        before[head[1]:head[3], head[0]:head[2]])
    assert out.metrics["anonymized_regions"] == 2


def test_without_the_faces_step_heads_are_blurred(tmp_path: Path, shared: Path) -> None:
    stage = anonymizer(tmp_path, shared)
    boxes = np.array([PERSON, PERSON + np.array([300, 0, 300, 0], np.float32)])
    frame = frame_of(noise(), boxes, [1, 2])
    before = frame.image.copy()
    out = stage.process(frame)
    heads = head_regions(boxes)
    changed_only_inside(before, out.image, [pixel_box(h, before.shape) for h in heads])


def test_unconfirmed_people_of_raw_detections_are_blurred(tmp_path: Path, shared: Path) -> None:
    stage = anonymizer(tmp_path, shared)
    frame = frame_of(noise(), [], [])
    raw = np.array([[20, 30, 90, 230]], np.float32)
    frame.metrics["raw_detections"] = Detections(raw, np.ones(1, np.float32))
    before = frame.image.copy()
    out = stage.process(frame)
    changed_only_inside(before, out.image, [pixel_box(head_regions(raw)[0], before.shape)])


def test_a_read_only_image_is_copied(tmp_path: Path, shared: Path) -> None:
    stage = anonymizer(tmp_path, shared)
    image = noise()
    image.flags.writeable = False
    out = stage.process(frame_of(image, [PERSON], [1]))
    assert out.image is not image and out.image.flags.writeable
    assert not np.array_equal(out.image, image)


def test_a_real_face_is_no_longer_found(tmp_path: Path, shared: Path) -> None:
    config = load(tmp_path, shared, section(4, "faces", EveryFrames=1) + "\n"
                  + section(5, "anonymizer"))
    steps = {p.name: p for p in config.source_post_processors}
    faces = Faces(steps["faces"], config.sources[0], config)
    anon = Anonymizer(steps["anonymizer"], config.sources[0], config)
    image, person, pasted = person_with_face(read_face(UNMASKED_FACE), face_side=80)
    yunet = YuNet.shared(shared / YUNET_MODEL, 0.6)
    yunet_before = yunet.detect(image)
    assert len(yunet_before) == 1
    frame = anon.process(faces.process(frame_of(image.copy(), [person], [1])))
    assert np.isfinite(frame.detections.attributes["face_box"]).all()
    assert len(yunet.detect(frame.image)) == 0
    x1, y1, x2, y2 = pasted
    assert energy(frame.image[y1:y2, x1:x2]) < 0.1 * energy(image[y1:y2, x1:x2])


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["faces", "demographics"])
def test_steps_that_read_the_image_must_come_before_it(
    tmp_path: Path, shared: Path, name: str
) -> None:
    with pytest.raises(ConfigError, match=f"anonymizer must come after every step that reads "
                       f"the image, but .*{name} runs after it"):
        load(tmp_path, shared, section(4, "faces") + "\n" + section(5, "anonymizer") + "\n"
             + section(6, name).replace("Name = faces", "Name = faces\nFaceDetector = yunet"))


def test_steps_that_do_not_read_the_image_may_follow_it(tmp_path: Path, shared: Path) -> None:
    # disabled, before the tracker anyway, or using the detections only: fine
    load(tmp_path, shared, section(4, "faces") + "\n" + section(5, "anonymizer") + "\n"
         + section(6, "objects_filtering") + "\n" + section(7, "occupancy") + "\n"
         + section(8, "facemask").replace("Enabled = True", "Enabled = False"))


# ---------------------------------------------------------------------------------------
# The blur waits for a reader
# ---------------------------------------------------------------------------------------


def test_the_blur_waits_until_the_pixels_are_read(tmp_path: Path, shared: Path) -> None:
    stage = anonymizer(tmp_path, shared)
    frame = frame_of(noise(), [PERSON], [1])
    before = frame.image.copy()
    out = stage.process(frame)
    assert out.metrics["anonymized_regions"] == 1
    assert out.edits_waiting == 1
    assert (out.height, out.width, out.has_image) == (480, 640, True)  # shape: no blur yet
    assert out.edits_waiting == 1
    head = head_regions(PERSON.reshape(1, 4), 0.2, 1.5)[0]
    blurred = out.image  # the first read applies the blur, once
    assert out.edits_waiting == 0
    changed_only_inside(before, blurred, [pixel_box(head, before.shape)])
    assert out.image is blurred


def test_every_copy_that_leaves_the_pipeline_is_blurred(tmp_path: Path, shared: Path) -> None:
    """The preview's copy (video_logger) and a replaced image read after the step."""
    from libs.loggers.video_logger import VideoLogger

    stage = anonymizer(tmp_path, shared)
    config = load(tmp_path, shared, section(4, "anonymizer"))
    preview = VideoLogger(VideoLogger.Config.model_validate({"Name": "video_logger"}),
                          config.sources[0], config)
    head = pixel_box(head_regions(PERSON.reshape(1, 4), 0.2, 1.5)[0], (480, 640))
    try:
        frame = frame_of(noise(), [PERSON], [1])
        before = frame.image.copy()
        job = preview.job(stage.process(frame))
        changed_only_inside(before, job.image, [head])
        # An image set after the step (a read-only one here) still gets the waiting blur.
        frame = stage.process(frame_of(noise(), [PERSON], [1]))
        replacement = noise()
        replacement.flags.writeable = False
        frame.image = replacement
        changed_only_inside(replacement, frame.image, [head])
        assert not np.shares_memory(frame.image, replacement)
    finally:
        preview.close()
    # Nobody in view: nothing waits.
    assert stage.process(frame_of(noise(), np.zeros((0, 4)), [])).edits_waiting == 0
