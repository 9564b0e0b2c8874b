"""``faces``: a face for each tracked person, searched in the head region of the person box.

The person detector runs once per frame; this step (after the tracker) runs face models on
small crops of each person's **head region** only, never on the whole frame.

**Head region.**  The head of a person box ``(x1, y1, x2, y2)`` (width ``w``, height ``h``)
is taken as a square of side ``s = min(max(HeadFraction * h, 0.5 * w), w, h)`` (the top fifth
of a standing person, half the width of an upper-body box), centred on the box's vertical
centre line with its centre ``0.45 * s`` below the box top, then enlarged ``HeadPadding``
times about its centre.  :func:`head_regions` computes it for every person at once;
``facemask`` and ``anonymizer`` use the same function.  Parts of a region outside the frame are
filled by repeating the border pixels, so a face near the frame edge stays centred.

**Face detectors** (``FaceDetector``):

``yunet``
    ``face_yunet_2023mar`` (``cv2.FaceDetectorYN``) on the region scaled to ``YunetInputSize``
    pixels: a box and 5 landmarks (eyes, nose tip, mouth corners, image left to right).
``masked``
    ``facemask_rfb640_masked_face_v2`` (classes face / masked face) on the region stretched to
    640x480: a box without landmarks, and the probability that the face is masked.
``yunet+masked`` (default)
    YuNet first; the masked-face model only where YuNet found nothing.  YuNet misses masked
    faces (it found 88.7 % of the real masked crops, 100 % of the bare ones), the masked-face
    model finds them; YuNet is about six times cheaper and gives the landmarks.  With each
    crop of ``facemask/real_crops`` as the head region, mask / no mask was right for 96.0 %
    of them this way (1.0 % no face), 87.3 % with the masked-face model alone and 93.0 % with
    YuNet's face crops (docs/benchmarks.md, ``benchmarks/faces_benchmark.py``).

When several faces are in a region, the best score wins, and a face whose centre lies outside
the unpadded head square counts at half its score (a neighbour's face next to the head).

**Cost bounds.**  A track is searched again every ``EveryFrames`` frames; in between, its last
face is carried forward, fixed to the person box (stored relative to the box, so it moves with
the person).  At most ``MaxFaces`` people are searched per frame, those waiting longest first
(then the biggest).  People whose head side is below ``MinFaceSize`` pixels are not searched
and have no face.  Model sessions are shared by every camera of a process (one per model file
and setting).

**Attributes** (every row filled, see :mod:`libs.frame`): ``face_box`` float32 ``(N, 4)``
(NaN = no face), ``face_score`` float32 ``(N,)`` (0 = no face), ``face_landmarks`` float32
``(N, 5, 2)`` (NaN when no face, and when only the masked-face model found it), and two
additions: ``face_fresh`` bool ``(N,)`` (the person was searched on this frame, whether a face
was found or not; False when a face is carried forward or the person was not searched) and
``face_mask_prob`` float32 ``(N,)`` (probability of a mask from the masked-face model when that
model found this face on this frame, else NaN; ``facemask`` uses it instead of running the
model again).  ``frame.metrics["faces_searched"]`` counts the people searched on the frame.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import cv2
import numpy as np
from pydantic import Field

from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.detectors.budget import thread_budget
from libs.detectors.secondary import open_onnx_model, placement_key
from libs.frame import Frame
from libs.post_processors import POST_PROCESSORS, PostProcessor

if TYPE_CHECKING:
    from libs.config.models import DetectorConfig, LookoutConfig, SourceConfig

log = logging.getLogger(__name__)

YUNET_MODEL = "models/face_yunet_2023mar.onnx"
MASK_MODEL = "models/facemask_rfb640_masked_face_v2.onnx"
MASK_INPUT_SIZE = (640, 480)  # width, height: the masked-face model's fixed input
HEAD_CENTRE_BELOW_TOP = 0.45  # head centre below the box top, in head sides
HEAD_WIDTH_FRACTION = 0.5  # the head side is at least this fraction of the box width
FORGET_SECONDS = 30.0  # a track unseen this long (frame clock) is forgotten

FaceDetectorName = Literal["yunet", "masked", "yunet+masked"]


# ---------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------


def head_sides(boxes: np.ndarray, fraction: float = 0.2) -> np.ndarray:
    """``(N,)`` estimated head side in pixels of each ``(x1, y1, x2, y2)`` person box."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = np.maximum(b[:, 2] - b[:, 0], 0.0)
    h = np.maximum(b[:, 3] - b[:, 1], 0.0)
    return np.minimum(np.minimum(np.maximum(fraction * h, HEAD_WIDTH_FRACTION * w), w), h)


def head_regions(boxes: np.ndarray, fraction: float = 0.2, padding: float = 1.5) -> np.ndarray:
    """``(N, 4)`` float32 head regions ``x1, y1, x2, y2`` of person boxes (module docstring).

    The regions may reach outside the frame; :func:`crop_region` fills that part.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = head_sides(b, fraction)
    cx = (b[:, 0] + b[:, 2]) * 0.5
    cy = b[:, 1] + HEAD_CENTRE_BELOW_TOP * side
    half = side * padding * 0.5
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1).astype(np.float32)


def crop_region(
    image: np.ndarray, region: np.ndarray, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``region`` (``x1, y1, x2, y2``, rounded to whole pixels), the part outside the
    image filled with repeated border pixels, resized to ``size`` (width, height) if given.

    Returns the crop and the whole-pixel region it shows (float64 ``x1, y1, x2, y2``), so crop
    coordinates map back with ``region[:2] + xy * (region size / crop size)``.
    """
    height, width = image.shape[:2]
    x1, y1 = math.floor(float(region[0])), math.floor(float(region[1]))
    x2 = max(math.ceil(float(region[2])), x1 + 1)
    y2 = max(math.ceil(float(region[3])), y1 + 1)
    inside = image[max(y1, 0) : max(min(y2, height), 0), max(x1, 0) : max(min(x2, width), 0)]
    if inside.size == 0:  # wholly outside the frame: the nearest border pixel, repeated
        px = image[min(max(y1, 0), height - 1), min(max(x1, 0), width - 1)]
        crop = np.empty((y2 - y1, x2 - x1, *image.shape[2:]), image.dtype)
        crop[...] = px
    else:
        top, left = max(0, -y1), max(0, -x1)
        bottom, right = max(0, y2 - height), max(0, x2 - width)
        crop = inside
        if top or left or bottom or right:
            crop = cv2.copyMakeBorder(inside, top, bottom, left, right, cv2.BORDER_REPLICATE)
    if size is not None and (crop.shape[1], crop.shape[0]) != size:
        shrink = size[0] < crop.shape[1] or size[1] < crop.shape[0]
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(crop), np.array([x1, y1, x2, y2], np.float64)


def square_around(box: np.ndarray, scale: float) -> np.ndarray:
    """The square of side ``scale * max(w, h)`` centred on ``box``."""
    cx, cy = (box[0] + box[2]) * 0.5, (box[1] + box[3]) * 0.5
    half = max(box[2] - box[0], box[3] - box[1]) * scale * 0.5
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


# ---------------------------------------------------------------------------------------
# Models (shared per process)
# ---------------------------------------------------------------------------------------

_MODELS: dict[tuple[Any, ...], Any] = {}
_MODELS_LOCK = threading.Lock()
M = TypeVar("M")


def shared_model(key: tuple[Any, ...], make: Callable[[], M]) -> M:
    """The process-wide instance for ``key`` (model kind, file, settings), made once."""
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = make()
            _MODELS[key] = model
        return model  # type: ignore[no-any-return]


def model_file(app: LookoutConfig, value: str, key: str) -> Path:
    """``value`` resolved in AssetsDirectory; a clear error when the file is missing."""
    path = app.asset_path(value)
    if not path.is_file():
        raise FileNotFoundError(
            f"{key} {value!r}: no such model file {path} (relative paths are inside "
            f"AssetsDirectory {app.assets_dir})"
        )
    return path


class YuNet:
    """``cv2.FaceDetectorYN`` behind a lock (it keeps the input size as state)."""

    def __init__(self, path: Path, score: float, nms: float = 0.3) -> None:
        self.detector = cv2.FaceDetectorYN.create(str(path), "", (160, 160), score, nms, 5000)
        self.lock = threading.Lock()

    @classmethod
    def shared(cls, path: Path, score: float) -> YuNet:
        return shared_model(("yunet", str(path), float(score)), lambda: cls(path, score))

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        """``(M, 15)`` float32 faces: ``x, y, w, h``, 5 landmarks ``(x, y)``, score."""
        height, width = bgr.shape[:2]
        with self.lock:
            self.detector.setInputSize((width, height))
            _, faces = self.detector.detect(bgr)
        if faces is None:
            return np.zeros((0, 15), np.float32)
        return np.asarray(faces, np.float32).reshape(-1, 15)


class MaskedFaceModel:
    """``facemask_rfb640_masked_face_v2``: face and masked-face detector with a fixed input.

    Input RGB 640x480 (a plain stretch), ``(x - 127) / 128``; outputs per anchor the softmax
    ``[background, face, masked_face]`` and a corner box normalised to 0..1.  It runs on the
    device of ``detector`` (``[Detector]``; None: the CPU), see
    :func:`libs.detectors.secondary.open_onnx_model`.
    """

    def __init__(self, path: Path, threads: int, detector: DetectorConfig | None = None) -> None:
        self.model = open_onnx_model(path, threads, detector)
        self.input_name = self.model.input_names[0]

    @classmethod
    def shared(
        cls, path: Path, threads: int, detector: DetectorConfig | None = None
    ) -> MaskedFaceModel:
        key = ("masked", str(path), int(threads), *placement_key(detector))
        return shared_model(key, lambda: cls(path, threads, detector))

    def run(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``(K, 3)`` and boxes ``(K, 4)`` (0..1) of every anchor for a BGR crop."""
        rgb = cv2.cvtColor(cv2.resize(bgr, MASK_INPUT_SIZE), cv2.COLOR_BGR2RGB)
        x = ((rgb.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self.model.run({self.input_name: np.ascontiguousarray(x)})
        return np.asarray(scores[0], np.float32), np.asarray(boxes[0], np.float32)

    def detect(
        self, bgr: np.ndarray, min_score: float, nms: float = 0.3
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces in crop pixels ``(M, 4)``, their scores and mask probabilities, best first."""
        scores, boxes = self.run(bgr)
        conf = scores[:, 1:].max(axis=1)
        keep = np.flatnonzero(conf >= min_score)
        if len(keep) == 0:
            empty = np.zeros(0, np.float32)
            return np.zeros((0, 4), np.float32), empty, empty
        height, width = bgr.shape[:2]
        pix = boxes[keep] * np.array([width, height, width, height], np.float32)
        rects = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in pix]
        picked = np.asarray(
            cv2.dnn.NMSBoxes(rects, conf[keep].tolist(), min_score, nms), np.int64
        ).reshape(-1)
        picked = picked[np.argsort(-conf[keep][picked], kind="stable")]
        rows = keep[picked]
        return pix[picked], conf[rows], mask_probability(scores[rows])

    def classify(self, bgr: np.ndarray) -> tuple[float, float]:
        """``(face score, mask probability)`` of the best anchor centred in the middle half of
        a crop around a known face (classifier use: no threshold, no NMS)."""
        scores, boxes = self.run(bgr)
        cx = (boxes[:, 0] + boxes[:, 2]) * 0.5
        cy = (boxes[:, 1] + boxes[:, 3]) * 0.5
        central = (np.abs(cx - 0.5) < 0.25) & (np.abs(cy - 0.5) < 0.25)
        conf = np.where(central, scores[:, 1:].max(axis=1), 0.0)
        best = int(conf.argmax())
        return float(conf[best]), float(mask_probability(scores[best : best + 1])[0])


def mask_probability(scores: np.ndarray) -> np.ndarray:
    """``masked / (face + masked)`` of rows of ``[background, face, masked_face]`` scores."""
    s = np.asarray(scores, np.float32).reshape(-1, 3)
    return (s[:, 2] / np.maximum(s[:, 1] + s[:, 2], 1e-12)).astype(np.float32)


# ---------------------------------------------------------------------------------------
# One head
# ---------------------------------------------------------------------------------------


@dataclass
class Face:
    """A face found in a frame: box ``(4,)``, score, landmarks ``(5, 2)`` (NaN when the
    detector gives none) and mask probability (NaN unless the masked-face model found it)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    mask_prob: float = math.nan


NO_LANDMARKS = np.full((5, 2), np.nan, np.float32)


def _pick(centres: np.ndarray, scores: np.ndarray, core: np.ndarray) -> int:
    """Best face: its score, halved when its centre lies outside the core square."""
    inside = (
        (centres[:, 0] >= core[0]) & (centres[:, 0] <= core[2])
        & (centres[:, 1] >= core[1]) & (centres[:, 1] <= core[3])
    )
    return int(np.argmax(np.where(inside, scores, 0.5 * scores)))


class FaceFinder:
    """Finds the face of one head region with the configured detectors."""

    def __init__(
        self,
        detector: FaceDetectorName,
        yunet: YuNet | None,
        masked: MaskedFaceModel | None,
        yunet_size: int = 160,
        mask_score: float = 0.6,
        padding: float = 1.5,
    ) -> None:
        self.detector = detector
        self.yunet = yunet
        self.masked = masked
        self.yunet_size = int(yunet_size)
        self.mask_score = float(mask_score)
        self.padding = float(padding)

    def core(self, region: np.ndarray) -> np.ndarray:
        """The unpadded head square inside a padded region."""
        cx, cy = (region[0] + region[2]) * 0.5, (region[1] + region[3]) * 0.5
        half = (region[2] - region[0]) * 0.5 / max(self.padding, 1.0)
        return np.array([cx - half, cy - half, cx + half, cy + half], np.float64)

    def find(self, image: np.ndarray, region: np.ndarray) -> Face | None:
        """The face in ``region`` (frame pixels) of ``image``, or None."""
        face = None
        if self.detector in ("yunet", "yunet+masked") and self.yunet is not None:
            face = self.find_yunet(image, region)
        if face is None and self.detector in ("masked", "yunet+masked") and self.masked:
            face = self.find_masked(image, region)
        return face

    def find_yunet(self, image: np.ndarray, region: np.ndarray) -> Face | None:
        assert self.yunet is not None
        side = self.yunet_size
        crop, used = crop_region(image, region, (side, side))
        faces = self.yunet.detect(crop)
        if len(faces) == 0:
            return None
        sx, sy = (used[2] - used[0]) / side, (used[3] - used[1]) / side
        boxes = np.stack(
            [faces[:, 0] * sx, faces[:, 1] * sy, (faces[:, 0] + faces[:, 2]) * sx,
             (faces[:, 1] + faces[:, 3]) * sy], axis=1,
        ) + np.array([used[0], used[1], used[0], used[1]])
        centres = (boxes[:, :2] + boxes[:, 2:]) * 0.5
        best = _pick(centres, faces[:, 14].astype(np.float64), self.core(region))
        marks = faces[best, 4:14].reshape(5, 2).astype(np.float64) * np.array([sx, sy])
        marks += used[:2]
        return Face(
            boxes[best].astype(np.float32), float(faces[best, 14]), marks.astype(np.float32)
        )

    def find_masked(self, image: np.ndarray, region: np.ndarray) -> Face | None:
        assert self.masked is not None
        crop, used = crop_region(image, region)
        boxes, scores, probs = self.masked.detect(crop, self.mask_score)
        if len(boxes) == 0:
            return None
        boxes = boxes.astype(np.float64) + np.array([used[0], used[1], used[0], used[1]])
        centres = (boxes[:, :2] + boxes[:, 2:]) * 0.5
        best = _pick(centres, scores.astype(np.float64), self.core(region))
        return Face(
            boxes[best].astype(np.float32), float(scores[best]), NO_LANDMARKS.copy(),
            float(probs[best]),
        )


# ---------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------


class FacesConfig(PluginConfig):
    """``[SourcePostProcessor_N] Name = faces``."""

    face_detector: FaceDetectorName = Field(
        "yunet+masked",
        alias="FaceDetector",
        description="Face detector run on each head region: yunet (boxes and landmarks), "
        "masked (the masked-face model: boxes, no landmarks) or yunet+masked (YuNet, then the "
        "masked-face model where YuNet found nothing).",
        json_schema_extra=form("yunet, masked or yunet+masked"),
    )
    yunet_model_path: str = Field(
        YUNET_MODEL,
        alias="YunetModelPath",
        description="YuNet face detector (relative paths are inside AssetsDirectory).",
        json_schema_extra=form("a path to face_yunet_2023mar.onnx"),
    )
    mask_model_path: str = Field(
        MASK_MODEL,
        alias="MaskModelPath",
        description="Masked-face detector (relative paths are inside AssetsDirectory).",
        json_schema_extra=form("a path to facemask_rfb640_masked_face_v2.onnx"),
    )
    every_frames: int = Field(
        3,
        alias="EveryFrames",
        ge=1,
        description="Search a track's face every this many frames; its last face is carried "
        "forward in between.",
        json_schema_extra=form("an integer >= 1"),
    )
    max_faces: int = Field(
        8,
        alias="MaxFaces",
        ge=0,
        description="People searched per frame at most (0 = no limit); those waiting "
        "longest go first.",
        json_schema_extra=form("an integer >= 0"),
    )
    min_face_size: float = Field(
        12.0,
        alias="MinFaceSize",
        ge=0.0,
        description="People whose estimated head side is below this many pixels are not "
        "searched.",
        json_schema_extra=form("a number of pixels >= 0"),
    )
    head_fraction: float = Field(
        0.2,
        alias="HeadFraction",
        gt=0.0,
        le=1.0,
        description="Head side as a fraction of the person box height (at least half the "
        "box width, at most the box width).",
        json_schema_extra=form("a number from 0 to 1"),
    )
    head_padding: float = Field(
        1.5,
        alias="HeadPadding",
        ge=1.0,
        le=4.0,
        description="The head square is enlarged this many times about its centre.",
        json_schema_extra=form("a number from 1 to 4"),
    )
    yunet_score: float = Field(
        0.6,
        alias="YunetScore",
        gt=0.0,
        lt=1.0,
        description="Least YuNet score of a face.",
        json_schema_extra=form("a number between 0 and 1"),
    )
    mask_score: float = Field(
        0.6,
        alias="MaskScore",
        gt=0.0,
        lt=1.0,
        description="Least masked-face model score (face or masked face) of a face.",
        json_schema_extra=form("a number between 0 and 1"),
    )
    yunet_input_size: int = Field(
        160,
        alias="YunetInputSize",
        ge=32,
        le=640,
        description="Head regions are scaled to this many pixels square for YuNet.",
        json_schema_extra=form("an integer from 32 to 640"),
    )
    threads: int = Field(
        0,
        alias="Threads",
        ge=0,
        description="ONNX Runtime threads of the masked-face model (0 = the thread budget's "
        "threads per detector session).",
        json_schema_extra=form("an integer >= 0"),
    )


@dataclass
class _TrackFace:
    """A track's last search: its face relative to the person box, or no face."""

    searched_at: int
    seen: float
    rel_box: np.ndarray | None = None
    rel_marks: np.ndarray | None = None
    score: float = 0.0


def to_relative(points: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Points ``(..., 2)`` as fractions of the person box (0,0 top left, 1,1 bottom right)."""
    size = np.maximum(person[2:] - person[:2], 1.0)
    return ((np.asarray(points, np.float64).reshape(-1, 2) - person[:2]) / size).reshape(
        np.shape(points)
    )


def from_relative(rel: np.ndarray, person: np.ndarray) -> np.ndarray:
    size = np.maximum(person[2:] - person[:2], 1.0)
    return (np.asarray(rel, np.float64).reshape(-1, 2) * size + person[:2]).reshape(np.shape(rel))


@POST_PROCESSORS.register("faces")
class Faces(PostProcessor):
    STATE = ("frames", "tracks")
    Config = FacesConfig
    phase = "after_tracker"
    needs_image = True

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        settings = plugin_settings(FacesConfig, config)
        super().__init__(settings, source, app)
        self.settings = settings
        use_yunet = settings.face_detector in ("yunet", "yunet+masked")
        use_masked = settings.face_detector in ("masked", "yunet+masked")
        yunet = (
            YuNet.shared(model_file(app, settings.yunet_model_path, "YunetModelPath"),
                         settings.yunet_score)
            if use_yunet else None
        )
        masked = (
            MaskedFaceModel.shared(
                model_file(app, settings.mask_model_path, "MaskModelPath"),
                settings.threads or thread_budget(app).threads,
                app.detector,
            )
            if use_masked else None
        )
        self.finder = FaceFinder(
            settings.face_detector, yunet, masked, settings.yunet_input_size,
            settings.mask_score, settings.head_padding,
        )
        self.frames = 0
        self.tracks: dict[int, _TrackFace] = {}

    def schedule(self, track_ids: np.ndarray, sides: np.ndarray) -> np.ndarray:
        """Row indexes to search on this frame, in priority order."""
        s = self.settings
        waits = np.empty(len(track_ids), np.float64)
        for k, tid in enumerate(track_ids.tolist()):
            state = self.tracks.get(tid) if tid >= 0 else None
            waits[k] = math.inf if state is None else self.frames - state.searched_at
        due = np.flatnonzero((waits >= s.every_frames) & (sides >= s.min_face_size))
        order = due[np.lexsort((-sides[due], -waits[due]))]
        return order[: s.max_faces] if s.max_faces > 0 else order

    def process(self, frame: Frame) -> Frame:
        dets = frame.detections
        n = len(dets)
        s = self.settings
        now = frame.timestamp.timestamp()
        boxes = dets.boxes.astype(np.float64)
        ids = dets.track_ids
        face_box = np.full((n, 4), np.nan, np.float32)
        face_score = np.zeros(n, np.float32)
        face_marks = np.full((n, 5, 2), np.nan, np.float32)
        fresh = np.zeros(n, bool)
        mask_prob = np.full(n, np.nan, np.float32)

        regions = head_regions(boxes, s.head_fraction, s.head_padding)
        searched = self.schedule(ids, head_sides(boxes, s.head_fraction))
        for k in searched.tolist():
            face = self.finder.find(frame.image, regions[k])
            fresh[k] = True
            tid = int(ids[k])
            state = _TrackFace(self.frames, now)
            if face is not None:
                face_box[k], face_score[k], face_marks[k] = face.box, face.score, face.landmarks
                mask_prob[k] = face.mask_prob
                state.rel_box = to_relative(face.box.reshape(2, 2), boxes[k])
                state.rel_marks = to_relative(face.landmarks, boxes[k])
                state.score = face.score
            if tid >= 0:
                self.tracks[tid] = state
        for k, tid in enumerate(ids.tolist()):
            last = self.tracks.get(tid) if tid >= 0 else None
            if last is None:
                continue
            last.seen = now
            if fresh[k] or last.rel_box is None:
                continue
            face_box[k] = from_relative(last.rel_box, boxes[k]).reshape(4)
            face_score[k] = last.score
            if last.rel_marks is not None:
                face_marks[k] = from_relative(last.rel_marks, boxes[k])
        self._forget(now)
        self.frames += 1
        attrs = dets.attributes
        attrs["face_box"] = face_box
        attrs["face_score"] = face_score
        attrs["face_landmarks"] = face_marks
        attrs["face_fresh"] = fresh
        attrs["face_mask_prob"] = mask_prob
        frame.metrics["faces_searched"] = len(searched)
        return frame

    def _forget(self, now: float) -> None:
        stale = [t for t, st in self.tracks.items() if now - st.seen > FORGET_SECONDS]
        for tid in stale:
            del self.tracks[tid]
