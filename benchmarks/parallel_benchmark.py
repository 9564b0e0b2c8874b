"""How much of the detector's best throughput the processor turns into frames, in one run.

    python benchmarks/parallel_benchmark.py [--config config-x86.ini] [--cameras 4] [--rounds 2]

Each round, in this order, on this machine:

* **detector best throughput**: ``detect`` (letterbox, inference, decoding, NMS) over the first
  300 frames of vtest.avi decoded into memory beforehand, the best of one session with every
  core and of one one-thread session per core run from as many threads
  (:class:`libs.detectors.pool.DetectorPool`);
* **one recording**: the real processor (supervisor and worker process, the configuration as
  shipped with its analytics and loggers, the thread budget's choice) on vtest.avi; fps is the
  frames processed between the first frame and the end of the camera (its logs flushed), over
  that time, read from the worker's shared state every 10 ms;
* **N cameras**: the same with N copies of the camera, aggregate fps over the time from the
  first camera's first frame to the last camera's end;
* for contrast, the one recording again with ``Sessions = 1`` and ``Threads`` = every core
  (the detector as it ran before the thread budget: one session with every core).

It prints each round and the medians, the two ratios (pipeline fps / best detector fps) and how
many cameras at a given fps the box carries at the measured aggregate rate.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import wait
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.pipeline_benchmark import decode_all  # noqa: E402
from libs.config import load_config  # noqa: E402
from libs.config.models import LookoutConfig  # noqa: E402
from libs.detectors import create_detector  # noqa: E402
from libs.detectors.budget import available_cores, thread_budget  # noqa: E402
from libs.detectors.pool import DetectorPool  # noqa: E402
from processor import worker as W  # noqa: E402
from processor.supervisor import Supervisor  # noqa: E402

FRAMES = 300


def detector_fps(config: LookoutConfig, frames: list) -> dict[str, float]:
    """fps of one session with every core, and of one one-thread session per core."""
    cores = available_cores()
    out = {}
    one = create_detector(config, threads=cores, sessions=1)
    one.detect(frames[0])
    t0 = time.perf_counter()
    for image in frames:
        one.detect(image)
    out[f"1 session x {cores} threads"] = len(frames) / (time.perf_counter() - t0)
    one.close()
    pool = DetectorPool(lambda: create_detector(config, threads=1, sessions=cores), cores)
    wait([pool.submit(frames[0]) for _ in range(cores)])
    t0 = time.perf_counter()
    jobs = [pool.submit(image) for image in frames]
    wait(jobs)
    out[f"{cores} sessions x 1 thread"] = len(frames) / (time.perf_counter() - t0)
    pool.close()
    return out


def with_cameras(text: str, n: int) -> str:
    """The configuration text with [Source_0] repeated ``n`` times (ids cam0, cam1, ...)."""
    start = text.index("[Source_0]\n")
    end = text.index("\n[", start + 1) + 1
    block = text[start:end]
    copies = [re.sub(r"^Id = .*$", f"Id = cam{i}", block.replace("[Source_0]", f"[Source_{i}]"),
                     count=1, flags=re.M) for i in range(n)]
    text = text[:start] + "".join(copies) + text[end:]
    # areas name the original camera: the first copy stands in for it
    return re.sub(r"^Cameras = pets-view1$", "Cameras = cam0", text, flags=re.M)


def processor_fps(config_text: str, folder: Path) -> tuple[float, int]:
    """Aggregate fps of the processor over every camera of ``config_text``, and frames."""
    path = folder / "config.ini"
    path.write_text(config_text)
    sup = Supervisor(path, log_level="WARNING", show_progress=False, exit_when_done=True)
    thread = sup.run_in_thread()
    slots = [sup.slots[s] for s in sup.camera_slot.values()]
    first_t = None
    first_frames = 0.0
    done = (W.FINISHED, W.FAILED, W.STOPPED)
    while True:
        now = time.perf_counter()
        frames = sum(s[W.FRAMES] for s in slots)
        if first_t is None and frames > 0:
            first_t, first_frames = now, frames
        if all(s[W.STATUS] in done for s in slots) and first_t is not None:
            break
        if not thread.is_alive():
            raise RuntimeError("the processor stopped before its cameras finished")
        time.sleep(0.01)
    end_t = time.perf_counter()
    if any(s[W.STATUS] != W.FINISHED for s in slots):
        raise RuntimeError("a camera did not finish; see the log")
    total = sum(s[W.FRAMES] for s in slots)
    thread.join(120)
    return (total - first_frames) / (end_t - first_t), int(total)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(REPO / "config-x86.ini"))
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--camera-fps", type=float, default=15.0,
                    help="the per-camera rate for 'cameras the box carries' (default 15)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = Path(args.config).resolve()
    text = base.read_text()
    assets = load_config(base).assets_dir
    text = re.sub(r"^AssetsDirectory = .*$", f"AssetsDirectory = {assets}", text, flags=re.M)
    config = load_config(base)
    frames = decode_all(config, FRAMES)
    budget = thread_budget(config)
    print(f"{platform.machine()}, {available_cores()} cores available "
          f"(os.cpu_count {os.cpu_count()}), Python {platform.python_version()}; "
          f"{base.name}, Device {config.detector.device}; {budget.describe()}")
    best: list[float] = []
    one: list[float] = []
    many: list[float] = []
    single_fps: list[float] = []
    for r in range(1, args.rounds + 1):
        det = detector_fps(config, frames)
        with tempfile.TemporaryDirectory() as tmp:
            one_fps, one_n = processor_fps(text.replace("DataDirectory = data",
                                                        f"DataDirectory = {tmp}/one"),
                                           Path(tmp))
        with tempfile.TemporaryDirectory() as tmp:
            many_fps, many_n = processor_fps(
                with_cameras(text, args.cameras).replace("DataDirectory = data",
                                                         f"DataDirectory = {tmp}/many"),
                Path(tmp))
        with tempfile.TemporaryDirectory() as tmp:
            single = text.replace("Sessions = 0\nThreads = 0",
                                  f"Sessions = 1\nThreads = {available_cores()}")
            old_fps, _ = processor_fps(single.replace("DataDirectory = data",
                                                      f"DataDirectory = {tmp}/single"),
                                       Path(tmp))
        best.append(max(det.values()))
        single_fps.append(old_fps)
        one.append(one_fps)
        many.append(many_fps)
        print(f"round {r}: detector " + ", ".join(f"{k} {v:.1f} fps" for k, v in det.items())
              + f"; one recording {one_fps:.1f} fps ({one_n} frames); {args.cameras} cameras "
              f"{many_fps:.1f} fps aggregate ({many_n} frames); one recording with one "
              f"session {old_fps:.1f} fps")
    b, o, m, s1 = (statistics.median(x) for x in (best, one, many, single_fps))
    print(f"\nmedians over {args.rounds} rounds:")
    print(f"  detector best throughput   {b:6.1f} fps")
    print(f"  one recording              {o:6.1f} fps   ratio {o / b:.2f}")
    print(f"  {args.cameras} cameras (aggregate)     {m:6.1f} fps   ratio {m / b:.2f}")
    print(f"  one recording, 1 session   {s1:6.1f} fps   ratio {s1 / b:.2f} (for contrast)")
    print(f"  cameras at {args.camera_fps:g} fps this box carries: {int(m // args.camera_fps)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
