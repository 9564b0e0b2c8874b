"""The real server, as `lookout run` starts it: processor and API together, over HTTP and
over TLS with a certificate made by `lookout make-certs`."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

PASSWORD = "server-test-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processor.cli", *args], cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=120)


class Client:
    def __init__(self, base: str, context: ssl.SSLContext | None = None) -> None:
        self.base = base
        self.context = context
        self.token: str | None = None

    def request(self, method: str, path: str, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=headers or {})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.context) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, method: str, path: str) -> object:
        code, body = self.request(method, path)
        assert code == 200, (path, code, body)
        return json.loads(body)

    def login(self, user: str) -> None:
        form = urllib.parse.urlencode({"username": user, "password": PASSWORD}).encode()
        code, body = self.request("POST", "/auth/token", form,
                                  {"Content-Type": "application/x-www-form-urlencoded"})
        assert code == 200, body
        self.token = json.loads(body)["access_token"]


def start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "run", "--config", str(config), "--no-progress"],
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def wait_healthy(client: Client, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if client.request("GET", "/health")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail("server did not come up")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the server did not stop on SIGTERM:\n{out}")
    assert proc.returncode == 0, out
    return out


def configure(x86_config: Path, port: int, extra: dict[str, str] | None = None) -> None:
    text = x86_config.read_text().replace("Port = 8000", f"Port = {port}")
    for key, value in (extra or {}).items():
        text = text.replace(f"{key} = False" if value == "True" else f"{key} =",
                            f"{key} = {value}", 1)
    x86_config.write_text(text)
    res = cli("create-user", "admin1", "--config", str(x86_config), "--password-stdin",
              stdin=PASSWORD + "\n")
    assert res.returncode == 0, res.stderr


@pytest.mark.slow
def test_real_server_with_processor_on_a_clip(x86_config: Path) -> None:
    port = free_port()
    configure(x86_config, port)
    proc = start(x86_config)
    client = Client(f"http://127.0.0.1:{port}")
    try:
        wait_healthy(client, proc)
        assert client.request("GET", "/status")[0] == 401
        client.login("admin1")
        first = client.json("GET", "/status")["cameras"]["pets-view1"]["frames"]
        time.sleep(1.5)
        status = client.json("GET", "/status")["cameras"]["pets-view1"]
        assert status["status"] in ("running", "finished") and status["frames"] > first
        deadline = time.monotonic() + 120
        while status["status"] != "finished" and time.monotonic() < deadline:
            time.sleep(1)
            status = client.json("GET", "/status")["cameras"]["pets-view1"]
        assert status["frames"] == 795
        daily = client.json("GET", "/metrics/cameras/social-distancing/daily"
                                   "?from_date=2009-03-01&to_date=2009-03-01")
        (entity,) = daily["entities"]
        assert entity["id"] == "pets-view1"
        rows = entity["rows"]
        assert rows and rows[0]["Date"] == "2009-03-01" and rows[0]["MaxPeople"] >= 6
        assert client.request("PUT", "/stop-process-video")[0] == 200
    finally:
        out = stop(proc)
    assert "all recordings processed" in out


@pytest.mark.slow
def test_tls_with_generated_certificate(x86_config: Path, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    res = cli("make-certs", "--host", "127.0.0.1", "--out", str(certs))
    assert res.returncode == 0, res.stderr
    port = free_port()
    configure(x86_config, port, {
        "SSLEnabled": "True",
        "SSLCertificateFile": str(certs / "processor" / "127.0.0.1.crt"),
        "SSLKeyFile": str(certs / "processor" / "127.0.0.1.key"),
    })
    assert oct((certs / "processor" / "127.0.0.1.key").stat().st_mode & 0o777) == "0o600"
    proc = start(x86_config)
    trusted = ssl.create_default_context(cafile=str(certs / "ca" / "ca.pem"))
    client = Client(f"https://127.0.0.1:{port}", trusted)
    try:
        wait_healthy(client, proc)
        client.login("admin1")
        assert "pets-view1" in client.json("GET", "/status")["cameras"]
        # Without trusting the CA the certificate is refused...
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            Client(f"https://127.0.0.1:{port}", ssl.create_default_context()).request(
                "GET", "/health")
        # ...and plain HTTP gets no answer.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            Client(f"http://127.0.0.1:{port}").request("GET", "/health")
    finally:
        stop(proc)


def test_make_certs_refuses_bad_host(tmp_path: Path) -> None:
    res = cli("make-certs", "--host", "bad host/../x", "--out", str(tmp_path))
    assert res.returncode == 2 and "neither an IP address nor a host name" in res.stderr
