"""Users, password hashes, signed expiring tokens and login rate limiting.

* Passwords are hashed with scrypt (stdlib ``hashlib.scrypt``, N=2^14, r=8, p=1, 16-byte
  random salt) and compared in constant time.  Users live in ``<data>/auth/users.json``
  (mode 0600, written atomically).
* Tokens are JWTs (PyJWT, HS256) with ``sub``, ``role``, ``iat``, ``exp``, ``iss``, a
  random ``jti`` and ``gen``, the user's generation: a random value stored with the user and
  drawn anew whenever the user is created or the password replaced, so every token issued
  before a password change (or before the user was deleted and made again) is refused.
  They expire after ``[API] TokenExpireMinutes``.  A browser session is such a token in an
  HttpOnly cookie, marked ``use: session`` and bound to the session's CSRF value (the hash
  of it is a claim); a session signed out early is kept in :class:`RevokedSessions` until
  it would have expired.  The signing key comes from
  the ``LOOKOUT_SECRET_KEY`` environment variable, else ``SECRET_ACCESS_KEY`` (the variable of
  Smart Social Distancing), or, when both are unset, from a random key made on first start in
  ``<data>/auth/secret.key`` (mode 0600).  There is no default secret.
* Logins are rate-limited per (user name, client address) and per client address (see
  :class:`LoginLimiter`): an attempt is reserved before its password is checked, so
  concurrent guesses cannot slip past the limit, and a user locked out at one address can
  still sign in from another.  The limiter keeps only hashes of its keys in a table of
  bounded size.
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
from collections import OrderedDict, deque
from dataclasses import dataclass, field
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
    generation: str = ""  # "" for users saved before generations existed


class UserStore:
    """Users in a JSON file; every change is read-modify-write under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int, int, int], dict[str, dict[str, str]]] | None = None

    def _read(self) -> dict[str, dict[str, str]]:
        """The users as the file has them now; parsed again only when the file changed (every
        request reads them).  Callers copy before changing it."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        key = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            data: dict[str, dict[str, str]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        self._cache = (key, data)
        return data

    def _write(self, users: dict[str, dict[str, str]]) -> None:
        _atomic_write(self.path, json.dumps(users, indent=1, sort_keys=True).encode())

    @staticmethod
    def _user(name: str, rec: dict[str, str]) -> User:
        return User(name, rec["role"], rec["created"],  # type: ignore[arg-type]
                    rec.get("generation", ""))

    def list(self) -> list[User]:
        return [self._user(name, rec) for name, rec in sorted(self._read().items())]

    def get(self, username: str) -> User | None:
        rec = self._read().get(username)
        return self._user(username, rec) if rec else None

    def add(self, username: str, password: str, role: str, replace: bool = False) -> User:
        if not USERNAME.match(username):
            raise UserError("username: 1-64 letters, digits, '_', '.', '@' or '-'")
        if role not in ROLES:
            raise UserError(f"role: one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password: at least {MIN_PASSWORD} characters")
        with self._lock:
            users = dict(self._read())
            if username in users and not replace:
                raise UserError(f"username: {username!r} already exists")
            created = datetime.now(UTC).isoformat(timespec="seconds")
            # A new generation revokes every token issued for an earlier password.
            generation = secrets.token_hex(8)
            users[username] = {"hash": hash_password(password), "role": role,
                               "created": created, "generation": generation}
            self._write(users)
        return User(username, role, created, generation)  # type: ignore[arg-type]

    def update(self, username: str, role: str | None = None,
               password: str | None = None) -> User | None:
        """Change a user's role and/or password (None keeps it); None when there is no such
        user.  A new password draws a new generation: the user's tokens and sessions end."""
        if role is not None and role not in ROLES:
            raise UserError(f"role: one of {', '.join(ROLES)}")
        if password is not None and len(password) < MIN_PASSWORD:
            raise UserError(f"password: at least {MIN_PASSWORD} characters")
        with self._lock:
            users = dict(self._read())
            rec = users.get(username)
            if rec is None:
                return None
            rec = dict(rec)
            if role is not None:
                rec["role"] = role
            if password is not None:
                rec["hash"] = hash_password(password)
                rec["generation"] = secrets.token_hex(8)
            users[username] = rec
            self._write(users)
        return self._user(username, rec)

    def remove(self, username: str) -> bool:
        with self._lock:
            users = dict(self._read())
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
        return self._user(username, rec)


_DUMMY_HASH = hash_password(secrets.token_hex(16))


SECRET_VARIABLES = ("LOOKOUT_SECRET_KEY", "SECRET_ACCESS_KEY")
"""Environment variables holding the signing key, the first set one wins: Lookout's own, then
the one of Smart Social Distancing (its ``.env`` files set ``SECRET_ACCESS_KEY``)."""


def load_secret(path: Path) -> bytes:
    """The token signing key: the first of :data:`SECRET_VARIABLES` that is set, else a
    random key kept in ``path``.  A key from the environment shorter than 32 characters is
    refused (an empty variable counts as unset)."""
    for name in SECRET_VARIABLES:
        env = os.environ.get(name)
        if env:
            if len(env) < 32:
                raise ValueError(f"{name} must be at least 32 characters")
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

    def issue(self, user: User, now: datetime | None = None,
              session_csrf: str | None = None) -> tuple[str, int]:
        """A signed token for ``user`` and the seconds it lives.  With ``session_csrf`` it is a
        browser session token (``use: session``): accepted only from the session cookie, and
        bound to that CSRF value (its SHA-256 is a claim)."""
        now = now or datetime.now(UTC)
        claims: dict[str, object] = {
            "sub": user.username, "role": user.role, "iat": now, "exp": now + self.expire,
            "iss": ISSUER, "jti": secrets.token_hex(8), "gen": user.generation}
        if session_csrf is not None:
            claims["use"] = SESSION_USE
            claims["csrf"] = csrf_digest(session_csrf)
        token = jwt.encode(claims, self.secret, algorithm=ALGORITHM)
        return token, int(self.expire.total_seconds())

    def verify(self, token: str) -> tuple[str, Role]:
        claims = self.verify_claims(token)
        return claims.username, claims.role

    def verify_claims(self, token: str) -> TokenClaims:
        """The token's user, role and generation once its signature, issuer and expiry are
        checked; the caller compares the generation with the user's."""
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
        return TokenClaims(str(claims["sub"]), role, str(claims.get("gen", "")),
                           use=str(claims.get("use", "")), csrf=str(claims.get("csrf", "")),
                           jti=str(claims.get("jti", "")), expires_at=float(claims["exp"]))


def csrf_digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


SESSION_USE = "session"


@dataclass(frozen=True)
class TokenClaims:
    username: str
    role: Role
    generation: str
    use: str = ""  # "session" for a browser session's token, "" for a bearer token
    csrf: str = ""  # SHA-256 of the session's CSRF value (sessions only)
    jti: str = ""
    expires_at: float = 0.0  # Unix time


class RevokedSessions:
    """Sessions signed out before they expire (by ``jti``), until they would have expired.

    Only a valid session can be signed out, so the table grows with signed-in users'
    actions only; it is still capped (the entries closest to expiry go first)."""

    MAX_ENTRIES = 10_000

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def revoke(self, jti: str, expires_at: float) -> None:
        now = time.time()
        with self._lock:
            if len(self._until) >= self.max_entries:
                for key in [k for k, t in self._until.items() if t <= now]:
                    del self._until[key]
            while len(self._until) >= self.max_entries:
                del self._until[min(self._until, key=self._until.__getitem__)]
            self._until[jti] = expires_at

    def __contains__(self, jti: object) -> bool:
        with self._lock:
            until = self._until.get(jti) if isinstance(jti, str) else None
        return until is not None and until > time.time()

    def __len__(self) -> int:
        return len(self._until)


@dataclass
class _Attempts:
    failures: deque[float] = field(default_factory=deque)
    in_flight: int = 0


@dataclass(frozen=True)
class LoginTicket:
    """An attempt reserved by :meth:`LoginLimiter.reserve`; hand it back to ``done``."""

    keys: tuple[bytes, ...]


class LoginLimiter:
    """Failed-login limits per (user name, client address) and per client address.

    ``reserve`` counts the attempt as in flight *before* the password is checked, under one
    lock with the check of the limits, so N concurrent wrong passwords give at most
    ``max_failures`` password checks; ``done`` turns the reservation into a failure or, on
    success, clears the user's failures at that address.  A lockout is never keyed on the user
    name alone: failures from one address do not stop the user signing in from another.

    Keys are stored as 16-byte BLAKE2b digests (salted per instance) in a table of at most
    ``max_entries``; when it is full, expired entries go first, then the least recently used
    ones, so any number of distinct or huge user names costs bounded memory.
    """

    MAX_FAILURES = 5  # per (user name, address)
    MAX_ADDRESS_FAILURES = 5  # per address, whatever the user names
    WINDOW_SECONDS = 300.0
    MAX_ENTRIES = 10_000

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW_SECONDS,
                 max_address_failures: int = MAX_ADDRESS_FAILURES,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.max_failures = max_failures
        self.max_address_failures = max_address_failures
        self.window = window
        self.max_entries = max_entries
        self._salt = secrets.token_bytes(16)
        self._table: OrderedDict[bytes, _Attempts] = OrderedDict()
        self._swept = -1e9
        self._lock = threading.Lock()

    def _digest(self, *parts: str) -> bytes:
        h = hashlib.blake2b(digest_size=16, key=self._salt)
        for part in parts:
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return h.digest()

    def keys(self, username: str, address: str) -> tuple[bytes, bytes]:
        return self._digest("user-address", username, address), self._digest("address", address)

    def _entry(self, key: bytes, now: float, create: bool) -> _Attempts | None:
        entry = self._table.get(key)
        if entry is None:
            if not create:
                return None
            self._make_room(now)
            entry = self._table[key] = _Attempts()
        else:
            self._table.move_to_end(key)
        while entry.failures and now - entry.failures[0] > self.window:
            entry.failures.popleft()
        return entry

    def _make_room(self, now: float) -> None:
        if len(self._table) < self.max_entries:
            return
        if now - self._swept > 1.0:  # a full sweep at most once a second
            self._swept = now
            for key in [k for k, e in self._table.items() if not e.in_flight and
                        (not e.failures or now - e.failures[-1] > self.window)]:
                del self._table[key]
        while len(self._table) >= self.max_entries:
            self._table.popitem(last=False)  # least recently used

    def reserve(self, username: str, address: str) -> LoginTicket | float:
        """A ticket to check one password, or the seconds to wait before trying again."""
        now = time.monotonic()
        keys = self.keys(username, address)
        with self._lock:
            wait = 0.0
            entries = [self._entry(k, now, create=True) for k in keys]
            for entry, limit in zip(entries, (self.max_failures, self.max_address_failures),
                                    strict=True):
                assert entry is not None
                if len(entry.failures) >= limit:  # until enough failures have expired
                    wait = max(wait, self.window - (now - entry.failures[-limit]))
                elif len(entry.failures) + entry.in_flight >= limit:
                    wait = max(wait, 1.0)  # checks still running decide; ask again soon
            if wait > 0:
                return wait
            for entry in entries:
                assert entry is not None
                entry.in_flight += 1
            return LoginTicket(keys)

    def done(self, ticket: LoginTicket, ok: bool) -> None:
        now = time.monotonic()
        with self._lock:
            for i, key in enumerate(ticket.keys):
                entry = self._entry(key, now, create=True)
                assert entry is not None
                entry.in_flight = max(0, entry.in_flight - 1)
                if not ok:
                    entry.failures.append(now)
                elif i == 0:  # the user's failures at this address; the address keeps its own
                    entry.failures.clear()

    def release(self, ticket: LoginTicket) -> None:
        """Give back a reservation whose password was never checked."""
        with self._lock:
            for key in ticket.keys:
                entry = self._table.get(key)
                if entry is not None:
                    entry.in_flight = max(0, entry.in_flight - 1)

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until a login for this user from this address may be tried (0 = now)."""
        now = time.monotonic()
        with self._lock:
            wait = 0.0
            for key, limit in zip(self.keys(username, address),
                                  (self.max_failures, self.max_address_failures), strict=True):
                entry = self._entry(key, now, create=False)
                if entry is not None and len(entry.failures) >= limit:
                    wait = max(wait, self.window - (now - entry.failures[-limit]))
            return wait

    def __len__(self) -> int:
        return len(self._table)
