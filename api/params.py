"""Query values shared by the data sub-APIs (metrics, heatmaps, export), checked by hand.

Every id and date a client sends is checked here before anything touches the filesystem:
ids must match :data:`~libs.config.models.ID_PATTERN` and name a configured camera or area,
dates must be ``YYYY-MM-DD``.  Only values that passed are ever joined into a path.

Errors use the shape of the app's validation errors (``{"detail": [{"loc", "msg",
"type"}]}``) and name the field, so a bad value is a 422 and an unknown id a 404, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import NoReturn

from fastapi import HTTPException

from libs.config.models import ID_PATTERN, LookoutConfig

MAX_RANGE_DAYS = 366
"""The longest date range (both ends included) one request may ask for."""

DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def invalid(field: str, message: str, where: str = "query") -> NoReturn:
    """Raise a 422 naming ``field``."""
    raise HTTPException(
        422, detail=[{"loc": [where, field], "msg": message, "type": "value_error"}]
    )


def today_in(tz: tzinfo) -> date:
    """Today's date in ``tz``, now (call it per request, never at import)."""
    return datetime.now(tz).date()


def parse_date(field: str, value: str | None, where: str = "query") -> date | None:
    """``value`` (``YYYY-MM-DD``) as a date, None when absent; 422 naming ``field`` else."""
    if value is None:
        return None
    text = value.strip()
    if not DATE_PATTERN.match(text):
        invalid(field, f"{value[:40]!r} is not a date YYYY-MM-DD", where)
    try:
        return date.fromisoformat(text)
    except ValueError:
        invalid(field, f"{text!r} is not a valid date", where)


@dataclass(frozen=True)
class DateRange:
    """Local dates ``first`` to ``last``, both included."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def dates(self) -> list[date]:
        return [self.first + timedelta(days=k) for k in range(self.days)]

    def around(self) -> list[date]:
        """The dates and one more on each side (where the calendar has them): a raw file
        ``<D>.csv`` can hold rows of local dates ``D-1`` and ``D+1`` after a time zone change."""
        out = self.dates()
        if self.first > date.min:
            out.insert(0, self.first - timedelta(days=1))
        if self.last < date.max:
            out.append(self.last + timedelta(days=1))
        return out

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first <= day <= self.last


def days_back(days: int) -> Callable[[date], date]:
    """A default ``from_date``: the range of ``days`` days ending at ``to_date``."""

    def first(last: date) -> date:
        return last - timedelta(days=min(days - 1, (last - date.min).days))

    return first


def date_range(
    from_value: str | None,
    to_value: str | None,
    today: date,
    default_from: Callable[[date], date],
    where: str = "query",
) -> DateRange:
    """``from_date``/``to_date`` checked: ISO dates, ``from <= to``, at most
    :data:`MAX_RANGE_DAYS` days.  ``to`` defaults to ``today`` and ``from`` to
    ``default_from(to)``."""
    last = parse_date("to_date", to_value, where) or today
    first = parse_date("from_date", from_value, where)
    if first is None:
        first = default_from(last)
    if first > last:
        invalid("from_date", f"from_date {first} is after to_date {last}", where)
    span = DateRange(first, last)
    if span.days > MAX_RANGE_DAYS:
        invalid(
            "to_date",
            f"the range {first} to {last} is {span.days} days; at most {MAX_RANGE_DAYS}",
            where,
        )
    return span


def split_ids(value: str | None) -> list[str] | None:
    """A comma-separated query value as a list; None when the parameter is absent."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def check_ids(
    field: str,
    requested: Sequence[str] | None,
    configured: Sequence[str],
    noun: str,
    where: str = "query",
) -> list[str]:
    """The ids asked for (all ``configured`` when None), in order and without repeats.

    A malformed id is a 422 naming ``field``; an id not in the configuration a 404 naming it.
    """
    if requested is None:
        return list(dict.fromkeys(configured))
    wanted = list(dict.fromkeys(requested))
    for item in wanted:
        if not isinstance(item, str) or not ID_PATTERN.match(item):
            invalid(
                field,
                f"{str(item)[:70]!r} is not an id (1-64 letters, digits, '-' or '_', "
                "starting with a letter or digit)",
                where,
            )
    known = set(configured)
    unknown = [item for item in wanted if item not in known]
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        raise HTTPException(404, f"no {noun} {names}")
    return wanted


def check_id(value: str, configured: Sequence[str], noun: str, field: str) -> str:
    """One id from the path: 422 when malformed, 404 when not configured."""
    return check_ids(field, [value], configured, noun, where="path")[0]


def camera_ids(config: LookoutConfig) -> list[str]:
    return [source.id for source in config.sources]


def area_ids(config: LookoutConfig) -> list[str]:
    return [area.id for area in config.areas]
