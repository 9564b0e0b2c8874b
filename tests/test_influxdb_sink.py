"""``influxdb_logger``: line protocol written to a real InfluxDB 1.x (``influxd`` of
tests/servers.py) and read back with InfluxQL (``/query``), exact values; an outage (influxd
stopped mid-run and restarted, every point made meanwhile counted afterwards); the hourly
sums surviving a restart of the sink; ``send_test``.

InfluxDB 2.x: no 2.x server can be had here (Debian ships 1.6, and the 2.x server is not on
PyPI), so the 2.x API is checked at the HTTP boundary with a local HTTP receiver: the exact
path and query (``/api/v2/write?org=&bucket=&precision=ns``), the ``Authorization: Token``
header from the environment and the body's lines.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from libs.config import load_config
from libs.config.models import LookoutConfig
from libs.config.restarts import Restarts
from libs.config.secrets import is_secret_key
from libs.integrations.influxdb import NAME, InfluxDBConfig, InfluxDBLogger, line, nanos
from libs.loggers import AREA_LOGGERS, OUTPUTS, SOURCE_LOGGERS, SendTestError
from libs.records import (
    AreaOccupancySample,
    DwellSession,
    EngagementPerson,
    EngagementSample,
    EngagementUpdate,
    FrameSummary,
    LineCrossing,
    ObjectsSample,
    Record,
    RecordIds,
)
from tests.conftest import REPO
from tests.servers import InfluxDB1, free_port, running

T0 = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
TOKEN = "influx-v2-token-0123"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> LookoutConfig:
    folder = tmp_path_factory.mktemp("influx-sink")
    text = (REPO / "config-x86.ini").read_text()
    text = text.replace("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}")
    # the processor tag of every point is the box's one name, [App] ProcessorName
    text = text.replace("[App]\n", "[App]\nProcessorName = box1\n", 1)
    (folder / "config.ini").write_text(text)
    return load_config(folder / "config.ini")


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    with running(InfluxDB1(tmp_path_factory.mktemp("influx"))) as srv:
        assert isinstance(srv, InfluxDB1)
        yield srv


def section(url: str, name: str, **keys: str) -> InfluxDBConfig:
    cfg = InfluxDBConfig.model_validate({"Name": NAME, "Url": url, "SendingInterval": "0.05",
                                         "Timeout": "2", **keys})
    cfg._section = name
    return cfg


def make_sink(app: LookoutConfig, url: str, name: str, **keys: str) -> InfluxDBLogger:
    return InfluxDBLogger(section(url, name, **keys), None, app, retry_first_s=0.05,
                          retry_max_s=0.3, idle_poll_s=0.02)


def query(srv: InfluxDB1, db: str, q: str) -> list[dict[str, Any]]:
    """Rows of an InfluxQL query (``time`` in ns), series tags merged into each row."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/query?" + urlencode({"db": db, "q": q, "epoch": "ns"}))
    doc = json.loads(conn.getresponse().read())
    conn.close()
    rows = []
    for series in doc["results"][0].get("series", []):
        for values in series["values"]:
            rows.append({**series.get("tags", {}), **dict(zip(series["columns"], values,
                                                               strict=True))})
    return rows


def wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def env(ids: RecordIds, at: datetime, source: str = "camera",
        source_id: str = "lobby") -> dict[str, Any]:
    return {"id": ids(), "source": source, "source_id": source_id, "timestamp": at}


def engagement_sample(ids: RecordIds, at: datetime, engaged: int, ms: int) -> EngagementSample:
    return EngagementSample(**env(ids, at), people=engaged + 1, engaged_people=engaged,
                            engagement_ms=ms, observed_ms=600_000)


def objects(ids: RecordIds, at: datetime, frame: int, people: int = 3,
            violating: int = 2) -> ObjectsSample:
    return ObjectsSample(**env(ids, at), frame=frame, detected_objects=people,
                         violating_objects=violating, violating_pairs=1, occupancy=people,
                         environment_score=0.3333, detections=(), violations_indexes=())


def ns(at: datetime) -> int:
    return nanos(at)


def test_sections_register_and_line_protocol_escapes() -> None:
    for registry in (SOURCE_LOGGERS, AREA_LOGGERS, OUTPUTS):
        assert registry.get(NAME) is InfluxDBLogger
    assert InfluxDBConfig.RESTARTS is Restarts.NO_CAMERA
    assert not [f.alias for f in InfluxDBConfig.model_fields.values()
                if f.alias and is_secret_key(f.alias)]  # credentials come from the environment
    with pytest.raises(ValueError, match="ApiVersion"):
        InfluxDBConfig.model_validate({"Name": NAME, "ApiVersion": "3"})
    assert line("m x", {"b": "v=1, w", "a": "", "c": "z"}, {"f": 'say "hi"', "n": 2,
                                                            "g": 0.5, "ok": True}, 7) == \
        'm\\ x,b=v\\=1\\,\\ w,c=z f="say \\"hi\\"",n=2i,g=0.5,ok=true 7'
    assert nanos(datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)) == \
        1767225600_123456000


def test_every_measurement_read_back_exactly(app: LookoutConfig, influx: InfluxDB1) -> None:
    ids = RecordIds()
    people = (EngagementPerson(track_id=12, engaged=True, engagement_seconds=9.2, last_seen=T0),
              EngagementPerson(track_id=15, engaged=False, engagement_seconds=0.0,
                               last_seen=T0 - timedelta(seconds=1)))
    upd = EngagementUpdate(**env(ids, T0), window_from=T0 - timedelta(seconds=5),
                           unique_people=2, engaged_people=1, engagement_seconds=1.5,
                           person_ids=(12, 15), engaged_ids=(12,), detected_people=5,
                           total_engaged_people=2, total_engagement_seconds=12.25,
                           observed_seconds=60.0, people=people)
    s1 = engagement_sample(ids, T0 + timedelta(minutes=10), 2, 3000)
    s2 = engagement_sample(ids, T0 + timedelta(minutes=20), 1, 1500)
    s3 = engagement_sample(ids, T0 + timedelta(minutes=70), 1, 250)
    cross = [LineCrossing(**env(ids, T0 + timedelta(seconds=1)), frame=10, line="door",
                          track_id=t, direction=d) for t, d in ((7, "in"), (8, "in"), (9, "out"))]
    dwell = DwellSession(**env(ids, T0 + timedelta(seconds=2)), zone="counter", track_id=7,
                         enter=T0 - timedelta(seconds=37.2), exit=T0 + timedelta(seconds=2),
                         seconds=39.2)
    area = AreaOccupancySample(**env(ids, T0, "area", "ground"), occupancy=23, threshold=20,
                               violation=True, cameras={"lobby": 14, "door": 9})
    summary = FrameSummary(**env(ids, T0), frame=1, detected_objects=0, violating_objects=0,
                           violating_pairs=0, occupancy=0, occupancy_threshold=0,
                           environment_score=1.0)
    records: list[Record] = [upd, s1, s2, s1, s3, objects(ids, T0, 1), *cross, dwell, area,
                             summary]
    sink = make_sink(app, influx.url, "Output_all", Database="exact")
    try:
        sink.take(records)
        wait(lambda: sink.state()["queued"] == 0 and sink.state()["connected"], 10,
             "the points")  # the database did not exist: the sink created it
        assert sink.state()["delivered"] == len(records) - 1  # not the frame summary
    finally:
        sink.close()
    tags = {"processor": "box1", "camera": "lobby"}
    assert query(influx, "exact", "SELECT * FROM engagement_metrics") == [
        {"time": ns(T0), **tags, "detected_people": 5, "total_engaged_people": 2,
         "total_engagement": 12.25, "total_seconds": 60}]
    real = query(influx, "exact", "SELECT * FROM real_time GROUP BY type, person")
    assert sorted(real, key=lambda r: r["type"]) == [
        {"time": ns(T0), **tags, "type": "detections", "person": "lobby-15",
         "person_id": "lobby-15", "detected_people": None, "engaged_people": None,
         "engagement_time": None},
        {"time": ns(T0), **tags, "type": "engaged", "person": "lobby-12",
         "person_id": "lobby-12", "detected_people": None, "engaged_people": None,
         "engagement_time": None},
        {"time": ns(T0), **tags, "type": "window", "person": "", "person_id": None,
         "detected_people": 2, "engaged_people": 1, "engagement_time": 1.5},
    ]
    hour10, hour11 = ns(T0), ns(T0 + timedelta(hours=1))
    assert query(influx, "exact", "SELECT persons FROM engaged_persons") == [
        {"time": hour10, "persons": 3}, {"time": hour11, "persons": 1}]  # s1 counted once
    assert query(influx, "exact", "SELECT engagement FROM engagement GROUP BY type") == [
        {"type": "average", "time": hour10, "engagement": 6.125},
        {"type": "by_hour", "time": hour10, "engagement": 4.5},
        {"type": "by_hour", "time": hour11, "engagement": 0.25}]
    assert query(influx, "exact", "SELECT * FROM occupancy GROUP BY camera, area") == [
        {"camera": "lobby", "area": "", "time": ns(T0), "processor": "box1",
         "occupancy": 3, "threshold": None, "violation": None, "detected_people": 3},
        {"camera": "", "area": "ground", "time": ns(T0), "processor": "box1",
         "occupancy": 23, "threshold": 20, "violation": True, "detected_people": None}]
    assert query(influx, "exact", "SELECT * FROM distancing") == [
        {"time": ns(T0), **tags, "violations": 2, "violating_pairs": 1, "people": 3,
         "environment_score": 0.3333}]
    t1 = ns(T0 + timedelta(seconds=1))
    assert query(influx, "exact", "SELECT track_id, crossings, \"in\", \"out\" FROM traffic "
                 "GROUP BY line, direction") == [
        {"line": "door", "direction": "in", "time": t1, "track_id": 7, "crossings": 1,
         "in": 1, "out": 0},
        {"line": "door", "direction": "in", "time": t1 + 1, "track_id": 8, "crossings": 1,
         "in": 1, "out": 0},
        {"line": "door", "direction": "out", "time": t1, "track_id": 9, "crossings": 1,
         "in": 0, "out": 1}]
    assert query(influx, "exact", "SELECT * FROM dwell") == [
        {"time": ns(T0 + timedelta(seconds=2)), **tags, "zone": "counter", "seconds": 39.2,
         "sessions": 1, "track_id": 7}]
    # The hourly sums survive a restart of the sink; a sample taken again is not re-counted,
    # and points written again (the same tags and time) overwrite themselves.
    again = make_sink(app, influx.url, "Output_all", Database="exact")
    try:
        again.take([s1, engagement_sample(ids, T0 + timedelta(minutes=30), 1, 1000), *cross])
        wait(lambda: again.state()["queued"] == 0 and again.state()["delivered"] >= 5, 10,
             "the second run's points")
    finally:
        again.close()
    assert query(influx, "exact", "SELECT persons FROM engaged_persons") == [
        {"time": hour10, "persons": 4}, {"time": hour11, "persons": 1}]
    assert query(influx, "exact", "SELECT engagement FROM engagement WHERE type = 'by_hour'"
                 ) == [{"time": hour10, "engagement": 5.5}, {"time": hour11, "engagement": 0.25}]
    assert query(influx, "exact", "SELECT SUM(crossings) FROM traffic GROUP BY direction") == [
        {"direction": "in", "time": 0, "sum": 2}, {"direction": "out", "time": 0, "sum": 1}]


def test_outage_every_point_made_while_influxdb_was_down_is_written(
        app: LookoutConfig, tmp_path: Path) -> None:
    """A sample every 10 ms; influxd is stopped after 30 and restarted after 60 more made
    while it was down: every sample's points are in the database afterwards (counted), and
    ``take`` never waited for InfluxDB."""
    with running(InfluxDB1(tmp_path / "influx")) as srv:
        assert isinstance(srv, InfluxDB1)
        sink = make_sink(app, srv.url, "SourceLogger_out", Database="outage")
        ids = RecordIds()
        made: list[ObjectsSample] = []
        during: list[ObjectsSample] = []
        slowest = [0.0]
        down = threading.Event()
        stop = threading.Event()

        def produce() -> None:
            i = 0
            while not stop.is_set():
                rec = objects(ids, T0 + timedelta(seconds=0.1 * i), i, people=i % 7,
                              violating=i % 3)
                t = time.perf_counter()
                sink.take([rec])
                slowest[0] = max(slowest[0], time.perf_counter() - t)
                made.append(rec)
                if down.is_set():
                    during.append(rec)
                i += 1
                time.sleep(0.01)

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            wait(lambda: len(made) >= 30 and sink.state()["delivered"] > 0, 10, "first points")
            srv.stop()
            down.set()
            wait(lambda: len(during) >= 60, 10, "samples made during the outage")
            wait(lambda: sink.state()["connected"] is False, 5, "the sink to notice")
            srv.start()
            down.clear()
            time.sleep(0.2)
        finally:
            stop.set()
            producer.join()
        wait(lambda: sink.state()["queued"] == 0, 15, "the outbox to drain")
        (count,) = query(srv, "outage", "SELECT COUNT(occupancy) FROM occupancy")
        assert count["count"] == len(made)
        (count,) = query(srv, "outage", "SELECT COUNT(violations), SUM(violations), "
                         "SUM(people) FROM distancing")
        assert (count["count"], count["sum"], count["sum_1"]) == (
            len(made), sum(r.violating_objects for r in made),
            sum(r.detected_objects for r in made))
        times = {r["time"] for r in query(srv, "outage", "SELECT occupancy FROM occupancy")}
        assert {ns(r.timestamp) for r in during} <= times and len(during) >= 60
        assert sink.state()["dropped"] == 0
        # a put is one write to the outbox file: never a wait for the server (timeout 1-2 s)
        assert slowest[0] < 0.25, f"take waited {slowest[0]:.3f} s"
        print(f"made {len(made)} samples, {len(during)} during the outage; "
              f"{count['count']} in InfluxDB; slowest take {slowest[0] * 1000:.1f} ms")
        sink.close()


def test_send_test_v1(app: LookoutConfig, influx: InfluxDB1) -> None:
    answer = InfluxDBLogger.send_test(section(influx.url, "Output_t", Database="tests"), app)
    assert "HTTP 204" in answer and "database tests" in answer
    rows = query(influx, "tests", "SELECT * FROM lookout_test")
    assert len(rows) == 1 and rows[0]["message"] == "a test point from Lookout"
    with pytest.raises(SendTestError, match="connection refused"):
        InfluxDBLogger.send_test(section(f"http://127.0.0.1:{free_port()}", "Output_t"), app)


class Receiver:
    """A local HTTP server standing in for InfluxDB 2.x: records each POST."""

    def __init__(self, status: int = 204) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((self.path, dict(self.headers.items()), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_v2_write_request_at_the_http_boundary(
        app: LookoutConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """No InfluxDB 2.x server here (module docstring): the request is checked as sent."""
    monkeypatch.setenv("SHOP_INFLUX_TOKEN", TOKEN)
    receiver = Receiver()
    ids = RecordIds()
    keys = {"ApiVersion": "2", "Org": "shop & co", "Bucket": "jetson_metrics",
            "TokenEnv": "SHOP_INFLUX_TOKEN"}
    sink = make_sink(app, receiver.url, "Output_v2", **keys)
    try:
        sample = objects(ids, T0, 5)
        crossing = LineCrossing(**env(ids, T0), frame=5, line="door", track_id=7,
                                direction="in")
        sink.take([sample, crossing])
        wait(lambda: sink.state()["delivered"] == 2, 5, "the write")
        assert sink.state()["queued"] == 0
        (path, headers, body), = receiver.requests
        assert path == "/api/v2/write?org=shop+%26+co&bucket=jetson_metrics&precision=ns"
        assert headers["Authorization"] == f"Token {TOKEN}"
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        t = ns(T0)
        assert body.decode().split("\n") == [
            f"occupancy,camera=lobby,processor=box1 occupancy=3i,detected_people=3i {t}",
            f"distancing,camera=lobby,processor=box1 violations=2i,violating_pairs=1i,"
            f"people=3i,environment_score=0.3333 {t}",
            f"traffic,camera=lobby,direction=in,line=door,processor=box1 crossings=1i,"
            f"in=1i,out=0i,track_id=7i {t}"]
        assert TOKEN not in json.dumps(sink.state())
        answer = InfluxDBLogger.send_test(section(receiver.url, "Output_v2", **keys), app)
        assert "bucket jetson_metrics of shop & co" in answer and TOKEN not in answer
        path, headers, body = receiver.requests[-1]
        assert path.startswith("/api/v2/write?") and headers["Authorization"] == \
            f"Token {TOKEN}"
        assert body.startswith(b"lookout_test,processor=box1 message=")
        # A refused token: the points stay queued and the test says so, without the token
        receiver.status = 401
        sink.take([objects(ids, T0 + timedelta(seconds=1), 6)])
        wait(lambda: sink.state()["failures"] >= 1, 5, "a refused write")
        assert sink.state()["queued"] == 1 and "401" in (sink.state()["last_error"] or "")
        with pytest.raises(SendTestError, match="HTTP 401") as refused:
            InfluxDBLogger.send_test(section(receiver.url, "Output_v2", **keys), app)
        assert TOKEN not in str(refused.value)
        receiver.status = 204
        wait(lambda: sink.state()["queued"] == 0, 5, "the retry")
        assert sink.state()["delivered"] == 3
    finally:
        sink.close()
        receiver.close()


def test_close_while_influxdb_is_down_keeps_the_points_for_the_next_run(
        app: LookoutConfig, influx: InfluxDB1) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sink = make_sink(app, down, "Output_later", Database="later")
    ids = RecordIds()
    made = [objects(ids, T0 + timedelta(seconds=i), i) for i in range(25)]
    sink.take(made)
    wait(lambda: sink.state()["failures"] >= 1, 5, "a failed attempt")
    t = time.monotonic()
    sink.close()
    assert time.monotonic() - t < 4
    again = make_sink(app, influx.url, "Output_later", Database="later")
    try:
        wait(lambda: again.state()["queued"] == 0 and again.state()["connected"], 10,
             "the next run to deliver")
    finally:
        again.close()
    (row,) = query(influx, "later", "SELECT COUNT(occupancy) FROM occupancy")
    assert row["count"] == len(made)
