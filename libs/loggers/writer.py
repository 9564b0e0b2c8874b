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

A full disk (or a quota, a read-only remount, an I/O error) never loses what was accepted:
:class:`BackgroundWriter` keeps the lines it could not append, in order, in a bounded
backlog and retries them with backoff until they are written; a write that fails half way
is cut back so no torn line stays in the file.  Only when the backlog outgrows its bound
are the oldest lines dropped, counted in :attr:`BackgroundWriter.dropped_lines` and logged.
Replaceable work (screenshots, previews) is skipped while writes fail and counted.  Each
writer says whether its writes succeed in :meth:`BackgroundWriter.health`, logging once per
change of state (not per line).

Both thread owners notice a ``fork``: a child process gets its own fresh thread and queue on
first use instead of talking to a thread that only exists in the parent.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_QUEUE = 10_000
DEFAULT_MAX_OPEN_FILES = 64
DEFAULT_MAX_BACKLOG_BYTES = 32 * 1024 * 1024
DEFAULT_CLOSE_GRACE_S = 5.0
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0
_TAIL_CHUNK = 64 * 1024

# Errors that go away by themselves or by an operator's action on the disk (space freed,
# quota raised, file system remounted): what failed is kept and tried again.  Anything else
# (a path through a regular file, a name too long) would fail forever and is dropped.
TRANSIENT_ERRNOS = frozenset(
    code for code in (
        errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS, errno.EIO, errno.EFBIG,
        errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.EINTR, errno.EBUSY,
    ) if code is not None
)
_ERRNO_KINDS = {
    errno.ENOSPC: "disk full",
    getattr(errno, "EDQUOT", -1): "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "I/O error",
    errno.EFBIG: "file too large",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
MAX_ERROR_CHARS = 400

_tmp_counter = itertools.count()


class WriterClosedError(RuntimeError):
    """Work was handed to a writer after :meth:`BackgroundWriter.close`."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a write error worth retrying (disk full, quota, read-only, EIO)."""
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def describe_write_error(exc: BaseException, path: Path | str | None = None) -> str:
    """``"disk full: writing <path>: [Errno 28] No space left on device"``, bounded length.

    ``path`` defaults to the file name the error carries.
    """
    if isinstance(exc, OSError):
        kind = _ERRNO_KINDS.get(exc.errno or 0, "write failed")
        target = path if path is not None else exc.filename
        detail = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else str(exc)
    else:
        kind, target, detail = "write failed", path, f"{type(exc).__name__}: {exc}"
    text = f"{kind}: writing {target}: {detail}" if target is not None else f"{kind}: {detail}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


@dataclass(frozen=True)
class WriteHealth:
    """Whether a writer's writes succeed now, and what was kept, dropped and skipped.

    ``error`` is the failure in force (None once writes succeed again); ``since`` the wall
    time it started; ``backlog_lines``/``backlog_bytes`` what waits to be retried;
    ``dropped_lines`` lines given up (the backlog over its bound);
    ``skipped_files`` replaceable files (screenshots, previews) not written; ``errors`` every
    failed write so far.
    """

    error: str | None = None
    since: float | None = None
    backlog_lines: int = 0
    backlog_bytes: int = 0
    dropped_lines: int = 0
    skipped_files: int = 0
    errors: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def merged(self, other: WriteHealth) -> WriteHealth:
        """Both together: the first error in force, the counts summed."""
        first = self if self.error is not None else other
        return WriteHealth(
            error=first.error, since=first.since,
            backlog_lines=self.backlog_lines + other.backlog_lines,
            backlog_bytes=self.backlog_bytes + other.backlog_bytes,
            dropped_lines=self.dropped_lines + other.dropped_lines,
            skipped_files=self.skipped_files + other.skipped_files,
            errors=self.errors + other.errors,
        )


class _FailureState:
    """Failing or not, with a log line only when that changes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: str | None = None
        self.since: float | None = None
        self._since_mono = 0.0
        self.on_change: Callable[[str | None], object] | None = None

    def fail(self, message: str, what: str) -> None:
        if self.error is None:
            self.since = time.time()
            self._since_mono = time.monotonic()
            log.error("%s: %s; %s", self.name, message, what)
            self.error = message
            self._notify(message)
        else:
            self.error = message  # the newest path, without a new log line

    def recover(self, what: str) -> None:
        if self.error is None:
            return
        log.warning("%s: writes succeed again after %.1f s; %s", self.name,
                    time.monotonic() - self._since_mono, what)
        self.error = None
        self.since = None
        self._notify(None)

    def _notify(self, message: str | None) -> None:
        if self.on_change is not None:
            try:
                self.on_change(message)
            except Exception:
                log.exception("%s: state-change callback failed", self.name)


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
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno and exc.filename is None:
            # os.write says no file name: name the file it was for (same errno, same class)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
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
    skippable: bool = False


@dataclass
class _Flush:
    done: threading.Event


class _Stop:
    pass


_Job = _Append | _WriteFile | _Call | _Flush | _Stop
_Kept = _Append | _Call
CALL_COST_BYTES = 4096  # what a deferred function counts for in the backlog's bound


class BackgroundWriter:
    """Appends lines and writes files on a daemon thread, in the order they were handed in.

    The queue is bounded (``max_queue`` jobs): when the disk cannot keep up, the caller
    blocks on ``put`` instead of the process growing without bound.  File descriptors stay
    open per path; beyond ``max_open_files`` the least recently used is closed.

    A write that fails for a transient reason (disk full, quota, read-only, I/O error; see
    :data:`TRANSIENT_ERRNOS`) is kept: lines wait in a backlog of at most
    ``max_backlog_bytes`` (beyond it the oldest are dropped and counted in
    :attr:`dropped_lines`), the latest content of a whole-file write waits per path, and both
    are retried with backoff (:data:`RETRY_FIRST_S` doubling to :data:`RETRY_MAX_S`) in their
    order; lines and functions handed in meanwhile queue behind them.  A failed append is
    cut back, so the file never keeps half a line.  A function given to :meth:`submit` that
    fails transiently is kept and run again like a line (so it must be safe to repeat, as an
    atomic file write is), unless it was submitted ``skippable`` (screenshots): that one is
    skipped, also while earlier work waits, and counted in :attr:`skipped_files`.  Other
    failures are logged and counted in :attr:`errors`; none stops the thread.
    :meth:`health` says which state the writer is in; ``on_change`` (optional) is called
    on the writer thread with the error when writes start failing and with None when they
    succeed again.

    Use one writer per process or per logger; :meth:`close` it when done: it waits up to
    ``close_grace`` seconds for what a failing disk keeps back; past that it returns, logs
    how much is still unwritten, and the thread goes on retrying it until it is written or
    the process exits.
    """

    def __init__(
        self,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_open_files: int = DEFAULT_MAX_OPEN_FILES,
        name: str = "lookout-writer",
        max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES,
        close_grace: float = DEFAULT_CLOSE_GRACE_S,
        on_change: Callable[[str | None], object] | None = None,
    ) -> None:
        if max_queue < 1 or max_open_files < 1 or max_backlog_bytes < 1:
            raise ValueError("max_queue, max_open_files and max_backlog_bytes must be >= 1")
        self.max_queue = max_queue
        self.max_open_files = max_open_files
        self.max_backlog_bytes = max_backlog_bytes
        self.close_grace = close_grace
        self.name = name
        self.errors = 0
        self.last_error: str | None = None
        self.dropped_lines = 0
        self.skipped_files = 0
        self._state = _FailureState(name)
        self._state.on_change = on_change
        self._pid = -1
        self._closed = False
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Job] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._files: OrderedDict[Path, _OpenFile] = OrderedDict()
        self._backlog: deque[_Kept] = deque()
        self._backlog_bytes = 0
        self._pending_files: OrderedDict[Path, bytes] = OrderedDict()
        self._waiting_flushes: list[threading.Event] = []
        self._released = threading.Event()  # closing: everything written, or grace over
        self._retry_delay = RETRY_FIRST_S
        self._retry_at = 0.0
        self._dropping = False

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

    def submit(self, fn: Callable[[], object], skippable: bool = False) -> None:
        """Run ``fn`` on the writer thread, after the work queued before it.

        For slow preparation of a file (JPEG encoding) that must not run in the frame loop.
        When it raises a transient write error (disk full) it is run again later, in order
        with the lines; a ``skippable`` one (a screenshot, which the next one replaces) is
        skipped instead, and counted in :attr:`skipped_files`.  Other exceptions are logged
        and counted like failed writes.
        """
        self._put(_Call(fn, skippable))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written; False if ``timeout`` ran out.

        Lines kept back by a failing disk count as not written yet: while the disk stays
        full this waits for the whole ``timeout``.
        """
        if not self._running_here():
            return True
        if threading.current_thread() is self._thread:
            return True  # called from a submitted function: the caller *is* the queue
        if self._closed:  # stopping: the stop job comes after everything queued
            return self._released.wait(timeout) and not self._kept_back()
        done = threading.Event()
        try:
            self._queue.put(_Flush(done), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, stop the thread and close the files.  Idempotent.

        What a failing disk keeps back is waited for up to ``close_grace`` seconds; then
        this returns and the thread keeps retrying it in the background (see the class).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._running_here():
            self._queue.put(_Stop())
            assert self._thread is not None
            if self._thread is not threading.current_thread():
                self._released.wait(timeout)
                self._thread.join(0.5 if self._released.is_set() else 0)
        if not self._thread_alive():
            self._close_files()

    def health(self) -> WriteHealth:
        """The writer's state now (read from any thread; counts are approximate)."""
        return WriteHealth(
            error=self._state.error, since=self._state.since,
            backlog_lines=len(self._backlog), backlog_bytes=self._backlog_bytes,
            dropped_lines=self.dropped_lines, skipped_files=self.skipped_files,
            errors=self.errors,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Jobs waiting in the queue and lines kept back by failed writes (approximate)."""
        queued = self._queue.qsize() if self._running_here() else 0
        return queued + len(self._backlog) + len(self._pending_files)

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
                # Forked: the descriptors, queue and backlog belong to the parent's thread.
                for opened in self._files.values():
                    with contextlib.suppress(OSError):
                        os.close(opened.fd)
                self._files.clear()
                self._lock = threading.Lock()
                self._queue = queue.Queue(self.max_queue)
                self._backlog = deque()
                self._backlog_bytes = 0
                self._pending_files = OrderedDict()
                self._waiting_flushes = []
                self._released = threading.Event()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._pid = pid
            self._thread.start()

    def _run(self) -> None:
        while True:
            if self._kept_back() and time.monotonic() >= self._retry_at:
                self._retry()
            timeout = max(0.0, self._retry_at - time.monotonic()) if self._kept_back() else None
            try:
                job = self._queue.get(timeout=timeout)
            except queue.Empty:
                continue
            if isinstance(job, _Stop):
                break
            try:
                self._do(job)
            except Exception as exc:  # one bad write must not stop the rest
                self._count_error(exc)
                log.exception("%s: background write failed", self.name)
        self._drain_before_exit()
        self._close_files()
        self._released.set()

    def _count_error(self, exc: BaseException, path: Path | None = None) -> None:
        self.errors += 1
        self.last_error = describe_write_error(exc, path) if isinstance(exc, OSError) \
            else f"{type(exc).__name__}: {exc}"

    def _do(self, job: _Job) -> None:
        if isinstance(job, _Append):
            if self._kept_back():  # keep the order: behind what waits for a retry
                self._keep(job)
                return
            try:
                self._append(job)
            except OSError as exc:
                if not is_transient(exc):
                    raise  # counted and logged by the loop
                self._count_error(exc, job.path)
                self._keep(job)
                self._failed(exc, job.path)
                return
            self._state.recover(self._loss_note())
        elif isinstance(job, _WriteFile):
            self._pending_files.pop(job.path, None)
            try:
                self._forget(job.path)
                atomic_write_bytes(job.path, job.data)
            except OSError as exc:
                if not is_transient(exc):
                    raise
                self._count_error(exc, job.path)
                self._pending_files[job.path] = job.data  # the latest content wins
                self._failed(exc, job.path)
                return
            if not self._kept_back():
                self._state.recover(self._loss_note())
        elif isinstance(job, _Call):
            if self._kept_back():
                if job.skippable:
                    self.skipped_files += 1
                else:
                    self._keep(job)
                return
            try:
                job.fn()
            except OSError as exc:
                if not is_transient(exc):
                    raise
                self._count_error(exc)
                if job.skippable:
                    self.skipped_files += 1
                    self._failed(exc, None, "skipping replaceable files")
                else:
                    self._keep(job)
                    self._failed(exc, None)
        elif isinstance(job, _Flush):
            if self._kept_back():
                self._waiting_flushes.append(job.done)
            else:
                job.done.set()

    # -- what failed, kept for a retry (writer thread only) --------------------------------

    def _loss_note(self) -> str:
        if self.dropped_lines or self.skipped_files:
            return (f"{self.dropped_lines} lines dropped and {self.skipped_files} replaceable "
                    "files skipped so far")
        return "nothing was lost"

    def _kept_back(self) -> bool:
        return bool(self._backlog) or bool(self._pending_files)

    def _keep(self, job: _Kept) -> None:
        self._backlog.append(job)
        self._backlog_bytes += _cost(job)
        dropped = 0
        while self._backlog_bytes > self.max_backlog_bytes and len(self._backlog) > 1:
            old = self._backlog.popleft()
            self._backlog_bytes -= _cost(old)
            dropped += 1
        if dropped:
            self.dropped_lines += dropped
            if not self._dropping:
                self._dropping = True
                log.error("%s: the backlog of unwritten lines passed %d bytes; dropping the "
                          "oldest (counted in dropped_lines)", self.name, self.max_backlog_bytes)

    def _failed(self, exc: OSError, path: Path | None,
                what: str = "keeping what failed and retrying") -> None:
        self._state.fail(describe_write_error(exc, path), what)
        now = time.monotonic()
        if self._retry_at <= now:
            self._retry_at = now + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)

    def _retry(self) -> bool:
        """Write what was kept back, in order; True when nothing is left."""
        written = 0
        while self._backlog:
            job = self._backlog[0]
            path = job.path if isinstance(job, _Append) else None
            try:
                if isinstance(job, _Append):
                    self._append(job)
                else:
                    job.fn()
            except OSError as exc:
                self._count_error(exc, path)
                if is_transient(exc):
                    self._retry_at = 0.0
                    self._failed(exc, path)
                    return False
                log.error("%s: giving up kept work for %s: %s", self.name, path, exc)
                self.dropped_lines += 1
            except Exception as exc:
                self._count_error(exc)
                log.exception("%s: giving up kept work for %s", self.name, path)
                self.dropped_lines += 1
            else:
                written += 1
            self._backlog.popleft()
            self._backlog_bytes -= _cost(job)
        for path, data in list(self._pending_files.items()):
            try:
                self._forget(path)
                atomic_write_bytes(path, data)
            except OSError as exc:
                self._count_error(exc, path)
                if is_transient(exc):
                    self._retry_at = 0.0
                    self._failed(exc, path)
                    return False
                log.error("%s: giving up writing %s: %s", self.name, path, exc)
            del self._pending_files[path]
        self._retry_delay = RETRY_FIRST_S
        self._retry_at = 0.0
        self._dropping = False
        self._state.recover(f"{written} kept lines written, {self._loss_note()}")
        self._release_flushes()
        return True

    def _drain_before_exit(self) -> None:
        """Retry what is kept back for ``close_grace`` seconds; past that, release whoever
        waits in :meth:`close` and go on retrying until it is written (or the process
        exits, the thread being a daemon)."""
        deadline = time.monotonic() + self.close_grace
        detached = False
        while self._kept_back():
            if self._retry():
                break
            if not detached and time.monotonic() >= deadline:
                detached = True
                log.error("%s: closed with %d lines (%d bytes) and %d files still unwritten "
                          "after %.1f s of retries (%s); retrying them in the background "
                          "until they are written or this process exits", self.name,
                          len(self._backlog), self._backlog_bytes, len(self._pending_files),
                          self.close_grace, self._state.error)
                self._release_flushes()
                self._close_files()  # the open ones; the retries reopen what they need
                self._released.set()
            time.sleep(max(0.0, min(self._retry_at - time.monotonic(), RETRY_MAX_S)))
        self._release_flushes()

    def _release_flushes(self) -> None:
        for done in self._waiting_flushes:
            done.set()
        self._waiting_flushes.clear()

    # -- files (writer thread only) --------------------------------------------------------

    def _append(self, job: _Append) -> None:
        opened = self._open(job.path)
        data = job.data
        if opened.empty and job.header is not None:
            data = job.header + data
        start = os.fstat(opened.fd).st_size
        try:
            _write_all(opened.fd, data)
        except OSError:
            # Part of the line may be in the file: cut it back so no torn line stays.  Should
            # that fail too, the descriptor is dropped and the next open repairs the tail.
            try:
                if os.fstat(opened.fd).st_size > start:
                    os.ftruncate(opened.fd, start)
            except OSError:
                self._forget(job.path)
            raise
        opened.empty = False

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


def _cost(job: _Kept) -> int:
    return len(job.data) if isinstance(job, _Append) else CALL_COST_BYTES


def _as_line(text: str) -> bytes:
    data = text.encode("utf-8")
    return data if data.endswith(b"\n") else data + b"\n"


class LatestOnlyWorker(Generic[T]):
    """Runs ``handler(item)`` on a daemon thread for the newest item offered.

    :meth:`offer` never blocks: when the handler is busy, the new item replaces the one
    waiting (which is dropped and counted in :attr:`dropped`).  For previews and other work
    where only the latest state matters: a transient write error (disk full) the handler
    raises skips that item, counted in :attr:`skipped`, and is logged once per change of
    state; :meth:`health` says whether the last handling succeeded.
    """

    def __init__(self, handler: Callable[[T], object], name: str = "lookout-latest") -> None:
        self.handler = handler
        self.name = name
        self.dropped = 0
        self.handled = 0
        self.errors = 0
        self.skipped = 0
        self._state = _FailureState(name)
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

    def health(self) -> WriteHealth:
        """Whether the handler's writes succeed now; skipped items count as skipped files."""
        return WriteHealth(error=self._state.error, since=self._state.since,
                           skipped_files=self.skipped, errors=self.errors)

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
                self._state.recover(f"{self.skipped} items skipped so far")
            except OSError as exc:
                self.errors += 1
                if not is_transient(exc):
                    log.exception("%s: handler failed", self.name)
                else:  # disk full: this item is skipped, the next one tries again
                    self.skipped += 1
                    self._state.fail(describe_write_error(exc), "skipping until writes succeed")
            except Exception:  # a bad frame must not stop the previews
                self.errors += 1
                log.exception("%s: handler failed", self.name)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
