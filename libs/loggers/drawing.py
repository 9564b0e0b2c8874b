"""Drawing of detections, regions and status text on BGR images (OpenCV).

Pure functions on a numpy image, kept apart from the loggers' logic so that previews,
screenshots, notification pictures and debugging tools draw the same way.  Every function
draws in place; :func:`annotate` composes them and returns the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

Color = tuple[int, int, int]

GREEN: Color = (0, 200, 0)
RED: Color = (0, 0, 255)
ROI_COLOR: Color = (255, 200, 0)
WHITE: Color = (255, 255, 255)
PANEL: Color = (32, 32, 32)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class Annotations:
    """What to draw on one image.  Arrays are per person, aligned with ``boxes``."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    track_ids: np.ndarray | None = None
    in_violation: np.ndarray | None = None
    pair_indexes: Sequence[tuple[int, int]] = ()
    roi: Sequence[tuple[float, float]] = ()
    text_lines: Sequence[str] = ()


def line_thickness(image: np.ndarray) -> int:
    """A stroke width that stays visible on large images and neat on small ones."""
    return max(1, round(min(image.shape[0], image.shape[1]) / 360))


def draw_roi(
    image: np.ndarray,
    polygon: Sequence[tuple[float, float]],
    color: Color = ROI_COLOR,
    thickness: int | None = None,
) -> None:
    """The region of interest as a closed polygon; nothing for fewer than 3 points."""
    if len(polygon) < 3:
        return
    pts = np.round(np.asarray(polygon, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(image, [pts], True, color, thickness or line_thickness(image), cv2.LINE_AA)


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    in_violation: np.ndarray | None = None,
    track_ids: np.ndarray | None = None,
    ok_color: Color = GREEN,
    violation_color: Color = RED,
) -> None:
    """People's boxes: ``violation_color`` where ``in_violation``, labelled with track ids
    (ids below 0, untracked people, get no label)."""
    t = line_thickness(image)
    scale = 0.45 * t
    for k, box in enumerate(np.round(np.asarray(boxes, dtype=np.float64)).astype(np.int32)):
        bad = in_violation is not None and bool(in_violation[k])
        color = violation_color if bad else ok_color
        x1, y1, x2, y2 = (int(v) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), color, t, cv2.LINE_AA)
        if track_ids is not None and int(track_ids[k]) >= 0:
            label = str(int(track_ids[k]))
            (w, h), base = cv2.getTextSize(label, FONT, scale, t)
            top = max(0, y1 - h - base - 2)
            cv2.rectangle(image, (x1, top), (x1 + w + 4, top + h + base + 2), color, -1)
            cv2.putText(image, label, (x1 + 2, top + h + 1), FONT, scale, WHITE, t, cv2.LINE_AA)


def box_centers(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) * 0.5, (b[:, 1] + b[:, 3]) * 0.5], axis=1)


def draw_pair_lines(
    image: np.ndarray,
    boxes: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    color: Color = RED,
) -> None:
    """A line between the box centres of each pair ``(i, j)``; out-of-range pairs are
    skipped."""
    centers = np.round(box_centers(boxes)).astype(np.int32)
    n = len(centers)
    t = line_thickness(image)
    for i, j in pairs:
        if 0 <= i < n and 0 <= j < n:
            a = (int(centers[i][0]), int(centers[i][1]))
            b = (int(centers[j][0]), int(centers[j][1]))
            cv2.line(image, a, b, color, t, cv2.LINE_AA)


def draw_text_panel(
    image: np.ndarray, lines: Sequence[str], origin: tuple[int, int] = (6, 6)
) -> None:
    """Lines of text on a dark panel in the top-left corner."""
    if not lines:
        return
    t = line_thickness(image)
    scale = 0.5 * t
    sizes = [cv2.getTextSize(text, FONT, scale, t) for text in lines]
    line_h = max(h + base for (_, h), base in sizes) + 4 * t
    width = max(w for (w, _), _ in sizes) + 8 * t
    x0, y0 = origin
    cv2.rectangle(image, (x0, y0), (x0 + width, y0 + line_h * len(lines) + 2 * t), PANEL, -1)
    for k, text in enumerate(lines):
        y = y0 + line_h * (k + 1) - 2 * t
        cv2.putText(image, text, (x0 + 4 * t, y), FONT, scale, WHITE, t, cv2.LINE_AA)


def annotate(image: np.ndarray, annotations: Annotations) -> np.ndarray:
    """Draw ROI, violation lines, boxes and text on ``image`` (in place) and return it."""
    draw_roi(image, annotations.roi)
    draw_pair_lines(image, annotations.boxes, annotations.pair_indexes)
    draw_boxes(image, annotations.boxes, annotations.in_violation, annotations.track_ids)
    draw_text_panel(image, annotations.text_lines)
    return image
