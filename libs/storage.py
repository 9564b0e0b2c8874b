"""Where Lookout keeps what it records, and the form of its CSV lines.

The layout of the data directory is one fact used by the file sink that writes it, by the
reports and the API that read it, and by the resume checkpoints that cut it back: it lives
here, not in any one of them.

    <source log root>/<camera>/objects_log/<date>.csv      the camera's raw log
    <source log root>/<camera>/line_crossings/<date>.csv   one row per crossing
    <source log root>/<camera>/events/<kind>/<date>.csv    analytics' events
    <source log root>/<camera>/<samples folder>/<date>.csv analytics' periodic samples
    <area log root>/<area>/occupancy_log/<date>.csv        an area's occupancy
    <screenshots root>/<camera>/*.jpg

The roots come from the file system logger's sections (``LogDirectory``,
``ScreenshotsDirectory``) when it is enabled, else from the defaults below.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, PluginConfig

FILE_SYSTEM_LOGGER = "file_system_logger"  # the section Name whose folders these are
DEFAULT_SOURCE_LOG_DIRECTORY = "processor/static/data/sources"
DEFAULT_AREA_LOG_DIRECTORY = "processor/static/data/areas"
DEFAULT_SCREENSHOTS_DIRECTORY = "processor/static/screenshots"
SOURCE_LOG_FOLDER = "objects_log"
AREA_LOG_FOLDER = "occupancy_log"
LINE_EVENTS_FOLDER = "line_crossings"
EVENTS_FOLDER = "events"
DEFAULT_TIME_INTERVAL = 0.5  # s between two raw-log rows of a camera (its TimeInterval)


def _logger_directory(sections: Iterable[PluginConfig], default: str) -> str:
    for section in sections:
        if section.name == FILE_SYSTEM_LOGGER and section.enabled:
            return str(getattr(section, "log_directory", default))
    return default


def source_log_root(config: LookoutConfig) -> Path:
    """Folder holding one sub-folder per camera (``<root>/<camera_id>/objects_log/...``)."""
    return config.data_path(_logger_directory(config.source_loggers, DEFAULT_SOURCE_LOG_DIRECTORY))


def area_log_root(config: LookoutConfig) -> Path:
    """Folder holding one sub-folder per area (``<root>/<area_id>/occupancy_log/...``)."""
    return config.data_path(_logger_directory(config.area_loggers, DEFAULT_AREA_LOG_DIRECTORY))


def sample_interval(config: LookoutConfig | None) -> float:
    """``TimeInterval`` of the camera's enabled ``file_system_logger`` (the default if none):
    the one sample clock the stages' periodic rows follow."""
    if config is not None:
        for section in config.source_loggers:
            if section.name == FILE_SYSTEM_LOGGER and section.enabled:
                value = getattr(section, "time_interval", None)
                if value is not None:
                    return float(value)
    return DEFAULT_TIME_INTERVAL


def screenshots_root(config: LookoutConfig) -> Path:
    """Folder holding one sub-folder of screenshots per camera."""
    for section in config.source_loggers:
        if section.name == FILE_SYSTEM_LOGGER and section.enabled:
            value = getattr(section, "screenshots_directory", DEFAULT_SCREENSHOTS_DIRECTORY)
            return config.data_path(str(value))
    return config.data_path(DEFAULT_SCREENSHOTS_DIRECTORY)


def csv_line(values: Sequence[object]) -> str:
    """One CSV record with the quoting the ``csv`` module applies, ending in ``\\n``."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def file_sizes(paths: Iterable[Path]) -> dict[str, int]:
    """Size of each of ``paths`` that exists, forced to disk first (a checkpoint's view of
    the logs, which must hold after a power cut too)."""
    out: dict[str, int] = {}
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
            out[str(p)] = os.fstat(fd).st_size
        finally:
            os.close(fd)
    return out
