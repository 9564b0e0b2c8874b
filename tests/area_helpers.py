"""The supervisor's area path in a test: cameras' frame summaries -> the area aggregation ->
the area's sinks (processor.areas, processor.supervisor.publish)."""

from __future__ import annotations

from datetime import datetime

from libs.config.models import AreaConfig, LookoutConfig
from libs.loggers import AreaLogger
from libs.records import FrameSummary, Record, RecordIds
from processor.areas import AreaAggregator


class AreaFeed:
    """Feeds ``sinks`` as the supervisor does, from per-camera occupancy updates."""

    def __init__(self, config: LookoutConfig, area: AreaConfig, *sinks: AreaLogger) -> None:
        self.aggregator = AreaAggregator(area, config)
        self.sinks = sinks
        self.ids = RecordIds()
        self.records: list[Record] = []  # every area record made

    def update(self, camera_id: str, timestamp: datetime, occupancy: int) -> None:
        summary = FrameSummary(
            id=self.ids(), source="camera", source_id=camera_id, timestamp=timestamp, frame=0,
            detected_objects=occupancy, violating_objects=0, violating_pairs=0,
            occupancy=occupancy, occupancy_threshold=0, environment_score=1.0)
        made = self.aggregator.take([summary])
        self.records += made
        for sink in self.sinks:
            sink.take(made)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
