"""Authentication dependencies: every route but the public ones requires one of these."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer

from api.auth import AuthError, Role
from api.context import ApiContext

oauth2 = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.context
    return ctx


Context = Annotated[ApiContext, Depends(get_context)]


@dataclass(frozen=True)
class Principal:
    username: str
    role: Role


def current_user(ctx: Context, token: Annotated[str | None, Depends(oauth2)]) -> Principal:
    if not ctx.config().api.use_auth_token:
        return Principal("anonymous", "admin")
    if not token:
        raise HTTPException(401, "not authenticated", headers={"WWW-Authenticate": "Bearer"})
    try:
        claims = ctx.tokens.verify_claims(token)
    except AuthError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
    user = ctx.users.get(claims.username)
    if user is None:  # deleted since the token was issued
        raise HTTPException(401, "unknown user", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(user.generation, claims.generation):
        # The password was changed, or the user deleted and made again, since the token was
        # issued.
        raise HTTPException(401, "token revoked", headers={"WWW-Authenticate": "Bearer"})
    return Principal(claims.username, user.role)


def require_viewer(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    return user


def require_admin(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    if user.role != "admin":
        raise HTTPException(403, "this needs the admin role")
    return user


Viewer = Annotated[Principal, Depends(require_viewer)]
Admin = Annotated[Principal, Depends(require_admin)]
