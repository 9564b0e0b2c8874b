"""``influxdb_logger``: time series in InfluxDB, in line protocol, from the event bus.

The engagement service's measurements (``000_…``: ``engagement_metrics``,
``engaged_persons``, ``engagement`` with ``type=average`` / ``type=by_hour``, ``real_time``)
plus occupancy, distancing, traffic and dwell, written to the InfluxDB **1.x** write API
(``POST /write?db=&rp=&precision=ns``, HTTP Basic authentication when a user is set) or the
**2.x** API (``POST /api/v2/write?org=&bucket=&precision=ns``, ``Authorization: Token``).
docs/integrations/influxdb.md lists every measurement, tag and field.

Every point is tagged ``processor`` (``[App] ProcessorName``, default the host name) and
``camera`` or ``area``, and stamped with its record's time (nanoseconds), so a point written
twice (a batch retried after its answer was lost, a resumed run producing a record again)
overwrites itself (same measurement, tags and time): redelivery never double counts.  Two
line crossings (or two dwell sessions) of one line (zone) and direction at the same instant
are written 1 ns apart, so neither overwrites the other.

The hourly points (``engaged_persons``, ``engagement`` ``type=by_hour``) are running sums of
the hour's ``engagement_log`` samples, kept per camera in
``DataDirectory/processor/influxdb/<section>.json`` (a sample's id is counted once, also
across restarts) and written at the hour's start time: each new sample overwrites the hour's
point with the larger sum.

Reliability: :meth:`InfluxDBLogger.take` only converts records to lines and appends them to
the section's durable outbox (``DataDirectory/processor/outbox/<section>``); a delivery
thread posts batches at most every ``SendingInterval`` seconds and retries with backoff while
InfluxDB is down.  In 1.x, a database that does not exist is created (``CREATE DATABASE``)
when ``CreateDatabase`` is on.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import SplitResult, urlencode, urlsplit

from pydantic import Field, field_validator

from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.integrations.base import (
    CLOSE_TIMEOUT_S as CLOSE_TIMEOUT_S,  # close() waits this long (tests read it here)
)
from libs.integrations.base import (
    OutboxSink,
    outbox_max_bytes_field,
    timeout_field,
)
from libs.integrations.webhook import _PacedOutbox, masked_endpoint
from libs.loggers import (
    AREA_LOGGERS,
    OUTPUTS,
    SOURCE_LOGGERS,
    AreaLogger,
    SendTestError,
    SourceLogger,
)
from libs.records import (
    AreaOccupancySample,
    DwellSession,
    EngagementSample,
    EngagementUpdate,
    LineCrossing,
    ObjectsSample,
    Record,
)

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

log = logging.getLogger(__name__)

NAME = "influxdb_logger"
STATE_FOLDER = "processor/influxdb"
BATCH_MAX_RECORDS = 1000
BATCH_MAX_BYTES = 4 * 1024 * 1024
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
MAX_ANSWER_BYTES = 64 * 1024
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOURS_KEPT = 2  # hours of sample ids remembered per camera (the current and the one before)


class InfluxDBConfig(PluginConfig):
    url: str = Field(
        "http://127.0.0.1:8086",
        alias="Url",
        description="InfluxDB's HTTP address (http:// or https://).",
        json_schema_extra=form("an http:// or https:// URL"),
    )
    api_version: int = Field(
        1,
        alias="ApiVersion",
        ge=1,
        le=2,
        description="1: the 1.x write API (/write, Database, RetentionPolicy, user and "
        "password); 2: the 2.x API (/api/v2/write, Org, Bucket, token).",
        json_schema_extra=form("1 or 2"),
    )
    database: str = Field(
        "lookout", alias="Database", description="1.x: the database written to.")
    retention_policy: str = Field(
        "", alias="RetentionPolicy",
        description="1.x: the retention policy; empty uses the database's default.")
    create_database: bool = Field(
        True, alias="CreateDatabase",
        description="1.x: create Database when InfluxDB says it does not exist.")
    username_env: str = Field(
        "INFLUXDB_USERNAME", alias="UsernameEnv",
        description="1.x: environment variable holding the user name (unset or empty: no "
        "authentication).",
        json_schema_extra=form("an environment variable name"))
    password_env: str = Field(
        "INFLUXDB_PASSWORD", alias="PasswordEnv",
        description="1.x: environment variable holding the password.",
        json_schema_extra=form("an environment variable name"))
    org: str = Field("", alias="Org", description="2.x: the organisation (name or id).")
    bucket: str = Field("lookout", alias="Bucket", description="2.x: the bucket.")
    token_env: str = Field(
        "INFLUXDB_TOKEN", alias="TokenEnv",
        description="2.x: environment variable holding the API token (sent as "
        "'Authorization: Token <token>').",
        json_schema_extra=form("an environment variable name"))
    person_id: str = Field(
        "{camera}-{track}", alias="PersonId",
        description="How real_time's person ids are made from the camera and track ids.",
        json_schema_extra=form("a template with {track} and optionally {camera}"))
    sending_interval: float = Field(
        5.0, alias="SendingInterval", gt=0,
        description=f"Least seconds between two writes; points made meanwhile go as one "
        f"batch (sooner when {BATCH_MAX_RECORDS} records wait).",
        json_schema_extra=form("a number of seconds > 0"))
    timeout: float = timeout_field(
        10.0,
        "Seconds to wait for InfluxDB before the write counts as failed and is retried.")
    outbox_max_bytes: int = outbox_max_bytes_field("points", "InfluxDB")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("Url must be an http:// or https:// URL with a host")
        return value

    @field_validator("person_id")
    @classmethod
    def _person(cls, value: str) -> str:
        try:
            value.format(camera="c", track=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{camera}} and {{track}} may be used ({exc})") from None
        if "{track}" not in value:
            raise ValueError("must contain {track}")
        return value


# ---------------------------------------------------------------------------------------
# Line protocol
# ---------------------------------------------------------------------------------------


def _escape_key(text: str) -> str:
    """A measurement, tag key or tag value: commas, equals signs and spaces escaped."""
    return (text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
            .replace(" ", "\\ ").replace("\n", "\\n"))


def _field_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def line(measurement: str, tags: dict[str, str], fields: dict[str, Any], ns: int) -> str:
    """One point in line protocol; tags sorted by key (InfluxDB's advice), empty tags left
    out."""
    head = _escape_key(measurement)
    for key in sorted(tags):
        if tags[key] != "":
            head += f",{_escape_key(key)}={_escape_key(tags[key])}"
    body = ",".join(f"{_escape_key(k)}={_field_value(v)}" for k, v in fields.items())
    return f"{head} {body} {ns}"


def nanos(ts: datetime) -> int:
    """Integer nanoseconds since the epoch of an aware time (exact to the microsecond)."""
    return (ts - EPOCH) // timedelta(microseconds=1) * 1000


def hour_start(ts: datetime) -> datetime:
    utc = ts.astimezone(UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


# ---------------------------------------------------------------------------------------
# The sink
# ---------------------------------------------------------------------------------------


class InfluxDBLogger(OutboxSink, SourceLogger, AreaLogger):
    """Writes points of every camera's and area's records (module docstring)."""

    Config: ClassVar[type[PluginConfig]] = InfluxDBConfig
    on_bus: ClassVar[bool] = True
    sink_name: ClassVar[str] = NAME
    sink_log: ClassVar[logging.Logger] = log

    def __init__(self, config: PluginConfig, scope: Any, app: LookoutConfig, *,
                 retry_first_s: float | None = None, retry_max_s: float | None = None,
                 idle_poll_s: float | None = None) -> None:
        self.config = config
        self.source = None  # type: ignore[assignment]
        self.area = None  # type: ignore[assignment]
        self.app = app
        self.settings = plugin_settings(InfluxDBConfig, config)
        self.section = config.section or NAME
        self.processor = app.app.processor_name_or_host  # [App] ProcessorName
        self._url = urlsplit(self.settings.url)
        self.shown_url = masked_endpoint(self.settings.url)
        self._ssl = ssl.create_default_context() if self._url.scheme == "https" else None
        self._rejected = 0
        self._refusal: int | None = None
        self._same_instant: dict[tuple[str, ...], tuple[int, int]] = {}
        self._hours_path = Path(app.data_path(f"{STATE_FOLDER}/{self.section}.json"))
        self._hours: dict[str, dict[str, Any]] = self._load_hours()
        poll = idle_poll_s if idle_poll_s is not None else \
            min(1.0, max(0.05, self.settings.sending_interval / 4))
        self._open_outbox(
            app, self._deliver, self.shown_url, outbox_class=_PacedOutbox,
            retry=(retry_first_s, retry_max_s), retry_defaults=(RETRY_FIRST_S, RETRY_MAX_S),
            max_bytes=self.settings.outbox_max_bytes,
            batch_max_records=BATCH_MAX_RECORDS,
            batch_max_bytes=BATCH_MAX_BYTES,
            idle_poll_s=poll,
            interval=self.settings.sending_interval,
            burst=BATCH_MAX_RECORDS,
        )

    # ------------------------------------------------------------------ hourly sums

    def _load_hours(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._hours_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("%s [%s]: %s unreadable (%s): hourly sums start again", NAME,
                      self.section, self._hours_path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _save_hours(self) -> None:
        self._hours_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._hours_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._hours, separators=(",", ":")))
        os.replace(tmp, self._hours_path)

    def _hourly(self, rec: EngagementSample, tags: dict[str, str]) -> list[str]:
        """The hour's running sums with ``rec`` counted (once per id)."""
        hour = nanos(hour_start(rec.timestamp))
        cam = self._hours.setdefault(rec.source_id, {})
        slot = cam.get(str(hour))
        if slot is None:
            slot = cam[str(hour)] = {"persons": 0, "engagement_ms": 0, "ids": []}
            for old in sorted(cam, key=int)[:-HOURS_KEPT]:
                del cam[old]
        if rec.id not in slot["ids"]:
            slot["ids"].append(rec.id)
            slot["persons"] += rec.engaged_people
            slot["engagement_ms"] += rec.engagement_ms
            self._hours_dirty = True
        return [
            line("engaged_persons", tags, {"persons": slot["persons"]}, hour),
            line("engagement", {**tags, "type": "by_hour"},
                 {"engagement": slot["engagement_ms"] / 1000}, hour),
        ]

    _hours_dirty = False

    # ------------------------------------------------------------------ records -> lines

    def _apart(self, key: tuple[str, ...], ns: int) -> int:
        """``ns``, moved 1 ns on for each earlier point of ``key`` at the same instant."""
        prev = self._same_instant.get(key)
        rank = prev[1] + 1 if prev is not None and prev[0] == ns else 0
        self._same_instant[key] = (ns, rank)
        return ns + rank

    def person(self, camera: str, track: int) -> str:
        return self.settings.person_id.format(camera=camera, track=track)

    def lines(self, rec: Record) -> list[str]:
        """The points of ``rec`` (docs/integrations/influxdb.md); empty for other kinds."""
        where = "area" if rec.source == "area" else "camera"
        tags = {"processor": self.processor, where: rec.source_id}
        ns = nanos(rec.timestamp)
        if isinstance(rec, EngagementUpdate):
            out = [
                line("engagement_metrics", tags, {
                    "detected_people": rec.detected_people,
                    "total_engaged_people": rec.total_engaged_people,
                    "total_engagement": float(rec.total_engagement_seconds),
                    "total_seconds": float(rec.observed_seconds)}, ns),
                line("real_time", {**tags, "type": "window"}, {
                    "detected_people": rec.unique_people,
                    "engaged_people": rec.engaged_people,
                    "engagement_time": float(rec.engagement_seconds)}, ns),
            ]
            if rec.total_engaged_people:
                out.append(line("engagement", {**tags, "type": "average"}, {
                    "engagement": rec.total_engagement_seconds / rec.total_engaged_people},
                    ns))
            engaged = set(rec.engaged_ids)
            for tid in rec.person_ids:
                pid = self.person(rec.source_id, tid)
                kind = "engaged" if tid in engaged else "detections"
                out.append(line("real_time", {**tags, "type": kind, "person": pid},
                                {"person_id": pid}, ns))
            return out
        if isinstance(rec, EngagementSample):
            return self._hourly(rec, tags)
        if isinstance(rec, ObjectsSample):
            return [
                line("occupancy", tags, {"occupancy": rec.occupancy,
                                         "detected_people": rec.detected_objects}, ns),
                line("distancing", tags, {"violations": rec.violating_objects,
                                          "violating_pairs": rec.violating_pairs,
                                          "people": rec.detected_objects,
                                          "environment_score": float(rec.environment_score)},
                     ns),
            ]
        if isinstance(rec, AreaOccupancySample):
            return [line("occupancy", tags, {"occupancy": rec.occupancy,
                                             "threshold": rec.threshold,
                                             "violation": rec.violation}, ns)]
        if isinstance(rec, LineCrossing):
            at = self._apart(("traffic", rec.source_id, rec.line, rec.direction), ns)
            return [line("traffic", {**tags, "line": rec.line, "direction": rec.direction},
                         {"crossings": 1, "in": int(rec.direction == "in"),
                          "out": int(rec.direction == "out"), "track_id": rec.track_id}, at)]
        if isinstance(rec, DwellSession):
            at = self._apart(("dwell", rec.source_id, rec.zone), ns)
            return [line("dwell", {**tags, "zone": rec.zone},
                         {"seconds": float(rec.seconds), "sessions": 1,
                          "track_id": rec.track_id}, at)]
        return []

    # ------------------------------------------------------------------ the bus side

    def take(self, records: Sequence[Record]) -> None:
        """Queue the points of ``records``; no network."""
        for rec in records:
            points = self.lines(rec)
            if not points:
                continue
            if not self._put({"id": rec.id, "lines": points}, rec.kind):
                break  # closed
        if self._hours_dirty:
            self._hours_dirty = False
            try:
                self._save_hours()
            except OSError as exc:
                log.error("%s [%s]: cannot save the hourly sums: %s", NAME, self.section,
                          exc)

    def state(self) -> dict[str, Any]:
        return {
            "endpoint": self.shown_url,
            "api_version": self.settings.api_version,
            **self._outbox_status(self.settings.outbox_max_bytes),
        }

    def close(self) -> None:
        self._close_outbox("a write was still running at close; its batch stays queued")

    # ------------------------------------------------------------------ the delivery side

    def _deliver(self, items: list[dict[str, Any]]) -> None:
        body = "\n".join(p for item in items for p in item["lines"]).encode()
        status, reason, text = write_points(self.settings, self._url, self._ssl, body)
        if status == 404 and self.settings.api_version == 1 and \
                self.settings.create_database and "database not found" in text:
            create_database(self.settings, self._url, self._ssl)
            status, reason, text = write_points(self.settings, self._url, self._ssl, body)
        if 200 <= status < 300:
            self._refusal = None
            return
        error = f"HTTP {status} {reason}: {text[:200]}".strip()
        if status != self._refusal:
            self._refusal = status
            log.error("%s [%s]: %s refuses the points with %s; they are kept and retried",
                      NAME, self.section, self.shown_url, error)
        raise OSError(error)

    @classmethod
    def send_test(cls, config: PluginConfig, app: LookoutConfig) -> str:
        """Write one point ``lookout_test,processor=<p> message="..."`` now, outside the
        outbox, with the section's credentials."""
        try:
            settings = plugin_settings(InfluxDBConfig, config)
        except ValueError as exc:
            raise SendTestError(f"the section is invalid: {exc}") from exc
        url = urlsplit(settings.url)
        shown = masked_endpoint(settings.url)
        context = ssl.create_default_context() if url.scheme == "https" else None
        processor = app.app.processor_name_or_host
        body = line("lookout_test", {"processor": processor},
                    {"message": "a test point from Lookout"},
                    nanos(datetime.now(UTC))).encode()
        try:
            status, reason, text = write_points(settings, url, context, body)
            if status == 404 and settings.api_version == 1 and settings.create_database \
                    and "database not found" in text:
                create_database(settings, url, context)
                status, reason, text = write_points(settings, url, context, body)
        except ConnectionRefusedError:
            raise SendTestError(f"{shown}: connection refused") from None
        except TimeoutError:
            raise SendTestError(f"{shown}: no answer within {settings.timeout:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise SendTestError(f"{shown}: {exc.__class__.__name__}: {exc}") from None
        if not 200 <= status < 300:
            raise SendTestError(f"{shown} answered HTTP {status} {reason}: {text[:200]}")
        where = (f"database {settings.database}" if settings.api_version == 1
                 else f"bucket {settings.bucket} of {settings.org}")
        return f"{shown} answered HTTP {status}; wrote a lookout_test point to {where}"


def _auth_headers(settings: InfluxDBConfig) -> dict[str, str]:
    if settings.api_version == 2:
        token = os.environ.get(settings.token_env, "") if settings.token_env else ""
        return {"Authorization": f"Token {token}"} if token else {}
    user = os.environ.get(settings.username_env, "") if settings.username_env else ""
    if not user:
        return {}
    password = os.environ.get(settings.password_env, "") if settings.password_env else ""
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def write_path(settings: InfluxDBConfig, base: str = "") -> str:
    """The path and query of a write."""
    if settings.api_version == 2:
        query = urlencode({"org": settings.org, "bucket": settings.bucket, "precision": "ns"})
        return f"{base}/api/v2/write?{query}"
    params = {"db": settings.database}
    if settings.retention_policy:
        params["rp"] = settings.retention_policy
    params["precision"] = "ns"
    return f"{base}/write?{urlencode(params)}"


def _request(settings: InfluxDBConfig, url: SplitResult, context: ssl.SSLContext | None,
             path: str, body: bytes, content_type: str) -> tuple[int, str, str]:
    headers = {"Content-Type": content_type, "User-Agent": f"lookout-{NAME}",
               **_auth_headers(settings)}
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection(url.hostname or "", url.port,
                                           timeout=settings.timeout, context=context)
    else:
        conn = http.client.HTTPConnection(url.hostname or "", url.port,
                                          timeout=settings.timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        answer = conn.getresponse()
        text = answer.read(MAX_ANSWER_BYTES).decode("utf-8", "replace")
    finally:
        conn.close()
    return answer.status, answer.reason, text


def write_points(settings: InfluxDBConfig, url: SplitResult, context: ssl.SSLContext | None,
                 body: bytes) -> tuple[int, str, str]:
    """POST line-protocol ``body``; the status, reason and (start of the) answer text."""
    return _request(settings, url, context, write_path(settings, url.path.rstrip("/")), body,
                    "text/plain; charset=utf-8")


def create_database(settings: InfluxDBConfig, url: SplitResult,
                    context: ssl.SSLContext | None) -> None:
    """1.x: ``CREATE DATABASE`` (a no-op when it exists)."""
    name = settings.database.replace("\\", "\\\\").replace('"', '\\"')
    body = urlencode({"q": f'CREATE DATABASE "{name}"'}).encode()
    status, reason, text = _request(settings, url, context, f"{url.path.rstrip('/')}/query",
                                    body, "application/x-www-form-urlencoded")
    if not 200 <= status < 300:
        raise OSError(f"CREATE DATABASE failed: HTTP {status} {reason}: {text[:200]}")
    log.info("%s: created database %s", NAME, settings.database)


SOURCE_LOGGERS.register(NAME)(InfluxDBLogger)
AREA_LOGGERS.register(NAME)(InfluxDBLogger)
OUTPUTS.register(NAME)(InfluxDBLogger)
