"""No page needs the internet: an admin opens every main page under the dashboard's real CSP;
every request and WebSocket goes to the processor itself, the dashboard's own files all load,
and nothing is blocked by the CSP (a blocked load shows up as a console error, which fails the
test too)."""

from __future__ import annotations

import urllib.parse

from playwright.sync_api import Page, Response

from tests.browser.harness import Server, goto, watch_of


def test_every_main_page_requests_only_the_processor(admin_page: Page, server: Server) -> None:
    page, watch = admin_page, watch_of(admin_page)
    failed: list[str] = []

    def on_response(response: Response) -> None:
        path = urllib.parse.urlsplit(response.url).path
        if path.startswith("/dashboard") and response.status >= 400:
            failed.append(f"{response.status} {response.url}")

    page.on("response", on_response)
    try:
        for route in server.routes():
            goto(page, server, route)
            page.wait_for_timeout(500)  # previews, charts and live numbers start loading
    finally:
        page.remove_listener("response", on_response)
    urls = [url for _, url in watch.requests]
    hosts = {urllib.parse.urlsplit(u).netloc for u in urls if u.startswith(("https:", "wss:"))}
    assert hosts == {server.netloc}, f"hosts requested: {sorted(hosts)}"
    assert not watch.foreign, watch.foreign
    paths = {urllib.parse.urlsplit(u).path for u in urls}
    assert any(p.endswith(".js") and p.startswith("/dashboard/") for p in paths), sorted(paths)
    assert any(p.endswith(".css") and p.startswith("/dashboard/") for p in paths), sorted(paths)
    assert "/auth/session" in paths
    assert not failed, f"dashboard files that did not load: {failed}"
