"""Where frames come from: recordings (a file or a folder of files) and live streams.

* :class:`RecordingSource` delivers every frame, stamped with the video's own clock plus the
  configured start time, so analytics of a recording do not depend on processing speed.  A
  reader thread decodes ahead (OpenCV releases the GIL while decoding) so decoding overlaps
  inference.
* :class:`LiveSource` keeps only the newest frame: a capture thread reads continuously and
  overwrites a one-frame slot, so lag never grows when processing is slower than the camera.
  On loss it reconnects with exponential backoff and logs every state change.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import cv2
import numpy as np

from libs.config.loader import is_device, is_stream_url
from libs.config.models import LookoutConfig, SourceConfig

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".webm", ".wmv"}


@dataclass
class SourceFrame:
    index: int
    timestamp: datetime
    image: np.ndarray


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
    fps: float

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=self.frames / self.fps)


def probe_recording(path: Path, fps_override: float | None) -> RecordingInfo:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SourceError(f"cannot open video {path}")
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = fps_override or float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    if fps <= 0:
        raise SourceError(f"{path} has no frame rate; set FrameRate in its [Source] section")
    return RecordingInfo(path, max(frames, 0), fps)


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
    ) -> None:
        self.infos = [probe_recording(p, fps_override) for p in paths]
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
        self._thread = threading.Thread(target=self._reader, name="recording-reader", daemon=True)
        self._thread.start()

    @property
    def total_frames(self) -> int:
        return sum(i.frames for i in self.infos)

    @property
    def ended(self) -> bool:
        return self._ended

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
                cap = cv2.VideoCapture(str(info.path))
                if not cap.isOpened():
                    raise SourceError(f"cannot open video {info.path}")
                local = 0
                try:
                    skip = max(0, self.start_index - global_index)
                    if skip:
                        cap.set(cv2.CAP_PROP_POS_FRAMES, skip)
                        local = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
                        while local < skip:  # codecs that cannot seek exactly
                            if not cap.grab():
                                break
                            local += 1
                    while not self._stop.is_set():
                        ok, image = cap.read()
                        if not ok:
                            break
                        ts = file_start + timedelta(seconds=local / info.fps)
                        item = SourceFrame(global_index + local, ts, _resize(image, self.resize_to))
                        if not self._put(item):
                            return
                        local += 1
                finally:
                    cap.release()
                # Files whose header miscounts frames: trust what was decoded.
                global_index += max(local, info.frames) if info.frames else local
                file_start += timedelta(seconds=max(local, info.frames) / info.fps)
            self._put(None)
        except BaseException as exc:
            self._put(exc)

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
            return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class LiveSource(FrameSource):
    """A camera, URL or device: the newest frame only, reconnecting with backoff."""

    is_live = True

    def __init__(
        self,
        target: str | int,
        tz: tzinfo,
        name: str,
        resize_to: tuple[int, int] | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        read_timeout: float = 10.0,
    ) -> None:
        self.target = target
        self.tz = tz
        self.name = name
        self.resize_to = resize_to
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.read_timeout = read_timeout
        self.state = "starting"
        self.reconnects = 0
        self._cond = threading.Condition()
        self._latest: np.ndarray | None = None
        self._latest_time: datetime | None = None
        self._seq = 0
        self._delivered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture, name=f"capture-{name}", daemon=True)
        self._thread.start()

    def _set_state(self, state: str, detail: str = "") -> None:
        if state != self.state:
            log.info("camera %s: %s -> %s%s", self.name, self.state, state,
                     f" ({detail})" if detail else "")
            self.state = state

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.target)
        return cap

    def _capture(self) -> None:
        delay = self.backoff_initial
        while not self._stop.is_set():
            self._set_state("connecting")
            cap = self._open()
            if not cap.isOpened():
                cap.release()
                self._set_state("disconnected", f"cannot open; retry in {delay:.0f} s")
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.backoff_max)
                self.reconnects += 1
                continue
            self._set_state("connected")
            delay = self.backoff_initial
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok:
                    break
                now = datetime.now(self.tz)
                image = _resize(image, self.resize_to)
                with self._cond:
                    self._latest = image
                    self._latest_time = now
                    self._seq += 1
                    self._cond.notify_all()
            cap.release()
            if self._stop.is_set():
                break
            self._set_state("disconnected", f"stream ended or failed; retry in {delay:.0f} s")
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.backoff_max)
            self.reconnects += 1
        self._set_state("stopped")

    def read(self, timeout: float = 1.0) -> SourceFrame | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._seq == self._delivered:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(remaining)
            assert self._latest is not None and self._latest_time is not None
            self._delivered = self._seq
            return SourceFrame(self._seq - 1, self._latest_time, self._latest)

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5)


def open_source(config: LookoutConfig, source: SourceConfig, start_index: int = 0) -> FrameSource:
    """The right source for ``[Source_N] VideoPath``."""
    tz = config.app.tzinfo
    resize = config.app.resolution
    vp = source.video_path
    if is_stream_url(vp):
        return LiveSource(vp, tz, source.id, resize)
    if is_device(vp):
        return LiveSource(int(vp) if vp.isdigit() else vp, tz, source.id, resize)
    path = config.asset_path(vp)
    return RecordingSource(
        list_recordings(path),
        source.start_time,
        tz,
        fps_override=source.frame_rate,
        resize_to=resize,
        start_index=start_index,
    )
