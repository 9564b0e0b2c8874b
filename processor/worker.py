"""A worker process: runs the pipelines of its share of the cameras, one thread each.

The worker shares one detector between its cameras (ONNX Runtime sessions are thread-safe
and release the GIL).  Progress goes to a shared-memory row per camera that the supervisor
owns, so it survives a crash of the worker and a restarted worker resumes a recording where
the crashed one stopped.  Occupancy samples for areas go to the supervisor over a queue.
"""

from __future__ import annotations

import csv
import logging
import os
import queue
import signal
import threading
import time
import traceback
from collections import defaultdict
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from libs.config import load_config
from libs.config.models import LookoutConfig, SourceConfig
from libs.detectors import Detector, create_detector, detector_config_for, resolve_model_path
from libs.frame import Frame
from processor.pipeline import CameraPipeline
from processor.sources import FrameSource, SourceFrame, open_source

log = logging.getLogger(__name__)

# Fields of a camera's shared state row (multiprocessing.Array of doubles).
FRAMES, NEXT_INDEX, TOTAL, FPS, LAST_TS, STATUS, STARTED, RESTARTS, SKIPPED = range(9)
STATE_FIELDS = 9
IDLE, RUNNING, FINISHED, FAILED, STOPPED = 0.0, 1.0, 2.0, 3.0, 4.0
# Running, but not well: the source's problem() says which and why (the reason goes to the
# supervisor as a ("reason", camera, text) event).
CONNECTING, RECONNECTING, STALLED, DEGRADED = 5.0, 6.0, 7.0, 8.0
STATUS_NAMES = {IDLE: "idle", RUNNING: "running", FINISHED: "finished", FAILED: "failed",
                STOPPED: "stopped", CONNECTING: "connecting", RECONNECTING: "reconnecting",
                STALLED: "stalled", DEGRADED: "degraded"}
STATUS_CODES = {name: code for code, name in STATUS_NAMES.items()}


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
        force=True,
    )


class PerformanceLog:
    """Every ``every`` frames: fps and mean milliseconds per stage, to the log and a CSV."""

    def __init__(self, camera_id: str, every: int, csv_dir: Path | None) -> None:
        self.camera_id = camera_id
        self.every = every
        self.csv_path = csv_dir / f"{camera_id}.csv" if csv_dir else None
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0
        self.t0 = time.perf_counter()

    def add(self, frame: Frame) -> None:
        for stage, ms in frame.timings.items():
            self.sums[stage] += ms
        self.count += 1
        if self.count >= self.every:
            self.emit(frame)

    def emit(self, frame: Frame) -> None:
        elapsed = time.perf_counter() - self.t0
        fps = self.count / elapsed if elapsed > 0 else 0.0
        means = {k: v / self.count for k, v in self.sums.items()}
        parts = " | ".join(f"{k} {v:.2f} ms" for k, v in means.items())
        log.info("camera %s: %.1f fps | %s", self.camera_id, fps, parts)
        if self.csv_path is not None:
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.csv_path.exists()
            with open(self.csv_path, "a", newline="") as fh:
                w = csv.writer(fh)
                if new:
                    w.writerow(["Timestamp", "Frame", "FPS", *(f"{k}_ms" for k in means)])
                w.writerow(
                    [frame.timestamp.isoformat(), frame.index, f"{fps:.2f}",
                     *(f"{v:.3f}" for v in means.values())]
                )
        self.sums.clear()
        self.count = 0
        self.t0 = time.perf_counter()


class CameraRunner(threading.Thread):
    def __init__(
        self,
        config: LookoutConfig,
        source: SourceConfig,
        detector: Detector,
        state: Any,
        events: Queue[Any] | None,
        stop: threading.Event,
        report_areas: bool,
    ) -> None:
        super().__init__(name=f"camera-{source.id}", daemon=True)
        self.config = config
        self.source_cfg = source
        self.detector = detector
        self.state = state
        self.events = events
        self.stop_event = stop
        self.report_areas = report_areas
        self.error: str | None = None
        self._fps_t0 = time.monotonic()
        self._fps_n = 0
        self._reason: str | None = None
        self._skipped_base = 0.0

    def _send(self, *event: Any) -> None:
        if self.events is not None:
            try:
                self.events.put_nowait(event)
            except Exception:
                log.warning("event queue full; dropped %s", event[0])

    def _update_health(self, source: FrameSource, frame: SourceFrame | None) -> None:
        """fps over the last second (0 when nothing flows) and the camera's state and reason,
        from what the source says about itself; called at least every half second."""
        st = self.state
        now = time.monotonic()
        self._fps_n += frame is not None
        if now - self._fps_t0 >= 1.0:
            st[FPS] = self._fps_n / (now - self._fps_t0)
            self._fps_t0, self._fps_n = now, 0
        st[SKIPPED] = self._skipped_base + source.skipped_frames
        problem = source.problem()
        status, reason = (RUNNING, None) if problem is None \
            else (STATUS_CODES[problem[0]], problem[1])
        if status != RUNNING:
            st[FPS] = 0.0 if status != DEGRADED else st[FPS]
        st[STATUS] = status
        if reason != self._reason:
            cam = self.source_cfg.id
            if reason is not None:
                log.warning("camera %s: %s (%s)", cam, STATUS_NAMES[status], reason)
            elif self._reason is not None:
                log.info("camera %s: running again", cam)
            self._reason = reason
            self._send("reason", cam, reason)

    def run(self) -> None:
        st = self.state
        cam = self.source_cfg.id
        app = self.config.app
        pipeline = None
        source = None
        try:
            pipeline = CameraPipeline(self.config, self.source_cfg, detector=self.detector)
            source = open_source(self.config, self.source_cfg, start_index=int(st[NEXT_INDEX]))
            st[TOTAL] = float(source.total_frames or 0)
            st[STATUS] = CONNECTING if source.is_live else RUNNING
            self._skipped_base = st[SKIPPED]
            st[STARTED] = time.time()
            perf = None
            if app.log_performance_metrics:
                csv_dir = (
                    self.config.data_path(app.log_performance_metrics_directory)
                    if app.log_performance_metrics_directory
                    else None
                )
                perf = PerformanceLog(cam, app.log_performance_metrics_every, csv_dir)
            last_sent: tuple[int, float] | None = None
            self._fps_t0, self._fps_n = time.monotonic(), 0
            while not self.stop_event.is_set():
                sf = source.read(timeout=0.5)
                self._update_health(source, sf)
                if sf is None:
                    if source.ended:
                        st[STATUS] = FINISHED
                        break
                    continue
                frame = Frame(cam, sf.index, sf.timestamp, sf.image)
                frame = pipeline.process(frame)
                st[FRAMES] += 1
                st[NEXT_INDEX] = float(sf.index + 1)
                ts = sf.timestamp.timestamp()
                st[LAST_TS] = ts
                if perf is not None:
                    perf.add(frame)
                if self.report_areas:
                    occ = int(frame.metrics.get("occupancy", len(frame.detections)))
                    if last_sent is None or last_sent[0] != occ or ts - last_sent[1] >= 1.0:
                        self._send("occupancy", cam, sf.timestamp, occ)
                        last_sent = (occ, ts)
            else:
                st[STATUS] = STOPPED
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            st[STATUS] = FAILED
            log.error("camera %s failed: %s\n%s", cam, self.error, traceback.format_exc())
            self._send("error", cam, self.error)
        finally:
            if pipeline is not None:
                pipeline.close()
            if source is not None:
                source.close()


class WorkerCameras:
    """The cameras one worker runs, started and stopped one at a time on command."""

    def __init__(self, config_path: str, slots: list[Any], events: Queue[Any] | None) -> None:
        self.config_path = config_path
        self.slots = slots
        self.events = events
        self.config = load_config(config_path)
        # One detector per distinct effective [Detector] (cameras may choose their model).
        self.detectors: dict[str, Detector] = {}
        self.runners: dict[str, tuple[CameraRunner, threading.Event]] = {}

    def _detector_for(self, source: SourceConfig) -> Detector:
        det_cfg = detector_config_for(self.config, source)
        key = det_cfg.model_dump_json() + str(resolve_model_path(self.config, source))
        if key not in self.detectors:
            self.detectors[key] = create_detector(self.config, source)
        return self.detectors[key]

    def _refresh_config(self) -> None:
        """Re-read the file; new runners get detectors of the settings now in force."""
        config = load_config(self.config_path)
        if config.detector != self.config.detector or config.app != self.config.app:
            self.detectors.clear()  # running cameras keep theirs until restarted
        self.config = config

    def start(self, camera_id: str, slot: int, reset: bool) -> None:
        self.stop(camera_id)
        st = self.slots[slot]
        if reset:
            for i in range(STATE_FIELDS):
                if i != RESTARTS:
                    st[i] = 0.0
        try:
            self._refresh_config()
            source = self.config.source(camera_id)
        except KeyError:
            log.warning("camera %s is not in %s any more", camera_id, self.config_path)
            st[STATUS] = STOPPED
            return
        except Exception as exc:  # an invalid file: keep what runs, report the error
            log.error("cannot start camera %s: %s", camera_id, exc)
            st[STATUS] = FAILED
            if self.events is not None:
                self.events.put_nowait(("error", camera_id, str(exc)))
            return
        if not source.enabled:
            st[STATUS] = STOPPED
            return
        areas = self.config.areas if self.config.app.process_areas else []
        report_areas = any(camera_id in a.cameras for a in areas)
        stop = threading.Event()
        runner = CameraRunner(self.config, source, self._detector_for(source), st, self.events,
                              stop, report_areas)
        self.runners[camera_id] = (runner, stop)
        runner.start()
        log.info("camera %s started (slot %d, from frame %d)", camera_id, slot,
                 int(st[NEXT_INDEX]))

    def stop(self, camera_id: str, timeout: float = 30.0) -> None:
        entry = self.runners.pop(camera_id, None)
        if entry is None:
            return
        runner, stop = entry
        stop.set()
        runner.join(timeout)
        if runner.is_alive():
            log.warning("camera %s did not stop within %.0f s", camera_id, timeout)

    def stop_all(self) -> None:
        for _, stop in self.runners.values():
            stop.set()
        for cid in list(self.runners):
            self.stop(cid)
        for detector in self.detectors.values():
            detector.close()


def worker_main(
    config_path: str,
    slots: list[Any],
    assignments: dict[str, int],
    commands: Queue[Any],
    events: Queue[Any] | None,
    stop: Any,
    log_level: str = "INFO",
) -> None:
    """Entry point of a worker process.

    Starts the cameras of ``assignments`` (camera id -> state slot), then obeys
    ``commands``: ``("start", camera_id, slot, reset)`` (re)starts a camera with the
    configuration file as it is now, ``("stop", camera_id)`` stops one.  Runs until ``stop``
    is set or it receives SIGTERM/SIGINT; every camera then finishes its frame and flushes
    its loggers.
    """
    setup_logging(log_level)
    local_stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("worker %s: signal %s, stopping", os.getpid(), signum)
        local_stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    cams = WorkerCameras(config_path, slots, events)
    for cid, slot in assignments.items():
        cams.start(cid, slot, reset=False)
    while not local_stop.is_set() and not stop.is_set():
        try:
            command = commands.get(timeout=0.2)
        except queue.Empty:
            continue
        except (EOFError, OSError):
            break
        kind = command[0]
        if kind == "start":
            _, cid, slot, reset = command
            cams.start(cid, slot, reset)
        elif kind == "stop":
            cams.stop(command[1])
    cams.stop_all()
    if events is not None:
        events.close()
        events.join_thread()
    raise SystemExit(0)
