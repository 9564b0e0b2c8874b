"""``mqtt_logger``: live counts as retained MQTT state, events as messages, Home Assistant
discovery, over one connection to a broker (paho-mqtt).

The sink runs in the supervisor on the event bus (:attr:`MqttLogger.on_bus`), never beside a
frame loop, and :meth:`MqttLogger.take` never touches the network: it updates the current
values in memory and appends events to a durable, bounded outbox on disk
(:mod:`libs.integrations.outbox`).  Two threads of the sink do the rest, and paho's network
thread keeps the connection (reconnecting with exponential backoff).

Topics (``<P>`` is ``TopicPrefix``, ``lookout/<processor>`` by default, ``<processor>`` being
``[App] ProcessorName`` or the host name; the whole layout is in docs/integrations/mqtt.md)::

    <P>/availability                          online | offline            retained, the Last Will
    <P>/camera/<camera>/people                detected people             retained state
    <P>/camera/<camera>/occupancy             occupancy                   retained state
    <P>/camera/<camera>/violations            people violating distancing retained state
    <P>/camera/<camera>/violating_pairs       pairs too close             retained state
    <P>/camera/<camera>/line/<line>/in        people counted in           retained state
    <P>/camera/<camera>/line/<line>/out       people counted out          retained state
    <P>/camera/<camera>/zone/<zone>/people    people in the zone          retained state
    <P>/camera/<camera>/zone/<zone>/entries   entries into the zone       retained state
    <P>/area/<area>/occupancy                 the area's occupancy        retained state
    <P>/area/<area>/threshold                 its occupancy threshold     retained state
    <P>/area/<area>/over_threshold            ON | OFF                    retained state
    <P>/camera/<camera>/events/<kind>         an event's record JSON      QoS 1, not retained
    <P>/area/<area>/events/<kind>             an event's record JSON      QoS 1, not retained

State comes from the cameras' ``frame_summary`` records and the areas' ``occupancy_log``
samples.  A state topic is published (retained, QoS 1) when its value changes, at most once per
``StateInterval`` seconds (the latest value goes when the interval is over), so a 30 fps camera
does not flood the broker; on every (re)connect ``online``, the discovery configs and every
current value are published again, so a subscriber never sees a value older than the
connection.  Events go through the outbox: published with QoS 1 and removed from the disk only
once the broker acknowledged each one (PUBACK), so the events of an outage arrive when the
broker is back (at least once: a subscriber deduplicates on the record's ``id``).

Home Assistant: ``<DiscoveryPrefix>/sensor/<node>/<object>/config`` (and ``binary_sensor`` for
``over_threshold``), retained, one per state topic, as soon as the value first exists; the
topics published are remembered in ``DataDirectory/processor/mqtt/<section>.json`` and those of
a camera, line, zone or area no longer in the configuration are cleared (an empty retained
payload on the config and state topics) at the next connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from pydantic import Field, ValidationInfo, field_validator

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
    kinds_field,
    outbox_max_bytes_field,
    timeout_field,
)
from libs.integrations.outbox import OutboxState
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
    FrameSummary,
    Record,
    format_time,
)

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

log = logging.getLogger(__name__)

NAME = "mqtt_logger"
DISCOVERY_FOLDER = "processor/mqtt"  # the discovery topics published, one file per section
DEFAULT_PASSWORD_ENV = "LOOKOUT_MQTT_PASSWORD"
BATCH_MAX_RECORDS = 100
BATCH_MAX_BYTES = 1024 * 1024
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
OFFLINE_WAIT_S = 1.0  # at close: how long to wait for the broker to take "offline"
MAX_INFLIGHT = 100
ONLINE, OFFLINE = "online", "offline"
ON, OFF = "ON", "OFF"
_UNSAFE = re.compile(r"[/+#\x00-\x1f\x7f]")
_SLUG = re.compile(r"[^A-Za-z0-9_-]")


class MqttConfig(KindsConfig):
    default_kinds: ClassVar[frozenset[str]] = EVENT_KINDS
    known_kinds: ClassVar[frozenset[str]] = EVENT_KINDS | SAMPLE_KINDS
    kinds_problem: ClassVar[str] = "unknown or unsupported record kind(s)"

    host: str = Field(
        "",
        alias="Host",
        validate_default=True,
        description="Host name or address of the MQTT broker. Required when the section is "
        "enabled.",
        json_schema_extra=form("a host name or an IP address"),
    )
    port: int = Field(
        1883,
        alias="Port",
        ge=1,
        le=65535,
        description="TCP port of the broker (1883 plain, usually 8883 with TLS).",
        json_schema_extra=form("an integer from 1 to 65535"),
    )
    tls: bool = Field(False, alias="TLS", description="Connect with TLS (the broker's "
                      "certificate is checked against CAFile, else the system's CAs).")
    ca_file: str = Field(
        "",
        alias="CAFile",
        description="PEM file of the CA that signed the broker's certificate (with TLS); "
        "empty uses the system's CAs.",
    )
    username: str = Field("", alias="Username", description="User name to log in with; "
                          "empty connects anonymously.")
    password_env: str = Field(
        DEFAULT_PASSWORD_ENV,
        alias="PasswordEnv",
        description="Name of the environment variable holding the password of Username (the "
        "password itself is never in the configuration).",
        json_schema_extra=form("an environment variable name"),
    )
    client_id: str = Field(
        "",
        alias="ClientId",
        description="MQTT client id; empty uses lookout-<processor>-<section> (<processor>: "
        "[App] ProcessorName, else the host name), stable across restarts.",
    )
    topic_prefix: str = Field(
        "",
        alias="TopicPrefix",
        description="Prefix of every topic; empty uses lookout/<processor> ([App] "
        "ProcessorName, else the host name).",
    )
    discovery: bool = Field(True, alias="Discovery", description="Publish Home Assistant "
                            "MQTT discovery configs for every count.")
    discovery_prefix: str = Field(
        "homeassistant",
        alias="DiscoveryPrefix",
        description="Home Assistant's discovery prefix.",
    )
    state_interval: float = Field(
        1.0,
        alias="StateInterval",
        gt=0,
        description="Least seconds between two publications of one state topic (a value is "
        "published only when it changed; the latest goes once the interval is over).",
        json_schema_extra=form("a number of seconds > 0"),
    )
    keepalive: int = Field(
        30,
        alias="Keepalive",
        ge=5,
        le=3600,
        description="MQTT keepalive in seconds: the broker sends the Last Will (offline) after "
        "1.5 times this without hearing from the processor.",
        json_schema_extra=form("an integer from 5 to 3600"),
    )
    timeout: float = timeout_field(
        10.0,
        "Seconds to wait for the broker (connecting, and the acknowledgements of a batch of "
        "events) before the attempt counts as failed and is retried.")
    outbox_max_bytes: int = outbox_max_bytes_field("events", "the broker")
    kinds: str = kinds_field(
        "Comma-separated record kinds published as messages under .../events/<kind> (see "
        "docs/events.md); empty publishes every event. Samples may be listed too; "
        "frame_summary may not.")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not value and info.data.get("enabled", True):
            raise ValueError("Host is empty: set the MQTT broker's host name, or Enabled = False")
        if any(c.isspace() or c in "/@" for c in value):
            raise ValueError("Host must be a host name or an address (no scheme, path or user)")
        return value

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip().strip("/")
        if any(c in "+#" or ord(c) < 32 for c in value):
            raise ValueError("must not contain '+', '#' or control characters")
        return value



def segment(name: str) -> str:
    """``name`` as one topic level: '/', '+', '#' and control characters become '_'."""
    return _UNSAFE.sub("_", name) or "_"


def slug(name: str) -> str:
    """``name`` as a Home Assistant node or object id (letters, digits, '_' and '-')."""
    return _SLUG.sub("_", name) or "_"


def topic_prefix(settings: MqttConfig, processor: str) -> str:
    """``TopicPrefix``, else ``lookout/<processor>`` (``processor``: [App] ProcessorName or
    the host name, :attr:`AppConfig.processor_name_or_host`)."""
    return settings.topic_prefix or f"lookout/{segment(processor)}"


def client_id(settings: MqttConfig, section: str, processor: str) -> str:
    return settings.client_id or f"lookout-{slug(processor)}-{slug(section)}"


class DeliveryError(Exception):
    """The broker did not take (acknowledge) the batch."""


def make_client(settings: MqttConfig, cid: str, *, will: str | None = None) -> paho.Client:
    """A paho client with the section's credentials, TLS and (``will``) Last Will."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid,
                         protocol=paho.MQTTv311, clean_session=True)
    client.connect_timeout = settings.timeout
    if settings.username:
        password = os.environ.get(settings.password_env) if settings.password_env else None
        client.username_pw_set(settings.username, password)
    if settings.tls:
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        client.tls_set_context(context)
    if will is not None:
        client.will_set(will, OFFLINE, qos=1, retain=True)
    return client


@dataclass
class _Value:
    value: str
    sent: str | None = None  # the value last published on this connection
    sent_at: float = float("-inf")


@dataclass
class _Entity:
    """One Home Assistant entity: its discovery topic and config."""

    topic: str
    state_topic: str
    owner: tuple[str, ...]  # ("camera", id[, "line"|"zone", name]) or ("area", id)
    config: dict[str, Any]
    sent: bool = False


class MqttLogger(OutboxSink, SourceLogger, AreaLogger):
    """Publishes the counts and events of every camera (``[SourceLogger_N]``), every area
    (``[AreaLogger_N]``) or both (``[Output_N]``) to one MQTT broker; see the module
    docstring."""

    Config: ClassVar[type[PluginConfig]] = MqttConfig
    on_bus: ClassVar[bool] = True
    sink_name: ClassVar[str] = NAME
    sink_log: ClassVar[logging.Logger] = log

    def __init__(self, config: PluginConfig, scope: Any, app: LookoutConfig, *,
                 retry_first_s: float | None = None, retry_max_s: float | None = None,
                 reconnect_min_s: int | None = None, reconnect_max_s: int | None = None
                 ) -> None:
        self.config = config
        self.source = None  # type: ignore[assignment]  # a bus sink serves every camera
        self.area = None  # type: ignore[assignment]  # ...and every area
        self.app = app
        self.settings = settings = plugin_settings(MqttConfig, config)
        if not settings.host:
            raise ValueError(f"{NAME}: Host is empty")
        self.section = config.section or NAME
        self.processor = app.app.processor_name_or_host  # [App] ProcessorName
        self.prefix = topic_prefix(settings, self.processor)
        self.availability = f"{self.prefix}/availability"
        self.client_id = client_id(settings, self.section, self.processor)
        self.broker = f"{settings.host}:{settings.port}"
        self._node = slug(f"lookout_{self.processor}")
        self._kinds = settings.kind_set()
        self._interval = settings.state_interval
        self._tick = max(0.01, min(0.25, self._interval / 4))

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._closing = threading.Event()
        # what the lock guards
        self._values: dict[str, _Value] = {}  # state topic -> value
        self._entities: dict[str, _Entity] = {}  # discovery topic -> entity
        self._connected = False
        self._republish = False
        self._last_error: str | None = None
        self._connects = 0
        self._rejected = 0
        self._published_states = 0

        self._names = {s.id: s.name or s.id for s in app.sources}
        self._names.update({f"area:{a.id}": a.name or a.id for a in app.areas})
        self._known_file = app.data_path(f"{DISCOVERY_FOLDER}/{self.section}.json")
        self._known = self._read_known()  # discovery topic -> {"state", "owner"}

        self._open_outbox(
            app, self._deliver, self.broker,
            retry=(retry_first_s, retry_max_s), retry_defaults=(RETRY_FIRST_S, RETRY_MAX_S),
            max_bytes=settings.outbox_max_bytes,
            batch_max_records=BATCH_MAX_RECORDS,
            batch_max_bytes=BATCH_MAX_BYTES,
            idle_poll_s=0.2,
        )
        try:
            self.client = make_client(settings, self.client_id, will=self.availability)
        except Exception:
            self.outbox.close(timeout=1.0)  # frees its folder for the next try
            raise
        self.client.reconnect_delay_set(
            RECONNECT_MIN_S if reconnect_min_s is None else reconnect_min_s,
            RECONNECT_MAX_S if reconnect_max_s is None else reconnect_max_s)
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.connect_async(settings.host, settings.port, settings.keepalive)
        self.client.loop_start()  # its thread connects, and reconnects with backoff
        self._states = threading.Thread(target=self._run_states, daemon=True,
                                        name=f"{self.section}-mqtt-state")
        self._states.start()

    # ------------------------------------------------------------------ the bus side

    def take(self, records: Sequence[Record]) -> None:
        """Update the current values and queue the events of ``records``; no network."""
        for rec in records:
            if isinstance(rec, FrameSummary):
                self._camera_state(rec)
            elif isinstance(rec, AreaOccupancySample):
                self._area_state(rec)
            if rec.kind not in self._kinds:
                continue
            topic = f"{self.prefix}/{rec.source}/{segment(rec.source_id)}/events/{rec.kind}"
            if not self._put({"id": rec.id, "topic": topic, "payload": rec.to_json()},
                             rec.kind):
                return  # closed: the bus has let go of this sink

    def _camera_state(self, rec: FrameSummary) -> None:
        cam = rec.source_id
        base = f"{self.prefix}/camera/{segment(cam)}"
        owner = ("camera", cam)
        with self._lock:
            self._set(f"{base}/people", rec.detected_objects, owner, "people", "People",
                      "people", "measurement", "mdi:account-group")
            self._set(f"{base}/occupancy", rec.occupancy, owner, "occupancy", "Occupancy",
                      "people", "measurement", "mdi:account-multiple")
            self._set(f"{base}/violations", rec.violating_objects, owner, "violations",
                      "Distancing violations", "people", "measurement", "mdi:account-alert")
            self._set(f"{base}/violating_pairs", rec.violating_pairs, owner,
                      "violating_pairs", "Violating pairs", "pairs", "measurement",
                      "mdi:account-switch")
            for line, counts in rec.line_counts.items():
                lo = (*owner, "line", line)
                lt = f"{base}/line/{segment(line)}"
                self._set(f"{lt}/in", counts.in_count, lo, f"line_{line}_in", f"{line} in",
                          "people", "total_increasing", "mdi:login")
                self._set(f"{lt}/out", counts.out_count, lo, f"line_{line}_out",
                          f"{line} out", "people", "total_increasing", "mdi:logout")
            for zone, zc in rec.zone_counts.items():
                zo = (*owner, "zone", zone)
                zt = f"{base}/zone/{segment(zone)}"
                self._set(f"{zt}/people", zc.people, zo, f"zone_{zone}_people",
                          f"{zone} people", "people", "measurement", "mdi:account-group")
                self._set(f"{zt}/entries", zc.entries, zo, f"zone_{zone}_entries",
                          f"{zone} entries", "entries", "total_increasing", "mdi:location-enter")

    def _area_state(self, rec: AreaOccupancySample) -> None:
        area = rec.source_id
        base = f"{self.prefix}/area/{segment(area)}"
        owner = ("area", area)
        with self._lock:
            self._set(f"{base}/occupancy", rec.occupancy, owner, "occupancy", "Occupancy",
                      "people", "measurement", "mdi:account-multiple")
            self._set(f"{base}/threshold", rec.threshold, owner, "threshold",
                      "Occupancy threshold", "people", "measurement", "mdi:account-cancel")
            self._set(f"{base}/over_threshold", ON if rec.violation else OFF, owner,
                      "over_threshold", "Over threshold", None, None, "mdi:alert")

    def _set(self, topic: str, value: int | str, owner: tuple[str, ...], metric: str,
             name: str, unit: str | None, state_class: str | None, icon: str) -> None:
        """Under the lock: the current value of ``topic`` (its entity made when new)."""
        text = str(value)
        current = self._values.get(topic)
        if current is not None:
            current.value = text
            return
        self._values[topic] = _Value(text)
        if self.settings.discovery:
            entity = self._entity(topic, owner, metric, name, unit, state_class, icon)
            self._entities[entity.topic] = entity

    def _entity(self, state_topic: str, owner: tuple[str, ...], metric: str, name: str,
                unit: str | None, state_class: str | None, icon: str) -> _Entity:
        kind, ident = owner[0], owner[1]
        device_id = slug(f"lookout_{self.processor}_{kind}_{ident}")
        object_id = slug(f"{kind}_{ident}_{metric}")
        shown = self._names.get(ident if kind == "camera" else f"area:{ident}", ident)
        binary = unit is None
        component = "binary_sensor" if binary else "sensor"
        cfg: dict[str, Any] = {
            "name": name,
            "unique_id": f"{device_id}_{slug(metric)}",
            "state_topic": state_topic,
            "availability_topic": self.availability,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "icon": icon,
            "device": {
                "identifiers": [device_id],
                "name": f"{shown} ({self.processor})",
                "manufacturer": "Lookout",
                "model": "Camera" if kind == "camera" else "Area",
            },
            "origin": {"name": "Lookout"},
        }
        if binary:
            cfg.update(payload_on=ON, payload_off=OFF, device_class="problem")
        else:
            cfg.update(unit_of_measurement=unit, state_class=state_class)
        topic = f"{self.settings.discovery_prefix}/{component}/{self._node}/{object_id}/config"
        return _Entity(topic, state_topic, owner, cfg)

    def state(self) -> dict[str, Any]:
        """What ``GET /status`` shows under ``outputs``: never a credential."""
        st: OutboxState = self.outbox.state()
        with self._lock:
            connected = self._connected
            error = self._last_error
            topics = len(self._values)
            entities = len(self._entities)
            published = self._published_states
        out = {
            "broker": self.broker,
            "tls": self.settings.tls,
            "client_id": self.client_id,
            "topic_prefix": self.prefix,
            "connected": connected,  # the client's, not the outbox's last attempt
            "connects": self._connects,
            "state_topics": topics,
            "states_published": published,
            "discovery_entities": entities,
            **self._outbox_status(self.settings.outbox_max_bytes, st),
        }
        out["connected"] = connected  # (keys keep their first place)
        if not connected:
            out["last_error"] = error
        return out

    def close(self) -> None:
        """Stop within about :data:`CLOSE_TIMEOUT_S` (plus :data:`OFFLINE_WAIT_S`): undelivered
        events stay in the outbox; ``offline`` is published before a clean disconnect."""
        self._closing.set()
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        self._close_outbox("a batch was still waiting for the broker at close; it stays "
                           "queued")
        self._states.join(1.0)
        with self._lock:
            connected = self._connected
            # the last values the StateInterval held back: retained state ends as the run did
            pending = [(topic, v.value) for topic, v in self._values.items()
                       if v.value != v.sent]
            for _, v in self._values.items():
                v.sent = v.value
        if connected:
            for topic, value in pending:
                self.client.publish(topic, value, qos=1, retain=True)
            info = self.client.publish(self.availability, OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(OFFLINE_WAIT_S)
        self.client.disconnect()
        # paho joins its thread without a limit (a connection attempt may be under way)
        stopper = threading.Thread(target=self.client.loop_stop, daemon=True)
        stopper.start()
        stopper.join(2.0)

    # ------------------------------------------------------------------ paho's thread

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any,
                    reason: Any, properties: Any) -> None:
        if reason.is_failure:
            error = f"the broker refused the connection: {reason}"
            with self._lock:
                repeated = error == self._last_error
                self._last_error = error
            if not repeated:
                log.error("%s [%s]: %s at %s (check Username and %s); retrying with backoff",
                          NAME, self.section, error, self.broker, self.settings.password_env)
            return
        client.publish(self.availability, ONLINE, qos=1, retain=True)
        with self._lock:
            self._connected = True
            self._republish = True
            self._last_error = None
            self._connects += 1
            self._wake.notify_all()
        log.info("%s [%s]: connected to %s as %s", NAME, self.section, self.broker,
                 self.client_id)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any,
                       reason: Any, properties: Any) -> None:
        with self._lock:
            was = self._connected
            self._connected = False
            if was and not self._closing.is_set():  # (a refusal keeps its own reason)
                self._last_error = f"disconnected from the broker: {reason}"
        if was and not self._closing.is_set():
            log.warning("%s [%s]: lost %s (%s); reconnecting with backoff", NAME,
                        self.section, self.broker, reason)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        error = f"cannot connect to the broker at {self.broker} (Send a test for the reason)"
        with self._lock:
            repeated = error == self._last_error
            self._last_error = error
        if not repeated:
            log.warning("%s [%s]: %s; retrying with backoff", NAME, self.section, error)

    # ------------------------------------------------------------------ the state thread

    def _run_states(self) -> None:
        while not self._stop.is_set():
            clears: list[str] = []
            configs: list[_Entity] = []
            states: list[tuple[str, str]] = []
            with self._lock:
                self._wake.wait(self._tick)
                if self._stop.is_set() or not self._connected:
                    continue
                now = time.monotonic()
                if self._republish:
                    self._republish = False
                    clears = self._stale_topics()
                    configs = list(self._entities.values())
                    for topic, v in self._values.items():
                        v.sent, v.sent_at = v.value, now
                        states.append((topic, v.value))
                else:
                    configs = [e for e in self._entities.values() if not e.sent]
                    for topic, v in self._values.items():
                        if v.value != v.sent and now - v.sent_at >= self._interval:
                            v.sent, v.sent_at = v.value, now
                            states.append((topic, v.value))
                for entity in configs:
                    entity.sent = True
                self._published_states += len(states)
            try:
                self._publish(clears, configs, states)
            except Exception:
                log.exception("%s [%s]: publishing the state failed", NAME, self.section)
                with self._lock:
                    self._republish = True

    def _publish(self, clears: list[str], configs: list[_Entity],
                 states: list[tuple[str, str]]) -> None:
        publish = self.client.publish
        for topic in clears:
            publish(topic, b"", qos=1, retain=True)
        for entity in configs:
            publish(entity.topic, json.dumps(entity.config, sort_keys=True,
                                             separators=(",", ":")), qos=1, retain=True)
        for topic, value in states:
            publish(topic, value, qos=1, retain=True)
        if configs or clears:
            with self._lock:
                known = {e.topic: {"state": e.state_topic, "owner": list(e.owner)}
                         for e in self._entities.values() if e.sent}
                # a state topic that moved (a new TopicPrefix): its old retained value goes
                moved = [old["state"] for topic, old in self._known.items()
                         if topic in known and old.get("state") != known[topic]["state"]
                         and isinstance(old.get("state"), str)]
                merged = {**self._known, **known}
                for topic in clears:
                    merged.pop(topic, None)
                self._known = merged
            for topic in moved:
                publish(topic, b"", qos=1, retain=True)
            self._write_known(merged)

    def _stale_topics(self) -> list[str]:
        """Under the lock: the discovery topics remembered from an earlier run (or earlier on
        this one) that must go: their camera, line, zone or area is gone from the
        configuration (their state topic goes too), Discovery was turned off, or the
        DiscoveryPrefix changed.  Each is cleared with an empty retained payload."""
        out: list[str] = []
        for topic, known in self._known.items():
            if topic in self._entities:
                continue
            gone = not self._configured(tuple(known.get("owner") or ()))
            if gone or not self.settings.discovery or not topic.startswith(
                    f"{self.settings.discovery_prefix}/"):
                out.append(topic)
                state = known.get("state")
                if gone and isinstance(state, str):
                    out.append(state)
        return out

    def _configured(self, owner: tuple[str, ...]) -> bool:
        if len(owner) < 2:
            return False
        if owner[0] == "area":
            return any(a.id == owner[1] for a in self.app.areas)
        src = next((s for s in self.app.sources if s.id == owner[1] and s.enabled), None)
        if src is None or owner[0] != "camera":
            return False
        if len(owner) == 4 and owner[2] == "line":
            return any(line.name == owner[3] for line in src.counting_lines)
        if len(owner) == 4 and owner[2] == "zone":
            return any(z.name == owner[3] for z in (*src.zones, *src.entry_zones))
        return len(owner) == 2

    def _read_known(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._known_file.read_text())
        except (OSError, ValueError):
            return {}
        known = data.get("discovery") if isinstance(data, dict) else None
        return {k: v for k, v in known.items() if isinstance(v, dict)} \
            if isinstance(known, dict) else {}

    def _write_known(self, known: dict[str, dict[str, Any]]) -> None:
        try:
            self._known_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._known_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"discovery": known}, indent=1, sort_keys=True))
            os.replace(tmp, self._known_file)
        except OSError as exc:
            log.warning("%s [%s]: cannot remember the discovery topics in %s: %s", NAME,
                        self.section, self._known_file, exc)

    # ------------------------------------------------------------------ the outbox's thread

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        """Publish a batch of events with QoS 1 and return once the broker acknowledged every
        one (PUBACK); raise otherwise (the batch stays in the outbox and is retried)."""
        with self._lock:
            connected, error = self._connected, self._last_error
        if not connected:
            raise DeliveryError(error or f"not connected to {self.broker}")
        infos = []
        for rec in records:
            info = self.client.publish(str(rec["topic"]), str(rec["payload"]), qos=1,
                                       retain=False)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS,):
                raise DeliveryError(f"publish failed: {paho.error_string(info.rc)}")
            infos.append(info)
        deadline = time.monotonic() + self.settings.timeout
        for info in infos:
            while not info.is_published():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeliveryError(f"no acknowledgement from {self.broker} within "
                                        f"{self.settings.timeout:g} s")
                if self._closing.is_set():
                    raise DeliveryError("closing")
                try:
                    info.wait_for_publish(min(left, 0.1))
                except (RuntimeError, ValueError) as exc:
                    raise DeliveryError(str(exc)) from None

    # ------------------------------------------------------------------ the test button

    @classmethod
    def send_test(cls, config: PluginConfig, app: LookoutConfig) -> str:
        """Connect, publish one ``test`` message (QoS 1) to ``<prefix>/test``, wait for the
        broker's acknowledgement and disconnect; :class:`SendTestError` says why not."""
        try:
            settings = plugin_settings(MqttConfig, config)
        except ValueError as exc:
            raise SendTestError(f"the section is invalid: {exc}") from exc
        if not settings.host:
            raise SendTestError("Host is empty: set it first")
        section = config.section or NAME
        broker = f"{settings.host}:{settings.port}"
        if settings.username and settings.password_env and \
                settings.password_env not in os.environ:
            log.warning("%s [%s]: %s is not set: logging in as %s without a password", NAME,
                        section, settings.password_env, settings.username)
        processor = app.app.processor_name_or_host
        try:
            client = make_client(settings, f"{client_id(settings, section, processor)}-test")
        except (OSError, ssl.SSLError) as exc:
            raise SendTestError(f"CAFile {settings.ca_file}: {exc.strerror or exc}") from None
        answered = threading.Event()
        outcome: dict[str, Any] = {}

        def on_connect(c: paho.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
            outcome["reason"] = reason
            answered.set()

        client.on_connect = on_connect
        try:
            client.connect(settings.host, settings.port, settings.keepalive)
        except ConnectionRefusedError:
            raise SendTestError(f"{broker}: connection refused (is the broker running, and "
                                "is Port right?)") from None
        except ssl.SSLError as exc:
            raise SendTestError(f"{broker}: TLS failed: {exc.reason or exc}") from None
        except TimeoutError:
            raise SendTestError(f"{broker}: no answer within {settings.timeout:g} s") from None
        except OSError as exc:
            raise SendTestError(f"{broker}: {exc.strerror or exc}") from None
        client.loop_start()
        try:
            if not answered.wait(settings.timeout):
                hint = "" if settings.tls else " (a TLS port needs TLS = True)"
                raise SendTestError(f"{broker}: the broker did not answer the connection "
                                    f"within {settings.timeout:g} s{hint}")
            reason = outcome["reason"]
            if reason.is_failure:
                hint = ""
                if str(reason) in ("Not authorized", "Bad user name or password"):
                    hint = (f" (check Username and the password in {settings.password_env})"
                            if settings.username else " (the broker wants a Username)")
                raise SendTestError(f"{broker} refused the connection: {reason}{hint}")
            now = time.time()
            topic = f"{topic_prefix(settings, processor)}/test"
            message = json.dumps({
                "id": f"test-{int(now * 1000)}", "kind": "test", "source": "processor",
                "source_id": section,
                "timestamp": format_time(datetime.fromtimestamp(now, UTC)),
                "message": "a test message from Lookout: the broker works"})
            info = client.publish(topic, message, qos=1, retain=False)
            try:
                info.wait_for_publish(settings.timeout)
            except (RuntimeError, ValueError) as exc:
                raise SendTestError(f"{broker}: publishing failed: {exc}") from None
            if not info.is_published():
                raise SendTestError(f"{broker}: no acknowledgement of the test message within "
                                    f"{settings.timeout:g} s")
            return f"{broker} acknowledged a test message on {topic}"
        finally:
            client.disconnect()
            client.loop_stop()


def known_file(app: LookoutConfig, section: str) -> Path:
    """Where a section remembers the discovery topics it published."""
    return app.data_path(f"{DISCOVERY_FOLDER}/{section}.json")


# One sink, three section kinds: [SourceLogger_N], [AreaLogger_N] and [Output_N].
SOURCE_LOGGERS.register(NAME)(MqttLogger)
AREA_LOGGERS.register(NAME)(MqttLogger)
OUTPUTS.register(NAME)(MqttLogger)
