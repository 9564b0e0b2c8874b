"""End-to-end pipeline speed against the bare detector, measured in one run.

    python benchmarks/pipeline_benchmark.py [--config config-x86.ini] [--rounds 2]

On vtest.avi (795 frames):

* bare detector fps: ``detector.detect`` alone over frames decoded into memory beforehand;
* pipeline fps: what ``lookout run`` does for one camera (decoding in its reader thread,
  detector, filters, tracker, analytics, loggers writing to a temporary data directory),
  from the first frame read to the last frame logged;
* their ratio, and the mean milliseconds of every stage;
* tracker + post-processing on a synthetic scene of 100 people (ms per frame).

Rounds alternate bare and pipeline passes so both see the same machine state; the figures
printed are the medians over rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.synthetic_scene import time_tracker_and_postprocessing  # noqa: E402
from libs.config import load_config  # noqa: E402
from libs.config.models import LookoutConfig  # noqa: E402
from libs.detectors import Detector, create_detector  # noqa: E402
from libs.frame import Frame  # noqa: E402
from processor.pipeline import CameraPipeline  # noqa: E402
from processor.sources import open_source  # noqa: E402


def decode_all(config: LookoutConfig) -> list:
    path = config.asset_path(config.sources[0].video_path)
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def bare_pass(detector: Detector, frames: list) -> float:
    t0 = time.perf_counter()
    for image in frames:
        detector.detect(image)
    return len(frames) / (time.perf_counter() - t0)


class CountingDetector:
    """The real detector, counting its calls (to show it runs once per frame)."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.calls = 0

    def detect(self, image):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner.detect(image)

    def close(self) -> None:
        self.inner.close()


def enable_every_analytic(path: Path, out: Path) -> Path:
    """A copy of the config with every [SourcePostProcessor_N] enabled."""
    text, section = [], ""
    for line in path.read_text().splitlines():
        if line.startswith("["):
            section = line
        if section.startswith("[SourcePostProcessor_") and line.strip() == "Enabled = False":
            line = "Enabled = True"
        text.append(line)
    out.write_text("\n".join(text) + "\n")
    return out


def pipeline_pass(config: LookoutConfig, detector: Detector) -> tuple[float, int, dict[str, float]]:
    src = config.sources[0]
    counting = CountingDetector(detector)
    pipeline = CameraPipeline(config, src, detector=counting)  # type: ignore[arg-type]
    source = open_source(config, src)
    sums: dict[str, float] = defaultdict(float)
    n = 0
    t0 = time.perf_counter()
    try:
        while (sf := source.read()) is not None:
            frame = pipeline.process(Frame(src.id, sf.index, sf.timestamp, sf.image))
            for k, v in frame.timings.items():
                sums[k] += v
            n += 1
    finally:
        source.close()
        pipeline.close()  # flushes the loggers: part of the work
    elapsed = time.perf_counter() - t0
    if counting.calls != n:
        raise RuntimeError(f"the detector ran {counting.calls} times for {n} frames")
    return n / elapsed, n, {k: v / n for k, v in sums.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config-x86.ini"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--all-analytics", action="store_true",
                    help="enable every post-processor section (faces, mask, head pose, "
                    "demographics...) to show what each one adds per frame")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LOOKOUT_DATA_DIR"] = tmp
        config_path = Path(args.config).resolve()
        if args.all_analytics:
            config_path = enable_every_analytic(config_path, config_path.parent /
                                                ".benchmark-all-analytics.ini")
        try:
            config = load_config(config_path)
        finally:
            if args.all_analytics:
                config_path.unlink()
        detector = create_detector(config)
        frames = decode_all(config)
        for image in frames[:20]:  # warm-up
            detector.detect(image)
        bare, pipe, stage_runs = [], [], []
        count = 0
        for r in range(args.rounds):
            bare.append(bare_pass(detector, frames))
            fps, count, stages = pipeline_pass(config, detector)
            pipe.append(fps)
            stage_runs.append(stages)
            print(f"round {r + 1}: bare {bare[-1]:.1f} fps, pipeline {fps:.1f} fps", flush=True)
        del frames

    bare_fps = statistics.median(bare)
    pipe_fps = statistics.median(pipe)
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, OpenCV {cv2.__version__}")
    print(f"clip: {config.sources[0].video_path} ({count} frames)")
    print(f"bare detector fps:   {bare_fps:8.1f}")
    print(f"pipeline fps:        {pipe_fps:8.1f}")
    print(f"ratio pipeline/bare: {pipe_fps / bare_fps:8.3f}   (target >= 0.85)")
    print("the detector ran once per frame in every pipeline pass")
    print("per-stage mean ms (pipeline):")
    for stage in stage_runs[0]:
        ms = statistics.median(run[stage] for run in stage_runs)
        print(f"  {stage:<20} {ms:8.3f}")

    for name in (config.tracker.name, "IOUTracker") if config.tracker.name != "IOUTracker" \
            else ("IOUTracker",):
        synth = time_tracker_and_postprocessing(n_people=100, frames=300, tracker_name=name)
        print(f"synthetic scene, 100 people (tracker {name} + post-processing):")
        for key, value in synth.items():
            print(f"  {key:<40} {value:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
