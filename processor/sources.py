"""Where frames come from: recordings (a file or a folder of files) and live streams.

* :class:`RecordingSource` delivers every frame, stamped with the video's own clock plus the
  configured start time, so analytics of a recording do not depend on processing speed.  A
  reader thread decodes ahead (OpenCV releases the GIL while decoding) so decoding overlaps
  inference.  Each frame's index and time come from the container's presentation time, not
  from a count of decoded frames: a corrupt stretch that cannot be decoded is counted
  (:attr:`SourceFrame.skipped`, :attr:`FrameSource.skipped_frames`, a warning in the log) and
  the frames after it keep their true times.
* :class:`LiveSource` keeps only the newest frame: a capture thread reads continuously and
  overwrites a one-frame slot, so lag never grows when processing is slower than the camera.
  ``[Source_N] MaxFPS`` caps how many of those frames are handed on per second: the capture
  thread keeps reading at the camera's own rate and the frames in between are dropped, so a
  capped camera is never behind either.
  On loss it reconnects with backoff capped at 2 s (a camera's return is noticed within about
  3 s) and says why in :meth:`FrameSource.problem`.

Opening a capture through OpenCV's FFmpeg backend holds a lock shared by every capture of the
process for as long as the open takes (30 s by default for a server that accepts and never
answers), so one dead camera would hold up every other camera of its worker.  A network
camera is therefore asked first with a short probe of our own (TCP connect, then an HTTP GET or
RTSP OPTIONS that must be answered within :data:`PROBE_TIMEOUT`), and OpenCV only opens it once
it answers, with bounded open and read timeouts.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import ssl
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from libs.config.loader import is_device, is_stream_url
from libs.config.models import LookoutConfig, SourceConfig
from libs.config.secrets import mask_text
from libs.config.video_source import (
    VideoPathError,
    check_redis_url,
    check_video_path,
    is_redis_url,
)
from libs.frame import Detections

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".webm", ".wmv"}

PROBE_TIMEOUT = 3.0  # s a network camera has to answer our probe before OpenCV opens it
OPEN_TIMEOUT = 5.0  # s OpenCV may take to open a stream that answered the probe
READ_TIMEOUT = 5.0  # s without data before OpenCV gives up on an open stream
STALL_SECONDS = 1.5  # s without a new frame (at least) before a live camera counts as stalled
DEGRADED_HOLD = 2.0  # s a recording stays "degraded" after frames were skipped


# The only protocols FFmpeg may use for a source: what VideoPath allows, and what those
# carry (an http(s) camera cannot redirect FFmpeg to ftp://, concat: or a local device).
FFMPEG_PROTOCOLS = "file,http,https,tcp,tls,rtp,rtsp,udp"


def _ffmpeg_capture_options() -> None:
    """Make FFmpeg's AVI reader follow the file's index (``fflags +sortdts``), and allow it
    only the protocols of :data:`FFMPEG_PROTOCOLS`.

    Without the first, the reader counts packets, so a damaged stretch of an AVI silently
    shifts the time of every later frame.  OpenCV takes demuxer options only from this
    environment variable; its own default when the variable is unset (RTSP over TCP) is kept.
    """
    name = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
    options = os.environ.get(name)
    if options is None:
        options = "rtsp_flags;prefer_tcp"
    if "fflags" not in options:
        options += "|fflags;+sortdts"
    if "protocol_whitelist" not in options:
        options += f"|protocol_whitelist;{FFMPEG_PROTOCOLS}"
    os.environ[name] = options


_ffmpeg_capture_options()


@dataclass
class SourceFrame:
    index: int
    timestamp: datetime
    image: np.ndarray
    skipped: int = 0  # frames of the source lost (undecodable) just before this one
    # People given by the source with their identities (Redis detection messages): the
    # frame has no pixels (libs.frame.imageless) and skips the detector and the tracker.
    detections: Detections | None = None


def redact(target: str | int) -> str:
    """``target`` without a password, fit for logs and status (the one masking rule of
    :mod:`libs.config.secrets`)."""
    return mask_text(str(target))


def probe_stream(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why the camera at ``url`` does not answer, or ``None`` when it does (or cannot be asked).

    HTTP(S): the server must answer a GET (sent without credentials) with a status line; a
    4xx/5xx other than 401/403 (left to FFmpeg, which authenticates) is a failure.
    RTSP(S): the server must answer OPTIONS.  Other schemes are not probed.  Never holds a
    lock other cameras need.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    ports = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322}
    if scheme not in ports or not parts.hostname:
        return None
    try:
        port = parts.port or ports[scheme]
    except ValueError:
        return f"bad port in {redact(url)}"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6
    where = f"{host}:{port}"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    deadline = time.monotonic() + timeout
    try:
        sock: socket.socket = socket.create_connection((parts.hostname, port), timeout=timeout)
    except TimeoutError:
        return f"no answer from {where} within {timeout:.0f} s (connect)"
    except OSError as exc:
        return f"cannot connect to {where}: {exc.strerror or exc}"
    try:
        if scheme in ("https", "rtsps"):
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # only asking whether it answers, as FFmpeg does
            sock = ctx.wrap_socket(sock, server_hostname=parts.hostname)
        if scheme.startswith("http"):
            # No credentials: they would go in clear to a camera that wants digest.
            request = f"GET {path} HTTP/1.0\r\nHost: {where}\r\n\r\n"
            expect = b"HTTP/"
        else:
            bare = parts._replace(netloc=where).geturl()
            request = f"OPTIONS {bare} RTSP/1.0\r\nCSeq: 1\r\n\r\n"
            expect = b"RTSP/"
        sock.sendall(request.encode())
        answer = b""
        while b"\n" not in answer and len(answer) < 512:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(512)
            if not chunk:
                break
            answer += chunk
    except TimeoutError:
        return f"no answer from {where} within {timeout:.0f} s"
    except OSError as exc:
        return f"{where}: {exc.strerror or exc}"
    finally:
        sock.close()
    line = answer.split(b"\n", 1)[0].strip().decode("latin-1")
    if not answer.startswith(expect):
        return f"{where} closed the connection without answering" if not answer \
            else f"{where} answered something else than {expect.decode()}: {line[:60]!r}"
    fields = line.split()
    code = fields[1] if len(fields) > 1 else ""
    if code.isdigit() and int(code) >= 400 and int(code) not in (401, 403):
        return f"{where} answered {line[:80]}"
    return None


class SourceError(RuntimeError):
    pass


class FrameSource(ABC):
    is_live: bool = False

    @abstractmethod
    def read(self, timeout: float = 1.0) -> SourceFrame | None:
        """The next frame; ``None`` when a recording has ended (a live source waits)."""

    @property
    def total_frames(self) -> int | None:
        return None

    @property
    def ended(self) -> bool:
        return False

    @property
    def skipped_frames(self) -> int:
        """Frames of the source that could not be decoded, so far."""
        return 0

    def problem(self) -> tuple[str, str] | None:
        """What is wrong now, as ``(state, reason)``, or ``None`` while frames flow.

        States: ``connecting`` (no frame yet), ``reconnecting`` (a live source was lost),
        ``stalled`` (open, but no new frame for longer than it should take).
        """
        return None

    @abstractmethod
    def close(self) -> None: ...


def _resize(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def list_recordings(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not files:
            raise SourceError(f"no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) in {path}")
        return files
    return [path]


@dataclass
class RecordingInfo:
    path: Path
    frames: int
    fps: float  # the clock frames are stamped with (FrameRate overrides the container's)
    native_fps: float = 0.0  # the container's own rate, to turn its presentation times to frames

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=self.frames / self.fps)


def probe_recording(path: Path, fps_override: float | None) -> RecordingInfo:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SourceError(f"cannot open video {path}")
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        native = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    fps = fps_override or native
    if fps <= 0:
        raise SourceError(f"{path} has no frame rate; set FrameRate in its [Source] section")
    return RecordingInfo(path, max(frames, 0), fps, native if native > 0 else fps)


def open_recording(path: Path, decode_threads: int = 0) -> cv2.VideoCapture:
    """A capture of a video file whose FFmpeg decoder uses ``decode_threads`` threads (0:
    its own choice, one per core; with the cores taken by detector sessions one thread costs
    less: 0.59 against 0.91 core-ms a frame of vtest.avi on 2 cores).  Falls back to OpenCV's
    default backend when FFmpeg cannot open the file."""
    if decode_threads > 0:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, decode_threads])
        if cap.isOpened():
            return cap
        cap.release()
    return cv2.VideoCapture(str(path))


class RecordingSource(FrameSource):
    """Every frame of one file or of a folder of files (in name order), read ahead."""

    def __init__(
        self,
        paths: list[Path],
        start_time: datetime | None,
        tz: tzinfo,
        fps_override: float | None = None,
        resize_to: tuple[int, int] | None = None,
        start_index: int = 0,
        prefetch: int = 8,
        decode_threads: int = 0,
    ) -> None:
        self.infos = [probe_recording(p, fps_override) for p in paths]
        self.decode_threads = decode_threads  # 0: the decoder's own choice
        if start_time is None:
            first = self.infos[0]
            mtime = datetime.fromtimestamp(first.path.stat().st_mtime, tz)
            start_time = mtime - first.duration
        elif start_time.tzinfo is None:
            start_time = start_time.replace(tzinfo=tz)
        self.start_time = start_time
        self.resize_to = resize_to
        self.start_index = start_index
        self._queue: queue.Queue[SourceFrame | BaseException | None] = queue.Queue(prefetch)
        self._stop = threading.Event()
        self._ended = False
        self._skipped = 0  # undecodable frames among those delivered so far
        self._skipped_at: float | None = None  # monotonic time the last of them was reached
        self._skip_note = ""
        self._thread = threading.Thread(target=self._reader, name="recording-reader", daemon=True)
        self._thread.start()

    @property
    def total_frames(self) -> int:
        return sum(i.frames for i in self.infos)

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def skipped_frames(self) -> int:
        return self._skipped

    def problem(self) -> tuple[str, str] | None:
        if self._skipped_at is None or time.monotonic() - self._skipped_at > DEGRADED_HOLD:
            return None
        return "degraded", self._skip_note

    def _put(self, item: SourceFrame | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _reader(self) -> None:
        try:
            global_index = 0
            file_start = self.start_time
            for info in self.infos:
                if global_index + info.frames <= self.start_index and info.frames > 0:
                    # The whole file was processed before a restart.
                    global_index += info.frames
                    file_start += info.duration
                    continue
                skip = max(0, self.start_index - global_index)
                end = self._read_file(info, skip, global_index, file_start)
                if end is None:
                    return
                # Files whose header miscounts frames: trust what was decoded.
                global_index += max(end, info.frames) if info.frames else end
                file_start += timedelta(seconds=max(end, info.frames) / info.fps)
            self._put(None)
        except BaseException as exc:
            self._put(exc)

    def _read_file(self, info: RecordingInfo, skip: int, global_index: int,
                   file_start: datetime) -> int | None:
        """Deliver the frames of one file from its frame ``skip`` on.

        Returns the index after the last frame read, ``None`` when stopped.  A frame's index
        is its presentation time times the container's rate, so frames that cannot be decoded
        leave a gap (counted in :attr:`SourceFrame.skipped`) instead of shifting later frames.
        A failed read is retried while the header says frames remain (each failed read
        consumes at least one packet, so this is bounded by the file).
        """
        cap = open_recording(info.path, self.decode_threads)
        if not cap.isOpened():
            raise SourceError(f"cannot open video {info.path}")
        last = skip - 1  # index of the last frame delivered from this file
        try:
            if skip:
                cap.set(cv2.CAP_PROP_POS_FRAMES, skip)
                pos = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
                while pos < skip:  # codecs that cannot seek exactly
                    if not cap.grab():
                        break
                    pos += 1
            failures = 0
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok:
                    failures += 1
                    if failures > max(0, info.frames - last - 1) + 2:
                        break
                    continue
                failures = 0
                msec = cap.get(cv2.CAP_PROP_POS_MSEC)
                index = round(msec * info.native_fps / 1000.0)
                if index <= last:  # no presentation time (or one going back): count
                    index = last + 1
                lost = index - last - 1
                if lost:
                    log.warning("%s: %d frame(s) could not be decoded before frame %d "
                                "(video time %.1f s); later frames keep their true times",
                                info.path.name, lost, index, index / info.fps)
                ts = file_start + timedelta(seconds=index / info.fps)
                item = SourceFrame(global_index + index, ts, _resize(image, self.resize_to),
                                   skipped=lost)
                if not self._put(item):
                    return None
                last = index
        finally:
            cap.release()
        if info.frames and last + 1 < info.frames:
            log.warning("%s: ended at frame %d of the %d its header announces",
                        info.path.name, last + 1, info.frames)
        return last + 1

    def read(self, timeout: float = 1.0) -> SourceFrame | None:
        if self._ended:
            return None
        while True:
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                if not self._thread.is_alive():
                    self._ended = True
                    return None
                continue
            if item is None:
                self._ended = True
                return None
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            if item.skipped:
                self._skipped += item.skipped
                self._skipped_at = time.monotonic()
                self._skip_note = (f"{item.skipped} undecodable frame(s) skipped before frame "
                                   f"{item.index} ({item.timestamp:%H:%M:%S}); "
                                   f"{self._skipped} in all")
            return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class LiveSource(FrameSource):
    """A camera, URL or device: the newest frame only, reconnecting with capped backoff.

    ``state`` is ``connecting`` (opening), ``connected`` (open), ``disconnected`` (lost or
    not reachable, waiting to retry) or ``stopped``; ``reason`` says why it is not connected.
    """

    is_live = True

    def __init__(
        self,
        target: str | int,
        tz: tzinfo,
        name: str,
        resize_to: tuple[int, int] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 2.0,
        read_timeout: float = READ_TIMEOUT,
        open_timeout: float = OPEN_TIMEOUT,
        probe_timeout: float = PROBE_TIMEOUT,
        stall_seconds: float = STALL_SECONDS,
        max_fps: float | None = None,
    ) -> None:
        if max_fps is not None and not max_fps > 0:
            raise ValueError(f"max_fps must be > 0, got {max_fps!r}")
        self.target = target
        self.max_fps = max_fps
        self._due: float | None = None  # monotonic time of the next turn (max_fps)
        self.tz = tz
        self.name = name
        self.resize_to = resize_to
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.read_timeout = read_timeout
        self.open_timeout = open_timeout
        self.probe_timeout = probe_timeout
        self.stall_seconds = stall_seconds
        self.state = "starting"
        self.reason: str | None = None
        self._logged_reason: str | None = None
        self.reconnects = 0
        self._cond = threading.Condition()
        self._latest: np.ndarray | None = None
        self._latest_time: datetime | None = None
        self._latest_at: float | None = None  # monotonic arrival of the newest frame
        self._interval = 0.0  # smoothed time between frames
        self._connected_at = 0.0
        self._lost_at: float | None = None
        self._seq = 0
        self._delivered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture, name=f"capture-{name}", daemon=True)
        self._thread.start()

    def _set_state(self, state: str, reason: str | None = None) -> None:
        self.reason = reason
        if state == self.state:
            return
        before, self.state = self.state, state
        if state == "disconnected":
            if reason != self._logged_reason:  # a dead camera retried: said once
                log.warning("camera %s: %s -> disconnected (%s)", self.name, before, reason)
            self._logged_reason = reason
        elif state == "connected" and self._lost_at is not None:
            log.info("camera %s: %s -> connected after %.1f s", self.name, before,
                     time.monotonic() - self._lost_at)
            self._logged_reason = None
        elif before != "disconnected" or state != "connecting":  # retries stay quiet
            log.info("camera %s: %s -> %s", self.name, before, state)

    def _open(self) -> tuple[cv2.VideoCapture | None, str]:
        """An open capture, or ``None`` and why not."""
        target = self.target
        if isinstance(target, str) and "://" in target:
            why = probe_stream(target, self.probe_timeout)
            if why is not None:
                return None, why
        t0 = time.monotonic()
        if isinstance(target, str) and not target.startswith("/dev/"):
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
            cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
        else:
            cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            why = f"OpenCV cannot open {redact(target)}"
            if time.monotonic() - t0 >= 0.9 * self.open_timeout:
                why += f" (no video within {self.open_timeout:g} s)"
            return None, why
        return cap, ""

    def _wait_retry(self, delay: float) -> bool:
        """Wait before the next try; ``False`` when stopped meanwhile."""
        if self._stop.wait(delay):
            return False
        self.reconnects += 1
        return True

    def _capture(self) -> None:
        delay = self.backoff_initial
        while not self._stop.is_set():
            self._set_state("connecting", self.reason)
            cap, why = self._open()
            if cap is None:
                self._set_state("disconnected", f"{why}; retrying every {self.backoff_max:g} s"
                                if delay >= self.backoff_max else why)
                if self._lost_at is None:
                    self._lost_at = time.monotonic()
                if not self._wait_retry(delay):
                    break
                delay = min(delay * 2, self.backoff_max)
                continue
            self._connected_at = time.monotonic()
            self._set_state("connected")
            self._lost_at = None
            delay = self.backoff_initial
            got = 0
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok:
                    break
                got += 1
                now = datetime.now(self.tz)
                image = _resize(image, self.resize_to)
                with self._cond:
                    arrived = time.monotonic()
                    if self._latest_at is not None and got > 1:
                        gap = arrived - self._latest_at
                        self._interval = gap if not self._interval \
                            else 0.9 * self._interval + 0.1 * gap
                    self._latest = image
                    self._latest_time = now
                    self._latest_at = arrived
                    self._seq += 1
                    self._cond.notify_all()
            cap.release()
            if self._stop.is_set():
                break
            self._lost_at = time.monotonic()
            self._set_state("disconnected", f"stream lost after {got} frame(s): the read failed "
                            f"(closed, or nothing for {self.read_timeout:g} s)")
            if not self._wait_retry(delay):
                break
            delay = min(delay * 2, self.backoff_max)
        self._set_state("stopped")

    def problem(self) -> tuple[str, str] | None:
        state, reason, seq = self.state, self.reason, self._seq
        now = time.monotonic()
        if state != "connected":
            if state == "stopped":
                return None
            return ("reconnecting" if seq else "connecting"), reason or "opening the stream"
        last = self._latest_at
        limit = max(self.stall_seconds, 5 * self._interval)
        if last is None or last < self._connected_at:  # open, no frame through it yet
            since = now - self._connected_at
            return ("reconnecting" if seq else "connecting"), (
                "connected, waiting for the first frame" if since <= limit
                else f"connected, but no frame for {since:.0f} s")
        since = now - last
        if since <= limit:
            return None
        return "stalled", f"no frame for {since:.0f} s"

    def read(self, timeout: float = 1.0) -> SourceFrame | None:
        """The newest frame not handed on yet; ``None`` when none comes within ``timeout``.

        With ``max_fps`` a frame is handed on no sooner than its turn.  Turns are
        ``1 / max_fps`` apart on a grid kept while the pipeline keeps up (so the rate reaches
        the cap although frames come at the camera's own times); after a frame taken late the
        next turn is at least half a turn later.  The frames the camera sends meanwhile
        replace each other in the slot: they are dropped (their indices skipped), and the
        capture thread never waits.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._stop.is_set():
                    return None
                now = time.monotonic()
                fresh = self._seq != self._delivered
                if fresh and (self._due is None or now >= self._due):
                    break
                if now >= deadline:
                    return None
                # a frame waits for its turn, or we wait for a frame (a new one notifies)
                until = self._due if fresh and self._due is not None else deadline
                self._cond.wait(min(until, deadline) - now)
            assert self._latest is not None and self._latest_time is not None
            self._delivered = self._seq
            if self.max_fps is not None:
                turn = 1.0 / self.max_fps
                now = time.monotonic()
                self._due = now + turn if self._due is None \
                    else max(self._due + turn, now + turn / 2)
            return SourceFrame(self._seq - 1, self._latest_time, self._latest)

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5)


def open_source(config: LookoutConfig, source: SourceConfig, start_index: int = 0,
                decode_threads: int = 0) -> FrameSource:
    """The right source for ``[Source_N] VideoPath``, checked again by the one VideoPath rule
    (a link may have been pointed elsewhere since the file was loaded).  ``decode_threads``:
    of a recording's decoder (:func:`open_recording`; the thread budget's choice)."""
    try:
        check_video_path(source.video_path, config.assets_dir, config.data_dir, True)
    except VideoPathError as exc:
        raise SourceError(f"VideoPath refused: {exc}") from exc
    tz = config.app.tzinfo
    resize = config.app.resolution
    vp = source.video_path
    if is_redis_url(vp):
        from processor.redis_source import RedisSource, redis_state_path

        target = check_redis_url(vp)
        return RedisSource(target, source.id, tz, source.id,
                           state_path=redis_state_path(config.data_dir, source.id),
                           password=os.environ.get(target.password_env) or None)
    if is_stream_url(vp):
        return LiveSource(vp, tz, source.id, resize, max_fps=source.max_fps)
    if is_device(vp):
        return LiveSource(int(vp) if vp.isdigit() else vp, tz, source.id, resize,
                          max_fps=source.max_fps)
    path = config.asset_path(vp)
    return RecordingSource(
        list_recordings(path),
        source.start_time,
        tz,
        fps_override=source.frame_rate,
        resize_to=resize,
        start_index=start_index,
        decode_threads=decode_threads,
    )
