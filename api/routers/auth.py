"""``/auth``: OAuth2 password flow, and user management for admins."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, Field

from api.auth import AuthError, LoginTicket, UserError
from api.deps import Admin, Context, Viewer
from api.limits import Busy

router = APIRouter(prefix="/auth", tags=["Auth"])


class Token(BaseModel):
    access_token: str
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


class UserOut(BaseModel):
    username: str
    role: str
    created: str


async def _login(ctx: Context, request: Request, response: Response, username: str,
                 password: str) -> Token:
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
    token, expires = ctx.tokens.issue(user)
    response.headers["Cache-Control"] = "no-store"
    return Token(access_token=token, expires_in=expires)


@router.post("/token", response_model=Token, summary="Log in (OAuth2 password flow)")
async def token(ctx: Context, request: Request, response: Response,
                form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
    return await _login(ctx, request, response, form.username, form.password)


@router.put("/access_token", response_model=Token,
            summary="Log in with a JSON body (Smart Social Distancing compatible)")
async def access_token(ctx: Context, request: Request, response: Response,
                       body: Credentials) -> Token:
    return await _login(ctx, request, response, body.user, body.password)


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

