"""``demographics`` (opt-in): age, gender and emotion per track (after the tracker).

Off unless its section says ``Enabled = True``; the shipped configurations do not enable it.
It needs the ``faces`` stage before it (``face_box`` and ``face_landmarks`` attributes); without
faces every person stays unknown.

**Per track, from several faces.**  Every ``EveryFrames`` sightings of a track whose face is
visible (finite landmarks), found on this frame (``face_fresh``, where the faces stage gives it:
a face carried forward from an earlier frame is not measured again) and at least
``MinFaceSize`` pixels wide, until the track has ``MaxSamples`` faces, the face is measured:

* **age and gender**: the face chip is aligned in memory with
  ``cv2.estimateAffinePartial2D`` from the 5 landmarks (eyes, nose tip, mouth corners, in
  image left-to-right order) to the template of the Cydral dlib models (fractions of the chip
  side: eyes (0.35, 0.286) and (0.65, 0.286), nose (0.5, 0.536), mouth corners (0.407, 0.70)
  and (0.593, 0.70)), warped to 64 px for ``age_cydral_v1`` and 32 px for
  ``gender_cydral_v1``; RGB, ``(pixel - [122.782, 117.001, 104.298]) / 256``, NCHW.  Age is the
  expectation of the 81-way softmax over ``[0.25, 1, 2, ..., 80]`` years; gender is the
  softmax ``[female, male]``.
* **emotion**: the face box crop in grey, resized to 64x64, ``(x / 255 - 0.5) * 2``, NHWC, to
  ``emotion_mini_xception_fer2013_64`` (7 classes in the order of
  :data:`libs.frame.EMOTIONS`).  Measured on FER2013 only "happy or not" is dependable
  (docs/benchmarks.md); read the other classes as a weak signal.

All faces due in a frame go through each model as one batch.  A track's answer is the median
of its ages, the mean of its male probabilities (male when >= 0.5) and the arg-max of its mean
emotion probabilities.  Attributes, every row filled: ``age`` float32 years (NaN unknown),
``gender`` int8 (1 male, 0 female, -1 unknown), ``emotion`` int8 (index into ``EMOTIONS``, -1
unknown).

**Privacy.**  Face chips exist only in memory for the duration of one frame; nothing here
writes images (or anything else) to disk.  Only the per-track numbers are kept, and a track
unseen for ``ForgetSeconds`` is forgotten.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import cv2
import numpy as np
from pydantic import Field

from libs.clock import aware
from libs.config.models import PluginConfig, form
from libs.detectors.budget import thread_budget
from libs.detectors.secondary import OnnxModel, open_onnx_model
from libs.frame import EMOTIONS, Frame
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.post_processors._track_time import elapsed_us, micros

if TYPE_CHECKING:
    from libs.config.models import DetectorConfig, LookoutConfig, SourceConfig

log = logging.getLogger(__name__)

# Landmark template of the Cydral/dlib chips (fractions of the chip side), in YuNet's order.
TEMPLATE = np.array(
    [[0.35, 0.286], [0.65, 0.286], [0.5, 0.536], [0.407, 0.70], [0.593, 0.70]], np.float32
)
AGE_SIZE = 64
GENDER_SIZE = 32
EMOTION_SIZE = 64
RGB_MEAN = np.array([122.782, 117.001, 104.298], np.float32)
AGE_VALUES = np.concatenate([[0.25], np.arange(1, 81)]).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Pre-processing and the models (shared with benchmarks/demographics_benchmark.py)
# ---------------------------------------------------------------------------------------


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``2x3`` mapping ``src`` onto ``dst`` (Umeyama, no reflection)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    # x' = a x - b y + tx ; y' = b x + a y + ty
    denom = float((s * s).sum())
    if denom <= 1e-12:
        raise ValueError("landmarks are all at one point")
    a = float((s * d).sum()) / denom
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / denom
    rot = np.array([[a, -b], [b, a]])
    t = mu_d - rot @ mu_s
    return np.concatenate([rot, t[:, None]], axis=1)


def alignment_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """``2x3`` similarity taking the 5 landmarks (image pixels) to the template of a chip of
    ``size`` pixels (``cv2.estimateAffinePartial2D``, least squares when it gives up)."""
    src = np.asarray(landmarks, np.float32).reshape(5, 2)
    dst = TEMPLATE * np.float32(size)
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if matrix is None or not np.isfinite(matrix).all():
        matrix = _similarity(src.astype(np.float64), dst.astype(np.float64))
    return np.asarray(matrix, np.float64)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """The aligned ``size`` x ``size`` chip (same channels as ``image``), in memory."""
    matrix = alignment_matrix(landmarks, size)
    chip: np.ndarray = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return chip


def chips_tensor(chips_bgr: list[np.ndarray]) -> np.ndarray:
    """BGR chips -> the Cydral models' input: RGB, ``(x - mean) / 256``, NCHW float32."""
    batch = np.stack(chips_bgr).astype(np.float32)[..., ::-1]
    return np.ascontiguousarray(((batch - RGB_MEAN) / 256.0).transpose(0, 3, 1, 2))


def face_crop(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The face box ``x1, y1, x2, y2`` cut out of ``image`` (clipped); None when empty."""
    h, w = image.shape[:2]
    x1, y1 = max(0, math.floor(float(box[0]))), max(0, math.floor(float(box[1])))
    x2, y2 = min(w, math.ceil(float(box[2]))), min(h, math.ceil(float(box[3])))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return image[y1:y2, x1:x2]


def emotion_tensor(faces: list[np.ndarray]) -> np.ndarray:
    """Face crops (BGR or grey, any size) -> ``(N, 64, 64, 1)`` in -1..1."""
    out = np.empty((len(faces), EMOTION_SIZE, EMOTION_SIZE, 1), np.float32)
    for k, face in enumerate(faces):
        grey = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY) if face.ndim == 3 else face
        small = cv2.resize(grey, (EMOTION_SIZE, EMOTION_SIZE), interpolation=cv2.INTER_AREA)
        out[k, :, :, 0] = (small.astype(np.float32) / 255.0 - 0.5) * 2.0
    return out


class FaceModels:
    """The three ONNX models on the detector's device (``detector``: ``[Detector]``; None:
    ONNX Runtime on the CPU), see :func:`libs.detectors.secondary.open_onnx_model`."""

    def __init__(
        self,
        age: Path,
        gender: Path,
        emotion: Path | None,
        threads: int = 1,
        detector: DetectorConfig | None = None,
    ) -> None:
        self.age = open_onnx_model(age, threads, detector)
        self.gender = open_onnx_model(gender, threads, detector)
        self.emotion = open_onnx_model(emotion, threads, detector) if emotion is not None else None

    @staticmethod
    def _run(model: OnnxModel, batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.run({model.input_names[0]: batch})[0])

    def ages(self, chips64: list[np.ndarray]) -> np.ndarray:
        """Years per aligned 64 px chip."""
        if not chips64:
            return np.zeros(0, np.float32)
        probs = self._run(self.age, chips_tensor(chips64))
        return np.asarray(probs @ AGE_VALUES, np.float32)

    def male_probabilities(self, chips32: list[np.ndarray]) -> np.ndarray:
        """P(male) per aligned 32 px chip."""
        if not chips32:
            return np.zeros(0, np.float32)
        return np.asarray(self._run(self.gender, chips_tensor(chips32))[:, 1], np.float32)

    def emotions(self, faces: list[np.ndarray]) -> np.ndarray:
        """``(N, 7)`` emotion probabilities per face crop (order of ``EMOTIONS``)."""
        if self.emotion is None or not faces:
            return np.zeros((len(faces), len(EMOTIONS)), np.float32)
        return np.asarray(self._run(self.emotion, emotion_tensor(faces)), np.float32)


# ---------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------


class DemographicsConfig(PluginConfig):
    """``[SourcePostProcessor_N] Name = demographics`` (off unless Enabled = True)."""

    enabled: bool = Field(
        False, alias="Enabled", description="Run this part (demographics are opt-in)."
    )
    age_model: str = Field(
        "models/age_cydral_v1.onnx",
        alias="AgeModel",
        description="Age model (relative paths are inside AssetsDirectory).",
    )
    gender_model: str = Field(
        "models/gender_cydral_v1.onnx",
        alias="GenderModel",
        description="Gender model (relative paths are inside AssetsDirectory).",
    )
    emotion_model: str = Field(
        "models/emotion_mini_xception_fer2013_64.onnx",
        alias="EmotionModel",
        description="Emotion model (relative paths are inside AssetsDirectory); empty turns "
        "emotion off.",
    )
    every_frames: int = Field(
        5,
        alias="EveryFrames",
        ge=1,
        description="Sightings of a track between two measured faces.",
        json_schema_extra=form("an integer >= 1"),
    )
    max_samples: int = Field(
        10,
        alias="MaxSamples",
        ge=1,
        description="Faces measured per track at most; the answer is fixed after that.",
        json_schema_extra=form("an integer >= 1"),
    )
    min_face_size: float = Field(
        32.0,
        alias="MinFaceSize",
        gt=0.0,
        description="Least face box width in pixels for a face to be measured.",
        json_schema_extra=form("a number of pixels > 0"),
    )
    forget_seconds: float = Field(
        10.0,
        alias="ForgetSeconds",
        gt=0.0,
        description="A track unseen this long is forgotten.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    threads: int = Field(
        1,
        alias="Threads",
        ge=0,
        description="ONNX Runtime threads per model; 0 = the thread budget's threads per "
        "detector session.",
        json_schema_extra=form("an integer >= 0"),
    )

    def model_paths(self, config: LookoutConfig) -> tuple[Path, Path, Path | None]:
        emotion = config.asset_path(self.emotion_model) if self.emotion_model else None
        return config.asset_path(self.age_model), config.asset_path(self.gender_model), emotion

    def cross_check(self, config: LookoutConfig) -> list[tuple[str | None, str | None, str]]:
        if not self.enabled:
            return []
        age, gender, emotion = self.model_paths(config)
        problems: list[tuple[str | None, str | None, str]] = []
        for key, path in (("AgeModel", age), ("GenderModel", gender), ("EmotionModel", emotion)):
            if path is not None and not path.is_file():
                problems.append((None, key, f"no such model file: {path}"))
        return problems


@dataclass
class TrackFaces:
    """The measurements of one track's faces."""

    last_seen: datetime
    since_sample: int = 0
    ages: list[float] = field(default_factory=list)
    male: list[float] = field(default_factory=list)
    emotion_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(EMOTIONS)))
    emotion_count: int = 0
    samples: int = 0

    def age(self) -> float:
        return float(np.median(self.ages)) if self.ages else math.nan

    def gender(self) -> int:
        return int(float(np.mean(self.male)) >= 0.5) if self.male else -1

    def emotion(self) -> int:
        return int(np.argmax(self.emotion_sum)) if self.emotion_count else -1


@POST_PROCESSORS.register("demographics")
class Demographics(PostProcessor):
    STATE = ("tracks",)
    Config: ClassVar[type[PluginConfig]] = DemographicsConfig
    phase = "after_tracker"
    needs_image = True

    def __init__(
        self,
        config: PluginConfig,
        source: SourceConfig,
        app: LookoutConfig,
        models: FaceModels | None = None,
    ) -> None:
        if not isinstance(config, DemographicsConfig):
            config = DemographicsConfig.model_validate(config.model_dump(by_alias=True))
        super().__init__(config, source, app)
        self.settings = config
        self.tz = app.app.tzinfo
        if models is None:
            age, gender, emotion = config.model_paths(app)
            models = FaceModels(age, gender, emotion,
                                config.threads or thread_budget(app).threads, app.detector)
        self.models = models
        self.forget_us = micros(config.forget_seconds)
        self.tracks: dict[int, TrackFaces] = {}

    def due_rows(self, frame: Frame) -> list[int]:
        """Rows whose face is measured in this frame (advances the per-track counters)."""
        dets = frame.detections
        n = len(dets)
        ts = aware(frame.timestamp, self.tz)
        landmarks = dets.attributes.get("face_landmarks")
        boxes = dets.attributes.get("face_box")
        marks = (
            np.asarray(landmarks, np.float32).reshape(n, 5, 2)
            if landmarks is not None
            else np.full((n, 5, 2), np.nan, np.float32)
        )
        faces = (
            np.asarray(boxes, np.float32).reshape(n, 4)
            if boxes is not None
            else np.full((n, 4), np.nan, np.float32)
        )
        fresh = dets.attributes.get("face_fresh")  # faces carried forward are not measured
        usable = (
            np.isfinite(marks).all(axis=(1, 2))
            & np.isfinite(faces).all(axis=1)
            & ((faces[:, 2] - faces[:, 0]) >= self.settings.min_face_size)
            & (np.asarray(fresh, bool).reshape(n) if fresh is not None else True)
        ).tolist()
        due: list[int] = []
        for k, tid in enumerate(dets.track_ids.tolist()):
            if tid < 0:
                continue
            state = self.tracks.get(tid)
            if state is None:
                state = self.tracks[tid] = TrackFaces(ts, since_sample=self.settings.every_frames)
            state.last_seen = ts
            if state.samples >= self.settings.max_samples:
                continue
            state.since_sample += 1
            if usable[k] and state.since_sample >= self.settings.every_frames:
                state.since_sample = 0
                due.append(k)
        return due

    def measure(self, frame: Frame, rows: list[int]) -> None:
        """Run the models on the faces of ``rows`` (one batch per model)."""
        dets = frame.detections
        n = len(dets)
        marks = np.asarray(dets.attributes["face_landmarks"], np.float32).reshape(n, 5, 2)
        boxes = np.asarray(dets.attributes["face_box"], np.float32).reshape(n, 4)
        kept: list[int] = []
        chips64: list[np.ndarray] = []
        chips32: list[np.ndarray] = []
        crops: list[np.ndarray] = []
        for k in rows:
            crop = face_crop(frame.image, boxes[k])
            if crop is None:
                continue
            try:
                chips64.append(align_face(frame.image, marks[k], AGE_SIZE))
                chips32.append(align_face(frame.image, marks[k], GENDER_SIZE))
            except (ValueError, cv2.error):
                continue
            crops.append(crop)
            kept.append(k)
        if not kept:
            return
        ages = self.models.ages(chips64)
        male = self.models.male_probabilities(chips32)
        emotions = self.models.emotions(crops) if self.models.emotion is not None else None
        for j, k in enumerate(kept):
            state = self.tracks[int(dets.track_ids[k])]
            state.samples += 1
            state.ages.append(float(ages[j]))
            state.male.append(float(male[j]))
            if emotions is not None:
                state.emotion_sum = state.emotion_sum + emotions[j]
                state.emotion_count += 1

    def process(self, frame: Frame) -> Frame:
        dets = frame.detections
        n = len(dets)
        rows = self.due_rows(frame)
        if rows:
            self.measure(frame, rows)
        age = np.full(n, np.nan, np.float32)
        gender = np.full(n, -1, np.int8)
        emotion = np.full(n, -1, np.int8)
        for k, tid in enumerate(dets.track_ids.tolist()):
            state = self.tracks.get(tid) if tid >= 0 else None
            if state is None:
                continue
            age[k] = state.age()
            gender[k] = state.gender()
            emotion[k] = state.emotion()
        dets.attributes["age"] = age
        dets.attributes["gender"] = gender
        dets.attributes["emotion"] = emotion
        self._forget(aware(frame.timestamp, self.tz))
        return frame

    def _forget(self, now: datetime) -> None:
        stale = [t for t, s in self.tracks.items() if elapsed_us(s.last_seen, now) > self.forget_us]
        for tid in stale:
            del self.tracks[tid]
