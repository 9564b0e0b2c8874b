"""Sinks: what consumes the records the pipelines produce (see libs/records.py).

One base class, :class:`Sink` (``take`` records, ``checkpoint``, ``close``), and one registry
per section kind, keyed by the section's ``Name``:

- ``[SourceLogger_N]`` (:data:`SOURCE_LOGGERS`): a camera's sinks.  Those that write on the
  camera's own box and need its frames (``file_system_logger``, ``video_logger``) run in the
  camera's worker, fed each processed frame (:meth:`SourceLogger.log`, whose ``records`` are
  what they store).  Those marked :attr:`Sink.on_bus` (network sinks such as
  ``web_hook_logger``) run in the supervisor instead, fed from its event bus with the
  records of every camera: they never share a process with a frame loop.
- ``[AreaLogger_N]`` (:data:`AREA_LOGGERS`): an area's sinks, fed the area's records (the
  supervisor's area aggregation makes them from the cameras' frame summaries).
- ``[Output_N]`` (:data:`OUTPUTS`): processor-wide sinks on the event bus, fed every record
  of every camera and area.

Sinks must never block their caller: file and network work goes to a background thread (see
:class:`libs.loggers.writer.BackgroundWriter` and :mod:`libs.integrations.outbox`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from libs.config.models import PluginConfig
from libs.config.restarts import Restarts
from libs.frame import Frame
from libs.records import Record
from libs.registry import Registry

if TYPE_CHECKING:
    from libs.config.models import AreaConfig, LookoutConfig, SourceConfig

SOURCE_LOGGERS: Registry[type[SourceLogger]] = Registry("source logger", __name__)
AREA_LOGGERS: Registry[type[AreaLogger]] = Registry("area logger", __name__)
OUTPUTS: Registry[type[Sink]] = Registry("output", __name__)


class NoSendTest(Exception):
    """The sink has no way to send a test record (it writes files on this box)."""


class SendTestError(Exception):
    """A test record could not be delivered; the message says why (no credential in it)."""


class Sink(ABC):
    """Consumes records.  ``take`` must return at once (queue the work)."""

    Config: ClassVar[type[PluginConfig]] = PluginConfig
    # True: runs in the supervisor on the event bus, never in a camera's worker.
    on_bus: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # A bus sink never runs in a camera's pipeline: editing its section restarts none.
        if cls.on_bus and cls.Config is not PluginConfig:
            cls.Config.RESTARTS = Restarts.NO_CAMERA

    @abstractmethod
    def take(self, records: Sequence[Record]) -> None:
        """Deliver or store ``records`` (in order); return at once."""

    def checkpoint(self, done: Callable[[dict[str, int]], None]) -> bool:
        """Call ``done(sizes)`` once everything taken so far is written, with the size of
        each file this sink has written to (the resume point of a restart; see
        :mod:`processor.resume`).  Sinks whose output a restart cannot double (previews,
        network sinks whose receivers deduplicate by id) return False and never call
        ``done``."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush everything; called once when the pipeline stops (also on SIGTERM)."""

    @classmethod
    def send_test(cls, config: PluginConfig, app: LookoutConfig) -> str:
        """Send one test record to this section's destination now, apart from any running
        sink (it blocks: call it in a thread) and return what the destination answered;
        :class:`SendTestError` with the reason when it fails.  Sinks that only write files
        here have no test (:class:`NoSendTest`)."""
        raise NoSendTest(f"{config.name} has no test: it writes files on this box, it sends "
                         "nothing anywhere")


class SourceLogger(Sink):
    """A camera's sink (``[SourceLogger_N]``)."""

    def __init__(self, config: PluginConfig, source: SourceConfig,
                 app: LookoutConfig) -> None:
        self.config = config
        self.source = source  # None (typed away) for a bus sink, which serves every camera
        self.app = app

    def log(self, frame: Frame) -> None:
        """A processed frame: store its records (a sink that draws frames overrides this).
        A replayed frame (``frame.replay``, the warm-up of a resumed run) carries none."""
        if frame.records:
            self.take(frame.records)

    def finish(self, end: Frame) -> None:
        """The end-of-stream frame: its records (the last samples, the sessions still open)
        are taken like any other (called once, after the last :meth:`log`, before close)."""
        if end.records:
            self.take(end.records)


class AreaLogger(Sink):
    """An area's sink (``[AreaLogger_N]``), fed the area's records."""

    def __init__(self, config: PluginConfig, area: AreaConfig,
                 app: LookoutConfig) -> None:
        self.config = config
        self.area = area  # None (typed away) for a bus sink, which serves every area
        self.app = app

    def last_logged(self) -> datetime | None:
        """The time of the newest sample this sink holds durably (a file), None when it
        holds none: a restarted processor makes no area sample up to it again."""
        return None
