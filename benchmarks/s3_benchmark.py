"""The camera pipeline's speed with ``s3_logger`` uploading to a live S3 server, and with
that server down, against the bare detector, measured in one run.

    python benchmarks/s3_benchmark.py [--config config-x86.ini] [--rounds 3] [--frames 300]

Starts ``moto_server`` (an S3-compatible HTTP server, PyPI ``moto[server]``) on a free port,
then per round, interleaved so every pass sees the same machine state:

* bare detector fps: ``detector.detect`` alone over frames decoded into memory beforehand;
* pipeline fps with S3 up: what ``lookout run`` does for one camera (decoding, detector,
  tracker, analytics, the file and preview loggers) plus an ``s3_logger`` with ``Trigger =
  period`` and a screenshot every 1.2 s of video (far more than a real configuration takes),
  uploading to the server;
* the same with S3 down (the section's ``Endpoint`` is a closed port: every upload fails
  and is retried, the screenshots pile up in the outbox on disk).

It prints both pipeline/bare ratios (medians over rounds), their difference (the issue asks
at most 0.02) and how many screenshots were taken, uploaded and left queued.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.pipeline_benchmark import bare_pass, decode_all, free_port  # noqa: E402
from libs.config import load_config  # noqa: E402
from libs.config.models import LookoutConfig  # noqa: E402
from libs.detectors import Detector, create_detector  # noqa: E402
from libs.frame import Frame  # noqa: E402
from libs.integrations.s3 import S3Logger  # noqa: E402
from processor.pipeline import CameraPipeline  # noqa: E402
from processor.sources import open_source  # noqa: E402

BUCKET = "lookout-benchmark"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "benchmark-key-id",
               "AWS_SECRET_ACCESS_KEY": "benchmark-secret", "AWS_BUCKET_REGION": "us-east-1"}


def start_moto(port: int, log: Path) -> subprocess.Popen[bytes]:
    program = Path(sys.executable).parent / "moto_server"
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(program), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}",
                          region_name="us-east-1")
    deadline = time.monotonic() + 20
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            return proc
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"moto_server did not start: {log.read_text()[-2000:]}") \
                    from None
            time.sleep(0.1)


def config_for(base: Path, folder: Path, endpoint: str) -> LookoutConfig:
    text = base.read_text().replace("DataDirectory = data", f"DataDirectory = {folder}")
    text = text.replace("[App]\n", "[App]\nProcessorName = benchmark\n", 1)
    text = text.replace("AssetsDirectory = ../shared",
                        f"AssetsDirectory = {(base.parent / '../shared').resolve()}")
    text += f"""
[SourceLogger_9]
Name = s3_logger
Enabled = True
ScreenshotPeriod = 0.02
Trigger = period
ScreenshotS3Bucket = {BUCKET}
Endpoint = {endpoint}
"""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.ini"
    path.write_text(text)
    return load_config(path)


def pipeline_pass(config: LookoutConfig, detector: Detector,
                  limit: int) -> tuple[float, dict[str, Any]]:
    src = config.sources[0]
    pipeline = CameraPipeline(config, src, detector=detector)
    sink = next(lg for name, lg in pipeline.loggers if isinstance(lg, S3Logger))
    source = open_source(config, src)
    n = 0
    t0 = time.perf_counter()
    try:
        while n < limit and (sf := source.read()) is not None:
            pipeline.process(Frame(src.id, sf.index, sf.timestamp, sf.image))
            n += 1
        elapsed = time.perf_counter() - t0
        sink.flush(10)
        state = sink.state()
    finally:
        source.close()
        pipeline.close()
    return n / elapsed, state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "config-x86.ini")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=300, help="frames per pass")
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    with tempfile.TemporaryDirectory(prefix="s3-bench-") as tmp:
        root = Path(tmp)
        port = free_port()
        moto = start_moto(port, root / "moto.log")
        try:
            up_url, down_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{free_port()}"
            probe = config_for(args.config, root / "probe", up_url)
            frames = decode_all(probe)[: args.frames]
            detector = create_detector(probe, probe.sources[0])
            bare_pass(detector, frames[:20])  # warm-up
            bare: list[float] = []
            up: list[float] = []
            down: list[float] = []
            states: dict[str, dict[str, Any]] = {}
            pipeline_pass(config_for(args.config, root / "warm", down_url), detector, 30)
            for r in range(args.rounds):
                # up first in even rounds, down first in odd ones
                order = [("up", up_url, up), ("down", down_url, down)][:: 1 - 2 * (r % 2)]
                bare.append(bare_pass(detector, frames))
                for name, url, out in order:
                    fps, states[name] = pipeline_pass(
                        config_for(args.config, root / f"{name}{r}", url), detector,
                        len(frames))
                    out.append(fps)
                bare.append(bare_pass(detector, frames))
            detector.close()
        finally:
            moto.terminate()
            moto.wait(10)
    b, u, d = statistics.median(bare), statistics.median(up), statistics.median(down)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"{len(frames)} frames, {args.rounds} round(s)")
    print(f"bare detector:          {b:7.2f} fps")
    print(f"pipeline, S3 up:        {u:7.2f} fps   ratio {u / b:.3f}   "
          f"screenshots taken {states['up']['taken']}, uploaded "
          f"{states['up']['delivered']}, dropped {states['up']['dropped']}")
    print(f"pipeline, S3 down:      {d:7.2f} fps   ratio {d / b:.3f}   "
          f"screenshots taken {states['down']['taken']}, uploaded "
          f"{states['down']['delivered']}, queued {states['down']['queued']}, dropped "
          f"{states['down']['dropped']}")
    diff = abs(u / b - d / b)
    print(f"difference of the ratios: {diff:.3f} (at most 0.02)")
    return 0 if diff <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
