"""A worker process: runs the pipelines of its share of the cameras, one thread each.

The worker shares one detector between its cameras (ONNX Runtime sessions are thread-safe
and release the GIL).  Progress goes to a shared-memory row per camera that the supervisor
owns, so it survives a crash of the worker and a restarted worker resumes a recording where
the crashed one stopped.

Everything a camera's pipeline produces goes to the supervisor's event bus over the worker's
one event queue, as ``("records", [record, ...])`` per processed frame (never the records of
a replayed frame), with the camera's state changes as ``camera_state`` records; errors and
reasons travel on the same queue.  For a recording the record ids follow from the record's
place (:meth:`RecordIds.for_recording`: camera, recordings, frame, kind, rank), so a record a
resumed run produces again carries the id it had before.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import threading
import time
import traceback
from collections import defaultdict
from datetime import datetime
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from libs.config import load_config
from libs.config.models import LookoutConfig, SourceConfig
from libs.config.video_source import is_redis_url
from libs.detectors import Detector, create_detector, detector_config_for, resolve_model_path
from libs.detectors.budget import thread_budget
from libs.detectors.pool import DetectAhead, DetectorPool
from libs.frame import Frame
from libs.loggers.writer import BackgroundWriter, WriteHealth
from libs.records import CameraState, Record, RecordIds
from libs.state import dumps
from libs.storage import csv_line
from processor.pipeline import CameraPipeline, SourceDetections
from processor.resume import WARMUP_FRAMES, ResumeStore
from processor.runlock import die_with_parent, hold_worker_lock
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
CHECKPOINT_SECONDS = 1.0  # wall time between two resume checkpoints of a camera
WRITES_CHECK_SECONDS = 0.5  # how often a camera looks whether its loggers' writes succeed
WRITES_RESEND_SECONDS = 5.0  # a failure is told again this often (an event may be dropped)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
        force=True,
    )


class PerformanceLog:
    """Every ``every`` frames: fps and mean milliseconds per stage, to the log and a CSV
    (through a :class:`BackgroundWriter`, so a full disk delays rows instead of failing the
    camera)."""

    def __init__(self, camera_id: str, every: int, csv_dir: Path | None) -> None:
        self.camera_id = camera_id
        self.every = every
        self.csv_path = csv_dir / f"{camera_id}.csv" if csv_dir else None
        self.writer = BackgroundWriter(max_queue=100, name=f"perf-{camera_id}")
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
            self.writer.append_line(
                self.csv_path,
                csv_line([frame.timestamp.isoformat(), frame.index, f"{fps:.2f}",
                          *(f"{v:.3f}" for v in means.values())]),
                header=csv_line(["Timestamp", "Frame", "FPS", *(f"{k}_ms" for k in means)]))
        self.sums.clear()
        self.count = 0
        self.t0 = time.perf_counter()

    def health(self) -> WriteHealth:
        return self.writer.health()

    def close(self) -> None:
        self.writer.close()


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
        self._said: tuple[float, str] = (RUNNING, "")
        self._skipped_base = 0.0
        self._perf: PerformanceLog | None = None
        self._write_error: str | None = None
        self._writes_checked = 0.0
        self._write_error_sent = 0.0
        self._state_ids = RecordIds()
        self._state_said: str | None = None  # the last camera_state sent
        self.dropped_records = 0
        # Stage timings since the last "perf" event, and frames a live source dropped.
        self._stage_sums: dict[str, float] = defaultdict(float)
        self._stage_frames = 0
        self._stage_ms: dict[str, float] = {}
        self._last_index: int | None = None
        self.dropped_frames = 0

    def _send_perf(self, source: FrameSource) -> None:
        """Mean milliseconds per stage over the frames since the last call (the previous
        means when none came), reconnects and dropped frames: a ``("perf", camera, {...})``
        event, once a second (the supervisor shows it in GET /status; Prometheus reads it)."""
        if self._stage_frames:
            self._stage_ms = {k: round(v / self._stage_frames, 3)
                              for k, v in self._stage_sums.items()}
            self._stage_sums.clear()
            self._stage_frames = 0
        self._send("perf", self.source_cfg.id, {
            "stage_ms": self._stage_ms,
            "reconnects": int(getattr(source, "reconnects", 0)),
            "dropped_frames": self.dropped_frames,
            "dropped_records": self.dropped_records})

    def _send_records(self, records: list[Record]) -> None:
        if self.events is None or not records:
            return
        try:
            self.events.put_nowait(("records", records))
        except Exception:
            self.dropped_records += len(records)
            log.warning("camera %s: event queue full; %d records not forwarded (%d so far)",
                        self.source_cfg.id, len(records), self.dropped_records)

    def _note_state(self) -> None:
        """A ``camera_state`` record when the camera's state (or its reason) changed."""
        name = STATUS_NAMES.get(self.state[STATUS], "idle")
        said = f"{name}:{self._reason or ''}"
        if said == self._state_said:
            return
        previous = None if self._state_said is None else self._state_said.split(":", 1)[0]
        self._state_said = said
        self._send_records([CameraState(
            id=self._state_ids(), source="camera", source_id=self.source_cfg.id,
            timestamp=datetime.now(self.config.app.tzinfo), state=name,  # type: ignore[arg-type]
            previous=previous, reason=self._reason)])  # type: ignore[arg-type]

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
        elapsed = now - self._fps_t0
        # Every second; sooner when frames come back after none, so "running" is not
        # shown at 0 fps for a second.
        if elapsed >= 1.0 or (st[FPS] == 0 and self._fps_n >= 3 and elapsed >= 0.3):
            st[FPS] = self._fps_n / elapsed
            self._fps_t0, self._fps_n = now, 0
            self._send_perf(source)
        st[SKIPPED] = self._skipped_base + source.skipped_frames
        problem = source.problem()
        status, reason = (RUNNING, None) if problem is None \
            else (STATUS_CODES[problem[0]], problem[1])
        if status != RUNNING:
            st[FPS] = 0.0 if status != DEGRADED else st[FPS]
        if reason != self._reason:  # the reason first: the status must not come without it
            cam = self.source_cfg.id
            # Logged when it says something new ("no frame for 2 s", "3 s", ... only once).
            said = (status, re.sub(r"\d+", "#", reason or ""))
            if reason is not None and said != self._said:
                log.warning("camera %s: %s (%s)", cam, STATUS_NAMES[status], reason)
            elif reason is None and self._reason is not None:
                log.info("camera %s: running again", cam)
            self._said = said
            self._reason = reason
            self._send("reason", cam, reason)
        st[STATUS] = status
        self._note_state()

    def _report_writes(self, pipeline: CameraPipeline, force: bool = False) -> None:
        """Tell the supervisor when the camera's writes (its loggers', its performance log's)
        start failing, again every few seconds while they fail, and when they succeed again:
        a ``("write_error", camera, text or None)`` event."""
        now = time.monotonic()
        if not force and now - self._writes_checked < WRITES_CHECK_SECONDS:
            return
        self._writes_checked = now
        error = None
        for _, logger in pipeline.loggers:
            health = getattr(logger, "write_health", None)  # loggers that write files
            if health is not None and (error := health().error) is not None:
                break
        if error is None and self._perf is not None:
            error = self._perf.health().error
        changed = error != self._write_error
        if changed or (error is not None and now - self._write_error_sent >= WRITES_RESEND_SECONDS):
            self._write_error = error
            self._write_error_sent = now
            self._send("write_error", self.source_cfg.id, error)

    def run(self) -> None:
        st = self.state
        cam = self.source_cfg.id
        app = self.config.app
        pipeline = None
        source = None
        store: ResumeStore | None = None
        ahead: DetectAhead | None = None
        done_index: int | None = None  # every frame before it is logged
        finished = False
        try:
            store = ResumeStore(self.config, self.source_cfg)
            ck = store.load()
            if ck.finished:
                st[NEXT_INDEX] = st[TOTAL] = float(ck.next_index)
                st[STATUS] = FINISHED
                log.info("camera %s: recording already processed (%d frames); not redone",
                         cam, ck.next_index)
                return
            store.restore_files()  # before any logger opens a file
            resume_at = 0 if store.live else ck.next_index
            pipeline = CameraPipeline(self.config, self.source_cfg, detector=self.detector)
            pipeline.tracker.next_track_id = ck.next_track_id
            if not store.live:
                pipeline.ids = RecordIds.for_recording(store.record_key())
            budget = thread_budget(self.config, detector_config_for(self.config, self.source_cfg))
            source = open_source(self.config, self.source_cfg,
                                 start_index=max(0, resume_at - WARMUP_FRAMES),
                                 decode_threads=budget.decode_threads)
            saved_state = store.load_state() if resume_at else None
            if resume_at:
                log.info("camera %s: resuming at frame %d%s", cam, resume_at,
                         "" if saved_state is not None else
                         " (no tracker state saved for it: tracks start afresh)")
            last_checkpoint = time.monotonic()
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
            self._perf = perf
            self._fps_t0, self._fps_n = time.monotonic(), 0
            if isinstance(self.detector, DetectorPool):
                # A recording keeps two frames per session in the pool; a live source only
                # the newest frame matters for.
                depth = 1 if source.is_live else 2 * self.detector.sessions
                ahead = DetectAhead(source, self.detector, depth)
            while not self.stop_event.is_set():
                if ahead is not None:
                    got = ahead.read(timeout=0.5)
                    sf = got[0] if got is not None else None
                else:
                    got, sf = None, source.read(timeout=0.5)
                self._update_health(source, sf)
                self._report_writes(pipeline)
                if sf is None:
                    if source.ended:
                        finished = True
                        break
                    continue
                frame = Frame(cam, sf.index, sf.timestamp, sf.image)
                if sf.detections is not None:  # people from the source (Redis messages)
                    frame.detections, frame.tracked = sf.detections, True
                frame.replay = sf.index < resume_at
                if saved_state is not None and not frame.replay:
                    if sf.index != resume_at or not pipeline.restore(saved_state):
                        log.warning("camera %s: the tracker state saved at frame %d does not "
                                    "fit (now at frame %d, or the tracker or stages changed); "
                                    "tracks start afresh", cam, resume_at, sf.index)
                    saved_state = None
                if got is not None and got[1] is not None:  # detected in the pool
                    frame.detections, frame.timings["detector"] = got[1], got[2]
                    frame = pipeline.process_detections(frame)
                else:
                    frame = pipeline.process(frame)
                st[NEXT_INDEX] = float(sf.index + 1)
                if frame.replay:
                    continue
                for stage, ms in frame.timings.items():
                    self._stage_sums[stage] += ms
                self._stage_frames += 1
                if source.is_live and self._last_index is not None:
                    self.dropped_frames += max(0, sf.index - self._last_index - 1)
                self._last_index = sf.index
                self._send_records(frame.records)
                done_index = sf.index + 1
                if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                    last_checkpoint = time.monotonic()
                    self._checkpoint(pipeline, store, done_index)
                st[FRAMES] += 1
                ts = sf.timestamp.timestamp()
                st[LAST_TS] = ts
                if perf is not None:
                    perf.add(frame)
            else:
                st[STATUS] = STOPPED
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            st[STATUS] = FAILED
            log.error("camera %s failed: %s\n%s", cam, self.error, traceback.format_exc())
            self._send("error", cam, self.error)
        finally:
            if ahead is not None:
                ahead.cancel()
            if pipeline is not None:
                if store is not None and done_index is not None and not finished:
                    # Before the end of the stream: what the stages record for people still
                    # in view comes after the checkpoint, and a resumed run logs it itself.
                    self._checkpoint(pipeline, store, done_index, wait=True)
                end = pipeline.finish()
                # A recording stopped before its end resumes at the checkpoint and produces
                # again what follows it (with the same ids): its provisional end-of-stream
                # records stay off the bus, as they are cut from the files.
                if end is not None and (finished or (store is not None and store.live)):
                    self._send_records(end.records)
                pipeline.close()
                if store is not None and finished:
                    store.save(done_index or int(st[TOTAL]), pipeline.tracker.next_track_id,
                               {}, finished=True)
            if self._perf is not None:
                self._perf.close()
            if pipeline is not None:  # the final word: written in the end, or not
                self._report_writes(pipeline, force=True)
            if source is not None:  # before the last camera_state: a reader of that
                self._send_perf(source)  # record has the camera's final figures
            if finished:
                st[STATUS] = FINISHED
            self._note_state()
            if source is not None:
                source.close()

    @staticmethod
    def _checkpoint(pipeline: CameraPipeline, store: ResumeStore, next_index: int,
                    wait: bool = False) -> None:
        next_id = pipeline.tracker.next_track_id
        # Now, on the camera thread, before the next frame changes it.
        state = None if store.live else dumps(pipeline.snapshot())

        def save(sizes: dict[str, int]) -> None:
            store.save(next_index, next_id, sizes, state=state)

        if wait:
            if not pipeline.checkpoint_now(save, stages=not store.live):
                log.warning("camera %s: logs not written in time; the restart will redo "
                            "frames since the last checkpoint", store.source.id)
        else:
            pipeline.checkpoint(save, stages=not store.live)


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
        if is_redis_url(source.video_path):  # its messages bring the people: no model
            return SourceDetections(det_cfg)
        key = det_cfg.model_dump_json() + str(resolve_model_path(self.config, source))
        if key not in self.detectors:
            budget = thread_budget(self.config, det_cfg)
            config = self.config
            self.detectors[key] = DetectorPool(
                lambda: create_detector(config, source, budget.threads, budget.sessions),
                budget.sessions, name=f"detect-{det_cfg.name}")
            log.info("%s: %s", det_cfg.name, budget.describe())
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
    parent_pid: int | None = None,
) -> None:
    """Entry point of a worker process.

    Starts the cameras of ``assignments`` (camera id -> state slot), then obeys
    ``commands``: ``("start", camera_id, slot, reset)`` (re)starts a camera with the
    configuration file as it is now, ``("stop", camera_id)`` stops one.  Runs until ``stop``
    is set or it receives SIGTERM/SIGINT; every camera then finishes its frame and flushes
    its loggers.
    """
    if parent_pid is not None:
        die_with_parent(parent_pid)  # a killed supervisor takes its workers with it
    setup_logging(log_level)
    local_stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("worker %s: signal %s, stopping", os.getpid(), signum)
        local_stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    cams = WorkerCameras(config_path, slots, events)
    hold_worker_lock(cams.config.data_path("processor"))
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
