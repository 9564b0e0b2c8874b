"""The pipeline's lifecycle: ``process`` per frame, ``finish`` at the end of the stream,
``close``.  What the analytics still hold at the end (dwell sessions, audience and engagement
tracks of people in view) reaches every sink through ``finish``, like any other record; no
stage writes a file of its own."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from libs.config import load_config
from libs.config.models import LookoutConfig, PluginConfig, SourceConfig
from libs.frame import Frame
from libs.loggers import SourceLogger
from libs.records import (
    AudienceSample,
    AudienceSession,
    DwellSample,
    DwellSession,
    EngagementSample,
    EngagementSession,
    Record,
)
from processor.pipeline import CameraPipeline
from processor.sources import open_source
from tests.conftest import REPO

FRAMES = 120  # about 17 s of the PETS clip: people are still in view at its end


class RecordingSink(SourceLogger):
    """A sink that keeps the records it is given (through the base class's ``log`` and
    ``finish``, which hand a frame's records to :meth:`take`)."""

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        super().__init__(config, source, app)
        self.logged: list[Frame] = []
        self.finished: list[Frame] = []
        self.taken: list[Record] = []
        self.at_end: list[Record] = []
        self.closed = False

    def take(self, records: Sequence[Record]) -> None:
        self.taken.extend(records)

    def log(self, frame: Frame) -> None:
        self.logged.append(frame)
        super().log(frame)

    def finish(self, end: Frame) -> None:
        self.finished.append(end)
        before = len(self.taken)
        super().finish(end)
        self.at_end = self.taken[before:]

    def close(self) -> None:
        self.closed = True


def count(records: Sequence[Record]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r.kind] = out.get(r.kind, 0) + 1
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
    assert sink.at_end == end.records  # the end frame's records, taken like any others
    final = count(sink.at_end)
    # every person still in view ends a dwell session, an audience and an engagement track,
    # typed records all
    for cls in (DwellSession, AudienceSession, EngagementSession):
        assert any(isinstance(r, cls) for r in sink.at_end), final
    for cls in (DwellSample, AudienceSample, EngagementSample):
        assert sum(isinstance(r, cls) for r in sink.at_end) == 1, final
    assert all(r.source == "camera" and r.source_id == source.id for r in sink.at_end)
    # ...no record reached the sink twice (the end frame adds, never repeats)...
    assert len({r.id for r in sink.taken}) == len(sink.taken)
    during = [(r.kind, r.track_id) for r in sink.taken[:-len(sink.at_end)]
              if isinstance(r, AudienceSession | EngagementSession)]
    at_end = [(r.kind, r.track_id) for r in sink.at_end
              if isinstance(r, AudienceSession | EngagementSession)]
    assert at_end and not set(during) & set(at_end)
    # ...and samples came on the sample clock's ticks only
    ticks = {f.index for f in sink.logged if f.sample_due}
    assert ticks and ticks != {f.index for f in sink.logged}
    for f in sink.logged:
        has = {r.kind for r in f.records if r.CATEGORY == "sample"}
        if f.index in ticks:
            assert {"objects_log", "dwell_log", "audience_log", "engagement_log"} <= has
        else:
            assert has == set(), f.index
    assert pipeline.finish() is None  # once


def test_no_stage_imports_a_logger() -> None:
    """Stages produce records; sinks write them: no module under libs/post_processors imports
    ``libs.loggers`` (the heatmap's grid store lives in libs/metrics/heatmap.py)."""
    importers = set()
    for path in sorted((REPO / "libs" / "post_processors").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("libs.loggers"):
                importers.add(path.name)
            if isinstance(node, ast.Import) and any(a.name.startswith("libs.loggers")
                                                    for a in node.names):
                importers.add(path.name)
        assert "libs.loggers" not in path.read_text().replace("``libs.loggers``", ""), path.name
    assert importers == set(), importers
