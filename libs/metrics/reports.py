"""Reports recomputed from the raw logs of :mod:`libs.loggers.file_system_logger`.

Every run derives the reports from the raw rows again, so a missed run, a crash in the middle
or a run repeated twice all end in the same files (byte for byte).  All report files are
written atomically (temporary file, then rename) and only when their content changes.

Layout, for each camera ``<camera dir> = <source LogDirectory>/<camera_id>``::

    <camera dir>/reports/social-distancing/hourly_<YYYY-MM-DD>.csv
    <camera dir>/reports/social-distancing/daily.csv
    <camera dir>/reports/social-distancing/weekly.csv
    <camera dir>/reports/social-distancing/live.csv
    <camera dir>/reports/occupancy/{hourly_<YYYY-MM-DD>,daily,weekly,live}.csv

and for each area ``<area dir> = <area LogDirectory>/<area_id>``::

    <area dir>/reports/occupancy/{hourly_<YYYY-MM-DD>,daily,weekly,live}.csv

The first column says which period a row covers; there is one row per period that has data:

- ``hourly_<D>.csv``: ``Hour``, the start of the hour in App ``TimeZone`` with its UTC offset
  (``2024-10-27T01:00:00+01:00``).  Hours come from the aware timestamps, so on a fall-back
  day the two 01:00 hours are two rows (``+01:00`` then ``+00:00``) and on a spring-forward
  day the missing hour simply has no row.  ``<D>`` is the local date.
- ``daily.csv``: ``Date`` (``2024-10-27``), the local date.
- ``weekly.csv``: ``Week``, the ISO date of the week's Monday.
- ``live.csv``: ``From``, ``To``: the last ``LiveInterval`` minutes of data, ending at the
  newest raw row (the data's own clock, so a recording from 2009 has a live report too);
  rows in ``(From, To]``; a header alone when there is no data.

The other columns, per report (a *sample* is one raw-log row, one per logger
``TimeInterval``; ``Avg`` is the mean over samples with 3 decimals, ``Sum`` the exact total, so
any regrouping of rows is exact: ``Avg = Sum / Samples``):

- social-distancing: ``Samples, AvgPeople, MaxPeople, AvgViolatingPeople,
  MaxViolatingPeople, AvgViolatingPairs, MaxViolatingPairs, ViolationSamples, SumPeople,
  SumViolatingPeople, SumViolatingPairs`` where people are ``DetectedObjects``, violating
  people ``ViolatingObjects`` (people, not pairs), and ``ViolationSamples`` counts samples
  with at least one violating person.
- camera occupancy: ``Samples, AvgOccupancy, MaxOccupancy, SumOccupancy``.
- area occupancy: ``Samples, AvgOccupancy, MaxOccupancy, OverCapacitySamples,
  SumOccupancy``; ``OverCapacitySamples`` counts samples whose ``Violation`` is 1.

Raw rows are read leniently: a line without its final newline (torn by a crash), a line with a
bad number or a timestamp without offset is skipped and counted, never fatal.  Rows with the
same instant (a restarted worker re-logs a stretch of video) are de-duplicated, keeping the
last one.  Each row belongs to the local date of its timestamp in the current ``TimeZone``;
raw file ``<D>.csv`` is read for dates ``D-1``, ``D`` and ``D+1``, so reports stay right after
``TimeZone`` changes.  Deleting a raw log keeps the reports already made from it.

Work is incremental: ``reports/.state.json`` records size and modification time of each raw
file read and the dates its rows fall on.  A run reads only raw files that changed (plus, rarely,
a neighbour that holds rows of a changed date); ``daily``/``weekly`` are rebuilt from the
``Sum`` columns of the hourly files.  A changed ``TimeZone`` or report format, or a lost state
file, recomputes all; hourly files of dates that no raw row falls on any more are then removed
(unless no raw log within a day of them is left).  Updates of one camera or area are serialised
(``flock`` on ``reports/.lock``), so a periodic run and a run at shutdown never interleave.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from libs.loggers.file_system_logger import (
    AREA_LOG_FOLDER,
    SOURCE_LOG_FOLDER,
    area_log_root,
    source_log_root,
)
from libs.loggers.writer import write_if_changed

try:
    import fcntl
except ImportError:  # not on Windows: runs are then not serialised
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

log = logging.getLogger(__name__)

REPORTS_VERSION = 1
REPORTS_FOLDER = "reports"
STATE_FILE = ".state.json"
LOCK_FILE = ".lock"
DEFAULT_LIVE_INTERVAL = timedelta(minutes=10)
_DAY = timedelta(days=1)

Sample = tuple[datetime, tuple[int, ...]]


# ---------------------------------------------------------------------------------------
# What is reported
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """``Avg<name>``, ``Max<name>`` and ``Sum<name>`` of raw column ``column``."""

    name: str
    column: str


@dataclass(frozen=True)
class Counter:
    """``<name>``: samples whose raw ``column`` is above 0."""

    name: str
    column: str


Period = Literal["live", "hourly", "daily", "weekly"]
PERIODS: tuple[Period, ...] = get_args(Period)
KEY_COLUMNS: dict[Period, tuple[str, ...]] = {
    "live": ("From", "To"),
    "hourly": ("Hour",),
    "daily": ("Date",),
    "weekly": ("Week",),
}
"""The columns that say which period a report row covers, per report file."""

Entity = Literal["camera", "area"]


@dataclass(frozen=True)
class ReportKind:
    """One kind of report: the only declaration of its name, columns and description.

    Its ``folder`` (``reports/<folder>/``) is also its name (the ``/metrics`` URL segment and
    the ``kind`` of ``GET /metrics/kinds``); the API's routes, listing and the report files
    are all made from the kinds registered in a :class:`ReportRegistry`.
    """

    folder: str
    measures: tuple[Measure, ...]
    counters: tuple[Counter, ...] = ()
    description: str = ""

    @property
    def name(self) -> str:
        return self.folder

    def header(self, key: Sequence[str]) -> list[str]:
        return [
            *key,
            "Samples",
            *(f"{p}{m.name}" for m in self.measures for p in ("Avg", "Max")),
            *(c.name for c in self.counters),
            *(f"Sum{m.name}" for m in self.measures),
        ]

    def columns(self, period: Period) -> list[str]:
        """The header of the kind's ``period`` report files (and of the API's rows)."""
        return self.header(KEY_COLUMNS[period])

    def new_totals(self) -> Totals:
        return Totals(len(self.measures), len(self.counters))


@dataclass(frozen=True)
class RawLogSpec:
    """A kind of raw log (its folder) and the reports made from it."""

    folder: str
    kinds: tuple[ReportKind, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        names = [m.column for k in self.kinds for m in k.measures]
        names += [c.column for k in self.kinds for c in k.counters]
        return tuple(dict.fromkeys(names))


SOCIAL_DISTANCING = ReportKind(
    "social-distancing",
    (
        Measure("People", "DetectedObjects"),
        Measure("ViolatingPeople", "ViolatingObjects"),
        Measure("ViolatingPairs", "ViolatingPairs"),
    ),
    (Counter("ViolationSamples", "ViolatingObjects"),),
    "People, violating people (closer than the distance limit to someone) and "
    "violating pairs per camera.",
)
CAMERA_OCCUPANCY = ReportKind(
    "occupancy", (Measure("Occupancy", "Occupancy"),), (), "People counted per camera."
)
AREA_OCCUPANCY = ReportKind(
    "occupancy",
    (Measure("Occupancy", "Occupancy"),),
    (Counter("OverCapacitySamples", "Violation"),),
    "Occupancy of an area (sum of its cameras) and samples over its capacity.",
)
SOURCE_REPORTS = RawLogSpec(SOURCE_LOG_FOLDER, (SOCIAL_DISTANCING, CAMERA_OCCUPANCY))
AREA_REPORTS = RawLogSpec(AREA_LOG_FOLDER, (AREA_OCCUPANCY,))


class ReportRegistry:
    """The raw-log specs of cameras and areas, and so every report kind.

    The report engine reports each spec's raw logs; the API serves each kind under
    ``/metrics/<cameras|areas>/<kind.name>/<period>`` and lists it in ``GET /metrics/kinds``.
    Built-in specs come first, the others in the order of their folder names (the same
    whatever order their modules were imported in).
    """

    def __init__(self, source: Iterable[RawLogSpec] = (), area: Iterable[RawLogSpec] = ()):
        self._builtin = {"camera": list(source), "area": list(area)}
        self._extra: dict[Entity, dict[str, RawLogSpec]] = {"camera": {}, "area": {}}

    def register(self, entity: Entity, spec: RawLogSpec) -> RawLogSpec:
        """Report ``spec`` for every camera (``"camera"``) or area (``"area"``)."""
        names = {k.name for s in self.specs(entity) if s.folder != spec.folder for k in s.kinds}
        clash = names & {k.name for k in spec.kinds}
        if clash:
            raise ValueError(f"{entity} report kinds {sorted(clash)} are declared twice")
        self._extra[entity][spec.folder] = spec
        return spec

    def specs(self, entity: Entity) -> list[RawLogSpec]:
        extra = self._extra[entity]
        return [*self._builtin[entity], *(extra[f] for f in sorted(extra))]

    def kinds(self, entity: Entity) -> list[ReportKind]:
        return [kind for spec in self.specs(entity) for kind in spec.kinds]


REPORTS = ReportRegistry([SOURCE_REPORTS], [AREA_REPORTS])
"""The registry of this process: built-in kinds here, analytics' ones at their import."""

def describe(kind: ReportKind) -> str:
    """What ``kind`` reports, in words (its declaration's ``description``)."""
    return kind.description


def register_source_spec(spec: RawLogSpec) -> RawLogSpec:
    """Report a camera raw log folder (``<camera dir>/<spec.folder>/<date>.csv``).

    Analytics call it at import; :func:`recompute_all` and the API then report them like
    the built-in ones.  A spec's raw rows are ``Timestamp`` plus its numeric columns.
    """
    return REPORTS.register("camera", spec)


def register_area_spec(spec: RawLogSpec) -> RawLogSpec:
    """Report an area raw log folder (``<area dir>/<spec.folder>/<date>.csv``)."""
    return REPORTS.register("area", spec)


def source_specs() -> list[RawLogSpec]:
    _import_analytics()
    return REPORTS.specs("camera")


def area_specs() -> list[RawLogSpec]:
    _import_analytics()
    return REPORTS.specs("area")


def report_kinds(entity: Entity) -> list[ReportKind]:
    """Every report kind of cameras or areas (analytics imported first)."""
    _import_analytics()
    return REPORTS.kinds(entity)


def _import_analytics() -> None:
    """Import the post-processors (they register their raw-log specs)."""
    from libs.post_processors import POST_PROCESSORS

    POST_PROCESSORS.discover()


# ---------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------


class Totals:
    """Samples, sums, maxima and counters of one report kind over one period."""

    __slots__ = ("counts", "maxes", "samples", "sums")

    def __init__(self, measures: int, counters: int) -> None:
        self.samples = 0
        self.sums = [0] * measures
        self.maxes = [0] * measures
        self.counts = [0] * counters

    def add(self, measures: Sequence[int], counters: Sequence[int]) -> None:
        first = self.samples == 0
        self.samples += 1
        for k, value in enumerate(measures):
            self.sums[k] += value
            if first or value > self.maxes[k]:
                self.maxes[k] = value
        for k, value in enumerate(counters):
            if value > 0:
                self.counts[k] += 1

    def merge(self, other: Totals) -> None:
        if other.samples == 0:
            return
        first = self.samples == 0
        self.samples += other.samples
        for k in range(len(self.sums)):
            self.sums[k] += other.sums[k]
            if first or other.maxes[k] > self.maxes[k]:
                self.maxes[k] = other.maxes[k]
        for k in range(len(self.counts)):
            self.counts[k] += other.counts[k]

    def cells(self) -> list[str]:
        """The values after the key columns, in :meth:`ReportKind.header` order."""
        out = [str(self.samples)]
        for total, peak in zip(self.sums, self.maxes, strict=True):
            out += [f"{total / self.samples:.3f}" if self.samples else "", str(peak)]
        out += [str(c) for c in self.counts]
        out += [str(s) for s in self.sums]
        return out

    @classmethod
    def from_record(cls, kind: ReportKind, record: dict[str, str]) -> Totals:
        """Read back a report row (needs ``Samples``, ``Max*``, ``Sum*`` and counters)."""
        totals = cls(len(kind.measures), len(kind.counters))
        totals.samples = int(record["Samples"])
        totals.sums = [int(record[f"Sum{m.name}"]) for m in kind.measures]
        totals.maxes = [int(record[f"Max{m.name}"]) for m in kind.measures]
        totals.counts = [int(record[c.name]) for c in kind.counters]
        return totals


class _Projection:
    """Picks a kind's measure and counter values out of a raw sample."""

    def __init__(self, spec: RawLogSpec, kind: ReportKind) -> None:
        cols = spec.columns
        self.kind = kind
        self.measures = [cols.index(m.column) for m in kind.measures]
        self.counters = [cols.index(c.column) for c in kind.counters]

    def new(self) -> Totals:
        return Totals(len(self.measures), len(self.counters))

    def add(self, totals: Totals, values: tuple[int, ...]) -> None:
        totals.add([values[i] for i in self.measures], [values[i] for i in self.counters])


def hour_start(ts: datetime, tz: tzinfo) -> datetime:
    """Start of the local hour holding ``ts``, as a UTC instant (DST-safe key)."""
    local = ts.astimezone(tz)
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def dedupe(chunks: Iterable[Iterable[Sample]]) -> list[Sample]:
    """Samples in time order, one per instant: the last one given wins."""
    latest: dict[datetime, tuple[int, ...]] = {}
    for chunk in chunks:
        for ts, values in chunk:
            latest[ts] = values
    return sorted(latest.items(), key=lambda item: item[0])


# ---------------------------------------------------------------------------------------
# Reading raw logs
# ---------------------------------------------------------------------------------------


@dataclass
class RawFile:
    """Rows of one raw file, grouped by local date; ``skipped`` counts unusable lines."""

    groups: dict[date, list[Sample]] = field(default_factory=dict)
    skipped: int = 0
    out_of_range: int = 0


def _parse_fields(line: str, last: int) -> list[str]:
    parts = line.rstrip("\r\n").split(",", last + 1)
    if len(parts) > last and not any('"' in p for p in parts[: last + 1]):
        return parts
    return next(csv.reader([line]), [])


def read_raw_log(path: Path, spec: RawLogSpec, tz: tzinfo) -> RawFile:
    """Read a raw log; rows are grouped by their local date in ``tz``.

    Values are the ``spec.columns`` as integers.  Rows dated more than a day away from the
    file's own date (``<YYYY-MM-DD>.csv``) are dropped and counted in ``out_of_range``.
    """
    result = RawFile()
    try:
        file_day: date | None = date.fromisoformat(path.stem)
    except ValueError:
        file_day = None
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        header_line = f.readline()
        if not header_line.endswith("\n"):
            return result
        header = next(csv.reader([header_line]), [])
        try:
            ts_at = header.index("Timestamp")
            at = [header.index(name) for name in spec.columns]
        except ValueError:
            log.warning("%s: header %r lacks the columns %s", path, header, spec.columns)
            return result
        last = max([ts_at, *at])
        for line in f:
            if not line.endswith("\n"):  # torn by a crash while it was written
                result.skipped += 1
                continue
            parts = _parse_fields(line, last)
            try:
                ts = datetime.fromisoformat(parts[ts_at])
                values = tuple(int(parts[i]) for i in at)
            except (ValueError, IndexError):
                result.skipped += 1
                continue
            if ts.tzinfo is None or min(values) < 0:
                result.skipped += 1
                continue
            day = ts.astimezone(tz).date()
            if file_day is not None and abs((day - file_day).days) > 1:
                result.out_of_range += 1
                continue
            result.groups.setdefault(day, []).append((ts, values))
    if result.skipped or result.out_of_range:
        log.info(
            "%s: skipped %d unreadable and %d out-of-range rows",
            path,
            result.skipped,
            result.out_of_range,
        )
    return result


# ---------------------------------------------------------------------------------------
# Writing reports
# ---------------------------------------------------------------------------------------


def _csv_bytes(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def reports_dir(entity_dir: Path) -> Path:
    return entity_dir / REPORTS_FOLDER


def hourly_path(entity_dir: Path, kind: ReportKind, day: date) -> Path:
    return reports_dir(entity_dir) / kind.folder / f"hourly_{day.isoformat()}.csv"


def read_report(path: Path) -> list[dict[str, str]]:
    """Rows of a report file as dicts keyed by column (empty when the file is missing)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return list(csv.DictReader(io.StringIO(text)))


def write_hourly(
    entity_dir: Path, spec: RawLogSpec, day: date, samples: Sequence[Sample], tz: tzinfo
) -> None:
    """``hourly_<day>.csv`` of every kind of ``spec``; removed when there are no samples."""
    projections = [_Projection(spec, kind) for kind in spec.kinds]
    hours: dict[datetime, list[Totals]] = {}
    for ts, values in samples:
        key = hour_start(ts, tz)
        totals = hours.get(key)
        if totals is None:
            totals = hours[key] = [p.new() for p in projections]
        for proj, tot in zip(projections, totals, strict=True):
            proj.add(tot, values)
    for k, proj in enumerate(projections):
        path = hourly_path(entity_dir, proj.kind, day)
        if not hours:
            path.unlink(missing_ok=True)
            continue
        rows = [
            [start.astimezone(tz).isoformat(), *hours[start][k].cells()] for start in sorted(hours)
        ]
        write_if_changed(path, _csv_bytes(proj.kind.columns("hourly"), rows))


def _daily_totals(kind_dir: Path, kind: ReportKind) -> dict[date, Totals]:
    days: dict[date, Totals] = {}
    for path in sorted(kind_dir.glob("hourly_*.csv")):
        try:
            day = date.fromisoformat(path.stem.removeprefix("hourly_"))
        except ValueError:
            continue
        total = kind.new_totals()
        for record in read_report(path):
            try:
                total.merge(Totals.from_record(kind, record))
            except (KeyError, ValueError, TypeError):
                log.warning("%s: unreadable row %r", path, record)
        if total.samples:
            days[day] = total
    return days


def write_daily_weekly(entity_dir: Path, kind: ReportKind) -> None:
    """``daily.csv`` and ``weekly.csv`` from the kind's hourly files."""
    kind_dir = reports_dir(entity_dir) / kind.folder
    days = _daily_totals(kind_dir, kind)
    weeks: dict[date, Totals] = {}
    for day in sorted(days):
        monday = day - timedelta(days=day.weekday())
        weeks.setdefault(monday, kind.new_totals()).merge(days[day])
    daily = [[d.isoformat(), *days[d].cells()] for d in sorted(days)]
    weekly = [[w.isoformat(), *weeks[w].cells()] for w in sorted(weeks)]
    write_if_changed(kind_dir / "daily.csv", _csv_bytes(kind.columns("daily"), daily))
    write_if_changed(kind_dir / "weekly.csv", _csv_bytes(kind.columns("weekly"), weekly))


def write_live(
    entity_dir: Path, spec: RawLogSpec, samples: Sequence[Sample], window: timedelta, tz: tzinfo
) -> None:
    """``live.csv``: the samples in ``(newest - window, newest]``; header only when none."""
    for kind in spec.kinds:
        proj = _Projection(spec, kind)
        rows: list[list[str]] = []
        if samples:
            to = max(ts for ts, _ in samples)
            start = to - window
            total = proj.new()
            for ts, values in samples:
                if start < ts <= to:
                    proj.add(total, values)
            rows.append(
                [
                    start.astimezone(tz).isoformat(timespec="milliseconds"),
                    to.astimezone(tz).isoformat(timespec="milliseconds"),
                    *total.cells(),
                ]
            )
        path = reports_dir(entity_dir) / kind.folder / "live.csv"
        write_if_changed(path, _csv_bytes(kind.columns("live"), rows))


# ---------------------------------------------------------------------------------------
# Incremental recomputation of one camera or area
# ---------------------------------------------------------------------------------------


@dataclass
class _FileState:
    size: int
    mtime_ns: int
    dates: set[date]


@dataclass
class EntityResult:
    """What one update did."""

    entity_dir: Path
    recomputed_dates: list[date] = field(default_factory=list)
    files_read: int = 0
    skipped_lines: int = 0
    live_written: bool = False
    error: str | None = None


def _zone_name(tz: tzinfo) -> str:
    return str(getattr(tz, "key", None) or tz)


def _load_state(path: Path, zone: str) -> tuple[dict[date, _FileState], float | None] | None:
    """The state of the last run; None when missing, unreadable or made for another time
    zone or report format (then everything is recomputed)."""
    try:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("version") != REPORTS_VERSION or raw.get("time_zone") != zone:
            return None
        files = {
            date.fromisoformat(name): _FileState(
                int(item["size"]),
                int(item["mtime_ns"]),
                {date.fromisoformat(d) for d in item["dates"]},
            )
            for name, item in raw["files"].items()
        }
        live = raw.get("live_interval_s")
        return files, float(live) if live is not None else None
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _state_bytes(files: dict[date, _FileState], zone: str, live_s: float) -> bytes:
    doc = {
        "version": REPORTS_VERSION,
        "time_zone": zone,
        "live_interval_s": live_s,
        "files": {
            d.isoformat(): {
                "size": s.size,
                "mtime_ns": s.mtime_ns,
                "dates": sorted(x.isoformat() for x in s.dates),
            }
            for d, s in sorted(files.items())
        },
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _around(day: date) -> tuple[date, date, date]:
    return day - _DAY, day, day + _DAY


def _raw_files(raw_dir: Path) -> dict[date, Path]:
    files: dict[date, Path] = {}
    if raw_dir.is_dir():
        for path in raw_dir.glob("*.csv"):
            try:
                files[date.fromisoformat(path.stem)] = path
            except ValueError:
                continue
    return files


class _EntityUpdate:
    def __init__(
        self, entity_dir: Path, spec: RawLogSpec, tz: tzinfo, live_interval: timedelta
    ) -> None:
        self.entity_dir = entity_dir
        self.spec = spec
        self.tz = tz
        self.live_interval = live_interval
        self.zone = _zone_name(tz)
        self.result = EntityResult(entity_dir)
        self.files: dict[date, Path] = {}
        self.new_state: dict[date, _FileState] = {}
        self.dirty: set[date] = set()
        self.pending: dict[date, dict[date, list[Sample]]] = {}
        self.kept: dict[date, list[Sample]] = {}
        self.keep_from = date.min
        self._clean_cache: dict[date, RawFile] = {}

    def _read(self, day: date) -> RawFile:
        raw = read_raw_log(self.files[day], self.spec, self.tz)
        self.result.files_read += 1
        self.result.skipped_lines += raw.skipped
        return raw

    def _read_clean(self, day: date) -> RawFile:
        raw = self._clean_cache.get(day)
        if raw is None:
            raw = self._read(day)
            self._clean_cache[day] = raw
            while len(self._clean_cache) > 3:
                self._clean_cache.pop(next(iter(self._clean_cache)))
        return raw

    def _collect(self, day: date, reread: bool = False) -> list[Sample]:
        """Every sample of local date ``day`` from raw files ``day-1 .. day+1``.

        Changed files' rows come from ``pending`` (each taken once) unless ``reread``.
        """
        chunks: list[list[Sample]] = []
        for f in _around(day):
            if f not in self.files:
                continue
            if f in self.dirty and not reread:
                chunks.append(self.pending.get(f, {}).pop(day, []))
            elif day in self.new_state[f].dates:
                chunks.append(self._read_clean(f).groups.get(day, []))
        return dedupe(chunks)

    def _finalize(self, day: date) -> None:
        samples = self._collect(day)
        write_hourly(self.entity_dir, self.spec, day, samples, self.tz)
        self.result.recomputed_dates.append(day)
        if day >= self.keep_from:
            self.kept[day] = samples

    def run(self) -> EntityResult:
        rdir = reports_dir(self.entity_dir)
        state_path = rdir / (STATE_FILE if self.spec.folder in (SOURCE_LOG_FOLDER, AREA_LOG_FOLDER)
                             else f".state-{self.spec.folder}.json")
        loaded = _load_state(state_path, self.zone)
        old, old_live = loaded if loaded is not None else ({}, None)
        self.files = _raw_files(self.entity_dir / self.spec.folder)
        sizes: dict[date, tuple[int, int]] = {}
        for day, path in list(self.files.items()):
            try:
                st = path.stat()
            except FileNotFoundError:
                del self.files[day]
                continue
            sizes[day] = (st.st_size, st.st_mtime_ns)

        for day in self.files:
            prev = old.get(day)
            if prev is None or (prev.size, prev.mtime_ns) != sizes[day]:
                self.dirty.add(day)
            elif day in prev.dates and not all(
                hourly_path(self.entity_dir, k, day).exists() for k in self.spec.kinds
            ):
                self.dirty.add(day)  # a report was deleted: make it again
            else:
                self.new_state[day] = prev

        if self.files:
            live_days = math.ceil(self.live_interval / _DAY) + 2
            self.keep_from = max(self.files) - timedelta(days=live_days)

        affected: set[date] = set()
        if loaded is None:
            # Full recompute: hourly files of an unknown past (another time zone) near the
            # raw files are made again, or removed when no row falls on their date any more.
            # Those far from every raw file stay: their raw logs were deleted.
            affected |= {
                d for d in self._hourly_dates() if any(n in self.files for n in _around(d))
            }
        done: set[date] = set()
        order = sorted(self.dirty)
        for i, day in enumerate(order):
            raw = self._read(day)
            self.pending[day] = raw.groups
            self.new_state[day] = _FileState(*sizes[day], set(raw.groups))
            affected |= set(raw.groups)
            if day in old:
                affected |= old[day].dates
            limit = order[i + 1] - 2 * _DAY if i + 1 < len(order) else date.max
            for d in sorted(affected - done):
                if d <= limit:
                    self._finalize(d)
                    done.add(d)
            for f in [f for f, groups in self.pending.items() if not any(groups.values())]:
                del self.pending[f]

        for kind in self.spec.kinds:
            write_daily_weekly(self.entity_dir, kind)

        live_s = self.live_interval.total_seconds()
        live_missing = not all(
            (rdir / k.folder / "live.csv").exists() for k in self.spec.kinds
        )
        if done or live_missing or old_live != live_s:
            self._write_live()

        if self.new_state or state_path.exists():
            write_if_changed(state_path, _state_bytes(self.new_state, self.zone, live_s))
        return self.result

    def _hourly_dates(self) -> set[date]:
        found: set[date] = set()
        for kind in self.spec.kinds:
            for path in (reports_dir(self.entity_dir) / kind.folder).glob("hourly_*.csv"):
                try:
                    found.add(date.fromisoformat(path.stem.removeprefix("hourly_")))
                except ValueError:
                    continue
        return found

    def _write_live(self) -> None:
        all_dates = set().union(*(s.dates for s in self.new_state.values()))
        samples: list[Sample] = []
        if all_dates:
            newest_day = max(all_dates)
            newest = self.kept.get(newest_day)
            if newest is None:
                newest = self._collect(newest_day, reread=True)
            if newest:
                to = newest[-1][0]
                first_day = (to - self.live_interval).astimezone(self.tz).date()
                day = max(first_day, min(all_dates))
                while day < newest_day:
                    if day in all_dates:
                        got = self.kept.get(day)
                        samples += got if got is not None else self._collect(day, True)
                    day += _DAY
                samples += newest
        write_live(self.entity_dir, self.spec, samples, self.live_interval, self.tz)
        self.result.live_written = True


def update_entity_reports(
    entity_dir: Path,
    spec: RawLogSpec,
    tz: tzinfo,
    live_interval: timedelta = DEFAULT_LIVE_INTERVAL,
) -> EntityResult:
    """Bring the reports of one camera or area (``entity_dir``) up to date with its raw logs."""
    if live_interval <= timedelta(0):
        raise ValueError("live_interval must be positive")
    with _exclusive(reports_dir(entity_dir) / LOCK_FILE):
        return _EntityUpdate(entity_dir, spec, tz, live_interval).run()


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One update of an entity at a time, across threads and processes."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# ---------------------------------------------------------------------------------------
# Everything in a configuration
# ---------------------------------------------------------------------------------------


def configured_live_interval(config: LookoutConfig) -> timedelta:
    """``LiveInterval`` of the enabled ``metrics`` periodic task, or 10 minutes."""
    for section in config.periodic_tasks:
        if section.name == "metrics" and section.enabled:
            minutes = getattr(section, "live_interval", None)
            if minutes is not None:
                return timedelta(minutes=float(minutes))
    return DEFAULT_LIVE_INTERVAL


def camera_dir(config: LookoutConfig, camera_id: str) -> Path:
    return source_log_root(config) / camera_id


def area_dir(config: LookoutConfig, area_id: str) -> Path:
    return area_log_root(config) / area_id


def _entities(root: Path, spec: RawLogSpec) -> Iterator[Path]:
    if not root.is_dir():
        return
    for child in sorted(root.iterdir()):
        if (child / spec.folder).is_dir():
            yield child


def recompute_all(
    config: LookoutConfig, live_interval: timedelta | None = None
) -> list[EntityResult]:
    """Update the reports of every camera and area that has raw logs.

    Safe to call at any time and as often as wanted (also once at shutdown).  A camera or
    area whose update fails is logged and reported in its result; the others go on.
    """
    window = live_interval if live_interval is not None else configured_live_interval(config)
    tz = config.app.tzinfo
    results: list[EntityResult] = []
    pairs = [(source_log_root(config), s) for s in source_specs()]
    pairs += [(area_log_root(config), s) for s in area_specs()]
    for root, spec in pairs:
        for entity in _entities(root, spec):
            try:
                results.append(update_entity_reports(entity, spec, tz, window))
            except Exception as exc:  # one broken folder must not stop the others
                log.exception("reports of %s failed", entity)
                results.append(EntityResult(entity, error=f"{type(exc).__name__}: {exc}"))
    return results
