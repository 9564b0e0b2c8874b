"""Users, password hashes, signed expiring tokens and login rate limiting.

* Passwords are hashed with scrypt (stdlib ``hashlib.scrypt``, N=2^14, r=8, p=1, 16-byte
  random salt) and compared in constant time.  Users live in ``<data>/auth/users.json``
  (mode 0600, written atomically).
* Tokens are JWTs (PyJWT, HS256) with ``sub``, ``role``, ``iat``, ``exp``, ``iss`` and a
  random ``jti``; they expire after ``[API] TokenExpireMinutes``.  The signing key comes from
  the ``LOOKOUT_SECRET_KEY`` environment variable or, when unset, from a random key made on
  first start in ``<data>/auth/secret.key`` (mode 0600).  There is no default secret.
* Logins are rate-limited per user name and per client address: after ``MAX_FAILURES``
  failures within ``WINDOW_SECONDS`` further attempts are refused until the window passes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import jwt

Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "viewer")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8
ISSUER = "lookout"
ALGORITHM = "HS256"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class AuthError(Exception):
    """A credential or token was refused; the message is safe to show."""


class UserError(ValueError):
    """A user could not be created or changed; the message names the field."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    created: str


class UserStore:
    """Users in a JSON file; every change is read-modify-write under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data: dict[str, dict[str, str]] = json.loads(self.path.read_text())
            return data
        except FileNotFoundError:
            return {}

    def _write(self, users: dict[str, dict[str, str]]) -> None:
        _atomic_write(self.path, json.dumps(users, indent=1, sort_keys=True).encode())

    def list(self) -> list[User]:
        return [User(name, rec["role"], rec["created"])  # type: ignore[arg-type]
                for name, rec in sorted(self._read().items())]

    def get(self, username: str) -> User | None:
        rec = self._read().get(username)
        return User(username, rec["role"], rec["created"]) if rec else None  # type: ignore[arg-type]

    def add(self, username: str, password: str, role: str, replace: bool = False) -> User:
        if not USERNAME.match(username):
            raise UserError("username: 1-64 letters, digits, '_', '.', '@' or '-'")
        if role not in ROLES:
            raise UserError(f"role: one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password: at least {MIN_PASSWORD} characters")
        with self._lock:
            users = self._read()
            if username in users and not replace:
                raise UserError(f"username: {username!r} already exists")
            created = datetime.now(UTC).isoformat(timespec="seconds")
            users[username] = {"hash": hash_password(password), "role": role,
                               "created": created}
            self._write(users)
        return User(username, role, created)  # type: ignore[arg-type]

    def remove(self, username: str) -> bool:
        with self._lock:
            users = self._read()
            if username not in users:
                return False
            del users[username]
            self._write(users)
            return True

    def authenticate(self, username: str, password: str) -> User:
        rec = self._read().get(username)
        # Hash even for an unknown user, so timing does not tell which names exist.
        stored = rec["hash"] if rec else _DUMMY_HASH
        if not verify_password(password, stored) or rec is None:
            raise AuthError("wrong user name or password")
        return User(username, rec["role"], rec["created"])  # type: ignore[arg-type]


_DUMMY_HASH = hash_password(secrets.token_hex(16))


def load_secret(path: Path) -> bytes:
    """The token signing key: ``LOOKOUT_SECRET_KEY``, else a random key kept in ``path``."""
    env = os.environ.get("LOOKOUT_SECRET_KEY")
    if env:
        if len(env) < 32:
            raise ValueError("LOOKOUT_SECRET_KEY must be at least 32 characters")
        return env.encode()
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    _atomic_write(path, key)
    return key


class TokenIssuer:
    def __init__(self, secret: bytes, expire_minutes: int) -> None:
        self.secret = secret
        self.expire = timedelta(minutes=expire_minutes)

    def issue(self, user: User, now: datetime | None = None) -> tuple[str, int]:
        now = now or datetime.now(UTC)
        claims = {"sub": user.username, "role": user.role, "iat": now, "exp": now + self.expire,
                  "iss": ISSUER, "jti": secrets.token_hex(8)}
        token = jwt.encode(claims, self.secret, algorithm=ALGORITHM)
        return token, int(self.expire.total_seconds())

    def verify(self, token: str) -> tuple[str, Role]:
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=[ALGORITHM], issuer=ISSUER,
                options={"require": ["sub", "role", "exp", "iat", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid token") from exc
        role = claims.get("role")
        if role not in ROLES:
            raise AuthError("invalid token")
        return str(claims["sub"]), role


class LoginLimiter:
    """Sliding-window limit of failed logins per key (user name, client address)."""

    MAX_FAILURES = 5
    WINDOW_SECONDS = 300.0

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW_SECONDS) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until a login for these keys is allowed again (0 = allowed now)."""
        now = time.monotonic()
        with self._lock:
            wait = 0.0
            for key in keys:
                q = self._recent(key, now)
                if len(q) >= self.max_failures:
                    wait = max(wait, self.window - (now - q[0]))
            return wait

    def failed(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)
            if len(self._failures) > 10000:  # forget idle keys
                for k in [k for k, q in self._failures.items() if not q]:
                    del self._failures[k]

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys[:1]:  # the user name's failures; the address keeps its own
                self._failures.pop(key, None)
