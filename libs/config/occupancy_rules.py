"""Time-dependent occupancy limits: ``Mon-Fri 09:00-18:00 50; Sat 10:00-14:00 20``."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import datetime

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_ENTRY = re.compile(
    r"^(?P<days>[A-Za-z,\-]+)\s+(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})\s+(?P<limit>\d+)$"
)


@dataclass(frozen=True)
class OccupancyRule:
    day: int  # 0 = Monday
    start_minute: int
    end_minute: int  # exclusive; 24:00 allowed as 1440
    limit: int


def _minute(text: str) -> int:
    hh, mm = text.split(":")
    h, m = int(hh), int(mm)
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m != 0):
        raise ValueError(f"{text!r} is not a time HH:MM")
    return h * 60 + m


def _days(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            ia, ib = _day(a), _day(b)
            if ib < ia:
                raise ValueError(f"day range {part!r} runs backwards")
            out.extend(range(ia, ib + 1))
        else:
            out.append(_day(part))
    return out


def _day(text: str) -> int:
    key = text.strip()[:3].title()
    if key not in DAYS or len(text.strip()) not in (3,):
        raise ValueError(f"{text!r} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)")
    return DAYS.index(key)


def parse_occupancy_rules(text: str) -> list[OccupancyRule]:
    rules: list[OccupancyRule] = []
    for raw in text.split(";"):
        entry = raw.strip()
        if not entry:
            continue
        m = _ENTRY.match(entry)
        if not m:
            raise ValueError(f"rule {entry!r} is not 'days HH:MM-HH:MM limit'")
        start, end = _minute(m["start"]), _minute(m["end"])
        if end <= start:
            raise ValueError(f"rule {entry!r} ends before it starts")
        for day in _days(m["days"]):
            rules.append(OccupancyRule(day, start, end, int(m["limit"])))
    by_day: dict[int, list[OccupancyRule]] = {}
    for rule in rules:
        by_day.setdefault(rule.day, []).append(rule)
    for day, day_rules in by_day.items():
        day_rules.sort(key=lambda r: r.start_minute)
        for a, b in itertools.pairwise(day_rules):
            if b.start_minute < a.end_minute:
                raise ValueError(f"rules overlap on {DAYS[day]}")
    return rules


def occupancy_limit(rules: list[OccupancyRule], default: int, when: datetime) -> int:
    """The limit in force at ``when`` (a local time); ``default`` outside every rule."""
    minute = when.hour * 60 + when.minute
    for rule in rules:
        if rule.day == when.weekday() and rule.start_minute <= minute < rule.end_minute:
            return rule.limit
    return default
