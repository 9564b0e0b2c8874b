"""The data sub-APIs: ``/metrics`` (reports, line crossings, heatmaps) and ``/export``.

``create_app`` calls :func:`include_routers` so these routes are served; every one of them
needs the viewer role (or admin).
"""

from __future__ import annotations

from fastapi import FastAPI

from api.routers import export, metrics


def include_routers(app: FastAPI) -> None:
    """Add the metrics and export routes to ``app``."""
    app.include_router(metrics.router)
    app.include_router(export.router)
