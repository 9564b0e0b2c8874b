"""Reference line crossings from ground-truth tracks, by the rule of the shared data set:
a crossing is a change of side of an identity's foot point between two consecutive
annotated frames of that identity (no hysteresis), counted when the line's segment spans it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libs.config.models import CountingLine
from libs.evaluation.mot import MotBoxes


@dataclass(frozen=True)
class Crossing:
    frame: int
    track_id: int
    direction: str  # "in" (walker's left to right) or "out"


def side_of(line: CountingLine, points: np.ndarray) -> np.ndarray:
    """Signed cross product: > 0 right of someone walking the line from start to end."""
    a = np.asarray(line.start, np.float64)
    d = np.asarray(line.end, np.float64) - a
    rel = np.asarray(points, np.float64) - a
    return rel[:, 1] * d[0] - rel[:, 0] * d[1]


def reference_crossings(gt: MotBoxes, line: CountingLine) -> list[Crossing]:
    foot = np.stack([(gt.boxes[:, 0] + gt.boxes[:, 2]) / 2, gt.boxes[:, 3]], axis=1)
    s = side_of(line, foot)
    out: list[Crossing] = []
    for tid in np.unique(gt.ids):
        idx = np.flatnonzero(gt.ids == tid)
        idx = idx[np.argsort(gt.frames[idx])]
        sign = np.sign(s[idx])
        for k in range(1, len(idx)):
            if sign[k - 1] != 0 and sign[k] != 0 and sign[k] != sign[k - 1]:
                out.append(Crossing(int(gt.frames[idx[k]]), int(tid),
                                    "in" if sign[k] > 0 else "out"))
    out.sort(key=lambda c: (c.frame, c.track_id))
    return out
