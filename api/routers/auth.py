"""``/auth``: OAuth2 password flow, browser sessions, and user management for admins.

Browser sessions (``/auth/session``): the dashboard signs in with a JSON body and gets two
cookies instead of a token it would have to keep where scripts can read it:

* ``lookout_session``: a signed, expiring session token (``[API] TokenExpireMinutes``);
  HttpOnly, SameSite=Strict, Path=/, Secure when the request came over HTTPS;
* ``lookout_csrf``: a random value the page reads and sends back as ``X-CSRF-Token`` on
  every POST, PUT, PATCH and DELETE (see :mod:`api.deps`); SameSite=Strict, not HttpOnly.

``PUT`` renews both (a sliding session), ``DELETE`` signs out (the session is refused from
then on, even if its cookie was copied) and clears them.  Wrong passwords count against the
same limiter as ``/auth/token``.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, Field

from api.auth import AuthError, LoginTicket, User, UserError
from api.deps import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    Admin,
    Context,
    Principal,
    Viewer,
    authenticate,
    current_user,
    expires_in,
    oauth2,
    require_admin,
)
from api.limits import Busy

router = APIRouter(prefix="/auth", tags=["Auth"])


class Token(BaseModel):
    access_token: str
    token: str = Field(description="The same token: the field Smart Social Distancing's "
                       "clients read.")
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=64)
    password: str = Field(min_length=8, max_length=1024)
    role: Literal["admin", "viewer"] = "viewer"


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class SessionOut(BaseModel):
    username: str
    role: Literal["admin", "viewer"]
    expires_in: int = Field(description="Seconds until the session (or token) expires.")


class UserChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["admin", "viewer"] | None = None
    password: str | None = Field(None, min_length=8, max_length=1024,
                                 description="A new password ends the user's tokens and "
                                 "sessions.")


class UserOut(BaseModel):
    username: str
    role: str
    created: str


async def _check_password(ctx: Context, request: Request, username: str,
                          password: str) -> User:
    """The user once the password is right; 401 when wrong, 429 while rate-limited."""
    client = request.client.host if request.client else "unknown"
    ticket = ctx.limiter.reserve(username, client)  # counted before the password is checked
    if not isinstance(ticket, LoginTicket):
        raise HTTPException(429, "too many failed logins; try again later",
                            headers={"Retry-After": str(int(ticket) + 1)})
    try:
        user = await ctx.logins.run(ctx.users.authenticate, username, password)
    except Busy as exc:  # not checked: neither a failure nor a success
        ctx.limiter.release(ticket)
        raise HTTPException(503, "too many logins at once; try again shortly",
                            headers={"Retry-After": str(exc.retry_after)}) from exc
    except AuthError as exc:
        ctx.limiter.done(ticket, ok=False)
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
    except BaseException:  # the client left mid-check: count it as a failure
        ctx.limiter.done(ticket, ok=False)
        raise
    ctx.limiter.done(ticket, ok=True)
    return user


async def _login(ctx: Context, request: Request, response: Response, username: str,
                 password: str) -> Token:
    user = await _check_password(ctx, request, username, password)
    await ctx.in_thread(ctx.config)  # the lifetime of [API] TokenExpireMinutes as it is now
    token, expires = ctx.tokens.issue(user)
    response.headers["Cache-Control"] = "no-store"
    return Token(access_token=token, token=token, expires_in=expires)


def _set_session(ctx: Context, request: Request, response: Response, user: User,
                 csrf: str | None = None) -> SessionOut:
    """Issue a session for ``user`` into the response's cookies (keeping ``csrf`` when
    renewing, so requests the page has in flight keep a valid header)."""
    csrf = csrf or secrets.token_urlsafe(32)
    ctx.config()  # the lifetime of [API] TokenExpireMinutes as it is now
    token, expires = ctx.tokens.issue(user, session_csrf=csrf)
    secure = request.url.scheme == "https"
    response.set_cookie(SESSION_COOKIE, token, max_age=expires, path="/", secure=secure,
                        httponly=True, samesite="strict")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=expires, path="/", secure=secure,
                        httponly=False, samesite="strict")
    response.headers["Cache-Control"] = "no-store"
    return SessionOut(username=user.username, role=user.role, expires_in=expires)


def _clear_session(request: Request, response: Response) -> None:
    secure = request.url.scheme == "https"
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=httponly,
                               samesite="strict")
    response.headers["Cache-Control"] = "no-store"


def _default_expiry(ctx: Context) -> int:
    return int(ctx.tokens.expire.total_seconds())


@router.post("/session", response_model=SessionOut, summary="Sign in a browser (cookies)",
             responses={401: {"description": "wrong user name or password"},
                        429: {"description": "too many failed logins (Retry-After)"}})
async def create_session(ctx: Context, request: Request, response: Response,
                         body: SessionIn) -> SessionOut:
    """Check the password (rate-limited like /auth/token) and set the session cookie
    (HttpOnly) and the CSRF cookie.  With authentication off everyone is an admin and no
    cookie is set."""
    if not ctx.config().api.use_auth_token:
        return SessionOut(username="anonymous", role="admin", expires_in=_default_expiry(ctx))
    user = await _check_password(ctx, request, body.username, body.password)
    return _set_session(ctx, request, response, user)


@router.get("/session", response_model=SessionOut,
            summary="Who is signed in (session cookie or bearer token)")
async def get_session(ctx: Context, user: Viewer, response: Response) -> SessionOut:
    response.headers["Cache-Control"] = "no-store"
    return SessionOut(username=user.username, role=user.role,
                      expires_in=expires_in(user, _default_expiry(ctx)))


@router.put("/session", response_model=SessionOut,
            summary="Renew the session cookies (sliding session)")
async def renew_session(ctx: Context, user: Viewer, request: Request,
                        response: Response) -> SessionOut:
    if user.via == "open":
        return SessionOut(username=user.username, role=user.role,
                          expires_in=_default_expiry(ctx))
    found = ctx.users.get(user.username)
    if found is None:
        raise HTTPException(401, "unknown user", headers={"WWW-Authenticate": "Bearer"})
    # The old session token stays valid until it expires: requests the page sent before
    # the new cookie arrived still carry it.
    return _set_session(ctx, request, response, found, user.csrf or None)


@router.delete("/session", status_code=204, summary="Sign out: end the session, clear cookies")
async def delete_session(ctx: Context, request: Request) -> Response:
    """Always clears the cookies.  When they hold a valid session and the request carries
    its CSRF header, the session is also refused from now on (a copy of the cookie is
    worthless)."""
    response = Response(status_code=204)
    if ctx.config().api.use_auth_token and request.cookies.get(SESSION_COOKIE):
        try:
            user: Principal | None = authenticate(
                ctx, "DELETE", None, request.cookies, request.headers.get(CSRF_HEADER))
        except HTTPException:
            user = None
        if user is not None and user.jti and user.expires_at is not None:
            ctx.revoked_sessions.revoke(user.jti, user.expires_at)
    _clear_session(request, response)
    return response


@router.post("/token", response_model=Token, summary="Log in (OAuth2 password flow)")
async def token(ctx: Context, request: Request, response: Response,
                form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
    return await _login(ctx, request, response, form.username, form.password)


@router.put("/access_token", response_model=Token,
            summary="Log in with a JSON body (Smart Social Distancing compatible)")
async def access_token(ctx: Context, request: Request, response: Response,
                       body: Credentials) -> Token:
    return await _login(ctx, request, response, body.user, body.password)


NO_USER_YET = (
    "no API user exists yet: create the first one on the device with `lookout create-user "
    "--config <config.ini> <name>` (the reference's create_api_user.py step). Over HTTP this "
    "call needs an admin's token, or UseAuthToken = False"
)


def _creator(ctx: Context, request: Request,
             token: Annotated[str | None, Depends(oauth2)]) -> Principal:
    """An admin (everyone while UseAuthToken is off).  Without credentials on a processor that
    has no user yet the 401 says how to make the first one: the reference let the first caller
    create the only user, so whoever on the network called first owned the processor."""
    try:
        user = current_user(request, ctx, token)
    except HTTPException as exc:
        if exc.status_code == 401 and not ctx.users.list():
            raise HTTPException(401, NO_USER_YET,
                                headers={"WWW-Authenticate": "Bearer"}) from None
        raise
    return require_admin(user)


@router.post("/create_api_user", status_code=204,
             summary="Create an admin user (Smart Social Distancing compatible)",
             responses={400: {"description": "the user exists, or the name or password is "
                              "not acceptable"},
                        401: {"description": "not authenticated (the first user is made "
                              "with `lookout create-user` on the device)"},
                        403: {"description": "not an admin"}})
async def create_api_user(ctx: Context, _: Annotated[Principal, Depends(_creator)],
                          body: Credentials) -> Response:
    """The reference's body ``{"user", "password"}``; the user gets the admin role (the
    reference's only user could do everything).  The password is stored hashed (scrypt)."""
    try:
        await ctx.in_thread(ctx.users.add, body.user, body.password, "admin")
    except UserError as exc:
        raise HTTPException(400, str(exc)) from exc
    return Response(status_code=204)


@router.get("/me", response_model=UserOut, summary="Who the token belongs to")
async def me(ctx: Context, user: Viewer) -> UserOut:
    found = ctx.users.get(user.username)
    created = found.created if found else ""
    return UserOut(username=user.username, role=user.role, created=created)


@router.get("/users", response_model=list[UserOut], summary="List users")
async def list_users(ctx: Context, _: Admin) -> list[UserOut]:
    users = await ctx.in_thread(ctx.users.list)
    return [UserOut(username=u.username, role=u.role, created=u.created) for u in users]


@router.post("/users", response_model=UserOut, status_code=201, summary="Create a user")
async def create_user(ctx: Context, _: Admin, body: NewUser) -> UserOut:
    try:
        u = await ctx.in_thread(ctx.users.add, body.username, body.password, body.role)
    except UserError as exc:
        raise HTTPException(422, str(exc)) from exc
    return UserOut(username=u.username, role=u.role, created=u.created)


@router.delete("/users/{username}", status_code=204, summary="Delete a user")
async def delete_user(ctx: Context, admin: Admin, username: str) -> Response:
    if username == admin.username:
        raise HTTPException(409, "you cannot delete yourself")
    if not await ctx.in_thread(ctx.users.remove, username):
        raise HTTPException(404, f"no user {username!r}")
    return Response(status_code=204)



@router.put("/users/{username}", response_model=UserOut,
            summary="Change a user's role and/or password",
            description="A new password ends every token and session of the user.")
async def update_user(ctx: Context, admin: Admin, username: str,
                      body: UserChange) -> UserOut:
    if body.role is None and body.password is None:
        raise HTTPException(422, "give a role, a password or both")
    if username == admin.username and body.role == "viewer":
        raise HTTPException(409, "you cannot take the admin role from yourself")
    try:
        u = await ctx.in_thread(ctx.users.update, username, body.role, body.password)
    except UserError as exc:
        raise HTTPException(422, str(exc)) from exc
    if u is None:
        raise HTTPException(404, f"no user {username!r}")
    return UserOut(username=u.username, role=u.role, created=u.created)
