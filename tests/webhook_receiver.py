"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 that checks every request
the way docs/webhook.md tells a user to (signature with the shared secret, Authorization
header), keeps every record id it got, and can be stopped and started again on its port.

Use it in a test::

    with WebhookReceiver(secret=b"s3cret") as rx:
        ...  # point Endpoint at rx.url
        rx.down_for(30)       # stopped now, back on the same port 30 s later (a thread)
        rx.wait_for(lambda r: len(r.ids()) >= n, timeout=60)

or on its own (``python -m tests.webhook_receiver --port 8099 --secret s3cret``) to watch
what a processor sends.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.monotonic()
    signature_ok: bool | None  # None: no secret to check with
    answered: int
    doc: dict[str, Any] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)


def genuine(secret: bytes, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """The receiver-side check, written out independently of libs.integrations.signing."""
    timestamp = headers.get("X-Lookout-Timestamp", "")
    signature = headers.get("X-Lookout-Signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + expected, signature)


class WebhookReceiver:
    """Answers ``status`` (204 by default) to every PUT; records what it received.

    ``secret``: requests whose signature does not verify are answered 401 and their
    records are *not* counted (a genuine receiver would refuse them too).
    """

    def __init__(self, secret: bytes | None = None, port: int = 0, status: int = 204) -> None:
        self.secret = secret
        self.status = status
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._restart: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/hook"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_PUT(self) -> None:
                receiver._handle(self)

            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        deadline = time.monotonic() + 10
        while True:  # the old socket of a restart may linger an instant
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        server.daemon_threads = True
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={
            "poll_interval": 0.05}, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def down_for(self, seconds: float) -> threading.Thread:
        """Stop now and start again on the same port ``seconds`` later (in a thread)."""
        self.stop()

        def later() -> None:
            time.sleep(seconds)
            self.start()

        self._restart = threading.Thread(target=later, name="webhook-receiver-restart",
                                         daemon=True)
        self._restart.start()
        return self._restart

    def __enter__(self) -> WebhookReceiver:
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        if self._restart is not None:
            self._restart.join(120)
        self.stop()

    # -- what arrived --------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        headers = {k: v for k, v in handler.headers.items()}
        signature_ok = genuine(self.secret, headers, body) if self.secret is not None else None
        status = self.status if signature_ok is not False else 401
        req = Request(handler.command, handler.path, headers, body, time.monotonic(),
                      signature_ok, status)
        if 200 <= status < 300:
            req.doc = json.loads(body)
            req.records = list(req.doc["records"])
        with self._changed:
            self.requests.append(req)
            self._changed.notify_all()
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def accepted(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.answered < 300]

    def records(self) -> list[dict[str, Any]]:
        """Every record of every accepted request, duplicates included, in arrival order."""
        return [rec for r in self.accepted() for rec in r.records]

    def ids(self) -> set[str]:
        return {rec["id"] for rec in self.records()}

    def wait_for(self, pred: Callable[[WebhookReceiver], bool], timeout: float,
                 what: str = "the receiver's condition") -> None:
        deadline = time.monotonic() + timeout
        while not pred(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            with self._changed:
                self._changed.wait(min(left, 0.2))


def main() -> None:
    parser = argparse.ArgumentParser(description="Print what a Lookout webhook sends.")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--secret", default=None, help="shared secret (checks signatures)")
    args = parser.parse_args()
    rx = WebhookReceiver(args.secret.encode() if args.secret else None, port=args.port).start()
    print(f"listening on {rx.url}")
    seen = 0
    try:
        while True:
            time.sleep(0.5)
            with rx._lock:
                new = rx.requests[seen:]
                seen = len(rx.requests)
            for r in new:
                print(f"{r.method} {r.path} -> {r.answered}, signature {r.signature_ok}, "
                      f"{len(r.records)} records: {sorted({x['kind'] for x in r.records})}")
    except KeyboardInterrupt:
        rx.stop()


if __name__ == "__main__":
    main()
