"""The supervisor: spreads cameras over worker processes, restarts crashed workers,
feeds the area loggers, runs the periodic tasks, shows progress and shuts down cleanly.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

from libs.config import load_config
from libs.config.models import LookoutConfig
from libs.loggers import AREA_LOGGERS, AreaLogger
from libs.periodic_tasks import PERIODIC_TASKS, PeriodicTask
from processor import worker as W
from processor.progress import ProgressDisplay

log = logging.getLogger(__name__)


@dataclass
class WorkerSlot:
    index: int
    cameras: list[str]
    process: SpawnProcess | None = None
    events: Any = None
    restarts: int = 0
    done: bool = False
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

    def run_once(self) -> None:
        with self.lock:
            try:
                self.task.run()
            except Exception:
                log.exception("periodic task %s failed", self.task_name)

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.wake.wait(self.task.interval_seconds)
            self.wake.clear()
            if self.stop_flag.is_set():
                break
            self.run_once()

    def stop(self) -> None:
        self.stop_flag.set()
        self.wake.set()


class Supervisor:
    def __init__(self, config_path: str | Path, log_level: str = "INFO",
                 show_progress: bool = True) -> None:
        self.config_path = str(config_path)
        self.config: LookoutConfig = load_config(self.config_path)
        self.log_level = log_level
        self.ctx = mp.get_context("spawn")
        self.stop_event = self.ctx.Event()
        self.cameras = [s.id for s in self.config.enabled_sources()]
        self.states: dict[str, Any] = {
            cid: self.ctx.Array("d", W.STATE_FIELDS, lock=False) for cid in self.cameras
        }
        self.last_errors: dict[str, str] = {}
        n = min(self.config.app.max_processes, max(1, len(self.cameras)))
        buckets: list[list[str]] = [[] for _ in range(n)]
        for i, cid in enumerate(self.cameras):
            buckets[i % n].append(cid)
        self.slots = [WorkerSlot(i, b) for i, b in enumerate(buckets) if b]
        self.area_loggers: list[AreaLogger] = []
        if self.config.app.process_areas:
            for area in self.config.areas:
                for lg in self.config.area_loggers:
                    if lg.enabled:
                        self.area_loggers.append(AREA_LOGGERS.get(lg.name)(lg, area, self.config))
        self.tasks: list[TaskRunner] = []
        for t in self.config.periodic_tasks:
            if t.enabled:
                task = PERIODIC_TASKS.get(t.name)(t, self.config)
                self.tasks.append(TaskRunner(task, t.name))
        self.status_path = self.config.data_path("processor/status.json")
        self.progress = ProgressDisplay(enabled=show_progress)
        self.started = datetime.now(UTC)
        self._stopping = False

    # -- workers ---------------------------------------------------------------------------
    def _start(self, slot: WorkerSlot) -> None:
        slot.events = self.ctx.Queue(10000)
        proc = self.ctx.Process(
            target=W.worker_main,
            args=(
                self.config_path,
                slot.cameras,
                {c: self.states[c] for c in slot.cameras},
                slot.events,
                self.stop_event,
                self.log_level,
            ),
            name=f"lookout-worker-{slot.index}",
            daemon=False,
        )
        proc.start()
        slot.process = proc
        log.info("worker %d (pid %s) started for cameras %s", slot.index, proc.pid,
                 ", ".join(slot.cameras))

    def _drain(self, slot: WorkerSlot) -> None:
        if slot.events is None:
            return
        while True:
            try:
                event = slot.events.get_nowait()
            except (queue.Empty, OSError, EOFError, ValueError):
                return
            except Exception:
                log.warning("dropped an unreadable event from worker %d", slot.index)
                return
            kind = event[0]
            if kind == "occupancy":
                _, cam, ts, occ = event
                for lg in self.area_loggers:
                    if cam in lg.area.cameras:
                        lg.update(cam, ts, occ)
            elif kind == "error":
                _, cam, msg = event
                self.last_errors[cam] = msg

    def _check(self, slot: WorkerSlot) -> None:
        proc = slot.process
        if proc is None or slot.done or proc.is_alive():
            return
        self._drain(slot)
        code = proc.exitcode
        slot.exit_codes.append(code)
        if code == 0 or self._stopping:
            slot.done = True
            return
        unfinished = [
            c for c in slot.cameras if self.states[c][W.STATUS] not in (W.FINISHED, W.STOPPED)
        ]
        if not unfinished:
            slot.done = True
            return
        if slot.restarts >= self.config.app.max_thread_restarts:
            log.error("worker %d exited with %s; restart budget (%d) spent, giving up on %s",
                      slot.index, code, self.config.app.max_thread_restarts,
                      ", ".join(slot.cameras))
            slot.done = slot.failed = True
            for c in slot.cameras:
                if self.states[c][W.STATUS] != W.FINISHED:
                    self.states[c][W.STATUS] = W.FAILED
            return
        slot.restarts += 1
        for c in slot.cameras:
            self.states[c][W.RESTARTS] = slot.restarts
            if code is not None and code < 0:
                self.last_errors.setdefault(c, f"worker killed by signal {-code}")
        log.warning("worker %d exited with %s; restarting (%d/%d)", slot.index, code,
                    slot.restarts, self.config.app.max_thread_restarts)
        self._start(slot)

    # -- status ----------------------------------------------------------------------------
    def camera_status(self) -> dict[str, dict[str, Any]]:
        out = {}
        for cid, st in self.states.items():
            last = st[W.LAST_TS]
            out[cid] = {
                "status": W.STATUS_NAMES.get(st[W.STATUS], "unknown"),
                "frames": int(st[W.FRAMES]),
                "next_index": int(st[W.NEXT_INDEX]),
                "total_frames": int(st[W.TOTAL]) or None,
                "fps": round(st[W.FPS], 2),
                "last_frame_time": datetime.fromtimestamp(last, self.config.app.tzinfo).isoformat()
                if last else None,
                "restarts": int(st[W.RESTARTS]),
                "last_error": self.last_errors.get(cid),
            }
        return out

    def write_status(self) -> None:
        status = {
            "pid": os.getpid(),
            "started": self.started.isoformat(),
            "updated": datetime.now(UTC).isoformat(),
            "workers": [
                {
                    "index": s.index,
                    "pid": s.process.pid if s.process else None,
                    "alive": bool(s.process and s.process.is_alive()),
                    "cameras": s.cameras,
                    "restarts": s.restarts,
                    "exit_codes": s.exit_codes,
                }
                for s in self.slots
            ],
            "cameras": self.camera_status(),
        }
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=1))
        os.replace(tmp, self.status_path)

    # -- main loop -------------------------------------------------------------------------
    def request_stop(self, signum: int | None = None, _frame: Any = None) -> None:
        if not self._stopping:
            log.info("stopping (signal %s): letting cameras finish their frame and flush",
                     signum)
        self._stopping = True
        self.stop_event.set()

    def run(self) -> int:
        if not self.cameras:
            log.error("no enabled [Source_N] in %s", self.config_path)
            return 2
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        for slot in self.slots:
            self._start(slot)
        for t in self.tasks:
            t.start()
        last_status = 0.0
        try:
            while not all(s.done for s in self.slots):
                for slot in self.slots:
                    self._drain(slot)
                    self._check(slot)
                now = time.monotonic()
                if now - last_status >= 1.0:
                    self.write_status()
                    self.progress.update(self.camera_status())
                    last_status = now
                time.sleep(0.1)
        finally:
            self._shutdown()
        self.progress.update(self.camera_status(), final=True)
        failed = any(s.failed for s in self.slots)
        return 1 if failed else 0

    def _shutdown(self) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + 30
        for slot in self.slots:
            proc = slot.process
            if proc is None:
                continue
            while proc.is_alive() and time.monotonic() < deadline:
                self._drain(slot)
                proc.join(timeout=0.1)
            if proc.is_alive():
                log.warning("worker %d did not stop in time; terminating", slot.index)
                proc.terminate()
                proc.join(5)
            self._drain(slot)
        for lg in self.area_loggers:
            try:
                lg.close()
            except Exception:
                log.exception("closing area logger failed")
        for t in self.tasks:
            t.stop()
        for t in self.tasks:
            if t.is_alive():
                t.join(timeout=60)
            t.run_once()  # final reports include everything logged
        self.write_status()


def run(config_path: str | Path, log_level: str = "INFO", show_progress: bool | None = None) -> int:
    W.setup_logging(log_level)
    if show_progress is None:
        show_progress = True
    sup = Supervisor(config_path, log_level=log_level, show_progress=show_progress)
    code = sup.run()
    sys.stderr.flush()
    return code
