"""The one record that flows through the pipeline.

Every stage takes a :class:`Frame` and returns it, extended.  People are held as numpy
arrays (one row per person) inside :class:`Detections`, so geometry works on everybody at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import numpy as np

from libs.records import Record, RecordIds

R = TypeVar("R", bound=Record)


def _empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


# Per-person attributes the analytics share (``Detections.attributes``); a stage that
# writes one fills every row, with the "unknown" value where it has no answer:
#   in_violation  bool (N,)          social_distance
#   floor_xy      float32 (N, 2)     social_distance (calibrated cameras), metres
#   zones         object (N,)        zones: tuple of zone names the foot point is in
#   dwell_seconds float32 (N,)       dwell: time in scene so far (gap-bridged); NaN untracked
#   face_box      float32 (N, 4)     faces: x1, y1, x2, y2 in frame pixels; NaN = no face
#   face_score    float32 (N,)       faces; 0 = no face
#   face_landmarks float32 (N, 5, 2) faces: eyes, nose tip, mouth corners; NaN = none
#   mask          int8 (N,)          facemask: 1 mask, 0 no mask, -1 unknown (per track)
#   head_yaw      float32 (N,)       head_pose: degrees, + = the person's left; NaN unknown
#   head_pitch    float32 (N,)       head_pose: degrees, + = up; NaN unknown
#   looking       bool (N,)          head_pose: head points into the configured cone
#   direction     float32 (N, 2)     engagement: unit vector the person faces (image plane)
#   engaged       bool (N,)          engagement: direction points at the camera's target
#   age           float32 (N,)       demographics (opt-in): years; NaN unknown
#   gender        int8 (N,)          demographics: 1 male, 0 female, -1 unknown
#   emotion       int8 (N,)          demographics: index into EMOTIONS, -1 unknown
# What leaves the pipeline: typed records (``Frame.records``, see libs/records.py), made
# with :meth:`Frame.emit`.  Samples are emitted only on frames whose ``sample_due`` is set
# (the pipeline's one sample clock); events as they happen.  ``Frame.metrics`` is only for
# figures stages hand each other on the same frame (``line_counts`` for zones, ...).
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@dataclass
class Detections:
    """People in one frame.

    ``boxes`` are ``(N, 4)`` float32 corner boxes ``x1, y1, x2, y2`` in pixels of the frame.
    ``track_ids`` is ``-1`` until a tracker has assigned an identity.  ``attributes`` holds
    further per-person arrays whose first dimension is ``N`` (for example ``in_violation`` or
    ``floor_xy``); :meth:`select` keeps them aligned.
    """

    boxes: np.ndarray = field(default_factory=lambda: _empty((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: _empty((0,), np.float32))
    classes: np.ndarray = field(default_factory=lambda: _empty((0,), np.int32))
    track_ids: np.ndarray = field(default_factory=lambda: _empty((0,), np.int64))
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        self.classes = (
            np.asarray(self.classes, dtype=np.int32).reshape(n)
            if len(self.classes) == n
            else np.zeros(n, np.int32)
        )
        self.track_ids = (
            np.asarray(self.track_ids, dtype=np.int64).reshape(n)
            if len(self.track_ids) == n
            else np.full(n, -1, np.int64)
        )
        for key, value in self.attributes.items():
            if len(value) != n:
                raise ValueError(f"attribute {key!r} has {len(value)} rows for {n} people")

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, index: np.ndarray) -> Detections:
        """Rows picked by a boolean mask or an integer index array, attributes included."""
        return Detections(
            boxes=self.boxes[index],
            scores=self.scores[index],
            classes=self.classes[index],
            track_ids=self.track_ids[index],
            attributes={k: v[index] for k, v in self.attributes.items()},
        )

    def foot_points(self) -> np.ndarray:
        """``(N, 2)`` bottom-centre of each box: where the person stands."""
        b = self.boxes
        return np.stack([(b[:, 0] + b[:, 2]) * 0.5, b[:, 3]], axis=1)

    def centers(self) -> np.ndarray:
        b = self.boxes
        return np.stack([(b[:, 0] + b[:, 2]) * 0.5, (b[:, 1] + b[:, 3]) * 0.5], axis=1)

    def heights(self) -> np.ndarray:
        return self.boxes[:, 3] - self.boxes[:, 1]


class _ProtectedImage:
    """``image`` of a :class:`Frame`, with edits that wait until the pixels are read.

    A step that must change every copy of the pixels that leaves the pipeline (the
    ``anonymizer``'s blurs) gives :meth:`defer_edit` a function that edits the image in place;
    the first read of ``image`` afterwards applies the waiting edits (on a writeable copy when
    the image is read-only), so every reader behind that step gets edited pixels, and a frame
    nobody reads the pixels of (most frames: the preview and the screenshots take a few a
    second or a minute) costs nothing.  ``height``, ``width`` and ``has_image`` read the shape
    without applying them.
    """

    _image: np.ndarray
    _edits: list[Callable[[np.ndarray], object]] | None = None

    @property
    def image(self) -> np.ndarray:
        edits = self._edits
        if edits:
            self._edits = None
            if not self._image.flags.writeable:
                self._image = self._image.copy()
            for edit in edits:
                edit(self._image)
        return self._image

    @image.setter
    def image(self, value: np.ndarray) -> None:
        # Waiting edits stay: they apply to whatever image is read next.
        self._image = value

    def defer_edit(self, edit: Callable[[np.ndarray], object]) -> None:
        """Have ``edit(image)`` change the image in place before anybody reads it next."""
        if self._edits is None:
            self._edits = []
        self._edits.append(edit)

    @property
    def edits_waiting(self) -> int:
        return len(self._edits or ())


class EarlyBox(NamedTuple):
    """A box a track had in an earlier frame, before the tracker confirmed it."""

    frame: int  # its Frame.index
    timestamp: datetime
    box: np.ndarray  # x1, y1, x2, y2


@dataclass
class Frame(_ProtectedImage):
    """One image of one camera and everything the stages learned about it.

    ``timestamp`` is time-zone aware: wall clock for a live stream, the video's own clock plus
    the configured start time for a recording.  ``records`` is what the frame hands the sinks
    (typed records, :meth:`emit`); ``sample_due`` says whether this frame is a tick of the
    pipeline's sample clock (stages emit their samples on those frames only).  ``metrics``
    holds per-frame figures stages pass each other (``people``, ``violating_people``,
    ``occupancy``, ``line_counts``...); no sink reads it.  ``timings`` holds milliseconds
    spent per stage for performance logging.
    """

    camera_id: str
    index: int
    timestamp: datetime
    image: np.ndarray
    detections: Detections = field(default_factory=Detections)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    early_boxes: dict[int, list[EarlyBox]] = field(default_factory=dict)
    # Run again after a restart only to warm the tracker up: stages run, loggers record
    # nothing (the frame's records are on disk from the run before).
    replay: bool = False
    records: list[Record] = field(default_factory=list)
    sample_due: bool = False
    # The pipeline run's id maker (see RecordIds); a frame made alone gets its own.
    ids: RecordIds = field(default_factory=RecordIds, repr=False)
    # The detections came from the source with their identities (a Redis source of detection
    # messages): the pipeline runs neither the detector nor the tracker on this frame.
    tracked: bool = False

    def emit(self, cls: type[R], timestamp: datetime | None = None, **fields: Any) -> R:
        """Make a camera record of type ``cls`` (stamped with the frame's time unless
        ``timestamp`` is given), append it to :attr:`records` and return it."""
        rec = cls(id=self.ids(cls.KIND, self.index), source="camera", source_id=self.camera_id,
                  timestamp=self.timestamp if timestamp is None else timestamp, **fields)
        self.records.append(rec)
        return rec

    @property
    def has_image(self) -> bool:
        """False for a frame without pixels (:func:`imageless`): only its size is known."""
        return self._image.size > 0

    @property
    def height(self) -> int:
        return int(self._image.shape[0])

    @property
    def width(self) -> int:
        return int(self._image.shape[1])


def imageless(width: int, height: int) -> np.ndarray:
    """The "image" of a frame that has none, only a size: ``(height, width, 0)``, no bytes.
    :attr:`Frame.width` and :attr:`Frame.height` read its shape; :attr:`Frame.has_image` is
    False, and stages that need pixels do not run on it."""
    return np.zeros((height, width, 0), np.uint8)
