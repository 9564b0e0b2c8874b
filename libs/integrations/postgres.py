"""``postgres_logger``: the fleet database.  Events and sample rows of every camera and area
go to one PostgreSQL database that a whole chain of edge boxes shares, with idempotent
upserts keyed by processor, camera (or area) and time.

Like the webhook (:mod:`libs.integrations.webhook`), the sink runs in the supervisor on the
event bus (:attr:`PostgresLogger.on_bus`): :meth:`PostgresLogger.take` only filters,
converts and appends to a durable, bounded outbox on disk; the outbox's delivery thread
writes each batch in one transaction.

Sections (one class, three section kinds)::

    [App]
    ProcessorName = store-0042  the processor column of every row (empty: the host name)

    [Output_4]                every record of every camera and area
    Name = postgres_logger
    DsnVariable = LOOKOUT_POSTGRES_DSN

``[SourceLogger_N]`` writes every camera's records, ``[AreaLogger_N]`` every area's.

Connection.  The DSN (``postgresql://user:password@host:5432/dbname?sslmode=verify-full``
or ``host=... dbname=...``) is read from the environment variable named by
``DsnVariable``; when that variable is unset or empty, libpq's own ``PGHOST``, ``PGPORT``,
``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``, ``PGSSLMODE``... and ``~/.pgpass`` apply.  TLS is
libpq's: ``sslmode`` (and ``sslrootcert``) in the DSN.  The DSN and its password are never
logged nor shown: status pages show ``user@host:port/dbname``.

What is written ("report rows").  Every sample the pipelines make (``objects_log``,
``presence_log``, ``dwell_log``, ..., the areas' ``occupancy_log``) is a row of
``lookout_samples``: these are the raw rows the metrics task's hourly, daily and weekly
report files are computed from (:mod:`libs.metrics.reports`), so the database holds the
reports' inputs, and the reports themselves are SQL over them (the view
``lookout_samples_hourly`` is the hourly report of every camera and area, any other grouping is
one ``GROUP BY`` away, and it is exact: ``Avg = Sum / Samples`` as in the files).  The report
files are not copied: they are recomputed on the box and would only repeat these rows.
Every event is a row of ``lookout_events``.  ``lookout_sources`` has one row per processor
and camera or area: first and last record time, when its records last arrived, and the
camera's latest state (from ``camera_state`` events): the fleet overview.

Idempotence.  A sample's key is (processor, source, source_id, kind, time): a batch sent
again (its commit was lost, or the processor restarted and resent its outbox) updates
nothing, and a stretch of video logged again after a restart replaces the row of the same
instant (the reports keep the last row of an instant too).  An event's key is (processor,
source, source_id, kind, time, id) and a second copy is ignored.

Failures.  A batch that cannot be written (the server is down, the connection broke, a
statement timed out) is rolled back, the connection is dropped and the batch stays in the
outbox, tried again after an exponential backoff with full jitter; the records produced
meanwhile wait on disk (``OutboxMaxBytes``; when full the oldest are dropped and counted).
A batch the database refuses for what a record holds (a ``DataError``: a NUL character in a
text, a value out of range) is written again one record at a time, and the records it still
refuses are left out, logged and counted as dropped, instead of holding up the outbox.
``close`` returns within :data:`CLOSE_TIMEOUT_S` and leaves undelivered records to the next
run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from pydantic import Field, field_validator

from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.integrations.base import (
    CLOSE_TIMEOUT_S as CLOSE_TIMEOUT_S,  # close() waits this long (tests read it here)
)
from libs.integrations.base import (
    EVENT_KINDS,
    SAMPLE_KINDS,
    KindsConfig,
    OutboxSink,
    env_name_ok,
    kinds_field,
    outbox_max_bytes_field,
    timeout_field,
)
from libs.loggers import (
    AREA_LOGGERS,
    OUTPUTS,
    SOURCE_LOGGERS,
    AreaLogger,
    SendTestError,
    SourceLogger,
)
from libs.records import ObjectsSample, Record

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

log = logging.getLogger(__name__)

NAME = "postgres_logger"
DEFAULT_DSN_VARIABLE = "LOOKOUT_POSTGRES_DSN"
BATCH_MAX_RECORDS = 1000
BATCH_MAX_BYTES = 4 * 1024 * 1024
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
DEFAULT_KINDS = SAMPLE_KINDS | EVENT_KINDS  # frame_summary (one per frame) only when listed
SCHEMA_LOCK = 0x4C4F4F4B  # pg_advisory_xact_lock key: one processor migrates at a time
# A batch refused for what a record holds (a NUL character in a text, a value out of range,
# a record not in the JSON form): written again record by record, the refused ones left out.
CONTENT_ERRORS = (psycopg.DataError, KeyError, ValueError, TypeError)

# ------------------------------------------------------------------------------ the schema

# Version N's statements; the database's version is the highest row of
# lookout_schema_version.  A new version appends a list; the old ones never change.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE IF NOT EXISTS lookout_events (
            processor   text        NOT NULL,
            source      text        NOT NULL,
            source_id   text        NOT NULL,
            kind        text        NOT NULL,
            time        timestamptz NOT NULL,
            id          text        NOT NULL,
            schema      integer     NOT NULL,
            payload     jsonb       NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (processor, source, source_id, kind, time, id))""",
        "CREATE INDEX IF NOT EXISTS lookout_events_kind_time ON lookout_events (kind, time)",
        """CREATE TABLE IF NOT EXISTS lookout_samples (
            processor   text        NOT NULL,
            source      text        NOT NULL,
            source_id   text        NOT NULL,
            kind        text        NOT NULL,
            time        timestamptz NOT NULL,
            id          text        NOT NULL,
            schema      integer     NOT NULL,
            payload     jsonb       NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            people integer GENERATED ALWAYS AS (COALESCE(
                (payload->>'detected_objects')::integer,
                (payload->>'people')::integer)) STORED,
            occupancy integer GENERATED ALWAYS AS ((payload->>'occupancy')::integer) STORED,
            violating_objects integer
                GENERATED ALWAYS AS ((payload->>'violating_objects')::integer) STORED,
            violating_pairs integer
                GENERATED ALWAYS AS ((payload->>'violating_pairs')::integer) STORED,
            threshold integer GENERATED ALWAYS AS ((payload->>'threshold')::integer) STORED,
            violation boolean GENERATED ALWAYS AS ((payload->>'violation')::boolean) STORED,
            PRIMARY KEY (processor, source, source_id, kind, time))""",
        "CREATE INDEX IF NOT EXISTS lookout_samples_kind_time ON lookout_samples (kind, time)",
        """CREATE TABLE IF NOT EXISTS lookout_sources (
            processor     text        NOT NULL,
            source        text        NOT NULL,
            source_id     text        NOT NULL,
            first_time    timestamptz NOT NULL,
            last_time     timestamptz NOT NULL,
            last_received timestamptz NOT NULL DEFAULT now(),
            state         text,
            state_time    timestamptz,
            reason        text,
            PRIMARY KEY (processor, source, source_id))""",
        """CREATE OR REPLACE VIEW lookout_samples_hourly AS
            SELECT processor, source, source_id, kind,
                   date_trunc('hour', time) AS hour,
                   count(*) AS samples,
                   round(avg(people), 3) AS avg_people, max(people) AS max_people,
                   sum(people) AS sum_people,
                   round(avg(occupancy), 3) AS avg_occupancy,
                   max(occupancy) AS max_occupancy, sum(occupancy) AS sum_occupancy,
                   sum(violating_objects) AS sum_violating_people,
                   max(violating_objects) AS max_violating_people,
                   sum(violating_pairs) AS sum_violating_pairs,
                   count(*) FILTER (WHERE violating_objects > 0) AS violation_samples,
                   count(*) FILTER (WHERE violation) AS over_capacity_samples
            FROM lookout_samples
            GROUP BY processor, source, source_id, kind, date_trunc('hour', time)""",
    ],
}
SCHEMA_VERSION = max(MIGRATIONS)

INSERT_EVENT = """
INSERT INTO lookout_events (processor, source, source_id, kind, time, id, schema, payload)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (processor, source, source_id, kind, time, id) DO NOTHING"""

UPSERT_SAMPLE = """
INSERT INTO lookout_samples AS s
    (processor, source, source_id, kind, time, id, schema, payload)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (processor, source, source_id, kind, time) DO UPDATE
SET id = EXCLUDED.id, schema = EXCLUDED.schema, payload = EXCLUDED.payload,
    received_at = now()
WHERE s.id IS DISTINCT FROM EXCLUDED.id OR s.payload IS DISTINCT FROM EXCLUDED.payload"""

UPSERT_SOURCE = """
INSERT INTO lookout_sources AS s
    (processor, source, source_id, first_time, last_time, state, state_time, reason)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (processor, source, source_id) DO UPDATE
SET first_time = LEAST(s.first_time, EXCLUDED.first_time),
    last_time = GREATEST(s.last_time, EXCLUDED.last_time),
    last_received = now(),
    state = CASE WHEN EXCLUDED.state_time >= COALESCE(s.state_time, '-infinity')
                 THEN EXCLUDED.state ELSE s.state END,
    reason = CASE WHEN EXCLUDED.state_time >= COALESCE(s.state_time, '-infinity')
                  THEN EXCLUDED.reason ELSE s.reason END,
    state_time = GREATEST(s.state_time, EXCLUDED.state_time)"""


class SchemaError(Exception):
    """The database's schema is newer than this Lookout's."""


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The version the database's schema is at (0: none yet)."""
    row = conn.execute("SELECT to_regclass('lookout_schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM lookout_schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Create or upgrade the schema (under an advisory lock, in one transaction); the
    version the database is at.  A schema already at this version is only read, so a role
    without CREATE on the schema can write once an administrator made the tables."""
    current = schema_version(conn)
    if current == SCHEMA_VERSION:
        return current
    if current > SCHEMA_VERSION:
        raise SchemaError(f"the database's schema is at version {current}, newer than "
                          f"this Lookout's {SCHEMA_VERSION}: upgrade Lookout")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS lookout_schema_version ("
                     "version integer PRIMARY KEY, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        current = schema_version(conn)  # another processor may have migrated meanwhile
        if current > SCHEMA_VERSION:
            raise SchemaError(f"the database's schema is at version {current}, newer than "
                              f"this Lookout's {SCHEMA_VERSION}: upgrade Lookout")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)  # type: ignore[arg-type]  # our own constants
            conn.execute("INSERT INTO lookout_schema_version (version) VALUES (%s)",
                         (version,))
            log.info("%s: database schema upgraded to version %d", NAME, version)
    return max(current, SCHEMA_VERSION)


# ------------------------------------------------------------------------------ config

class PostgresConfig(KindsConfig):
    default_kinds: ClassVar[frozenset[str]] = DEFAULT_KINDS

    dsn_variable: str = Field(
        DEFAULT_DSN_VARIABLE,
        alias="DsnVariable",
        description="Name of the environment variable holding the database's DSN "
        "(postgresql://user:password@host:5432/db?sslmode=require); unset or empty uses "
        "libpq's PGHOST, PGUSER, PGPASSWORD, PGDATABASE... The DSN is never shown.",
        json_schema_extra=form("an environment variable name"),
    )
    kinds: str = kinds_field(
        "Comma-separated record kinds to write (see docs/events.md); empty writes every "
        "sample and every event (never frame_summary, one per frame, unless listed).")
    detections: bool = Field(
        False,
        alias="Detections",
        description="Keep the per-person boxes (detections, violations_indexes) of "
        "objects_log rows; off keeps the counts only (about 10 times less data).",
    )
    timeout: float = timeout_field(
        10.0,
        "Seconds to wait for the database (connecting, and each batch's statements) before "
        "the attempt counts as failed and is retried.")
    outbox_max_bytes: int = outbox_max_bytes_field("records", "the database")

    @field_validator("dsn_variable")
    @classmethod
    def _dsn_variable(cls, value: str) -> str:
        value = value.strip()
        if not env_name_ok(value):
            raise ValueError("DsnVariable must be an environment variable name (letters, "
                             "digits and '_', not starting with a digit)")
        return value



def read_dsn(settings: PostgresConfig) -> str:
    """The DSN from the environment ('' leaves everything to libpq's PG* variables)."""
    return os.environ.get(settings.dsn_variable, "").strip()


def shown_target(dsn: str) -> str:
    """``user@host:port/dbname`` of a DSN: what status pages and messages may show."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "an unreadable DSN"
    env = os.environ
    user = str(params.get("user") or env.get("PGUSER") or "")
    host = str(params.get("host") or params.get("hostaddr") or env.get("PGHOST") or "localhost")
    port = str(params.get("port") or env.get("PGPORT") or "5432")
    db = str(params.get("dbname") or env.get("PGDATABASE") or user)
    return f"{user + '@' if user else ''}{host}:{port}/{db}"


def clean_error(exc: BaseException, dsn: str) -> str:
    """A database error as one line without the password (libpq never prints it, but a
    DSN that does not parse may be echoed)."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    secrets = {os.environ.get("PGPASSWORD", "")}
    try:
        secrets.add(str(conninfo_to_dict(dsn).get("password") or ""))
    except psycopg.ProgrammingError:
        return "the DSN cannot be read (check its syntax)"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def connect(settings: PostgresConfig, dsn: str, processor: str) -> psycopg.Connection[Any]:
    timeout = max(1, round(settings.timeout))
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=timeout,
                           application_name=f"lookout {processor}"[:63],
                           keepalives=1, keepalives_idle=30, keepalives_interval=10,
                           keepalives_count=3)
    conn.execute(f"SET statement_timeout = {int(settings.timeout * 1000)}")
    return conn


def _time(value: str) -> datetime:
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def write_batch(conn: psycopg.Connection[Any], processor: str,
                records: list[dict[str, Any]]) -> None:
    """Write ``records`` (their JSON forms) in one transaction: events, samples, and the
    sources' rows."""
    events: list[tuple[Any, ...]] = []
    samples: list[tuple[Any, ...]] = []
    sources: dict[tuple[str, str], list[Any]] = {}
    for rec in records:
        kind = rec["kind"]
        ts = _time(rec["timestamp"])
        row = (processor, rec["source"], rec["source_id"], kind, ts, rec["id"],
               int(rec.get("schema", 1)), Jsonb(rec))
        (events if kind in EVENT_KINDS else samples).append(row)
        key = (rec["source"], rec["source_id"])
        entry = sources.get(key)
        if entry is None:
            entry = sources[key] = [ts, ts, None, None, None]
        entry[0] = min(entry[0], ts)
        entry[1] = max(entry[1], ts)
        if kind == "camera_state" and (entry[3] is None or ts >= entry[3]):
            entry[2], entry[3], entry[4] = rec.get("state"), ts, rec.get("reason")
    with conn.transaction(), conn.cursor() as cur:
        if events:
            cur.executemany(INSERT_EVENT, events)
        if samples:
            cur.executemany(UPSERT_SAMPLE, samples)
        cur.executemany(UPSERT_SOURCE, [(processor, src, sid, *entry)
                                        for (src, sid), entry in sorted(sources.items())])


# ------------------------------------------------------------------------------ the sink

class PostgresLogger(OutboxSink, SourceLogger, AreaLogger):
    """Writes the records of every camera (``[SourceLogger_N]``), every area
    (``[AreaLogger_N]``) or both (``[Output_N]``) to the fleet database; see the module
    docstring."""

    Config: ClassVar[type[PluginConfig]] = PostgresConfig
    on_bus: ClassVar[bool] = True
    sink_name: ClassVar[str] = NAME
    sink_log: ClassVar[logging.Logger] = log

    def __init__(self, config: PluginConfig, scope: Any, app: LookoutConfig, *,
                 retry_first_s: float | None = None, retry_max_s: float | None = None,
                 idle_poll_s: float = 0.5) -> None:
        self.config = config
        self.source = None  # type: ignore[assignment]  # a bus sink serves every camera
        self.area = None  # type: ignore[assignment]  # ...and every area
        self.app = app
        self.settings = plugin_settings(PostgresConfig, config)
        self.section = config.section or NAME
        self.processor = app.app.processor_name_or_host  # [App] ProcessorName
        self._dsn = read_dsn(self.settings)
        self.target = shown_target(self._dsn)
        self._kinds = self.settings.kind_set()
        self._conn: psycopg.Connection[Any] | None = None
        self._conn_lock = threading.Lock()
        self._schema: int | None = None
        self._rejected = 0  # records too big for the outbox
        self._refused = 0  # records the database refused for their content (this run)
        self._last_logged: str | None = None
        if not self._dsn:
            log.info("%s [%s]: %s is not set: connecting with libpq's PG* variables (%s)",
                     NAME, self.section, self.settings.dsn_variable, self.target)
        self._open_outbox(
            app, self._deliver, self.target,
            retry=(retry_first_s, retry_max_s), retry_defaults=(RETRY_FIRST_S, RETRY_MAX_S),
            max_bytes=self.settings.outbox_max_bytes,
            batch_max_records=BATCH_MAX_RECORDS,
            batch_max_bytes=BATCH_MAX_BYTES,
            idle_poll_s=idle_poll_s,
        )

    # ------------------------------------------------------------------ the bus side

    def take(self, records: Sequence[Record]) -> None:
        """Queue what is to be written of ``records``; one write per record, no network."""
        for rec in records:
            if rec.kind not in self._kinds:
                continue
            row = rec.to_dict()
            if isinstance(rec, ObjectsSample) and not self.settings.detections:
                row.pop("detections", None)
                row.pop("violations_indexes", None)
            if not self._put(row, rec.kind):
                return  # closed: the bus has let go of this sink

    def state(self) -> dict[str, Any]:
        """What ``GET /status`` shows under ``outputs``: never the DSN nor a password."""
        out = {
            "database": self.target,
            "processor": self.processor,
            "schema_version": self._schema,
            **self._outbox_status(self.settings.outbox_max_bytes),
        }
        # rows the database refused were delivered by the outbox but count as dropped
        out["delivered"] -= self._refused
        out["dropped"] += self._refused
        return out

    def close(self) -> None:
        """Stop delivering within :data:`CLOSE_TIMEOUT_S`; undelivered records stay."""
        if not self._close_outbox("a batch was still being written at close; it stays "
                                  "queued"):
            return  # the delivery thread still holds the connection: leave it to it
        self._drop_connection()

    # ------------------------------------------------------------------ the delivery side

    def _connection(self) -> psycopg.Connection[Any]:
        with self._conn_lock:
            if self._conn is None or self._conn.closed:
                conn = connect(self.settings, self._dsn, self.processor)
                try:
                    self._schema = migrate(conn)
                except BaseException:
                    conn.close()
                    raise
                self._conn = conn
            return self._conn

    def _drop_connection(self) -> None:
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection closes as it can
                log.debug("%s [%s]: closing a broken connection failed", NAME, self.section)

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        try:
            conn = self._connection()
            try:
                write_batch(conn, self.processor, records)
            except CONTENT_ERRORS:
                # Refused for what a record holds, not for the connection: retrying the
                # batch would be refused forever and hold up every record behind it.
                self._write_each(conn, records)
        except (psycopg.Error, SchemaError, OSError) as exc:
            self._drop_connection()
            message = clean_error(exc, self._dsn)
            if message != self._last_logged:
                self._last_logged = message
                log.error("%s [%s]: cannot write to %s: %s; the records are kept and "
                          "retried with backoff", NAME, self.section, self.target, message)
            raise DeliveryError(message) from None
        self._last_logged = None

    def _write_each(self, conn: psycopg.Connection[Any], records: list[dict[str, Any]]) -> None:
        """Write ``records`` one transaction each, leaving out (counted as dropped) those
        the database refuses for their content."""
        for rec in records:
            try:
                write_batch(conn, self.processor, [rec])
            except CONTENT_ERRORS as exc:
                self._refused += 1
                log.error("%s [%s]: the database refuses a %s record (id %s): %s; it is left "
                          "out", NAME, self.section, rec.get("kind"), rec.get("id"),
                          clean_error(exc, self._dsn))

    @classmethod
    def send_test(cls, config: PluginConfig, app: LookoutConfig) -> str:
        """Connect now, create or check the schema, insert a ``test`` event, read it back and
        roll it back (the writer's privileges are checked, nothing is left), outside the
        outbox."""
        try:
            settings = plugin_settings(PostgresConfig, config)
        except ValueError as exc:
            raise SendTestError(f"the section is invalid: {exc}") from exc
        dsn = read_dsn(settings)
        target = shown_target(dsn)
        processor = app.app.processor_name_or_host
        started = time.monotonic()
        try:
            with connect(settings, dsn, processor) as conn:
                version = migrate(conn)
                now = datetime.now(UTC)
                test_id = f"test-{int(now.timestamp() * 1000)}"
                row = {"id": test_id, "kind": "test", "source": "processor",
                       "source_id": config.section or NAME, "schema": 1,
                       "timestamp": now.isoformat()}
                with conn.transaction() as tx:
                    conn.execute(INSERT_EVENT, (processor, "processor", row["source_id"],
                                                "test", now, test_id, 1, Jsonb(row)))
                    found = conn.execute(
                        "SELECT count(*) FROM lookout_events WHERE processor = %s "
                        "AND kind = 'test' AND id = %s", (processor, test_id)).fetchone()
                    raise psycopg.Rollback(tx)  # the row goes: nothing is left behind
                server = conn.info.parameter_status("server_version") or "?"
                ssl_in_use = conn.pgconn.ssl_in_use
        except SchemaError as exc:
            raise SendTestError(f"{target}: {exc}") from None
        except psycopg.Error as exc:
            raise SendTestError(f"{target}: {clean_error(exc, dsn)}") from None
        if not found or found[0] != 1:
            raise SendTestError(f"{target}: the test row was not written")
        tls = "TLS" if ssl_in_use else "no TLS"
        return (f"{target} (PostgreSQL {server}, {tls}): schema version {version}; a test "
                f"row for processor {processor} was written, read back and rolled back in "
                f"{time.monotonic() - started:.2f} s")


class DeliveryError(Exception):
    """The database did not take the batch (the message never holds the password)."""


# One sink, three section kinds: [SourceLogger_N], [AreaLogger_N] and [Output_N].
SOURCE_LOGGERS.register(NAME)(PostgresLogger)
AREA_LOGGERS.register(NAME)(PostgresLogger)
OUTPUTS.register(NAME)(PostgresLogger)
