"""The supervisor: spreads cameras over worker processes, restarts crashed workers and
cameras, applies configuration changes to the cameras they affect only, runs the event bus
(every record of every camera, fanned out to the area aggregation, the area sinks, the sinks
that run on the bus and the API's live stream; see :mod:`processor.bus`), runs the periodic
tasks, shows progress and shuts down cleanly.

Other threads (the API) talk to it through :meth:`Supervisor.submit`: a command runs on the
supervisor's own loop and its result comes back through a future, so the supervisor's state
is only ever touched by one thread.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any, TypeVar

from libs.config import load_config
from libs.config.models import LookoutConfig
from libs.config.restarts import camera_restart_keys
from libs.integrations.notify import NAME as NOTIFIER
from libs.integrations.notify import build_notifier, notification_settings
from libs.loggers import AREA_LOGGERS, OUTPUTS, SOURCE_LOGGERS, AreaLogger, Sink
from libs.loggers.writer import atomic_write_bytes, describe_write_error
from libs.periodic_tasks import PERIODIC_TASKS, PeriodicTask
from libs.records import Record
from processor import worker as W
from processor.areas import AreaAggregator
from processor.bus import EventBus
from processor.progress import ProgressDisplay
from processor.runlock import RunLock

log = logging.getLogger(__name__)

T = TypeVar("T")
CAMERA_SLOTS = 64  # cameras one run can hold (shared-memory state rows made at start)
CAMERA_RETRY_SECONDS = 2.0
TASK_RETRY_SECONDS = 15.0  # a periodic task that failed (disk full) is tried again this soon
HEALTH_STALE_SECONDS = 10.0  # a supervisor loop silent this long is reported stalled
MAX_HEALTH_REASONS = 8
MAX_REASON_CHARS = 400


@dataclass
class WorkerSlot:
    index: int
    cameras: set[str] = field(default_factory=set)
    process: SpawnProcess | None = None
    commands: Any = None
    events: Any = None
    restarts: int = 0
    failed: bool = False
    exit_codes: list[int | None] = field(default_factory=list)


class TaskRunner(threading.Thread):
    """Runs one periodic task on its interval, never two rounds at once."""

    def __init__(self, task: PeriodicTask, name: str) -> None:
        super().__init__(name=f"task-{name}", daemon=True)
        self.task = task
        self.task_name = name
        self.wake = threading.Event()
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()

    error: str | None = None  # why the last round failed (None: it succeeded)

    def run_once(self) -> None:
        """One round; a failure is logged once per change and kept in :attr:`error`.

        A task may also report a failure it handled itself in its ``last_error``.
        """
        with self.lock:
            error: str | None
            try:
                self.task.run()
            except Exception as exc:
                error = describe_write_error(exc) if isinstance(exc, OSError) \
                    else f"{type(exc).__name__}: {exc}"
                if error != self.error:
                    log.exception("periodic task %s failed; retrying in %.0f s",
                                  self.task_name, self.retry_seconds(error))
            else:
                error = getattr(self.task, "last_error", None)
                if self.error is not None and error is None:
                    log.warning("periodic task %s succeeds again", self.task_name)
            self.error = error[:MAX_REASON_CHARS] if error else None

    def retry_seconds(self, error: str | None) -> float:
        interval = self.task.interval_seconds
        return min(interval, TASK_RETRY_SECONDS) if error else interval

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.wake.wait(self.retry_seconds(self.error))
            self.wake.clear()
            if self.stop_flag.is_set():
                break
            self.run_once()

    def stop(self) -> None:
        self.stop_flag.set()
        self.wake.set()


class Supervisor:
    def __init__(self, config_path: str | Path, log_level: str = "INFO",
                 show_progress: bool = True, exit_when_done: bool = True) -> None:
        self.config_path = str(config_path)
        self.config: LookoutConfig = load_config(self.config_path)
        self.log_level = log_level
        self._exit_when_done = exit_when_done
        self.ctx = mp.get_context("spawn")
        self.stop_event = self.ctx.Event()
        self.slots = [self.ctx.Array("d", W.STATE_FIELDS, lock=False)
                      for _ in range(max(CAMERA_SLOTS, 2 * len(self.config.sources)))]
        self.free_slots = list(range(len(self.slots) - 1, -1, -1))
        self.camera_slot: dict[str, int] = {}
        self.paused: set[str] = set()  # stopped through the API (not persisted)
        self.camera_retries: dict[str, int] = {}
        self.retry_at: dict[str, float] = {}
        self.last_errors: dict[str, str] = {}
        self.write_errors: dict[str, str] = {}  # cameras whose writes fail now (workers say)
        self.status_error: str | None = None  # status.json could not be written
        self.loop_errors: dict[str, str] = {}  # parts of a loop round that raised, by name
        self._health: dict[str, Any] = {"status": "ok"}
        self._heartbeat = time.monotonic()
        self.reasons: dict[str, str] = {}  # why a camera is not running well, now
        self.perf: dict[str, dict[str, Any]] = {}  # stage ms, reconnects... (workers say)
        n = max(1, self.config.app.max_processes)
        self.workers = [WorkerSlot(i) for i in range(n)]
        self.area_loggers: list[AreaLogger] = []  # per-area sinks (the area file logger)
        self.aggregators: list[AreaAggregator] = []
        self.bus = EventBus()
        self.bus_sinks: dict[str, Sink] = {}  # section name -> sink running on the bus
        self.tasks: list[TaskRunner] = []
        self.status_path = self.config.data_path("processor/status.json")
        self.progress = ProgressDisplay(enabled=show_progress)
        self.started = datetime.now(UTC)
        self._commands: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self._stop_requested = threading.Event()
        self._loop_thread: threading.Thread | None = None
        self.all_done = threading.Event()  # every recording finished (live cameras never)
        self._recordings_done = False  # the same, as of the last loop round
        self.exit_code: int | None = None  # set when the loop has ended (see loop())
        self.ended_by_itself = False  # the loop ended because every recording was done
        self.running = False
        self.run_lock = RunLock(self.config.data_path("processor"))

    @property
    def exit_when_done(self) -> bool:
        """Whether the run ends once every recording is done: asked for (``lookout run
        --no-api``), or ``[App] HistoricalDataMode = True`` in the configuration now in force
        (the API then stops with it).  Live sources never finish; the loader refuses them in
        that mode."""
        return self._exit_when_done or self.config.app.historical_data_mode

    # -- commands from other threads -------------------------------------------------------
    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the supervisor loop; its result or exception comes in the future."""
        fut: Future[T] = Future()
        if self._stop_requested.is_set():
            fut.set_exception(RuntimeError("the processor is stopping"))
            return fut
        self._commands.put((fn, fut))
        return fut

    def _run_commands(self) -> None:
        while True:
            try:
                fn, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    # -- workers ---------------------------------------------------------------------------
    def _spawn(self, worker: WorkerSlot) -> None:
        worker.commands = self.ctx.Queue()
        worker.events = self.ctx.Queue(10000)
        assignments = {
            c: self.camera_slot[c] for c in sorted(worker.cameras)
            if c not in self.paused and self.slots[self.camera_slot[c]][W.STATUS]
            not in (W.FINISHED, W.STOPPED)
        }
        proc = self.ctx.Process(
            target=W.worker_main,
            args=(self.config_path, self.slots, assignments, worker.commands, worker.events,
                  self.stop_event, self.log_level, os.getpid()),
            name=f"lookout-worker-{worker.index}",
            daemon=False,
        )
        proc.start()
        worker.process = proc
        log.info("worker %d (pid %s) started for cameras %s", worker.index, proc.pid,
                 ", ".join(sorted(assignments)) or "none yet")

    def _worker_of(self, camera_id: str) -> WorkerSlot | None:
        for w in self.workers:
            if camera_id in w.cameras:
                return w
        return None

    def _send(self, worker: WorkerSlot, command: tuple[Any, ...]) -> None:
        if worker.commands is not None and worker.process is not None \
                and worker.process.is_alive():
            worker.commands.put(command)

    def _start_camera(self, camera_id: str, reset: bool) -> None:
        worker = self._worker_of(camera_id)
        if worker is None:  # a new camera: the least loaded worker takes it
            worker = min(self.workers, key=lambda w: (w.failed, len(w.cameras)))
            worker.cameras.add(camera_id)
        if camera_id not in self.camera_slot:
            if not self.free_slots:
                raise RuntimeError(f"no state slot left for camera {camera_id}")
            self.camera_slot[camera_id] = self.free_slots.pop()
            reset = True
        slot = self.camera_slot[camera_id]
        if reset:
            self.slots[slot][W.RESTARTS] = 0.0
        self.slots[slot][W.STATUS] = W.IDLE
        self.last_errors.pop(camera_id, None)
        self.reasons.pop(camera_id, None)
        self.write_errors.pop(camera_id, None)
        self._send(worker, ("start", camera_id, slot, reset))

    def _stop_camera(self, camera_id: str, forget: bool = False) -> None:
        worker = self._worker_of(camera_id)
        if worker is not None:
            self._send(worker, ("stop", camera_id))
            if forget:
                worker.cameras.discard(camera_id)
        slot = self.camera_slot.get(camera_id)
        if slot is not None:
            self.slots[slot][W.STATUS] = W.STOPPED
            if forget:
                del self.camera_slot[camera_id]
                self.free_slots.append(slot)

    def _drain(self, worker: WorkerSlot) -> None:
        if worker.events is None:
            return
        while True:
            try:
                event = worker.events.get_nowait()
            except (queue.Empty, OSError, EOFError, ValueError):
                return
            except Exception:
                log.warning("dropped an unreadable event from worker %d", worker.index)
                return
            kind = event[0]
            if kind == "records":
                self.publish(event[1])
            elif kind == "error":
                _, cam, msg = event
                self.last_errors[cam] = msg
            elif kind == "write_error":  # None: the camera's writes succeed again
                _, cam, msg = event
                if msg is None:
                    self.write_errors.pop(cam, None)
                else:
                    self.write_errors[cam] = self.last_errors[cam] = msg
            elif kind == "perf":  # once a second: stage timings, reconnects, drops
                _, cam, figures = event
                self.perf[cam] = figures
            elif kind == "reason":  # the camera's state changed (None: running well again)
                _, cam, msg = event
                if msg is None:
                    self.reasons.pop(cam, None)
                else:
                    self.reasons[cam] = self.last_errors[cam] = msg

    def _check_worker(self, worker: WorkerSlot) -> None:
        proc = worker.process
        if proc is None or worker.failed or proc.is_alive():
            return
        self._drain(worker)
        code = proc.exitcode
        worker.exit_codes.append(code)
        worker.process = None
        if self._stop_requested.is_set():
            return
        if worker.restarts >= self.config.app.max_thread_restarts:
            log.error("worker %d exited with %s; restart budget (%d) spent, giving up on %s",
                      worker.index, code, self.config.app.max_thread_restarts,
                      ", ".join(sorted(worker.cameras)))
            worker.failed = True
            for c in worker.cameras:
                if self.slots[self.camera_slot[c]][W.STATUS] != W.FINISHED:
                    self.slots[self.camera_slot[c]][W.STATUS] = W.FAILED
            return
        worker.restarts += 1
        for c in worker.cameras:
            self.slots[self.camera_slot[c]][W.RESTARTS] += 1
            if code is not None and code < 0:
                self.last_errors[c] = f"worker killed by signal {-code}"
            elif code:
                self.last_errors.setdefault(c, f"worker exited with {code}")
        log.warning("worker %d exited with %s; restarting (%d/%d)", worker.index, code,
                    worker.restarts, self.config.app.max_thread_restarts)
        self._spawn(worker)

    def _retry_failed_cameras(self) -> None:
        """A camera whose thread failed (source gone, bad file) is retried with backoff."""
        now = time.monotonic()
        for cid, slot in list(self.camera_slot.items()):
            st = self.slots[slot]
            if st[W.STATUS] != W.FAILED or cid in self.paused:
                continue
            worker = self._worker_of(cid)
            if worker is None or worker.failed or worker.process is None:
                continue
            tries = self.camera_retries.get(cid, 0)
            if tries >= self.config.app.max_thread_restarts:
                continue
            due = self.retry_at.setdefault(cid, now + CAMERA_RETRY_SECONDS * 2 ** tries)
            if now >= due:
                self.camera_retries[cid] = tries + 1
                self.retry_at.pop(cid, None)
                st[W.RESTARTS] += 1
                log.warning("camera %s failed (%s); restarting it (%d/%d)", cid,
                            self.last_errors.get(cid), tries + 1,
                            self.config.app.max_thread_restarts)
                self._start_camera(cid, reset=False)

    # -- configuration ---------------------------------------------------------------------
    def publish(self, records: list[Record]) -> None:
        """Records of a camera on the bus; then the area records they make, on the bus."""
        self.bus.publish(records)
        made: list[Record] = []
        for agg in self.aggregators:
            made.extend(agg.take(records))
        if made:
            self.bus.publish(made)

    def _close_sinks(self) -> None:
        for name in [*self.bus.names()]:
            if name.startswith(("area:", "sink:")):
                self.bus.unsubscribe(name)
        for sink in [*self.area_loggers, *self.bus_sinks.values()]:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s failed", type(sink).__name__)
        self.area_loggers = []
        self.bus_sinks = {}
        self.aggregators = []

    def _build_sinks(self) -> None:
        """Area aggregation, the areas' own sinks, and every sink that runs on the bus:
        ``[SourceLogger_N]``/``[AreaLogger_N]`` sections whose sink is ``on_bus`` (one
        instance for every camera or area) and the ``[Output_N]`` sections (every record)."""
        self._close_sinks()
        cfg = self.config
        if cfg.app.process_areas:
            self.aggregators = []
            for area in cfg.areas:
                logged: list[datetime] = []
                for section in cfg.area_loggers:
                    area_cls = AREA_LOGGERS.get(section.name)
                    if not section.enabled or area_cls.on_bus:
                        continue
                    sink = area_cls(section, area, cfg)
                    self.area_loggers.append(sink)
                    self.bus.subscribe(
                        f"area:{area.id}:{section.section}", sink.take,
                        partial(_from_source, "area", area.id))
                    last = sink.last_logged()
                    if last is not None:
                        logged.append(last)
                self.aggregators.append(AreaAggregator(area, cfg, after=max(logged, default=None)))
        wanted: list[tuple[Any, type[Sink], Callable[[Record], bool] | None]] = []
        wanted += [(s, SOURCE_LOGGERS.get(s.name), _from_cameras)
                   for s in cfg.source_loggers]
        if cfg.app.process_areas:
            wanted += [(s, AREA_LOGGERS.get(s.name), _from_areas) for s in cfg.area_loggers]
        wanted += [(s, OUTPUTS.get(s.name), None) for s in cfg.outputs]
        for section, cls, accepts in wanted:
            if not section.enabled or not cls.on_bus:
                continue
            try:
                bus_sink: Sink = cls(section, None, cfg)  # type: ignore[call-arg]
            except Exception as exc:
                log.error("cannot start %s (%s): %s", section.section, section.name, exc)
                self.loop_errors[f"sink {section.section}"] = f"{type(exc).__name__}: {exc}"
                continue
            self.bus_sinks[section.section] = bus_sink
            attach = getattr(bus_sink, "attach", None)  # sinks that read the status
            if attach is not None:
                attach(self)
            self.bus.subscribe(f"sink:{section.section}", bus_sink.take, accepts)
        # E-mail and Slack notifications: built from the App/Source/Area keys, not a section
        # (libs/integrations/notify.py); closed and shown in GET /status like the sinks above.
        try:
            notifier = build_notifier(cfg)
        except Exception as exc:
            log.error("cannot start notifications: %s", exc)
            self.loop_errors[f"sink {NOTIFIER}"] = f"{type(exc).__name__}: {exc}"
            notifier = None
        if notifier is not None:
            self.bus_sinks[NOTIFIER] = notifier
            self.bus.subscribe(f"sink:{NOTIFIER}", notifier.take, notifier.accepts)

    def outputs_status(self) -> dict[str, Any]:
        """State of each sink on the bus (connected, queued, delivered, dropped, error)."""
        out: dict[str, Any] = {}
        for name, sink in self.bus_sinks.items():
            state = getattr(sink, "state", None)
            try:
                out[name] = state() if state is not None else {}
            except Exception as exc:
                out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            out[name]["name"] = sink.config.name  # type: ignore[attr-defined]
        return out

    def _build_tasks(self) -> None:
        for t in self.tasks:
            t.stop()
        self.tasks = []
        for section in self.config.periodic_tasks:
            if section.enabled:
                task = PERIODIC_TASKS.get(section.name)(section, self.config)
                runner = TaskRunner(task, section.name)
                self.tasks.append(runner)
                if self.running:
                    runner.start()

    def reload(self) -> dict[str, list[str]]:
        """Re-read the configuration file and restart only the cameras it changed.

        Returns which cameras were started, restarted and stopped.  Must run on the loop
        (use ``submit(sup.reload)`` from other threads).
        """
        new = load_config(self.config_path)
        old = self.config
        old_src = {s.id: s for s in old.sources}
        new_src = {s.id: s for s in new.sources}
        # Which cameras a change restarts is derived from the config models' markers.
        old_keys, new_keys = camera_restart_keys(old), camera_restart_keys(new)
        started, restarted, stopped = [], [], []
        self.config = new
        for cid in old_src.keys() - new_src.keys():
            self._stop_camera(cid, forget=True)
            stopped.append(cid)
        for cid, src in new_src.items():
            before = old_src.get(cid)
            if before is None:
                if src.enabled:
                    self._start_camera(cid, reset=True)
                    started.append(cid)
                continue
            if not src.enabled:
                if before.enabled:
                    self._stop_camera(cid)
                    stopped.append(cid)
                continue
            if old_keys[cid] != new_keys[cid] or not before.enabled:
                reset = before.video_path != src.video_path or not before.enabled
                self.paused.discard(cid)
                self._start_camera(cid, reset=reset)
                restarted.append(cid)
        if _dumps(old.areas) != _dumps(new.areas) or \
                _dumps(old.area_loggers) != _dumps(new.area_loggers) or \
                _dumps(old.source_loggers) != _dumps(new.source_loggers) or \
                _dumps(old.outputs) != _dumps(new.outputs) or \
                old.app.process_areas != new.app.process_areas or \
                old.app.processor_name != new.app.processor_name or \
                notification_settings(old) != notification_settings(new):
            self._build_sinks()
        if [t.model_dump() for t in old.periodic_tasks] != \
                [t.model_dump() for t in new.periodic_tasks] or \
                old.app.processor_name != new.app.processor_name:  # s3_backup's key prefix
            self._build_tasks()
        log.info("configuration reloaded: started %s, restarted %s, stopped %s",
                 started or "none", restarted or "none", stopped or "none")
        return {"started": started, "restarted": restarted, "stopped": stopped}

    def pause_camera(self, camera_id: str) -> None:
        self.config.source(camera_id)  # KeyError for an unknown camera
        self.paused.add(camera_id)
        self._stop_camera(camera_id)

    def resume_camera(self, camera_id: str) -> None:
        src = self.config.source(camera_id)
        self.paused.discard(camera_id)
        if src.enabled:
            self._start_camera(camera_id, reset=False)

    def pause_all(self) -> bool:
        running = [c for c in self.camera_slot if c not in self.paused]
        for c in running:
            self.pause_camera(c)
        return bool(running)

    def resume_all(self) -> bool:
        paused = list(self.paused)
        for c in paused:
            self.resume_camera(c)
        return bool(paused)

    # -- status ----------------------------------------------------------------------------
    def camera_status(self) -> dict[str, dict[str, Any]]:
        """Each camera's state as its worker last reported it.

        ``status`` is ``running`` only while frames flow; ``connecting`` (no frame yet),
        ``reconnecting`` (a live source lost), ``stalled`` (open, no new frame) and
        ``degraded`` (frames undecodable) come with a ``reason``; ``fps`` is 0 whenever no
        frames flow; ``skipped_frames`` counts frames of the source that could not be decoded;
        ``max_fps`` is the camera's ``MaxFPS`` cap (``None``: uncapped), and ``fps`` the rate
        it is processed at under it (the frames dropped to keep to it are in
        ``dropped_frames``).
        """
        out: dict[str, dict[str, Any]] = {}
        troubled = {"connecting": "opening the source", "reconnecting": "source lost",
                    "stalled": "no new frame", "degraded": "undecodable frames skipped"}
        for src in self.config.sources:
            cid = src.id
            slot = self.camera_slot.get(cid)
            if slot is None:
                out[cid] = {"status": "disabled" if not src.enabled else "idle", "frames": 0,
                            "next_index": 0, "total_frames": None, "fps": 0.0,
                            "last_frame_time": None, "restarts": 0,
                            "last_error": self.last_errors.get(cid), "reason": None,
                            "skipped_frames": 0, "write_error": self.write_errors.get(cid),
                            "stage_ms": {}, "reconnects": 0, "dropped_frames": 0,
                            "max_fps": src.max_fps}
                continue
            st = self.slots[slot]
            perf = self.perf.get(cid, {})
            last = st[W.LAST_TS]
            status = W.STATUS_NAMES.get(st[W.STATUS], "unknown")
            if cid in self.paused:
                status = "paused"
            elif not src.enabled:
                status = "disabled"
            reason = None
            if status in troubled:  # the worker's words, once its event is read
                reason = self.reasons.get(cid) or troubled[status]
            elif status == "failed":
                reason = self.last_errors.get(cid)
            out[cid] = {
                "status": status,
                "frames": int(st[W.FRAMES]),
                "next_index": int(st[W.NEXT_INDEX]),
                "total_frames": int(st[W.TOTAL]) or None,
                "fps": round(st[W.FPS], 2) if status in ("running", "degraded") else 0.0,
                "last_frame_time": datetime.fromtimestamp(last, self.config.app.tzinfo)
                .isoformat() if last else None,
                "restarts": int(st[W.RESTARTS]),
                "last_error": self.last_errors.get(cid),
                "reason": reason,
                "skipped_frames": int(st[W.SKIPPED]),
                "write_error": self.write_errors.get(cid),
                "stage_ms": dict(perf.get("stage_ms", {})),
                "reconnects": int(perf.get("reconnects", 0)),
                "dropped_frames": int(perf.get("dropped_frames", 0)),
                "max_fps": src.max_fps,
            }
        return out

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "started": self.started.isoformat(),
            "updated": datetime.now(UTC).isoformat(),
            "workers": [
                {
                    "index": w.index,
                    "pid": w.process.pid if w.process else None,
                    "alive": bool(w.process and w.process.is_alive()),
                    "cameras": sorted(w.cameras),
                    "restarts": w.restarts,
                    "exit_codes": w.exit_codes,
                }
                for w in self.workers
            ],
            "cameras": self.camera_status(),
            "outputs": self.outputs_status(),
            "health": self._health,
        }

    def write_status(self) -> None:
        """Write ``status.json`` atomically.  A failed write (disk full, read-only) never
        escapes: it is kept in :attr:`status_error` (so ``/health`` reports it), logged once
        per change of state, and the next round (every second) tries again."""
        try:
            atomic_write_bytes(self.status_path, json.dumps(self.status(), indent=1).encode())
        except OSError as exc:
            error = describe_write_error(exc, self.status_path)
            if self.status_error is None:
                log.error("cannot write the status: %s; trying again every second", error)
            self.status_error = error
            return
        if self.status_error is not None:
            log.warning("status written again (it had failed: %s)", self.status_error)
            self.status_error = None

    def _refresh_health(self) -> None:
        """Collect what fails now into the summary :meth:`health` hands out."""
        reasons: list[str] = []
        if self.status_error:
            reasons.append(f"status: {self.status_error}")
        reasons += [f"camera {c}: {m}" for c, m in sorted(self.write_errors.items())]
        for lg in self.area_loggers:
            health = getattr(lg, "write_health", None)
            error = health().error if health is not None else None
            if error:
                reasons.append(f"area {lg.area.id}: {error}")
        reasons += [f"task {t.task_name}: {t.error}" for t in self.tasks if t.error]
        reasons += [f"supervisor {p}: {m}" for p, m in sorted(self.loop_errors.items())]
        summary: dict[str, Any] = {"status": "failing" if reasons else "ok"}
        if reasons:
            summary["reasons"] = [r[:MAX_REASON_CHARS] for r in reasons[:MAX_HEALTH_REASONS]]
            summary["more_reasons"] = max(0, len(reasons) - MAX_HEALTH_REASONS)
        self._health = summary

    def health(self) -> dict[str, Any]:
        """Whether the processor works and writes, for ``/health``: ``{"status": "ok"}`` or
        ``{"status": "failing", "reasons": [...]}`` (at most :data:`MAX_HEALTH_REASONS`, each
        at most :data:`MAX_REASON_CHARS` long).

        Safe and cheap from any thread: it reads the summary the loop refreshes every
        second, and says ``failing`` when the loop itself has stopped or stalled.
        """
        thread = self._loop_thread
        if self.running and not self._stop_requested.is_set():
            if thread is not None and not thread.is_alive():
                return {"status": "failing", "reasons": ["supervisor: its loop has stopped"]}
            silent = time.monotonic() - self._heartbeat
            if silent > HEALTH_STALE_SECONDS:
                return {"status": "failing",
                        "reasons": [f"supervisor: its loop has not run for {silent:.0f} s"]}
        return self._health

    def _guarded(self, part: str, fn: Callable[[], object]) -> bool:
        """Run one part of a loop round; an exception is logged (once per change) and
        remembered for ``/health``, and the loop goes on.  True when ``fn`` succeeded."""
        try:
            fn()
        except Exception as exc:
            error = describe_write_error(exc) if isinstance(exc, OSError) \
                else f"{type(exc).__name__}: {exc}"
            if self.loop_errors.get(part) != error:
                log.exception("supervisor: %s failed; going on", part)
            self.loop_errors[part] = error[:MAX_REASON_CHARS]
            return False
        if self.loop_errors.pop(part, None) is not None:
            log.warning("supervisor: %s works again", part)
        return True

    def _status_round(self) -> None:
        self._refresh_health()
        self.write_status()
        self.progress.update(self.camera_status())

    def _note_all_done(self) -> None:
        self._recordings_done = self._all_done()  # now: a camera may be resumed or added
        if not self.all_done.is_set() and self._recordings_done:
            self.all_done.set()
            if not self.exit_when_done:
                for t in self.tasks:  # reports of the finished recordings, now
                    t.wake.set()

    def _all_done(self) -> bool:
        if not self.camera_slot:
            return False
        done = (W.FINISHED, W.STOPPED)
        for cid, slot in self.camera_slot.items():
            st = self.slots[slot][W.STATUS]
            if cid in self.paused or st in done:
                continue
            if st == W.FAILED:
                worker = self._worker_of(cid)
                gave_up = (worker is None or worker.failed or
                           self.camera_retries.get(cid, 0)
                           >= self.config.app.max_thread_restarts)
                if gave_up:
                    continue
            return False
        return True

    # -- main loop -------------------------------------------------------------------------
    def request_stop(self, signum: int | None = None, _frame: Any = None) -> None:
        if not self._stop_requested.is_set():
            log.info("stopping%s: letting cameras finish their frame and flush",
                     f" (signal {signum})" if signum else "")
        self._stop_requested.set()
        self.stop_event.set()

    def start(self) -> None:
        """Start workers, area loggers and periodic tasks (on the calling thread).

        Raises :class:`processor.runlock.AlreadyRunningError` when another processor, or a
        worker of an earlier one, is writing the same data directory."""
        self.run_lock.acquire()
        self.running = True
        self._build_sinks()
        self._build_tasks()
        enabled = [s.id for s in self.config.enabled_sources()]
        for i, cid in enumerate(enabled):
            self.workers[i % len(self.workers)].cameras.add(cid)
            self.camera_slot[cid] = self.free_slots.pop()
        for w in self.workers:
            self._spawn(w)

    def loop(self) -> int:
        """Run until stopped (or, with ``exit_when_done``, until every recording is done)."""
        last_status = 0.0
        try:
            while not self._stop_requested.is_set():
                # Each part is guarded: a full disk or a bug in one part is logged and
                # reported by /health, and never ends the loop (nor the processor with it).
                self._heartbeat = time.monotonic()
                self._guarded("commands", self._run_commands)
                for w in self.workers:
                    self._guarded(f"worker {w.index} events", partial(self._drain, w))
                    self._guarded(f"worker {w.index}", partial(self._check_worker, w))
                self._guarded("camera retries", self._retry_failed_cameras)
                now = time.monotonic()
                if now - last_status >= 1.0:
                    self._guarded("status", self._status_round)
                    last_status = now
                self._guarded("completion", self._note_all_done)
                if self._done_for_good():
                    log.info("every recording is processed (%s); exiting",
                             "HistoricalDataMode = True" if
                             self.config.app.historical_data_mode else "--no-api")
                    self.ended_by_itself = True
                    break
                time.sleep(0.05)
        finally:
            self._shutdown()
        self.progress.update(self.camera_status(), final=True)
        failed = any(self.slots[s][W.STATUS] == W.FAILED for s in self.camera_slot.values())
        self.exit_code = 1 if failed else 0
        return self.exit_code

    def _done_for_good(self) -> bool:
        """Every recording is done and the run is to end with them.  A camera paused
        through the API is waiting to be resumed, not done: it holds the run open; so does a
        camera resumed or added after the others were done (:meth:`_note_all_done` asks
        every round)."""
        return self.exit_when_done and not self.paused and self._recordings_done

    def run(self) -> int:
        """Start and loop on this (main) thread, with SIGINT/SIGTERM stopping cleanly."""
        if not self.config.enabled_sources() and self.exit_when_done:
            log.error("no enabled [Source_N] in %s", self.config_path)
            return 2
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.start()
        return self.loop()

    def run_in_thread(self) -> threading.Thread:
        """Start and loop on a background thread (when another server owns the main one)."""
        self.start()
        self._loop_thread = threading.Thread(target=self.loop, name="supervisor", daemon=True)
        self._loop_thread.start()
        return self._loop_thread

    def _shutdown(self) -> None:
        self._stop_requested.set()
        self.stop_event.set()
        self._run_commands()  # answer what is queued (they see a stopping processor)
        deadline = time.monotonic() + 30
        for w in self.workers:
            proc = w.process
            if proc is None:
                continue
            while proc.is_alive() and time.monotonic() < deadline:
                self._drain(w)
                proc.join(timeout=0.1)
            if proc.is_alive():
                log.warning("worker %d did not stop in time; terminating", w.index)
                proc.terminate()
                proc.join(5)
            self._drain(w)
        self._close_sinks()
        for t in self.tasks:
            t.stop()
        for t in self.tasks:
            if t.is_alive():
                t.join(timeout=60)
            t.run_once()  # final reports include everything logged
        self.write_status()
        self.running = False
        self.run_lock.release()


def _dumps(sections: list[Any]) -> list[Any]:
    return [s.model_dump() for s in sections]


def _from_source(source: str, source_id: str, rec: Record) -> bool:
    return rec.source == source and rec.source_id == source_id


def _from_cameras(rec: Record) -> bool:
    return rec.source == "camera"


def _from_areas(rec: Record) -> bool:
    return rec.source == "area"


def run(config_path: str | Path, log_level: str = "INFO", show_progress: bool = True) -> int:
    W.setup_logging(log_level)
    sup = Supervisor(config_path, log_level=log_level, show_progress=show_progress)
    code = sup.run()
    sys.stderr.flush()
    return code
