"""``postgres_logger`` (the fleet database) against a real PostgreSQL started by the test
(tests/servers.py; one server for the whole module), with real records and a real outbox on
disk.  The Grafana dashboard's every query runs against the schema the sink made."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from fastapi.testclient import TestClient

from libs.config import ConfigError, load_config
from libs.config.models import AppConfig, LookoutConfig
from libs.config.restarts import Restarts
from libs.config.secrets import mask_secrets
from libs.integrations import postgres
from libs.integrations.postgres import (
    NAME,
    SCHEMA_VERSION,
    DeliveryError,
    PostgresConfig,
    PostgresLogger,
    SchemaError,
)
from libs.loggers import AREA_LOGGERS, OUTPUTS, SOURCE_LOGGERS, SendTestError
from libs.records import (
    AreaOccupancySample,
    CameraState,
    DetectedObject,
    DistancingStart,
    DwellSession,
    LineCrossing,
    ObjectsSample,
    OccupancyOver,
    Record,
    RecordIds,
)
from processor.supervisor import Supervisor
from tests.conftest import REPO, TEST_PASSWORD, app_with_users
from tests.servers import PostgreSQL, free_port, running

DSN_VAR = "LOOKOUT_TEST_FLEET_DSN"
TZ = timezone(timedelta(hours=1))
T0 = datetime(2026, 12, 4, 10, 0, tzinfo=TZ)  # 09:00 UTC
STEP = timedelta(minutes=10)
DASHBOARD = REPO / "deploy/grafana/dashboards/lookout-fleet.json"
PROVISIONING = REPO / "deploy/grafana/provisioning"


# ---------------------------------------------------------------------------------------
# The server, the app, the sinks
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    with running(PostgreSQL(tmp_path_factory.mktemp("pg"))) as server:
        assert isinstance(server, PostgreSQL)
        old = os.environ.get(DSN_VAR)
        os.environ[DSN_VAR] = server.dsn()
        try:
            yield server
        finally:
            if old is None:
                os.environ.pop(DSN_VAR, None)
            else:
                os.environ[DSN_VAR] = old


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> LookoutConfig:
    folder = tmp_path_factory.mktemp("fleet")
    text = (REPO / "config-x86.ini").read_text()
    text = text.replace("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}")
    (folder / "config.ini").write_text(text)
    return load_config(folder / "config.ini")


def section(name: str, **keys: str) -> PostgresConfig:
    cfg = PostgresConfig.model_validate({"Name": NAME, "DsnVariable": DSN_VAR, "Timeout": "2",
                                         **keys})
    cfg._section = name
    return cfg


def box(app: LookoutConfig, processor: str) -> LookoutConfig:
    """The configuration of one box of the fleet: ``app`` with [App] ProcessorName set."""
    named = AppConfig.model_validate({**app.app.model_dump(), "processor_name": processor})
    return app.model_copy(update={"app": named})


def make_sink(app: LookoutConfig, processor: str, name: str,
              cls: type[PostgresLogger] = PostgresLogger, **keys: str) -> PostgresLogger:
    return cls(section(name, **keys), None, box(app, processor), retry_first_s=0.05,
               retry_max_s=0.3, idle_poll_s=0.05)


def wait(pred: Any, timeout: float, what: str, sink: PostgresLogger | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            state = f" (state {sink.state()})" if sink is not None else ""
            raise AssertionError(f"timed out waiting for {what}{state}")
        time.sleep(0.02)


def delivered(sink: PostgresLogger, count: int, timeout: float = 10.0) -> None:
    wait(lambda: sink.state()["delivered"] >= count and sink.state()["queued"] == 0,
         timeout, f"{count} records delivered", sink)
    assert sink.state()["delivered"] == count


def query(pg: PostgreSQL, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg.dsn()) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Records: two cameras and an area, an hour of samples every 10 minutes
# ---------------------------------------------------------------------------------------

def fleet_records(ids: RecordIds) -> list[Record]:
    """18 samples and 18 events, values chosen so every figure below is exact:

    - entrance: occupancy 1..6, violating people 2 at samples 1 and 4 (distancing_start
      then); door crossings in at samples 0..4, out at 1 and 3; running.
    - lobby: occupancy 0, 2, ..., 10; one stairs crossing in at sample 2; scene dwell
      sessions of 10, 20 and 60 s at samples 1, 2, 3 and a counter one of 30 s at 3; running,
      then reconnecting at 10:55.
    - ground-floor (area): occupancy 3i + 1, limit 10: over at samples 4 and 5.
    """
    out: list[Record] = []
    for cam in ("entrance", "lobby"):
        out.append(CameraState(id=ids(), source="camera", source_id=cam, timestamp=T0,
                               state="running", previous=None))
    for i in range(6):
        ts = T0 + i * STEP
        ent: dict[str, Any] = dict(source="camera", source_id="entrance", timestamp=ts)
        lob: dict[str, Any] = dict(source="camera", source_id="lobby", timestamp=ts)
        violating = 2 if i in (1, 4) else 0
        boxes = tuple(DetectedObject(id=k, bbox=(10.0 * k, 20.0, 10.0 * k + 40, 120.0),
                                     score=0.9, violating=k < violating)
                      for k in range(i + 1))
        out.append(ObjectsSample(id=ids(), frame=i * 6000, detected_objects=i + 1,
                                 violating_objects=violating, violating_pairs=violating // 2,
                                 occupancy=i + 1,
                                 environment_score=round(1 - violating / (i + 1), 4),
                                 detections=boxes,
                                 violations_indexes=((0, 1),) if violating else (), **ent))
        out.append(ObjectsSample(id=ids(), frame=i * 6000, detected_objects=2 * i,
                                 violating_objects=0, violating_pairs=0, occupancy=2 * i,
                                 environment_score=1.0, detections=(), violations_indexes=(),
                                 **lob))
        occupancy = 3 * i + 1
        out.append(AreaOccupancySample(id=ids(), source="area", source_id="ground-floor",
                                       timestamp=ts, occupancy=occupancy, threshold=10,
                                       violation=occupancy > 10,
                                       cameras={"entrance": i + 1, "lobby": 2 * i}))
        if i <= 4:
            out.append(LineCrossing(id=ids(), frame=i * 6000, line="door", track_id=100 + i,
                                    direction="in", **ent))
        if i in (1, 3):
            out.append(LineCrossing(id=ids(), frame=i * 6000 + 1, line="door",
                                    track_id=200 + i, direction="out", **ent))
        if i == 2:
            out.append(LineCrossing(id=ids(), frame=i * 6000, line="stairs", track_id=300,
                                    direction="in", **lob))
        if violating:
            out.append(DistancingStart(id=ids(), frame=i * 6000, violating_objects=violating,
                                       violating_pairs=1, track_ids=(0, 1),
                                       min_distance_cm=120.0, **ent))
        for zone, seconds in {1: [("scene", 10.0)], 2: [("scene", 20.0)],
                              3: [("scene", 60.0), ("counter", 30.0)]}.get(i, []):
            out.append(DwellSession(id=ids(), zone=zone, track_id=400 + i,
                                    enter=ts - timedelta(seconds=seconds), exit=ts,
                                    seconds=seconds, **lob))
        if i == 4:
            out.append(OccupancyOver(id=ids(), source="area", source_id="ground-floor",
                                     timestamp=ts, occupancy=occupancy, threshold=10))
    out.append(CameraState(id=ids(), source="camera", source_id="lobby",
                           timestamp=T0 + timedelta(minutes=55), state="reconnecting",
                           previous="running", reason="stream lost after 33000 frames"))
    return out


def rows_of(pg: PostgreSQL, processor: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a processor wrote, without the processor and the received_at columns."""
    return {
        "events": query(pg, "SELECT source, source_id, kind, time, id, schema, payload "
                            "FROM lookout_events WHERE processor = %s ORDER BY 1, 2, 3, 4, 5",
                        processor),
        "samples": query(pg, "SELECT source, source_id, kind, time, id, schema, payload, "
                             "people, occupancy, violating_objects, violating_pairs, "
                             "threshold, violation FROM lookout_samples "
                             "WHERE processor = %s ORDER BY 1, 2, 3, 4", processor),
        "sources": query(pg, "SELECT source, source_id, first_time, last_time, state, "
                             "state_time, reason FROM lookout_sources WHERE processor = %s "
                             "ORDER BY 1, 2", processor),
    }


def received(pg: PostgreSQL, processor: str) -> list[tuple[Any, ...]]:
    return query(pg, "SELECT 'e', id, received_at FROM lookout_events WHERE processor = %s "
                     "UNION ALL SELECT 's', id, received_at FROM lookout_samples "
                     "WHERE processor = %s ORDER BY 1, 2", processor, processor)


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

def test_registered_as_a_bus_sink_of_every_section_kind(x86_config: Path) -> None:
    for registry in (SOURCE_LOGGERS, AREA_LOGGERS, OUTPUTS):
        assert registry.get(NAME) is PostgresLogger
    assert PostgresLogger.on_bus and PostgresConfig.RESTARTS is Restarts.NO_CAMERA
    assert all(f.description for f in PostgresConfig.model_fields.values())

    base = x86_config.read_text()
    x86_config.write_text(base.replace("[App]\n", "[App]\nProcessorName = store-42\n", 1) +
                          "\n[Output_7]\nName = postgres_logger\n"
                          "DsnVariable = FLEET_DSN\nKinds = objects_log, line_crossing\n")
    cfg = load_config(x86_config)
    sink = next(s for s in cfg.outputs if s.name == NAME)
    assert isinstance(sink, PostgresConfig) and sink.kind_set() == {"objects_log",
                                                                    "line_crossing"}
    assert cfg.app.processor_name_or_host == "store-42"  # [App] ProcessorName, every sink
    for bad, message in (("ProcessorName = store-42", r"set ProcessorName in \[App\]"),
                         ("DsnVariable = 9DSN", "environment variable name"),
                         ("Kinds = objects_log, line_crosing", "line_crosing")):
        x86_config.write_text(base + f"\n[Output_7]\nName = postgres_logger\n{bad}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(x86_config)
    default = PostgresConfig.model_validate({"Name": NAME})
    assert default.dsn_variable == "LOOKOUT_POSTGRES_DSN"
    assert "frame_summary" not in default.kind_set() and "objects_log" in default.kind_set()


def test_status_and_viewers_never_see_the_dsn(app: LookoutConfig, pg: PostgreSQL) -> None:
    sink = make_sink(app, "masked", "Output_masked")
    try:
        shown = json.dumps(sink.state()) + json.dumps(
            mask_secrets(sink.config.model_dump(by_alias=True)))
        assert pg.password not in shown and "postgresql://" not in shown
        assert sink.state()["database"] == f"lookout@127.0.0.1:{pg.port}/lookout"
        assert sink.state()["processor"] == "masked"
    finally:
        sink.close()


# ---------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------

def test_the_supervisor_feeds_each_section_kind_its_records(x86_config: Path,
                                                           pg: PostgreSQL) -> None:
    """[Output_N] gets every record, [SourceLogger_N] the cameras', [AreaLogger_N] the
    areas', each through the supervisor's event bus; GET /status shows their state."""
    sections = "".join(
        f"\n[{name}]\nName = postgres_logger\nDsnVariable = {DSN_VAR}\n"
        for name in ("Output_6", "SourceLogger_8", "AreaLogger_8"))
    x86_config.write_text(x86_config.read_text().replace(
        "[App]\n", "[App]\nProcessorName = sup-all\n", 1) + sections)
    sup = Supervisor(x86_config, show_progress=False, exit_when_done=False)
    sup._build_sinks()
    try:
        assert {"Output_6", "SourceLogger_8", "AreaLogger_8"} <= set(sup.bus_sinks)
        sup.bus.publish(fleet_records(RecordIds()))
        for name, count in (("Output_6", 36), ("SourceLogger_8", 29), ("AreaLogger_8", 7)):
            sink = sup.bus_sinks[name]
            assert isinstance(sink, PostgresLogger)
            delivered(sink, count)
        status = sup.outputs_status()
    finally:
        sup._close_sinks()
    assert status["Output_6"]["name"] == NAME and status["Output_6"]["connected"] is True
    assert pg.password not in json.dumps(status)
    got = query(pg, "SELECT processor, source, count(*) FROM (SELECT processor, source "
                    "FROM lookout_samples UNION ALL SELECT processor, source FROM "
                    "lookout_events) r WHERE processor LIKE 'sup-%%' GROUP BY 1, 2 "
                    "ORDER BY 1, 2")
    # one box, one name ([App] ProcessorName): the three sections' rows are the same rows
    assert got == [("sup-all", "area", 7), ("sup-all", "camera", 29)]


def test_rows_of_two_cameras_and_an_area(app: LookoutConfig, pg: PostgreSQL) -> None:
    records = fleet_records(RecordIds())
    sink = make_sink(app, "store-01", "Output_rows")
    try:
        sink.take(records)
        delivered(sink, 36)
        assert sink.state()["schema_version"] == SCHEMA_VERSION == 1
        assert sink.state()["connected"] is True and sink.state()["dropped"] == 0
    finally:
        sink.close()
    assert query(pg, "SELECT version FROM lookout_schema_version") == [(1,)]

    counts = query(pg, "SELECT source_id, kind, count(*) FROM lookout_samples "
                       "WHERE processor = 'store-01' GROUP BY 1, 2 ORDER BY 1, 2")
    assert counts == [("entrance", "objects_log", 6), ("ground-floor", "occupancy_log", 6),
                      ("lobby", "objects_log", 6)]
    events = query(pg, "SELECT source_id, kind, count(*) FROM lookout_events "
                       "WHERE processor = 'store-01' GROUP BY 1, 2 ORDER BY 1, 2")
    assert events == [("entrance", "camera_state", 1), ("entrance", "distancing_start", 2),
                      ("entrance", "line_crossing", 7), ("ground-floor", "occupancy_over", 1),
                      ("lobby", "camera_state", 2), ("lobby", "dwell", 4),
                      ("lobby", "line_crossing", 1)]
    entrance = query(pg, "SELECT time, people, occupancy, violating_objects, violating_pairs, "
                         "payload FROM lookout_samples WHERE processor = 'store-01' "
                         "AND source_id = 'entrance' ORDER BY time")
    assert [r[0] for r in entrance] == [T0 + i * STEP for i in range(6)]
    assert entrance[0][0] == datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    assert [r[1:5] for r in entrance] == [(1, 1, 0, 0), (2, 2, 2, 1), (3, 3, 0, 0),
                                          (4, 4, 0, 0), (5, 5, 2, 1), (6, 6, 0, 0)]
    first = records[2]  # entrance's first objects_log
    assert isinstance(first, ObjectsSample) and first.source_id == "entrance"
    expected = first.to_dict()
    del expected["detections"], expected["violations_indexes"]  # Detections = False
    assert entrance[0][5] == expected
    area = query(pg, "SELECT occupancy, threshold, violation, payload->'cameras' "
                     "FROM lookout_samples WHERE processor = 'store-01' "
                     "AND source = 'area' ORDER BY time")
    assert area == [(3 * i + 1, 10, 3 * i + 1 > 10, {"entrance": i + 1, "lobby": 2 * i})
                    for i in range(6)]
    crossing = next(r for r in records if isinstance(r, LineCrossing))
    assert query(pg, "SELECT payload FROM lookout_events WHERE id = %s",
                 crossing.id) == [(crossing.to_dict(),)]
    sources = query(pg, "SELECT source, source_id, first_time, last_time, state, reason "
                        "FROM lookout_sources WHERE processor = 'store-01' ORDER BY 1, 2")
    assert sources == [
        ("area", "ground-floor", T0, T0 + 5 * STEP, None, None),
        ("camera", "entrance", T0, T0 + 5 * STEP, "running", None),
        ("camera", "lobby", T0, T0 + timedelta(minutes=55), "reconnecting",
         "stream lost after 33000 frames")]
    # the hourly report of the database (the metrics task's hourly files, in SQL)
    hourly = query(pg, "SELECT source_id, hour, samples, avg_people, max_people, sum_people, "
                       "avg_occupancy, sum_occupancy, sum_violating_people, violation_samples, "
                       "over_capacity_samples FROM lookout_samples_hourly "
                       "WHERE processor = 'store-01' ORDER BY 1")
    hour = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    assert plain(hourly, "") == [
        ("entrance", hour, 6, 3.5, 6, 21, 3.5, 21, 4, 2, 0),
        ("ground-floor", hour, 6, None, None, None, 8.5, 51, None, 0, 2),
        ("lobby", hour, 6, 5.0, 10, 30, 5.0, 30, 0, 0, 0)]


class LostCommit(PostgresLogger):
    """Its first batch is committed, then the answer is "lost": the outbox sends it again."""

    lost = 0

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        super()._deliver(records)
        if not self.lost:
            self.lost = len(records)
            raise DeliveryError("the commit's answer was lost")


def test_a_batch_sent_again_changes_nothing_and_two_processors_coexist(
        app: LookoutConfig, pg: PostgreSQL) -> None:
    ids = RecordIds()
    records = fleet_records(ids)
    once = make_sink(app, "edge-once", "Output_once")
    twice = make_sink(app, "edge-twice", "Output_twice", cls=LostCommit)
    try:
        once.take(records)
        twice.take(records)
        delivered(once, 36)
        delivered(twice, 36)
        assert isinstance(twice, LostCommit) and twice.lost > 0
        assert twice.state()["failures"] == 0 and twice.state()["dropped"] == 0
    finally:
        once.close()
        twice.close()
    reference = rows_of(pg, "edge-once")
    assert len(reference["events"]) == 18 and len(reference["samples"]) == 18
    assert rows_of(pg, "edge-twice") == reference  # the batch written twice: same rows
    stamps = received(pg, "edge-twice")

    # a restart that resends everything (the same ids): not one row changes, not even
    # when it arrived
    again = make_sink(app, "edge-twice", "Output_again")
    try:
        again.take(records)
        delivered(again, 36)
    finally:
        again.close()
    assert rows_of(pg, "edge-twice") == reference
    assert received(pg, "edge-twice") == stamps

    # the same video logged again after a restart (new ids, one changed value): the sample
    # of that instant is replaced, the events are new records
    changed = [r for r in fleet_records(RecordIds()) if isinstance(r, ObjectsSample)][:1]
    rerun = make_sink(app, "edge-twice", "Output_rerun")
    try:
        rerun.take(changed)
        delivered(rerun, 1)
    finally:
        rerun.close()
    rows = rows_of(pg, "edge-twice")
    assert len(rows["samples"]) == 18
    assert [r[4] for r in rows["samples"] if r[4] == changed[0].id] == [changed[0].id]

    per_processor = query(pg, "SELECT processor, count(*) FROM lookout_events "
                              "WHERE processor LIKE 'edge-%%' GROUP BY 1 ORDER BY 1")
    assert per_processor == [("edge-once", 18), ("edge-twice", 18)]
    cameras = query(pg, "SELECT processor, source_id FROM lookout_sources "
                        "WHERE processor LIKE 'edge-%%' AND source = 'camera' ORDER BY 1, 2")
    assert cameras == [("edge-once", "entrance"), ("edge-once", "lobby"),
                       ("edge-twice", "entrance"), ("edge-twice", "lobby")]


def test_database_down_mid_run_every_record_arrives(app: LookoutConfig,
                                                    pg: PostgreSQL) -> None:
    ids = RecordIds()
    made: list[Record] = []
    during: set[str] = set()
    frame = 0

    def produce(seconds: float, outage: bool) -> None:
        nonlocal frame
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ts = T0 + timedelta(seconds=frame)
            env: dict[str, Any] = dict(source="camera", source_id="cam-outage", timestamp=ts)
            batch: list[Record] = [
                ObjectsSample(id=ids(), frame=frame, detected_objects=1, violating_objects=0,
                              violating_pairs=0, occupancy=1, environment_score=1.0,
                              detections=(), violations_indexes=(), **env),
                LineCrossing(id=ids(), frame=frame, line="door", track_id=frame,
                             direction="in", **env)]
            sink.take(batch)
            made.extend(batch)
            if outage:
                during.update(r.id for r in batch)
            frame += 1
            time.sleep(0.01)

    sink = make_sink(app, "outage", "Output_outage")
    try:
        produce(0.4, False)
        wait(lambda: sink.state()["delivered"] > 0, 10, "a first delivery", sink)
        assert pg.proc is not None
        pg.proc.send_signal(signal.SIGINT)  # fast shutdown: open sessions are ended
        pg.proc.wait(10)
        produce(0.8, True)
        wait(lambda: sink.state()["connected"] is False, 10, "the sink to see the outage")
        failing = sink.state()
        assert failing["failures"] >= 1 and failing["queued"] > 0
        assert pg.password not in json.dumps(failing)
        # the processor restarts while the database is still down: close is quick and
        # leaves the records on disk, and the next run has them
        started = time.monotonic()
        sink.close()
        assert time.monotonic() - started < postgres.CLOSE_TIMEOUT_S + 1
        waiting = sink.state()["queued"]
        sink = make_sink(app, "outage", "Output_outage")
        assert sink.state()["queued"] == waiting > 0
        pg.start()
        produce(0.3, False)
        delivered(sink, len(made), timeout=15)  # "delivered" is kept across runs
        assert sink.state()["dropped"] == 0
    finally:
        sink.close()
    assert len(during) >= 20
    rows = query(pg, "SELECT id FROM lookout_events WHERE processor = 'outage' UNION ALL "
                     "SELECT id FROM lookout_samples WHERE processor = 'outage'")
    got = [r[0] for r in rows]
    assert len(got) == len(made) == len(set(got))  # each once
    assert set(got) == {r.id for r in made}
    assert during <= set(got)
    print(f"PostgreSQL down mid-run: {len(made)} records produced, {len(during)} during the "
          f"outage ({waiting} waiting at the restart), {len(got)} rows, each once")


def test_a_record_the_database_refuses_does_not_hold_up_the_others(
        app: LookoutConfig, pg: PostgreSQL) -> None:
    ids = RecordIds()
    env: dict[str, Any] = dict(source="camera", source_id="cam-nul", timestamp=T0)
    good = [CameraState(id=ids(), state="running", previous=None, **env),
            CameraState(id=ids(), state="finished", previous="running", reason="end",
                        **{**env, "timestamp": T0 + STEP})]
    bad = CameraState(id=ids(), state="failed", previous="running", reason="bad\x00byte",
                      **{**env, "timestamp": T0 + timedelta(seconds=1)})
    sink = make_sink(app, "refusing", "Output_refusing")
    try:
        sink.take([good[0], bad, good[1]])
        wait(lambda: sink.state()["queued"] == 0 and sink.state()["dropped"] == 1, 10,
             "the batch written without the refused record", sink)
        state = sink.state()
        assert state["delivered"] == 2 and state["connected"] is True
        sink.take(fleet_records(RecordIds()))  # the connection still works
        wait(lambda: sink.state()["delivered"] == 38, 10, "the next records", sink)
    finally:
        sink.close()
    got = query(pg, "SELECT id FROM lookout_events WHERE processor = 'refusing' "
                    "AND source_id = 'cam-nul' ORDER BY time")
    assert got == [(good[0].id,), (good[1].id,)]
    assert query(pg, "SELECT state FROM lookout_sources WHERE processor = 'refusing' "
                     "AND source_id = 'cam-nul'") == [("finished",)]


# ---------------------------------------------------------------------------------------
# Schema, send_test
# ---------------------------------------------------------------------------------------

def test_a_newer_schema_is_refused_and_migrating_again_changes_nothing(pg: PostgreSQL) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS fleet_newer")
        admin.execute("CREATE DATABASE fleet_newer")
    dsn = pg.dsn("fleet_newer")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert postgres.migrate(conn) == 1
        assert postgres.migrate(conn) == 1
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                              "ORDER BY 1").fetchall()
        assert tables == [("lookout_events",), ("lookout_samples",), ("lookout_schema_version",),
                          ("lookout_sources",)]
        conn.execute("INSERT INTO lookout_schema_version (version) VALUES (2)")
        with pytest.raises(SchemaError, match="version 2, newer than this Lookout's 1"):
            postgres.migrate(conn)


def test_a_writer_without_create_writes_once_the_tables_exist(
        app: LookoutConfig, pg: PostgreSQL, monkeypatch: pytest.MonkeyPatch) -> None:
    """The least-privilege writer of docs/integrations/postgres.md: SELECT, INSERT, UPDATE
    on the tables an administrator (or a first processor) made; no CREATE, no DELETE."""
    with psycopg.connect(pg.dsn(), autocommit=True) as admin:
        postgres.migrate(admin)
        admin.execute("CREATE ROLE fleet_writer LOGIN PASSWORD 'writer-pw-1234'")
        admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        admin.execute("GRANT SELECT, INSERT, UPDATE ON lookout_events, lookout_samples, "
                      "lookout_sources TO fleet_writer")
        admin.execute("GRANT SELECT ON lookout_schema_version TO fleet_writer")
    monkeypatch.setenv("LOOKOUT_TEST_WRITER_DSN", f"postgresql://fleet_writer:writer-pw-1234@"
                                                  f"127.0.0.1:{pg.port}/lookout")
    cfg = section("Output_writer", DsnVariable="LOOKOUT_TEST_WRITER_DSN")
    app = box(app, "least-privilege")
    assert "rolled back" in PostgresLogger.send_test(cfg, app)
    sink = PostgresLogger(cfg, None, app, retry_first_s=0.05, retry_max_s=0.3,
                          idle_poll_s=0.05)
    try:
        sink.take(fleet_records(RecordIds()))
        delivered(sink, 36)
    finally:
        sink.close()
    assert query(pg, "SELECT count(*) FROM lookout_samples WHERE processor = "
                     "'least-privilege'") == [(18,)]
    with psycopg.connect(pg.dsn(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS fleet_empty")
        admin.execute("CREATE DATABASE fleet_empty")
    monkeypatch.setenv("LOOKOUT_TEST_WRITER_DSN", f"postgresql://fleet_writer:writer-pw-1234@"
                                                  f"127.0.0.1:{pg.port}/fleet_empty")
    with pytest.raises(SendTestError, match="permission denied for schema public") as err:
        PostgresLogger.send_test(cfg, app)
    assert "writer-pw-1234" not in str(err.value)


def test_send_test_reaches_the_database_and_says_why_not(
        app: LookoutConfig, pg: PostgreSQL, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = section("Output_test")
    app = box(app, "store-test")
    answer = PostgresLogger.send_test(cfg, app)
    assert f"lookout@127.0.0.1:{pg.port}/lookout" in answer and "schema version 1" in answer
    assert "store-test" in answer and pg.password not in answer
    assert query(pg, "SELECT count(*) FROM lookout_events WHERE kind = 'test'") == [(0,)]
    assert "rolled back" in answer

    wrong = "not-the-password-4711"
    monkeypatch.setenv(DSN_VAR, pg.dsn().replace(pg.password, wrong))
    with pytest.raises(SendTestError, match="password authentication failed") as err:
        PostgresLogger.send_test(cfg, app)
    assert wrong not in str(err.value) and pg.password not in str(err.value)

    monkeypatch.setenv(DSN_VAR, f"postgresql://lookout:{wrong}@127.0.0.1:{free_port()}/lookout")
    with pytest.raises(SendTestError, match="Connection refused") as err:
        PostgresLogger.send_test(cfg, app)
    assert wrong not in str(err.value)

    # unset: libpq's PG* variables
    monkeypatch.delenv(DSN_VAR)
    for var, value in {"PGHOST": "127.0.0.1", "PGPORT": str(pg.port), "PGUSER": "lookout",
                       "PGPASSWORD": pg.password, "PGDATABASE": "lookout"}.items():
        monkeypatch.setenv(var, value)
    assert "schema version 1" in PostgresLogger.send_test(cfg, app)


def test_the_settings_pages_send_a_test_button(x86_config: Path, pg: PostgreSQL,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /outputs/<section>/test (the dashboard's "Send a test"): admins only, the
    database's answer, or 502 with the reason; never the password."""
    x86_config.write_text(x86_config.read_text().replace(
        "[App]\n", "[App]\nProcessorName = store-api\n", 1) +
        f"\n[Output_6]\nName = postgres_logger\nDsnVariable = {DSN_VAR}\n")
    client = TestClient(app_with_users(x86_config))

    def login(user: str) -> dict[str, str]:
        r = client.post("/auth/token", data={"username": user, "password": TEST_PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    admin, viewer = login("admin1"), login("viewer1")
    assert client.post("/outputs/Output_6/test", headers=viewer).status_code == 403
    r = client.post("/outputs/Output_6/test", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True and "schema version 1" in r.json()["detail"]
    assert client.post("/outputs/postgres_logger/test", headers=admin).status_code == 200
    monkeypatch.setenv(DSN_VAR, pg.dsn().replace(pg.password, "wrong-pw-0042"))
    r = client.post("/outputs/Output_6/test", headers=admin)
    assert r.status_code == 502 and "password authentication failed" in r.json()["detail"]
    assert "wrong-pw-0042" not in r.text and pg.password not in r.text


# ---------------------------------------------------------------------------------------
# The Grafana dashboard
# ---------------------------------------------------------------------------------------

def grafana_sql(sql: str, start: datetime, end: datetime, interval_s: int,
                variables: dict[str, list[str]]) -> str:
    """A panel's SQL as Grafana's PostgreSQL data source sends it (its macros expanded as
    Grafana does, except that time groups come back as timestamps, not epoch seconds)."""
    sql = re.sub(r"\$__timeGroupAlias\((\w+),\s*\$__interval\)",
                 lambda m: f"to_timestamp(floor(extract(epoch from {m[1]}) / {interval_s}) "
                           f"* {interval_s}) AS \"time\"", sql)
    sql = re.sub(r"\$__timeFilter\((\w+)\)",
                 lambda m: f"{m[1]} BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'",
                 sql)
    for name in sorted(variables, key=len, reverse=True):
        values = ", ".join("'" + v.replace("'", "''") + "'" for v in variables[name])
        sql = sql.replace(f"${name}", values)
    assert "$" not in sql, f"a macro or variable the test does not know: {sql}"
    return sql


def b(minutes: int) -> datetime:
    """The start of a 30-minute bucket, ``minutes`` after 09:00 UTC."""
    return datetime(2026, 12, 4, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes)


# Every panel of the dashboard (title -> the rows of each query, refId order), for the
# fleet records of processor dash-a, a range of 09:00 to 11:00 UTC and 30-minute buckets.
EXPECTED: dict[str, list[list[tuple[Any, ...]]]] = {
    "Processors reporting": [[(1,)]],
    "Cameras online": [[(1,)]],  # the lobby is reconnecting
    "Cameras known": [[(2,)]],
    "Distancing episodes": [[(2,)]],
    "Cameras": [[("dash-a", "entrance", "running", None, T0 + 5 * STEP),
                 ("dash-a", "lobby", "reconnecting", "stream lost after 33000 frames",
                  T0 + timedelta(minutes=55))]],
    "Occupancy per camera": [[(b(0), "dash-a/entrance", 2.0), (b(0), "dash-a/lobby", 2.0),
                              (b(30), "dash-a/entrance", 5.0), (b(30), "dash-a/lobby", 8.0)]],
    "Occupancy per area": [[(b(0), "dash-a/ground-floor", 4.0),
                            (b(30), "dash-a/ground-floor", 13.0)],
                           [(b(0), "dash-a/ground-floor limit", 10),
                            (b(30), "dash-a/ground-floor limit", 10)]],
    "Area over capacity": [[("dash-a", "ground-floor", 6, 16, 2)]],
    "Traffic per line": [[(b(0), "entrance door in", 3), (b(0), "entrance door out", 1),
                          (b(0), "lobby stairs in", 1), (b(30), "entrance door in", 2),
                          (b(30), "entrance door out", 1)]],
    "Crossings per line": [[("dash-a", "entrance", "door", 5, 2),
                            ("dash-a", "lobby", "stairs", 1, 0)]],
    "Distancing violations": [[(b(0), "dash-a/entrance", 0.67), (b(0), "dash-a/lobby", 0.0),
                               (b(30), "dash-a/entrance", 0.67),
                               (b(30), "dash-a/lobby", 0.0)]],
    "Dwell time": [[(b(0), "dash-a/lobby", 15.0), (b(30), "dash-a/lobby", 60.0)]],
    "Dwell per zone": [[("dash-a", "lobby", "counter", 1, 30.0, 30.0),
                        ("dash-a", "lobby", "scene", 3, 30.0, 60.0)]],
}


def plain(rows: list[tuple[Any, ...]], title: str) -> list[tuple[Any, ...]]:
    """Decimals as floats; the Cameras table without its last_received column."""
    out = [tuple(float(v) if type(v).__name__ == "Decimal" else v for v in row)
           for row in rows]
    if title == "Cameras":
        assert all(isinstance(r[-1], datetime) for r in out)
        out = [r[:-1] for r in out]
    return out


def test_every_dashboard_query_runs_on_the_schema_and_gives_the_numbers(
        app: LookoutConfig, pg: PostgreSQL) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = RecordIds()
    # outside the time range: must not count in the panels that filter on time
    early = T0 - timedelta(days=1)
    outside: list[Record] = [
        ObjectsSample(id=ids(), frame=0, detected_objects=99, violating_objects=9,
                      violating_pairs=9, occupancy=99, environment_score=0.9, detections=(),
                      violations_indexes=(), source="camera", source_id="entrance",
                      timestamp=early),
        LineCrossing(id=ids(), frame=0, line="door", track_id=1, direction="in",
                     source="camera", source_id="entrance", timestamp=early)]
    a = make_sink(app, "dash-a", "Output_dash_a")
    other = make_sink(app, "dash-b", "Output_dash_b")  # another store, filtered out
    try:
        a.take(outside + fleet_records(ids))
        other.take(fleet_records(RecordIds()))
        delivered(a, 38)
        delivered(other, 36)
    finally:
        a.close()
        other.close()

    with psycopg.connect(pg.dsn(), autocommit=True) as admin:  # docs: the Grafana role
        admin.execute("CREATE ROLE grafana_reader LOGIN PASSWORD 'reader-pw-5678'")
        admin.execute("GRANT USAGE ON SCHEMA public TO grafana_reader")
        admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana_reader")
    reader = f"postgresql://grafana_reader:reader-pw-5678@127.0.0.1:{pg.port}/lookout"
    with psycopg.connect(reader) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM lookout_events")

    start, end = b(0), b(120)
    chosen = {"processor": ["dash-a"], "camera": ["entrance", "lobby"],
              "area": ["ground-floor"]}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert sorted(p["title"] for p in panels) == sorted(EXPECTED)  # no panel unchecked
    with psycopg.connect(reader) as conn:  # what Grafana's read-only role sees
        for p in panels:
            assert p["datasource"]["uid"] == "lookout-fleet"
            got = [plain(conn.execute(grafana_sql(t["rawSql"], start, end, 1800,  # type: ignore[arg-type]
                                                  chosen)).fetchall(), p["title"])
                   for t in p["targets"]]
            assert got == EXPECTED[p["title"]], p["title"]
        # both stores chosen: the fleet overview counts both
        both = dict(chosen, processor=["dash-a", "dash-b"])
        fleet = {p["title"]: p["targets"][0]["rawSql"] for p in panels}
        for title, value in (("Processors reporting", 2), ("Cameras online", 2),
                             ("Cameras known", 4), ("Distancing episodes", 4)):
            sql = grafana_sql(fleet[title], start, end, 1800, both)
            assert conn.execute(sql).fetchall() == [(value,)], title  # type: ignore[arg-type]
        # the template variables
        variables = {v["name"]: v["query"] for v in dashboard["templating"]["list"]}
        assert set(variables) == {"processor", "camera", "area"}
        found = conn.execute(grafana_sql(variables["processor"], start, end, 1800,
                                         {})).fetchall()  # type: ignore[arg-type]
        assert {("dash-a",), ("dash-b",)} <= set(found)
        for name, values in (("camera", [("entrance",), ("lobby",)]),
                             ("area", [("ground-floor",)])):
            sql = grafana_sql(variables[name], start, end, 1800, {"processor": ["dash-a"]})
            assert conn.execute(sql).fetchall() == values  # type: ignore[arg-type]

    # the provisioning files name the dashboard's data source and folder
    source = yaml.safe_load((PROVISIONING / "datasources/lookout-fleet.yaml").read_text())
    assert [d["uid"] for d in source["datasources"]] == ["lookout-fleet"]
    assert "password" not in json.dumps(source["datasources"][0].get("jsonData", {}))
    assert source["datasources"][0]["secureJsonData"]["password"].startswith("${")
    provider = yaml.safe_load((PROVISIONING / "dashboards/lookout-fleet.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"


def test_renaming_the_box_in_app_renames_its_new_rows(x86_config: Path, pg: PostgreSQL) -> None:
    """[App] ProcessorName changed and reloaded: the supervisor rebuilds its bus sinks, and
    the rows written after the reload carry the new name (no section changed)."""
    text = x86_config.read_text().replace("[App]\n", "[App]\nProcessorName = old-name\n", 1)
    text = text.replace("[Source_0]\n", "[Source_0]\nEnabled = False\n", 1)  # no camera runs
    x86_config.write_text(text + f"\n[Output_6]\nName = postgres_logger\nDsnVariable = {DSN_VAR}\n")
    sup = Supervisor(x86_config, show_progress=False, exit_when_done=False)
    sup._build_sinks()
    try:
        first = sup.bus_sinks["Output_6"]
        assert isinstance(first, PostgresLogger) and first.processor == "old-name"
        x86_config.write_text(x86_config.read_text().replace("ProcessorName = old-name",
                                                             "ProcessorName = new-name"))
        assert sup.reload() == {"started": [], "restarted": [], "stopped": []}
        second = sup.bus_sinks["Output_6"]
        assert second is not first and isinstance(second, PostgresLogger)
        assert second.state()["processor"] == "new-name"
        second.take([r for r in fleet_records(RecordIds()) if r.source == "area"])
        delivered(second, 7)
    finally:
        sup._close_sinks()
    assert query(pg, "SELECT processor, count(*) FROM (SELECT processor FROM lookout_samples "
                     "UNION ALL SELECT processor FROM lookout_events) r WHERE processor LIKE "
                     "'%%-name' GROUP BY 1") == [("new-name", 7)]
