"""The FastAPI application: the only HTTP surface of Lookout.

Handlers never block the event loop: file work runs in threads (``ctx.in_thread``) and
process work goes to the supervisor's command channel (``ctx.on_supervisor``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import cookie_parser
from swagger_ui_bundle import swagger_ui_path

from api import dashboard
from api.auth import AuthError
from api.context import ApiContext
from api.deps import CSRF_HEADER, SESSION_COOKIE
from api.limits import ASGIApp, BodyLimit, Message, Receive, Scope, Send
from api.routers import auth, live, process, slack, ssd
from api.routers.audience import include_routers as include_audience_routers
from api.routers.data import include_routers as include_data_routers
from api.routers.entities import include_routers as include_entity_routers
from libs.config import ConfigError

if TYPE_CHECKING:
    from processor.supervisor import Supervisor

log = logging.getLogger(__name__)
VERSION = "0.1.0"


SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"))


class SecurityHeaders:
    """Add the security headers a response lacks (pure ASGI: no task or stream per request,
    unlike a BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def config_error_body(exc: ConfigError) -> dict[str, object]:
    return {
        "detail": [
            {"section": p.section, "key": p.key, "msg": p.message, "expected": p.expected}
            for p in exc.problems
        ]
    }


DOCS_ASSETS = "/docs/assets"


def signed_in(ctx: ApiContext) -> Callable[[Scope], bool]:
    """Whether a request may send a large body: authentication is off, or it carries a token
    (bearer header or session cookie) with a valid signature (whether the token is revoked,
    and the CSRF header, are checked later, as for any request)."""

    def valid(token: str) -> bool:
        try:
            ctx.tokens.verify(token.strip())
        except AuthError:
            return False
        return True

    def check(scope: Scope) -> bool:
        if not ctx.config().api.use_auth_token:
            return True
        cookie = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not token:
                    return False
                return valid(token)
            if name == b"cookie":
                cookie = value.decode("latin-1")
        session = cookie_parser(cookie).get(SESSION_COOKIE) if cookie else None
        return bool(session) and valid(session or "")

    return check


def add_local_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the files of the pinned ``swagger-ui-bundle`` package: no
    script from another site, and the page works offline."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = "/docs/oauth2-redirect"

    async def docs(_: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=redirect_url,
            swagger_ui_parameters={"validatorUrl": None},  # no badge from validator.swagger.io
        )

    async def redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route("/docs", docs, include_in_schema=False)
    app.add_route(redirect_url, redirect, include_in_schema=False)


def create_app(config_path: str | Path, supervisor: Supervisor | None = None,
               dashboard_dist: Path = dashboard.DIST) -> FastAPI:
    """The API (and the dashboard's files from ``dashboard_dist``, see :mod:`api.dashboard`)."""
    ctx = ApiContext(Path(config_path), supervisor)
    bus = getattr(supervisor, "bus", None)
    if bus is not None:  # the live stream gets every record of the supervisor's event bus
        bus.subscribe("live", ctx.live.publish)
    app = FastAPI(
        title="Lookout",
        version=VERSION,
        description="Edge video analytics for people: configuration, cameras, areas, "
        "metrics and process control. Authenticate at /auth/token (OAuth2 password flow) "
        "and send the token as `Authorization: Bearer <token>`; browsers sign in at "
        "/auth/session instead (an HttpOnly session cookie, and the `lookout_csrf` cookie's "
        "value sent back as `X-CSRF-Token` on every write). The web dashboard is at "
        "/dashboard/.",
        docs_url=None,  # served from local files by add_local_docs
        redoc_url=None,  # ReDoc has no local copy; it would load a script from a CDN
    )
    add_local_docs(app)
    app.state.context = ctx
    origins = ctx.config().api.cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", CSRF_HEADER],
        )
    app.add_middleware(SecurityHeaders)
    # Outermost: a body is refused or read (bounded in size and time) before anything else.
    app.add_middleware(BodyLimit, trusted=signed_in(ctx))

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
    app.include_router(slack.router)
    app.include_router(live.router)
    include_data_routers(app)
    include_entity_routers(app)
    include_audience_routers(app)
    # Smart Social Distancing's names and methods, beside Lookout's own routes
    app.include_router(ssd.metric_aliases)
    app.include_router(ssd.router)
    app.router.routes.extend(dashboard.routes(dashboard_dist))
    return app
