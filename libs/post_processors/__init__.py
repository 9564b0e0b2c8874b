"""Per-camera post-processing steps, registered by ``[SourcePostProcessor_N] Name``.

A step runs either before the tracker (filtering raw detections) or after it (analytics on
tracked people); ``phase`` says which.  Steps run in the order of their sections.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Literal

from libs.config.models import PluginConfig
from libs.frame import Frame
from libs.registry import Registry
from libs.state import Stateful

if TYPE_CHECKING:
    from collections.abc import Callable

    from libs.config.models import LookoutConfig, SourceConfig

POST_PROCESSORS: Registry[type[PostProcessor]] = Registry("post-processor", __name__)


class PostProcessor(Stateful, ABC):
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    phase: ClassVar[Literal["before_tracker", "after_tracker"]] = "after_tracker"
    # Reads the pixels (faces, head pose...): not run for a camera whose frames have none
    # (a Redis source of detection messages).
    needs_image: ClassVar[bool] = False
    # STATE (libs.state.Stateful): the attributes that change from frame to frame, kept in
    # the resume checkpoint.  A stage that keeps any must name them all.

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        self.config = config
        self.source = source
        self.app = app

    @abstractmethod
    def process(self, frame: Frame) -> Frame:
        """Read and extend the frame record."""

    def finish(self, end: Frame) -> None:
        """End of the stream: put the records of what is still open (the last samples, the
        events of people still in view) on ``end``, the pipeline's end-of-stream frame.
        They reach every logger like the records of any other frame."""

    def checkpoint(self, done: Callable[[dict[str, int]], None]) -> bool:
        """A resume checkpoint is being taken after the last frame processed: a stage that
        writes files of its own (not through the loggers) calls ``done({})`` once what it
        took from those frames is on disk, and returns True; one that keeps nothing on
        disk returns False (see :meth:`processor.pipeline.CameraPipeline.checkpoint`)."""
        return False

    def close(self) -> None:
        """Release resources at the end of the camera's run (after :meth:`finish`)."""
