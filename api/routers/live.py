"""The live stream: every record of the processor as it is made, over Server-Sent Events
(``GET /live/events``) or a WebSocket (``/live/ws``), filtered by camera, area and kind.

Authentication: the ``Authorization: Bearer`` header, the dashboard's session cookie (the
WebSocket checks the page's ``Origin`` first), or ``?ticket=`` with a ticket from
``POST /live/ticket`` (30 s, single use: for browsers, whose ``EventSource`` and
``WebSocket`` cannot send headers).  A token in the URL (``?token=``) is refused: URLs end up
in logs and browser histories.  See :mod:`api.live` for the bounds on queues and streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from api.context import ApiContext
from api.deps import Principal, Viewer, authenticate, get_context
from api.live import (
    FilterError,
    LiveClient,
    LiveFilter,
    LiveHub,
    StreamLimit,
    TicketHolder,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/live", tags=["Live stream"])

FINAL_SEND_TIMEOUT = 1.0  # s to write the last message to a client that was cut off
ABORT_AFTER = 15.0  # s after a client was cut off: its connection is dropped if still open
URL_TOKENS = ("token", "access_token")

class Ticket(BaseModel):
    ticket: str = Field(description="pass as `?ticket=` to /live/events or /live/ws, once")
    expires_in: int = Field(description="seconds the ticket stays valid")


class Refused(Exception):
    def __init__(self, status: int, detail: object, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def _hub(ctx: ApiContext) -> LiveHub:
    hub: LiveHub = ctx.live
    return hub


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _principal(ctx: ApiContext, authorization: str | None, ticket: str | None,
               query: dict[str, str], cookies: Mapping[str, str]) -> Principal:
    """Who opens the stream: a ticket's holder, else the bearer token's user, else the
    session cookie's (anyone when authentication is off); :class:`Refused` otherwise."""
    if any(k in query for k in URL_TOKENS):
        raise Refused(400, "a token is never accepted in a URL: send it as 'Authorization: "
                      "Bearer <token>', or get a single-use ticket from POST /live/ticket")
    if ticket is not None:
        holder = _hub(ctx).tickets.redeem(ticket)
        if holder is None:
            raise Refused(401, "invalid, expired or used ticket")
        if ctx.config().api.use_auth_token:
            user = ctx.users.get(holder.username)
            if user is None or user.generation != holder.generation:
                raise Refused(401, "the ticket's user was deleted or changed password")
            return Principal(holder.username, user.role)
        return Principal(holder.username, holder.role)  # type: ignore[arg-type]
    try:
        return authenticate(ctx, "GET", _bearer(authorization), cookies, None)
    except HTTPException as exc:
        raise Refused(exc.status_code, exc.detail, dict(exc.headers or {})) from None


def _filter(camera: str | None, area: str | None, kind: str | None) -> LiveFilter:
    try:
        return LiveFilter.parse(camera, area, kind)
    except FilterError as exc:
        raise Refused(422, [{"loc": ["query", exc.param], "msg": str(exc),
                             "type": "value_error"}]) from None


def _join(ctx: ApiContext, flt: LiveFilter, user: Principal, address: str) -> LiveClient:
    limit_user = ctx.config().api.use_auth_token  # all users are "anonymous" otherwise
    try:
        return _hub(ctx).join(flt, user.username, address, limit_user=limit_user)
    except StreamLimit as exc:
        raise Refused(429, str(exc), {"Retry-After": "5"}) from None


def _open(ctx: ApiContext, headers: Any, params: Any, client: Any,
          camera: str | None, area: str | None, kind: str | None,
          ticket: str | None, cookies: Mapping[str, str]) -> LiveClient:
    query = dict(params)
    flt = _filter(camera, area, kind)  # a wrong filter is told before the ticket is spent
    user = _principal(ctx, headers.get("authorization"), ticket, query, cookies)
    address = client.host if client else "unknown"
    return _join(ctx, flt, user, address)


def _check_origin(ctx: ApiContext, headers: Any) -> None:
    """A browser's WebSocket is not bound by CORS: one opened by a page of another site
    (``Origin`` neither this server nor one of ``[API] CorsOrigins``) is refused (403), so a
    page cannot read the stream of a server whose authentication is off.  Clients that are
    not browsers send no ``Origin``."""
    origin = headers.get("origin")
    if origin is None or origin in ctx.config().api.cors_origins:
        return
    host = headers.get("host")
    if host and urllib.parse.urlsplit(origin).netloc == host:
        return
    raise Refused(403, f"origin {origin[:100]!r} may not open the live stream; list it in "
                  "[API] CorsOrigins")


def _abort_later(scope: Scope) -> None:
    """Drop the connection in :data:`ABORT_AFTER` s if it is still open (a client that reads
    nothing holds it open for ever otherwise: closing waits for its buffer to drain)."""
    abort: Callable[[], None] | None = scope.get("extensions", {}).get("lookout.abort")
    if abort is not None:
        asyncio.get_running_loop().call_later(ABORT_AFTER, abort)


async def _abort_now(scope: Scope) -> None:
    abort: Callable[[], None] | None = scope.get("extensions", {}).get("lookout.abort")
    if abort is not None:
        abort()
        await asyncio.sleep(0)  # the server sees the connection lost before we return


async def _until_first(*aws: Any) -> None:
    """Wait for the first of ``aws`` to finish, then cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class EventStream(Response):
    """The Server-Sent Events response of one client."""

    media_type = "text/event-stream"

    def __init__(self, hub: LiveHub, client: LiveClient) -> None:
        # Not Response.__init__: it would declare a Content-Length of 0.
        self.status_code = 200
        self.background = None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"),
                            (b"cache-control", b"no-store"), (b"connection", b"close"),
                            (b"x-accel-buffering", b"no")]
        self.hub = hub
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = self.client
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": b": lookout live stream\n\n",
                        "more_body": True})
            await _until_first(self._pump(send), self._disconnected(receive),
                               client.ended.wait())
            if client.reason is not None:
                await self._end(scope, send, client.reason)
        finally:
            self.hub.leave(client)

    async def _pump(self, send: Send) -> None:
        client = self.client
        while client.reason is None:
            items = await client.take(self.hub.heartbeat)
            if client.reason is not None:
                return
            body = b"".join(i.sse for i in items) if items else b": heartbeat\n\n"
            await send({"type": "http.response.body", "body": body, "more_body": True})

    @staticmethod
    async def _disconnected(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    @staticmethod
    async def _end(scope: Scope, send: Send, reason: str) -> None:
        """Tell the client why its stream ends and end it; drop a client that cannot take
        even that."""
        data = json.dumps({"reason": reason})
        try:
            await asyncio.wait_for(send({
                "type": "http.response.body", "more_body": False,
                "body": f"event: stream_end\ndata: {data}\n\n".encode()}), FINAL_SEND_TIMEOUT)
        except TimeoutError:
            await _abort_now(scope)
            return
        _abort_later(scope)


@router.post("/ticket", response_model=Ticket,
             summary="A single-use ticket (30 s) to open a live stream from a browser")
async def ticket(request: Request, user: Viewer) -> dict[str, Any]:
    ctx = get_context(request)
    hub = _hub(ctx)
    generation = ""
    if ctx.config().api.use_auth_token:
        known = ctx.users.get(user.username)
        generation = known.generation if known else ""
    made = hub.tickets.issue(TicketHolder(user.username, user.role, generation))
    if made is None:
        raise HTTPException(503, "too many tickets outstanding", headers={"Retry-After": "5"})
    return {"ticket": made, "expires_in": math.ceil(hub.tickets.ttl)}


FILTER_HELP = {
    "camera": "Comma-separated camera ids: only their records (default: every camera).",
    "area": "Comma-separated area ids: only their records (default: every area).",
    "kind": "Comma-separated record kinds (docs/events.md), e.g. line_crossing,zone_entry; "
            "an unknown kind is 422 (default: every kind).",
    "ticket": "A single-use ticket from POST /live/ticket, for browsers that cannot send an "
              "Authorization header; never put a token in the URL.",
}


@router.get(
    "/events", response_class=Response, summary="Live stream of records (Server-Sent Events)",
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "An endless stream: `event: <kind>`, `id: <record id>`, "
                     "`data: <record JSON>` per record; a comment every 15 s."},
               400: {"description": "a token in the URL"},
               401: {"description": "no valid bearer token or ticket"},
               422: {"description": "an unknown kind or an oversized filter"},
               429: {"description": "too many live streams"}})
async def events(request: Request,
                 camera: str | None = Query(None, description=FILTER_HELP["camera"]),
                 area: str | None = Query(None, description=FILTER_HELP["area"]),
                 kind: str | None = Query(None, description=FILTER_HELP["kind"]),
                 ticket: str | None = Query(None, description=FILTER_HELP["ticket"]),
                 ) -> Response:
    """Every record the processor makes from now on, as it is made, as Server-Sent Events:
    one event per record with ``event: <kind>``, ``id: <record id>`` and ``data: <record
    JSON>`` (docs/events.md); a comment every 15 s while nothing flows.  Authenticated by the
    ``Authorization: Bearer`` header or ``ticket``; 400 for a token in the URL, 429 past the
    stream limits.  A client that falls behind (more than 4096 records or 4 MiB waiting)
    gets ``event: stream_end`` with the reason and is disconnected."""
    ctx = get_context(request)
    try:
        client = _open(ctx, request.headers, request.query_params, request.client, camera,
                       area, kind, ticket, request.cookies)
    except Refused as exc:
        return JSONResponse({"detail": exc.detail}, exc.status, headers=exc.headers)
    return EventStream(_hub(ctx), client)


@router.websocket("/ws")
async def websocket(ws: WebSocket) -> None:
    """Records over a WebSocket: one JSON record per text message; same filters and
    authentication as /live/events.  Refused before the handshake completes (401, 400, 422
    or 429 when the server can answer HTTP there, else close code 1008); a client that
    falls behind is closed with code 1013 and the reason."""
    ctx: ApiContext = ws.app.state.context
    params = ws.query_params
    try:
        _check_origin(ctx, ws.headers)
        client = _open(ctx, ws.headers, params, ws.client, params.get("camera"),
                       params.get("area"), params.get("kind"), params.get("ticket"),
                       ws.cookies)
    except Refused as exc:
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            await ws.send_denial_response(JSONResponse({"detail": exc.detail}, exc.status,
                                                       headers=exc.headers))
        else:
            await ws.close(1008 if exc.status != 429 else 1013, str(exc)[:120])
        return
    hub = _hub(ctx)
    try:
        await ws.accept()
        await _until_first(_ws_pump(ws, hub, client), _ws_disconnected(ws),
                           client.ended.wait())
        if client.reason is not None:
            code = 1013 if client.overflowed else 1001
            try:
                await asyncio.wait_for(ws.close(code, client.reason[:120]), FINAL_SEND_TIMEOUT)
            except TimeoutError:
                await _abort_now(ws.scope)
                return
            except Exception:  # the client has gone meanwhile
                return
            _abort_later(ws.scope)
    finally:
        hub.leave(client)


async def _ws_pump(ws: WebSocket, hub: LiveHub, client: LiveClient) -> None:
    while client.reason is None:
        items = await client.take(hub.heartbeat)
        for item in items:
            if client.reason is not None:
                return
            await ws.send({"type": "websocket.send", "text": item.text})


async def _ws_disconnected(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass

