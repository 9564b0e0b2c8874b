"""``head_pose``: head yaw and pitch per tracked person, who looks at the camera (or display),
and for how long.

Needs the ``faces`` step before it.  For each person whose face was searched on this frame
(``face_fresh``) and found:

1. **Face mesh** (``face_landmark_mediapipe.tflite``, 468 points, run with
   ``ai_edge_litert``): a square crop of ``MeshCropScale`` times the face box, 192x192 RGB in
   0..1.  The mesh's face-presence logit (after a sigmoid) must reach ``MinPresence``.
2. **PnP**: ``cv2.solvePnP`` (EPnP, then Levenberg-Marquardt refinement) of mesh points 1
   (nose tip), 152 (chin), 33 and 263 (outer eye corners), 61 and 291 (mouth corners) against
   a generic 3D face (:data:`GENERIC_FACE_6`), with a pinhole camera of ``HorizontalFov``
   degrees centred in the frame.
3. **Fallback**: when the mesh is off (``UseMesh = False``), unavailable (``ai_edge_litert`` not
   installed) or rejects the face, the same solve on YuNet's 5 landmarks (eye centres, nose
   tip, mouth corners; :data:`GENERIC_FACE_5`).  Its yaw is as good, its pitch much worse
   (docs/benchmarks.md).  A face without landmarks (found by the masked-face model only) and
   rejected by the mesh has no pose.

**Angles** (contract of :mod:`libs.frame`): ``head_yaw`` degrees, + = the person turned to
*their* left (towards the image's right); ``head_pitch`` degrees, + = up, plus the
``PitchOffset`` calibration (a camera mounted high sees a constant pitch bias).  Both are
relative to the camera's optical axis, from the rotation ``R`` decomposed as
``Rx(-pitch) Ry(yaw) Rz(-roll)`` in a y-up, z-towards-the-viewer frame, the convention of
AFLW2000-3D (whose yaw is the negative of ``head_yaw``).  Between two searches of a track its
last angles are carried with its face; NaN where unknown.

**Looking.**  With ``RelativeToCamera`` (default) the angles are first made relative to the
line of sight from the face to the camera: a face at the image's right edge that looks into the
lens has a negative ``head_yaw``, and its bearing ``atan((u - cx) / f)`` is added back (the
same for pitch with ``atan((cy - v) / f)``).  A person is ``looking`` when
``|yaw - YawCenter| <= ConeYaw`` and ``|pitch - PitchCenter| <= ConePitch``; the centre points
the cone at a display beside the camera (a display below the camera: negative ``PitchCenter``).
Unknown angles are never looking.

**Time looking**: ``looking_seconds`` float32 per person, the cumulative time the track has
looked, from frame timestamps, sample-and-hold: the time since the frame that last showed the
track is credited when the track was looking in that frame, gaps longer than ``MaxGapSeconds``
are not credited.  A track unseen for ``ForgetSeconds`` is forgotten.

**Output.**  Attributes ``head_yaw``, ``head_pitch`` (float32, NaN unknown), ``looking``
(bool) and ``looking_seconds`` (float32); on the frames of the pipeline's sample clock
(``frame.sample_due``) an ``attention_log`` sample (:class:`libs.records.AttentionSample`,
``People``, ``Looking`` of that frame), logged to ``attention_log/`` and reported as the
``attention`` reports (``AvgPeople``, ``AvgLooking``, ..., ``LookingSamples``).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from pydantic import Field

from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.frame import Frame
from libs.metrics.reports import Counter, Measure, RawLogSpec, ReportKind, register_source_spec
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.post_processors.facemask import requires_faces_before
from libs.post_processors.faces import crop_region, model_file, shared_model, square_around
from libs.records import AttentionSample

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig

log = logging.getLogger(__name__)

MESH_MODEL = "models/face_landmark_mediapipe.tflite"
MESH_SIZE = 192
MESH_POINTS = (1, 152, 33, 263, 61, 291)  # nose tip, chin, eye corners, mouth corners
# A generic face (arbitrary units, about 0.2 mm), x to the image's right, y down, z away from
# the camera, looking into the camera.  Rows follow MESH_POINTS: the first eye and mouth
# corner are the ones on the image's left.
GENERIC_FACE_6 = np.array(
    [[0, 0, 0], [0, 330, 65], [-225, -170, 135], [225, -170, 135], [-150, 150, 125],
     [150, 150, 125]], np.float64,
)
# YuNet's landmarks: eye centres (image left, right), nose tip, mouth corners (left, right).
GENERIC_FACE_5 = np.array(
    [[-165, -170, 135], [165, -170, 135], [0, 0, 0], [-150, 150, 125], [150, 150, 125]],
    np.float64,
)
_FLIP = np.diag([1.0, -1.0, -1.0])  # camera (y down, z away) <-> y up, z towards the viewer

ATTENTION_LOG_FOLDER = "attention_log"
ATTENTION = ReportKind(
    "attention",
    (Measure("People", "People"), Measure("Looking", "Looking")),
    (Counter("LookingSamples", "Looking"),),
    description=("People and people looking at the camera or display (head inside the "
                 "configured cone; head_pose step) per camera; LookingSamples: samples with "
                 "someone looking."),
)
ATTENTION_REPORTS = register_source_spec(RawLogSpec(ATTENTION_LOG_FOLDER, (ATTENTION,)))


# ---------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------


def camera_matrix(width: int, height: int, fov_deg: float) -> np.ndarray:
    """Pinhole intrinsics: principal point at the centre, ``fov_deg`` horizontally."""
    f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def angles_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` degrees of a model-to-camera rotation (camera axes: x right,
    y down, z away; model axes the same when the face looks into the camera).

    yaw + = the person's left (face towards the image's right), pitch + = up, roll + =
    clockwise in the image.  Decomposition ``R' = Rx(a) Ry(b) Rz(c)`` of the rotation in a
    y-up, z-towards-the-viewer frame; AFLW2000 reads ``pitch = -a``, ``yaw = -b``,
    ``roll = -c``, and this contract's yaw is the negative of AFLW's.
    """
    r = _FLIP @ np.asarray(rotation, np.float64) @ _FLIP
    b = math.degrees(math.asin(max(-1.0, min(1.0, r[0, 2]))))
    a = math.degrees(math.atan2(-r[1, 2], r[2, 2]))
    c = math.degrees(math.atan2(-r[0, 1], r[0, 0]))
    return b, -a, -c


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The inverse of :func:`angles_from_rotation` (for tests and synthetic data)."""
    a, b, c = math.radians(-pitch), math.radians(yaw), math.radians(-roll)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    out: np.ndarray = _FLIP @ (rx @ ry @ rz) @ _FLIP
    return out


def solve_head_pose(
    points: np.ndarray, model: np.ndarray, camera: np.ndarray
) -> tuple[float, float, float] | None:
    """``(yaw, pitch, roll)`` of a face whose image ``points`` match ``model``; None when
    the solve fails or puts the face behind the camera."""
    pts = np.asarray(points, np.float64).reshape(-1, 1, 2)
    obj = np.asarray(model, np.float64).reshape(-1, 1, 3)
    if not np.isfinite(pts).all():
        return None
    try:
        ok, rvec, tvec = cv2.solvePnP(obj, pts, camera, None, flags=cv2.SOLVEPNP_EPNP)
        if not ok:
            return None
        rvec, tvec = cv2.solvePnPRefineLM(obj, pts, camera, None, rvec, tvec)
    except cv2.error:
        return None
    if not np.isfinite(rvec).all() or float(tvec.reshape(3)[2]) <= 0.0:
        return None
    rotation, _ = cv2.Rodrigues(rvec)
    return angles_from_rotation(rotation)


def in_cone(
    yaw: np.ndarray,
    pitch: np.ndarray,
    yaw_center: float = 0.0,
    pitch_center: float = 0.0,
    cone_yaw: float = 20.0,
    cone_pitch: float = 20.0,
) -> np.ndarray:
    """Bool array: the angles lie inside the cone (bounds included); NaN is never inside."""
    y = np.asarray(yaw, np.float64)
    p = np.asarray(pitch, np.float64)
    with np.errstate(invalid="ignore"):
        return (np.abs(y - yaw_center) <= cone_yaw) & (np.abs(p - pitch_center) <= cone_pitch)


def bearings(centres: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yaw and pitch (degrees) of the line of sight to image points: what a face there that
    looks into the lens reads as ``-head_yaw`` and ``-head_pitch``."""
    c = np.asarray(centres, np.float64).reshape(-1, 2)
    f, cx, cy = camera[0, 0], camera[0, 2], camera[1, 2]
    return np.degrees(np.arctan((c[:, 0] - cx) / f)), np.degrees(np.arctan((cy - c[:, 1]) / f))


# ---------------------------------------------------------------------------------------
# The face mesh
# ---------------------------------------------------------------------------------------


class FaceMesh:
    """``face_landmark_mediapipe.tflite`` behind a lock (a LiteRT interpreter is stateful).

    It runs on LiteRT's CPU interpreter whatever ``[Detector] Device`` is: it is not compiled
    for the Edge TPU, and LiteRT has no GPU delegate for the other devices' runtimes
    (docs/devices.md).
    """

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter: Any = Interpreter(model_path=str(path), num_threads=max(threads, 1))
        self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}
        self.points_index = outputs.get("conv2d_21")
        self.presence_index = outputs.get("conv2d_31")
        if self.points_index is None or self.presence_index is None:
            raise ValueError(f"{path}: not the MediaPipe face mesh (outputs {list(outputs)})")
        self.lock = threading.Lock()

    @classmethod
    def shared(cls, path: Path, threads: int) -> FaceMesh:
        return shared_model(("mesh", str(path), int(threads)), lambda: cls(path, threads))

    def landmarks(
        self, image: np.ndarray, face_box: np.ndarray, scale: float
    ) -> tuple[np.ndarray, float]:
        """468 points ``(x, y)`` in frame pixels and the face-presence probability."""
        crop, used = crop_region(image, square_around(face_box, scale), (MESH_SIZE, MESH_SIZE))
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        with self.lock:
            self.interpreter.set_tensor(self.input_index, rgb[None])
            self.interpreter.invoke()
            points = np.array(self.interpreter.get_tensor(self.points_index), np.float64)
            logit = float(np.asarray(self.interpreter.get_tensor(self.presence_index)).ravel()[0])
        xy = points.reshape(468, 3)[:, :2] * ((used[2:] - used[:2]) / MESH_SIZE) + used[:2]
        presence = 1.0 / (1.0 + math.exp(-max(min(logit, 60.0), -60.0)))
        return xy, presence


def mesh_available() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


class HeadPoseEstimator:
    """Mesh PnP with the 5-landmark fallback, for one face."""

    def __init__(
        self, mesh: FaceMesh | None, crop_scale: float = 1.4, min_presence: float = 0.5
    ) -> None:
        self.mesh = mesh
        self.crop_scale = crop_scale
        self.min_presence = min_presence

    def estimate(
        self, image: np.ndarray, face_box: np.ndarray, landmarks: np.ndarray, camera: np.ndarray
    ) -> tuple[tuple[float, float, float] | None, str]:
        """``((yaw, pitch, roll) or None, method)``; method ``mesh``, ``landmarks`` or ``none``."""
        if self.mesh is not None:
            xy, presence = self.mesh.landmarks(image, face_box, self.crop_scale)
            if presence >= self.min_presence:
                pose = solve_head_pose(xy[list(MESH_POINTS)], GENERIC_FACE_6, camera)
                if pose is not None:
                    return pose, "mesh"
        marks = np.asarray(landmarks, np.float64).reshape(5, 2)
        if np.isfinite(marks).all():
            pose = solve_head_pose(marks, GENERIC_FACE_5, camera)
            if pose is not None:
                return pose, "landmarks"
        return None, "none"


# ---------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------


class HeadPoseConfig(PluginConfig):
    """``[SourcePostProcessor_N] Name = head_pose``."""

    use_mesh: bool = Field(
        True,
        alias="UseMesh",
        description="Use the face mesh (needs ai-edge-litert); off: YuNet's 5 landmarks only.",
    )
    mesh_model_path: str = Field(
        MESH_MODEL,
        alias="MeshModelPath",
        description="Face mesh model (relative paths are inside AssetsDirectory).",
        json_schema_extra=form("a path to face_landmark_mediapipe.tflite"),
    )
    mesh_crop_scale: float = Field(
        1.4,
        alias="MeshCropScale",
        ge=1.0,
        le=3.0,
        description="The mesh sees a square this many times the face box.",
        json_schema_extra=form("a number from 1 to 3"),
    )
    min_presence: float = Field(
        0.5,
        alias="MinPresence",
        ge=0.0,
        le=1.0,
        description="Least face-presence probability of the mesh to use its points.",
        json_schema_extra=form("a number from 0 to 1"),
    )
    horizontal_fov: float = Field(
        60.0,
        alias="HorizontalFov",
        gt=1.0,
        lt=179.0,
        description="The camera's horizontal field of view in degrees (for the PnP solve).",
        json_schema_extra=form("degrees between 1 and 179"),
    )
    pitch_offset: float = Field(
        0.0,
        alias="PitchOffset",
        ge=-90.0,
        le=90.0,
        description="Degrees added to every pitch (calibration of a constant bias).",
        json_schema_extra=form("degrees from -90 to 90"),
    )
    relative_to_camera: bool = Field(
        True,
        alias="RelativeToCamera",
        description="Measure the cone from the line of sight to the camera (else from the "
        "camera's axis).",
    )
    yaw_center: float = Field(
        0.0,
        alias="YawCenter",
        ge=-90.0,
        le=90.0,
        description="Yaw of the cone's centre in degrees (+ = the person's left).",
        json_schema_extra=form("degrees from -90 to 90"),
    )
    pitch_center: float = Field(
        0.0,
        alias="PitchCenter",
        ge=-90.0,
        le=90.0,
        description="Pitch of the cone's centre in degrees (+ = up).",
        json_schema_extra=form("degrees from -90 to 90"),
    )
    cone_yaw: float = Field(
        20.0,
        alias="ConeYaw",
        ge=0.0,
        le=90.0,
        description="Half-width of the looking cone in yaw, degrees.",
        json_schema_extra=form("degrees from 0 to 90"),
    )
    cone_pitch: float = Field(
        20.0,
        alias="ConePitch",
        ge=0.0,
        le=90.0,
        description="Half-height of the looking cone in pitch, degrees.",
        json_schema_extra=form("degrees from 0 to 90"),
    )
    max_gap_seconds: float = Field(
        1.0,
        alias="MaxGapSeconds",
        gt=0.0,
        description="Longest gap between two sightings of a track that is credited.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    forget_seconds: float = Field(
        30.0,
        alias="ForgetSeconds",
        gt=0.0,
        description="A track unseen this many seconds is forgotten.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    threads: int = Field(
        1,
        alias="Threads",
        ge=1,
        description="LiteRT threads of the face mesh.",
        json_schema_extra=form("an integer >= 1"),
    )

    def cross_check(self, config: LookoutConfig) -> list[tuple[str | None, str | None, str]]:
        return requires_faces_before(config, self, "head_pose")


@dataclass
class _TrackPose:
    seen: float
    yaw: float = math.nan
    pitch: float = math.nan
    looking: bool = False
    looking_seconds: float = 0.0


@POST_PROCESSORS.register("head_pose")
class HeadPose(PostProcessor):
    STATE = ("tracks", "methods")
    Config = HeadPoseConfig
    phase = "after_tracker"
    needs_image = True

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        settings = plugin_settings(HeadPoseConfig, config)
        super().__init__(settings, source, app)
        self.settings = settings
        mesh: FaceMesh | None = None
        if settings.use_mesh:
            path = model_file(app, settings.mesh_model_path, "MeshModelPath")
            if mesh_available():
                mesh = FaceMesh.shared(path, settings.threads)
            else:
                log.warning(
                    "camera %s: ai-edge-litert is not installed; head_pose uses YuNet's 5 "
                    "landmarks (poorer pitch)", source.id,
                )
        self.estimator = HeadPoseEstimator(
            mesh, settings.mesh_crop_scale, settings.min_presence
        )
        self.tracks: dict[int, _TrackPose] = {}
        self.methods: dict[str, int] = {"mesh": 0, "landmarks": 0, "none": 0}

    def process(self, frame: Frame) -> Frame:
        dets = frame.detections
        n = len(dets)
        s = self.settings
        now = frame.timestamp.timestamp()
        attrs = dets.attributes
        boxes = attrs.get("face_box")
        marks = attrs.get("face_landmarks")
        fresh = attrs.get("face_fresh")
        yaw = np.full(n, np.nan, np.float64)
        pitch = np.full(n, np.nan, np.float64)
        camera = camera_matrix(frame.width, frame.height, s.horizontal_fov)
        ids = dets.track_ids.tolist()
        if boxes is not None:
            for k, tid in enumerate(ids):
                box = np.asarray(boxes[k], np.float64)
                if not np.isfinite(box).all():
                    continue
                state = self.tracks.get(tid) if tid >= 0 else None
                if fresh is None or fresh[k] or state is None:
                    lm = marks[k] if marks is not None else np.full((5, 2), np.nan)
                    pose, method = self.estimator.estimate(frame.image, box, lm, camera)
                    self.methods[method] += 1
                    if pose is not None:
                        yaw[k], pitch[k] = pose[0], pose[1] + s.pitch_offset
                    if state is not None:
                        state.yaw, state.pitch = yaw[k], pitch[k]
                    elif tid >= 0:
                        self.tracks[tid] = _TrackPose(now, yaw[k], pitch[k])
                else:
                    yaw[k], pitch[k] = state.yaw, state.pitch
        rel_yaw, rel_pitch = yaw, pitch
        if s.relative_to_camera and n and boxes is not None:
            fb = np.asarray(boxes, np.float64)
            by, bp = bearings((fb[:, :2] + fb[:, 2:]) * 0.5, camera)
            rel_yaw, rel_pitch = yaw + by, pitch + bp
        looking = in_cone(rel_yaw, rel_pitch, s.yaw_center, s.pitch_center, s.cone_yaw,
                          s.cone_pitch)
        seconds = np.zeros(n, np.float64)
        for k, tid in enumerate(ids):
            if tid < 0:
                continue
            state = self.tracks.get(tid)
            if state is None:
                state = self.tracks[tid] = _TrackPose(now)
            gap = now - state.seen
            if state.looking and 0.0 < gap <= s.max_gap_seconds:
                state.looking_seconds += gap
            state.seen = now
            state.looking = bool(looking[k])
            seconds[k] = state.looking_seconds
        for tid in [t for t, st in self.tracks.items() if now - st.seen > s.forget_seconds]:
            del self.tracks[tid]
        attrs["head_yaw"] = yaw.astype(np.float32)
        attrs["head_pitch"] = pitch.astype(np.float32)
        attrs["looking"] = looking
        attrs["looking_seconds"] = seconds.astype(np.float32)
        if frame.sample_due:
            frame.emit(AttentionSample, people=n, looking=int(np.count_nonzero(looking)))
        return frame
