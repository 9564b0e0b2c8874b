"""The thread budget (libs/detectors/budget.py) and the detector pool (libs/detectors/pool.py):
cores split among workers and sessions per backend, settings by hand, what check-config says;
a pool that serves cameras first come first served, keeps a recording's frames in order, and
passes a detector's error to the camera."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from libs.config import load_config
from libs.config.models import LookoutConfig
from libs.detectors import Detector, create_detector
from libs.detectors.budget import active_workers, available_cores, thread_budget
from libs.detectors.pool import DetectAhead, DetectorPool
from libs.frame import Detections
from processor.sources import FrameSource, SourceFrame, open_source
from tests.conftest import REPO
from tests.test_backends import config_with


def with_cameras(cfg: LookoutConfig, cameras: int, workers: int) -> LookoutConfig:
    first = cfg.sources[0]
    sources = [first.model_copy(update={"id": f"cam{i}"}) for i in range(cameras)]
    return cfg.model_copy(update={
        "sources": sources, "app": cfg.app.model_copy(update={"max_processes": workers})})


def test_cpu_backends_get_one_single_thread_session_per_core_of_each_worker(
        x86_config: Path) -> None:
    cfg = load_config(x86_config)
    b = thread_budget(cfg, cores=16)
    assert (b.workers, b.worker_cores, b.sessions, b.threads) == (1, 16, 16, 1)
    assert not b.oversubscribed
    four = with_cameras(cfg, 8, 4)
    b = thread_budget(four, cores=16)
    assert (b.workers, b.worker_cores, b.sessions, b.threads) == (4, 4, 4, 1)
    # more workers than cameras: the idle ones take no core
    b = thread_budget(with_cameras(cfg, 2, 8), cores=16)
    assert (b.workers, b.sessions) == (2, 8)
    # tflite (LiteRT) splits the cores the same way
    tfl = load_config(config_with(x86_config, Device="tflite",
                                  ModelPath="models/person_yolox_nano_416_fp16.tflite"))
    assert thread_budget(tfl, cores=4).sessions == 4


def test_openvino_sessions_share_one_model_and_accelerators_get_one_session(
        x86_config: Path) -> None:
    ov = load_config(config_with(x86_config, Device="openvino"))
    b = thread_budget(ov, cores=8)
    assert (b.sessions, b.threads) == (8, 1)
    # the sessions share one model compiled for as many streams, one request each
    pool = DetectorPool(lambda: create_detector(ov, threads=1, sessions=2), 2)
    try:
        a, c = pool.detectors
        assert a.compiled is c.compiled and a.request is not c.request  # type: ignore[attr-defined]
        assert a.compiled.get_property("NUM_STREAMS") == 2  # type: ignore[attr-defined]
        assert a.compiled.get_property("INFERENCE_NUM_THREADS") == 2  # type: ignore[attr-defined]
    finally:
        pool.close()
    gpu = load_config(config_with(x86_config, Device="x86-gpu"))
    b = thread_budget(with_cameras(gpu, 4, 2), cores=8)
    assert (b.workers, b.sessions, b.threads) == (2, 1, 4)


def test_recordings_decode_with_one_thread_beside_cpu_sessions_same_pixels(
        x86_config: Path) -> None:
    cfg = load_config(x86_config)
    assert thread_budget(cfg, cores=16).decode_threads == 1
    assert "recordings decoded with 1 thread" in thread_budget(cfg, cores=16).describe()
    gpu = load_config(config_with(x86_config, Device="x86-gpu"))
    assert thread_budget(gpu, cores=16).decode_threads == 0  # the decoder's own choice
    frames = []
    for threads in (0, 1):
        src = open_source(cfg, cfg.sources[0], decode_threads=threads)
        try:
            frames.append([src.read() for _ in range(30)])
        finally:
            src.close()
    for a, b in zip(*frames, strict=True):
        assert a is not None and b is not None
        assert (a.index, a.timestamp) == (b.index, b.timestamp)
        assert np.array_equal(a.image, b.image)


def test_settings_by_hand_and_oversubscription_said(x86_config: Path) -> None:
    cfg = load_config(config_with(x86_config, Threads="2"))
    b = thread_budget(cfg, cores=8)
    assert (b.sessions, b.threads) == (4, 2)
    cfg = load_config(config_with(x86_config, Sessions="3", Threads="2"))
    b = thread_budget(cfg, cores=4)
    assert (b.sessions, b.threads) == (3, 2) and b.oversubscribed
    assert b.describe().endswith("; 6 threads for 4 cores: lower MaxProcesses, Sessions or "
                                 "Threads")
    plain = load_config(config_with(x86_config, Sessions="0", Threads="0"))
    b = thread_budget(with_cameras(plain, 4, 4), cores=2)
    assert (b.worker_cores, b.sessions) == (1, 1) and b.oversubscribed
    with pytest.raises(Exception, match="Sessions"):
        load_config(config_with(x86_config, Sessions="-1"))


def test_budget_counts_the_cores_this_process_may_use(x86_config: Path) -> None:
    assert available_cores() == len(os.sched_getaffinity(0))
    # taskset to one core: check-config says one session of one thread
    code = ("import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from processor.cli import main; sys.argv = ['lookout', 'check-config', "
            f"'--config', {str(x86_config)!r}]; main()")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert ("threads:          1 core, 1 worker process with cameras, each 1 detector session "
            "x 1 thread (Device x86)") in res.stdout
    cfg = load_config(x86_config)
    assert active_workers(cfg) == 1


class SlowDetector(Detector):
    """Returns one box whose score is the image's first pixel, after ``delay`` seconds."""

    def __init__(self, delay: float, fail_on: int = -1) -> None:
        super().__init__(None, Path())  # type: ignore[arg-type]
        self.delay = delay
        self.fail_on = fail_on

    def detect(self, image: np.ndarray) -> Detections:
        value = int(image[0, 0, 0])
        if value == self.fail_on:
            raise RuntimeError(f"cannot detect frame {value}")
        time.sleep(self.delay)
        return Detections(boxes=np.array([[0, 0, 1, 1]], np.float32),
                          scores=np.array([value], np.float32))


def image(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value, np.uint8)


def test_pool_runs_sessions_at_once_and_passes_errors() -> None:
    made: list[SlowDetector] = []

    def make() -> SlowDetector:
        made.append(SlowDetector(0.2, fail_on=7))
        return made[-1]

    pool = DetectorPool(make, 3)
    try:
        assert len(made) == 3
        t0 = time.monotonic()
        jobs = [pool.submit(image(v)) for v in range(3)]
        results = [j.result(timeout=5) for j in jobs]
        assert time.monotonic() - t0 < 0.5  # three at once, not 0.6 s one after another
        assert [float(r[0].scores[0]) for r in results] == [0, 1, 2]
        assert all(r[1] >= 190 for r in results)  # detect's own milliseconds
        with pytest.raises(RuntimeError, match="cannot detect frame 7"):
            pool.detect(image(7))
        assert float(pool.detect(image(9)).scores[0]) == 9  # the session is free again
    finally:
        pool.close()


class ListSource(FrameSource):
    """A recording of ``n`` tiny frames whose first pixel is their index."""

    def __init__(self, n: int) -> None:
        self.frames = [SourceFrame(i, datetime(2026, 1, 1, tzinfo=UTC), image(i))
                       for i in range(n)]
        self._ended = False

    def read(self, timeout: float = 1.0) -> SourceFrame | None:
        if not self.frames:
            self._ended = True
            return None
        return self.frames.pop(0)

    @property
    def ended(self) -> bool:
        return self._ended

    def close(self) -> None:
        self.frames.clear()


class AlternatingDetector(SlowDetector):
    """Even frames take 50 ms, odd ones none: two sessions finish them out of order."""

    def detect(self, image: np.ndarray) -> Detections:
        self.delay = 0.05 if int(image[0, 0, 0]) % 2 == 0 else 0.0
        return super().detect(image)


def test_detect_ahead_gives_frames_in_order_when_sessions_finish_out_of_order() -> None:
    finished: list[int] = []

    class Noting(AlternatingDetector):
        def detect(self, image: np.ndarray) -> Detections:
            found = super().detect(image)
            finished.append(int(image[0, 0, 0]))
            return found

    pool = DetectorPool(lambda: Noting(0.0), 2)
    ahead = DetectAhead(ListSource(20), pool, depth=4)
    try:
        order = []
        while (got := ahead.read(timeout=1)) is not None:
            sf, found, _ = got
            assert found is not None and float(found.scores[0]) == sf.index
            order.append(sf.index)
        assert order == list(range(20)) and ahead.source.ended
        assert finished != sorted(finished)  # the pool did finish them out of order
    finally:
        pool.close()


def test_detect_ahead_on_a_real_recording_matches_the_detector(x86_config: Path) -> None:
    cfg = load_config(x86_config)
    src = cfg.sources[0]
    detector = create_detector(cfg, src, threads=1)
    pool = DetectorPool(lambda: create_detector(cfg, src, threads=1), 2)
    source = open_source(cfg, src)
    ahead = DetectAhead(source, pool, depth=4)
    try:
        for index in range(12):
            got = ahead.read(timeout=5)
            assert got is not None
            sf, found, ms = got
            assert sf.index == index and found is not None and ms > 0
            np.testing.assert_array_equal(found.boxes, detector.detect(sf.image).boxes)
        assert len(ahead.pending) == 3  # filled to 4, then the oldest given
        ahead.cancel()
        assert not ahead.pending
    finally:
        source.close()
        pool.close()
        detector.close()


def test_a_pool_whose_session_cannot_start_closes_the_ones_made() -> None:
    made: list[SlowDetector] = []
    closed: list[SlowDetector] = []

    class Closing(SlowDetector):
        def close(self) -> None:
            closed.append(self)

    def make() -> SlowDetector:
        if len(made) == 2:
            raise RuntimeError("no third session")
        made.append(Closing(0.0))
        return made[-1]

    with pytest.raises(RuntimeError, match="no third session"):
        DetectorPool(make, 3)
    assert closed == made and len(made) == 2
