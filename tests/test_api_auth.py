"""Every route in the OpenAPI schema, except the public ones, answers 401 without a token,
401 with an expired or wrongly signed token, and 403 for a viewer on admin routes."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from api.auth import TokenIssuer, User, hash_password, verify_password
from api.deps import require_admin
from tests.conftest import TEST_PASSWORD, app_with_users

PUBLIC = {("GET", "/health"), ("POST", "/auth/token"), ("PUT", "/auth/access_token"),
          ("POST", "/auth/session"), ("DELETE", "/auth/session")}
PASSWORD = TEST_PASSWORD


@pytest.fixture
def app(x86_config: Path):
    return app_with_users(x86_config)


def login(client: TestClient, user: str, password: str = PASSWORD):
    return client.post("/auth/token", data={"username": user, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_routes(app) -> list[APIRoute]:
    """Every API route, including those of included routers (nested in this FastAPI)."""
    return [rc.route for rc in iter_route_contexts(app.routes) if isinstance(rc.route, APIRoute)]


def routes(app) -> list[tuple[str, str, bool]]:
    """(method, path with sample parameters, needs admin) for every API route."""
    out = []
    for route in api_routes(app):
        admin = any(d.call is require_admin for d in _walk(route.dependant))
        path = re.sub(r"\{[^}]+\}", "pets-view1", route.path)
        for method in sorted(route.methods):
            out.append((method, path, admin))
    return out


def _walk(dep):
    yield dep
    for sub in dep.dependencies:
        yield from _walk(sub)


def test_schema_lists_every_route(app) -> None:
    schema_paths = set(app.openapi()["paths"])
    route_paths = {r.path for r in api_routes(app)}
    assert route_paths == schema_paths


def test_every_non_public_route_needs_a_valid_token(app) -> None:
    client = TestClient(app)
    issuer: TokenIssuer = app.state.context.tokens
    user = User("admin1", "admin", "")
    expired, _ = issuer.issue(user, now=datetime.now(UTC) - timedelta(days=2))
    forged = jwt.encode({"sub": "admin1", "role": "admin", "iss": "lookout",
                         "iat": datetime.now(UTC), "exp": datetime.now(UTC) + timedelta(hours=1)},
                        b"not-the-key-" * 4, algorithm="HS256")
    unsigned = jwt.encode({"sub": "admin1", "role": "admin"}, None, algorithm="none")
    checked = 0
    for method, path, _ in routes(app):
        if (method, path) in PUBLIC:
            continue
        for headers in ({}, bearer(expired), bearer(forged), bearer(unsigned),
                        bearer("garbage")):
            r = client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
        checked += 1
    assert checked >= 5


def test_viewer_is_refused_admin_routes(app) -> None:
    client = TestClient(app)
    token = login(client, "viewer1").json()["access_token"]
    admin_routes = [(m, p) for m, p, admin in routes(app) if admin]
    assert admin_routes, "no admin route found"
    for method, path in admin_routes:
        r = client.request(method, path, headers=bearer(token))
        assert r.status_code == 403, (method, path, r.status_code, r.text)
    viewer_routes = [(m, p) for m, p, admin in routes(app)
                     if not admin and (m, p) not in PUBLIC and m == "GET"]
    assert len(viewer_routes) >= 10
    for method, path in viewer_routes:
        # Streams never end: open them, read the status, close.
        with client.stream(method, path, headers=bearer(token)) as r:
            assert r.status_code not in (401, 403), (method, path, r.status_code)


def test_login_token_and_roles(app) -> None:
    client = TestClient(app)
    r = login(client, "admin1")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "admin1" and claims["role"] == "admin"
    assert claims["exp"] - claims["iat"] == 3600
    me = client.get("/auth/me", headers=bearer(body["access_token"])).json()
    assert me["username"] == "admin1" and me["role"] == "admin"
    # Smart Social Distancing's JSON login still works.
    r = client.put("/auth/access_token", json={"user": "viewer1", "password": PASSWORD})
    assert r.status_code == 200
    assert login(client, "admin1", "wrong password").status_code == 401
    assert login(client, "nobody", "wrong password").status_code == 401


def test_admin_manages_users_and_deleted_users_lose_access(app) -> None:
    client = TestClient(app)
    admin = bearer(login(client, "admin1").json()["access_token"])
    r = client.post("/auth/users", headers=admin,
                    json={"username": "op2", "password": "longenough1", "role": "viewer"})
    assert r.status_code == 201
    assert client.post("/auth/users", headers=admin, json={
        "username": "op2", "password": "longenough1"}).status_code == 422
    assert client.post("/auth/users", headers=admin, json={
        "username": "op3", "password": "short"}).status_code == 422
    op2 = bearer(login(client, "op2", "longenough1").json()["access_token"])
    assert client.get("/auth/me", headers=op2).status_code == 200
    assert {u["username"] for u in client.get("/auth/users", headers=admin).json()} == {
        "admin1", "viewer1", "op2"}
    assert client.delete("/auth/users/op2", headers=admin).status_code == 204
    assert client.get("/auth/me", headers=op2).status_code == 401
    assert client.delete("/auth/users/admin1", headers=admin).status_code == 409


def test_login_attempts_are_rate_limited(app) -> None:
    client = TestClient(app)
    codes = [login(client, "admin1", f"wrong{i}").status_code for i in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    r = login(client, "admin1")  # even the right password waits
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # Another user from the same address is limited too (the address has failed 5 times).
    assert login(client, "viewer1").status_code == 429


def test_passwords_are_hashed_and_secret_is_random(app, x86_config: Path) -> None:
    users_file = x86_config.parent / "data" / "auth" / "users.json"
    text = users_file.read_text()
    assert PASSWORD not in text and "scrypt$" in text
    assert oct(users_file.stat().st_mode & 0o777) == "0o600"
    secret = x86_config.parent / "data" / "auth" / "secret.key"
    assert len(secret.read_bytes()) == 32 and oct(secret.stat().st_mode & 0o777) == "0o600"
    h = hash_password("abc12345")
    assert h != hash_password("abc12345") and verify_password("abc12345", h)
    assert not verify_password("abc12346", h)


def test_expiry_is_enforced(x86_config: Path) -> None:
    issuer = TokenIssuer(b"k" * 32, expire_minutes=1)
    token, _ = issuer.issue(User("u", "viewer", ""), now=datetime.now(UTC) - timedelta(
        seconds=61))
    from api.auth import AuthError

    with pytest.raises(AuthError, match="expired"):
        issuer.verify(token)
    fresh, _ = issuer.issue(User("u", "viewer", ""))
    assert issuer.verify(fresh) == ("u", "viewer")
    time.sleep(0)  # (no sleeping needed: expiry is checked against the claims)


def test_cors_is_off_by_default_and_never_wildcard(app) -> None:
    client = TestClient(app)
    r = client.options("/status", headers={"Origin": "https://evil.example",
                                           "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers
