"""Authentication dependencies: every route but the public ones requires one of these.

A request is authenticated by ``Authorization: Bearer <token>`` or, from a browser, by the
session cookie (:data:`SESSION_COOKIE`, set by ``POST /auth/session``).  The bearer header
wins when both are sent.  A cookie is sent by the browser on its own, so a
cookie-authenticated POST, PUT, PATCH or DELETE must also carry the header
:data:`CSRF_HEADER` equal to the :data:`CSRF_COOKIE` cookie (which only pages of this
origin can read), and that value must be the one the session was issued with; else 403.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer

from api.auth import SESSION_USE, AuthError, Role, TokenClaims, User, csrf_digest
from api.context import ApiContext

oauth2 = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)

SESSION_COOKIE = "lookout_session"
CSRF_COOKIE = "lookout_csrf"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_REFUSED = "missing or wrong CSRF token"


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.context
    return ctx


Context = Annotated[ApiContext, Depends(get_context)]


@dataclass(frozen=True)
class Principal:
    username: str
    role: Role
    via: str = "open"  # "bearer", "session", or "open" (authentication is off)
    expires_at: float | None = None  # Unix time the token or session expires
    jti: str = ""
    csrf: str = ""  # the session's CSRF value (sessions only)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _claims(ctx: ApiContext, token: str, use: str) -> tuple[TokenClaims, User]:
    """The claims of a valid token for a user that still exists with the same generation."""
    try:
        claims = ctx.tokens.verify_claims(token)
    except AuthError as exc:
        raise _unauthorized(str(exc)) from exc
    if claims.use != use:  # a session token as a bearer, or a bearer token in the cookie
        raise _unauthorized("invalid token")
    user = ctx.users.get(claims.username)
    if user is None:  # deleted since the token was issued
        raise _unauthorized("unknown user")
    if not hmac.compare_digest(user.generation, claims.generation):
        # The password was changed, or the user deleted and made again, since the token was
        # issued.
        raise _unauthorized("token revoked")
    return claims, user


def authenticate(ctx: ApiContext, method: str, bearer: str | None,
                 cookies: Mapping[str, str], csrf_header: str | None) -> Principal:
    """Who sends a request: the bearer token's user, else the session cookie's (with the
    CSRF check for writes), else 401.  Everyone is an admin when authentication is off."""
    if not ctx.config().api.use_auth_token:
        return Principal("anonymous", "admin")
    if bearer:
        claims, user = _claims(ctx, bearer, "")
        return Principal(claims.username, user.role, "bearer", claims.expires_at, claims.jti)
    session = cookies.get(SESSION_COOKIE)
    if not session:
        raise _unauthorized("not authenticated")
    claims, user = _claims(ctx, session, SESSION_USE)
    if claims.jti in ctx.revoked_sessions:
        raise _unauthorized("signed out")
    csrf = cookies.get(CSRF_COOKIE, "")
    if method.upper() in UNSAFE_METHODS:
        sent = csrf_header or ""
        # Both compared in constant time: the header equals the cookie, and is the value the
        # session was issued with (a cookie planted by another site does not match it).
        same = hmac.compare_digest(sent.encode("utf-8", "surrogatepass"),
                                   csrf.encode("utf-8", "surrogatepass"))
        bound = hmac.compare_digest(csrf_digest(sent), claims.csrf)
        if not sent or not (same and bound):
            raise HTTPException(403, CSRF_REFUSED)
    return Principal(claims.username, user.role, "session", claims.expires_at, claims.jti, csrf)


def current_user(request: Request, ctx: Context,
                 token: Annotated[str | None, Depends(oauth2)]) -> Principal:
    return authenticate(ctx, request.method, token, request.cookies,
                        request.headers.get(CSRF_HEADER))


def expires_in(user: Principal, default: int) -> int:
    """Seconds left of the user's token or session (``default`` when authentication is off)."""
    if user.expires_at is None:
        return default
    return max(0, int(user.expires_at - time.time()))


def require_viewer(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    return user


def require_admin(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    if user.role != "admin":
        raise HTTPException(403, "this needs the admin role")
    return user


Viewer = Annotated[Principal, Depends(require_viewer)]
Admin = Annotated[Principal, Depends(require_admin)]
