"""Acceptance on real data: PETS 2009 S2.L1 ground truth with metric ground-plane positions.

(a) Four calibration clicks (``ground_plane.json`` reference points) must turn GT foot points
    into floor positions whose same-frame pair distances match the GT world pair distances:
    median absolute error <= 0.10 m.
(b) The social_distance step (CalibratedDistance, 2 m) fed the GT boxes frame by frame must
    say "some pair closer than 2 m" on the same frames as ``per_frame.csv`` (>= 95 %).

The data lives in ``<repo>/../shared/data`` or under ``$LOOKOUT_ASSETS_DIR/data``.
"""

from __future__ import annotations

import csv
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from libs.calibration import FloorCalibration
from libs.config.models import (
    ApiConfig,
    AppConfig,
    CoreConfig,
    DetectorConfig,
    LookoutConfig,
    SourceConfig,
    TrackerConfig,
)
from libs.frame import Detections, Frame
from libs.geometry import pairwise_distances
from libs.post_processors import POST_PROCESSORS

MAX_MEDIAN_PAIR_ERROR_M = 0.10
MIN_AGREEMENT = 0.95
EXPECTED_FRAMES = 795


def assets_dir() -> Path:
    env = os.environ.get("LOOKOUT_ASSETS_DIR")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[1].parent / "shared"


PETS = assets_dir() / "data" / "pets09_s2l1"


@pytest.fixture(scope="module")
def ground_plane() -> dict[str, list[list[float]]]:
    data: dict[str, list[list[float]]] = json.loads((PETS / "ground_plane.json").read_text())
    return data


@pytest.fixture(scope="module")
def gt() -> np.ndarray:
    """``frame, id, left, top, width, height, flag, class, visibility`` of every GT row."""
    return np.loadtxt(PETS / "gt" / "gt.txt", delimiter=",", ndmin=2)


@pytest.fixture(scope="module")
def gt_world(gt: np.ndarray) -> np.ndarray:
    """World x, y (metres) aligned with the rows of gt.txt, matched on (frame, id)."""
    rows = np.loadtxt(PETS / "gt" / "gt_world.txt", delimiter=",", comments="#", ndmin=2)
    by_key = {(int(f), int(i)): (x, y) for f, i, x, y in rows}
    assert len(by_key) == len(rows), "gt_world.txt repeats a (frame, id)"
    return np.array([by_key[(int(f), int(i))] for f, i in gt[:, :2]])


def foot_points(gt_rows: np.ndarray) -> np.ndarray:
    return np.stack([gt_rows[:, 2] + gt_rows[:, 4] / 2.0, gt_rows[:, 3] + gt_rows[:, 5]], axis=1)


def test_pair_distances_from_four_clicks_match_ground_truth(
    ground_plane: dict[str, list[list[float]]], gt: np.ndarray, gt_world: np.ndarray
) -> None:
    cal = FloorCalibration.from_points(
        ground_plane["reference_points_image_px"], ground_plane["reference_points_world_m"]
    )
    floor = cal.to_floor(foot_points(gt))
    assert np.isfinite(floor).all()
    errors = []
    frames = gt[:, 0].astype(int)
    for f in np.unique(frames):
        rows = np.flatnonzero(frames == f)
        if len(rows) < 2:
            continue
        upper = np.triu_indices(len(rows), k=1)
        measured = pairwise_distances(floor[rows])[upper]
        truth = pairwise_distances(gt_world[rows])[upper]
        errors.append(np.abs(measured - truth))
    err = np.concatenate(errors)
    median = float(np.median(err))
    p90 = float(np.percentile(err, 90))
    print(
        f"\nPETS09-S2L1 pair distances ({len(err)} same-frame pairs): median |error| "
        f"{median:.4f} m, 90th percentile {p90:.4f} m"
    )
    assert len(err) > 10000
    assert median <= MAX_MEDIAN_PAIR_ERROR_M, (
        f"median pair-distance error {median:.4f} m > {MAX_MEDIAN_PAIR_ERROR_M} m"
    )


def _reference_any_pair_below_2m() -> dict[int, bool]:
    with (PETS / "per_frame.csv").open(newline="") as fh:
        return {int(r["frame"]): int(r["pairs_lt_2m"]) > 0 for r in csv.DictReader(fh)}


def test_social_distance_2m_violations_agree_with_ground_truth(
    ground_plane: dict[str, list[list[float]]], gt: np.ndarray
) -> None:
    reference = _reference_any_pair_below_2m()
    assert len(reference) == EXPECTED_FRAMES
    source = SourceConfig(
        Id="pets",
        VideoPath="data/pets09_s2l1/vtest.avi",
        DistMethod="CalibratedDistance",
        CalibrationImagePoints=[tuple(p) for p in ground_plane["reference_points_image_px"]],
        CalibrationFloorPoints=[tuple(p) for p in ground_plane["reference_points_world_m"]],
    )
    cls = POST_PROCESSORS.get("social_distance")
    config = cls.Config.model_validate({"Name": "social_distance", "DistThreshold": 200})
    app = LookoutConfig(
        path=Path("pets.ini"),
        app=AppConfig(),
        api=ApiConfig(),
        core=CoreConfig(),
        detector=DetectorConfig(),
        tracker=TrackerConfig(Name="IOUTracker"),
        sources=[source],
        areas=[],
        source_post_processors=[config],
        source_loggers=[],
        area_loggers=[],
        periodic_tasks=[],
    )
    stage = cls(config, source, app)
    image = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (576, 768, 3))
    start = datetime(2009, 3, 1, 10, 0, tzinfo=UTC)
    frames = gt[:, 0].astype(int)
    agree = 0
    for f in sorted(reference):
        rows = gt[frames == f]
        boxes = np.stack(
            [rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]], axis=1
        )
        frame = Frame(
            camera_id="pets",
            index=f,
            timestamp=start + timedelta(seconds=(f - 1) / 7),
            image=image,
            detections=Detections(boxes=boxes, scores=np.ones(len(boxes)), track_ids=rows[:, 1]),
        )
        out = stage.process(frame)
        assert out.metrics["dist_method"] == "CalibratedDistance"
        assert out.metrics["people"] == len(rows)
        agree += int((out.metrics["violating_pairs"] > 0) == reference[f])
    agreement = agree / len(reference)
    print(
        f"\nPETS09-S2L1 'a pair closer than 2 m': {agree}/{len(reference)} frames agree "
        f"({100 * agreement:.2f} %)"
    )
    assert agreement >= MIN_AGREEMENT, (
        f"2 m violation agreement {100 * agreement:.2f} % < {100 * MIN_AGREEMENT:.0f} %"
    )
