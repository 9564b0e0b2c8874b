"""Acceptance figures on the real PETS09-S2L1 clip with the real detector."""

from __future__ import annotations

import csv
import json
from datetime import timedelta

import numpy as np

from libs.evaluation.mot import DetectionScore, load_mot, match_frame
from libs.records import LineCrossing
from tests.conftest import PETS


def test_all_frames_with_video_clock(pets_pipeline_run: dict) -> None:
    ts = pets_pipeline_run["timestamps"]
    assert len(ts) == 795
    # FrameRate = 7 overrides the container's 10 fps: frame k is k/7 s after StartTime.
    start = pets_pipeline_run["config"].sources[0].start_time
    assert ts[0] == start
    assert ts[700] - ts[0] == timedelta(seconds=100)


def test_detection_recall_at_iou_05(pets_pipeline_run: dict) -> None:
    gt = load_mot(PETS / "gt" / "gt.txt")
    total = DetectionScore()
    for index, boxes in enumerate(pets_pipeline_run["raw"]):
        g = gt.at(index + 1)
        scored = g.boxes[g.conf == 1]
        ignore = g.boxes[g.conf == 0]
        total.add(match_frame(scored, boxes.astype(np.float64), 0.5, ignore))
    print(f"PETS09-S2L1 detection: recall {total.recall:.3f} precision {total.precision:.3f}")
    assert total.true_positives + total.false_negatives == 4476
    assert total.recall >= 0.85, f"recall {total.recall:.3f}"


def test_people_per_frame_mae(pets_pipeline_run: dict) -> None:
    with open(PETS / "per_frame.csv") as fh:
        truth = [int(r["people_all"]) for r in csv.DictReader(fh)]
    counts = [int(f.metrics["occupancy"]) for f in pets_pipeline_run["frames"]]
    assert len(counts) == len(truth) == 795
    mae = float(np.mean(np.abs(np.array(counts) - np.array(truth))))
    print(f"PETS09-S2L1 people per frame: MAE {mae:.3f}")
    assert mae <= 0.7, f"MAE {mae:.3f}"


def test_line_crossings_end_to_end(pets_pipeline_run: dict) -> None:
    """The shipped config counts the x=384 line within 10% of the 32 ground-truth events."""
    ref = json.loads((PETS / "line_crossings_x384.json").read_text())
    events = [r for f in pets_pipeline_run["frames"] for r in f.records
              if isinstance(r, LineCrossing)]
    total = len(events)
    print(f"PETS09-S2L1 line x=384: {total} crossings (reference {ref['events_total']}), "
          f"in {sum(e.direction == 'in' for e in events)} (ref. {ref['events_R_to_L']})")
    assert abs(total - ref["events_total"]) <= 0.1 * ref["events_total"]
