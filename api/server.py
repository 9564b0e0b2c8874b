"""Serve the API with uvicorn (HTTP or HTTPS), beside a running supervisor.

Connections are bounded in time and number:

* a client has :data:`HEAD_TIMEOUT` seconds, from connecting or from the end of its previous
  answer, to send a whole request head (uvicorn has no such limit of its own: one byte every
  few seconds would hold a connection for ever); :class:`HeadTimeoutH11Protocol` closes it
  otherwise;
* an idle keep-alive connection is closed after :data:`KEEP_ALIVE_TIMEOUT` seconds;
* a request body must arrive within ``api.limits.BODY_TIMEOUT`` (408 otherwise);
* one client address may hold at most :data:`MAX_CONNECTIONS_PER_ADDRESS` connections (more
  are closed at once), so no single client can fill the server's table; past
  :data:`MAX_CONNECTIONS` open connections or running requests, new requests are answered
  503 at once.

Live streams (``/live/events``, ``/live/ws``; :mod:`api.live`) are long-lived: the head
timeout only runs while a request head is awaited and the keep-alive timeout only after an
answer, so neither ends a stream; the number of streams is bounded by the live hub (in all,
per address, per user), below the connection caps.  Both protocols give the application an
ASGI extension ``lookout.abort`` that drops the connection at once: the hub's way to be rid
of a client that reads nothing (closing would wait for its buffer to drain, for ever).  On
shutdown the live streams are ended first (uvicorn waits for open responses to finish).  A
WebSocket message from a client is at most :data:`WS_MAX_MESSAGE` bytes (the stream only
sends).

The cameras come first: the thread that serves the API (and every thread it starts: request
handlers' threads, the login and export pools) runs at niceness :data:`API_NICENESS`, below
the supervisor and the camera workers, so a flood of requests takes only the CPU they leave
(``benchmarks/export_benchmark.py`` measures it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from api.app import create_app
from libs.config import load_config
from libs.priority import lower_priority

if TYPE_CHECKING:
    from processor.supervisor import Supervisor

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 5
MAX_CONNECTIONS = 500
MAX_CONNECTIONS_PER_ADDRESS = 64
API_NICENESS = 10
WS_MAX_MESSAGE = 64 << 10


class LookoutServer(uvicorn.Server):
    """uvicorn's server, serving at a lower CPU priority than the cameras; calls each of
    ``before_shutdown`` (on its loop) before it waits for open connections to finish."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.before_shutdown: list[Callable[[], None]] = []

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        lower_priority(API_NICENESS)  # this thread, and the threads it starts from now on
        await super().serve(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for hook in self.before_shutdown:
            try:
                hook()
            except Exception:
                log.exception("shutting down: %r failed", hook)
        await super().shutdown(sockets)


def with_abort(app: Any, abort: Callable[[], None]) -> Any:
    """``app`` with the ASGI extension ``lookout.abort`` (drop the connection now) in
    every scope it is given."""

    async def call(scope: Any, receive: Any, send: Any) -> None:
        scope.setdefault("extensions", {})["lookout.abort"] = abort
        await app(scope, receive, send)

    return call


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (``websockets``), plus ``lookout.abort``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = with_abort(self.app, self._abort)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and \
                not message.get("more_body", False):
            # A denial response (401, 422, 429 at the handshake) was sent whole: the
            # handshake is over (uvicorn would log an error for each one otherwise).
            self.handshake_complete = True


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request head (slowloris) and a cap
    on the connections of one client address."""

    head_timeout = HEAD_TIMEOUT
    per_address = MAX_CONNECTIONS_PER_ADDRESS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._address: str | None = None
        self.app = with_abort(self.app, self._abort)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _open_per_address(self) -> Counter[str]:
        """Open connections by client address, shared by the server's connections."""
        counts: Counter[str] | None = getattr(self.server_state, "lookout_per_address", None)
        if counts is None:
            counts = Counter()
            self.server_state.lookout_per_address = counts  # type: ignore[attr-defined]
        return counts

    def _watch_head(self) -> None:
        """Arm the timer while a request head is awaited (h11 IDLE), disarm it otherwise."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)
        elif not waiting and self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else "unknown"
        counts = self._open_per_address()
        if counts[address] >= self.per_address:
            transport.close()  # connection_lost follows; nothing was counted
            return
        counts[address] += 1
        self._address = address
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._forget_address()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._forget_address()  # the WebSocket protocol takes the connection over
        super().handle_websocket_upgrade(event)

    def _forget_address(self) -> None:
        if self._address is not None:
            counts = self._open_per_address()
            counts[self._address] -= 1
            if counts[self._address] <= 0:
                del counts[self._address]
            self._address = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches only this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_server(config_path: str | Path, supervisor: Supervisor | None,
                 log_level: str = "info") -> uvicorn.Server:
    config = load_config(config_path, check_files=False)
    api = config.api
    certfile: str | None = None
    keyfile: str | None = None
    if api.ssl_enabled:
        cert = config.data_path(api.ssl_certificate_file)
        key = config.data_path(api.ssl_key_file)
        for what, path in (("SSLCertificateFile", cert), ("SSLKeyFile", key)):
            if not path.exists():
                raise FileNotFoundError(f"[API] {what}: no such file {path}")
        certfile, keyfile = str(cert), str(key)
    if not api.ssl_enabled and not is_loopback(api.host):
        log.warning("the API listens on %s without SSLEnabled: sign-ins, session cookies and "
                    "tokens travel in clear over the network; set [API] SSLEnabled = True "
                    "(certificates: lookout make-certs)", api.host)
    app = create_app(config_path, supervisor)
    cfg = uvicorn.Config(app, host=api.host, port=api.port, log_level=log_level.lower(),
                         access_log=False, proxy_headers=False, server_header=False,
                         ssl_certfile=certfile, ssl_keyfile=keyfile,
                         http=HeadTimeoutH11Protocol, timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
                         limit_concurrency=MAX_CONNECTIONS, ws=AbortableWebSocketProtocol,
                         ws_max_size=WS_MAX_MESSAGE)
    server = LookoutServer(cfg)
    server.before_shutdown.append(app.state.context.live.close)
    return server


def url_of(config_path: str | Path) -> str:
    api = load_config(config_path, check_files=False).api
    scheme = "https" if api.ssl_enabled else "http"
    return f"{scheme}://{api.host}:{api.port}"
