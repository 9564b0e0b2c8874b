"""Disk work off the frame loop.

:class:`BackgroundWriter` owns one daemon thread fed by a bounded queue.  The frame loop only
formats a line and enqueues it; the thread appends it with a single ``os.write`` on an
``O_APPEND`` descriptor, so a process killed at any moment leaves either the whole line or
none of it.  A line torn by a crash of an older writer (the file's last byte is not a newline)
is cut back to the last complete line when the file is opened again.

:class:`LatestOnlyWorker` is the other shape of background work: a single pending slot that
the newest item replaces (live previews, where an old picture is worth nothing).

:func:`atomic_write_bytes` writes a whole file through a temporary file and a rename, so
readers see the old or the new content, never a mix.

Both thread owners notice a ``fork``: a child process gets its own fresh thread and queue on
first use instead of talking to a thread that only exists in the parent.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_QUEUE = 10_000
DEFAULT_MAX_OPEN_FILES = 64
_TAIL_CHUNK = 64 * 1024

_tmp_counter = itertools.count()


class WriterClosedError(RuntimeError):
    """Work was handed to a writer after :meth:`BackgroundWriter.close`."""


def _new_fork_lock() -> None:
    global _FORK_LOCK
    _FORK_LOCK = threading.Lock()


# Guards the "first use in this process" reset of every writer.  A lock held by some parent
# thread at fork time would stay locked forever in the child, so the child gets a new one.
_FORK_LOCK = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_fork_lock)


def atomic_write_bytes(path: Path | str, data: bytes, fsync: bool = False) -> None:
    """Replace ``path`` with ``data``: temporary file in the same folder, then rename.

    Parent folders are created.  ``fsync`` also forces the data to disk before the rename
    (use it for files that must survive a power cut, not for 5 fps previews).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_tmp_counter)}.tmp")
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(tmp, flags, 0o644)
        try:
            _write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_if_changed(path: Path | str, data: bytes) -> bool:
    """:func:`atomic_write_bytes` unless ``path`` already holds exactly ``data``.

    Returns whether the file was written.  Leaving an identical file alone keeps its
    modification time, which readers may use to see whether anything changed.
    """
    path = Path(path)
    try:
        if path.read_bytes() == data:
            return False
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        pass
    atomic_write_bytes(path, data)
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _repair_torn_tail(fd: int, path: Path) -> int:
    """Cut a partial last line (no trailing newline) off the file; returns the new size."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    keep = 0
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    os.ftruncate(fd, keep)
    log.warning("%s: cut a torn last line (%d bytes) left by a crash", path, size - keep)
    return keep


@dataclass
class _OpenFile:
    fd: int
    device: int
    inode: int
    empty: bool


@dataclass
class _Append:
    path: Path
    data: bytes
    header: bytes | None


@dataclass
class _WriteFile:
    path: Path
    data: bytes


@dataclass
class _Call:
    fn: Callable[[], object]


@dataclass
class _Flush:
    done: threading.Event


class _Stop:
    pass


_Job = _Append | _WriteFile | _Call | _Flush | _Stop


class BackgroundWriter:
    """Appends lines and writes files on a daemon thread, in the order they were handed in.

    The queue is bounded (``max_queue`` jobs): when the disk cannot keep up, the caller
    blocks on ``put`` instead of the process growing without bound.  File descriptors stay
    open per path; beyond ``max_open_files`` the least recently used is closed.  A failed
    write (disk full, permissions) is logged and counted in :attr:`errors`; it never stops
    the thread.  Use one writer per process or per logger; :meth:`close` it when done.
    """

    def __init__(
        self,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_open_files: int = DEFAULT_MAX_OPEN_FILES,
        name: str = "lookout-writer",
    ) -> None:
        if max_queue < 1 or max_open_files < 1:
            raise ValueError("max_queue and max_open_files must be >= 1")
        self.max_queue = max_queue
        self.max_open_files = max_open_files
        self.name = name
        self.errors = 0
        self.last_error: str | None = None
        self._pid = -1
        self._closed = False
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Job] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._files: OrderedDict[Path, _OpenFile] = OrderedDict()

    # -- public API, called from any thread ------------------------------------------------

    def append_line(self, path: Path | str, line: str, header: str | None = None) -> None:
        """Append ``line`` (a newline is added when missing) to ``path``.

        When the file is new or empty, ``header`` (if given) is written first, in the same
        ``os.write`` as the line.  Parent folders are created.
        """
        data = _as_line(line)
        head = _as_line(header) if header is not None else None
        self._put(_Append(Path(path), data, head))

    def write_file(self, path: Path | str, data: bytes) -> None:
        """Replace ``path`` with ``data`` atomically (temporary file, then rename)."""
        self._put(_WriteFile(Path(path), bytes(data)))

    def submit(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the writer thread, after the work queued before it.

        For slow preparation of a file (JPEG encoding) that must not run in the frame loop.
        Exceptions are logged and counted like failed writes.
        """
        self._put(_Call(fn))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written; False if ``timeout`` ran out."""
        if not self._running_here():
            return True
        if threading.current_thread() is self._thread:
            return True  # called from a submitted function: the caller *is* the queue
        if self._closed:  # stopping: the stop job comes after everything queued
            assert self._thread is not None
            self._thread.join(timeout)
            return not self._thread.is_alive()
        done = threading.Event()
        try:
            self._queue.put(_Flush(done), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, stop the thread and close the files.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._running_here():
            self._queue.put(_Stop())
            assert self._thread is not None
            if self._thread is not threading.current_thread():
                self._thread.join(timeout)
        if not self._thread_alive():
            self._close_files()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Jobs waiting in the queue (approximate)."""
        return self._queue.qsize() if self._running_here() else 0

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- thread management -----------------------------------------------------------------

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _running_here(self) -> bool:
        return self._pid == os.getpid() and self._thread_alive()

    def _put(self, job: _Job) -> None:
        if self._closed:
            raise WriterClosedError(f"{self.name} is closed")
        if self._pid != os.getpid() or self._thread is None:
            self._start_in_this_process()
        self._queue.put(job)

    def _start_in_this_process(self) -> None:
        with _FORK_LOCK:
            pid = os.getpid()
            if self._pid == pid and self._thread is not None:
                return
            if self._pid != -1 and self._pid != pid:
                # Forked: the descriptors and queue belong to the parent's thread.
                for opened in self._files.values():
                    with contextlib.suppress(OSError):
                        os.close(opened.fd)
                self._files.clear()
                self._lock = threading.Lock()
                self._queue = queue.Queue(self.max_queue)
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._pid = pid
            self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if isinstance(job, _Stop):
                break
            try:
                self._do(job)
            except Exception as exc:  # one bad write must not stop the rest
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("%s: background write failed", self.name)
        self._close_files()

    def _do(self, job: _Job) -> None:
        if isinstance(job, _Append):
            self._append(job)
        elif isinstance(job, _WriteFile):
            self._forget(job.path)
            atomic_write_bytes(job.path, job.data)
        elif isinstance(job, _Call):
            job.fn()
        elif isinstance(job, _Flush):
            job.done.set()

    # -- files (writer thread only) --------------------------------------------------------

    def _append(self, job: _Append) -> None:
        opened = self._open(job.path)
        data = job.data
        if opened.empty:
            if job.header is not None:
                data = job.header + data
            opened.empty = False
        _write_all(opened.fd, data)

    def _open(self, path: Path) -> _OpenFile:
        opened = self._files.get(path)
        if opened is not None:
            try:
                st = os.stat(path)
                same = (st.st_dev, st.st_ino) == (opened.device, opened.inode)
            except FileNotFoundError:
                same = False
            if same:
                self._files.move_to_end(path)
                return opened
            self._forget(path)  # deleted or replaced behind our back: follow the name
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o644)
        try:
            size = _repair_torn_tail(fd, path)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        opened = _OpenFile(fd, st.st_dev, st.st_ino, size == 0)
        self._files[path] = opened
        while len(self._files) > self.max_open_files:
            _, oldest = self._files.popitem(last=False)
            os.close(oldest.fd)
        return opened

    def _forget(self, path: Path) -> None:
        opened = self._files.pop(path, None)
        if opened is not None:
            os.close(opened.fd)

    def _close_files(self) -> None:
        while self._files:
            _, opened = self._files.popitem()
            with contextlib.suppress(OSError):
                os.close(opened.fd)


def _as_line(text: str) -> bytes:
    data = text.encode("utf-8")
    return data if data.endswith(b"\n") else data + b"\n"


class LatestOnlyWorker(Generic[T]):
    """Runs ``handler(item)`` on a daemon thread for the newest item offered.

    :meth:`offer` never blocks: when the handler is busy, the new item replaces the one
    waiting (which is dropped and counted in :attr:`dropped`).  For previews and other work
    where only the latest state matters.
    """

    def __init__(self, handler: Callable[[T], object], name: str = "lookout-latest") -> None:
        self.handler = handler
        self.name = name
        self.dropped = 0
        self.handled = 0
        self.errors = 0
        self._pid = -1
        self._cond = threading.Condition()
        self._item: T | None = None
        self._has_item = False
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def offer(self, item: T) -> None:
        if self._closed:
            raise WriterClosedError(f"{self.name} is closed")
        if self._pid != os.getpid() or self._thread is None:
            self._start_in_this_process()
        with self._cond:
            if self._has_item:
                self.dropped += 1
            self._item = item
            self._has_item = True
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the pending item (if any) has been handled."""
        if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
            return True
        with self._cond:
            return self._cond.wait_for(lambda: not self._has_item and not self._busy, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Handle the pending item, then stop.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._pid != os.getpid() or self._thread is None:
            return
        with self._cond:
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _start_in_this_process(self) -> None:
        with _FORK_LOCK:
            pid = os.getpid()
            if self._pid == pid and self._thread is not None:
                return
            self._cond = threading.Condition()
            self._has_item = False
            self._item = None
            self._busy = False
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._pid = pid
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._has_item or self._closed)
                if not self._has_item:
                    return  # closed and nothing left
                item = self._item
                self._item = None
                self._has_item = False
                self._busy = True
            try:
                self.handler(item)  # type: ignore[arg-type]  # set together with _has_item
                self.handled += 1
            except Exception:  # a bad frame must not stop the previews
                self.errors += 1
                log.exception("%s: handler failed", self.name)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
