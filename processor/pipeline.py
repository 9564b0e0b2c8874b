"""One camera's chain of stages: detector, filters, tracker, analytics, loggers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from libs.clock import FINAL_ROW_OFFSET, IntervalGate, aware
from libs.config.models import DetectorConfig, LookoutConfig, SourceConfig
from libs.config.video_source import is_redis_url
from libs.detectors import Detector, create_detector, detector_config_for
from libs.frame import Detections, Frame
from libs.loggers import SOURCE_LOGGERS, SourceLogger
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.records import RecordIds
from libs.storage import sample_interval
from libs.trackers import TRACKERS, Tracker
from processor.summary import summary_records

log = logging.getLogger(__name__)


class SourceDetections(Detector):
    """The detector of a camera whose source brings the people (Redis detection messages):
    its frames go through :meth:`CameraPipeline.process_detections`; none is detected."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config, Path())

    def detect(self, image: np.ndarray) -> Detections:
        return Detections()


def finish_stream(camera_id: str, last_timestamp: datetime,
                  stages: Sequence[tuple[str, PostProcessor]],
                  loggers: Sequence[tuple[str, SourceLogger]],
                  ids: RecordIds | None = None) -> Frame:
    """The end of a camera's stream: every stage emits its end-of-stream records (the last
    samples, the events of what is still open) on one frame stamped just after the last one
    (a sample-clock tick of its own), and every logger takes that frame.  Returns it."""
    end = Frame(camera_id, -1, last_timestamp + FINAL_ROW_OFFSET, np.zeros((1, 1, 3), np.uint8),
                sample_due=True, ids=ids if ids is not None else RecordIds())
    for name, stage in stages:
        try:
            stage.finish(end)
        except Exception:
            log.exception("finishing stage %s of camera %s failed", name, camera_id)
    for name, logger in loggers:
        try:
            logger.finish(end)
        except Exception:
            log.exception("logger %s of camera %s: end of stream failed", name, camera_id)
    return end


class CameraPipeline:
    """Runs every enabled stage of one camera over a :class:`Frame`, timing each.

    Lifecycle: :meth:`process` per frame; :meth:`finish` at the end of the stream, which
    gives every stage an end-of-stream frame to put what is still open on (the last samples,
    the sessions of people still in view) and hands it to every logger; :meth:`close`.

    The pipeline owns the one sample clock (``TimeInterval`` of the camera's file logger,
    on the epoch-aligned grid of :class:`IntervalGate`): it sets ``frame.sample_due`` before
    the stages run, and stages emit their samples on those frames only.  It also owns the
    run's record ids (``ids``; the worker makes them resumable for a recording).  After the
    stages it emits the frame summary and, on a tick, the ``objects_log`` sample; then every
    logger gets the frame.  A replayed frame (warm-up of a resumed run) goes through every
    stage and clock but its records are dropped: they were delivered by the run before.
    """

    def __init__(
        self,
        config: LookoutConfig,
        source: SourceConfig,
        detector: Detector | None = None,
        with_loggers: bool = True,
    ) -> None:
        self.config = config
        self.source = source
        # A camera reading detection messages (Redis) has no pixels: no detector, and the
        # stages and loggers that need an image are left out.
        self.imageless = is_redis_url(source.video_path)
        self._own_detector = detector is None
        if detector is None and self.imageless:
            detector = SourceDetections(detector_config_for(config, source))
        self.detector = detector if detector is not None else create_detector(config, source)
        tracker_cls = TRACKERS.get(config.tracker.name)
        self.tracker: Tracker = tracker_cls(config.tracker)
        self.before: list[tuple[str, PostProcessor]] = []
        self.after: list[tuple[str, PostProcessor]] = []
        for pp_cfg in config.source_post_processors:
            if not pp_cfg.enabled:
                continue
            cls = POST_PROCESSORS.get(pp_cfg.name)
            if self.imageless and cls.needs_image:
                log.info("camera %s: stage %s needs images; its frames have none (not run)",
                         source.id, pp_cfg.name)
                continue
            stage = cls(pp_cfg, source, config)
            (self.before if cls.phase == "before_tracker" else self.after).append(
                (pp_cfg.name, stage)
            )
        self.last_timestamp: datetime | None = None  # of the last frame processed
        self.tz = config.app.tzinfo
        self.clock = IntervalGate(sample_interval(config))
        self.ids = RecordIds()
        self.finished = False
        self.loggers: list[tuple[str, SourceLogger]] = []
        if with_loggers:
            for lg_cfg in config.source_loggers:
                lg_cls = SOURCE_LOGGERS.get(lg_cfg.name)
                if self.imageless and getattr(lg_cls, "needs_image", False):
                    continue  # the preview of a camera without images
                if lg_cfg.enabled and not lg_cls.on_bus:  # bus sinks run in the supervisor
                    self.loggers.append((lg_cfg.name, lg_cls(lg_cfg, source, config)))

    @staticmethod
    def _timed(frame: Frame, name: str, fn: Callable[[Frame], Frame]) -> Frame:
        t0 = time.perf_counter()
        out = fn(frame)
        out.timings[name] = (time.perf_counter() - t0) * 1000.0
        return out

    def process(self, frame: Frame) -> Frame:
        """Detect people in ``frame.image`` (unless the frame brought them: ``tracked``),
        then run every other stage."""
        if not frame.tracked:
            t0 = time.perf_counter()
            frame.detections = self.detector.detect(frame.image)
            frame.timings["detector"] = (time.perf_counter() - t0) * 1000.0
        return self.process_detections(frame)

    def process_detections(self, frame: Frame) -> Frame:
        """Every stage after the detector, on detections already in the frame."""
        self.last_timestamp = frame.timestamp
        frame.ids = self.ids
        frame.sample_due = self.clock.due(aware(frame.timestamp, self.tz))
        if not frame.tracked:  # people from a source come with their identities
            for name, stage in self.before:
                frame = self._timed(frame, name, stage.process)
        # Everyone the detector saw, confirmed by the tracker or not: the anonymizer blurs
        # these heads too, so nobody shows unblurred in the first frames of their track.
        frame.metrics["raw_detections"] = frame.detections
        if not frame.tracked:
            frame = self._timed(frame, "tracker", self.tracker.update)
        for name, stage in self.after:
            frame = self._timed(frame, name, stage.process)
        summary_records(frame)
        if frame.replay:
            frame.records.clear()
        t1 = time.perf_counter()
        for _, logger in self.loggers:
            logger.log(frame)
        frame.timings["loggers"] = (time.perf_counter() - t1) * 1000.0
        return frame

    def snapshot(self) -> dict[str, Any]:
        """What the tracker and the stages know after the last frame processed (live
        objects: serialise them before the next frame), for :meth:`restore` after a restart."""
        return {
            "tracker": (self.config.tracker.name, self.tracker.snapshot()),
            "stages": [(name, stage.snapshot()) for name, stage in self.before + self.after],
        }

    def restore(self, state: dict[str, Any]) -> bool:
        """Put back a :meth:`snapshot` taken by a pipeline of the same tracker and stages.
        False, and nothing changed, when it was taken with other ones: the configuration
        changed between the runs, or an upgrade changed what a stage keeps (its ``STATE``)."""
        stages = [("tracker", self.tracker), *self.before, *self.after]
        tracker_name, tracker_state = state["tracker"]
        saved = [("tracker", tracker_state), *state["stages"]]
        if tracker_name != self.config.tracker.name or \
                [n for n, _ in saved] != [n for n, _ in stages] or \
                any(set(s) != set(stage.STATE)
                    for (_, stage), (_, s) in zip(stages, saved, strict=True)):
            return False
        for (_, stage), (_, stage_state) in zip(stages, saved, strict=True):
            stage.restore(stage_state)
        return True

    def finish(self) -> Frame | None:
        """End of the stream (see :func:`finish_stream`), once; None when no frame was
        processed."""
        if self.finished or self.last_timestamp is None:
            return None
        self.finished = True
        return finish_stream(self.source.id, self.last_timestamp,
                             self.before + self.after, self.loggers, self.ids)

    def checkpoint(self, done: Callable[[dict[str, int]], None], stages: bool = True) -> None:
        """Call ``done(sizes)`` once every logger has written what it was given so far, and
        every stage with files of its own (the heatmap's hour grids) has written what it took
        from the frames so far (on a writer thread, or here when nothing keeps durable
        records).  A stage that cannot vouch for its files yet never calls back: this
        checkpoint is not taken, and the resume point stays at the one before.  ``stages``
        False leaves the stages out (a live stream: its frames are never run again)."""
        takers: list[SourceLogger | PostProcessor] = [lg for _, lg in self.loggers]
        if stages:
            takers += [st for _, st in self.before + self.after]
        sizes: dict[str, int] = {}
        lock = threading.Lock()
        waiting = [len(takers) + 1]  # +1: this call's own share, so done runs once, last

        def part(s: dict[str, int]) -> None:
            with lock:
                sizes.update(s)
                waiting[0] -= 1
                last = waiting[0] == 0
            if last:
                done(sizes)

        for lg in takers:
            if not lg.checkpoint(part):
                part({})
        part({})

    def checkpoint_now(self, done: Callable[[dict[str, int]], None],
                       timeout: float = 30.0, stages: bool = True) -> bool:
        """:meth:`checkpoint`, waiting until ``done`` has run; False on time-out."""
        finished = threading.Event()

        def run(sizes: dict[str, int]) -> None:
            try:
                done(sizes)
            finally:
                finished.set()

        self.checkpoint(run, stages)
        return finished.wait(timeout)

    def close(self) -> None:
        """:meth:`finish` (when not done yet), then close every logger and stage."""
        self.finish()
        for name, logger in self.loggers:
            try:
                logger.close()
            except Exception:
                log.exception("closing logger %s of camera %s failed", name, self.source.id)
        for _, stage in self.before + self.after:
            stage.close()
        if self._own_detector:
            self.detector.close()
