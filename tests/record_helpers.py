"""What the pipeline does between its stages and its loggers, for tests that feed loggers
hand-made frames: the sample clock's tick and the records it makes from the frame."""

from __future__ import annotations

from libs.clock import IntervalGate
from libs.frame import Frame
from processor.summary import summary_records


def as_pipeline_would(frame: Frame, clock: IntervalGate) -> Frame:
    """``frame`` with ``sample_due`` from ``clock`` and the pipeline's own records (frame
    summary, ``objects_log`` sample on a tick) after those the stages left on it."""
    frame.sample_due = clock.due(frame.timestamp)
    summary_records(frame)
    return frame
