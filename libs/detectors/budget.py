"""The thread budget: how the machine's cores are split among worker processes and the
detector sessions inside each, so that no configuration oversubscribes the machine.

Measured on a 2-core x86 machine with YOLOX-nano (docs/benchmarks.md): one ONNX Runtime
session with two intra-op threads detects 70 frames a second, two sessions of one thread each,
called from two threads of one process, 133 (two processes of one thread: 136); LiteRT 51
against 76.  So CPU backends that scale by sessions (ONNX Runtime, LiteRT) get one session per
core of the worker, one thread each; so does OpenVINO, whose sessions share one model compiled
for as many streams; an accelerator (CUDA, TensorRT, Edge TPU) gets one session.

Workers: ``[App] MaxProcesses``, but never more than the enabled cameras (a worker without a
camera uses no core); each gets an equal share of the cores, at least one.  ``[Detector]
Sessions`` and ``Threads`` set either number by hand (0: the budget's choice).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from libs.registry import UnknownPluginError

if TYPE_CHECKING:
    from libs.config.models import DetectorConfig, LookoutConfig


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset``
    restrict), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity call on this platform
        return max(1, os.cpu_count() or 1)


def scales_by_sessions(device: str) -> bool:
    """Whether the ``device`` backend runs faster as several one-thread sessions than as
    one session with several threads (False for an unknown or missing backend)."""
    from libs.detectors import DETECTORS

    try:
        return DETECTORS.get(device).scales_by_sessions
    except UnknownPluginError:
        return False


@dataclass(frozen=True)
class ThreadBudget:
    cores: int  # cores the processor may use
    workers: int  # worker processes that run cameras
    worker_cores: int  # cores of each worker
    sessions: int  # detector sessions per worker (per detector model)
    threads: int  # threads of each session
    device: str
    # Threads of a recording's video decoder: 1 where detector sessions take the cores (more
    # decoder threads only fight them), 0 (the decoder's own choice) where an accelerator
    # detects.
    decode_threads: int = 0

    @property
    def oversubscribed(self) -> bool:
        return self.workers * self.sessions * self.threads > self.cores

    def describe(self) -> str:
        text = (f"thread budget: {self.cores} core{'s' * (self.cores != 1)}, "
                f"{self.workers} worker process{'es' * (self.workers != 1)} with cameras, "
                f"each {self.sessions} detector session{'s' * (self.sessions != 1)} x "
                f"{self.threads} thread{'s' * (self.threads != 1)} (Device {self.device}); "
                f"recordings decoded with "
                + (f"{self.decode_threads} thread{'s' * (self.decode_threads != 1)}"
                   if self.decode_threads else "the decoder's own threads"))
        if self.oversubscribed:
            text += (f"; {self.workers * self.sessions * self.threads} threads for "
                     f"{self.cores} cores: lower MaxProcesses, Sessions or Threads")
        return text


def active_workers(config: LookoutConfig) -> int:
    """Worker processes that get a camera: MaxProcesses, at most one per enabled camera."""
    cameras = sum(1 for s in config.sources if s.enabled)
    return max(1, min(config.app.max_processes, cameras or 1))


def thread_budget(config: LookoutConfig, detector: DetectorConfig | None = None,
                  cores: int | None = None) -> ThreadBudget:
    """The budget of ``detector`` (default ``[Detector]``) under ``config``'s workers."""
    det = detector if detector is not None else config.detector
    total = cores if cores is not None else available_cores()
    workers = active_workers(config)
    worker_cores = max(1, total // workers)
    if scales_by_sessions(det.device):
        threads = det.threads or 1
        sessions = det.sessions or max(1, worker_cores // threads)
        decode = 1
    else:
        sessions = det.sessions or 1
        threads = det.threads or max(1, worker_cores // sessions)
        decode = 0
    return ThreadBudget(total, workers, worker_cores, sessions, threads, det.device, decode)
