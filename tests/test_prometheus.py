"""``prometheus``: the exposition of a real processor on a real clip (TUD-Campus, 71 frames),
scraped over HTTP like Prometheus does and parsed with prometheus_client's own parser:

- every camera, worker and sink series equals what ``GET /status`` says at the same moment
  (fps, frames, restarts, stage latency, outbox queued/delivered/dropped of a webhook output
  delivering to a real receiver);
- the business counters equal the records the bus carried, counted exactly (line crossings
  per line and direction, occupancy-over events, distancing violations, zone entries,
  records per kind) and the gauges equal the last frame summary and area sample;
- it listens on loopback only by default, a taken port fails with a clear reason, ``send_test``
  really scrapes it, and closing it frees its port.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.config import load_config
from libs.integrations.prometheus import PrometheusConfig, PrometheusExporter
from libs.loggers import OUTPUTS, SendTestError
from libs.records import (
    AreaOccupancySample,
    CameraState,
    DistancingStart,
    FrameSummary,
    LineCrossing,
    OccupancyOver,
    ZoneEntry,
)
from tests.test_event_bus import Collector, camera, tud_only
from tests.test_outbox import free_port
from tests.test_supervisor import wait_until
from tests.test_webhook_e2e import supervisor
from tests.webhook_receiver import WebhookReceiver

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int, host: str = "127.0.0.1") -> tuple[Samples, dict[str, str]]:
    """GET /metrics over HTTP: every sample by (name, sorted labels), and each family's type."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        answer = conn.getresponse()
        assert answer.status == 200
        text = answer.read().decode()
    finally:
        conn.close()
    samples: Samples = {}
    types: dict[str, str] = {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def lab(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def section(port: int, host: str | None = None) -> PrometheusConfig:
    data: dict[str, Any] = {"Name": "prometheus", "Port": port}
    if host is not None:
        data["Host"] = host
    cfg = PrometheusConfig.model_validate(data)
    cfg._section = "Output_7"
    return cfg


def test_the_real_processor_exposes_status_and_bus_figures(x86_config: Path) -> None:
    port = free_port()
    bus = Collector()
    with WebhookReceiver() as rx:
        config = tud_only(x86_config)
        config.write_text(config.read_text() + f"""
[Output_7]
Name = prometheus
Port = {port}

[Output_8]
Name = web_hook_logger
Endpoint = {rx.url}
SendingInterval = 0.2
""")
        with supervisor(config, bus) as sup:
            assert isinstance(sup.bus_sinks["Output_7"], PrometheusExporter)
            wait_until(lambda: camera(sup, "tud")["status"] == "finished", 120,
                       "TUD to finish")
            wait_until(lambda: any(r.state == "finished"  # type: ignore[attr-defined]
                                   for r in bus.of(CameraState, "tud")), 30, "its last record")
            wait_until(lambda: sup.submit(sup.outputs_status).result(10)["Output_8"]["queued"]
                       == 0, 30, "the webhook's outbox to empty")
            status = sup.submit(sup.status).result(10)
            samples, types = scrape(port)
            again = sup.submit(sup.status).result(10)
    # Nothing moved while scraping (the run is over): the scrape is compared to a still status.
    assert again["outputs"].pop("Output_7")["scrapes"] == 1
    assert status["outputs"].pop("Output_7")["scrapes"] == 0
    assert {k: v for k, v in status.items() if k != "updated"} == \
        {k: v for k, v in again.items() if k != "updated"}
    cam = status["cameras"]["tud"]
    assert series(samples, "lookout_up") == {(): 1.0}
    assert series(samples, "lookout_health_ok") == {(): 1.0}
    assert series(samples, "lookout_camera_frames_total")[lab(camera="tud")] == \
        cam["frames"] == 71
    assert series(samples, "lookout_camera_fps")[lab(camera="tud")] == cam["fps"] == 0.0
    assert series(samples, "lookout_camera_up")[lab(camera="tud")] == 0.0  # finished
    states = series(samples, "lookout_camera_state")
    assert states[lab(camera="tud", state="finished")] == 1.0
    assert sum(v for k, v in states.items() if ("camera", "tud") in k) == 1.0
    for name, key in (("restarts", "restarts"), ("skipped_frames", "skipped_frames"),
                      ("dropped_frames", "dropped_frames"), ("reconnects", "reconnects")):
        assert series(samples, f"lookout_camera_{name}_total")[lab(camera="tud")] == cam[key]
    latency = series(samples, "lookout_stage_latency_seconds")
    assert cam["stage_ms"] and {"detector", "loggers"} <= set(cam["stage_ms"])
    assert {k: v for k, v in latency.items() if ("camera", "tud") in k} == \
        {lab(camera="tud", stage=s): pytest.approx(ms / 1000) for s, ms in cam["stage_ms"].items()}
    assert latency[lab(camera="tud", stage="detector")] > 0
    worker = status["workers"][0]
    assert series(samples, "lookout_worker_restarts_total")[lab(worker="0")] == \
        worker["restarts"]
    assert series(samples, "lookout_worker_up")[lab(worker="0")] == float(worker["alive"])
    # The webhook output's outbox, as GET /status shows it; the receiver's count agrees.
    hook = status["outputs"]["Output_8"]
    sink = lab(sink="Output_8", name="web_hook_logger")
    assert series(samples, "lookout_sink_delivered_records_total")[sink] == \
        hook["delivered"] == len(rx.ids()) > 0
    assert series(samples, "lookout_sink_queued_records")[sink] == hook["queued"] == 0
    assert series(samples, "lookout_sink_queued_bytes")[sink] == hook["queued_bytes"]
    assert series(samples, "lookout_sink_dropped_records_total")[sink] == hook["dropped"] == 0
    assert series(samples, "lookout_sink_connected")[sink] == 1.0
    assert types["lookout_sink_delivered_records"] == "counter"
    assert types["lookout_sink_queued_records"] == "gauge"
    # Business counters: exactly the records the bus carried.
    crossings = Counter((r.line, r.direction)  # type: ignore[attr-defined]
                        for r in bus.of(LineCrossing, "tud"))
    assert sum(crossings.values()) > 0
    got = series(samples, "lookout_line_crossings_total")
    assert got == {lab(camera="tud", line=line, direction=d): float(n)
                   for (line, d), n in crossings.items()}
    assert types["lookout_line_crossings"] == "counter"
    over_cam = len(bus.of(OccupancyOver, "tud"))
    over_area = len(bus.of(OccupancyOver, "sidewalk"))
    assert series(samples, "lookout_occupancy_over_total") == \
        ({lab(camera="tud"): float(over_cam)} if over_cam else {})
    assert series(samples, "lookout_area_occupancy_over_total") == \
        ({lab(area="sidewalk"): float(over_area)} if over_area else {})
    violations = len(bus.of(DistancingStart, "tud"))
    assert series(samples, "lookout_distancing_violations_total") == \
        ({lab(camera="tud"): float(violations)} if violations else {})
    assert series(samples, "lookout_zone_entries_total") == {}  # no zones configured
    kinds = Counter(r.kind for r in bus.records)
    assert series(samples, "lookout_records_total") == \
        {lab(kind=k): float(n) for k, n in kinds.items()}
    last = bus.of(FrameSummary, "tud")[-1]
    assert series(samples, "lookout_people")[lab(camera="tud")] == \
        last.detected_objects  # type: ignore[attr-defined]
    assert series(samples, "lookout_occupancy")[lab(camera="tud")] == \
        last.occupancy  # type: ignore[attr-defined]
    area = bus.of(AreaOccupancySample, "sidewalk")[-1]
    assert series(samples, "lookout_area_occupancy")[lab(area="sidewalk")] == \
        area.occupancy  # type: ignore[attr-defined]
    assert series(samples, "lookout_area_occupancy_threshold")[lab(area="sidewalk")] == 3
    # The port is let go with the processor: a new listener gets it (SO_REUSEADDR, as the
    # exposition's own server sets: the scrape's connection may linger in TIME_WAIT; a
    # socket still listening there would make bind fail even so).
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_loopback_by_default_taken_port_send_test_and_close(tmp_path: Path,
                                                            x86_config: Path) -> None:
    app = load_config(x86_config)
    assert OUTPUTS.get("prometheus") is PrometheusExporter
    port = free_port()
    sink = PrometheusExporter(section(port), None, app)
    try:
        assert sink.url == f"http://127.0.0.1:{port}/metrics"
        assert sink._server.server_address[0] == "127.0.0.1"  # not every network
        # No supervisor: the bus figures only, and lookout_up says so.
        sink.take([ZoneEntry(id="a" * 32, source="camera", source_id="c1",
                             timestamp=_now(), zone="door", track_id=4)])
        samples, _ = scrape(port)
        assert series(samples, "lookout_up") == {(): 0.0}
        assert series(samples, "lookout_zone_entries_total") == \
            {lab(camera="c1", zone="door"): 1.0}
        answer = PrometheusExporter.send_test(section(port), app)
        assert answer.startswith(f"http://127.0.0.1:{port}/metrics answered HTTP 200 with ")
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            PrometheusExporter(section(port), None, app)
    finally:
        sink.close()
    with pytest.raises(SendTestError, match="connection refused"):
        PrometheusExporter.send_test(section(port), app)
    with pytest.raises(ValueError, match="CertFile and KeyFile go together"):
        PrometheusConfig.model_validate({"Name": "prometheus", "CertFile": "/x.pem"})


def _now() -> Any:
    from datetime import UTC, datetime
    return datetime.now(UTC)


def test_a_scrape_waits_at_most_status_timeout(x86_config: Path) -> None:
    """A supervisor that does not answer: the scrape still answers, with lookout_up 0."""
    from concurrent.futures import Future

    class Stuck:
        def submit(self, fn: Any) -> Future[Any]:
            return Future()  # never done

        def status(self) -> dict[str, Any]:
            return {}

    app = load_config(x86_config)
    port = free_port()
    cfg = PrometheusConfig.model_validate({"Name": "prometheus", "Port": port,
                                           "StatusTimeout": 0.2})
    sink = PrometheusExporter(cfg, None, app)
    try:
        sink.attach(Stuck())
        t0 = time.monotonic()
        samples, _ = scrape(port)
        assert time.monotonic() - t0 < 2
        assert series(samples, "lookout_up") == {(): 0.0}
        assert sink.state()["status_misses"] == 1
    finally:
        sink.close()


def test_records_made_while_prometheus_is_away_are_in_the_next_scrape(
        x86_config: Path) -> None:
    """Prometheus pulls: its outage is scrapes it misses. Line crossings made between two
    scrapes (none in between) are all counted in the next one, exactly."""
    from datetime import UTC, datetime, timedelta

    from libs.records import RecordIds

    app = load_config(x86_config)
    port = free_port()
    sink = PrometheusExporter(section(port), None, app)
    ids = RecordIds()
    t0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)

    def crossings(n: int, start: int) -> list[LineCrossing]:
        return [LineCrossing(id=ids(), source="camera", source_id="door-cam",
                             timestamp=t0 + timedelta(seconds=i), frame=i * 7, line="entrance",
                             track_id=100 + i, direction="in" if i % 3 else "out")
                for i in range(start, start + n)]

    try:
        sink.take(crossings(30, 0))
        before = series(scrape(port)[0], "lookout_line_crossings_total")
        assert before == {lab(camera="door-cam", line="entrance", direction="in"): 20.0,
                          lab(camera="door-cam", line="entrance", direction="out"): 10.0}
        for batch in range(10):  # the "outage": 10 batches, nobody scrapes
            sink.take(crossings(45, 30 + 45 * batch))
        after = series(scrape(port)[0], "lookout_line_crossings_total")
        assert after == {lab(camera="door-cam", line="entrance", direction="in"): 320.0,
                         lab(camera="door-cam", line="entrance", direction="out"): 160.0}
    finally:
        sink.close()
