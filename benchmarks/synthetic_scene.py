"""Per-frame cost of the tracker and the people analytics on a crowded synthetic scene.

``n_people`` boxes walk through a 1920x1080 frame: two streams cross the frame in opposite
directions (so people overtake and pass each other) and every walker's velocity random-walks.
Far people (top of the image) are smaller.  Each frame's detections get a little box jitter,
about 2% missed people, two near-duplicate boxes (for the suppression step) and now and then
an oversized box.  The scene is generated first; only the stages are timed:

``objects_filtering`` -> ``tracker`` (IOUTracker) -> ``social_distance_center``
(CenterPointsDistance) -> ``social_distance_calibrated`` (CalibratedDistance, same frame) ->
``occupancy``.  ``total`` is the sum of all five per frame, so it counts distancing twice and
is an upper bound of a one-method pipeline.

None of these stages reads pixels, so the frame image is a zero-copy broadcast view with the
real 1920x1080 shape (the size check needs the frame size).

Run ``python benchmarks/synthetic_scene.py [n_people] [frames]``.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from libs.config.models import (
    ApiConfig,
    AppConfig,
    CoreConfig,
    DetectorConfig,
    LookoutConfig,
    PluginConfig,
    SourceConfig,
    TrackerConfig,
)
from libs.frame import Detections, Frame
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.trackers import TRACKERS

WIDTH, HEIGHT = 1920, 1080
STAGES = (
    "objects_filtering",
    "tracker",
    "social_distance_center",
    "social_distance_calibrated",
    "occupancy",
)

# A floor trapezoid seen in perspective: 20 m wide near the camera, 25 m deep.
CALIBRATION_IMAGE = [(560.0, 320.0), (1360.0, 320.0), (1900.0, 1070.0), (20.0, 1070.0)]
CALIBRATION_FLOOR = [(0.0, 25.0), (20.0, 25.0), (20.0, 0.0), (0.0, 0.0)]
ROI = [(0.0, 250.0), (960.0, 200.0), (1920.0, 250.0), (1920.0, 1080.0), (0.0, 1080.0)]


def _box_heights(foot_y: np.ndarray) -> np.ndarray:
    return 40.0 + 0.2 * foot_y


def make_scene(n_people: int, frames: int, seed: int) -> list[Detections]:
    """Per-frame detections of ``n_people`` walkers (plus noise), before any filtering."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, WIDTH, n_people)
    y = rng.uniform(300.0, HEIGHT - 5.0, n_people)
    direction = np.where(np.arange(n_people) % 2 == 0, 1.0, -1.0)
    vx = direction * rng.uniform(2.0, 6.0, n_people)
    vy = rng.normal(0.0, 1.0, n_people)
    scenes: list[Detections] = []
    for _ in range(frames):
        vx += rng.normal(0.0, 0.3, n_people)
        vy += rng.normal(0.0, 0.3, n_people)
        vy = np.clip(vy, -3.0, 3.0)
        x += vx
        y += vy
        bounce_x = (x < 0.0) | (x > WIDTH)
        vx[bounce_x] *= -1.0
        x = np.clip(x, 0.0, WIDTH)
        bounce_y = (y < 300.0) | (y > HEIGHT - 1.0)
        vy[bounce_y] *= -1.0
        y = np.clip(y, 300.0, HEIGHT - 1.0)

        h = _box_heights(y) + rng.normal(0.0, 1.0, n_people)
        w = 0.4 * h
        jitter = rng.normal(0.0, 1.0, (n_people, 2))
        cx, fy = x + jitter[:, 0], y + jitter[:, 1]
        boxes = np.stack([cx - w / 2, fy - h, cx + w / 2, fy], axis=1)
        scores = rng.uniform(0.4, 1.0, n_people)
        seen = rng.random(n_people) > 0.02
        boxes, scores = boxes[seen], scores[seen]

        dup = rng.choice(len(boxes), size=min(2, len(boxes)), replace=False)
        dup_boxes = boxes[dup] + rng.uniform(-0.3, 0.3, (len(dup), 4))
        extra = [dup_boxes]
        extra_scores = [scores[dup] * 0.9]
        if rng.random() < 0.1:
            extra.append(np.array([[100.0, 50.0, 1700.0, 1000.0]]))
            extra_scores.append(np.array([0.6]))
        boxes = np.concatenate([boxes, *extra])
        scores = np.concatenate([scores, *extra_scores])
        scenes.append(Detections(boxes=boxes, scores=scores))
    return scenes


def _app(source: SourceConfig, post: list[PluginConfig]) -> LookoutConfig:
    return LookoutConfig(
        path=Path("synthetic.ini"),
        app=AppConfig(),
        api=ApiConfig(),
        core=CoreConfig(),
        detector=DetectorConfig(),
        tracker=TrackerConfig.model_validate({"Name": "IOUTracker"}),
        sources=[source],
        areas=[],
        source_post_processors=post,
        source_loggers=[],
        area_loggers=[],
        periodic_tasks=[],
    )


def _stages() -> dict[str, PostProcessor]:
    source = SourceConfig.model_validate(
        {
            "Id": "synthetic",
            "VideoPath": "synthetic.avi",
            "ROI": ROI,
            "CalibrationImagePoints": CALIBRATION_IMAGE,
            "CalibrationFloorPoints": CALIBRATION_FLOOR,
            "OccupancyThreshold": 80,
        }
    )
    filt_cls = POST_PROCESSORS.get("objects_filtering")
    dist_cls = POST_PROCESSORS.get("social_distance")
    occ_cls = POST_PROCESSORS.get("occupancy")
    filt_cfg = filt_cls.Config.model_validate({"Name": "objects_filtering"})
    center_cfg = dist_cls.Config.model_validate(
        {"Name": "social_distance", "DefaultDistMethod": "CenterPointsDistance"}
    )
    calib_cfg = dist_cls.Config.model_validate(
        {"Name": "social_distance", "DefaultDistMethod": "CalibratedDistance"}
    )
    occ_cfg = occ_cls.Config.model_validate({"Name": "occupancy"})
    app = _app(source, [filt_cfg, center_cfg, occ_cfg])
    return {
        "objects_filtering": filt_cls(filt_cfg, source, app),
        "social_distance_center": dist_cls(center_cfg, source, app),
        "social_distance_calibrated": dist_cls(calib_cfg, source, app),
        "occupancy": occ_cls(occ_cfg, source, app),
    }


def time_tracker_and_postprocessing(
    n_people: int = 100, frames: int = 300, seed: int = 0, tracker_name: str = "IOUTracker"
) -> dict[str, float]:
    """Milliseconds per frame of each stage: ``<stage>_median_ms`` and ``<stage>_mean_ms``
    for every stage of :data:`STAGES` and ``total``; also ``people_mean`` (people per frame
    after filtering) and ``tracks_started`` (ids handed out)."""
    scene = make_scene(n_people, frames, seed)
    stages = _stages()
    tracker = TRACKERS.get(tracker_name)(TrackerConfig.model_validate({"Name": tracker_name}))
    image = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (HEIGHT, WIDTH, 3))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    times = {name: np.zeros(frames) for name in STAGES}
    people = np.zeros(frames)
    max_id = 0
    clock = time.perf_counter
    for k, dets in enumerate(scene):
        frame = Frame(
            camera_id="synthetic",
            index=k,
            timestamp=start + timedelta(seconds=k / 10),
            image=image,
            detections=dets,
        )
        t0 = clock()
        frame = stages["objects_filtering"].process(frame)
        t1 = clock()
        frame = tracker.update(frame)
        t2 = clock()
        frame = stages["social_distance_center"].process(frame)
        t3 = clock()
        frame = stages["social_distance_calibrated"].process(frame)
        t4 = clock()
        frame = stages["occupancy"].process(frame)
        t5 = clock()
        for name, (a, b) in zip(
            STAGES, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)], strict=True
        ):
            times[name][k] = (b - a) * 1000.0
        people[k] = len(frame.detections)
        if len(frame.detections):
            max_id = max(max_id, int(frame.detections.track_ids.max()))
    total = sum(times.values())
    result: dict[str, float] = {}
    for name, values in [*times.items(), ("total", total)]:
        result[f"{name}_median_ms"] = float(np.median(values))
        result[f"{name}_mean_ms"] = float(np.mean(values))
    result["people_mean"] = float(people.mean())
    result["tracks_started"] = float(max_id)
    return result


def main(argv: list[str]) -> None:
    n_people = int(argv[1]) if len(argv) > 1 else 100
    frames = int(argv[2]) if len(argv) > 2 else 300
    result = time_tracker_and_postprocessing(n_people=n_people, frames=frames)
    print(
        f"synthetic scene: {n_people} people, {frames} frames, "
        f"{result['people_mean']:.1f} people per frame after filtering, "
        f"{result['tracks_started']:.0f} track ids"
    )
    print(f"{'stage':<28}{'median ms':>10}{'mean ms':>10}")
    for name in (*STAGES, "total"):
        print(f"{name:<28}{result[name + '_median_ms']:>10.3f}{result[name + '_mean_ms']:>10.3f}")


if __name__ == "__main__":
    main(sys.argv)
