"""Helpers of the face-step tests: configurations, frames with people, faces pasted into a
frame at a known place."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from libs.config import load_config
from libs.config.models import LookoutConfig
from libs.frame import Detections, Frame
from tests.conftest import REPO, SHARED

FACES_DIR = SHARED / "data" / "faces"
TUD_VIDEO = "data/tud_campus/tud_campus.mp4"
T0 = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)

# A frontal unmasked face (UTKFace chip) and a real masked face (real_crops).
UNMASKED_FACE = FACES_DIR / "demographics/utkface/images/13_0_0_20170110232526929.jpg.chip.jpg"
MASKED_FACE = FACES_DIR / "facemask/real_crops/images/with_mask/0323.jpg"


# The shipped configuration's sections of these steps are left out; tests add their own.
FACE_STEPS = ("faces", "facemask", "head_pose", "demographics", "anonymizer")


def section(index: int, name: str, **keys: object) -> str:
    """A ``[SourcePostProcessor_<50 + index>]`` section (after every shipped one)."""
    lines = [f"[SourcePostProcessor_{50 + index}]", f"Name = {name}", "Enabled = True"]
    lines += [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def without_face_steps(text: str) -> str:
    """``text`` without its ``[SourcePostProcessor_N]`` sections of :data:`FACE_STEPS`."""
    parts = re.split(r"(?m)^(?=\[)", text)
    names = "|".join(FACE_STEPS)
    face_step = re.compile(rf"(?m)^\[SourcePostProcessor_\d+\]\s*$(?s:.*?)^Name = ({names})\s*$")
    return "".join(p for p in parts if not face_step.match(p))


def config_text(shared: Path, sections: str, tud: bool = False) -> str:
    """config-x86.ini with AssetsDirectory absolute, without its face steps, ``sections``
    appended; with ``tud`` the camera is TUD-Campus (25 fps, no calibration, no ROI, a
    counting line at x = 320)."""
    text = without_face_steps((REPO / "config-x86.ini").read_text())
    text = re.sub(r"(?m)^AssetsDirectory = .*$", f"AssetsDirectory = {shared}", text)
    if tud:
        text = re.sub(r"(?m)^VideoPath = .*$", f"VideoPath = {TUD_VIDEO}", text)
        text = re.sub(r"(?m)^FrameRate = .*$", "FrameRate = 25", text)
        text = re.sub(r"(?m)^(CalibrationImagePoints|CalibrationFloorPoints|ROI) = .*\n", "",
                      text)
        text = re.sub(r"(?m)^DistMethod = .*$", "DistMethod =", text)
        text = re.sub(r"(?m)^CountingLines = .*$", "CountingLines = x320: 320,0 320,480", text)
    return text.rstrip("\n") + "\n\n" + sections


def write_config(folder: Path, shared: Path, sections: str, tud: bool = False) -> Path:
    path = folder / "config.ini"
    path.write_text(config_text(shared, sections, tud))
    return path


def load(folder: Path, shared: Path, sections: str, tud: bool = False) -> LookoutConfig:
    return load_config(write_config(folder, shared, sections, tud))


def frame_of(
    image: np.ndarray,
    boxes: npt.ArrayLike,
    track_ids: list[int] | None = None,
    seconds: float = 0.0,
    index: int = 0,
    attributes: dict[str, np.ndarray] | None = None,
) -> Frame:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    ids = np.arange(len(b)) if track_ids is None else np.asarray(track_ids)
    dets = Detections(b, np.ones(len(b), np.float32), track_ids=ids,
                      attributes=dict(attributes or {}))
    return Frame("cam", index, T0 + timedelta(seconds=seconds), image, dets)


def read_face(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


def paste(frame: np.ndarray, face: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """``face`` resized into ``box`` (x1, y1, x2, y2) of ``frame``, in place."""
    x1, y1, x2, y2 = box
    frame[y1:y2, x1:x2] = cv2.resize(face, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)


def scene(size: tuple[int, int] = (640, 480), seed: int = 0) -> np.ndarray:
    """A smooth grey-green background (no face-like texture)."""
    width, height = size
    rng = np.random.default_rng(seed)
    small = rng.integers(60, 160, (height // 40 + 1, width // 40 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def person_with_face(
    face: np.ndarray, size: tuple[int, int] = (640, 480), face_side: int = 64,
    at: tuple[int, int] = (300, 100),
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """A frame with ``face`` pasted as the head of a standing person box.

    Returns the image, the person box (x1, y1, x2, y2) and the pasted face box.  The box is
    ``face_side / 0.2`` tall (the head a fifth of it), ``1.7 * face_side`` wide, its top just
    above the face.
    """
    image = scene(size)
    fx, fy = at
    paste(image, face, (fx, fy, fx + face_side, fy + face_side))
    width = 1.7 * face_side
    height = face_side / 0.2
    cx = fx + face_side / 2
    top = fy + face_side / 2 - 0.45 * face_side
    person = np.array([cx - width / 2, top, cx + width / 2, top + height], np.float32)
    return image, person, (fx, fy, fx + face_side, fy + face_side)
