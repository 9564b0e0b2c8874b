"""Helpers of the browser tests (fixtures in tests/browser/conftest.py): the server's
description and set-up, the watch every page carries, and what tests call on a page.

* :func:`goto` opens a dashboard route as a fresh document load and waits until the page has
  its heading and nothing in ``main`` says "Loading…".
* :func:`shoot` saves full-page screenshots at desktop (1280x800) and phone (390x844) width in
  tests/artifacts/screenshots/.
* :func:`axe_violations` runs axe-core (dashboard/node_modules/axe-core/axe.min.js, injected
  with ``add_script_tag``) and returns its serious and critical violations. The dashboard's CSP
  allows scripts from 'self' only, so the injected script runs only on a page of the
  ``axe_page`` fixture, whose context bypasses the CSP.
* :func:`fetch_json` sends a request from inside a page (its cookies, its CSRF header).

Import them from here (``from tests.browser.harness import goto, shoot``), not from conftest.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    WebSocket,
)
from playwright.sync_api import (
    Error as PlaywrightError,
)

from tests.conftest import PETS, REPO, core_config_text

CHROMIUM = Path(os.environ.get("LOOKOUT_CHROMIUM", "/usr/bin/chromium"))
DIST_INDEX = REPO / "dashboard" / "dist" / "index.html"
AXE_JS = REPO / "dashboard" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO / "tests" / "artifacts" / "screenshots"

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
CLIP_FPS = 7.0  # PETS 2009 S2.L1 was captured at about 7 fps (DATA.md)
CAMERA_ID = "pets-view1"

SERVER_UP_S = 120.0  # until /health answers
CAMERA_UP_S = 90.0  # until the camera has processed a frame
PAGE_READY_MS = 20_000  # until a page has its heading and nothing says "Loading…"

# The main pages ({camera} is the camera's id), in the order the tests visit them.
MAIN_ROUTES = (
    "cameras",
    "cameras/{camera}",
    "cameras/{camera}/draw",
    "cameras/{camera}/calibration",
    "areas",
    "charts",
    "export",
    "users",
    "settings",
)


# ---------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    role: str


@dataclass
class Server:
    """The running ``lookout run``: where it is, who may sign in, what it processes."""

    proc: subprocess.Popen[bytes]
    port: int
    config: Path
    ca_file: Path
    log_path: Path
    admin: Account
    viewer: Account
    camera_id: str
    camera_url: str  # the MJPEG camera the server reads (a second camera may use it too)
    ssl_context: ssl.SSLContext = field(repr=False)

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"https://{self.netloc}"

    @property
    def data(self) -> Path:
        return self.config.parent / "data"

    def url(self, route: str = "") -> str:
        """The dashboard at hash route ``route`` (``"cameras/<id>/draw"``)."""
        return f"{self.base}/dashboard/#/{route.lstrip('/')}"

    def routes(self) -> list[str]:
        """:data:`MAIN_ROUTES` for this server's camera."""
        return [r.format(camera=self.camera_id) for r in MAIN_ROUTES]

    def request(self, method: str, path: str, body: object = None,
                headers: dict[str, str] | None = None,
                token: str | None = None) -> tuple[int, dict[str, str], bytes]:
        """One HTTPS request from the test (trusting the test CA); JSON ``body``."""
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=15, context=self.ssl_context) as resp:
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()

    def token(self, account: Account) -> str:
        """A bearer token for ``account`` (for set-up and checks made from the test)."""
        form = urllib.parse.urlencode({"username": account.username,
                                       "password": account.password}).encode()
        status, _, body = self._form("/auth/token", form)
        assert status == 200, (status, body[:300])
        return str(json.loads(body)["access_token"])

    def _form(self, path: str, form: bytes) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.base + path, data=form, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=15, context=self.ssl_context) as resp:
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"


def pets_jpegs() -> list[bytes]:
    """Every frame of vtest.avi as JPEG, for the MJPEG camera."""
    cap = cv2.VideoCapture(str(PETS / "vtest.avi"))
    out: list[bytes] = []
    try:
        while True:
            ok, image = cap.read()
            if not ok:
                break
            out.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    finally:
        cap.release()
    assert len(out) == 795, f"vtest.avi decoded {len(out)} frames"
    return out


def server_config(folder: Path, shared: Path, port: int, camera_url: str, cert: Path,
                  key: Path) -> Path:
    """config-x86.ini (without the audience analytics, to leave the 2 cores room for
    Chromium) with its PETS camera read from ``camera_url``, HTTPS on ``port``."""
    text = core_config_text((REPO / "config-x86.ini").read_text())
    text = text.replace("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}")
    replacements = {
        "Port = 8000": f"Port = {port}",
        "UseAuthToken = True": "UseAuthToken = True",  # asserted: sign-in is required
        "SSLEnabled = False": "SSLEnabled = True",
        "SSLCertificateFile =": f"SSLCertificateFile = {cert}",
        "SSLKeyFile =": f"SSLKeyFile = {key}",
        "VideoPath = data/pets09_s2l1/vtest.avi": f"VideoPath = {camera_url}",
    }
    for old, new in replacements.items():
        assert re.search(rf"^{re.escape(old)}$", text, re.M), f"config-x86.ini lacks {old!r}"
        text = re.sub(rf"^{re.escape(old)}$", new, text, count=1, flags=re.M)
    # A live camera has neither a start time nor a file frame rate to correct.
    text = re.sub(r"^(StartTime|FrameRate) = .*\n", "", text, flags=re.M)
    path = folder / "config.ini"
    path.write_text(text)
    return path


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processor.cli", *args], cwd=REPO, input=stdin,
                          capture_output=True, text=True, timeout=120)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the server's whole process group, SIGKILL what is left after ``timeout``."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError):  # the group: workers left behind
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def wait_for_server(server: Server) -> None:
    """Until /health answers and the camera has processed frames; fails with the log."""
    def fail(why: str) -> None:
        stop_group(server.proc)
        pytest.fail(f"{why}; server log ({server.log_path}):\n{server.log_tail()}")

    deadline = time.monotonic() + SERVER_UP_S
    while True:
        if server.proc.poll() is not None:
            fail(f"lookout run exited with {server.proc.returncode}")
        try:
            if server.request("GET", "/health")[0] in (200, 503):
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            fail(f"the server did not answer /health within {SERVER_UP_S:.0f} s")
        time.sleep(0.25)
    token = server.token(server.admin)
    deadline = time.monotonic() + CAMERA_UP_S
    while True:
        status, _, body = server.request("GET", "/status", token=token)
        cam = json.loads(body).get("cameras", {}).get(server.camera_id, {}) if status == 200 \
            else {}
        if cam.get("frames", 0) > 0:
            return
        if server.proc.poll() is not None:
            fail(f"lookout run exited with {server.proc.returncode}")
        if time.monotonic() > deadline:
            fail(f"camera {server.camera_id} processed no frame within {CAMERA_UP_S:.0f} s "
                 f"(/status {status}: {body[:500]!r})")
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------
# Chromium, watched pages
# ---------------------------------------------------------------------------------------


API_NOT_FOUND = re.compile(r"^Failed to load resource: the server responded with a status of "
                           r"4\d\d\b")


@dataclass
class Watch:
    """What a page did that fails a test: requests (or WebSockets) to other hosts, uncaught
    script errors, console errors. Reset at the start of each test."""

    netloc: str
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, url)
    foreign: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def is_local(self, url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return True
        return parts.scheme in ("https", "wss") and parts.netloc == self.netloc

    def on_request(self, request: Request) -> None:
        self.requests.append((request.method, request.url))
        if not self.is_local(request.url):
            self.foreign.append(f"{request.method} {request.url}")

    def on_websocket(self, ws: WebSocket) -> None:
        self.requests.append(("WEBSOCKET", ws.url))
        if not self.is_local(ws.url):
            self.foreign.append(f"WebSocket {ws.url}")

    def on_console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        where = msg.location.get("url", "") if msg.location else ""
        path = urllib.parse.urlsplit(where).path
        # The API answering 4xx (a wrong password, a viewer's 403) is the page's business;
        # a missing asset or a 5xx is not.
        if API_NOT_FOUND.match(msg.text) and where and not path.startswith("/dashboard"):
            return
        self.console_errors.append(f"{msg.text} ({where})")

    def on_page_error(self, error: Exception) -> None:
        self.page_errors.append(str(error))

    def attach(self, page: Page) -> None:
        page.on("request", self.on_request)
        page.on("websocket", self.on_websocket)
        page.on("console", self.on_console)
        page.on("pageerror", self.on_page_error)

    def reset(self) -> None:
        self.requests.clear()
        self.foreign.clear()
        self.page_errors.clear()
        self.console_errors.clear()

    def writes(self) -> list[str]:
        """The non-GET requests the page sent since the last reset."""
        return [f"{m} {u}" for m, u in self.requests if m not in ("GET", "HEAD", "WEBSOCKET")]

    def problems(self) -> list[str]:
        out = [f"request to another host: {r}" for r in self.foreign]
        out += [f"uncaught script error: {e}" for e in self.page_errors]
        out += [f"console error: {e}" for e in self.console_errors]
        return out


def watch_of(page: Page) -> Watch:
    """The :class:`Watch` attached to a page made by these fixtures."""
    watch = getattr(page, "_lookout_watch", None)
    assert isinstance(watch, Watch), "not a page made by tests/browser/conftest.py"
    return watch


def check_watch(page: Page) -> None:
    """Fail when the page did something it must not since the last reset."""
    problems = watch_of(page).problems()
    assert not problems, "the page:\n  " + "\n  ".join(problems)


def new_watched_page(browser: Browser, server: Server,
                     **context_options: object) -> tuple[BrowserContext, Page]:
    """A fresh context (no cookies) and page, at desktop size, watched. The test CA is not
    in Chromium's store, so certificate errors are ignored (the server is ours)."""
    context = browser.new_context(ignore_https_errors=True, viewport=DESKTOP,  # type: ignore[arg-type]
                                  **context_options)
    page = context.new_page()
    watch = Watch(server.netloc)
    watch.attach(page)
    page._lookout_watch = watch  # type: ignore[attr-defined]
    return context, page


def sign_in(page: Page, server: Server, account: Account) -> None:
    """Sign in through the form at #/login and wait for the cameras page."""
    page.goto(server.url("login"))
    page.get_by_label("User name").fill(account.username)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"#/cameras$"), timeout=PAGE_READY_MS)
    page.get_by_role("button", name="Sign out").wait_for(timeout=PAGE_READY_MS)


# ---------------------------------------------------------------------------------------
# Helpers for the tests
# ---------------------------------------------------------------------------------------


def goto(page: Page, server: Server, route: str) -> None:
    """Open the dashboard at ``route`` as a fresh document load and wait until the page has
    its heading and no "Loading…" left."""
    target = server.url(route)
    before = urllib.parse.urlsplit(page.url)
    response = page.goto(target)
    if (before.scheme, before.netloc, before.path) == \
            tuple(urllib.parse.urlsplit(target)[:3]):
        try:
            response = page.reload()  # only the hash changed: load the document again
        except PlaywrightError as exc:
            # Chromium now and then gives up a reload at once with ERR_TOO_MANY_RETRIES
            # (seen once in 1,383 tests); the server answers the next one.
            if "ERR_TOO_MANY_RETRIES" not in str(exc):
                raise
            response = page.reload()
    if response is not None and response.status != 200:
        # 503: dashboard/dist has no index.html (being rebuilt, or never built).
        raise AssertionError(f"GET {response.url} answered {response.status}: "
                             f"{response.text()[:300]}")
    wait_ready(page)


def wait_ready(page: Page, timeout_ms: int = PAGE_READY_MS) -> None:
    """Until ``main`` has a heading and nothing in it says "Loading…"."""
    page.locator("main h1").first.wait_for(timeout=timeout_ms)
    try:
        page.wait_for_function(
            "() => !document.querySelector('main .loading')", timeout=timeout_ms)
    except Exception as exc:  # a Playwright TimeoutError: say which page
        raise AssertionError(f"{page.url} still says Loading after {timeout_ms} ms") from exc


def shoot(page: Page, name: str) -> list[Path]:
    """Full-page screenshots of ``page`` at desktop (1280x800) and phone (390x844) width:
    tests/artifacts/screenshots/<name>-desktop.png and -phone.png. Leaves the page at
    desktop size."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    paths = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)  # type: ignore[arg-type]
        page.wait_for_timeout(300)  # layout and charts settle at the new width
        path = SCREENSHOTS / f"{safe}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        paths.append(path)
    page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
    return paths


SERIOUS = ("serious", "critical")


def axe_violations(page: Page, impacts: tuple[str, ...] = SERIOUS) -> list[dict]:
    """Run axe-core on the page; its violations of the given impacts, each with the rule,
    its help text and the offending elements. Use a page of the ``axe_page`` fixture: under the
    dashboard's CSP the injected script does not run."""
    if not AXE_JS.exists():
        raise AssertionError(f"{AXE_JS} missing: cd dashboard && npm ci")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        try:
            page.add_script_tag(content=AXE_JS.read_text())
        except PlaywrightError as exc:
            raise AssertionError("axe-core could not be injected (the dashboard's CSP blocks "
                                 "inline scripts: use the axe_page fixture, whose context "
                                 f"bypasses it): {exc.message[:200]}") from exc
    found = page.evaluate("""async () => {
        const result = await window.axe.run(document, {resultTypes: ["violations"]});
        return result.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => n.target.join(" ") + " :: " +
                               (n.failureSummary || "").replace(/\\s+/g, " ")),
        }));
    }""")
    return [v for v in found if v["impact"] in impacts]


def describe_violations(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']}")
        lines += [f"    {n}" for n in v["nodes"][:6]]
        if len(v["nodes"]) > 6:
            lines.append(f"    … and {len(v['nodes']) - 6} more")
    return "\n".join(lines)


def fetch_json(page: Page, method: str, path: str, body: object = None,
               csrf: bool = True) -> dict:
    """``fetch`` from inside the page (its cookies, same origin), with the ``X-CSRF-Token``
    header read from the ``lookout_csrf`` cookie unless ``csrf`` is False. Returns
    ``{"status": int, "body": str}``."""
    return page.evaluate("""async ([method, path, body, csrf]) => {
        const token = (document.cookie.split("; ").find((c) => c.startsWith("lookout_csrf="))
                       || "").slice("lookout_csrf=".length);
        const headers = {};
        if (csrf && token) headers["X-CSRF-Token"] = decodeURIComponent(token);
        if (body !== null) headers["Content-Type"] = "application/json";
        const r = await fetch(path, {method, headers, credentials: "same-origin",
                                     body: body === null ? undefined : JSON.stringify(body)});
        return {status: r.status, body: await r.text()};
    }""", [method, path, body, csrf])
