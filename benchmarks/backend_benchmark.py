"""Detector backends side by side: detector milliseconds per frame and end-to-end fps.

    python benchmarks/backend_benchmark.py [--config config-x86.ini] [--rounds 3]
                                           [--backends x86,openvino,tflite]

For every backend that runs on this machine (default: ``x86`` ONNX Runtime, ``openvino``
OpenVINO CPU f32, ``tflite`` LiteRT CPU with the fp16 ``.tflite`` file), the configuration with
only ``[Detector] Device`` (and the family's default model file of that backend's format)
changed:

* detector ms/frame: ``detector.detect`` (preprocessing, inference, decoding) over every frame
  of the clip decoded into memory beforehand, the median over frames;
* end-to-end fps: what ``lookout run`` does for one camera, the pass of
  ``benchmarks/pipeline_benchmark.py`` (decoding in its reader thread, detector, filters,
  tracker, analytics, loggers writing to a temporary data directory).

The machine is noisy: each round runs every backend once (bare pass, then pipeline pass), the
order rotating from round to round, and the figures printed are the medians over rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.pipeline_benchmark import decode_all, pipeline_pass  # noqa: E402
from libs.config import load_config  # noqa: E402
from libs.config.models import LookoutConfig  # noqa: E402
from libs.detectors import Detector, create_detector, resolve_model_path  # noqa: E402


def backend_config(base: Path, device: str, folder: Path) -> LookoutConfig:
    """``base`` with ``[Detector] Device = device`` and ``ModelPath`` emptied (the family's
    default file of the backend's format), written into ``folder``; assets stay where the
    base file's are (LOOKOUT_ASSETS_DIR)."""
    lines, section = [], ""
    for line in base.read_text().splitlines():
        if line.startswith("["):
            section = line.strip()
        if section == "[Detector]" and line.startswith("Device ="):
            line = f"Device = {device}"
        elif section == "[Detector]" and line.startswith("ModelPath ="):
            line = "ModelPath ="
        lines.append(line)
    path = folder / f"config-{device}.ini"
    path.write_text("\n".join(lines) + "\n")
    return load_config(path)


def detector_ms(detector: Detector, frames: list) -> float:
    """Median milliseconds of one ``detect`` over ``frames``."""
    times = []
    for image in frames:
        t0 = time.perf_counter()
        detector.detect(image)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config-x86.ini"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backends", default="x86,openvino,tflite",
                    help="comma-separated [Detector] Device values")
    args = ap.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    base = Path(args.config).resolve()
    base_config = load_config(base)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["LOOKOUT_ASSETS_DIR"] = str(base_config.assets_dir)
        os.environ["LOOKOUT_DATA_DIR"] = str(folder / "data")
        configs = {b: backend_config(base, b, folder) for b in backends}
        detectors = {b: create_detector(configs[b]) for b in backends}
        frames = decode_all(base_config)
        for det in detectors.values():  # warm-up
            for image in frames[:20]:
                det.detect(image)
        ms: dict[str, list[float]] = {b: [] for b in backends}
        fps: dict[str, list[float]] = {b: [] for b in backends}
        count = 0
        for r in range(args.rounds):
            order = backends[r % len(backends):] + backends[:r % len(backends)]
            for b in order:
                ms[b].append(detector_ms(detectors[b], frames))
                rate, count, _ = pipeline_pass(configs[b], detectors[b])
                fps[b].append(rate)
            print(f"round {r + 1} ({', '.join(order)}): " + "; ".join(
                f"{b} {ms[b][-1]:.1f} ms, {fps[b][-1]:.1f} fps" for b in backends), flush=True)
        models = {b: resolve_model_path(configs[b]).name for b in backends}
        del frames

    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, OpenCV {cv2.__version__}")
    print(f"clip: {base_config.sources[0].video_path} ({count} frames), config {base.name}, "
          f"{args.rounds} rounds, medians")
    print("| backend | model file | detector ms/frame | end-to-end fps |")
    print("| --- | --- | --- | --- |")
    for b in backends:
        print(f"| `{b}` | `{models[b]}` | {statistics.median(ms[b]):.1f} | "
              f"{statistics.median(fps[b]):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
