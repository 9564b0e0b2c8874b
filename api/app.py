"""The FastAPI application: the only HTTP surface of Lookout.

Handlers never block the event loop: file work runs in threads (``ctx.in_thread``) and
process work goes to the supervisor's command channel (``ctx.on_supervisor``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from api.context import ApiContext
from api.routers import auth, process
from api.routers.audience import include_routers as include_audience_routers
from api.routers.data import include_routers as include_data_routers
from api.routers.entities import include_routers as include_entity_routers
from libs.config import ConfigError

if TYPE_CHECKING:
    from processor.supervisor import Supervisor

log = logging.getLogger(__name__)
VERSION = "0.1.0"


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response


def config_error_body(exc: ConfigError) -> dict[str, object]:
    return {
        "detail": [
            {"section": p.section, "key": p.key, "msg": p.message, "expected": p.expected}
            for p in exc.problems
        ]
    }


def create_app(config_path: str | Path, supervisor: Supervisor | None = None) -> FastAPI:
    ctx = ApiContext(Path(config_path), supervisor)
    app = FastAPI(
        title="Lookout",
        version=VERSION,
        description="Edge video analytics for people: configuration, cameras, areas, "
        "metrics and process control. Authenticate at /auth/token (OAuth2 password flow) "
        "and send the token as `Authorization: Bearer <token>`.",
    )
    app.state.context = ctx
    origins = ctx.config().api.cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(ConfigError)
    async def _config_error(_: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse(status_code=422, content=config_error_body(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    app.include_router(auth.router)
    app.include_router(process.router)
    include_data_routers(app)
    include_entity_routers(app)
    include_audience_routers(app)
    return app
