"""Synthetic tracks for the engagement, audience and demographics tests.

A *scene* is a list of frames 0.1 s apart (10 fps) starting at a whole second of UTC (the raw
log slots are aligned to the Unix epoch); each person is a box 100 px high whose foot point is
given per frame.  Nothing here is a test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from libs.clock import FINAL_ROW_OFFSET, IntervalGate
from libs.config import LookoutConfig, load_config
from libs.frame import Detections, Frame
from libs.loggers import SourceLogger
from libs.loggers.file_system_logger import csv_cells
from libs.post_processors import PostProcessor
from libs.records import Record
from libs.storage import sample_interval
from processor.summary import summary_records
from tests.conftest import REPO, core_config_text

START = datetime(2024, 5, 6, 10, 0, 0, tzinfo=UTC)
STEP = timedelta(milliseconds=100)
HEIGHT = 100.0
IMAGE = np.zeros((480, 640, 3), np.uint8)


def write_config(folder: Path, shared: Path, extra: str = "") -> Path:
    """config-x86.ini in ``folder`` (data under ``folder/data``), ``extra`` appended."""
    text = core_config_text((REPO / "config-x86.ini").read_text())
    text = text.replace("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}")
    text = text.replace("DataDirectory = data", f"DataDirectory = {folder / 'data'}")
    path = folder / "config.ini"
    path.write_text(text + extra)
    return path


def config_in(folder: Path, shared: Path, extra: str = "") -> LookoutConfig:
    return load_config(write_config(folder, shared, extra), check_files=False)


@dataclass
class Person:
    """One track: foot points per frame index (absent frames: not in view)."""

    track_id: int
    feet: dict[int, tuple[float, float]]
    attributes: dict[str, dict[int, Any]] = field(default_factory=dict)


def standing(track_id: int, frames: Iterable[int], x: float = 300.0, y: float = 400.0) -> Person:
    return Person(track_id, {k: (x, y) for k in frames})


def walking(track_id: int, frames: Sequence[int], x0: float = 50.0, y: float = 400.0,
            speed: float = 100.0) -> Person:
    """Walks right at ``speed`` px/s (1 box height per second at the default)."""
    first = frames[0]
    return Person(track_id, {k: (x0 + speed * (k - first) * 0.1, y) for k in frames})


def frame_at(index: int, people: Sequence[Person], start: datetime = START,
             camera: str = "pets-view1") -> Frame:
    present = [p for p in people if index in p.feet]
    boxes = [
        [p.feet[index][0] - 20.0, p.feet[index][1] - HEIGHT, p.feet[index][0] + 20.0,
         p.feet[index][1]]
        for p in present
    ]
    keys = sorted({key for p in present for key in p.attributes})
    attributes: dict[str, np.ndarray] = {}
    for key in keys:
        values = [p.attributes.get(key, {}).get(index) for p in present]
        sample = next(v for v in values if v is not None)
        if isinstance(sample, (bool, np.bool_)):
            attributes[key] = np.array([bool(v) for v in values], bool)
        elif isinstance(sample, (int, np.integer)):
            attributes[key] = np.array([-1 if v is None else v for v in values], np.int8)
        else:
            attributes[key] = np.array(
                [np.nan if v is None else v for v in values], np.float32
            ).reshape(len(present), *np.shape(sample))
    det = Detections(
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        scores=np.full(len(present), 0.9, np.float32),
        track_ids=np.array([p.track_id for p in present], np.int64),
        attributes=attributes,
    )
    return Frame(camera, index, start + index * STEP, IMAGE, det)


@dataclass
class Run:
    """What a stage published over a scene: the frames, and its samples and events as the
    file logger writes them (``{column: cell}``; events also carry ``kind``, ``timestamp``
    and ``record``)."""

    frames: list[Frame]
    samples: dict[str, list[dict[str, Any]]]
    events: list[dict[str, Any]]
    end: Frame | None = None

    def total(self, folder: str, column: str) -> int:
        return sum(row[column] for row in self.samples.get(folder, []))

    def records(self) -> list[Record]:
        """Every record of the scene, the end frame's included."""
        frames = self.frames + ([self.end] if self.end is not None else [])
        return [r for f in frames for r in f.records]


def collect(records: Iterable[Record], samples: dict[str, list[dict[str, Any]]],
            events: list[dict[str, Any]]) -> None:
    """Sort ``records`` into ``samples`` and ``events`` (frame summaries and the engagement
    stage's live ``engagement_update`` figures, which no file holds, left out: read them from
    :meth:`Run.records`)."""
    for rec in records:
        if rec.CATEGORY == "summary" or rec.kind == "engagement_update":
            continue
        cells = csv_cells(rec, UTC)
        del cells["Timestamp"]
        if rec.CATEGORY == "sample":
            samples.setdefault(rec.kind, []).append(cells)
        else:
            events.append({"kind": rec.kind, "timestamp": rec.timestamp, "record": rec,
                           **cells})


def run_scene(stage: PostProcessor, people: Sequence[Person], frames: Iterable[int],
              finish: bool = True, start: datetime = START,
              logger: SourceLogger | None = None) -> Run:
    """Feed the frames to ``stage`` as the pipeline does (its sample clock ticks, the frame
    records; then ``logger``, when given); collect samples and events (``finish()`` on an
    end-of-stream frame at the end)."""
    out: list[Frame] = []
    samples: dict[str, list[dict[str, Any]]] = {}
    events: list[dict[str, Any]] = []
    clock = IntervalGate(sample_interval(stage.app))
    for index in frames:
        frame = frame_at(index, people, start)
        frame.sample_due = clock.due(frame.timestamp)
        frame = stage.process(frame)
        summary_records(frame)
        if logger is not None:
            logger.log(frame)
        collect(frame.records, samples, events)
        out.append(frame)
    end = None
    if finish and out:
        last = out[-1]
        end = Frame(last.camera_id, -1, last.timestamp + FINAL_ROW_OFFSET, IMAGE,
                    sample_due=True)
        stage.finish(end)
        collect(end.records, samples, events)
    return Run(out, samples, events, end)


def file_logger(config: LookoutConfig) -> SourceLogger:
    """The camera's real ``file_system_logger`` (the first camera of ``config``)."""
    from libs.loggers.file_system_logger import SourceFileSystemLogger

    section = next(s for s in config.source_loggers if s.name == "file_system_logger")
    return SourceFileSystemLogger(section, config.sources[0], config)
