"""Bounds on what one client can make the API hold or do.

* :class:`BodyLimit` (pure ASGI middleware, the outermost layer): a request body is refused
  with 413 from its ``Content-Length`` before a byte of it is read, and a chunked body is
  counted as it arrives and refused once past the limit; a body that has not arrived whole
  within :data:`BODY_TIMEOUT` seconds is answered 408.  Both close the connection.  The body
  is read whole (it is small) before the application sees the request, so no handler ever
  waits on a trickling client.  Requests that cannot prove they come from a signed-in user
  get :data:`ANONYMOUS_BODY_LIMIT` (the login forms are far smaller), the others
  :data:`BODY_LIMIT`, sized for ``PUT /config`` (an INI text of at most 1 MiB, or its JSON
  form).
* :class:`WorkPool`: a few threads for heavy work (exports: one, in SCHED_IDLE, resting as
  long as it worked after each job; password checks: two), a bounded queue in front of them,
  and a refusal with ``Retry-After`` once the queue is full, so any number of requests costs
  at most the pool's threads, and for exports at most half of one thread's idle CPU time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue as queue_module
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from libs.priority import lower_priority

log = logging.getLogger(__name__)
T = TypeVar("T")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_LIMIT = 2 << 20  # PUT /config: 1 MiB of INI text, or the same as JSON
ANONYMOUS_BODY_LIMIT = 16 << 10  # a login form or JSON body is well under 4 KiB
BODY_TIMEOUT = 20.0  # seconds for a whole body to arrive


async def _plain(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is not read: close after this
        (b"x-content-type-options", b"nosniff"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class BodyLimit:
    """Refuse request bodies over a limit before reading them; see the module docstring.

    ``trusted(scope)`` says whether a request may send up to ``limit`` bytes (a valid token,
    or authentication off); it is asked only for bodies larger than ``anonymous_limit``.
    """

    def __init__(self, app: ASGIApp, trusted: Callable[[Scope], bool],
                 limit: int | None = None, anonymous_limit: int | None = None,
                 timeout: float | None = None) -> None:
        self.app = app
        self.trusted = trusted
        self.limit = BODY_LIMIT if limit is None else limit
        self.anonymous_limit = ANONYMOUS_BODY_LIMIT if anonymous_limit is None \
            else anonymous_limit
        self.timeout = BODY_TIMEOUT if timeout is None else timeout

    def _limit_for(self, scope: Scope, declared: int | None) -> int:
        if declared is not None and declared <= self.anonymous_limit:
            return self.anonymous_limit
        try:
            return self.limit if self.trusted(scope) else self.anonymous_limit
        except Exception:  # a broken config file or key: the small limit
            log.exception("body limit: cannot tell whether the request is signed in")
            return self.anonymous_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked and not declared:  # no body: pass through (streams keep `receive`)
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope, None if chunked else declared)
        if declared is not None and declared > limit:
            await _plain(send, 413, f"the request body is over {limit} bytes", [])
            return
        body = await self._read(receive, send, limit)
        if body is None:
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive, send: Send, limit: int) -> bytes | None:
        """The whole body, or None once a 408/413 has been sent (or the client left)."""
        parts: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), left)
            except TimeoutError:
                await _plain(send, 408, f"the request body did not arrive within "
                             f"{self.timeout:g} s", [])
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _plain(send, 413, f"the request body is over {limit} bytes", [])
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # afterwards: the client's disconnect

    return replay


class Busy(Exception):
    """The pool and its queue are full; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"busy; retry after {retry_after} s")
        self.retry_after = retry_after


class WorkPool:
    """At most ``workers`` jobs running (in threads at niceness ``niceness``, in SCHED_IDLE
    with ``idle``) and ``queue`` waiting; one more is refused with :class:`Busy` at once
    instead of piling up.

    After each job a thread rests ``rest`` times as long as the job took, and at least
    ``min_rest`` seconds, before it takes the next: with ``rest=1`` the pool's work uses at
    most half of each of its threads, however many requests wait (the answer to a job is not
    delayed by its rest)."""

    def __init__(self, name: str, workers: int = 1, queue: int = 4, niceness: int | None = 19,
                 idle: bool = False, retry_after: int = 5, rest: float = 0.0,
                 min_rest: float = 0.0) -> None:
        self.name = name
        self.workers = workers
        self.capacity = workers + queue
        self.retry_after = retry_after
        self.niceness = niceness
        self.idle = idle
        self.rest = rest
        self.min_rest = min_rest
        self._admitted = 0
        self._lock = threading.Lock()
        self._jobs: queue_module.SimpleQueue[_Job | None] = queue_module.SimpleQueue()
        self._threads: list[threading.Thread] = []

    @property
    def admitted(self) -> int:
        """Jobs running or waiting now."""
        return self._admitted

    @property
    def full(self) -> bool:
        """No room now: a caller can refuse before doing any work of its own."""
        return self._admitted >= self.capacity

    def _work(self) -> None:
        if self.niceness is not None:  # None: the priority of the thread that started it
            lower_priority(self.niceness, self.idle)
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited
            start = time.monotonic()
            try:
                result = fn(*args)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            pause = max(self.min_rest, self.rest * (time.monotonic() - start))
            if pause > 0:
                time.sleep(pause)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._admitted >= self.capacity:
                raise Busy(self.retry_after)
            self._admitted += 1
            if len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self.name}-{len(self._threads)}")
                thread.start()
                self._threads.append(thread)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        # The slot is free once the job has ended (or was cancelled before it started), not
        # when the request gives up waiting: a job still running keeps its slot.
        future.add_done_callback(self._release)
        self._jobs.put((future, fn, args))
        return await asyncio.wrap_future(future)  # cancelling the wait cancels a queued job

    def _release(self, _: object = None) -> None:
        with self._lock:
            self._admitted -= 1

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)


_Job = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...]]
