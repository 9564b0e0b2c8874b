"""``prometheus``: the processor's figures in the Prometheus text format, on a port of its own.

An ``[Output_N]`` section runs one HTTP server in the supervisor process (loopback by
default; the API's ``/metrics`` routes are the analytics API and stay as they are)::

    [Output_2]
    Name = prometheus
    Host = 127.0.0.1
    Port = 9464
    Enabled = True

``GET http://<Host>:<Port>/metrics`` answers two kinds of series:

- **Processor state**, read at scrape time from the supervisor (the same figures as
  ``GET /status``; the request runs :meth:`processor.supervisor.Supervisor.status` on the
  supervisor's own loop through ``submit``, so nothing is read half-updated): each camera's
  fps, state, frames, skipped and dropped frames, reconnects, restarts and mean latency per
  pipeline stage; each worker's restarts; each sink's outbox (queued records and bytes,
  delivered, dropped, connected, consecutive failures).
- **Business figures** from the records on the event bus (this sink is fed every record):
  people detected, occupancy and people violating distance per camera (the latest frame),
  area occupancy and threshold (the latest ``occupancy_log``), and counters of line crossings
  per line and direction, zone entries per zone, distancing violations (``distancing_start``
  events), occupancy-over events per camera and per area, records per kind.

``take`` only updates counters in memory (no network, no disk): the sink has no outbox,
because Prometheus pulls. The counters start at zero when the processor starts (or when an
``[Output_N]`` section is edited); Prometheus' ``rate()`` and ``increase()`` handle such
resets.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, ClassVar

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from pydantic import Field, field_validator, model_validator

from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.loggers import OUTPUTS, SendTestError, Sink
from libs.records import (
    AreaOccupancySample,
    DistancingStart,
    FrameSummary,
    LineCrossing,
    OccupancyOver,
    Record,
    ZoneEntry,
)

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

log = logging.getLogger(__name__)

NAME = "prometheus"
DEFAULT_PORT = 9464  # the port the Prometheus project lists for exporters of this kind
PREFIX = "lookout"
# Every state a camera can be in (GET /status), one series each (1 for the current one).
CAMERA_STATES = ("running", "connecting", "reconnecting", "stalled", "degraded", "finished",
                 "failed", "stopped", "paused", "disabled", "idle")
UP_STATES = frozenset({"running", "degraded"})


class PrometheusConfig(PluginConfig):
    host: str = Field(
        "127.0.0.1",
        alias="Host",
        description="Address the exposition listens on. The default answers this box only; "
        "0.0.0.0 answers every network (put a firewall, or TLS and a reverse proxy with "
        "authentication, in front: the figures name cameras, areas and sinks).",
        json_schema_extra=form("an IP address or host name"),
    )
    port: int = Field(
        DEFAULT_PORT,
        alias="Port",
        ge=1,
        le=65535,
        description="TCP port of the exposition (GET /metrics on it); not the API's port.",
        json_schema_extra=form("an integer 1..65535"),
    )
    cert_file: str = Field(
        "",
        alias="CertFile",
        description="PEM certificate: when set (with KeyFile) the exposition is served "
        "over HTTPS.",
        json_schema_extra=form("a file path, or empty"),
    )
    key_file: str = Field(
        "",
        alias="KeyFile",
        description="PEM private key of CertFile.",
        json_schema_extra=form("a file path, or empty"),
    )
    status_timeout: float = Field(
        2.0,
        alias="StatusTimeout",
        gt=0,
        description="Seconds a scrape waits for the supervisor's status; past it the scrape "
        "answers the bus figures and lookout_up 0.",
        json_schema_extra=form("a number of seconds > 0"),
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip()
        if not value or any(c.isspace() or c in "/@" for c in value):
            raise ValueError("Host must be an IP address or a host name")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> PrometheusConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("CertFile and KeyFile go together: set both, or neither")
        return self


class BusFigures:
    """What the records on the bus say, kept for the next scrape (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.people: dict[str, int] = {}
        self.occupancy: dict[str, int] = {}
        self.violating: dict[str, int] = {}
        self.area_occupancy: dict[str, int] = {}
        self.area_threshold: dict[str, int] = {}
        self.crossings: dict[tuple[str, str, str], int] = defaultdict(int)
        self.zone_entries: dict[tuple[str, str], int] = defaultdict(int)
        self.violations: dict[str, int] = defaultdict(int)
        self.occupancy_over: dict[tuple[str, str], int] = defaultdict(int)
        self.records: dict[str, int] = defaultdict(int)

    def add(self, records: Sequence[Record]) -> None:
        with self.lock:
            for rec in records:
                self.records[rec.kind] += 1
                src = rec.source_id
                if isinstance(rec, FrameSummary):
                    self.people[src] = rec.detected_objects
                    self.occupancy[src] = rec.occupancy
                    self.violating[src] = rec.violating_objects
                elif isinstance(rec, LineCrossing):
                    self.crossings[(src, rec.line, rec.direction)] += 1
                elif isinstance(rec, ZoneEntry):
                    self.zone_entries[(src, rec.zone)] += 1
                elif isinstance(rec, DistancingStart):
                    self.violations[src] += 1
                elif isinstance(rec, OccupancyOver):
                    self.occupancy_over[(rec.source, src)] += 1
                elif isinstance(rec, AreaOccupancySample):
                    self.area_occupancy[src] = rec.occupancy
                    self.area_threshold[src] = rec.threshold

    def metrics(self) -> Iterator[Metric]:
        with self.lock:
            people, occupancy = dict(self.people), dict(self.occupancy)
            violating = dict(self.violating)
            area_occ, area_thr = dict(self.area_occupancy), dict(self.area_threshold)
            crossings, entries = dict(self.crossings), dict(self.zone_entries)
            violations, over = dict(self.violations), dict(self.occupancy_over)
            kinds = dict(self.records)
        yield _gauge("people", "People detected in the camera's latest frame.", ["camera"],
                     people)
        yield _gauge("occupancy", "Occupancy the camera's latest frame reports.", ["camera"],
                     occupancy)
        yield _gauge("violating_people", "People closer than the distance limit in the "
                     "camera's latest frame.", ["camera"], violating)
        yield _gauge("area_occupancy", "The area's latest occupancy (occupancy_log).",
                     ["area"], area_occ)
        yield _gauge("area_occupancy_threshold", "The area's occupancy threshold.", ["area"],
                     area_thr)
        yield _counter("line_crossings", "People who crossed a counting line, by line and "
                       "direction (line_crossing events).", ["camera", "line", "direction"],
                       crossings)
        yield _counter("zone_entries", "Visits of a zone started (zone_entry events).",
                       ["camera", "zone"], entries)
        yield _counter("distancing_violations", "Distancing violations started "
                       "(distancing_start events).", ["camera"], violations)
        yield _counter("occupancy_over", "Times a camera's occupancy went over its "
                       "threshold (occupancy_over events).", ["camera"],
                       {c: n for (s, c), n in over.items() if s == "camera"})
        yield _counter("area_occupancy_over", "Times an area's occupancy went over its "
                       "threshold (occupancy_over events).", ["area"],
                       {a: n for (s, a), n in over.items() if s == "area"})
        yield _counter("records", "Records seen on the event bus, by kind.", ["kind"], kinds)


def _key(labels: Any) -> list[str]:
    return [str(v) for v in labels] if isinstance(labels, tuple) else [str(labels)]


def _gauge(name: str, doc: str, labels: list[str], values: Mapping[Any, float]) -> Metric:
    fam = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
    for key, value in sorted(values.items()):
        fam.add_metric(_key(key), float(value))
    return fam


def _counter(name: str, doc: str, labels: list[str], values: Mapping[Any, float]) -> Metric:
    fam = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
    for key, value in sorted(values.items()):
        fam.add_metric(_key(key), float(value))
    return fam


def status_metrics(status: dict[str, Any] | None) -> Iterator[Metric]:
    """The series of one ``Supervisor.status()`` (None: the supervisor did not answer)."""
    up = GaugeMetricFamily(f"{PREFIX}_up", "1 when the processor's supervisor answered this "
                           "scrape with its status, else 0 (then only bus figures follow).")
    up.add_metric([], 1.0 if status is not None else 0.0)
    yield up
    if status is None:
        return
    health = status.get("health") or {}
    yield _gauge("health_ok", "1 while the processor works and its writes succeed (GET "
                 "/health), else 0.", [], {(): 1.0 if health.get("status") == "ok" else 0.0})
    cams: dict[str, dict[str, Any]] = status.get("cameras") or {}
    yield _gauge("camera_up", "1 while frames flow (state running or degraded), else 0.",
                 ["camera"], {c: float(s.get("status") in UP_STATES) for c, s in cams.items()})
    state = GaugeMetricFamily(f"{PREFIX}_camera_state", "1 for the camera's current state "
                              "(GET /status), 0 for the others.", labels=["camera", "state"])
    for cid, cam in sorted(cams.items()):
        for name in CAMERA_STATES:
            state.add_metric([cid, name], float(cam.get("status") == name))
    yield state
    yield _gauge("camera_fps", "Frames processed per second over the last second (0 when "
                 "none flow).", ["camera"], {c: s.get("fps") or 0.0 for c, s in cams.items()})
    for field, name, doc in (
        ("frames", "camera_frames", "Frames processed in this run."),
        ("skipped_frames", "camera_skipped_frames", "Frames of the source that could not be "
         "decoded."),
        ("dropped_frames", "camera_dropped_frames", "Frames a live source delivered that were "
         "never processed (the camera was faster than the pipeline)."),
        ("reconnects", "camera_reconnects", "Times a live source reconnected."),
        ("restarts", "camera_restarts", "Times the camera (or its worker) was restarted."),
    ):
        yield _counter(name, doc, ["camera"], {c: s.get(field) or 0 for c, s in cams.items()})
    latency = GaugeMetricFamily(f"{PREFIX}_stage_latency_seconds", "Mean time per frame in "
                                "each pipeline stage over the last second.",
                                labels=["camera", "stage"])
    for cid, cam in sorted(cams.items()):
        for stage, ms in sorted((cam.get("stage_ms") or {}).items()):
            latency.add_metric([cid, stage], float(ms) / 1000.0)
    yield latency
    workers = {str(w["index"]): w for w in status.get("workers") or []}
    yield _gauge("worker_up", "1 while the worker process is alive.", ["worker"],
                 {i: float(bool(w.get("alive"))) for i, w in workers.items()})
    yield _counter("worker_restarts", "Times the worker process was restarted.", ["worker"],
                   {i: w.get("restarts") or 0 for i, w in workers.items()})
    outs: dict[str, dict[str, Any]] = status.get("outputs") or {}
    labelled = {(s, o.get("name", "")): o for s, o in outs.items()}
    with_outbox = {k: o for k, o in labelled.items() if "queued" in o}
    for field, name, doc, kind in (
        ("queued", "sink_queued_records", "Records waiting in the sink's outbox.", _gauge),
        ("queued_bytes", "sink_queued_bytes", "Bytes of records waiting in the sink's "
         "outbox.", _gauge),
        ("delivered", "sink_delivered_records", "Records the sink delivered (its outbox "
         "keeps the count across runs).", _counter),
        ("dropped", "sink_dropped_records", "Records dropped because the sink's outbox was "
         "full.", _counter),
        ("failures", "sink_failures", "Consecutive failed delivery attempts (0 while the "
         "sink delivers).", _gauge),
    ):
        yield kind(name, doc, ["sink", "name"],
                   {k: o.get(field) or 0 for k, o in with_outbox.items()})
    yield _gauge("sink_connected", "1 when the sink's last delivery attempt succeeded.",
                 ["sink", "name"], {k: float(o.get("connected") is True)
                                    for k, o in with_outbox.items()})


class _Collector(Collector):
    def __init__(self, exporter: PrometheusExporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[Metric]:
        yield from status_metrics(self.exporter.read_status())
        yield from self.exporter.figures.metrics()


class PrometheusExporter(Sink):
    """Serves the exposition (module docstring); fed every record of the bus."""

    Config: ClassVar[type[PluginConfig]] = PrometheusConfig
    on_bus: ClassVar[bool] = True

    def __init__(self, config: PluginConfig, scope: Any, app: LookoutConfig) -> None:
        self.config = config
        self.app = app
        self.settings = plugin_settings(PrometheusConfig, config)
        self.section = config.section or NAME
        self.figures = BusFigures()
        self._supervisor: Any = None
        self._scrapes = 0
        self._status_misses = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        s = self.settings
        try:
            self._server, self._thread = start_http_server(
                s.port, s.host, self.registry, certfile=s.cert_file or None,
                keyfile=s.key_file or None)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {s.host}:{s.port}: "
                          f"{exc.strerror or exc}") from None
        self.port = self._server.server_port
        self.url = f"{'https' if s.cert_file else 'http'}://{_netloc(s.host, self.port)}/metrics"
        log.info("%s [%s]: Prometheus exposition at %s", NAME, self.section, self.url)

    def attach(self, supervisor: Any) -> None:
        """The supervisor whose status each scrape reads (it calls this once built)."""
        self._supervisor = supervisor

    def read_status(self) -> dict[str, Any] | None:
        """The supervisor's status, computed on its loop; None when there is none or it
        did not answer within ``StatusTimeout``."""
        self._scrapes += 1
        sup = self._supervisor
        if sup is None:
            return None
        try:
            status: dict[str, Any] = sup.submit(sup.status).result(
                timeout=self.settings.status_timeout)
        except (FutureTimeout, RuntimeError) as exc:
            self._status_misses += 1
            if self._status_misses == 1:
                log.warning("%s [%s]: no status for a scrape: %s", NAME, self.section,
                            str(exc) or "the supervisor did not answer in time")
            return None
        return status

    def take(self, records: Sequence[Record]) -> None:
        self.figures.add(records)

    def state(self) -> dict[str, Any]:
        return {"url": self.url, "scrapes": self._scrapes,
                "status_misses": self._status_misses}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=3)

    @classmethod
    def send_test(cls, config: PluginConfig, app: LookoutConfig) -> str:
        """Scrape the running exposition once, as Prometheus would."""
        try:
            s = plugin_settings(PrometheusConfig, config)
        except ValueError as exc:
            raise SendTestError(f"the section is invalid: {exc}") from exc
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
        url = f"{'https' if s.cert_file else 'http'}://{_netloc(host, s.port)}/metrics"
        conn: http.client.HTTPConnection
        if s.cert_file:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # our own certificate, maybe self-signed
            conn = http.client.HTTPSConnection(host, s.port, timeout=5, context=context)
        else:
            conn = http.client.HTTPConnection(host, s.port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            answer = conn.getresponse()
            body = answer.read(4 * 1024 * 1024).decode("utf-8", "replace")
        except ConnectionRefusedError:
            raise SendTestError(f"{url}: connection refused (is the processor running "
                                "with this section enabled?)") from None
        except (OSError, http.client.HTTPException) as exc:
            raise SendTestError(f"{url}: {type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
        if answer.status != 200:
            raise SendTestError(f"{url} answered HTTP {answer.status} {answer.reason}")
        if f"{PREFIX}_up " not in body:
            raise SendTestError(f"{url} answers, but not with Lookout's figures (another "
                                "program holds the port?)")
        families = sum(1 for line in body.splitlines() if line.startswith("# TYPE "))
        return f"{url} answered HTTP 200 with {families} metric families"


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


OUTPUTS.register(NAME)(PrometheusExporter)
