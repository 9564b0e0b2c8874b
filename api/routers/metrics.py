"""``/metrics``: reports of cameras and areas, line crossings and heatmaps, as JSON.

Routes are made from a table, not written per kind: every entry of :data:`METRICS` gets
``GET /metrics/<cameras|areas>/<kind>/<period>`` for each of its periods and an entry in
``GET /metrics/kinds``.  The table is derived from the report kinds registered in
:mod:`libs.metrics.reports` (a :class:`ReportMetric` per kind: its name, columns and
description come from the kind's one declaration), plus metrics computed otherwise (any
object with the :class:`Metric` shape, such as :class:`LineCrossingMetric`).  A new report
kind (dwell, facemask, audience...) is one ``ReportKind`` registered by its analytic; its
routes, its listing and its report files follow.

Periods and their query values (all checked: ids against the id pattern and the
configuration, dates ``YYYY-MM-DD``, ``from_date <= to_date``, at most 366 days):

- ``live``: the ``live.csv`` report (the newest ``LiveInterval`` of data).
- ``hourly?date=``: the hours of one local date; default today in ``[App] TimeZone``.
- ``daily?from_date=&to_date=``: default the 7 days ending today (or ending ``to_date``).
- ``weekly?from_date=&to_date=``: weeks (``Week`` = their Monday) from the week holding
  ``from_date`` to the one holding ``to_date``; default the 4 weeks ending this week.

"Today" is taken per request in the app's time zone.  The entity filter is ``cameras`` or
``areas``: comma-separated ids, all configured ones when absent (an empty value selects none).

Every answer names its ``time_zone`` and period, and holds per entity its ``rows`` (one per
hour, date or week that has data, with explicit ``Hour``/``Date``/``Week`` keys and numbers as
numbers) and, except for ``live``, the ``totals`` over those rows.  A day without data is no
row, never an error.  Line crossings are counted from the camera's ``line_crossings`` event
logs (``In``/``Out`` per line per hour or date); repeated events (same instant, line, track
and direction: a restarted worker re-logging video) count once.
"""

# No ``from __future__ import annotations`` here: the handlers made in ``_endpoint`` carry
# ``Annotated`` types built inside that function, which FastAPI must see as objects (string
# annotations would be looked up in the module's globals and not be found).

import csv
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import numpy as np
from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam

from api.deps import Context, Viewer
from api.params import (
    MAX_RANGE_DAYS,
    DateRange,
    area_ids,
    camera_ids,
    check_id,
    check_ids,
    date_range,
    days_back,
    invalid,
    parse_date,
    split_ids,
    today_in,
)
from api.ssd import aliases_of
from libs.config.models import LookoutConfig
from libs.loggers.file_system_logger import LINE_EVENTS_FOLDER, SOURCE_LOG_FOLDER
from libs.loggers.video_logger import preview_path
from libs.metrics import (
    ReportKind,
    area_dir,
    camera_dir,
    hourly_path,
    read_report,
    reports_dir,
)
from libs.metrics.heatmap import (
    CLUSTERS_FILE,
    DEFAULT_ALPHA,
    MAX_BLUR_CELLS,
    FloorGrid,
    choose_image_size,
    compute_heatmap,
    encode_png,
    heatmaps_dir,
    hour_files,
    local_day_bounds,
    parse_hours,
    raw_answer,
    read_clusters,
    read_picture,
    render_overlay,
    sum_answer,
    sum_hours,
)
from libs.metrics.reports import (
    KEY_COLUMNS,
    PERIODS,
    REPORTS,
    Period,
    ReportRegistry,
    Totals,
    describe,
    hour_start,
    report_kinds,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/metrics", tags=["Metrics"])

DAILY_DEFAULT_DAYS = 7
WEEKLY_DEFAULT_WEEKS = 4


# ---------------------------------------------------------------------------------------
# What can be asked for
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntityType:
    """Cameras or areas: the URL segment (also the query parameter), how to list the
    configured ids and where an entity's data folder is."""

    name: str
    plural: str
    ids: Callable[[LookoutConfig], list[str]]
    folder: Callable[[LookoutConfig, str], Path]


CAMERAS = EntityType("camera", "cameras", camera_ids, camera_dir)
AREAS = EntityType("area", "areas", area_ids, area_dir)


@dataclass(frozen=True)
class MetricQuery:
    """A checked request: the period and, except for ``live``, its local dates."""

    period: Period
    span: DateRange | None
    tz: tzinfo
    weeks: int = 0  # weekly only: N > 0 asks for N spans of 7 days ending yesterday


class Metric(Protocol):
    """One kind of metric of one entity type: what a table entry must provide."""

    @property
    def name(self) -> str: ...

    @property
    def entity(self) -> EntityType: ...

    @property
    def periods(self) -> tuple[Period, ...]: ...

    @property
    def description(self) -> str: ...

    def columns(self, period: Period) -> list[str]:
        """The keys of each row, in order."""
        ...

    def read(self, config: LookoutConfig, entity_id: str, req: MetricQuery) -> dict[str, Any]:
        """``{"rows": [...], "totals": {...} | None}`` of one entity (runs in a thread)."""
        ...


def _number(text: str | None) -> int | float | None:
    """A report cell as a JSON number; None for an empty or unreadable cell."""
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


@dataclass(frozen=True)
class ReportMetric:
    """A report kind of :mod:`libs.metrics` (files ``reports/<folder>/``) of one entity type:
    name, columns and description are the kind's own."""

    entity: EntityType
    report: ReportKind
    periods: tuple[Period, ...] = PERIODS

    @property
    def name(self) -> str:
        return self.report.name

    @property
    def description(self) -> str:
        return describe(self.report)

    def columns(self, period: Period) -> list[str]:
        return self.report.columns(period)

    def folder(self, config: LookoutConfig, entity_id: str) -> Path:
        return reports_dir(self.entity.folder(config, entity_id)) / self.report.folder

    def read(self, config: LookoutConfig, entity_id: str, req: MetricQuery) -> dict[str, Any]:
        entity = self.entity.folder(config, entity_id)
        folder = self.folder(config, entity_id)
        span = req.span
        records: list[dict[str, str]]
        if req.period == "live":
            records = _records(folder / "live.csv")
        elif req.period == "hourly":
            assert span is not None
            records = _records(hourly_path(entity, self.report, span.first))
        elif req.period == "daily":
            assert span is not None
            records = [r for r in _records(folder / "daily.csv")
                       if _record_date(r, KEY_COLUMNS["daily"][0]) in span]
        elif req.weeks:
            assert span is not None
            records = self._rolling_weeks(_records(folder / "daily.csv"), span)
        else:
            assert span is not None
            weeks = DateRange(_monday(span.first), span.last)
            records = [r for r in _records(folder / "weekly.csv")
                       if _record_date(r, KEY_COLUMNS["weekly"][0]) in weeks]
        keys = KEY_COLUMNS[req.period]
        rows = [_row(r, keys) for r in records]
        totals = None if req.period == "live" else self._totals(records)
        return {"rows": rows, "totals": totals}

    def _rolling_weeks(self, daily: list[dict[str, str]],
                       span: DateRange) -> list[dict[str, str]]:
        """The daily rows of ``span`` added up per 7 days from ``span.first`` (the
        reference's ``weeks``): rows keyed ``Week`` = the first date of their 7 days."""
        kind = self.report
        weeks: dict[date, Totals] = {}
        for record in daily:
            day = _record_date(record, KEY_COLUMNS["daily"][0])
            if day not in span:
                continue
            assert day is not None
            start = span.first + timedelta(days=(day - span.first).days // 7 * 7)
            try:
                weeks.setdefault(start, kind.new_totals()).merge(Totals.from_record(kind, record))
            except (KeyError, ValueError, TypeError):
                log.warning("%s report of %s: unreadable row %r", kind.folder, self.name, record)
        names = kind.header(KEY_COLUMNS["weekly"])
        return [dict(zip(names, [start.isoformat(), *weeks[start].cells()], strict=True))
                for start in sorted(weeks)]

    def group_columns(self, period: Period) -> tuple[str, ...]:
        """The columns that name a row: rows of several cameras with equal values here add up
        to the row of their area."""
        return KEY_COLUMNS[period]

    def additive(self, column: str) -> bool:
        """Whether ``column`` adds up over cameras: samples, sums, counters and averages do
        (the mean of a sum is the sum of the means); a maximum does not."""
        return column not in {f"Max{m.name}" for m in self.report.measures}

    def _totals(self, records: Iterable[dict[str, str]]) -> dict[str, Any]:
        kind = self.report
        total = kind.new_totals()
        for record in records:
            try:
                total.merge(Totals.from_record(kind, record))
            except (KeyError, ValueError, TypeError):
                log.warning("%s report of %s: unreadable row %r", kind.folder, self.name, record)
        names = kind.header(())
        return {name: _number(cell) for name, cell in zip(names, total.cells(), strict=True)}


def _records(path: Path) -> list[dict[str, str]]:
    """A report's rows; an unreadable file (not UTF-8, a folder, no permission) reads as
    empty and is logged, so one damaged file never fails the whole answer."""
    try:
        return read_report(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.warning("%s: unreadable report (%s)", path, exc)
        return []


def _record_date(record: dict[str, str], key: str) -> date | None:
    try:
        return date.fromisoformat(record.get(key) or "")
    except ValueError:
        return None


def _row(record: dict[str, str], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: (v if k in keys else _number(v)) for k, v in record.items() if k is not None}


# ---------------------------------------------------------------------------------------
# Line crossings, counted from the event logs
# ---------------------------------------------------------------------------------------

Event = tuple[datetime, str, str, str]  # instant, line, track id, direction


def read_line_events(path: Path) -> list[Event]:
    """The crossing events of one ``line_crossings/<date>.csv``; torn or malformed lines
    (and a missing file) are skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("%s: unreadable event log (%s)", path, exc)
        return []
    lines = text.splitlines(keepends=True)
    if not lines or not lines[0].endswith("\n"):
        return []
    header = next(csv.reader([lines[0]]), [])
    try:
        at = [header.index(c) for c in ("Timestamp", "Line", "TrackId", "Direction")]
    except ValueError:
        log.warning("%s: header %r lacks line crossing columns", path, header)
        return []
    events: list[Event] = []
    for line in lines[1:]:
        if not line.endswith("\n"):
            continue
        parts = next(csv.reader([line]), [])
        try:
            ts = datetime.fromisoformat(parts[at[0]])
            name, track, direction = parts[at[1]], parts[at[2]], parts[at[3]]
        except (ValueError, IndexError):
            continue
        if ts.tzinfo is None or not name or direction not in ("in", "out"):
            continue
        events.append((ts, name, track, direction))
    return events


@dataclass(frozen=True)
class LineCrossingMetric:
    """``In``/``Out`` per counting line, per local hour or date, from the event logs."""

    name: str = "line-crossings"
    entity: EntityType = CAMERAS
    description: str = "People crossing each counting line, in and out."
    periods: tuple[Period, ...] = ("hourly", "daily")

    def columns(self, period: Period) -> list[str]:
        return [*KEY_COLUMNS[period], "Line", "In", "Out"]

    def group_columns(self, period: Period) -> tuple[str, ...]:
        return (*KEY_COLUMNS[period], "Line")

    def additive(self, column: str) -> bool:
        return True

    def read(self, config: LookoutConfig, entity_id: str, req: MetricQuery) -> dict[str, Any]:
        span, tz = req.span, req.tz
        assert span is not None
        folder = camera_dir(config, entity_id) / LINE_EVENTS_FOLDER
        seen: set[Event] = set()
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for day in span.around():
            for event in read_line_events(folder / f"{day.isoformat()}.csv"):
                ts, line, _, direction = event
                local = ts.astimezone(tz)
                if local.date() not in span or event in seen:
                    continue
                seen.add(event)
                if req.period == "hourly":
                    key = hour_start(ts, tz).astimezone(tz).isoformat()
                else:
                    key = local.date().isoformat()
                cell = counts.setdefault((key, line), {"in": 0, "out": 0})
                cell[direction] += 1
        column = KEY_COLUMNS[req.period][0]
        rows = [
            {column: key, "Line": line, "In": c["in"], "Out": c["out"]}
            for (key, line), c in sorted(counts.items(), key=_instant_then_line)
        ]
        try:
            configured = [ln.name for ln in config.source(entity_id).counting_lines]
        except KeyError:
            configured = []
        per_line = {name: {"In": 0, "Out": 0} for name in configured}
        for (_, line), c in counts.items():
            item = per_line.setdefault(line, {"In": 0, "Out": 0})
            item["In"] += c["in"]
            item["Out"] += c["out"]
        totals = {
            "In": sum(v["In"] for v in per_line.values()),
            "Out": sum(v["Out"] for v in per_line.values()),
            "Lines": dict(sorted(per_line.items())),
        }
        return {"rows": rows, "totals": totals}


def _instant_then_line(item: tuple[tuple[str, str], dict[str, int]]) -> tuple[datetime, str]:
    """Hours in time order (their text does not sort across a DST change), then lines."""
    (key, line), _ = item
    return datetime.fromisoformat(key), line


# ---------------------------------------------------------------------------------------
# Camera metrics summed over the cameras of an area
# ---------------------------------------------------------------------------------------


@runtime_checkable
class Summable(Protocol):
    """A camera metric whose rows add up over cameras (see :class:`AreaSumMetric`)."""

    def group_columns(self, period: Period) -> tuple[str, ...]: ...

    def additive(self, column: str) -> bool: ...


AREA_CAMERAS_COLUMN = "Cameras"


def _add(total: Any, value: Any) -> Any:
    """Numbers add (None is no value); mappings add key by key."""
    if isinstance(value, dict):
        out = dict(total) if isinstance(total, dict) else {}
        for key, item in value.items():
            out[key] = _add(out.get(key), item)
        return out
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return total
    return value if total is None else total + value


def _labelled(value: Any, camera: str) -> Any:
    """Labels inside a camera (a counting line's name) become ``<camera>/<label>``, so the
    ``door`` lines of two cameras stay two lines in their area."""
    if isinstance(value, dict):
        return {f"{camera}/{k}": _labelled(v, camera) if isinstance(v, dict) else v
                for k, v in value.items()}
    return f"{camera}/{value}"


@dataclass(frozen=True)
class AreaSumMetric:
    """A camera metric of the area's cameras added up: per hour, date or week (and per label
    such as a counting line, named ``<camera>/<label>``) the sum of the additive columns of
    every camera of the area that has a row, and ``Cameras``, how many had one.  The live
    period adds up the newest row of each camera (``From`` the earliest, ``To`` the latest).
    Columns that do not add up (maxima) are left out."""

    camera: Metric

    @property
    def name(self) -> str:
        return self.camera.name

    @property
    def entity(self) -> EntityType:
        return AREAS

    @property
    def periods(self) -> tuple[Period, ...]:
        return self.camera.periods

    @property
    def description(self) -> str:
        return (f"{self.camera.description} Summed over the cameras of the area (maxima left "
                "out: the maximum of a sum is not the sum of the maxima).")

    @property
    def summable(self) -> Summable:
        camera = self.camera
        assert isinstance(camera, Summable)
        return camera

    def columns(self, period: Period) -> list[str]:
        group = self.summable.group_columns(period)
        rest = [c for c in self.camera.columns(period)
                if c not in group and self.summable.additive(c)]
        return [*group, AREA_CAMERAS_COLUMN, *rest]

    def read(self, config: LookoutConfig, entity_id: str, req: MetricQuery) -> dict[str, Any]:
        area = next(a for a in config.areas if a.id == entity_id)
        known = set(camera_ids(config))
        group = self.summable.group_columns(req.period)
        keys = KEY_COLUMNS[req.period]
        labels = [c for c in group if c not in keys]
        columns = self.columns(req.period)
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        totals: dict[str, Any] | None = None
        for cam in dict.fromkeys(area.cameras):
            if cam not in known:
                continue
            result = self.camera.read(config, cam, req)
            for row in result["rows"]:
                named = {c: (_labelled(row.get(c), cam) if c in labels else row.get(c))
                         for c in group}
                index = tuple(named[c] for c in labels)
                if req.period != "live":
                    index = (*(named[c] for c in keys), *index)
                out = rows.setdefault(index, {**named, AREA_CAMERAS_COLUMN: 0})
                out[AREA_CAMERAS_COLUMN] += 1
                if req.period == "live":  # one row: the span of the cameras' newest rows
                    first, last = keys
                    out[first] = min(out[first], named[first])
                    out[last] = max(out[last], named[last])
                for column in columns[len(group) + 1:]:
                    out[column] = _add(out.get(column), row.get(column))
            if result["totals"] is not None:
                mine = {k: (_labelled(v, cam) if isinstance(v, dict) else v)
                        for k, v in result["totals"].items() if self.summable.additive(k)}
                totals = _add(totals or {}, mine)
        ordered = sorted(rows.values(), key=lambda r: _row_order(r, keys, labels))
        if req.period != "live" and totals is None:
            totals = {}
        return {"rows": [{c: r.get(c) for c in columns} for r in ordered],
                "totals": totals}


def _row_order(row: dict[str, Any], keys: tuple[str, ...],
               labels: list[str]) -> tuple[Any, ...]:
    """Rows in time order (hours compared as instants: their text does not sort across a DST
    change), then by label."""
    when = tuple(datetime.fromisoformat(row[k]) if k == "Hour" else row[k] for k in keys)
    return (*when, *(row[c] for c in labels))


def area_sums(cameras: Iterable[Metric], areas: Iterable[Metric]) -> list[Metric]:
    """An :class:`AreaSumMetric` for each camera metric that adds up over cameras and has
    no area metric of its own name (the area's own occupancy is counted by its logger)."""
    own = {m.name for m in areas}
    return [AreaSumMetric(m) for m in cameras if isinstance(m, Summable) and m.name not in own]


# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------

ENTITY_TYPES = {e.name: e for e in (CAMERAS, AREAS)}


def metric_table(registry: ReportRegistry = REPORTS) -> tuple[Metric, ...]:
    """Every metric: a :class:`ReportMetric` per report kind of ``registry`` (cameras', then
    line crossings, then areas'), then the camera metrics summed over areas
    (:func:`area_sums`)."""
    if registry is REPORTS:
        report_kinds("camera")  # import the analytics: they register their kinds
    cameras: list[Metric] = [ReportMetric(CAMERAS, k) for k in registry.kinds("camera")]
    cameras.append(LineCrossingMetric())
    areas: list[Metric] = [ReportMetric(AREAS, k) for k in registry.kinds("area")]
    return (*cameras, *areas, *area_sums(cameras, areas))


METRICS: tuple[Metric, ...] = metric_table()


def report_metrics(entity: EntityType) -> list[ReportMetric]:
    """The report-file kinds of an entity type (the export packs their folders)."""
    return [m for m in METRICS if isinstance(m, ReportMetric) and m.entity == entity]


# ---------------------------------------------------------------------------------------
# Answering
# ---------------------------------------------------------------------------------------


def _weekly_default_from(last: date) -> date:
    try:
        return _monday(last) - timedelta(weeks=WEEKLY_DEFAULT_WEEKS - 1)
    except OverflowError:
        return date.min


_daily_default_from = days_back(DAILY_DEFAULT_DAYS)


async def answer(
    ctx: Context,
    metric: Metric,
    period: Period,
    ids_value: str | None,
    day_value: str | None = None,
    from_value: str | None = None,
    to_value: str | None = None,
    weeks: int = 0,
) -> dict[str, Any]:
    config = await ctx.in_thread(ctx.config)
    tz = config.app.tzinfo
    today = today_in(tz)
    entity = metric.entity
    ids = check_ids(entity.plural, split_ids(ids_value), entity.ids(config), entity.name)
    body: dict[str, Any] = {
        "kind": metric.name,
        "entity_type": entity.name,
        "period": period,
        "time_zone": config.app.time_zone,
    }
    span: DateRange | None = None
    if period == "hourly":
        day = parse_date("date", day_value) or today
        span = DateRange(day, day)
        body["date"] = day.isoformat()
    elif period == "weekly" and weeks > 0:
        # The reference's `weeks`: from_date and to_date are ignored; N spans of 7 days
        # ending yesterday.
        yesterday = today - timedelta(days=1)
        span = DateRange(yesterday - timedelta(days=7 * weeks - 1), yesterday)
        body["weeks"] = weeks
        body["from_date"] = span.first.isoformat()
        body["to_date"] = span.last.isoformat()
    elif period in ("daily", "weekly"):
        default_from = _daily_default_from if period == "daily" else _weekly_default_from
        span = date_range(from_value, to_value, today, default_from)
        body["from_date"] = span.first.isoformat()
        body["to_date"] = span.last.isoformat()
    body["columns"] = metric.columns(period)
    req = MetricQuery(period, span, tz, weeks if period == "weekly" else 0)

    def read_all() -> list[dict[str, Any]]:
        return [{"id": i, **metric.read(config, i, req)} for i in ids]

    body["entities"] = await ctx.in_thread(read_all)
    return body


IDS_HELP = "Comma-separated {} ids; every configured one when absent."
MAX_WEEKS = MAX_RANGE_DAYS // 7
WEEKS_HELP = (
    "As Smart Social Distancing's `weeks`: when above 0, from_date and to_date are ignored and "
    "the rows are N spans of 7 days ending yesterday (Week = the first date of each span), "
    "added up from the daily rows. 0 (default): calendar weeks from Monday."
)


def _endpoint(metric: Metric, period: Period) -> Callable[..., Any]:
    """A handler with the query parameters of ``period`` (FastAPI reads its signature)."""
    plural = metric.entity.plural
    Ids = Annotated[str | None, Query(alias=plural, max_length=4096,
                                      description=IDS_HELP.format(metric.entity.name))]
    FromDate = Annotated[str | None, Query(max_length=40, description="First date, YYYY-MM-DD.")]
    ToDate = Annotated[str | None, Query(max_length=40,
                                         description="Last date, YYYY-MM-DD; default today.")]

    if period == "live":
        async def live(ctx: Context, _: Viewer, ids: Ids = None) -> dict[str, Any]:
            return await answer(ctx, metric, period, ids)

        return live
    if period == "hourly":
        Day = Annotated[str | None, Query(alias="date", max_length=40,
                                          description="Local date, YYYY-MM-DD; default today.")]

        async def hourly(ctx: Context, _: Viewer, ids: Ids = None,
                         day: Day = None) -> dict[str, Any]:
            return await answer(ctx, metric, period, ids, day_value=day)

        return hourly

    if period == "weekly":
        Weeks = Annotated[int, Query(ge=0, le=MAX_WEEKS, description=WEEKS_HELP)]

        async def weekly(ctx: Context, _: Viewer, ids: Ids = None, from_date: FromDate = None,
                         to_date: ToDate = None, weeks: Weeks = 0) -> dict[str, Any]:
            return await answer(ctx, metric, period, ids, from_value=from_date,
                                to_value=to_date, weeks=weeks)

        return weekly

    async def ranged(ctx: Context, _: Viewer, ids: Ids = None, from_date: FromDate = None,
                     to_date: ToDate = None) -> dict[str, Any]:
        return await answer(ctx, metric, period, ids, from_value=from_date, to_value=to_date)

    return ranged


PERIOD_HELP = {
    "live": "the newest LiveInterval of data",
    "hourly": "per hour of one local date",
    "daily": "per local date",
    "weekly": "per week (Week = its Monday)",
}


def add_metric_routes(target: APIRouter, metric: Metric, name: str | None = None) -> None:
    """``GET /<entities>/<kind>/<period>`` for each period of ``metric``; with ``name``, the
    same routes under that other name (a reference system's name of the metric)."""
    path_name = name or metric.name
    for period in metric.periods:
        target.add_api_route(
            f"/{metric.entity.plural}/{path_name}/{period}",
            _endpoint(metric, period),
            methods=["GET"],
            name=f"metrics-{metric.entity.plural}-{path_name}-{period}",
            summary=f"{metric.name} of {metric.entity.plural}, {PERIOD_HELP[period]}"
            + (f" (Smart Social Distancing's name for {metric.name})" if name else ""),
            description=metric.description,
        )


def add_alias_routes(target: APIRouter, table: Iterable[Metric]) -> None:
    """The routes of every metric of ``table`` under its reference names
    (:data:`api.ssd.METRIC_ALIASES`)."""
    for metric in table:
        for alias in aliases_of(metric.name):
            add_metric_routes(target, metric, alias)


def kinds_listing(table: Iterable[Metric], prefix: str = "/metrics") -> list[dict[str, Any]]:
    """The ``GET /metrics/kinds`` answer for ``table``."""
    return [
        {
            "kind": m.name,
            "entity_type": m.entity.name,
            "path": f"{prefix}/{m.entity.plural}/{m.name}",
            "periods": list(m.periods),
            "columns": {p: m.columns(p) for p in m.periods},
            "description": m.description,
            "aliases": [f"{prefix}/{m.entity.plural}/{a}" for a in aliases_of(m.name)],
        }
        for m in table
    ]


def add_table_routes(target: APIRouter, table: tuple[Metric, ...]) -> None:
    """``GET /kinds`` listing ``table`` and the routes of each of its metrics."""
    listing = kinds_listing(table, target.prefix)

    async def kinds(_: Viewer) -> list[dict[str, Any]]:
        return listing

    target.add_api_route(
        "/kinds", kinds, methods=["GET"], name="kinds",
        summary="The metric kinds, their entity types, periods and columns",
    )
    for metric in table:
        add_metric_routes(target, metric)


# ---------------------------------------------------------------------------------------
# Heatmaps
# ---------------------------------------------------------------------------------------


HeatmapSpace = Literal["image", "floor"]
HeatmapKind = Literal["presence", "violations"]
HeatmapSource = Literal["auto", "hourly", "raw"]
CameraIdParam = Annotated[str, PathParam(max_length=200)]
FromDateParam = Annotated[str | None, Query(max_length=40, description="First local date, "
                                            "YYYY-MM-DD; default 6 days before to_date.")]
ToDateParam = Annotated[str | None, Query(max_length=40, description="Last local date, "
                                          "YYYY-MM-DD; default today.")]
HoursParam = Annotated[str | None, Query(max_length=100, description="Only these local hours "
                                         "of each day, e.g. '9-17' or '8,12-13'.")]
SpaceParam = Annotated[HeatmapSpace, Query(description="'image' (foot points over the "
                                           "frame) or 'floor' (calibrated cameras, metres).")]
KindParam = Annotated[HeatmapKind, Query(description="'presence' (everybody) or "
                                         "'violations' (people in violation).")]
SourceParam = Annotated[HeatmapSource, Query(description="'hourly' grids of the heatmap "
                                             "post-processor, 'raw' logs, or 'auto'.")]
HEATMAP_HELP = (
    "`grid[row][column]` over HeatmapResolution columns x rows. From the hourly grids of the "
    "`heatmap` post-processor (`source` = `hourly`): person-seconds per cell (`unit`) summed "
    "over the local dates (and `hours` of the day) asked for, in image space (foot points "
    "over the frame) or, for calibrated cameras, on the floor (`floor`: square cells of "
    "`cell_size` metres, `extent_m`); `hours_covered`/`days` list what was summed and "
    "`skipped_hours` what could not be (another grid). With `source=auto` (default), a range "
    "without hourly files in image space without `hours` falls back to the raw logs "
    "(`source` = `raw-log`: people per raw-log row, both grids as `heatmap` and "
    "`violations`). Dates are local dates in the app time zone; default the last 7 days."
)


def _heatmap_hours(value: str | None) -> frozenset[int] | None:
    if value is None:
        return None
    try:
        return parse_hours(value)
    except ValueError as exc:
        invalid("hours", str(exc))


def heatmap_result(
    config: LookoutConfig,
    camera_id: str,
    span: DateRange,
    hours: frozenset[int] | None = None,
    space: HeatmapSpace = "image",
    kind: HeatmapKind = "presence",
    source: HeatmapSource = "auto",
) -> tuple[dict[str, Any], np.ndarray, FloorGrid | None, tuple[int, int] | None]:
    """The heatmap answer of one camera, its grid, floor grid and frame size (file work:
    run it in a thread)."""
    tz = config.app.tzinfo
    columns, rows = config.app.heatmap_resolution
    body: dict[str, Any] = {
        "camera_id": camera_id,
        "time_zone": config.app.time_zone,
        "from_date": span.first.isoformat(),
        "to_date": span.last.isoformat(),
        "hours": sorted(hours) if hours is not None else None,
        "space": space,
        "kind": kind,
    }
    folder = camera_dir(config, camera_id)
    files = hour_files(heatmaps_dir(folder), span.first, span.last, hours)
    if source == "raw" or (source == "auto" and not files and space == "image"
                           and hours is None):
        size, size_source = choose_image_size(config.app.resolution,
                                              preview_path(config, camera_id))
        raw = [folder / SOURCE_LOG_FOLDER / f"{d.isoformat()}.csv" for d in span.around()]
        start, end = local_day_bounds(span.first, span.last, tz)
        hm = compute_heatmap(raw, start, end, columns, rows, size, size_source)
        body.update(raw_answer(hm, kind))
        grid = hm.presence if kind == "presence" else hm.violations
        return body, grid, None, hm.image_size
    result = sum_hours(files, space, kind, columns, rows)
    body.update(sum_answer(result))
    return body, result.grid, result.floor, result.image_size


def heatmap_body(config: LookoutConfig, camera_id: str, span: DateRange,
                 hours: frozenset[int] | None = None, space: HeatmapSpace = "image",
                 kind: HeatmapKind = "presence",
                 source: HeatmapSource = "auto") -> dict[str, Any]:
    return heatmap_result(config, camera_id, span, hours, space, kind, source)[0]


def _heatmap_request(config: LookoutConfig, camera_id: str, from_date: str | None,
                     to_date: str | None, hours: str | None, space: HeatmapSpace,
                     source: HeatmapSource) -> tuple[str, DateRange, frozenset[int] | None]:
    camera = check_id(camera_id, CAMERAS.ids(config), CAMERAS.name, "camera_id")
    span = date_range(from_date, to_date, today_in(config.app.tzinfo), _daily_default_from)
    hour_set = _heatmap_hours(hours)
    if source == "raw" and (space != "image" or hour_set is not None):
        invalid("source", "the raw logs give image-space heatmaps of whole days only")
    return camera, span, hour_set


@router.get(
    "/cameras/{camera_id}/heatmap",
    summary="Where people spent time (foot points), on a grid over the image or the floor",
    description=HEATMAP_HELP,
)
async def heatmap(
    ctx: Context,
    _: Viewer,
    camera_id: CameraIdParam,
    from_date: FromDateParam = None,
    to_date: ToDateParam = None,
    hours: HoursParam = None,
    space: SpaceParam = "image",
    kind: KindParam = "presence",
    source: SourceParam = "auto",
) -> dict[str, Any]:
    config = await ctx.in_thread(ctx.config)
    camera, span, hour_set = _heatmap_request(config, camera_id, from_date, to_date, hours,
                                              space, source)
    result: dict[str, Any] = await ctx.in_thread(
        heatmap_body, config, camera, span, hour_set, space, kind, source)
    return result


@router.get(
    "/cameras/{camera_id}/heatmap.png",
    summary="The heatmap drawn over the camera's latest snapshot (PNG)",
    description="The grid of `/heatmap` (same query) coloured with the JET colour map "
    "(blue: little, red: most; `scale` of the cell value over the largest one) and "
    "alpha-blended over the camera's latest annotated preview; a floor grid is drawn back "
    "onto the floor through the calibration. Empty cells stay transparent (unless `blur` "
    "spreads values into them). Without a "
    "preview, or when the camera's LiveFeedEnabled is off, the background is a grey canvas "
    "of the frame size.",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def heatmap_png(
    ctx: Context,
    _: Viewer,
    camera_id: CameraIdParam,
    from_date: FromDateParam = None,
    to_date: ToDateParam = None,
    hours: HoursParam = None,
    space: SpaceParam = "image",
    kind: KindParam = "presence",
    source: SourceParam = "auto",
    alpha: Annotated[float, Query(ge=0.0, le=1.0, description="Opacity of the colours.")]
    = DEFAULT_ALPHA,
    scale: Annotated[Literal["linear", "sqrt", "log"], Query(
        description="Colour by value / max, its square root, or log(1 + value / smallest) "
        "over the same of the max.")] = "sqrt",
    blur: Annotated[float, Query(ge=0.0, le=MAX_BLUR_CELLS, description="Gaussian blur "
                                 "of the grid before colouring, sigma in cells; 0 = none.")]
    = 0.0,
) -> Response:
    config = await ctx.in_thread(ctx.config)
    camera, span, hour_set = _heatmap_request(config, camera_id, from_date, to_date, hours,
                                              space, source)

    def draw() -> bytes:
        _, grid, floor, size = heatmap_result(config, camera, span, hour_set, space, kind,
                                              source)
        background = None
        if config.source(camera).live_feed_enabled:
            background = read_picture(preview_path(config, camera))
        return encode_png(render_overlay(grid, background, size, floor, alpha, scale, blur))

    data = await ctx.in_thread(draw)
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get(
    "/cameras/{camera_id}/engagement_clusters",
    summary="The latest clusters of engaged people (DBSCAN)",
    description="Written by the `heatmap` post-processor every UpdatePeriod seconds: "
    "clusters of the positions of engaged people over the last WindowSeconds, each "
    "`{position: [x, y], intensity: engaged person-seconds, radius, samples}` in `space` "
    "units (floor metres for calibrated cameras, with `image_position`; else image "
    "pixels). `timestamp` is null and `clusters` empty until the first update.",
)
async def engagement_clusters(ctx: Context, _: Viewer,
                              camera_id: CameraIdParam) -> dict[str, Any]:
    config = await ctx.in_thread(ctx.config)
    camera = check_id(camera_id, CAMERAS.ids(config), CAMERAS.name, "camera_id")
    path = heatmaps_dir(camera_dir(config, camera)) / CLUSTERS_FILE
    latest = await ctx.in_thread(read_clusters, path)
    empty: dict[str, Any] = {"timestamp": None, "space": None, "clusters": []}
    return {**empty, **(latest or {}), "camera_id": camera}


add_table_routes(router, METRICS)
