"""The supervisor's event bus: every record of every camera and area, fanned out.

Camera workers forward the records their pipelines produce (frame summaries, samples,
events; never those of a replayed frame) over their one event queue; the supervisor's loop
publishes each batch here, in order.  Subscribers are the area aggregation, the sinks that run
on the bus (network sinks such as ``web_hook_logger``, the ``[Output_N]`` sections) and the
API's live stream.

A subscriber's ``deliver(records)`` runs on the supervisor's thread and must return at once:
a sink queues the batch (its outbox), the live stream hands it to its event loop.  One that
raises is logged (once per kind of error) and counted, and never stops the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from libs.records import Record

log = logging.getLogger(__name__)

Deliver = Callable[[Sequence[Record]], None]
Accepts = Callable[[Record], bool]


@dataclass
class Subscription:
    name: str
    deliver: Deliver
    accepts: Accepts | None = None
    delivered: int = 0
    errors: int = 0
    last_error: str | None = None


class EventBus:
    """Fan-out of record batches to named subscribers (thread-safe subscribe/unsubscribe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: tuple[Subscription, ...] = ()
        self.published = 0

    def subscribe(self, name: str, deliver: Deliver, accepts: Accepts | None = None) -> None:
        """Add (or replace) subscriber ``name``; ``accepts`` filters records, if given."""
        with self._lock:
            others = tuple(s for s in self._subs if s.name != name)
            self._subs = (*others, Subscription(name, deliver, accepts))

    def unsubscribe(self, name: str) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s.name != name)

    def names(self) -> list[str]:
        return [s.name for s in self._subs]

    def publish(self, records: Sequence[Record]) -> None:
        """Hand ``records`` (in order) to every subscriber that accepts some of them."""
        if not records:
            return
        self.published += len(records)
        for sub in self._subs:  # a snapshot: subscribe/unsubscribe swap the tuple
            batch = records if sub.accepts is None else [r for r in records if sub.accepts(r)]
            if not batch:
                continue
            try:
                sub.deliver(batch)
                sub.delivered += len(batch)
            except Exception as exc:
                sub.errors += 1
                error = f"{type(exc).__name__}: {exc}"
                if error != sub.last_error:
                    log.exception("event bus: subscriber %s failed", sub.name)
                sub.last_error = error

    def stats(self) -> dict[str, dict[str, object]]:
        return {s.name: {"delivered": s.delivered, "errors": s.errors,
                         "last_error": s.last_error} for s in self._subs}
