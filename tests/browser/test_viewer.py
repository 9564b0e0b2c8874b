"""A viewer sees every page but can change nothing: on each main page every control that
would write is disabled (the page sends no write while the viewer looks around), and every
write route of the API (listed from the server's own OpenAPI document) answers 403 to a
request carrying the viewer's session cookie and a correct CSRF header."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page

from tests.browser.harness import Server, fetch_json, goto, watch_of

# Pages where nothing writes: every control there only chooses what to show or download.
READ_ONLY_PAGES = {"charts", "export"}
# Controls that only change what the page shows, allowed enabled for a viewer anywhere.
VIEW_ONLY = re.compile(r"^(Select|Show|Hide|Reload|Refresh|Cancel|Undo|Zoom|Menu|Close)\b",
                       re.I)
# Writes a viewer may send: signing in and out, renewing the session, a live-stream ticket,
# and an export (a zip of what a viewer may read).
VIEWER_WRITES = {
    ("POST", "/auth/session"), ("PUT", "/auth/session"), ("DELETE", "/auth/session"),
    ("POST", "/auth/token"), ("PUT", "/auth/access_token"), ("POST", "/live/ticket"),
    ("POST", "/export"), ("PUT", "/export"),  # exports read; PUT is the reference's method
}
NO_SUCH_ID = "h5-no-such-id"  # path parameters: a refused write must not depend on the id

CONTROLS_JS = """() => {
    const sel = "button, input, select, textarea, [contenteditable=''], [contenteditable=true]," +
        " [role=button], [role=checkbox], [role=switch], [role=radio], [role=slider]," +
        " [role=spinbutton], [role=textbox], [role=combobox], [role=application]";
    const text = (el) => (el ? el.textContent : "").replace(/\\s+/g, " ").trim();
    const name = (el) => {
        if (el.getAttribute("aria-label")) return el.getAttribute("aria-label");
        const by = el.getAttribute("aria-labelledby");
        if (by) return by.split(/\\s+/).map((id) => text(document.getElementById(id))).join(" ");
        if (el.labels && el.labels.length) return text(el.labels[0]);
        return text(el) || el.getAttribute("title") || el.getAttribute("placeholder") ||
            el.getAttribute("name") || "";
    };
    const main = document.querySelector("main");
    return Array.from(main ? main.querySelectorAll(sel) : []).map((el) => ({
        tag: el.tagName.toLowerCase(),
        type: el.getAttribute("type") || el.getAttribute("role") || "",
        name: name(el),
        disabled: !!(el.disabled || el.closest("fieldset[disabled]") ||
                     el.getAttribute("aria-disabled") === "true"),
        readonly: !!(el.readOnly || el.getAttribute("aria-readonly") === "true"),
    }));
}"""


def expand_disclosures(page: Page) -> None:
    """Open every enabled disclosure button (aria-expanded="false") in main, so that the
    controls it hides are checked too."""
    for _ in range(20):
        closed = page.locator("main button[aria-expanded=false]:enabled")
        if closed.count() == 0:
            return
        closed.first.click()
        page.wait_for_timeout(100)


def enabled_change_controls(page: Page) -> list[str]:
    controls = page.evaluate(CONTROLS_JS)
    return [f"{c['tag']}[{c['type']}] {c['name']!r}" for c in controls
            if not c["disabled"] and not c["readonly"] and not VIEW_ONLY.match(c["name"])]


def test_viewer_finds_every_change_control_disabled(viewer_page: Page, server: Server) -> None:
    page, watch = viewer_page, watch_of(viewer_page)
    found: dict[str, list[str]] = {}
    for route in server.routes():
        goto(page, server, route)
        expand_disclosures(page)
        if route.split("/")[0] not in READ_ONLY_PAGES:
            bad = enabled_change_controls(page)
            if bad:
                found[route] = bad
    writes = [w for w in watch.writes()
              if (w.split()[0], re.sub(r"^https://[^/]+|\?.*$", "", w.split()[1]))
              not in VIEWER_WRITES]
    assert not writes, f"the viewer's pages sent writes: {writes}"
    assert not found, "change controls enabled for a viewer:\n" + "\n".join(
        f"  #/{route}: {', '.join(names)}" for route, names in found.items())


def write_routes(page: Page) -> list[tuple[str, str]]:
    """Every POST/PUT/PATCH/DELETE route of the server's OpenAPI document, path parameters
    filled with an id that names nothing."""
    spec = fetch_json(page, "GET", "/openapi.json")
    assert spec["status"] == 200, spec
    routes = []
    for path, ops in json.loads(spec["body"])["paths"].items():
        for method in ops:
            method = method.upper()
            if method in ("POST", "PUT", "PATCH", "DELETE") and \
                    (method, path) not in VIEWER_WRITES:
                routes.append((method, re.sub(r"\{[^}]+\}", NO_SUCH_ID, path)))
    return routes


def test_api_refuses_every_write_with_the_viewers_cookie(viewer_page: Page,
                                                        server: Server) -> None:
    page = viewer_page
    goto(page, server, "cameras")
    routes = write_routes(page)
    assert len(routes) >= 20, routes  # the document lists the API's writes
    answers = {f"{m} {p}": fetch_json(page, m, p, {}) for m, p in routes}
    accepted = {k: f"{a['status']} {a['body'][:160]}" for k, a in answers.items()
                if a["status"] != 403}
    assert not accepted, "writes not refused (403) for a viewer's cookie + CSRF header:\n" + \
        "\n".join(f"  {k}: {v}" for k, v in accepted.items())
    # Refused because of the role, not for a missing CSRF header.
    assert not [k for k, a in answers.items() if "csrf" in a["body"].lower()]
    # The viewer is still signed in and can read.
    assert fetch_json(page, "GET", "/auth/session")["status"] == 200
    assert fetch_json(page, "GET", "/cameras")["status"] == 200
