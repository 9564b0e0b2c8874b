"""Signing in through the dashboard's form: a wrong password is refused with a message, the
right one lands on the cameras page, the session survives a reload without a token anywhere a
script or a URL could leak it, and signing out ends the session (its cookie is refused
afterwards, even replayed)."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.browser.harness import PAGE_READY_MS, Server, fetch_json, sign_in, wait_ready

SESSION_COOKIE = "lookout_session"
CSRF_COOKIE = "lookout_csrf"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def storage(page: Page) -> str:
    """Everything in localStorage and sessionStorage, as one string."""
    return str(page.evaluate("""() => {
        const dump = (s) => Object.keys(s).map((k) => k + "=" + s.getItem(k)).join("\\n");
        return dump(window.localStorage) + "\\n" + dump(window.sessionStorage);
    }"""))


def test_wrong_password_shows_an_error_and_signs_nobody_in(
        fresh_page: Callable[..., Page], server: Server) -> None:
    page = fresh_page()
    page.goto(server.url("login"))
    page.get_by_label("User name").fill(server.admin.username)
    page.get_by_label("Password").fill(server.admin.password + "-wrong")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible(timeout=PAGE_READY_MS)
    expect(alert).to_contain_text(re.compile(r"wrong|incorrect|invalid", re.I))
    assert "#/login" in page.url
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    assert not any(c["name"] == SESSION_COOKIE for c in page.context.cookies())
    assert fetch_json(page, "GET", "/auth/session")["status"] == 401


def test_sign_in_reload_and_sign_out(fresh_page: Callable[..., Page], server: Server) -> None:
    page = fresh_page()
    sign_in(page, server, server.admin)
    expect(page.get_by_role("heading", level=1)).to_contain_text(re.compile("camera", re.I))
    expect(page.locator("header")).to_contain_text(server.admin.username)

    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies[SESSION_COOKIE]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert cookies[CSRF_COOKIE]["sameSite"] == "Strict"
    # Scripts cannot read the session, and no token sits in storage or in the URL.
    assert SESSION_COOKIE not in page.evaluate("() => document.cookie")
    for where, text in (("storage", storage(page)), ("URL", page.url)):
        assert session["value"] not in text, f"the session token is in the page's {where}"
        assert not JWT.search(text), f"a token is in the page's {where}: {text[:200]}"
    assert "token" not in page.url.lower()

    # A reload keeps the session (the cookie, not anything the page stored).
    page.reload()
    wait_ready(page)
    assert page.url.endswith("#/cameras")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_label("Password")).to_have_count(0)
    assert fetch_json(page, "GET", "/auth/session")["status"] == 200

    # Signing out ends the session: back to the form, the API refuses the page, and the old
    # cookie replayed in a new browser is refused too.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"#/login$"), timeout=PAGE_READY_MS)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert fetch_json(page, "GET", "/auth/session")["status"] == 401
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=PAGE_READY_MS)
    assert not JWT.search(storage(page))

    replay = fresh_page()
    replay.context.add_cookies([{k: session[k] for k in  # type: ignore[misc]
                                 ("name", "value", "domain", "path", "secure", "httpOnly",
                                  "sameSite")}])
    replay.goto(server.url("cameras"))
    assert fetch_json(replay, "GET", "/auth/session")["status"] == 401
    expect(replay.get_by_role("button", name="Sign in")).to_be_visible(timeout=PAGE_READY_MS)
