"""Browser sessions (/auth/session): the HttpOnly session cookie and the CSRF cookie, against
the real application (every request through its middleware and dependencies)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.deps import CSRF_COOKIE, SESSION_COOKIE
from tests.conftest import TEST_PASSWORD, app_with_users

PASSWORD = TEST_PASSWORD
CAMERA = "pets-view1"
ROI = {"points": [[0, 0], [300, 0], [300, 200]]}


@pytest.fixture
def app(x86_config: Path):
    return app_with_users(x86_config)


def sign_in(app, user: str = "admin1", password: str = PASSWORD) -> TestClient:
    client = TestClient(app)
    r = client.post("/auth/session", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return client


def set_cookies(response) -> dict[str, SimpleCookie]:
    out = {}
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            out[name] = cookie
    return out


def csrf(client: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": client.cookies[CSRF_COOKIE]}


def test_sign_in_sets_httponly_strict_cookies_and_no_token_in_the_body(app) -> None:
    client = TestClient(app)
    r = client.post("/auth/session", json={"username": "admin1", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body == {"username": "admin1", "role": "admin", "expires_in": 3600}
    assert r.headers["cache-control"] == "no-store"
    assert client.cookies[SESSION_COOKIE] not in r.text  # only in the cookie
    cookies = set_cookies(r)
    session = cookies[SESSION_COOKIE][SESSION_COOKIE]
    assert session["httponly"] is True and session["samesite"].lower() == "strict"
    assert session["path"] == "/" and session["max-age"] == "3600"
    assert not session["secure"]  # plain HTTP here; the HTTPS test sees Secure
    token = cookies[CSRF_COOKIE][CSRF_COOKIE]
    assert not token["httponly"] and token["samesite"].lower() == "strict"
    assert len(token.value) >= 40 and token.value != session.value


def test_a_reload_keeps_the_session_through_the_cookie_alone(app) -> None:
    first = sign_in(app)
    # A new page load: no token anywhere but the browser's cookie jar.
    reloaded = TestClient(app, cookies={SESSION_COOKIE: first.cookies[SESSION_COOKIE],
                                        CSRF_COOKIE: first.cookies[CSRF_COOKIE]})
    r = reloaded.get("/auth/session")
    assert r.status_code == 200
    assert r.json()["username"] == "admin1" and r.json()["role"] == "admin"
    assert 3500 < r.json()["expires_in"] <= 3600
    assert reloaded.get("/cameras").status_code == 200
    assert reloaded.get("/auth/me").json()["username"] == "admin1"
    assert TestClient(app).get("/auth/session").status_code == 401  # no cookie: nobody


def test_cookie_writes_need_the_csrf_header(app) -> None:
    client = sign_in(app)
    path = f"/cameras/{CAMERA}/roi"
    r = client.put(path, json=ROI)
    assert r.status_code == 403 and r.json()["detail"] == "missing or wrong CSRF token"
    assert client.put(path, json=ROI, headers={"X-CSRF-Token": "x" * 43}).status_code == 403
    assert client.put(path, json=ROI, headers={"X-CSRF-Token": ""}).status_code == 403
    assert client.delete(path).status_code == 403
    assert client.post("/auth/users", json={"username": "u2", "password": "longenough1"}
                       ).status_code == 403
    # A CSRF cookie planted by another page, with a header to match, is not the session's.
    planted = TestClient(app, cookies={SESSION_COOKIE: client.cookies[SESSION_COOKIE],
                                       CSRF_COOKIE: "planted-value"})
    assert planted.put(path, json=ROI, headers={"X-CSRF-Token": "planted-value"}
                       ).status_code == 403
    r = client.put(path, json=ROI, headers=csrf(client))
    assert r.status_code == 200, r.text
    assert r.json()["points"] == [[0, 0], [300, 0], [300, 200]]
    # Reads need no header.
    assert client.get(path).status_code == 200


def test_bearer_tokens_still_work_and_tokens_do_not_cross_over(app) -> None:
    client = TestClient(app)
    token = client.post("/auth/token", data={"username": "admin1", "password": PASSWORD}
                        ).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/auth/session", headers=bearer).json()["username"] == "admin1"
    # A bearer request is not sent by the browser on its own: no CSRF header needed.
    assert client.put(f"/cameras/{CAMERA}/roi", json=ROI, headers=bearer).status_code == 200
    # A bearer token is not a session cookie, and a session token is not a bearer token.
    assert TestClient(app, cookies={SESSION_COOKIE: token}).get("/cameras").status_code == 401
    session = sign_in(app).cookies[SESSION_COOKIE]
    assert client.get("/cameras", headers={"Authorization": f"Bearer {session}"}
                      ).status_code == 401


def test_sign_out_clears_the_cookies_and_ends_the_session(app) -> None:
    client = sign_in(app)
    copied = {SESSION_COOKIE: client.cookies[SESSION_COOKIE],
              CSRF_COOKIE: client.cookies[CSRF_COOKIE]}
    r = client.delete("/auth/session", headers=csrf(client))
    assert r.status_code == 204
    cookies = set_cookies(r)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        assert cookies[name][name]["max-age"] == "0" and cookies[name][name].value in ("", '""')
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/auth/session").status_code == 401
    # A copy of the cookie taken before signing out is refused too.
    r = TestClient(app, cookies=copied).get("/cameras")
    assert r.status_code == 401 and r.json()["detail"] == "signed out"
    # Signing out without a session just clears.
    assert TestClient(app).delete("/auth/session").status_code == 204


def test_expired_or_forged_session_cookies_are_refused(app) -> None:
    ctx = app.state.context
    user = ctx.users.get("admin1")
    value = "v" * 43
    old, _ = ctx.tokens.issue(user, now=datetime.now(UTC) - timedelta(hours=2),
                              session_csrf=value)
    client = TestClient(app, cookies={SESSION_COOKIE: old, CSRF_COOKIE: value})
    r = client.get("/auth/session")
    assert r.status_code == 401 and r.json()["detail"] == "token expired"
    assert client.get("/cameras").status_code == 401
    fresh, _ = ctx.tokens.issue(user, session_csrf=value)
    forged = fresh[:-4] + ("AAAA" if not fresh.endswith("AAAA") else "BBBB")
    assert TestClient(app, cookies={SESSION_COOKIE: forged}).get("/cameras").status_code == 401
    assert TestClient(app, cookies={SESSION_COOKIE: fresh}).get("/cameras").status_code == 200


def test_viewer_sessions_read_but_cannot_write(app) -> None:
    client = sign_in(app, "viewer1")
    assert client.get("/auth/session").json()["role"] == "viewer"
    assert client.get("/cameras").status_code == 200
    r = client.put(f"/cameras/{CAMERA}/roi", json=ROI, headers=csrf(client))
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert client.get("/auth/users").status_code == 403


def test_renewal_slides_the_session_and_keeps_the_csrf_value(app) -> None:
    client = sign_in(app)
    before = client.cookies[SESSION_COOKIE]
    token = client.cookies[CSRF_COOKIE]
    assert client.put("/auth/session").status_code == 403  # a write: CSRF needed
    r = client.put("/auth/session", headers=csrf(client))
    assert r.status_code == 200 and r.json()["expires_in"] == 3600
    assert client.cookies[SESSION_COOKIE] != before
    assert client.cookies[CSRF_COOKIE] == token
    assert client.put(f"/cameras/{CAMERA}/roi", json=ROI, headers=csrf(client)
                      ).status_code == 200


def test_a_new_password_ends_the_users_sessions(app) -> None:
    admin = sign_in(app)
    viewer = sign_in(app, "viewer1")
    r = admin.put("/auth/users/viewer1", json={"password": "another password"},
                  headers=csrf(admin))
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    r = viewer.get("/auth/session")
    assert r.status_code == 401 and r.json()["detail"] == "token revoked"
    sign_in(app, "viewer1", "another password")


def test_wrong_passwords_are_refused_and_limited_with_the_token_login(app) -> None:
    client = TestClient(app)
    codes = [client.post("/auth/session", json={"username": "admin1", "password": f"x{i}"}
                         ).status_code for i in range(3)]
    codes += [client.post("/auth/token", data={"username": "admin1", "password": f"y{i}"}
                          ).status_code for i in range(2)]
    assert codes == [401] * 5
    assert SESSION_COOKIE not in client.cookies
    r = client.post("/auth/session", json={"username": "admin1", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert client.post("/auth/session", json={"username": "admin1"}).status_code == 422


def test_the_live_ticket_works_with_the_session_cookie(app) -> None:
    client = sign_in(app, "viewer1")
    assert client.post("/live/ticket").status_code == 403
    r = client.post("/live/ticket", headers=csrf(client))
    assert r.status_code == 200 and r.json()["expires_in"] > 0


def test_without_authentication_everyone_is_admin(app, x86_config: Path) -> None:
    text = x86_config.read_text()
    assert "UseAuthToken = True" in text
    x86_config.write_text(text.replace("UseAuthToken = True", "UseAuthToken = False"))
    client = TestClient(app)
    r = client.get("/auth/session")
    assert r.status_code == 200
    assert r.json() == {"username": "anonymous", "role": "admin", "expires_in": 3600}
    r = client.post("/auth/session", json={"username": "x", "password": "y"})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    assert SESSION_COOKIE not in client.cookies
    assert client.put(f"/cameras/{CAMERA}/roi", json=ROI).status_code == 200
