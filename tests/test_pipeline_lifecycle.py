"""The pipeline's lifecycle: ``process`` per frame, ``finish`` at the end of the stream,
``close``.  What the analytics still hold at the end (dwell sessions, audience and engagement
tracks of people in view) reaches every sink through ``finish``, like any other record; no
stage writes a file of its own."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path
from typing import Any

from libs.config import load_config
from libs.config.models import LookoutConfig, PluginConfig, SourceConfig
from libs.frame import Frame
from libs.loggers import SourceLogger
from processor.pipeline import CameraPipeline
from processor.sources import open_source
from tests.conftest import REPO

FRAMES = 120  # about 17 s of the PETS clip: people are still in view at its end


class RecordingSink(SourceLogger):
    """A sink that keeps what it is given."""

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        super().__init__(config, source, app)
        self.logged: list[Frame] = []
        self.finished: list[Frame] = []
        self.closed = False

    def log(self, frame: Frame) -> None:
        self.logged.append(frame)

    def finish(self, end: Frame) -> None:
        self.finished.append(end)

    def close(self) -> None:
        self.closed = True


def kinds(events: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        out[e["kind"]] = out.get(e["kind"], 0) + 1
    return out


def test_records_open_at_the_end_reach_every_sink_through_finish(shipped_config: Path) -> None:
    config = load_config(shipped_config)
    source = config.sources[0]
    pipeline = CameraPipeline(config, source)
    names = [n for n, _ in pipeline.after]
    assert {"dwell", "audience", "engagement"} <= set(names)
    sink = RecordingSink(PluginConfig.model_validate({"Name": "recording"}), source, config)
    pipeline.loggers.append(("recording", sink))
    src = open_source(config, source)
    last = None
    try:
        while len(sink.logged) < FRAMES and (sf := src.read()) is not None:
            frame = pipeline.process(Frame(source.id, sf.index, sf.timestamp, sf.image))
            frame.image = None  # type: ignore[assignment]
            last = frame
    finally:
        src.close()
    assert last is not None and len(last.detections) > 0  # people in view at the end
    end = pipeline.finish()
    pipeline.close()
    assert sink.closed and len(sink.finished) == 1 and sink.finished[0] is end
    assert end is not None and end.index == -1
    assert end.timestamp == last.timestamp + timedelta(milliseconds=1)
    final = kinds(end.metrics.get("events", []))
    # every person still in view ends a dwell session, an audience and an engagement track
    for kind in ("dwell", "audience", "engagement"):
        assert final.get(kind, 0) >= 1, final
    assert {"dwell_log", "audience_log", "engagement_log"} <= set(end.metrics["samples"])
    # ...and no event reached the sink twice (the end frame adds, never repeats)
    during = [(e["kind"], e.get("TrackId"), e.get("Zone")) for f in sink.logged
              for e in f.metrics.get("events", []) if e["kind"] in ("audience", "engagement")]
    at_end = [(e["kind"], e.get("TrackId"), e.get("Zone")) for e in end.metrics["events"]
              if e["kind"] in ("audience", "engagement")]
    assert not set(during) & set(at_end)
    assert pipeline.finish() is None  # once


def test_no_stage_writes_files_or_imports_a_logger_for_its_records() -> None:
    """Stages produce records; sinks write them.  The heatmap's hourly grids are the one
    stage-owned store left (``libs/post_processors/heatmap.py``)."""
    importers = set()
    for path in sorted((REPO / "libs" / "post_processors").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("libs.loggers"):
                importers.add(path.name)
            if isinstance(node, ast.Import) and any(a.name.startswith("libs.loggers")
                                                    for a in node.names):
                importers.add(path.name)
    assert importers <= {"heatmap.py"}, importers
