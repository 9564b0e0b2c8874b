"""Real servers for the notification tests: an SMTP server (aiosmtpd, STARTTLS with a
certificate of a CA made here, login required) and a Slack incoming-webhook receiver (HTTP on
127.0.0.1, answers ``ok`` like Slack). Both stop and start again on the same port for outage
tests.

Run on its own, the Slack receiver prints one line per message
(``python -m tests.notify_servers --slack-port 8098``: ``POST /<path> 200 <text>``); it takes
any path, so ``LOOKOUT_SLACK_WEBHOOK_URL=http://127.0.0.1:8098/slack`` works.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from api.certs import make_processor_certificate

SMTP_USER = "lookout-mailer"
SMTP_PASSWORD = "smtp-pw-7Hq2"  # the test server's, not a real one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class SmtpServer:
    """aiosmtpd on 127.0.0.1 requiring STARTTLS and a login; keeps every message."""

    def __init__(self, folder: Path, implicit_tls: bool = False) -> None:
        """STARTTLS required, or (``implicit_tls``) TLS from the first byte (SMTPS)."""
        self.implicit_tls = implicit_tls
        cert, key = make_processor_certificate(folder, "127.0.0.1")
        self.ca_file = folder / "ca" / "ca.pem"
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(cert, key)
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str], bool]] = []  # from, to, over TLS
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def env(self) -> dict[str, str]:
        return {"LOOKOUT_SMTP_HOST": "127.0.0.1", "LOOKOUT_SMTP_PORT": str(self.port),
                "LOOKOUT_SMTP_SECURITY": "tls" if self.implicit_tls else "starttls",
                "LOOKOUT_SMTP_USER": SMTP_USER,
                "LOOKOUT_SMTP_PASSWORD": SMTP_PASSWORD,
                "LOOKOUT_SMTP_FROM": "lookout@example.com",
                "LOOKOUT_SMTP_CA_FILE": str(self.ca_file), "LOOKOUT_SMTP_TIMEOUT": "5"}

    def _auth(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
              auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and \
            auth_data.login == SMTP_USER.encode() and \
            auth_data.password == SMTP_PASSWORD.encode()
        return AuthResult(success=ok, handled=False)  # refused: 535 to the client

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else \
            str(envelope.content).encode()
        msg = message_from_bytes(content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self._lock:
            self.messages.append(msg)
            self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos),
                                   session.ssl is not None))
        return "250 Message accepted"

    def start(self) -> SmtpServer:
        deadline = time.monotonic() + 10
        while True:  # the port of a stopped server may linger an instant
            # aiosmtpd 1.4 offers AUTH only after STARTTLS unless told the implicit TLS
            # connection is safe (auth_require_tls=False): it is TLS from its first byte.
            tls: dict[str, Any] = {"ssl_context": self._tls, "auth_require_tls": False} \
                if self.implicit_tls else {"tls_context": self._tls, "require_starttls": True}
            controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                    authenticator=self._auth, auth_required=True, **tls)
            try:
                controller.start()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def got(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.messages)

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SlackReceiver:
    """What an incoming webhook does, on 127.0.0.1: takes a JSON POST, answers 200 ``ok``."""

    PATH = "/services/T0000/B0000/s3cr3tW3bh00k"

    def __init__(self, port: int = 0, any_path: bool = False,
                 on_post: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        """``any_path``: every path is a webhook (else only :attr:`PATH`, others 404)."""
        self.port = port or free_port()
        self.any_path = any_path
        self.on_post = on_post
        self.posts: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.PATH}"

    def start(self) -> SlackReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = receiver.any_path or self.path == receiver.PATH
                if ok:
                    doc = json.loads(body)
                    with receiver._lock:
                        receiver.posts.append(doc)
                    if receiver.on_post is not None:
                        receiver.on_post(self.path, doc)
                answer = b"ok" if ok else b"no_service"
                self.send_response(200 if ok else 404)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        deadline = time.monotonic() + 10
        while True:
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True, name="slack-receiver").start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def got(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.posts)

    def __enter__(self) -> SlackReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="A local Slack incoming webhook that prints "
                                     "what it gets.")
    parser.add_argument("--slack-port", type=int, default=8098)
    args = parser.parse_args()

    def show(path: str, doc: dict[str, Any]) -> None:
        text = str(doc.get("text", "")).splitlines()[0:1]
        print(f"POST {path} 200 {text[0] if text else ''}", flush=True)

    rx = SlackReceiver(args.slack_port, any_path=True, on_post=show).start()
    print(f"listening on http://127.0.0.1:{rx.port}/", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        rx.stop()


if __name__ == "__main__":
    main()
