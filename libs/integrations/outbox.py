"""A bounded, durable outbox on disk for one network sink.

Every network sink (webhook, MQTT, ...) sits behind one :class:`Outbox`: the pipeline
calls :meth:`Outbox.put` and returns at once; a delivery thread takes batches off the disk
and hands them to the sink's ``deliver(batch)``, which raises when the batch did not get
through. A batch leaves the disk only after ``deliver`` returned (at-least-once: a retried
record is the same JSON object with the same ``id``).

Storage: a directory of append-only segment files, not SQLite
-----------------------------------------------------------------
::

    <directory>/000000000007.jsonl   one record per line (compact JSON, "\\n"-terminated)
    <directory>/000000000008.jsonl   ...the last one is being appended to
    <directory>/state.json           where delivery stands, delivered and dropped counts
    <directory>/lock                 empty, flock-ed: one open Outbox per directory

SQLite in WAL mode was considered and set aside, because the outbox's first promise is a
bound on disk use and SQLite keeps that promise badly at the sizes that matter here: its
file never shrinks without a VACUUM (which rewrites the whole database, needs as much
space again and blocks writers), its ``-wal`` file grows between checkpoints, and its
``-shm`` file alone is 32 KiB, half of a 64 KiB outbox. With segment files, the bytes on
disk are exactly the bytes written: appending a record is one ``write`` of one line,
dropping the oldest records is one ``unlink``, a delivered segment is deleted, and
nothing ever needs compacting. The sizes asserted by the tests are the files' sizes.

Bounds. ``max_bytes`` caps the total size of the files (segments and state file;
allocation rounding of the file system aside); ``max_records`` caps the number of records
waiting. Segments hold about 1/8 of the byte budget each, so when a put would pass a bound
the oldest segment is deleted *before* the new record is written: at most an eighth of
the queue goes at once, the oldest first, and every undelivered record in it is added to
the ``dropped`` counter, which is persisted with the delivery position. Each record ends
up counted exactly once, as delivered or as dropped (records in a batch being delivered
while their segment is dropped count as delivered if that attempt succeeds).

Durability (the fsync policy). ``put`` writes the record's line to its segment with one
unbuffered ``write`` before returning, so once ``put`` returned the record survives the
process being killed (SIGKILL included): it is in the kernel. A background thread
fsyncs the segments, the state file and the directory every ``fsync_interval_s``
(default 1 s) and :meth:`Outbox.close` fsyncs everything, so at most the records put
within the last interval can be lost to a power cut or an OS crash. A line torn by a
crash mid-write is cut off when the outbox is opened again. The delivery position is
written after each delivered batch (atomic rename); losing it to a power cut means
redelivering, never losing, records.

Delivery. One thread reads up to ``batch_max_records`` / ``batch_max_bytes`` (at least one
record) from the oldest segment on, calls ``deliver`` without holding any lock, and on
failure waits a full-jitter exponential backoff: a uniform random delay in
``[0, min(retry_max_s, retry_first_s * 2 ** (failures - 1))]``. The timeout of one attempt
is ``deliver``'s business (an HTTP client's timeout); a ``deliver`` that hangs stalls
delivery but never ``put`` nor :meth:`Outbox.close`, which gives up after its timeout.

State. :meth:`Outbox.state` gives what ``GET /status`` shows (connected, queued count and
bytes, delivered, dropped, last error, next retry time); a log line is written, and the
``on_change`` callback called, when the sink goes from connected to failing or back, not
for each retry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from libs.priority import lower_priority

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOCK_FILE = "lock"  # empty; held with flock by the one Outbox that has the directory open
SEGMENT_SUFFIX = ".jsonl"
STATE_RESERVE_BYTES = 4096  # room kept in max_bytes for the state file and its temporary copy
SEGMENTS_PER_BUDGET = 8
MIN_MAX_BYTES = 4 * STATE_RESERVE_BYTES
DELIVERY_NICENESS = 19  # of the delivery thread (Linux): below the frame loops, never idle

Deliver = Callable[[list[dict[str, Any]]], None]


def backoff_delay(failures: int, first_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter backoff: uniform in ``[0, min(max_s, first_s * 2**(failures - 1))]``."""
    cap = min(max_s, first_s * 2.0 ** min(max(failures - 1, 0), 62))
    return rng.uniform(0.0, cap)


@dataclass(frozen=True)
class OutboxState:
    """One sink's outbox as ``GET /status`` shows it."""

    name: str
    connected: bool | None  # the last attempt succeeded; None before the first attempt
    queued: int  # records waiting for delivery (on disk)
    queued_bytes: int
    delivered: int  # records delivered since the outbox was created (persisted)
    dropped: int  # records dropped because the outbox was full (persisted)
    last_error: str | None
    failures: int  # consecutive failed attempts
    next_retry_at: float | None  # Unix time of the next attempt while failing
    disk_bytes: int  # size of the outbox's files

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Segment:
    __slots__ = ("count", "id", "path", "size")

    def __init__(self, seg_id: int, path: Path, size: int, count: int) -> None:
        self.id = seg_id
        self.path = path
        self.size = size  # bytes of complete lines
        self.count = count  # lines


@dataclass
class _Batch:
    lines: list[bytes]
    records: list[dict[str, Any]]
    per_segment: dict[int, int]  # segment id -> lines of the batch in it
    end_segment: int
    end_offset: int
    end_acked: int  # lines of the end segment up to end_offset
    skipped: int  # unreadable lines passed over (counted as dropped on success)


class Outbox:
    """A bounded, durable queue of JSON records for one sink, with its delivery thread.

    ``directory`` is the sink's own folder (created if missing). The thread starts with
    the outbox; :meth:`close` stops it.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        deliver: Deliver,
        *,
        name: str | None = None,
        max_bytes: int = 64 * 1024 * 1024,
        max_records: int = 1_000_000,
        batch_max_records: int = 100,
        batch_max_bytes: int = 1024 * 1024,
        retry_first_s: float = 1.0,
        retry_max_s: float = 300.0,
        fsync_interval_s: float = 1.0,
        idle_poll_s: float = 1.0,
        on_change: Callable[[OutboxState], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be at least {MIN_MAX_BYTES}, got {max_bytes}")
        if max_records < 1 or batch_max_records < 1 or batch_max_bytes < 1:
            raise ValueError("max_records, batch_max_records and batch_max_bytes must be >= 1")
        if retry_first_s <= 0 or retry_max_s < retry_first_s:
            raise ValueError("need 0 < retry_first_s <= retry_max_s")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name or self.directory.name
        self._deliver = deliver
        self._max_bytes = max_bytes
        self._segment_budget = max_bytes - STATE_RESERVE_BYTES
        self._segment_bytes = max(1, self._segment_budget // SEGMENTS_PER_BUDGET)
        self._max_records = max_records
        self._segment_records = max(1, max_records // SEGMENTS_PER_BUDGET)
        self._batch_max_records = batch_max_records
        self._batch_max_bytes = batch_max_bytes
        self._retry_first_s = retry_first_s
        self._retry_max_s = retry_max_s
        self._fsync_interval_s = fsync_interval_s
        self._idle_poll_s = idle_poll_s
        self._on_change = on_change
        self._rng = rng or random.Random()

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._closed = False
        self._draining = False  # close() is delivering what waits, pacing aside
        self._state_lock = threading.Lock()  # orders writes of the state file
        self._state_seq = 0  # bumped under _lock at each change worth persisting
        self._state_written = 0

        # what the lock guards
        self._segments: list[_Segment] = []
        self._head_offset = 0  # bytes of the first segment already delivered
        self._head_acked = 0  # lines of the first segment already delivered
        self._queued = 0
        self._delivered = 0
        self._dropped = 0
        self._inflight: dict[int, int] = {}  # segment id -> records being delivered
        self._orphans = 0  # records being delivered whose segment was dropped
        self._tail_fd: int | None = None
        self._to_close: list[int] = []  # fds of finished segments, fsynced then closed
        self._dirty = False
        self._connected: bool | None = None
        self._last_error: str | None = None
        self._failures = 0
        self._next_retry_at: float | None = None

        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise RuntimeError(f"outbox {self.directory} is already open") from None
        try:
            self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._thread = threading.Thread(target=self._run, name=f"outbox-{self.name}", daemon=True)
        self._flusher = threading.Thread(
            target=self._flush_loop, name=f"outbox-{self.name}-fsync", daemon=True
        )
        self._thread.start()
        self._flusher.start()

    # ------------------------------------------------------------------ public API

    def put(self, record: dict[str, Any]) -> None:
        """Queue one record (a JSON object with an ``"id"``); returns after one write."""
        if "id" not in record:
            raise ValueError("an outbox record needs an 'id'")
        line = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
        if len(line) > self._segment_budget:
            raise ValueError(
                f"record of {len(line)} bytes cannot fit in an outbox of {self._max_bytes} bytes"
            )
        persist = False
        with self._lock:
            if self._closed:
                raise RuntimeError(f"outbox {self.name} is closed")
            tail = self._segments[-1]
            if tail.count and (
                tail.size + len(line) > self._segment_bytes or tail.count >= self._segment_records
            ):
                tail = self._new_segment()
            while len(self._segments) > 1 and (
                self._disk_size() + len(line) > self._segment_budget
                or self._queued + 1 > self._max_records
            ):
                self._drop_oldest()
                persist = True
            assert self._tail_fd is not None
            os.write(self._tail_fd, line)
            tail.size += len(line)
            tail.count += 1
            self._queued += 1
            self._dirty = True
            self._wake.notify()
            snapshot = self._snapshot() if persist else None
        if snapshot is not None:
            self._write_state(snapshot)

    def state(self) -> OutboxState:
        with self._lock:
            return OutboxState(
                name=self.name,
                connected=self._connected,
                queued=self._queued,
                queued_bytes=self._queued_bytes(),
                delivered=self._delivered,
                dropped=self._dropped,
                last_error=self._last_error,
                failures=self._failures,
                next_retry_at=self._next_retry_at,
                disk_bytes=self._disk_size() + self._state_file_size(),
            )

    def disk_usage(self) -> int:
        """Bytes of every file in the outbox's directory, measured on disk."""
        total = 0
        for entry in os.scandir(self.directory):
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat().st_size
        return total

    def close(self, timeout: float = 5.0, drain: bool = True) -> bool:
        """Stop delivering and make everything durable; False if ``deliver`` was still
        running after ``timeout`` seconds (it is abandoned, its batch stays queued).

        With ``drain``, while the sink is connected and records wait, they are delivered
        first (pacing aside) for up to two thirds of ``timeout``: a recording's last records
        reach the server when the run ends, not at the next start.  A sink that is failing
        is not waited for: its records stay queued for the next run."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return True
            if drain and self._connected is True and self._queued > 0:
                self._draining = True
                self._wake.notify_all()
                drain_until = deadline - timeout / 3
                while self._queued > 0 and self._connected is True:
                    left = drain_until - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(min(left, 0.05))
                self._draining = False
            self._closed = True
            self._stop.set()
            self._wake.notify_all()
        self._flusher.join(max(0.0, deadline - time.monotonic()))
        self._thread.join(max(0.0, deadline - time.monotonic()))
        stopped = not self._thread.is_alive()
        self._flush(final=True)
        os.close(self._lock_fd)  # releases the flock: the directory may be opened again
        return stopped

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ opening

    def _open(self) -> None:
        saved: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            saved = json.loads((self.directory / STATE_FILE).read_text())
        self._delivered = int(saved.get("delivered", 0))
        self._dropped = int(saved.get("dropped", 0))
        head_id = int(saved.get("segment", 0))
        head_offset = int(saved.get("offset", 0))
        for leftover in self.directory.glob(STATE_FILE + ".*"):
            leftover.unlink(missing_ok=True)

        ids = sorted(
            int(p.stem) for p in self.directory.glob("*" + SEGMENT_SUFFIX) if p.stem.isdigit()
        )
        for seg_id in ids:
            path = self._segment_path(seg_id)
            if seg_id < head_id:  # delivered before the restart, deletion did not happen
                path.unlink(missing_ok=True)
                continue
            data = path.read_bytes()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):  # a line torn by a crash mid-write
                log.warning("outbox %s: cutting a torn line off %s", self.name, path.name)
                with open(path, "r+b") as f:
                    f.truncate(complete)
                data = data[:complete]
            self._segments.append(_Segment(seg_id, path, complete, data.count(b"\n")))
            if seg_id == head_id:
                self._head_offset = min(head_offset, complete)
                self._head_acked = data[: self._head_offset].count(b"\n")
        if self._segments and self._segments[0].id != head_id:
            self._head_offset = self._head_acked = 0
        self._queued = sum(s.count for s in self._segments) - self._head_acked
        next_id = self._segments[-1].id + 1 if self._segments else max(head_id, 1)
        tail = self._segments[-1] if self._segments else None
        if tail is None or tail.size >= self._segment_bytes:
            tail = _Segment(next_id, self._segment_path(next_id), 0, 0)
            self._segments.append(tail)
        self._tail_fd = os.open(tail.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self._queued or self._dropped:
            log.info(
                "outbox %s opened: %d records queued, %d delivered, %d dropped so far",
                self.name,
                self._queued,
                self._delivered,
                self._dropped,
            )

    def _segment_path(self, seg_id: int) -> Path:
        return self.directory / f"{seg_id:012d}{SEGMENT_SUFFIX}"

    # ------------------------------------------------------------------ under the lock

    def _disk_size(self) -> int:
        return sum(s.size for s in self._segments)

    def _queued_bytes(self) -> int:
        return self._disk_size() - self._head_offset

    def _state_file_size(self) -> int:
        try:
            return (self.directory / STATE_FILE).stat().st_size
        except FileNotFoundError:
            return 0

    def _new_segment(self) -> _Segment:
        seg_id = self._segments[-1].id + 1
        segment = _Segment(seg_id, self._segment_path(seg_id), 0, 0)
        fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self._tail_fd is not None:
            self._to_close.append(self._tail_fd)
        self._tail_fd = fd
        self._segments.append(segment)
        return segment

    def _drop_oldest(self) -> None:
        segment = self._segments.pop(0)
        waiting = segment.count - self._head_acked
        inflight = self._inflight.pop(segment.id, 0)
        self._orphans += inflight
        self._dropped += waiting - inflight
        self._queued -= waiting
        self._head_offset = self._head_acked = 0
        segment.path.unlink(missing_ok=True)
        self._state_seq += 1
        log.debug("outbox %s full: dropped %d records", self.name, waiting - inflight)

    def _snapshot(self) -> tuple[int, dict[str, Any]]:
        head = self._segments[0]
        return self._state_seq, {
            "segment": head.id,
            "offset": self._head_offset,
            "delivered": self._delivered,
            "dropped": self._dropped,
        }

    # ------------------------------------------------------------------ state file

    def _write_state(self, snapshot: tuple[int, dict[str, Any]]) -> None:
        seq, data = snapshot
        with self._state_lock:
            if seq <= self._state_written:
                return
            tmp = self.directory / f"{STATE_FILE}.tmp"
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.directory / STATE_FILE)
            self._state_written = seq

    # ------------------------------------------------------------------ delivery

    def _read_batch(self) -> _Batch | None:
        """The lines of the next batch, from the oldest undelivered record on (under the
        lock: at most ``batch_max_bytes`` copied from the page cache; parsing is done by
        the caller, outside the lock)."""
        lines: list[bytes] = []
        per_segment: dict[int, int] = {}
        nbytes = 0
        end = (self._segments[0].id, self._head_offset, self._head_acked)
        for index, segment in enumerate(self._segments):
            if len(lines) >= self._batch_max_records:
                break
            offset, acked = (self._head_offset, self._head_acked) if index == 0 else (0, 0)
            if offset >= segment.size:
                end = (segment.id, offset, acked)
                continue
            with open(segment.path, "rb") as f:
                f.seek(offset)
                while offset < segment.size and len(lines) < self._batch_max_records:
                    line = f.readline(segment.size - offset)
                    if not line or (lines and nbytes + len(line) > self._batch_max_bytes):
                        break
                    offset += len(line)
                    acked += 1
                    nbytes += len(line)
                    lines.append(line)
                    per_segment[segment.id] = per_segment.get(segment.id, 0) + 1
            end = (segment.id, offset, acked)
            if offset < segment.size:
                break
        if not lines:
            return None
        return _Batch(lines, [], per_segment, end[0], end[1], end[2], 0)

    def _ack(self, batch: _Batch) -> None:
        """Remove a delivered batch from the disk (under the lock).

        Lines of the batch whose segment was dropped during the attempt were left out of
        ``dropped`` then; they are counted here, as delivered (or dropped if unreadable).
        """
        surviving = sum(self._inflight.values())
        self._delivered += len(batch.records)
        self._dropped += batch.skipped
        self._queued -= surviving
        self._orphans = 0
        self._inflight = {}
        if any(s.id == batch.end_segment for s in self._segments):
            while self._segments[0].id < batch.end_segment:
                self._segments.pop(0).path.unlink(missing_ok=True)
            self._head_offset = batch.end_offset
            self._head_acked = batch.end_acked
        head = self._segments[0]
        if self._head_offset >= head.size and len(self._segments) > 1:
            self._segments.pop(0).path.unlink(missing_ok=True)
            self._head_offset = self._head_acked = 0
        self._state_seq += 1

    def _run(self) -> None:
        # Delivery (serialising, TLS, a client library's work) yields the CPU to the frame
        # loops: a server coming back with a backlog must not slow the cameras.
        lower_priority(DELIVERY_NICENESS)
        while not self._stop.is_set():
            try:
                with self._lock:
                    batch = self._read_batch()
                    if batch is None:
                        self._wake.wait(self._idle_poll_s)
                        continue
                    self._inflight = dict(batch.per_segment)
            except OSError as exc:  # the disk itself failed: retry as a failed delivery
                log.exception("outbox %s: cannot read its segments", self.name)
                self._failed(exc)
                continue
            for line in batch.lines:
                try:
                    batch.records.append(json.loads(line))
                except ValueError:
                    batch.skipped += 1
            if batch.skipped:
                log.error("outbox %s: %d unreadable records dropped", self.name, batch.skipped)
            try:
                if batch.records:
                    self._deliver(batch.records)
            except Exception as exc:
                if not self._stop.is_set():
                    self._failed(exc)
                continue
            with self._lock:
                if self._stop.is_set():  # closed meanwhile: the batch stays queued
                    return
                self._ack(batch)
                was = self._connected
                self._connected = True
                self._failures = 0
                self._next_retry_at = None
                snapshot = self._snapshot()
            self._write_state(snapshot)
            if was is not True:
                log.info("outbox %s: delivering to its sink", self.name)
                self._notify()

    def _failed(self, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._dropped += self._orphans
            self._orphans = 0
            self._inflight.clear()
            was = self._connected
            self._connected = False
            self._last_error = error
            self._failures += 1
            delay = backoff_delay(self._failures, self._retry_first_s, self._retry_max_s, self._rng)
            self._next_retry_at = time.time() + delay
            self._state_seq += 1
            snapshot = self._snapshot()
        self._write_state(snapshot)
        if was is not False:
            log.warning("outbox %s: delivery failing (%s); retrying with backoff", self.name, error)
            self._notify()
        self._stop.wait(delay)

    def _notify(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(self.state())
        except Exception:
            log.exception("outbox %s: on_change callback failed", self.name)

    # ------------------------------------------------------------------ fsync

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._fsync_interval_s):
            self._flush()

    def _flush(self, final: bool = False) -> None:
        with self._lock:
            to_close, self._to_close = self._to_close, []
            tail_fd = self._tail_fd if (self._dirty or final) else None
            self._dirty = False
            if final:
                self._tail_fd = None
            snapshot = self._snapshot()
        for fd in to_close:
            with contextlib.suppress(OSError):
                os.fsync(fd)
            os.close(fd)
        if tail_fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(tail_fd)
            if final:
                os.close(tail_fd)
        self._write_state(snapshot)
        with contextlib.suppress(OSError):
            state_fd = os.open(self.directory / STATE_FILE, os.O_RDONLY)
            try:
                os.fsync(state_fd)
            finally:
                os.close(state_fd)
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
