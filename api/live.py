"""The live stream of records: the supervisor's event bus, fanned out to the API's clients.

:class:`LiveHub` is a subscriber of the event bus (``supervisor.bus.subscribe("live",
hub.publish)``).  :meth:`LiveHub.publish` runs on the supervisor's thread and never blocks:
it hands each batch to the API's event loop with one ``call_soon_threadsafe`` and returns.
On the loop, each record is matched against every client's filter; a record some client
wants is serialised once (``Record.to_json``) and the same text (and the same Server-Sent
Events frame) is queued for every client that wants it.

Every client has a bounded queue (:attr:`LiveHub.max_records` records and
:attr:`LiveHub.max_bytes` bytes).  A client whose queue is full has fallen behind: it is cut
off at once (its stream ends with the reason) and never holds up the processor or another
client.  The number of streams is bounded in all, per client address and per user, and
browsers, which cannot send an ``Authorization`` header with ``EventSource`` or
``WebSocket``, get a short-lived single-use :class:`TicketStore` ticket instead of putting a
long-lived token in a URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from libs.records import RECORD_TYPES, Record

log = logging.getLogger(__name__)

HEARTBEAT = 15.0  # s between Server-Sent Events comments while no record flows
MAX_RECORDS = 4096  # records queued for one client before it is cut off
MAX_BYTES = 4 << 20  # bytes queued for one client before it is cut off
MAX_STREAMS = 64  # live streams in all
MAX_STREAMS_PER_ADDRESS = 8
MAX_STREAMS_PER_USER = 8
MAX_PENDING = 100_000  # records handed to the loop and not yet fanned out
TICKET_SECONDS = 30.0
MAX_TICKETS = 4096
MAX_TICKETS_PER_USER = 16
MAX_IDS = 64  # camera or area ids in one filter
MAX_ID_LENGTH = 128


class FilterError(ValueError):
    """A filter parameter is wrong; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _split(param: str, value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    ids = frozenset(v.strip() for v in value.split(",") if v.strip())
    if not ids:
        raise FilterError(param, "give at least one id, or leave the parameter out")
    if len(ids) > MAX_IDS:
        raise FilterError(param, f"at most {MAX_IDS} ids")
    long = [i for i in ids if len(i) > MAX_ID_LENGTH]
    if long:
        raise FilterError(param, f"an id has at most {MAX_ID_LENGTH} characters")
    return ids


@dataclass(frozen=True)
class LiveFilter:
    """Which records a client gets: of these cameras and/or areas (all sources when both are
    None), of these kinds (all when None)."""

    cameras: frozenset[str] | None = None
    areas: frozenset[str] | None = None
    kinds: frozenset[str] | None = None

    @classmethod
    def parse(cls, camera: str | None, area: str | None, kind: str | None) -> LiveFilter:
        """The filter of the query parameters ``camera``, ``area`` and ``kind`` (comma
        lists); :class:`FilterError` for an unknown kind or an oversized list."""
        kinds = _split("kind", kind)
        if kinds is not None:
            unknown = sorted(kinds - set(RECORD_TYPES))
            if unknown:
                raise FilterError("kind", f"unknown record kind(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(sorted(RECORD_TYPES))}")
        return cls(_split("camera", camera), _split("area", area), kinds)

    def accepts(self, record: Record) -> bool:
        if self.kinds is not None and record.kind not in self.kinds:
            return False
        if self.cameras is None and self.areas is None:
            return True
        ids = self.cameras if record.source == "camera" else self.areas
        return ids is not None and record.source_id in ids


class LiveItem:
    """One record as it goes out: its JSON text (made once) and its Server-Sent Events frame
    (made once, when an SSE client first needs it), shared by every client."""

    __slots__ = ("_sse", "id", "kind", "size", "text")

    def __init__(self, record: Record) -> None:
        self.text = record.to_json()
        self.kind = record.kind
        self.id = record.id
        self.size = len(self.text) + 64
        self._sse: bytes | None = None

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = (f"event: {self.kind}\nid: {self.id}\ndata: {self.text}\n\n"
                         ).encode()
        return self._sse


@dataclass(eq=False)
class LiveClient:
    """A connected stream: its filter and bounded queue.  Lives on the event loop."""

    filter: LiveFilter
    user: str
    address: str
    max_records: int
    max_bytes: int
    queue: deque[LiveItem] = field(default_factory=deque)
    queued_bytes: int = 0
    sent: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None  # why the hub ended the stream
    overflowed: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, item: LiveItem) -> bool:
        """Queue ``item``; False (nothing queued) when the queue is full."""
        if (len(self.queue) >= self.max_records
                or self.queued_bytes + item.size > self.max_bytes):
            return False
        self.queue.append(item)
        self.queued_bytes += item.size
        self._wake.set()
        return True

    def end(self, reason: str, overflowed: bool = False) -> None:
        if self.reason is None:
            self.reason = reason
            self.overflowed = overflowed
            self.queue.clear()
            self.queued_bytes = 0
            self.ended.set()
            self._wake.set()

    async def take(self, timeout: float) -> list[LiveItem]:
        """What is queued now (at most ``max_records``), waiting up to ``timeout`` s for
        something; empty after the timeout or once the stream is ended."""
        if not self.queue and self.reason is None:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return []
        if self.reason is not None:
            return []
        items = list(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        self.sent += len(items)
        return items


class StreamLimit(Exception):
    """No room for another stream (in all, for this address or this user)."""


@dataclass(frozen=True)
class TicketHolder:
    username: str
    role: str
    generation: str


class TicketStore:
    """Short-lived single-use tickets: 256 random bits, kept only as SHA-256 digests, each
    bound to the user it was issued to; at most :data:`MAX_TICKETS_PER_USER` outstanding per
    user (a new one drops the user's oldest) and :data:`MAX_TICKETS` in all."""

    def __init__(self, ttl: float = TICKET_SECONDS, max_tickets: int = MAX_TICKETS,
                 per_user: int = MAX_TICKETS_PER_USER) -> None:
        self.ttl = ttl
        self.max_tickets = max_tickets
        self.per_user = per_user
        self._tickets: OrderedDict[bytes, tuple[float, TicketHolder]] = OrderedDict()

    @staticmethod
    def _digest(ticket: str) -> bytes:
        return hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).digest()

    def _sweep(self, now: float) -> None:
        while self._tickets:
            key, (expires, _) = next(iter(self._tickets.items()))
            if expires > now:
                break
            del self._tickets[key]

    def issue(self, holder: TicketHolder) -> str | None:
        """A new ticket, or None when the store is full of live tickets."""
        now = time.monotonic()
        self._sweep(now)  # tickets are in order of issue, so of expiry
        mine = [k for k, (_, h) in self._tickets.items() if h.username == holder.username]
        for key in mine[:max(0, len(mine) - self.per_user + 1)]:
            del self._tickets[key]
        if len(self._tickets) >= self.max_tickets:
            return None
        ticket = secrets.token_urlsafe(32)
        self._tickets[self._digest(ticket)] = (now + self.ttl, holder)
        return ticket

    def redeem(self, ticket: str) -> TicketHolder | None:
        """The holder of ``ticket`` if it is known and unexpired; it is used up either way."""
        if not ticket or len(ticket) > 256:
            return None
        now = time.monotonic()
        entry = self._tickets.pop(self._digest(ticket), None)
        self._sweep(now)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def __len__(self) -> int:
        return len(self._tickets)


class LiveHub:
    """Fan-out of the bus's records to the live stream's clients; see the module docstring.

    Everything but :meth:`publish` runs on the API's event loop.
    """

    def __init__(self, max_records: int = MAX_RECORDS, max_bytes: int = MAX_BYTES,
                 max_streams: int = MAX_STREAMS, per_address: int = MAX_STREAMS_PER_ADDRESS,
                 per_user: int = MAX_STREAMS_PER_USER, max_pending: int = MAX_PENDING,
                 heartbeat: float = HEARTBEAT) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_streams = max_streams
        self.per_address = per_address
        self.per_user = per_user
        self.max_pending = max_pending
        self.heartbeat = heartbeat
        self.tickets = TicketStore()
        self._clients: tuple[LiveClient, ...] = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Records handed to the loop: counted up by the publishing thread, down (``_done``)
        # by the loop; each counter has one writer, so neither needs a lock.
        self._handed = 0
        self._done = 0
        self._ending = False  # an _end_all is on its way to the loop
        self.published = 0  # records handed to the loop
        self.lost = 0  # records dropped because the loop was too far behind
        self.cut_off = 0  # clients cut off for falling behind

    # -- the supervisor's thread ----------------------------------------------------------
    def publish(self, records: Sequence[Record]) -> None:
        """Hand ``records`` to the event loop (one call per batch); never blocks.  Does
        nothing while no client is connected."""
        loop = self._loop
        if loop is None or not self._clients or not records:
            return
        n = len(records)
        if self._handed - self._done + n > self.max_pending:
            # The loop is far behind: no client may miss records silently, so every
            # client is ended (on the loop) and this batch dropped.
            self.lost += n
            if not self._ending:
                self._ending = True
                self._call(loop, self._end_all, "the server fell behind the records")
            return
        self._handed += n
        if not self._call(loop, self._fan_out, tuple(records)):
            self._handed -= n

    @staticmethod
    def _call(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: object) -> bool:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the API has stopped
            return False
        return True

    # -- the event loop ---------------------------------------------------------------------
    def _fan_out(self, records: tuple[Record, ...]) -> None:
        self._done += len(records)
        self.published += len(records)
        clients = self._clients
        for record in records:
            item: LiveItem | None = None
            for client in clients:
                if client.reason is not None or not client.filter.accepts(record):
                    continue
                if item is None:
                    try:
                        item = LiveItem(record)
                    except (TypeError, ValueError):
                        log.exception("live stream: record %s cannot be serialised",
                                      record.id)
                        break
                if not client.offer(item):
                    self.cut_off += 1
                    client.end(f"client too slow: more than {client.max_records} records or "
                               f"{client.max_bytes} bytes waiting", overflowed=True)
                    self._remove(client)
        # Clients cut off above were removed from the tuple; the loop used a snapshot.

    def join(self, flt: LiveFilter, user: str, address: str, limit_user: bool = True
             ) -> LiveClient:
        """A new client of this loop; :class:`StreamLimit` when there is no room for it."""
        self._loop = asyncio.get_running_loop()
        clients = self._clients
        if len(clients) >= self.max_streams:
            raise StreamLimit(f"at most {self.max_streams} live streams")
        if sum(c.address == address for c in clients) >= self.per_address:
            raise StreamLimit(f"at most {self.per_address} live streams per client address")
        if limit_user and sum(c.user == user for c in clients) >= self.per_user:
            raise StreamLimit(f"at most {self.per_user} live streams per user")
        client = LiveClient(flt, user, address, self.max_records, self.max_bytes)
        self._clients = (*clients, client)
        return client

    def leave(self, client: LiveClient) -> None:
        self._remove(client)

    def _remove(self, client: LiveClient) -> None:
        self._clients = tuple(c for c in self._clients if c is not client)

    def _end_all(self, reason: str) -> None:
        self._ending = False
        for client in self._clients:
            client.end(reason)
        self._clients = ()

    def close(self) -> None:
        """End every stream (the server is stopping); call on the loop."""
        self._end_all("the server is stopping")

    def clients(self) -> Iterable[LiveClient]:
        return self._clients

    def stats(self) -> dict[str, int]:
        return {"clients": len(self._clients), "published": self.published,
                "pending": self._handed - self._done, "lost": self.lost,
                "cut_off": self.cut_off}
