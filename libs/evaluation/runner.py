"""Run Lookout's stages over a MOT sequence: the detector alone, the tracker alone on given
detections, or the whole pipeline; results come back as MOT rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from libs.config.models import TrackerConfig
from libs.detectors import Detector
from libs.evaluation.mot import MotBoxes
from libs.evaluation.tracking import Sequence
from libs.frame import Detections, Frame
from libs.trackers import TRACKERS, Tracker

EVAL_START = datetime(2000, 1, 1, tzinfo=UTC)
_BLANK = np.zeros((1, 1, 3), np.uint8)


def frame_time(seq: Sequence, frame: int) -> datetime:
    """Timestamp of 1-based ``frame`` at the sequence's real frame rate."""
    return EVAL_START + timedelta(seconds=(frame - 1) / seq.frame_rate)


def iter_images(seq: Sequence) -> Iterator[tuple[int, np.ndarray]]:
    """``(1-based frame, BGR image)`` for a video or an image folder."""
    seq.require_frames()
    if seq.is_video:
        cap = cv2.VideoCapture(str(seq.frames_path))
        try:
            frame = 0
            while frame < seq.length:
                ok, image = cap.read()
                if not ok:
                    break
                frame += 1
                yield frame, image
        finally:
            cap.release()
    else:
        files = sorted(p for p in Path(seq.frames_path).iterdir()
                       if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        for i, path in enumerate(files[: seq.length], start=1):
            read = cv2.imread(str(path))
            if read is None:
                raise ValueError(f"cannot read {path}")
            yield i, read


def blank_image(seq: Sequence) -> np.ndarray:
    """A black image of the sequence's size (``imWidth`` x ``imHeight``, else its first frame,
    else 1 x 1) for the stages that read the frame size when only detections are given."""
    if seq.width > 0 and seq.height > 0:
        return np.zeros((seq.height, seq.width, 3), np.uint8)
    if seq.has_frames:
        first = next(iter_images(seq), None)
        if first is not None:
            return np.zeros_like(first[1])
    return np.zeros((1, 1, 3), np.uint8)


def detect_sequence(detector: Detector, seq: Sequence) -> MotBoxes:
    """The detector over every frame, as MOT boxes with scores (ids -1)."""
    frames, boxes, scores = [], [], []
    for frame, image in iter_images(seq):
        dets = detector.detect(image)
        frames.append(np.full(len(dets), frame))
        boxes.append(dets.boxes.astype(np.float64))
        scores.append(dets.scores.astype(np.float64))
    return MotBoxes(
        frames=np.concatenate(frames).astype(int) if frames else np.zeros(0, int),
        ids=np.full(sum(len(f) for f in frames), -1),
        boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4)),
        conf=np.concatenate(scores) if scores else np.zeros(0),
    )


def detections_at(det: MotBoxes, frame: int) -> Detections:
    d = det.at(frame)
    return Detections(boxes=d.boxes.astype(np.float32), scores=d.conf.astype(np.float32))


def to_mot_rows(frame: int, dets: Detections) -> np.ndarray:
    b = dets.boxes.astype(np.float64)
    return np.column_stack([
        np.full(len(dets), frame), dets.track_ids, b[:, 0], b[:, 1], b[:, 2] - b[:, 0],
        b[:, 3] - b[:, 1], dets.scores,
    ])


def make_tracker(config: TrackerConfig) -> Tracker:
    return TRACKERS.get(config.name)(config)


def track_detections(
    tracker: Tracker,
    seq: Sequence,
    det: MotBoxes,
    stages: list[Callable[[Frame], Frame]] | None = None,
    after: list[Callable[[Frame], Frame]] | None = None,
) -> tuple[np.ndarray, float, list[Frame]]:
    """Run ``tracker`` (with optional stages before and after it) on ``det`` frame by frame.

    Returns MOT rows ``frame, id, left, top, width, height, score`` of the tracker's output,
    the tracker's mean milliseconds per frame, and the processed frame records (images
    dropped).
    """
    rows = []
    frames: list[Frame] = []
    tracker_s = 0.0
    for frame_no in range(1, seq.length + 1):
        frame = Frame("eval", frame_no - 1, frame_time(seq, frame_no), _BLANK,
                      detections_at(det, frame_no))
        for stage in stages or []:
            frame = stage(frame)
        t0 = time.perf_counter()
        frame = tracker.update(frame)
        tracker_s += time.perf_counter() - t0
        for stage in after or []:
            frame = stage(frame)
        rows.append(to_mot_rows(frame_no, frame.detections))
        frames.append(frame)
    out = np.concatenate(rows) if rows else np.zeros((0, 7))
    return out, 1000.0 * tracker_s / max(1, seq.length), frames
