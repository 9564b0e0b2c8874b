"""Reports (hourly, daily, weekly, live) recomputed from the loggers' raw logs.

See :mod:`libs.metrics.reports` for the file layout and the columns.
"""

from libs.metrics.reports import (
    AREA_OCCUPANCY,
    AREA_REPORTS,
    CAMERA_OCCUPANCY,
    SOCIAL_DISTANCING,
    SOURCE_REPORTS,
    EntityResult,
    ReportKind,
    area_dir,
    camera_dir,
    configured_live_interval,
    hourly_path,
    read_report,
    recompute_all,
    reports_dir,
    update_entity_reports,
)

__all__ = [
    "AREA_OCCUPANCY",
    "AREA_REPORTS",
    "CAMERA_OCCUPANCY",
    "SOCIAL_DISTANCING",
    "SOURCE_REPORTS",
    "EntityResult",
    "ReportKind",
    "area_dir",
    "camera_dir",
    "configured_live_interval",
    "hourly_path",
    "read_report",
    "recompute_all",
    "reports_dir",
    "update_entity_reports",
]
