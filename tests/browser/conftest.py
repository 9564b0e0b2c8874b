"""Fixtures of the browser tests (the helpers they use live in tests/browser/harness.py).

* ``server`` (session): ``lookout run`` (processor and API together) as a child process in its
  own process group, over HTTPS with a certificate from ``lookout make-certs``,
  ``UseAuthToken = True``, an admin and a viewer made with ``lookout create-user`` (random
  passwords), processing the PETS 2009 clip as a live camera: an MJPEG-over-HTTP server on
  loopback plays vtest.avi at its capture rate (7 fps) in a loop, so the camera runs, its preview
  changes and people cross its counting line for as long as the tests take. Readiness waits
  for /health and a processed frame, with a timeout; on failure the server's log is shown.
  Teardown ends the whole process group.
* ``browser`` (session): Chromium (``LOOKOUT_CHROMIUM``, default /usr/bin/chromium), headless.
* ``admin_page``, ``viewer_page``: pages signed in through the sign-in form, one per role for
  the whole session (a test starts from wherever the last one left the page: open a route with
  ``harness.goto``). ``axe_page``: an admin's page whose context bypasses the CSP, for
  ``harness.axe_violations``. ``fresh_page``: a factory of new signed-out pages.
* Every page made here is watched (``harness.Watch``): a request or WebSocket to any host but
  the server's, an uncaught script error, or a console error other than the API answering 4xx
  fails the test during which it happened.

The tests skip, saying why, only when Chromium or the built dashboard (dashboard/dist) is
missing; ``make test`` provides both.
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.browser.harness import (
    CAMERA_ID,
    CHROMIUM,
    CLIP_FPS,
    DESKTOP,
    DIST_INDEX,
    MAIN_ROUTES,
    PAGE_READY_MS,
    PHONE,
    REPO,
    Account,
    Server,
    axe_violations,
    check_watch,
    cli,
    describe_violations,
    fetch_json,
    goto,
    new_watched_page,
    pets_jpegs,
    server_config,
    shoot,
    sign_in,
    stop_group,
    wait_for_server,
    wait_ready,
    watch_of,
)
from tests.live_api import free_port
from tests.notify_servers import SmtpServer
from tests.test_live_http import Camera

# Helpers tests used to import from here; they live in harness (import them from there).
__all__ = ["MAIN_ROUTES", "PAGE_READY_MS", "PHONE", "axe_violations", "describe_violations",
           "fetch_json", "goto", "shoot", "wait_ready"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder carries the ``browser`` marker (``-m "not browser"``)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="package")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    """An SMTP server (aiosmtpd on loopback, STARTTLS and a login) for the whole session; the
    ``server`` reads it from its LOOKOUT_SMTP_* environment (the Settings page's test e-mail)."""
    with SmtpServer(tmp_path_factory.mktemp("browser-smtp")) as srv:
        yield srv


@pytest.fixture(scope="package")
def server(shared: Path, tmp_path_factory: pytest.TempPathFactory,
           smtp: SmtpServer) -> Iterator[Server]:
    """``lookout run`` over HTTPS on a looping real-time PETS camera, for the whole session;
    its e-mail goes to the ``smtp`` server."""
    if not CHROMIUM.exists():  # no server for tests that will skip anyway
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/ensure-chromium.sh installs it; "
                    "LOOKOUT_CHROMIUM names another)")
    if not DIST_INDEX.exists():
        pytest.skip(f"the dashboard is not built ({DIST_INDEX} missing): "
                    "cd dashboard && npm ci && npm run build")
    folder = tmp_path_factory.mktemp("browser-server")
    camera = Camera(free_port(), pets_jpegs(), interval=1.0 / CLIP_FPS)
    camera.start()
    camera_url = f"http://127.0.0.1:{camera.port}/stream.mjpg"
    try:
        certs = folder / "certs"
        res = cli("make-certs", "--host", "127.0.0.1", "--out", str(certs))
        assert res.returncode == 0, res.stderr
        port = free_port()
        config = server_config(folder, shared, port, camera_url,
                               certs / "processor" / "127.0.0.1.crt",
                               certs / "processor" / "127.0.0.1.key")
        accounts = {role: Account(f"{role}-{secrets.token_hex(3)}", secrets.token_urlsafe(18),
                                  role) for role in ("admin", "viewer")}
        for acc in accounts.values():
            res = cli("create-user", acc.username, "--role", acc.role, "--config", str(config),
                      "--password-stdin", stdin=acc.password + "\n")
            assert res.returncode == 0, res.stderr
        ca_file = certs / "ca" / "ca.pem"
        log_path = folder / "server.log"
        with open(log_path, "wb") as log:  # a file, not a pipe nobody reads
            proc = subprocess.Popen(
                [sys.executable, "-m", "processor.cli", "run", "--config", str(config),
                 "--no-progress"], cwd=REPO,
                env={**os.environ, **smtp.env(), "PYTHONUNBUFFERED": "1"},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        srv = Server(proc=proc, port=port, config=config, ca_file=ca_file, log_path=log_path,
                     admin=accounts["admin"], viewer=accounts["viewer"], camera_id=CAMERA_ID,
                     camera_url=camera_url,
                     ssl_context=ssl.create_default_context(cafile=str(ca_file)))
        try:
            wait_for_server(srv)
            yield srv
        finally:
            stop_group(proc)
    finally:
        camera.stop()


@pytest.fixture(scope="package")
def playwright_session() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser(playwright_session: Playwright) -> Iterator[Browser]:
    """Chromium, headless, launched once."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/ensure-chromium.sh installs it; "
                    "LOOKOUT_CHROMIUM names another)")
    chromium = playwright_session.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def fresh_page(browser: Browser, server: Server) -> Iterator[Callable[..., Page]]:
    """A factory of new, signed-out watched pages (each in its own context), closed and
    checked after the test."""
    made: list[tuple[BrowserContext, Page]] = []

    def make(**context_options: object) -> Page:
        context, page = new_watched_page(browser, server, **context_options)
        made.append((context, page))
        return page

    yield make
    try:
        for _, page in made:
            check_watch(page)
    finally:
        for context, _ in made:
            context.close()


def _signed_in_page(browser: Browser, server: Server, account: Account,
                    **context_options: object) -> Iterator[Page]:
    context, page = new_watched_page(browser, server, **context_options)
    try:
        sign_in(page, server, account)
        check_watch(page)
        yield page
    finally:
        context.close()


@pytest.fixture(scope="package")
def _admin_session_page(browser: Browser, server: Server) -> Iterator[Page]:
    yield from _signed_in_page(browser, server, server.admin)


@pytest.fixture(scope="package")
def _viewer_session_page(browser: Browser, server: Server) -> Iterator[Page]:
    yield from _signed_in_page(browser, server, server.viewer)


@pytest.fixture(scope="package")
def _axe_session_page(browser: Browser, server: Server) -> Iterator[Page]:
    # The dashboard's CSP allows scripts from 'self' only, so axe-core (injected by the test)
    # runs in a context that bypasses it; every other page runs under the real CSP.
    yield from _signed_in_page(browser, server, server.admin, bypass_csp=True)


def _per_test(page: Page, server: Server, account: Account) -> Iterator[Page]:
    watch = watch_of(page)
    page.set_viewport_size(DESKTOP)  # type: ignore[arg-type]
    if fetch_json(page, "GET", "/auth/session")["status"] != 200:
        sign_in(page, server, account)  # an earlier test signed this page out
    watch.reset()
    yield page
    check_watch(page)


@pytest.fixture
def admin_page(_admin_session_page: Page, server: Server) -> Iterator[Page]:
    """A page signed in (through the form) as an admin; shared by the session's tests."""
    yield from _per_test(_admin_session_page, server, server.admin)


@pytest.fixture
def viewer_page(_viewer_session_page: Page, server: Server) -> Iterator[Page]:
    """A page signed in (through the form) as a viewer; shared by the session's tests."""
    yield from _per_test(_viewer_session_page, server, server.viewer)


@pytest.fixture
def axe_page(_axe_session_page: Page, server: Server) -> Iterator[Page]:
    """An admin's page whose context bypasses CSP, for :func:`axe_violations`."""
    yield from _per_test(_axe_session_page, server, server.admin)

