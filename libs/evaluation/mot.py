"""MOTChallenge files: ``gt.txt`` / ``det.txt`` rows ``frame,id,left,top,width,height,conf,...``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from libs.geometry import iou_matrix


@dataclass
class MotBoxes:
    """Rows of a MOT file: ``frames`` (1-based), ``ids``, corner ``boxes``, ``conf``."""

    frames: np.ndarray
    ids: np.ndarray
    boxes: np.ndarray
    conf: np.ndarray

    def at(self, frame: int) -> MotBoxes:
        m = self.frames == frame
        return MotBoxes(self.frames[m], self.ids[m], self.boxes[m], self.conf[m])

    def __len__(self) -> int:
        return len(self.frames)


def load_mot(path: Path | str) -> MotBoxes:
    data = np.loadtxt(path, delimiter=",", ndmin=2)
    boxes = data[:, 2:6].copy()
    boxes[:, 2] += boxes[:, 0]
    boxes[:, 3] += boxes[:, 1]
    return MotBoxes(
        frames=data[:, 0].astype(int),
        ids=data[:, 1].astype(int),
        boxes=boxes,
        conf=data[:, 6],
    )


@dataclass
class DetectionScore:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        d = self.true_positives + self.false_positives
        return self.true_positives / d if d else 1.0

    @property
    def recall(self) -> float:
        d = self.true_positives + self.false_negatives
        return self.true_positives / d if d else 1.0

    def add(self, other: DetectionScore) -> None:
        self.true_positives += other.true_positives
        self.false_positives += other.false_positives
        self.false_negatives += other.false_negatives


def match_frame(
    gt: np.ndarray,
    det: np.ndarray,
    iou_threshold: float = 0.5,
    ignore: np.ndarray | None = None,
) -> DetectionScore:
    """One-to-one matching (Hungarian on IoU) of detections to scored ground truth.

    Detections left unmatched that overlap an ``ignore`` box (MOT flag 0) by IoU >= the
    threshold are neither true nor false positives, as the MOT tools do.
    """
    matched_det = np.zeros(len(det), bool)
    tp = 0
    if len(gt) and len(det):
        iou = iou_matrix(gt, det)
        rows, cols = linear_sum_assignment(-iou)
        ok = iou[rows, cols] >= iou_threshold
        tp = int(ok.sum())
        matched_det[cols[ok]] = True
    unmatched = ~matched_det
    if ignore is not None and len(ignore) and unmatched.any():
        over = iou_matrix(det[unmatched], ignore).max(axis=1) >= iou_threshold
        idx = np.flatnonzero(unmatched)[over]
        unmatched[idx] = False
    return DetectionScore(tp, int(unmatched.sum()), len(gt) - tp)
