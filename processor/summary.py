"""The records the pipeline itself makes from every frame: the frame summary (each frame)
and the ``objects_log`` sample (each tick of the sample clock).

They read the figures the stages left on the frame (``people``, ``violating_people``,
``violating_pairs``, ``violating_pair_indexes``, ``occupancy``... in ``frame.metrics``, the
``in_violation`` attribute) with these fall-backs when a stage did not run: people are the
detections, violations come from ``in_violation`` (or are 0), occupancy equals people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from libs.frame import Frame
from libs.records import DetectedObject, FrameSummary, LineCount, ObjectsSample, ZoneCount


@dataclass(frozen=True)
class Figures:
    """The per-frame numbers every sink shows, with the fall-backs applied."""

    people: int
    violating_people: int
    violating_pairs: int
    occupancy: int
    environment_score: float
    in_violation: np.ndarray
    pair_indexes: list[tuple[int, int]] = field(default_factory=list)


def _metric_int(metrics: dict[str, Any], key: str, default: int) -> int:
    value = metrics.get(key)
    return default if value is None else int(value)


def frame_figures(frame: Frame) -> Figures:
    """People, violations and occupancy of ``frame`` (module docstring)."""
    det = frame.detections
    n = len(det)
    flags = det.attributes.get("in_violation")
    in_violation = (
        np.asarray(flags, dtype=bool).reshape(n) if flags is not None else np.zeros(n, bool)
    )
    metrics = frame.metrics
    raw_pairs = metrics.get("violating_pair_indexes")
    pairs = [(int(i), int(j)) for i, j in raw_pairs] if raw_pairs is not None else []
    people = _metric_int(metrics, "people", n)
    violating = _metric_int(metrics, "violating_people", int(in_violation.sum()))
    violating_pairs = _metric_int(metrics, "violating_pairs", len(pairs))
    occupancy = _metric_int(metrics, "occupancy", people)
    score = 1.0 if people <= 0 else min(1.0, max(0.0, 1.0 - violating / people))
    return Figures(people, violating, violating_pairs, occupancy, score, in_violation, pairs)


def detected_objects(frame: Frame, in_violation: np.ndarray) -> tuple[DetectedObject, ...]:
    """Everyone in the frame: track id (-1 untracked), box in whole pixels, score to three
    decimals, whether they are in a distancing violation."""
    det = frame.detections
    boxes = np.rint(det.boxes).astype(np.int64).tolist()
    scores = np.round(det.scores.astype(np.float64), 3).tolist()
    ids = det.track_ids.tolist()
    flags = in_violation.tolist()
    return tuple(
        DetectedObject(id=ids[k], bbox=tuple(boxes[k]), score=scores[k], violating=flags[k])
        for k in range(len(det))
    )


def summary_records(frame: Frame) -> None:
    """Emit the frame summary, and the ``objects_log`` sample on a sample-clock tick."""
    fig = frame_figures(frame)
    m = frame.metrics
    threshold = m.get("occupancy_threshold")
    estimated = m.get("estimated_occupancy")
    min_cm = m.get("min_distance_cm")
    frame.emit(
        FrameSummary,
        frame=frame.index,
        detected_objects=fig.people,
        violating_objects=fig.violating_people,
        violating_pairs=fig.violating_pairs,
        occupancy=fig.occupancy,
        occupancy_threshold=int(threshold) if threshold is not None else 0,
        environment_score=fig.environment_score,
        min_distance_cm=None if min_cm is None else float(min_cm),
        estimated_occupancy=None if estimated is None else int(estimated),
        line_counts={name: LineCount(in_count=int(c.get("in", 0)), out_count=int(c.get("out", 0)))
                     for name, c in (m.get("line_counts") or {}).items()},
        zone_counts={name: ZoneCount(people=int(c["people"]), entries=int(c["entries"]))
                     for name, c in (m.get("zone_counts") or {}).items()},
    )
    if frame.sample_due:
        frame.emit(
            ObjectsSample,
            frame=frame.index,
            detected_objects=fig.people,
            violating_objects=fig.violating_people,
            violating_pairs=fig.violating_pairs,
            occupancy=fig.occupancy,
            environment_score=round(fig.environment_score, 4),
            detections=detected_objects(frame, fig.in_violation),
            violations_indexes=tuple(fig.pair_indexes),
        )
