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

    python benchmarks/pipeline_benchmark.py --outputs [--rounds 2]

runs the whole processor instead (supervisor, a camera worker, the API server), twice per
round, interleaved with bare-detector passes: once with the file logger only, once with the
file logger, a ``web_hook_logger`` sending every record to a local HTTP receiver (signed,
through its outbox) and a live-stream client reading every record (``frame_summary``
included) over Server-Sent Events.  Pipeline fps is the worker's: frames between the first
and the last frame summary the supervisor's event bus carried, over the time between them.
It prints both pipeline/bare ratios and their difference (issue 9: at most 0.02).
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import platform
import re
import socket
import statistics
import sys
import tempfile
import threading
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


def decode_all(config: LookoutConfig, limit: int | None = None) -> list:
    """The first camera's frames (the first ``limit`` of them), decoded into memory."""
    path = config.asset_path(config.sources[0].video_path)
    cap = cv2.VideoCapture(str(path))
    frames: list = []
    while limit is None or len(frames) < limit:
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


# ---------------------------------------------------------------------------------------
# --outputs: the whole processor, with and without a webhook and a live-stream client
# ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver on loopback that counts the records it is sent."""

    daemon_threads = True

    def __init__(self) -> None:
        self.records = 0
        self.requests = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.records += len(json.loads(body)["records"])
                receiver.requests += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class SseReader(threading.Thread):
    """Reads every record of ``GET /live/events`` until the stream ends."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.records = 0
        self.connected = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request("GET", "/live/events")
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"live stream refused: {resp.status} {resp.read()!r}")
            self.connected.set()
            while line := resp.readline():
                if line.startswith(b"data:"):
                    self.records += 1
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()


def outputs_config(path: Path, folder: Path, api_port: int, hook_port: int | None) -> Path:
    """The shipped configuration for a processor pass: assets where they are, the API on a
    free port without authentication (a benchmark on loopback), and the webhook on
    ``hook_port`` (None: left off)."""
    text = path.read_text()
    assets = re.search(r"^AssetsDirectory = (.*)$", text, re.M)
    if assets:
        text = text.replace(assets.group(0), "AssetsDirectory = "
                            + str((path.parent / assets.group(1).strip()).resolve()))
    text = re.sub(r"^Port = \d+$", f"Port = {api_port}", text, count=1, flags=re.M)
    text = re.sub(r"^UseAuthToken = \w+$", "UseAuthToken = False", text, count=1, flags=re.M)
    if hook_port is not None:
        hook = re.search(r"\[SourceLogger_\d+\]\n(?:#[^\n]*\n)*"
                         r"Name = web_hook_logger\n(?:(?!\n\[).)*", text, re.S)
        if hook is None:
            raise SystemExit("the config has no web_hook_logger section")
        section = hook.group(0)
        section = re.sub(r"^Endpoint =.*$", f"Endpoint = http://127.0.0.1:{hook_port}/hook",
                         section, flags=re.M)
        section = re.sub(r"^Enabled = \w+$", "Enabled = True", section, flags=re.M)
        section = re.sub(r"^SendingInterval = .*$", "SendingInterval = 1", section, flags=re.M)
        section += "\nSecret = benchmark-secret\n"
        text = text.replace(hook.group(0), section)
    out = folder / "config.ini"
    out.write_text(text)
    return out


def processor_pass(path: Path, with_outputs: bool) -> tuple[float, int, dict[str, int]]:
    """One run of the whole processor over the clip; (worker fps, frames, delivered)."""
    from api.server import build_server
    from libs.records import FrameSummary
    from processor.supervisor import Supervisor

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["LOOKOUT_DATA_DIR"] = str(folder / "data")
        receiver = Receiver() if with_outputs else None
        api_port = free_port()
        config = outputs_config(path, folder, api_port,
                                receiver.server_address[1] if receiver else None)
        arrivals: list[float] = []

        def on_records(records: object) -> None:
            now = time.perf_counter()
            arrivals.extend(now for r in records if isinstance(r, FrameSummary))  # type: ignore[attr-defined]

        sup = Supervisor(config, show_progress=False, exit_when_done=False)
        sup.bus.subscribe("benchmark", on_records)
        server = build_server(config, sup, "warning")
        api = threading.Thread(target=server.run, daemon=True)
        api.start()
        while not server.started:
            time.sleep(0.05)
        reader = SseReader(api_port) if with_outputs else None
        if reader is not None:
            reader.start()
            if not reader.connected.wait(20):
                raise RuntimeError("the live-stream client did not connect")
        sup.run_in_thread()
        try:
            while not sup.all_done.wait(0.2):
                pass
            outbox_empty = time.monotonic() + 30
            while with_outputs and time.monotonic() < outbox_empty:
                state = next(iter(sup.submit(sup.outputs_status).result(10).values()))
                if state.get("queued", 1) == 0:
                    break
                time.sleep(0.2)
        finally:
            sup.request_stop()
            if sup._loop_thread is not None:
                sup._loop_thread.join(60)
            server.should_exit = True
            api.join(20)
            if receiver is not None:
                receiver.shutdown()
        frames = len(arrivals)
        fps = (frames - 1) / (arrivals[-1] - arrivals[0])
        delivered = {"frame summaries on the bus": frames}
        if receiver is not None and reader is not None:
            reader.join(5)
            delivered["webhook records received"] = receiver.records
            delivered["webhook requests"] = receiver.requests
            delivered["live-stream records read"] = reader.records
        return fps, frames, delivered


def outputs_main(config_path: Path, rounds: int) -> int:
    config = load_config(config_path)
    detector = create_detector(config)
    frames = decode_all(config)
    for image in frames[:20]:  # warm-up
        detector.detect(image)
    bare: list[float] = []
    plain: list[float] = []
    full: list[float] = []
    counts: dict[str, int] = {}
    for r in range(rounds):
        bare.append(bare_pass(detector, frames))
        fps, _, _ = processor_pass(config_path, with_outputs=False)
        plain.append(fps)
        bare.append(bare_pass(detector, frames))
        fps, _, counts = processor_pass(config_path, with_outputs=True)
        full.append(fps)
        print(f"round {r + 1}: bare {bare[-2]:.1f}/{bare[-1]:.1f} fps, file logger only "
              f"{plain[-1]:.1f} fps, + webhook + live client {full[-1]:.1f} fps", flush=True)
    bare_fps = statistics.median(bare)
    ratio_plain = statistics.median(plain) / bare_fps
    ratio_full = statistics.median(full) / bare_fps
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"clip: {config.sources[0].video_path} ({len(frames)} frames)")
    for what, n in counts.items():
        print(f"  last pass with outputs: {what}: {n}")
    print(f"bare detector fps:                                  {bare_fps:8.1f}")
    print(f"ratio, file logger only:                            {ratio_plain:8.3f}")
    print(f"ratio, file logger + webhook + live-stream client:  {ratio_full:8.3f}")
    print(f"difference:                                         {ratio_plain - ratio_full:8.3f}"
          "   (target <= 0.02)")
    print("per round (over the median bare fps): "
          + ", ".join(f"{a / bare_fps:.3f}/{b / bare_fps:.3f}"
                      for a, b in zip(plain, full, strict=True)))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config-x86.ini"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--all-analytics", action="store_true",
                    help="enable every post-processor section (faces, mask, head pose, "
                    "demographics...) to show what each one adds per frame")
    ap.add_argument("--outputs", action="store_true",
                    help="the whole processor with the file logger only and with a webhook and "
                    "a live-stream client: both ratios and their difference")
    args = ap.parse_args()
    if args.outputs:
        return outputs_main(Path(args.config).resolve(), args.rounds)

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
