"""One processor per data directory, and no worker that outlives its supervisor.

* :class:`RunLock` — the supervisor holds an exclusive ``flock`` on
  ``<DataDirectory>/processor/run.lock`` while it runs, so a second ``lookout run`` on the
  same data refuses to start instead of writing the same files.  Each worker holds a shared
  lock on ``workers.lock``; a new supervisor first checks that nobody holds it, i.e. that no
  worker of an earlier run is still writing.
* :func:`die_with_parent` — a worker asks the kernel to kill it when its parent dies
  (``PR_SET_PDEATHSIG``), and a watchdog thread exits it if its parent changes anyway (the
  signal is tied to the thread that started the worker, and other systems have no prctl).

The kernel drops ``flock`` locks when a process dies, whatever killed it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import logging
import os
import signal
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
ORPHAN_WAIT_SECONDS = 3.0


class AlreadyRunningError(RuntimeError):
    """Another processor (or its workers) is writing this data directory."""


def _holder_pid(path: Path) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text().strip()
        if text:
            return text
    return "unknown"


class RunLock:
    """The supervisor's exclusive claim on a data directory."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.run_path = folder / "run.lock"
        self.workers_path = folder / "workers.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunningError(
                f"another Lookout processor (pid {_holder_pid(self.run_path)}) is using "
                f"{self.folder.parent}; stop it first") from None
        try:
            self._wait_for_orphans()
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def _wait_for_orphans(self) -> None:
        """Workers of a run whose supervisor was killed hold ``workers.lock`` (shared) until
        they die; they die with their parent, so this waits a moment, then refuses."""
        fd = os.open(self.workers_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    return
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise AlreadyRunningError(
                            f"workers of an earlier Lookout run are still writing "
                            f"{self.folder.parent}; stop them first") from None
                    time.sleep(0.1)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def hold_worker_lock(folder: Path) -> int:
    """A worker's shared claim, kept for its whole life (the descriptor is never closed)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "workers.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def die_with_parent(parent_pid: int, poll_seconds: float = 0.2) -> None:
    """Make this process end when ``parent_pid`` (its supervisor) ends."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            libc = ctypes.CDLL(libc_name, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError):
            log.debug("no prctl here; relying on the parent watchdog")
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
