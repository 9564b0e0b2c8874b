"""What every request handler needs: the configuration file, the supervisor, auth."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from api.auth import LoginLimiter, RevokedSessions, TokenIssuer, UserStore, load_secret
from api.limits import WorkPool
from api.live import LiveHub
from libs.config import ConfigChange, load_config, save_config_changes
from libs.config.models import LookoutConfig
from libs.config.writer import replace_config_text

if TYPE_CHECKING:
    from processor.supervisor import Supervisor

T = TypeVar("T")


@dataclass
class ApiContext:
    """Shared state of one API instance.

    ``supervisor`` is None when the API runs without a processor (tests of the config
    sub-APIs, ``lookout api``); process-control endpoints then answer 503.
    """

    config_path: Path
    supervisor: Supervisor | None = None
    users: UserStore = field(init=False)
    tokens: TokenIssuer = field(init=False)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    # Browser sessions signed out before they expire (DELETE /auth/session).
    revoked_sessions: RevokedSessions = field(default_factory=RevokedSessions)
    # Exports: one builder at idle priority resting as long as it worked (at least 50 ms)
    # after each, and a short queue, so they cannot starve the cameras.
    exports: WorkPool = field(
        default_factory=lambda: WorkPool("lookout-export", workers=1, queue=8, idle=True,
                                 retry_after=10, rest=1.0, min_rest=0.05))
    # Password checks: scrypt takes 16 MB and tens of ms each; two at a time, a short queue.
    logins: WorkPool = field(
        default_factory=lambda: WorkPool("lookout-login", workers=2, queue=16, niceness=None,
                                 retry_after=1))
    # The live stream's fan-out of the supervisor's event bus (api/live.py).
    live: LiveHub = field(default_factory=LiveHub)
    _cache: tuple[tuple[int, int, int], LookoutConfig] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.config_path = Path(self.config_path).resolve()
        config = load_config(self.config_path, check_files=False)
        auth_dir = config.data_path("auth")
        self.users = UserStore(auth_dir / "users.json")
        self.tokens = TokenIssuer(load_secret(auth_dir / "secret.key"),
                                  config.api.token_expire_minutes)

    def config(self) -> LookoutConfig:
        """The configuration file as it is now (the API edits it); parsed again only when
        the file changed."""
        st = self.config_path.stat()
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._cache
        if cached is None or cached[0] != key:
            cached = (key, load_config(self.config_path, check_files=False))
            self._cache = cached
            # [API] TokenExpireMinutes applies to the next token issued, without a restart.
            self.tokens.expire = timedelta(minutes=cached[1].api.token_expire_minutes)
        return cached[1]

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """File and process work off the event loop."""
        return await asyncio.to_thread(fn, *args)

    async def save(self, changes: list[ConfigChange]) -> dict[str, Any]:
        """Validate and write ``changes`` atomically (comments kept), then have the processor
        restart only the cameras they affect.  Raises ConfigError (-> 422) and leaves the
        file untouched when the result would be invalid."""
        await self.in_thread(save_config_changes, self.config_path, changes, True)
        return await self.reload()

    async def replace(self, text: str) -> dict[str, Any]:
        """Replace the whole file with ``text`` if valid, then reload what changed."""
        await self.in_thread(replace_config_text, self.config_path, text, True)
        return await self.reload()

    async def reload(self) -> dict[str, Any]:
        if self.supervisor is None:
            return {"started": [], "restarted": [], "stopped": []}
        result: dict[str, Any] = await self.on_supervisor(lambda s: s.reload())
        return result

    async def on_supervisor(self, fn: Callable[[Supervisor], T]) -> T:
        """Run ``fn(supervisor)`` on the supervisor's loop and await its answer."""
        from fastapi import HTTPException

        sup = self.supervisor
        if sup is None:
            raise HTTPException(503, "the processor is not running in this process")
        future = sup.submit(lambda: fn(sup))
        return await asyncio.wrap_future(future)
