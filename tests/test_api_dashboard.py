"""The dashboard's files as the API serves them: index, hashed assets, no path outside the
build, security headers, 503 without a build, and over HTTPS (certificates from
``lookout make-certs``) with Secure session cookies; the real bundle in real Chromium breaks
no rule of its Content-Security-Policy."""

from __future__ import annotations

import http.client
import json
import logging
import os
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient

from api import dashboard
from api.app import create_app
from api.server import build_server, is_loopback
from tests.conftest import REPO
from tests.live_api import free_port, terminate

PASSWORD = "correct horse battery"
INDEX = ('<!doctype html><html lang="en"><head><title>Lookout</title>'
         '<link rel="stylesheet" href="assets/main-AB12.css"></head><body><div id="app"></div>'
         '<script type="module" src="assets/main-CD34.js"></script></body></html>')


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    """A build folder laid out as dashboard/build.mjs writes it, with a secret beside it."""
    root = tmp_path / "site"
    (root / "dist" / "assets").mkdir(parents=True)
    (root / "dist" / "index.html").write_text(INDEX)
    (root / "dist" / "assets" / "main-CD34.js").write_text("console.log('lookout');\n")
    (root / "dist" / "assets" / "main-AB12.css").write_text("body{margin:0}\n")
    (root / "dist" / "assets" / ".hidden").write_text("no\n")
    (root / "secret.txt").write_text("TOP-SECRET\n")
    (root / "dist" / "assets" / "link.js").symlink_to(root / "secret.txt")
    return root / "dist"


def raw_get(client: TestClient, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` exactly as given (no client-side normalisation of dots or escapes)."""
    status_headers: dict[str, object] = {}
    body = bytearray()
    scope_path = path.split("?")[0]
    app = client.app

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            status_headers["status"] = message["status"]
            status_headers["headers"] = {k.decode().lower(): v.decode()
                                         for k, v in message["headers"]}  # type: ignore[attr-defined]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))  # type: ignore[arg-type]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": urllib.parse.unquote(scope_path),
             "raw_path": scope_path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 5000),
             "server": ("testserver", 80), "state": {}}
    async def call() -> None:
        await app(scope, receive, send)  # type: ignore[arg-type]

    anyio.run(call)
    return int(status_headers["status"]), status_headers["headers"], bytes(body)  # type: ignore[arg-type]


def assert_security_headers(headers) -> None:
    assert headers["content-security-policy"] == dashboard.CSP
    for part in ("default-src 'self'", "script-src 'self'", "style-src 'self'",
                 "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'",
                 "connect-src 'self'", "img-src 'self' data: blob:"):
        assert part in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"


def test_index_and_assets_are_served_with_their_caching(x86_config: Path, dist: Path) -> None:
    client = TestClient(create_app(x86_config, dashboard_dist=dist))
    for path in ("/dashboard/", "/dashboard/index.html"):
        r = client.get(path)
        assert r.status_code == 200 and r.text == INDEX
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["cache-control"] == "no-cache"
        assert_security_headers(r.headers)
    r = client.get("/dashboard/assets/main-CD34.js")
    assert r.status_code == 200 and "lookout" in r.text
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert_security_headers(r.headers)
    r = client.get("/dashboard/assets/main-AB12.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    for path in ("/", "/dashboard"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/dashboard/"
    assert client.get("/").text == INDEX  # following the redirect
    # Added after the server started (a rebuild): found.
    (dist / "assets" / "chunk-EF56.js").write_text("1;\n")
    assert client.get("/dashboard/assets/chunk-EF56.js").status_code == 200
    # The dashboard is no API route: not in the OpenAPI schema.
    assert not [p for p in client.app.openapi()["paths"] if p.startswith("/dashboard")]


TRAVERSALS = [
    "/dashboard/assets/../../secret.txt",
    "/dashboard/assets/%2e%2e/%2e%2e/secret.txt",
    "/dashboard/assets/..%2f..%2fsecret.txt",
    "/dashboard/assets/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/dashboard/assets/..%5c..%5csecret.txt",
    "/dashboard/assets/%252e%252e%252fsecret.txt",
    "/dashboard/../secret.txt",
    "/dashboard/%2e%2e/secret.txt",
    "/dashboard/assets//etc/passwd",
    "/dashboard/assets/%2fetc%2fpasswd",
    "/dashboard//etc/passwd",
    "/dashboard/assets/" + str(Path("/etc/passwd")),
    "/dashboard/assets/.hidden",
    "/dashboard/assets/link.js",  # a symbolic link out of the build
    "/dashboard/assets/",
    "/dashboard/assets",
    "/dashboard/assets/missing-0000.js",
    "/dashboard/secret.txt",
    "/dashboard/../dist/index.html/../../secret.txt",
    "/dashboard/assets/main-CD34.js%00.png",
    "/dashboard/assets/main-CD34.js/",
    "/dashboard/assets/sub/main-CD34.js",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_paths_outside_the_build_are_404(x86_config: Path, dist: Path, path: str) -> None:
    client = TestClient(create_app(x86_config, dashboard_dist=dist))
    status, headers, body = raw_get(client, path)
    assert b"TOP-SECRET" not in body and b"root:" not in body
    if status == 404:
        if path.startswith("/dashboard/"):
            assert_security_headers(headers)
    else:  # only an API route may answer a path outside /dashboard/ (never a file)
        assert not path.startswith("/dashboard/") and status in (401, 404, 405), (path, status)


def test_without_a_build_the_dashboard_says_how_to_make_one(x86_config: Path,
                                                             tmp_path: Path) -> None:
    client = TestClient(create_app(x86_config, dashboard_dist=tmp_path / "no-dist"))
    for path in ("/dashboard/", "/dashboard/assets/main-CD34.js"):
        r = client.get(path)
        assert r.status_code == 503 and "make dashboard" in r.text
        assert_security_headers(r.headers)
    assert client.get("/health").status_code == 200


def test_the_build_is_found_beside_the_package() -> None:
    assert dashboard.DIST == REPO / "dashboard" / "dist"


def test_a_non_loopback_address_without_tls_is_warned_about(
        x86_config: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    with caplog.at_level(logging.WARNING, logger="api.server"):
        build_server(x86_config, None)
    assert not [r for r in caplog.records if "in clear" in r.getMessage()]
    x86_config.write_text(x86_config.read_text().replace("Host = 127.0.0.1", "Host = 0.0.0.0",
                                                         1))
    with caplog.at_level(logging.WARNING, logger="api.server"):
        build_server(x86_config, None)
    assert [r for r in caplog.records if "travel in clear" in r.getMessage()]


SERVE = "import sys\nfrom api.server import build_server\n" \
        "build_server(sys.argv[1], None, 'warning').run()\n"


@contextmanager
def https_server(config: Path, tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext]]:
    certs = tmp_path / "certs"
    res = subprocess.run([sys.executable, "-m", "processor.cli", "make-certs", "--host",
                          "127.0.0.1", "--out", str(certs)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    port = free_port()
    text = config.read_text().replace("Port = 8000", f"Port = {port}")
    text = text.replace("SSLEnabled = False", "SSLEnabled = True")
    text = text.replace("SSLCertificateFile =",
                        f"SSLCertificateFile = {certs / 'processor' / '127.0.0.1.crt'}")
    text = text.replace("SSLKeyFile =", f"SSLKeyFile = {certs / 'processor' / '127.0.0.1.key'}")
    config.write_text(text)
    context = ssl.create_default_context(cafile=str(certs / "ca" / "ca.pem"))
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", SERVE, str(config)], cwd=REPO,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if https(port, context, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the HTTPS server did not come up"
            time.sleep(0.2)
        yield port, context
    finally:
        terminate(proc, 15)


def https(port: int, context: ssl.SSLContext, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def require_build() -> None:
    assert (dashboard.DIST / "index.html").is_file(), \
        "dashboard/dist is not built: run `make dashboard` before the tests (make test does)"


@pytest.mark.slow
def test_https_serves_the_dashboard_and_sets_secure_cookies(x86_config: Path,
                                                            tmp_path: Path) -> None:
    require_build()
    from api.auth import UserStore
    from libs.config import load_config

    users = UserStore(load_config(x86_config, check_files=False).data_path("auth") /
                      "users.json")
    users.add("admin1", PASSWORD, "admin")
    with https_server(x86_config, tmp_path) as (port, context):
        status, headers, body = https(port, context, "GET", "/dashboard/")
        assert status == 200 and b'<div id="app">' in body
        assert headers["content-security-policy"] == dashboard.CSP
        script = body.split(b'src="', 1)[1].split(b'"', 1)[0].decode()
        status, headers, _ = https(port, context, "GET", "/dashboard/" + script)
        assert status == 200 and headers["cache-control"].endswith("immutable")
        status, headers, body = https(
            port, context, "POST", "/auth/session",
            json.dumps({"username": "admin1", "password": PASSWORD}).encode(),
            {"Content-Type": "application/json"})
        assert status == 200, body
        jar: SimpleCookie = SimpleCookie()
        for value in headers.get_all("set-cookie") or []:
            jar.load(value)
        session, csrf = jar["lookout_session"], jar["lookout_csrf"]
        assert session["secure"] and session["httponly"]
        assert session["samesite"].lower() == "strict"
        assert csrf["secure"] and not csrf["httponly"]
        cookie = f"lookout_session={session.value}; lookout_csrf={csrf.value}"
        status, _, body = https(port, context, "GET", "/auth/session", headers={
            "Cookie": cookie})
        assert status == 200 and json.loads(body)["username"] == "admin1"
        status, _, _ = https(port, context, "PUT", "/auth/session", headers={"Cookie": cookie})
        assert status == 403
        status, _, _ = https(port, context, "PUT", "/auth/session", headers={
            "Cookie": cookie, "X-CSRF-Token": csrf.value})
        assert status == 200


ROUTES = ("cameras", "cameras/pets-view1", "cameras/pets-view1/draw",
          "cameras/pets-view1/calibration", "areas", "charts", "export", "users", "settings")


@pytest.mark.slow
def test_the_real_bundle_breaks_no_csp_rule_in_chromium(x86_config: Path) -> None:
    """The built dashboard loads in Chromium under its own CSP: signed in, on every page
    (charts drawn by Chart.js among them), no violation is reported."""
    require_build()
    from playwright.sync_api import sync_playwright

    from api.auth import UserStore
    from libs.config import load_config
    from tests.live_api import live_api

    users = UserStore(load_config(x86_config, check_files=False).data_path("auth") /
                      "users.json")
    users.add("admin1", PASSWORD, "admin")
    with live_api(x86_config) as api, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox"])
        try:
            page = browser.new_page()
            messages: list[str] = []
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            page.add_init_script(
                "document.addEventListener('securitypolicyviolation', e => "
                "console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))")
            base = f"http://127.0.0.1:{api.port}"
            page.goto(base + "/")
            assert page.url.startswith(base + "/dashboard/")
            page.get_by_label("User name").fill("admin1")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("button", name="Sign out").wait_for(timeout=15000)
            for route in ROUTES:
                page.goto(f"{base}/dashboard/#/{route}")
                page.wait_for_timeout(1500)
            violations = [m for m in messages if "Content Security Policy" in m or
                          "CSP violation" in m]
            assert not violations, violations
        finally:
            browser.close()
