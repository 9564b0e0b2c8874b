"""The API served by the real uvicorn server (``api.server.build_server``) in a child process
on 127.0.0.1, and a small raw HTTP client that can choose its source address."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

SERVE = """
import sys
{overrides}
from api.server import build_server
build_server(sys.argv[1], None, "warning").run()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class LiveApi:
    proc: subprocess.Popen[bytes]
    port: int
    config: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def connection(self, source: str = "127.0.0.1",
                   timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                          source_address=(source, 0))

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, token: str | None = None,
                source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
        conn = self.connection(source)
        try:
            hdrs = dict(headers or {})
            if token:
                hdrs["Authorization"] = f"Bearer {token}"
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def login(self, user: str, password: str,
              source: str = "127.0.0.1") -> tuple[int, dict[str, str], str | None]:
        form = urllib.parse.urlencode({"username": user, "password": password}).encode()
        status, headers, body = self.request(
            "POST", "/auth/token", form,
            {"Content-Type": "application/x-www-form-urlencoded"}, source=source)
        token = json.loads(body)["access_token"] if status == 200 else None
        return status, headers, token

    def token(self, user: str, password: str) -> str:
        status, _, token = self.login(user, password)
        assert status == 200 and token, status
        return token


def terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM ``proc`` and wait ``timeout`` seconds for it; SIGKILL it after that."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def live_api(config: Path, overrides: str = "") -> Iterator[LiveApi]:
    """Serve ``config`` (its [API] Port replaced by a free one); ``overrides`` is Python run
    in the server process before it starts (to shorten a timeout)."""
    port = free_port()
    text = config.read_text()
    assert "Port = 8000" in text
    config.write_text(text.replace("Port = 8000", f"Port = {port}"))
    log_path = config.with_name("api-server.log")
    with open(log_path, "wb") as log:  # a file, not a pipe nobody reads
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE.format(overrides=overrides), str(config)], cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT)
    api = LiveApi(proc, port, config)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the API server exited:\n{log_path.read_text()}")
            try:
                if api.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API server did not come up")
            time.sleep(0.1)
        yield api
    finally:
        terminate(proc, 15)
