"""`lookout healthcheck`, the images' HEALTHCHECK, against Lookout's real API server over TLS
with a certificate from `lookout make-certs`: healthy when the server presents the configured
certificate, unhealthy when it presents another one, speaks another scheme, or is not there."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.certs import make_processor_certificate
from api.server import build_server
from processor.cli import main as cli_main
from processor.healthcheck import probe, target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure(config: Path, **keys: str) -> Path:
    """``config`` with these [API] keys set (added to the section when absent)."""
    lines = config.read_text().splitlines()
    start = lines.index("[API]") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    for key, value in keys.items():
        at = next((i for i in range(start, end) if lines[i].split("=")[0].strip() == key), None)
        if at is None:
            lines.insert(start, f"{key} = {value}")
            end += 1
        else:
            lines[at] = f"{key} = {value}"
    config.write_text("\n".join(lines) + "\n")
    return config


@pytest.fixture
def tls_server(x86_config: Path, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    cert, key = make_processor_certificate(tmp_path / "certs", "127.0.0.1")
    port = free_port()
    configure(x86_config, Port=str(port), SSLEnabled="True", SSLCertificateFile=str(cert),
              SSLKeyFile=str(key))
    server = build_server(x86_config, None, "warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the API server did not start"
    try:
        yield x86_config, port
    finally:
        server.should_exit = True
        thread.join(10)


def test_tls_server_healthy_only_with_its_own_certificate_and_scheme(
        tls_server: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, port = tls_server
    # as the image runs it: no --config, LOOKOUT_CONFIG names the file
    monkeypatch.setenv("LOOKOUT_CONFIG", str(config))
    assert cli_main(["healthcheck"]) == 0
    assert capsys.readouterr().out.strip() == f"https://127.0.0.1:{port}/health: ok"

    # a server holding another certificate (same host name, another CA) is not ours
    other, _key = make_processor_certificate(tmp_path / "other-ca", "127.0.0.1")
    copy = tmp_path / "other.ini"
    copy.write_text(config.read_text())
    configure(copy, SSLCertificateFile=str(other))
    result = probe(copy)
    assert not result.healthy
    assert "TLS failed" in result.message and "CERTIFICATE_VERIFY_FAILED" in result.message
    assert cli_main(["healthcheck", "--config", str(copy)]) == 1
    assert "TLS failed" in capsys.readouterr().err

    # plain HTTP to the TLS port gets no answer
    configure(copy, SSLEnabled="False")
    result = probe(copy, timeout=5)
    assert not result.healthy and result.message.startswith(f"http://127.0.0.1:{port}/health")


def test_unhealthy_when_nothing_listens_and_disabled_api(x86_config: Path) -> None:
    configure(x86_config, Port=str(free_port()))
    result = probe(x86_config)
    assert not result.healthy and "Connection refused" in result.message
    configure(x86_config, Enabled="False")
    result = probe(x86_config)
    assert result.healthy and "Enabled = False" in result.message


def test_wildcard_host_is_asked_through_loopback_and_missing_certificate(
        x86_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure(x86_config, Host="0.0.0.0")
    assert target(x86_config)[:3] == ("127.0.0.1", 8000, None)
    configure(x86_config, Host="::")
    assert target(x86_config)[0] == "::1"
    configure(x86_config, SSLEnabled="True", SSLCertificateFile=str(tmp_path / "none.crt"),
              SSLKeyFile=str(tmp_path / "none.key"))
    assert cli_main(["healthcheck", "--config", str(x86_config)]) == 2
    assert f"[API] SSLCertificateFile: no such file {tmp_path / 'none.crt'}" in \
        capsys.readouterr().err


def test_a_503_reports_the_reasons(x86_config: Path) -> None:
    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "failing", "reasons": ["camera x: disk full"]})
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        configure(x86_config, Port=str(server.server_address[1]))
        result = probe(x86_config)
    finally:
        server.shutdown()
        server.server_close()
    assert not result.healthy
    assert result.message.endswith("/health: HTTP 503 camera x: disk full")
