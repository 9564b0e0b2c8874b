"""``/metrics/cameras/audience/report``: the audience report in one call, in time buckets.

``GET /metrics/cameras/audience/report?cameras=&from_date=&to_date=&buckets=`` answers, for each
camera, the buckets asked for (``buckets``: comma-separated, default all three):

- ``by_hour``: one entry per local hour that has data (``hour``: its start with the UTC
  offset, as in the hourly reports);
- ``by_day``: one entry per local date that has data (``date``);
- ``global``: the whole range (always present, zeros without data).

Each bucket holds ``people`` (tracks that ended), ``passing_by``, ``interested``,
``conversion`` (``interested / passing_by``; null when nobody passed by),
``average_stop_seconds`` and ``average_attention_seconds`` (of the interested; null when
nobody was interested) and, only when the ``demographics`` post-processor is enabled in the
configuration, ``age``, ``gender`` and ``emotion``: the interested per age band, gender and
emotion (``unknown`` included).  The figures are exact sums of the ``audience`` reports of
:mod:`libs.metrics` (see :mod:`libs.post_processors.audience` for the columns), so a day is the
sum of its hours and the range the sum of its days.

Dates are local dates in ``[App] TimeZone`` (``from_date`` defaults to 6 days before
``to_date``, ``to_date`` to today, taken per request); ids and dates are checked as in every
data API (:mod:`api.params`); the viewer role is needed.

The ``/metrics`` routes of the ``audience`` and ``engagement`` report kinds themselves come from
their declarations (see :mod:`api.routers.metrics`), like every report kind's.
"""

# No ``from __future__ import annotations``: FastAPI reads the handler's Annotated types.

import csv
import logging
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query

from api.deps import Context, Viewer
from api.params import (
    DateRange,
    camera_ids,
    check_ids,
    date_range,
    days_back,
    invalid,
    split_ids,
    today_in,
)
from libs.config.models import LookoutConfig
from libs.metrics import camera_dir, hourly_path, read_report, reports_dir
from libs.metrics.reports import KEY_COLUMNS, Totals
from libs.post_processors.audience import (
    AGE_COLUMNS,
    AUDIENCE_COLUMNS,
    AUDIENCE_REPORT,
    EMOTION_COLUMNS,
    GENDER_COLUMNS,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/metrics", tags=["Metrics"])

BUCKETS = ("by_hour", "by_day", "global")
DEFAULT_DAYS = 7
ROUTE = f"/cameras/{AUDIENCE_REPORT.name}/report"
REPORT_PATH = f"{router.prefix}{ROUTE}"


def demographics_enabled(config: LookoutConfig) -> bool:
    """Whether an enabled ``demographics`` post-processor is configured."""
    return any(p.name == "demographics" and p.enabled for p in config.source_post_processors)


def parse_buckets(value: str | None) -> list[str]:
    """The ``buckets`` query value, checked; all buckets when absent."""
    if value is None:
        return list(BUCKETS)
    wanted = list(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))
    if not wanted:
        invalid("buckets", f"give one or more of {', '.join(BUCKETS)}")
    unknown = [b for b in wanted if b not in BUCKETS]
    if unknown:
        invalid("buckets", f"{unknown[0][:40]!r} is not one of {', '.join(BUCKETS)}")
    return [b for b in BUCKETS if b in wanted]


def _ratio(numerator: int, denominator: int, scale: float = 1.0) -> float | None:
    if denominator <= 0:
        return None
    return round(numerator / denominator / scale, 4)


def figures(total: Totals, demographics: bool) -> dict[str, Any]:
    """One bucket's answer from its audience report totals."""
    sums = dict(zip((m.column for m in AUDIENCE_REPORT.measures), total.sums, strict=True))
    passing, interested = sums["PassingBy"], sums["Interested"]
    out: dict[str, Any] = {
        "people": sums["People"],
        "passing_by": passing,
        "interested": interested,
        "conversion": _ratio(interested, passing),
        "average_stop_seconds": _ratio(sums["InterestedStopMs"], interested, 1000.0),
        "average_attention_seconds": _ratio(sums["InterestedLookMs"], interested, 1000.0),
    }
    if demographics:
        for name, columns in (
            ("age", AGE_COLUMNS), ("gender", GENDER_COLUMNS), ("emotion", EMOTION_COLUMNS)
        ):
            out[name] = {label: sums[column] for label, column in columns.items()}
    return out


def _new() -> Totals:
    return AUDIENCE_REPORT.new_totals()


def _records(path: Path) -> list[dict[str, str]]:
    """A report's rows; unreadable files read as empty (logged)."""
    try:
        return read_report(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.warning("%s: unreadable report (%s)", path, exc)
        return []


def _totals(records: Iterable[dict[str, str]], key: str) -> list[tuple[str, Totals]]:
    out: list[tuple[str, Totals]] = []
    for record in records:
        try:
            out.append((record[key], Totals.from_record(AUDIENCE_REPORT, record)))
        except (KeyError, ValueError, TypeError):
            log.warning("audience report: unreadable row %r", record)
    return out


def _in_span(day_text: str, span: DateRange) -> bool:
    try:
        return date.fromisoformat(day_text) in span
    except ValueError:
        return False


def camera_report(
    config: LookoutConfig, camera_id: str, span: DateRange, buckets: list[str], demographics: bool
) -> dict[str, Any]:
    """The buckets of one camera (file work: run it in a thread)."""
    entity = camera_dir(config, camera_id)
    folder = reports_dir(entity) / AUDIENCE_REPORT.folder
    body: dict[str, Any] = {"id": camera_id}
    day_key, = KEY_COLUMNS["daily"]
    hour_key, = KEY_COLUMNS["hourly"]
    days = [(d, t) for d, t in _totals(_records(folder / "daily.csv"), day_key)
            if _in_span(d, span)]
    if "by_hour" in buckets:
        hours: list[tuple[str, Totals]] = []
        for day in span.dates():
            hours += _totals(_records(hourly_path(entity, AUDIENCE_REPORT, day)), hour_key)
        hours.sort(key=lambda item: datetime.fromisoformat(item[0]))
        body["by_hour"] = [{"hour": h, **figures(t, demographics)} for h, t in hours]
    if "by_day" in buckets:
        body["by_day"] = [{"date": d, **figures(t, demographics)} for d, t in sorted(days)]
    if "global" in buckets:
        whole = _new()
        for _, total in days:
            whole.merge(total)
        body["global"] = figures(whole, demographics)
    return body


_default_from = days_back(DEFAULT_DAYS)


@router.get(
    ROUTE,
    summary="Audience (passing by, interested, conversion, demographics) in time buckets",
    description="For each camera: `by_hour`, `by_day` (periods with data) and `global` "
    "(the whole range) buckets of people passing by (present >= PassingSeconds), interested "
    "(stopped >= StopSeconds and looking > LookSeconds), the conversion interested / "
    "passing_by (null when 0), the average stop and attention time of the interested "
    "(seconds), and - only when the demographics post-processor is enabled - the interested "
    "per age band, gender and emotion. Dates are local dates in the app time zone; the "
    "default is the 7 days ending today.",
)
async def audience_report(
    ctx: Context,
    _: Viewer,
    cameras: Annotated[str | None, Query(
        max_length=4096, description="Comma-separated camera ids; every configured one when "
        "absent.")] = None,
    from_date: Annotated[str | None, Query(max_length=40,
                                           description="First date, YYYY-MM-DD.")] = None,
    to_date: Annotated[str | None, Query(
        max_length=40, description="Last date, YYYY-MM-DD; default today.")] = None,
    buckets: Annotated[str | None, Query(
        max_length=200, description="Comma-separated: by_hour, by_day, global (default all).")
    ] = None,
) -> dict[str, Any]:
    config = await ctx.in_thread(ctx.config)
    tz = config.app.tzinfo
    ids = check_ids("cameras", split_ids(cameras), camera_ids(config), "camera")
    span = date_range(from_date, to_date, today_in(tz), _default_from)
    wanted = parse_buckets(buckets)
    demographics = demographics_enabled(config)

    def read_all() -> list[dict[str, Any]]:
        return [camera_report(config, i, span, wanted, demographics) for i in ids]

    return {
        "kind": AUDIENCE_REPORT.name,
        "time_zone": config.app.time_zone,
        "from_date": span.first.isoformat(),
        "to_date": span.last.isoformat(),
        "buckets": wanted,
        "demographics": demographics,
        "cameras": await ctx.in_thread(read_all),
    }


def include_routers(app: FastAPI) -> None:
    """Serve the audience report on ``app`` (once, however often it is called)."""
    if any(getattr(r, "path", None) == REPORT_PATH for r in app.routes):
        return
    app.include_router(router)


__all__ = ["AUDIENCE_COLUMNS", "include_routers", "router"]
