"""Loggers of cameras (``[SourceLogger_N]``) and areas (``[AreaLogger_N]``).

Loggers must never block the frame loop: file and network work goes to a background
thread (see :class:`libs.loggers.writer.BackgroundWriter`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from libs.config.models import PluginConfig
from libs.frame import Frame
from libs.registry import Registry

if TYPE_CHECKING:
    from libs.config.models import AreaConfig, LookoutConfig, SourceConfig

SOURCE_LOGGERS: Registry[type[SourceLogger]] = Registry("source logger", __name__)
AREA_LOGGERS: Registry[type[AreaLogger]] = Registry("area logger", __name__)


class SourceLogger(ABC):
    Config: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        self.config = config
        self.source = source
        self.app = app

    @abstractmethod
    def log(self, frame: Frame) -> None:
        """Record what the frame says; return at once."""

    def finish(self, end: Frame) -> None:  # noqa: B027 - optional hook
        """Record the end-of-stream frame: every sample and event on it, whatever the
        logger's own interval (called once, after the last :meth:`log`, before close)."""

    def checkpoint(self, done: Callable[[dict[str, int]], None]) -> bool:
        """Call ``done(sizes)`` once everything logged so far is written, with the size of
        each file this logger has written to (the resume point of a restart; see
        :mod:`processor.resume`).  Loggers whose output a restart cannot double (previews)
        return False and never call ``done``."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush everything; called once when the camera stops (also on SIGTERM)."""


class AreaLogger(ABC):
    Config: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, config: PluginConfig, area: AreaConfig, app: LookoutConfig) -> None:
        self.config = config
        self.area = area
        self.app = app

    @abstractmethod
    def update(self, camera_id: str, timestamp: datetime, occupancy: int) -> None:
        """A member camera's people count at ``timestamp``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush everything."""
