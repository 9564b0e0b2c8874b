"""A camera whose people come from Redis: the detection/direction messages of the engagement
service (``VideoPath = redis://host:6379/0?stream=detections`` or ``?channel=detections``).

Each message is one frame without pixels::

    {"id": 1, "cameraid": "cam1", "timestamp": "2025-01-01T00:00:00Z",
     "width": 1920, "height": 1080,
     "detections": [{"objectid": "object1", "position": {"x": 10, "y": 20},
                     "direction": {"x": 1, "y": 0}}]}

Only messages whose ``cameraid`` is the camera's (``camera=`` in the URL, else the camera's
``Id``) are kept.  A kept message becomes a :class:`SourceFrame` whose image is
:func:`libs.frame.imageless` (its size is the message's ``width`` x ``height``), stamped with
the message's ``timestamp``, and whose :class:`Detections` are the message's people: the
track id is the ``objectid`` (a whole number stays itself, any other text is hashed to a
stable number, so an id keeps its number across messages and restarts), the position is the
person's foot point (the box around it is nominal, :data:`BOX_HEIGHT` of the frame's height,
so stages that measure people's size have no real figure), and the direction goes to the
``input_direction`` attribute, which the ``engagement`` stage uses instead of head pose or
motion.  The pipeline runs neither the detector nor the tracker on these frames.

**Stream or channel.**  A Redis stream (``XADD``; read here with ``XREAD``) keeps its messages:
after Redis or this camera was down, reading goes on after the last id handled (kept in
``DataDirectory/processor/redis_input/<camera>.json``), so nothing is lost as long as the
stream still holds it.  A pub/sub channel (``PUBLISH``) is what a publisher that already
exists may use: it is supported, but a message published while the camera is not subscribed
is gone.

**Reconnects.**  Redis unreachable or lost: :meth:`RedisSource.problem` says why (the camera's
status shows ``connecting``/``reconnecting`` with the reason) and the reader retries with
backoff from :data:`BACKOFF_INITIAL` to :data:`BACKOFF_MAX` seconds, never raising.

**Invalid messages** (not JSON, a field missing or of the wrong type, a time going back) are
skipped, counted (:attr:`RedisSource.invalid`, the camera's skipped frames) and logged (the
first few, then every 100th); the camera shows ``degraded`` for a moment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import threading
import time
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from libs.config.video_source import RedisTarget
from libs.frame import Detections, imageless
from processor.sources import FrameSource, SourceFrame

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 0.5  # s before the first retry after Redis was lost
BACKOFF_MAX = 2.0  # s between retries, at most
BLOCK_MS = 500  # how long one XREAD (or one pub/sub wait) waits for a message
BATCH = 100  # stream entries per XREAD
QUEUE_SIZE = 256  # frames read ahead; the reader waits (stream) when the pipeline is behind
SAVE_EVERY = 1.0  # s between two saves of the last stream id handled
DEGRADED_HOLD = 2.0  # s the camera shows "degraded" after an invalid message
BOX_HEIGHT = 0.2  # a person's nominal box: this fraction of the frame's height...
BOX_ASPECT = 0.4  # ... and this fraction of that height wide
MAX_SIZE = 100_000  # largest width or height a message may give
HASHED_IDS = 1 << 40  # object ids that are not whole numbers are hashed above this
LOG_FIRST = 5  # invalid messages logged one by one before only every 100th is


class InvalidMessage(ValueError):
    pass


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidMessage(f"{what} is not a number")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidMessage(f"{what} is not finite")
    return out


def _point(value: Any, what: str) -> tuple[float, float]:
    if not isinstance(value, dict):
        raise InvalidMessage(f"{what} is not an object {{x, y}}")
    return _number(value.get("x"), f"{what}.x"), _number(value.get("y"), f"{what}.y")


def parse_timestamp(value: Any) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; without one: UTC) or seconds since the epoch."""
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidMessage(f"timestamp {value[:40]!r} is not an ISO 8601 time") from exc
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    seconds = _number(value, "timestamp")
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidMessage(f"timestamp {seconds} is out of range") from exc


def track_id(object_id: Any) -> int:
    """The track id of an ``objectid``: a whole number >= 0 (or its text) is itself, any
    other id a stable hash of its text, at or above :data:`HASHED_IDS`."""
    if isinstance(object_id, bool) or not isinstance(object_id, (int, str)):
        raise InvalidMessage("objectid is not a string or a whole number")
    text = str(object_id).strip()
    if not text:
        raise InvalidMessage("objectid is empty")
    if text.isdigit() and len(text) <= 12:
        return int(text)
    digest = hashlib.blake2b(text.encode(), digest_size=5).digest()
    return HASHED_IDS + int.from_bytes(digest, "big")


def parse_message(data: bytes | str) -> tuple[str, datetime, int, int, Detections]:
    """``(cameraid, timestamp, width, height, detections)`` of one message;
    :class:`InvalidMessage` says what is wrong."""
    try:
        msg = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"not JSON: {exc}") from exc
    if not isinstance(msg, dict):
        raise InvalidMessage("not a JSON object")
    camera = msg.get("cameraid")
    if not isinstance(camera, str) or not camera:
        raise InvalidMessage("cameraid is missing or not a string")
    ts = parse_timestamp(msg.get("timestamp"))
    size = []
    for key in ("width", "height"):
        value = msg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SIZE:
            raise InvalidMessage(f"{key} is not a whole number from 1 to {MAX_SIZE}")
        size.append(value)
    width, height = size
    people = msg.get("detections")
    if not isinstance(people, list):
        raise InvalidMessage("detections is not a list")
    ids: list[int] = []
    feet: list[tuple[float, float]] = []
    directions: list[tuple[float, float]] = []
    names: list[str] = []
    for k, person in enumerate(people):
        if not isinstance(person, dict):
            raise InvalidMessage(f"detections[{k}] is not an object")
        tid = track_id(person.get("objectid"))
        foot = _point(person.get("position"), f"detections[{k}].position")
        direction = _point(person.get("direction"), f"detections[{k}].direction") \
            if person.get("direction") is not None else (math.nan, math.nan)
        if tid in ids:  # the same person twice in one message: the first counts
            continue
        ids.append(tid)
        feet.append(foot)
        directions.append(direction)
        names.append(str(person.get("objectid")))
    return camera, ts, width, height, people_detections(ids, feet, directions, names, height)


def people_detections(ids: list[int], feet: list[tuple[float, float]],
                      directions: list[tuple[float, float]], names: list[str],
                      frame_height: int) -> Detections:
    """Tracked people at foot points ``feet``, each in a nominal box standing on it."""
    n = len(ids)
    xy = np.asarray(feet, np.float64).reshape(n, 2)
    h = max(2, round(BOX_HEIGHT * frame_height))  # whole pixels: the foot point stays exact
    half = max(1, round(h * BOX_ASPECT / 2))
    boxes = np.stack([xy[:, 0] - half, xy[:, 1] - h, xy[:, 0] + half, xy[:, 1]], axis=1)
    d = np.asarray(directions, np.float64).reshape(n, 2)
    length = np.hypot(d[:, 0], d[:, 1])
    known = np.isfinite(length) & (length > 1e-9)
    unit = np.where(known[:, None], d / np.where(known, length, 1.0)[:, None], np.nan)
    return Detections(
        boxes=boxes, scores=np.ones(n, np.float32), track_ids=np.asarray(ids, np.int64),
        attributes={"input_direction": unit.astype(np.float32),
                    "object_id": np.asarray(names, object).reshape(n)})


class RedisSource(FrameSource):
    """Frames from Redis detection messages (see the module's documentation).

    ``state`` is ``connecting``, ``connected``, ``disconnected`` (waiting to retry) or
    ``stopped``; ``reason`` says why it is not connected.
    """

    is_live = True

    def __init__(self, target: RedisTarget, camera: str, tz: tzinfo, name: str,
                 state_path: Path | None = None, password: str | None = None) -> None:
        self.target = target
        self.camera = target.camera or camera
        self.tz = tz
        self.name = name
        self.state_path = state_path
        self.password = password
        self.state = "starting"
        self.reason: str | None = None
        self.reconnects = 0
        self.connected_once = False
        self.invalid = 0  # messages skipped as invalid
        self.other_cameras = 0  # messages of other cameras, ignored
        self._invalid_at: float | None = None
        self._invalid_note = ""
        self._queue: queue.Queue[tuple[SourceFrame, str | None]] = queue.Queue(QUEUE_SIZE)
        self._index = 0
        self._last_ts: datetime | None = None
        self._delivered_id: str | None = None  # stream id of the frame read() gave last
        self._saved_id: str | None = None
        self._saved_at = 0.0
        self._last_id = self._initial_id()  # the stream id read up to
        self._stop = threading.Event()
        self._client: redis.Redis | None = None
        self._thread = threading.Thread(target=self._run, name=f"redis-{name}", daemon=True)
        self._thread.start()

    # -- the stream position kept across restarts --------------------------------------

    def _initial_id(self) -> str | None:
        if self.target.stream is None:
            return None
        if self.state_path is not None:
            try:
                saved = json.loads(self.state_path.read_text())
                if saved.get("stream") == self.target.stream and saved.get("last_id"):
                    self._saved_id = str(saved["last_id"])
                    log.info("camera %s: Redis stream %s resumed after id %s", self.name,
                             self.target.stream, self._saved_id)
                    return self._saved_id
            except FileNotFoundError:
                pass
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("camera %s: cannot read %s (%s); reading from start=%s",
                            self.name, self.state_path, exc, self.target.start)
        return self.target.start

    def _save_position(self, force: bool = False) -> None:
        """Keep the id of the last message handed to the pipeline (and processed: read()
        is called again only once the frame before is through)."""
        last = self._delivered_id
        if self.state_path is None or last is None or last == self._saved_id:
            return
        if not force and time.monotonic() - self._saved_at < SAVE_EVERY:
            return
        self._saved_at = time.monotonic()
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"stream": self.target.stream, "last_id": last}))
            os.replace(tmp, self.state_path)
            self._saved_id = last
        except OSError as exc:
            log.warning("camera %s: cannot save the Redis stream position: %s", self.name, exc)

    # -- the reader thread ---------------------------------------------------------------

    def _set_state(self, state: str, reason: str | None = None) -> None:
        self.reason = reason
        if state == self.state:
            return
        before, self.state = self.state, state
        if state == "disconnected":
            log.warning("camera %s: Redis %s -> disconnected (%s)", self.name, before, reason)
        elif before != "disconnected" or state != "connecting":
            log.info("camera %s: Redis %s -> %s", self.name, before, state)

    def _connect(self) -> redis.Redis:
        t = self.target
        client = redis.Redis(
            host=t.host, port=t.port, db=t.db, username=t.username,
            password=self.password, ssl=t.scheme == "rediss",
            socket_connect_timeout=3.0, socket_timeout=BLOCK_MS / 1000 + 3.0,
            health_check_interval=0,
            retry=Retry(NoBackoff(), 0))  # this source retries, with its own backoff
        client.ping()
        return client

    def _run(self) -> None:
        delay = BACKOFF_INITIAL
        while not self._stop.is_set():
            self._set_state("connecting", self.reason)
            try:
                self._client = self._connect()
                self._set_state("connected")
                self.connected_once = True
                delay = BACKOFF_INITIAL
                if self.target.stream is not None:
                    self._read_stream(self._client)
                else:
                    self._read_channel(self._client)
            except redis.AuthenticationError as exc:
                self._lost(f"Redis refused the credentials ({self.target.password_env}): "
                           f"{type(exc).__name__}")
            except (redis.RedisError, OSError) as exc:
                self._lost(f"Redis {self.target.host}:{self.target.port}: {exc}")
            finally:
                if self._client is not None:
                    self._client.close()
                    self._client = None
            if self._stop.is_set():
                break
            if self._stop.wait(delay):
                break
            self.reconnects += 1
            delay = min(delay * 2, BACKOFF_MAX)
        self._set_state("stopped")

    def _lost(self, why: str) -> None:
        self._set_state("disconnected", why)

    def _read_stream(self, client: redis.Redis) -> None:
        stream = self.target.stream
        assert stream is not None
        if self._last_id == "$":  # from now on: the id of the newest entry, so nothing
            newest: Any = client.xrevrange(stream, count=1)  # between two reads is missed
            self._last_id = newest[0][0].decode() if newest else "0-0"
        while not self._stop.is_set():
            answer: Any = client.xread({stream: self._last_id or "0-0"}, count=BATCH,
                                  block=BLOCK_MS)
            for _name, entries in answer or []:
                for entry_id, fields in entries:
                    sid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    data = fields.get(self.target.field.encode())
                    if data is None and len(fields) == 1:
                        data = next(iter(fields.values()))
                    if data is None:
                        self._skip(f"stream entry {sid} has no field {self.target.field!r}")
                    else:
                        self._handle(data, sid)
                    self._last_id = sid
                    if self._stop.is_set():
                        return

    def _read_channel(self, client: redis.Redis) -> None:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(str(self.target.channel))
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=BLOCK_MS / 1000)
                if message is not None and message.get("type") == "message":
                    self._handle(message["data"], None)
        finally:
            pubsub.close()

    def _skip(self, why: str) -> None:
        self.invalid += 1
        self._invalid_at = time.monotonic()
        self._invalid_note = f"invalid message skipped ({why}); {self.invalid} in all"
        if self.invalid <= LOG_FIRST or self.invalid % 100 == 0:
            log.warning("camera %s: %s", self.name, self._invalid_note)

    def _handle(self, data: bytes | str, stream_id: str | None) -> None:
        try:
            camera, ts, width, height, dets = parse_message(data)
        except InvalidMessage as exc:
            self._skip(str(exc))
            return
        if camera != self.camera:
            self.other_cameras += 1
            return
        if self._last_ts is not None and ts < self._last_ts:
            self._skip(f"timestamp {ts.isoformat()} is before the previous message's")
            return
        self._last_ts = ts
        frame = SourceFrame(self._index, ts.astimezone(self.tz), imageless(width, height),
                            detections=dets)
        self._index += 1
        while not self._stop.is_set():  # wait for room: a stream message is never dropped
            try:
                self._queue.put((frame, stream_id), timeout=0.2)
                return
            except queue.Full:
                continue

    # -- FrameSource -------------------------------------------------------------------------

    @property
    def skipped_frames(self) -> int:
        return self.invalid

    def problem(self) -> tuple[str, str] | None:
        state, reason = self.state, self.reason
        if state in ("starting", "connecting", "disconnected"):
            where = f"Redis {self.target.host}:{self.target.port} ({self.target.name})"
            return ("reconnecting" if self.connected_once else "connecting"), \
                reason or f"connecting to {where}"
        if self._invalid_at is not None and time.monotonic() - self._invalid_at <= DEGRADED_HOLD:
            return "degraded", self._invalid_note
        return None

    def read(self, timeout: float = 1.0) -> SourceFrame | None:
        self._save_position()  # the frame given before this call has been processed
        try:
            frame, stream_id = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if stream_id is not None:
            self._delivered_id = stream_id
        return frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._save_position(force=True)


def redis_state_path(data_dir: Path, camera_id: str) -> Path:
    """Where a camera's last handled stream id is kept."""
    return data_dir / "processor" / "redis_input" / f"{camera_id}.json"
