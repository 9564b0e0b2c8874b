"""Names of Smart Social Distancing (the reference system) that Lookout answers to.

One table: a reference metric name and the Lookout metric it means.  The metrics sub-API
serves every Lookout route of a metric under its reference names too
(``/metrics/cameras/face-mask-detections/daily`` is ``/metrics/cameras/facemask/daily``), and
``PUT /export`` reads the reference's ``data_types`` through it.  docs/ssd-api.md lists them.
"""

from __future__ import annotations

METRIC_ALIASES: dict[str, str] = {
    "face-mask-detections": "facemask",  # the reference's metric path
    "facemask-usage": "facemask",  # the reference's export data type
    "in-out": "line-crossings",  # path and export data type
    "dwell-time": "dwell",  # path and export data type
}


def aliases_of(name: str) -> list[str]:
    """The reference names of the Lookout metric ``name``."""
    return [alias for alias, target in METRIC_ALIASES.items() if target == name]
