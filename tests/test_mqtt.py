"""``mqtt_logger`` against a real Mosquitto (tests/servers.py) on 127.0.0.1: exact topics and
payloads, retained state for late subscribers, the Last Will, Home Assistant discovery, an
outage of the broker mid-run, and the test button's answers (a wrong password included)."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from libs.config import ConfigError, load_config
from libs.config.models import AppConfig, LookoutConfig
from libs.config.restarts import Restarts
from libs.config.secrets import mask_secrets
from libs.integrations import mqtt
from libs.integrations.mqtt import NAME, MqttConfig, MqttLogger
from libs.loggers import AREA_LOGGERS, OUTPUTS, SOURCE_LOGGERS, SendTestError
from libs.records import (
    AreaOccupancySample,
    DistancingStart,
    FrameSummary,
    LineCount,
    LineCrossing,
    OccupancyOver,
    Record,
    RecordIds,
    ZoneCount,
    ZoneEntry,
)
from tests.conftest import REPO
from tests.servers import Mosquitto, free_port, running

T0 = datetime(2026, 12, 5, 9, 30, 0, tzinfo=UTC)
CAMERA = "pets-view1"  # config-x86.ini's camera: line x384
AREA = "campus"  # ...and its area
_serial = itertools.count()


# ---------------------------------------------------------------------------------------
# Helpers: a broker, a subscriber, sinks, records
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    with running(Mosquitto(tmp_path_factory.mktemp("mosquitto"))) as srv:
        assert isinstance(srv, Mosquitto)
        yield srv


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> LookoutConfig:
    folder = tmp_path_factory.mktemp("mqtt")
    text = (REPO / "config-x86.ini").read_text()
    text = text.replace("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}")
    (folder / "config.ini").write_text(text)
    return load_config(folder / "config.ini")


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float

    @property
    def text(self) -> str:
        return self.payload.decode()


class Subscriber:
    """A real MQTT client that records every message under ``topics``."""

    def __init__(self, port: int, *topics: str, client_id: str = "",
                 persistent: bool = False) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.topics = topics
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"test-sub-{next(_serial)}",
                                  clean_session=not persistent)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        wait(self.connected.is_set, 5, "the subscriber's connection")

    def _on_connect(self, client: paho.Client, u: Any, flags: Any, rc: Any, p: Any) -> None:
        if not flags.session_present:
            results = [client.subscribe(t, qos=1) for t in self.topics]
            assert all(r[0] == 0 for r in results)
        self.connected.set()

    def _on_message(self, client: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain),
                                         msg.qos, time.monotonic()))

    def got(self) -> list[Message]:
        with self.lock:
            return list(self.messages)

    def last(self) -> dict[str, str]:
        """The last payload seen on each topic."""
        return {m.topic: m.text for m in self.got()}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def section(port: int, name: str, **keys: str) -> MqttConfig:
    values = {"Name": NAME, "Host": "127.0.0.1", "Port": str(port), "StateInterval": "0.05",
              "Timeout": "2", **keys}
    cfg = MqttConfig.model_validate(values)
    cfg._section = name
    return cfg


def box(app: LookoutConfig, processor: str) -> LookoutConfig:
    """``app`` as the box named ``processor`` ([App] ProcessorName): each test its own
    topics on the one broker."""
    named = AppConfig.model_validate({**app.app.model_dump(), "processor_name": processor})
    return app.model_copy(update={"app": named})


def make_sink(app: LookoutConfig, port: int, name: str, **keys: str) -> MqttLogger:
    """Section ``name`` of the box ``store-<last letter of name>``."""
    return MqttLogger(section(port, name, **keys), None,
                      box(app, f"store-{name[-1].lower()}"), retry_first_s=0.1,
                      retry_max_s=0.3, reconnect_min_s=1, reconnect_max_s=1)


def summary(ids: RecordIds, frame: int, people: int = 3, line_in: int = 4,
            line_out: int = 1) -> FrameSummary:
    return FrameSummary(
        id=ids(), source="camera", source_id=CAMERA, timestamp=T0 + timedelta(seconds=frame / 10),
        frame=frame, detected_objects=people, violating_objects=2, violating_pairs=1,
        occupancy=people, occupancy_threshold=10, environment_score=0.25,
        line_counts={"x384": LineCount(in_count=line_in, out_count=line_out)},
        zone_counts={"queue": ZoneCount(people=2, entries=5)})


def events(ids: RecordIds, frame: int) -> list[Record]:
    env: dict[str, Any] = dict(source="camera", source_id=CAMERA,
                               timestamp=T0 + timedelta(seconds=frame / 10))
    return [
        LineCrossing(id=ids(), frame=frame, line="x384", track_id=17, direction="in", **env),
        ZoneEntry(id=ids(), zone="queue", track_id=17, **env),
        DistancingStart(id=ids(), frame=frame, violating_objects=2, violating_pairs=1,
                        track_ids=(17, 21), min_distance_cm=87.5, **env),
    ]


def area_records(ids: RecordIds) -> list[Record]:
    env: dict[str, Any] = dict(source="area", source_id=AREA, timestamp=T0 + timedelta(seconds=5))
    return [
        AreaOccupancySample(id=ids(), occupancy=12, threshold=10, violation=True,
                            cameras={CAMERA: 12}, **env),
        OccupancyOver(id=ids(), occupancy=12, threshold=10, **env),
    ]


def state_topics(prefix: str, people: int = 3) -> dict[str, str]:
    cam, area = f"{prefix}/camera/{CAMERA}", f"{prefix}/area/{AREA}"
    return {
        f"{cam}/people": str(people), f"{cam}/occupancy": str(people),
        f"{cam}/violations": "2", f"{cam}/violating_pairs": "1",
        f"{cam}/line/x384/in": "4", f"{cam}/line/x384/out": "1",
        f"{cam}/zone/queue/people": "2", f"{cam}/zone/queue/entries": "5",
        f"{area}/occupancy": "12", f"{area}/threshold": "10", f"{area}/over_threshold": "ON",
    }


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

def test_registered_as_a_bus_sink_and_its_section_is_checked(x86_config: Path) -> None:
    for registry in (SOURCE_LOGGERS, AREA_LOGGERS, OUTPUTS):
        assert registry.get(NAME) is MqttLogger
    assert MqttLogger.on_bus and MqttConfig.RESTARTS is Restarts.NO_CAMERA
    assert all(f.description for n, f in MqttConfig.model_fields.items()
               if n not in ("name", "enabled"))
    base = x86_config.read_text()
    x86_config.write_text(base + "\n[Output_4]\nName = mqtt_logger\nHost =\n")
    with pytest.raises(ConfigError, match=r"\[Output_4\] Host.*empty"):
        load_config(x86_config)
    x86_config.write_text(base + "\n[Output_4]\nName = mqtt_logger\nHost = b\n"
                          "Kinds = line_crossing, frame_summary\n")
    with pytest.raises(ConfigError, match="frame_summary"):
        load_config(x86_config)
    x86_config.write_text(base + "\n[AreaLogger_4]\nName = mqtt_logger\nHost = broker.lan\n"
                          "Username = lookout\nPasswordEnv = STORE7_MQTT_PW\n")
    cfg = load_config(x86_config)
    sect = next(s for s in cfg.area_loggers if s.name == NAME)
    assert isinstance(sect, MqttConfig) and sect.password_env == "STORE7_MQTT_PW"
    # the variable's name is not a secret, and no key holds a password
    assert mask_secrets(sect.model_dump(by_alias=True))["PasswordEnv"] == "STORE7_MQTT_PW"


# ---------------------------------------------------------------------------------------
# Topics, payloads, retained state, discovery
# ---------------------------------------------------------------------------------------

def test_topics_payloads_retained_state_and_discovery(app: LookoutConfig,
                                                      broker: Mosquitto) -> None:
    prefix = "lookout/store-a"
    live = Subscriber(broker.port, f"{prefix}/#", "homeassistant/#")
    sink = make_sink(app, broker.port, "Output_A")
    ids = RecordIds()
    try:
        assert sink.prefix == prefix and sink.client_id == "lookout-store-a-Output_A"
        wait(lambda: live.last().get(f"{prefix}/availability") == "online", 5, "online")
        evs = events(ids, 30) + area_records(ids)
        sink.take([summary(ids, 30), *evs])
        expected = state_topics(prefix)
        wanted_events = {r.id: (f"{prefix}/{r.source}/{r.source_id}/events/{r.kind}",
                                r.to_json()) for r in evs if r.kind in mqtt.EVENT_KINDS}
        wait(lambda: expected.items() <= live.last().items(), 5, "the state topics")
        wait(lambda: len([m for m in live.got() if "/events/" in m.topic]) == 4, 5,
             "the events")
        wait(lambda: sink.state()["delivered"] == 4, 5, "the events' acknowledgements")
        got = live.got()
        # events: exact topics and payloads (the record's JSON), QoS 1, not retained
        got_events = {json.loads(m.payload)["id"]: (m.topic, m.text) for m in got
                      if "/events/" in m.topic}
        assert got_events == wanted_events
        assert {m.qos for m in got if "/events/" in m.topic} == {1}
        assert wanted_events[evs[0].id][0] == f"{prefix}/camera/{CAMERA}/events/line_crossing"
        assert wanted_events[evs[-1].id][0] == f"{prefix}/area/{AREA}/events/occupancy_over"
        # state: each topic published once (the values never changed)
        state_msgs = [m for m in got if m.topic in expected]
        assert sorted(m.topic for m in state_msgs) == sorted(expected)

        # a subscriber that connects later gets every current value, retained
        late = Subscriber(broker.port, f"{prefix}/#", "homeassistant/#")
        try:
            wait(lambda: len(late.got()) >= len(expected) + 1 + len(expected), 5,
                 "the retained messages")
            time.sleep(0.1)
            retained = {m.topic: m.text for m in late.got() if m.retain}
            assert {t: v for t, v in retained.items() if t.startswith(prefix)} == \
                {**expected, f"{prefix}/availability": "online"}
            configs = {t: json.loads(v) for t, v in retained.items()
                       if t.startswith("homeassistant/") and "lookout_store-a" in t}
        finally:
            late.close()

        # Home Assistant discovery: one config per state topic, every required key
        assert len(configs) == len(expected) == 11
        assert sorted(c["state_topic"] for c in configs.values()) == sorted(expected)
        assert len({c["unique_id"] for c in configs.values()}) == 11
        for topic, cfg in configs.items():
            component, node, _object_id, tail = topic.split("/")[1:]
            assert tail == "config" and node == "lookout_store-a"
            assert component == ("binary_sensor" if cfg["state_topic"].endswith(
                "over_threshold") else "sensor")
            assert cfg["availability_topic"] == f"{prefix}/availability"
            assert cfg["payload_available"] == "online"
            assert cfg["payload_not_available"] == "offline"
            assert cfg["name"] and cfg["device"]["identifiers"] and cfg["device"]["name"]
            assert cfg["device"]["manufacturer"] == "Lookout"
            if component == "sensor":
                assert cfg["unit_of_measurement"] in ("people", "pairs", "entries")
                assert cfg["state_class"] in ("measurement", "total_increasing")
            else:
                assert (cfg["payload_on"], cfg["payload_off"]) == ("ON", "OFF")
        people = configs[f"homeassistant/sensor/lookout_store-a/camera_{CAMERA}_people/config"]
        assert people == {
            "name": "People", "unique_id": f"lookout_store-a_camera_{CAMERA}_people",
            "state_topic": f"{prefix}/camera/{CAMERA}/people",
            "availability_topic": f"{prefix}/availability", "payload_available": "online",
            "payload_not_available": "offline", "icon": "mdi:account-group",
            "unit_of_measurement": "people", "state_class": "measurement",
            "device": {"identifiers": [f"lookout_store-a_camera_{CAMERA}"],
                       "name": "PETS09 S2L1 view 1 (store-a)", "manufacturer": "Lookout",
                       "model": "Camera"},
            "origin": {"name": "Lookout"}}
        area_dev = {tuple(c["device"]["identifiers"]) for t, c in configs.items()
                    if "/area_" in t}
        assert area_dev == {(f"lookout_store-a_area_{AREA}",)}
        st = sink.state()
        assert st["connected"] and st["state_topics"] == 11 and st["queued"] == 0
    finally:
        sink.close()
        live.close()
    # a clean close leaves "offline", retained
    after = Subscriber(broker.port, f"{prefix}/availability")
    try:
        wait(lambda: after.last().get(f"{prefix}/availability") == "offline", 3, "offline")
    finally:
        after.close()


def test_state_is_rate_limited_and_sent_only_on_change(app: LookoutConfig,
                                                       broker: Mosquitto) -> None:
    prefix = "lookout/store-b"
    people_topic = f"{prefix}/camera/{CAMERA}/people"
    sub = Subscriber(broker.port, people_topic, f"{prefix}/camera/{CAMERA}/line/x384/in")
    sink = make_sink(app, broker.port, "Output_B", StateInterval="0.4")
    ids = RecordIds()
    try:
        wait(lambda: sink.state()["connected"], 5, "the connection")
        start = time.monotonic()
        for frame in range(30):  # a 30 fps camera for one second, the count changing
            sink.take([summary(ids, frame, people=frame % 7)])
            time.sleep(1 / 30)
        elapsed = time.monotonic() - start
        final = 29 % 7
        wait(lambda: sub.last().get(people_topic) == str(final), 2, "the last value")
        time.sleep(0.5)
        people = [m for m in sub.got() if m.topic == people_topic]
        line_in = [m for m in sub.got() if m.topic.endswith("/in")]
    finally:
        sink.close()
        sub.close()
    # 30 values in about one second, one publication per 0.4 s at most (the last value
    # trails the interval); the value that never changed went once
    assert 2 <= len(people) <= 2 + int(elapsed / 0.4), ([m.text for m in people], elapsed)
    assert all(b.at - a.at >= 0.25 for a, b in itertools.pairwise(people))
    assert len(line_in) == 1 and line_in[0].text == "4"


def test_close_publishes_the_values_the_interval_held_back(app: LookoutConfig,
                                                          broker: Mosquitto) -> None:
    """A run that ends within StateInterval of its last change (every recording does) leaves
    its last values retained, not the ones before (a real PETS run left out 12 of 14)."""
    people_topic = f"lookout/store-z/camera/{CAMERA}/people"  # a box of its own
    sink = make_sink(app, broker.port, "Output_Z", StateInterval="60")
    ids = RecordIds()
    try:
        wait(lambda: sink.state()["connected"], 5, "the connection")
        for frame in range(10):
            sink.take([summary(ids, frame, people=frame)])
        time.sleep(0.3)  # the first value went; the later ones wait for the interval
    finally:
        sink.close()
    late = Subscriber(broker.port, people_topic)
    try:
        wait(lambda: late.last().get(people_topic) == "9", 5,
             f"the last value, retained (got {late.last().get(people_topic)!r})")
    finally:
        late.close()


def test_last_will_offline_when_the_connection_dies_then_online_and_state_again(
        app: LookoutConfig, broker: Mosquitto) -> None:
    prefix = "lookout/store-c"
    avail = f"{prefix}/availability"
    sub = Subscriber(broker.port, f"{prefix}/#")
    sink = make_sink(app, broker.port, "Output_C")
    ids = RecordIds()
    try:
        wait(lambda: sub.last().get(avail) == "online", 5, "online")
        sink.take([summary(ids, 1)])
        wait(lambda: sub.last().get(f"{prefix}/camera/{CAMERA}/people") == "3", 3, "state")
        before = len([m for m in sub.got() if m.topic == f"{prefix}/camera/{CAMERA}/people"])
        time.sleep(0.3)  # the broker's PUBACKs are in (else paho resends those messages too)
        # the connection dies without a DISCONNECT (a cable pulled): the broker sends the will
        sock = sink.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        wait(lambda: [m.text for m in sub.got() if m.topic == avail][-1:] == ["offline"], 5,
             "the Last Will")
        # paho reconnects: online again, and the state is published again
        wait(lambda: [m.text for m in sub.got() if m.topic == avail][-1:] == ["online"], 5,
             "online after reconnecting")
        people = f"{prefix}/camera/{CAMERA}/people"
        wait(lambda: len([m for m in sub.got() if m.topic == people]) == before + 1, 3,
             "the state republished")
        time.sleep(0.2)
        assert [m.text for m in sub.got() if m.topic == people] == ["3", "3"]
        assert [m.text for m in sub.got() if m.topic == avail] == ["online", "offline",
                                                                   "online"]
        assert sink.state()["connects"] == 2
    finally:
        sink.close()
        sub.close()


def test_a_camera_gone_from_the_configuration_has_its_sensors_cleared(
        app: LookoutConfig, broker: Mosquitto) -> None:
    prefix = "lookout/store-d"
    ids = RecordIds()
    ghost = FrameSummary(id=ids(), source="camera", source_id="old-door", timestamp=T0,
                         frame=1, detected_objects=1, violating_objects=0, violating_pairs=0,
                         occupancy=1, occupancy_threshold=0, environment_score=0.0)
    first = make_sink(app, broker.port, "Output_D")
    try:
        wait(lambda: first.state()["connected"], 5, "the connection")
        first.take([ghost, summary(ids, 2)])
        wait(lambda: first.state()["states_published"] == 12, 3, "the state")
        time.sleep(0.2)
    finally:
        first.close()
    known = json.loads(mqtt.known_file(app, "Output_D").read_text())["discovery"]
    assert len(known) == 12
    # the next run (camera "old-door" is not in the configuration) clears its topics
    second = make_sink(app, broker.port, "Output_D")
    try:
        wait(lambda: second.state()["connected"], 5, "the connection")
        wait(lambda: len(json.loads(mqtt.known_file(app, "Output_D").read_text())
                         ["discovery"]) == 6, 3, "the stale topics cleared")
        time.sleep(0.2)
    finally:
        second.close()
    late = Subscriber(broker.port, f"{prefix}/#", "homeassistant/+/lookout_store-d/#")
    try:
        wait(lambda: len(late.got()) >= 13, 3, "the retained messages")
        time.sleep(0.2)
        topics = {m.topic for m in late.got() if m.retain}
    finally:
        late.close()
    # the camera gone, and the zone "queue" that pets-view1 does not have, are cleared; its
    # counts and its line x384 stay
    assert not [t for t in topics if "old-door" in t or "queue" in t]
    assert f"homeassistant/sensor/lookout_store-d/camera_{CAMERA}_people/config" in topics
    assert f"homeassistant/sensor/lookout_store-d/camera_{CAMERA}_line_x384_in/config" in topics
    assert f"{prefix}/camera/{CAMERA}/people" in topics
    assert len(topics) == 6 + 6 + 1  # configs, state values, availability


# ---------------------------------------------------------------------------------------
# Outage
# ---------------------------------------------------------------------------------------

class PersistentMosquitto(Mosquitto):
    """Mosquitto that keeps sessions over a restart: the test's subscriber gets what was
    published while it was reconnecting."""

    def command(self) -> list[str]:
        cmd = super().command()
        conf = self.folder / "mosquitto.conf"
        conf.write_text(conf.read_text().replace(
            "persistence false", f"persistence true\npersistence_location {self.folder}/"))
        return cmd


def test_broker_down_mid_run_every_event_arrives_and_state_is_republished(
        app: LookoutConfig, tmp_path: Path) -> None:
    prefix = "lookout/store-e"
    srv = PersistentMosquitto(tmp_path / "broker")
    produced: list[Record] = []
    during: list[str] = []
    ids = RecordIds()
    with running(srv):
        sub = Subscriber(srv.port, f"{prefix}/#", client_id="outage-sub", persistent=True)
        sink = make_sink(app, srv.port, "Output_E")
        try:
            wait(lambda: sink.state()["connected"], 5, "the connection")
            down = threading.Event()
            stop = threading.Event()

            def produce() -> None:
                frame = 0
                while not stop.is_set():
                    batch = [summary(ids, frame), *events(ids, frame)[:1]]
                    sink.take(batch)
                    produced.extend(batch[1:])
                    if down.is_set():
                        during.append(batch[1].id)
                    frame += 1
                    time.sleep(0.01)

            producer = threading.Thread(target=produce)
            producer.start()
            time.sleep(0.5)
            srv.stop()
            down.set()
            wait(lambda: not sink.state()["connected"], 3, "the sink to see the outage")
            time.sleep(1.0)
            down.clear()
            srv.start()
            time.sleep(0.5)
            stop.set()
            producer.join()
            wanted = {r.id for r in produced}
            wait(lambda: wanted <= {json.loads(m.payload)["id"] for m in sub.got()
                                    if "/events/" in m.topic}, 15, "every event")
            wait(lambda: sink.state()["queued"] == 0, 5, "an empty outbox")
            state = sink.state()
            avail = [m.text for m in sub.got() if m.topic == f"{prefix}/availability"]
        finally:
            sink.close()
            sub.close()
    assert "Error" not in srv.log.read_text()  # the subscriber's session was kept
    got = [json.loads(m.payload)["id"] for m in sub.got() if "/events/" in m.topic]
    assert len(during) >= 30
    assert set(got) == wanted and len(wanted) == len(produced)
    assert set(during) <= set(got)
    assert state["delivered"] >= len(produced) and state["dropped"] == 0
    assert state["connects"] == 2
    # the state never changed: each topic went once per connection (republished after it)
    people = [m for m in sub.got() if m.topic == f"{prefix}/camera/{CAMERA}/people"]
    assert [m.text for m in people] == ["3", "3"]
    # online once per connection, and online last (Mosquitto may send the will as it stops)
    assert avail[-1] == "online" and avail.count("online") == 2
    print(f"broker down ~1 s mid-run: {len(produced)} events produced, {len(during)} during "
          f"the outage; {len(got)} received ({len(got) - len(set(got))} duplicates)")


# ---------------------------------------------------------------------------------------
# The test button, and a password
# ---------------------------------------------------------------------------------------

def test_send_test_answers_and_refusals(app: LookoutConfig, broker: Mosquitto) -> None:
    sub = Subscriber(broker.port, "lookout/store-f/test")
    try:
        answer = MqttLogger.send_test(section(broker.port, "Output_F"), box(app, "store-f"))
        assert answer == f"127.0.0.1:{broker.port} acknowledged a test message on " \
                         "lookout/store-f/test"
        wait(lambda: len(sub.got()) == 1, 3, "the test message")
        assert json.loads(sub.got()[0].payload)["kind"] == "test"
    finally:
        sub.close()
    closed = free_port()
    with pytest.raises(SendTestError, match=f"127.0.0.1:{closed}: connection refused"):
        MqttLogger.send_test(section(closed, "Output_F"), app)


def test_a_password_from_the_environment_and_a_wrong_one(
        app: LookoutConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = "s3cret-mqtt-pw"
    with running(Mosquitto(tmp_path / "auth", users={"lookout": password})) as srv:
        monkeypatch.setenv("STORE_G_PW", password)
        good = section(srv.port, "Output_G", Username="lookout", PasswordEnv="STORE_G_PW")
        assert "acknowledged" in MqttLogger.send_test(good, app)
        monkeypatch.setenv("STORE_G_PW", "not-the-password")
        with pytest.raises(SendTestError) as err:
            MqttLogger.send_test(good, app)
        assert str(err.value) == (f"127.0.0.1:{srv.port} refused the connection: Not "
                                  "authorized (check Username and the password in STORE_G_PW)")
        assert "not-the-password" not in str(err.value)
        anonymous = section(srv.port, "Output_G")
        with pytest.raises(SendTestError, match="the broker wants a Username"):
            MqttLogger.send_test(anonymous, app)
        # the sink itself: refused while the password is wrong, says why, never the password
        sink = make_sink(app, srv.port, "Output_G", Username="lookout",
                         PasswordEnv="STORE_G_PW")
        try:
            sink.take(events(RecordIds(), 1))
            wait(lambda: "refused" in (sink.state()["last_error"] or ""), 5, "the refusal")
            shown = json.dumps(sink.state())
            assert "not-the-password" not in shown and sink.state()["queued"] == 3
        finally:
            sink.close()
        monkeypatch.setenv("STORE_G_PW", password)
        sink = make_sink(app, srv.port, "Output_G", Username="lookout",
                         PasswordEnv="STORE_G_PW")
        try:
            wait(lambda: sink.state()["delivered"] == 3, 5, "the events kept in the outbox")
        finally:
            sink.close()


# ---------------------------------------------------------------------------------------
# The documentation
# ---------------------------------------------------------------------------------------

DOC = REPO / "docs" / "integrations" / "mqtt.md"


def test_the_doc_lists_every_topic_and_key_and_its_block_loads(x86_config: Path) -> None:
    text = DOC.read_text()
    names = {"lookout/store-a": "<P>", CAMERA: "<camera>", AREA: "<area>", "x384": "<line>",
             "queue": "<zone>"}
    for topic in [*state_topics("lookout/store-a"), "lookout/store-a/availability",
                  f"lookout/store-a/camera/{CAMERA}/events/<kind>",
                  f"lookout/store-a/area/{AREA}/events/<kind>"]:
        for name, shown in names.items():
            topic = topic.replace(name, shown)
        assert f"`{topic}`" in text, topic
    for field in MqttConfig.model_fields.values():
        if field.alias not in ("Name",):
            assert f"| `{field.alias}` |" in text, field.alias
    assert "LOOKOUT_MQTT_PASSWORD" in text and mqtt.DEFAULT_PASSWORD_ENV == "LOOKOUT_MQTT_PASSWORD"
    config = text.split("\n## Configuration\n", 1)[1]
    blocks = config.split("```ini\n")[1:]
    assert len(blocks) == 1
    # the block's [App] keys go into the file's [App] section, its other sections after it
    app_keys, sections = blocks[0].split("```")[0].removeprefix("[App]\n").split("\n\n", 1)
    x86_config.write_text(x86_config.read_text().replace("[App]\n", f"[App]\n{app_keys}\n", 1)
                          + "\n" + sections)
    cfg = load_config(x86_config)
    sect = next(s for s in cfg.outputs if s.name == NAME)
    assert isinstance(sect, MqttConfig) and sect.enabled and sect.username == "lookout"
    assert cfg.app.processor_name_or_host == "store-12"  # lookout/store-12/...


def test_through_the_supervisor_bus_with_its_area_aggregation(
        x86_config: Path, broker: Mosquitto) -> None:
    """The section as configured, built by the supervisor, fed by its event bus: the camera's
    records and the area records the supervisor's aggregation makes of them."""
    from processor.supervisor import Supervisor

    x86_config.write_text(x86_config.read_text().replace(
        "[App]\n", "[App]\nProcessorName = store-h\n", 1) + f"""
[Output_3]
Name = mqtt_logger
Host = 127.0.0.1
Port = {broker.port}
StateInterval = 0.05
""")
    prefix = "lookout/store-h"
    sub = Subscriber(broker.port, f"{prefix}/#")
    sup = Supervisor(x86_config, show_progress=False, exit_when_done=False)
    ids = RecordIds()
    try:
        sup._build_sinks()
        sink = sup.bus_sinks["Output_3"]
        assert isinstance(sink, MqttLogger)
        wait(lambda: sup.outputs_status()["Output_3"]["connected"], 5, "the connection")
        crossing = events(ids, 5)[0]
        for frame in range(40):  # 4 s of video: the area makes its occupancy samples
            sup.publish([summary(ids, frame), *([crossing] if frame == 5 else [])])
        area = f"{prefix}/area/{AREA}"
        wait(lambda: {f"{area}/occupancy": "3", f"{area}/threshold": "10",
                      f"{area}/over_threshold": "OFF"}.items() <= sub.last().items(), 5,
             "the area's state")
        wait(lambda: sup.outputs_status()["Output_3"]["delivered"] == 1, 5, "the crossing")
        status = sup.outputs_status()["Output_3"]
        assert status["name"] == NAME and status["queued"] == 0
        assert status["state_topics"] == 11
        got = [m for m in sub.got() if "/events/" in m.topic]
        assert [(m.topic, m.text) for m in got] == [
            (f"{prefix}/camera/{CAMERA}/events/line_crossing", crossing.to_json())]
    finally:
        sup._close_sinks()
        sub.close()


# ---------------------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------------------

def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def cert(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(hours=1))
                   .not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("lookout test CA", ca_key, "lookout test CA", ca_key, True)
    server = cert("127.0.0.1", key, "lookout test CA", ca_key, False)
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    folder.mkdir(parents=True, exist_ok=True)
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class TlsMosquitto(Mosquitto):
    """Mosquitto whose one listener speaks TLS with a certificate for 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.ca, self.cert, self.key = make_certificates(folder / "certs")

    def command(self) -> list[str]:
        cmd = super().command()
        conf = self.folder / "mosquitto.conf"
        conf.write_text(conf.read_text() + f"certfile {self.cert}\nkeyfile {self.key}\n")
        return cmd


def test_tls_with_the_brokers_ca_and_a_clear_error_without(
        app: LookoutConfig, tmp_path: Path) -> None:
    with running(TlsMosquitto(tmp_path / "tls")) as srv:
        assert isinstance(srv, TlsMosquitto)
        good = section(srv.port, "Output_T", TLS="True", CAFile=str(srv.ca))
        assert "acknowledged" in MqttLogger.send_test(good, app)
        with pytest.raises(SendTestError, match=r"TLS failed: CERTIFICATE_VERIFY_FAILED"):
            MqttLogger.send_test(section(srv.port, "Output_T", TLS="True"), app)
        with pytest.raises(SendTestError) as plain:  # plain MQTT to a TLS listener
            MqttLogger.send_test(section(srv.port, "Output_T", Timeout="1"), app)
        assert str(plain.value) == (f"127.0.0.1:{srv.port}: the broker did not answer the "
                                    "connection within 1 s (a TLS port needs TLS = True)")
        missing = str(tmp_path / "no-such-ca.pem")
        with pytest.raises(SendTestError, match=f"CAFile {missing}: No such file"):
            MqttLogger.send_test(section(srv.port, "Output_T", TLS="True", CAFile=missing), app)
        with pytest.raises(FileNotFoundError):  # the supervisor shows why the sink cannot start
            make_sink(app, srv.port, "Output_T", TLS="True", CAFile=missing)
        sink = make_sink(app, srv.port, "Output_T", TLS="True", CAFile=str(srv.ca))
        try:
            sink.take(events(RecordIds(), 3))
            wait(lambda: sink.state()["delivered"] == 3, 5, "the events over TLS")
            assert sink.state()["tls"] is True
        finally:
            sink.close()


# ---------------------------------------------------------------------------------------
# A real run
# ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_real_run_of_tud_campus_reaches_the_broker(x86_config: Path, broker: Mosquitto) -> None:
    """The processor over TUD-Campus (71 frames, its line ``middle``, the area ``sidewalk``)
    with the section in its configuration: every event the bus carried arrives once per id
    with its exact JSON, and the retained state is the run's last values."""
    from tests.test_event_bus import Collector, camera, supervisor_with, tud_only
    from tests.test_supervisor import wait_until

    config = tud_only(x86_config)
    config.write_text(config.read_text().replace(
        "[App]\n", "[App]\nProcessorName = store-r\n", 1) + f"""
[Output_3]
Name = mqtt_logger
Host = 127.0.0.1
Port = {broker.port}
StateInterval = 0.2
""")
    prefix = "lookout/store-r"
    sub = Subscriber(broker.port, f"{prefix}/#", "homeassistant/+/lookout_store-r/#")
    bus = Collector()
    try:
        with supervisor_with(config, bus) as sup:
            wait_until(lambda: camera(sup, "tud")["status"] == "finished", 120, "TUD")

            def drained() -> bool:
                out = sup.submit(sup.outputs_status).result(10)["Output_3"]
                return bool(out["connected"]) and out["queued"] == 0

            wait_until(drained, 20, "the events delivered")
            last_summary = bus.of(FrameSummary, "tud")[-1]
            last_area = bus.of(AreaOccupancySample, "sidewalk")[-1]
            assert isinstance(last_summary, FrameSummary)
            assert isinstance(last_area, AreaOccupancySample)
            counts = last_summary.line_counts["middle"]
            cam, area = f"{prefix}/camera/tud", f"{prefix}/area/sidewalk"
            final = {
                f"{cam}/people": str(last_summary.detected_objects),
                f"{cam}/occupancy": str(last_summary.occupancy),
                f"{cam}/line/middle/in": str(counts.in_count),
                f"{cam}/line/middle/out": str(counts.out_count),
                f"{area}/occupancy": str(last_area.occupancy),
                f"{area}/over_threshold": "ON" if last_area.violation else "OFF",
            }
            wait(lambda: final.items() <= sub.last().items(), 5, "the last values")
        events_sent = {r.id: (f"{prefix}/{r.source}/{r.source_id}/events/{r.kind}",
                              r.to_json()) for r in bus.records if r.kind in mqtt.EVENT_KINDS}
        wait(lambda: len({json.loads(m.payload)["id"] for m in sub.got()
                          if "/events/" in m.topic}) >= len(events_sent), 5, "every event")
    finally:
        sub.close()
    got = {json.loads(m.payload)["id"]: (m.topic, m.text) for m in sub.got()
           if "/events/" in m.topic}
    assert got == events_sent
    kinds = {t.rsplit("/", 1)[1] for t, _ in got.values()}
    assert {"line_crossing", "camera_state"} <= kinds
    assert counts.in_count + counts.out_count == \
        len([r for r in bus.records if r.kind == "line_crossing"]) > 0
    configs = {m.topic for m in sub.got() if m.topic.endswith("/config") and m.payload}
    assert "homeassistant/sensor/lookout_store-r/camera_tud_line_middle_in/config" in configs
    assert "homeassistant/binary_sensor/lookout_store-r/area_sidewalk_over_threshold/config" \
        in configs
    print(f"TUD-Campus: {len(got)} events by kind "
          f"{sorted((k, sum(t.endswith('/' + k) for t, _ in got.values())) for k in kinds)}; "
          f"line middle in {counts.in_count} out {counts.out_count}")
