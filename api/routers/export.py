"""``/export``: a zip of raw logs, events, reports and screenshots.

``GET /export?cameras=&areas=&from_date=&to_date=&data_types=`` (comma-separated values) or
``POST /export`` with the same fields as JSON (lists for ``cameras``, ``areas`` and
``data_types``).  Absent ``cameras``/``areas`` select every configured one, an empty value or
list none; dates default to the 7 days ending today (app time zone), at most 366 days;
``data_types`` default to ``raw,reports,events`` (screenshots are large: ask for them).

Members (sorted by name, so the same data gives the same zip):

- ``raw``: ``cameras/<id>/objects_log/<date>.csv``, ``areas/<id>/occupancy_log/<date>.csv``
- ``events``: ``cameras/<id>/line_crossings/<date>.csv``
- ``reports``: ``cameras/<id>/reports/<kind>/hourly_<date>.csv`` for the dates, plus the
  kind's ``daily.csv``, ``weekly.csv`` and ``live.csv`` whole (they summarise every date);
  the same under ``areas/<id>/reports/<kind>/``.  The kinds are those of the metrics table.
- ``screenshots``: ``cameras/<id>/screenshots/<YYYYMMDDTHHMMSS+ZZZZ>.jpg`` whose local date
  (in the name) is in the range.

Every path is built from checked ids and dates (screenshot names come from listing a
camera's folder and must have the screenshot form); a file is packed only when it is a
regular file, not a symbolic link, inside the data directory.  The zip is built in an unnamed
temporary file and streamed from there; the file is gone once the answer is.

Exports are heavy and must not slow the cameras: they are built by the context's export pool
(``ApiContext.exports``: one thread at the lowest CPU priority, a short queue), with the
fastest deflate level; when the pool and its queue are full the answer is 503 with
``Retry-After``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, Literal, get_args

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Context, Viewer
from api.limits import Busy
from api.params import (
    DateRange,
    area_ids,
    camera_ids,
    check_ids,
    date_range,
    days_back,
    invalid,
    split_ids,
    today_in,
)
from api.routers.metrics import AREAS, CAMERAS, EntityType, report_metrics
from libs.config.models import LookoutConfig
from libs.loggers.file_system_logger import (
    AREA_LOG_FOLDER,
    LINE_EVENTS_FOLDER,
    SOURCE_LOG_FOLDER,
    screenshots_root,
)
from libs.metrics import area_dir, camera_dir, reports_dir

log = logging.getLogger(__name__)

router = APIRouter(tags=["Export"])

DataType = Literal["raw", "reports", "events", "screenshots"]
DATA_TYPES: tuple[DataType, ...] = get_args(DataType)
DEFAULT_DATA_TYPES: tuple[DataType, ...] = ("raw", "reports", "events")
DEFAULT_DAYS = 7
SUMMARY_REPORTS = ("daily.csv", "weekly.csv", "live.csv")
SCREENSHOT_NAME = re.compile(r"^(\d{8})T\d{6}[+-]\d{4}\.jpg$")
CHUNK = 1 << 20
COMPRESS_LEVEL = 1  # CSVs still shrink several times; higher levels cost CPU the cameras need


class ExportRequest(BaseModel):
    """What to export; absent fields take the defaults of ``GET /export``."""

    model_config = ConfigDict(extra="forbid")

    cameras: list[str] | None = Field(
        None, max_length=1000, description="Camera ids; every configured one when absent."
    )
    areas: list[str] | None = Field(
        None, max_length=1000, description="Area ids; every configured one when absent."
    )
    from_date: str | None = Field(None, max_length=40, description="First date, YYYY-MM-DD.")
    to_date: str | None = Field(None, max_length=40, description="Last date; default today.")
    data_types: list[str] | None = Field(
        None, max_length=16, description="Any of raw, reports, events, screenshots; "
        "default raw, reports, events."
    )


@dataclass(frozen=True)
class ExportPlan:
    cameras: list[str]
    areas: list[str]
    span: DateRange
    data_types: tuple[DataType, ...]
    kinds: frozenset[str] | None = None  # report kinds to pack; None: every one


def check_data_types(values: list[str] | None, where: str) -> tuple[DataType, ...]:
    if values is None:
        return DEFAULT_DATA_TYPES
    chosen: list[DataType] = []
    for value in values:
        if value not in DATA_TYPES:
            invalid("data_types", f"{value[:40]!r} is not one of {', '.join(DATA_TYPES)}",
                    where)
        chosen.append(value)  # type: ignore[arg-type]  # checked just above
    return tuple(t for t in DATA_TYPES if t in chosen)


def check_request(
    config: LookoutConfig, body: ExportRequest, where: str,
    kinds: frozenset[str] | None = None,
) -> ExportPlan:
    span = date_range(body.from_date, body.to_date, today_in(config.app.tzinfo),
                      days_back(DEFAULT_DAYS), where)
    cameras = check_ids("cameras", body.cameras, camera_ids(config), "camera", where)
    areas = check_ids("areas", body.areas, area_ids(config), "area", where)
    return ExportPlan(cameras, areas, span, check_data_types(body.data_types, where), kinds)


# ---------------------------------------------------------------------------------------
# Which files
# ---------------------------------------------------------------------------------------


def _reports(config: LookoutConfig, entity: EntityType, entity_id: str, base: Path,
             span: DateRange, kinds: frozenset[str] | None = None
             ) -> Iterator[tuple[str, Path]]:
    prefix = f"{entity.plural}/{entity_id}/reports"
    for metric in report_metrics(entity):
        if kinds is not None and metric.name not in kinds:
            continue
        folder = metric.report.folder
        kind_dir = reports_dir(base) / folder
        for day in span.dates():
            name = f"hourly_{day.isoformat()}.csv"
            yield f"{prefix}/{folder}/{name}", kind_dir / name
        for name in SUMMARY_REPORTS:
            yield f"{prefix}/{folder}/{name}", kind_dir / name


def _screenshots(config: LookoutConfig, camera_id: str,
                 span: DateRange) -> Iterator[tuple[str, Path]]:
    folder = screenshots_root(config) / camera_id
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("export: cannot list %s (%s)", folder, exc)
        return
    for name in names:
        match = SCREENSHOT_NAME.match(name)
        if match is None:
            continue
        try:
            day = datetime.strptime(match.group(1), "%Y%m%d").date()
        except ValueError:
            continue
        if day in span:
            yield f"cameras/{camera_id}/screenshots/{name}", folder / name


def candidates(config: LookoutConfig, plan: ExportPlan) -> list[tuple[str, Path]]:
    """Member name and source path of every file the plan may pack, sorted by name."""
    out: list[tuple[str, Path]] = []
    days = [d.isoformat() for d in plan.span.dates()]
    types = plan.data_types
    for cam in plan.cameras:
        base = camera_dir(config, cam)
        if "raw" in types:
            out += [(f"cameras/{cam}/{SOURCE_LOG_FOLDER}/{d}.csv",
                     base / SOURCE_LOG_FOLDER / f"{d}.csv") for d in days]
        if "events" in types:
            out += [(f"cameras/{cam}/{LINE_EVENTS_FOLDER}/{d}.csv",
                     base / LINE_EVENTS_FOLDER / f"{d}.csv") for d in days]
        if "reports" in types:
            out += _reports(config, CAMERAS, cam, base, plan.span, plan.kinds)
        if "screenshots" in types:
            out += _screenshots(config, cam, plan.span)
    for area in plan.areas:
        base = area_dir(config, area)
        if "raw" in types:
            out += [(f"areas/{area}/{AREA_LOG_FOLDER}/{d}.csv",
                     base / AREA_LOG_FOLDER / f"{d}.csv") for d in days]
        if "reports" in types:
            out += _reports(config, AREAS, area, base, plan.span, plan.kinds)
    return sorted(dict(out).items())


def inside(path: Path, root: Path) -> bool:
    """A regular file, not a symbolic link, whose real path is inside ``root``."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    return path.resolve().is_relative_to(root)


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    ts = datetime.fromtimestamp(mtime, UTC)
    if ts.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    return (ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second)


def write_zip(config: LookoutConfig, plan: ExportPlan, out: IO[bytes]) -> list[str]:
    """Pack the plan's files into ``out``; returns the member names written."""
    root = config.data_dir
    written: list[str] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=COMPRESS_LEVEL) as zf:
        for member, path in candidates(config, plan):
            if not inside(path, root):
                if path.exists() or path.is_symlink():
                    log.warning("export: %s is not a regular file inside %s", path, root)
                continue
            try:
                src = open(path, "rb")  # noqa: SIM115
            except OSError as exc:  # removed since, or not readable
                log.warning("export: cannot read %s (%s)", path, exc)
                continue
            with src:
                info = zipfile.ZipInfo(member, _zip_time(os.fstat(src.fileno()).st_mtime))
                info.compress_type = (
                    zipfile.ZIP_STORED if member.endswith(".jpg") else zipfile.ZIP_DEFLATED
                )
                # A ZipInfo handed to open() carries its own level (the archive's is ignored).
                info._compresslevel = COMPRESS_LEVEL  # type: ignore[attr-defined]
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
            written.append(member)
    return written


def build_export(config: LookoutConfig, plan: ExportPlan) -> tuple[IO[bytes], int, int]:
    """The zip in an unnamed temporary file (rewound), its size and member count."""
    out = tempfile.TemporaryFile(prefix="lookout-export-", suffix=".zip")  # noqa: SIM115
    try:
        members = write_zip(config, plan, out)
        size = out.tell()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out, size, len(members)


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := f.read(CHUNK):
            yield chunk
    finally:
        f.close()


def _busy(retry_after: int) -> HTTPException:
    return HTTPException(503, "too many exports are being built; try again later",
                         headers={"Retry-After": str(retry_after)})


async def _export(ctx: Context, body: ExportRequest, where: str,
                  kinds: frozenset[str] | None = None) -> StreamingResponse:
    if ctx.exports.full:  # refused before any work of its own
        raise _busy(ctx.exports.retry_after)
    config = await ctx.in_thread(ctx.config)
    plan = check_request(config, body, where, kinds)
    try:
        f, size, count = await ctx.exports.run(build_export, config, plan)
    except Busy as exc:
        raise _busy(exc.retry_after) from exc
    name = f"lookout-export_{plan.span.first.isoformat()}_{plan.span.last.isoformat()}.zip"
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Content-Length": str(size),
        "Cache-Control": "no-store",
        "X-Export-Members": str(count),
    }
    return StreamingResponse(_chunks(f), media_type="application/zip", headers=headers)


EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/zip": {}}, "description": "The zip file."}
}


@router.get("/export", summary="Export raw logs, events, reports and screenshots as a zip",
            response_class=StreamingResponse, responses=EXPORT_RESPONSES)
async def export_get(
    ctx: Context,
    _: Viewer,
    cameras: Annotated[str | None, Query(max_length=4096)] = None,
    areas: Annotated[str | None, Query(max_length=4096)] = None,
    from_date: Annotated[str | None, Query(max_length=40)] = None,
    to_date: Annotated[str | None, Query(max_length=40)] = None,
    data_types: Annotated[str | None, Query(max_length=200)] = None,
) -> StreamingResponse:
    body = ExportRequest.model_construct(  # the query values are checked in _export
        cameras=split_ids(cameras),
        areas=split_ids(areas),
        from_date=from_date,
        to_date=to_date,
        data_types=split_ids(data_types),
    )
    return await _export(ctx, body, "query")


@router.post("/export", summary="Export as a zip; the choice as a JSON body",
             response_class=StreamingResponse, responses=EXPORT_RESPONSES)
async def export_post(ctx: Context, _: Viewer, body: ExportRequest) -> StreamingResponse:
    return await _export(ctx, body, "body")
