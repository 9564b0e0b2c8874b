"""Time helpers every stage and sink shares: the sample clock and how times are written.

Times are data (see ARCHITECTURE.md): a frame's time is the video's clock, always time-zone
aware, and every periodic record is taken on one grid aligned to the Unix epoch, so two runs
of a recording sample the same instants whatever their speed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The end-of-stream records are stamped this long after the last frame, so their rows never
# share the instant of a row already logged (the reports keep one row per instant).
FINAL_ROW_OFFSET = timedelta(milliseconds=1)
_MICROSECOND = timedelta(microseconds=1)


def format_timestamp(ts: datetime, tz: tzinfo) -> str:
    """``ts`` as ISO 8601 with milliseconds and its UTC offset in ``tz``."""
    return ts.astimezone(tz).isoformat(timespec="milliseconds")


def aware(ts: datetime, tz: tzinfo) -> datetime:
    """``ts`` itself when it has a time zone; a naive time is read as local time in ``tz``."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=tz)


class IntervalGate:
    """Says yes once per slot of ``seconds`` on a grid aligned to the Unix epoch.

    Integer microseconds, so a slot boundary never wobbles with floating point.  A time in
    another slot than the last accepted one (later or, after a clock jump, earlier) opens it.
    """

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("interval must be > 0")
        self.step_us = max(1, round(seconds * 1_000_000))
        self._last: int | None = None

    def slot(self, ts: datetime) -> int:
        return ((ts - _EPOCH) // _MICROSECOND) // self.step_us

    def due(self, ts: datetime) -> bool:
        slot = self.slot(ts)
        if slot == self._last:
            return False
        self._last = slot
        return True
