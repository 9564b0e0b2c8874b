"""Several sessions of one detector, serving every camera of a worker process from threads.

The backends release the GIL while they infer, so one process with N one-thread sessions
detects about as fast as N processes (:mod:`libs.detectors.budget`).  A camera hands a frame
to the pool with :meth:`DetectorPool.submit` and gets a future; a recording keeps several of
its frames in the pool at once (:class:`DetectAhead`) and takes the results in frame order,
so the tracker and the analytics still see the frames in order.  Jobs are served first come,
first served: a camera whose stream stalls submits nothing and holds no session.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from libs.detectors import Detector
from libs.frame import Detections

if TYPE_CHECKING:
    from processor.sources import FrameSource, SourceFrame

Detected = tuple[Detections, float]  # detections, milliseconds of detect()


class DetectorPool(Detector):
    """``sessions`` detectors made by ``make`` (each loaded now, so a backend that cannot
    start fails here), run from as many threads."""

    def __init__(self, make: Callable[[], Detector], sessions: int, name: str = "detector"
                 ) -> None:
        self.detectors: list[Detector] = []
        try:
            for _ in range(max(1, sessions)):
                self.detectors.append(make())
        except BaseException:
            for made in self.detectors:  # the sessions made before the one that failed
                made.close()
            raise
        first = self.detectors[0]
        super().__init__(first.config, first.model_path, first.data_dir)
        self.sessions = len(self.detectors)
        self._free: queue.SimpleQueue[Detector] = queue.SimpleQueue()
        for d in self.detectors:
            self._free.put(d)
        self._executor = ThreadPoolExecutor(self.sessions, thread_name_prefix=name)
        self._closed = threading.Event()

    def _run(self, image: np.ndarray) -> Detected:
        detector = self._free.get()
        try:
            t0 = time.perf_counter()
            found = detector.detect(image)
            return found, (time.perf_counter() - t0) * 1000.0
        finally:
            self._free.put(detector)

    def submit(self, image: np.ndarray) -> Future[Detected]:
        return self._executor.submit(self._run, image)

    def detect(self, image: np.ndarray) -> Detections:
        return self.submit(image).result()[0]

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        for d in self.detectors:
            d.close()


class DetectAhead:
    """Reads ``source`` and keeps up to ``depth`` of its frames in ``pool``; :meth:`read`
    returns the oldest frame with its detections (None and 0 ms for a frame that brought
    its people), in order.  Depth 1 (live sources: only the newest frame matters) detects
    each frame as it is read."""

    def __init__(self, source: FrameSource, pool: DetectorPool, depth: int) -> None:
        self.source = source
        self.pool = pool
        self.depth = max(1, depth)
        self.pending: deque[tuple[SourceFrame, Future[Detected] | None]] = deque()

    def _submit(self, sf: SourceFrame) -> None:
        job = self.pool.submit(sf.image) if sf.detections is None else None
        self.pending.append((sf, job))

    def read(self, timeout: float) -> tuple[SourceFrame, Detections | None, float] | None:
        """The next frame in order, or None when none came within ``timeout`` (or the
        recording has ended and every frame was returned: ``source.ended``)."""
        while len(self.pending) < self.depth and not self.source.ended:
            # A recording's reader decodes ahead, so these reads seldom wait.
            sf = self.source.read(timeout=timeout)
            if sf is None:
                break
            self._submit(sf)
        if not self.pending:
            return None
        sf, job = self.pending.popleft()
        if job is None:
            return sf, None, 0.0
        found, ms = job.result()
        return sf, found, ms

    def cancel(self) -> None:
        """Forget the frames still in the pool (the camera stops)."""
        for _, job in self.pending:
            if job is not None:
                job.cancel()
        self.pending.clear()

