"""``redis_logger`` against a real ``redis-server`` (tests/servers.py): the per-person
engagement keys, their content and expiry, the heatmap message (key and pub/sub), the
password from the environment, ``send_test``, and an outage: Redis stopped mid-run and
restarted, every message made meanwhile written afterwards, counted on a Redis stream."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from libs.config import load_config
from libs.config.models import LookoutConfig
from libs.config.restarts import Restarts
from libs.config.secrets import is_secret_key
from libs.integrations.redis_sink import NAME, RedisConfig, RedisLogger
from libs.loggers import OUTPUTS, SOURCE_LOGGERS, SendTestError
from libs.records import (
    Cluster,
    Clusters,
    EngagementPerson,
    EngagementUpdate,
    FrameSummary,
    RecordIds,
)
from tests.conftest import REPO
from tests.servers import Redis, running

T0 = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
PASSWORD = "redis-test-pw-7f3a"


class PersistentRedis(Redis):
    """Redis with an append-only file written on every command: what was written before a
    stop is still there after the restart, so the outage test counts every write."""

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("--appendonly")
        cmd[at + 1] = "yes"
        return [*cmd, "--appendfsync", "always"]


class PasswordRedis(Redis):
    def command(self) -> list[str]:
        return [*super().command(), "--requirepass", PASSWORD]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> LookoutConfig:
    folder = tmp_path_factory.mktemp("redis-sink")
    text = (REPO / "config-x86.ini").read_text()
    text = text.replace("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}")
    (folder / "config.ini").write_text(text)
    return load_config(folder / "config.ini")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    with running(Redis(tmp_path_factory.mktemp("redis"))) as srv:
        assert isinstance(srv, Redis)
        yield srv


def section(url: str, name: str, **keys: str) -> RedisConfig:
    cfg = RedisConfig.model_validate({"Name": NAME, "Url": url, "Timeout": "1", **keys})
    cfg._section = name
    return cfg


def make_sink(app: LookoutConfig, url: str, name: str, **keys: str) -> RedisLogger:
    return RedisLogger(section(url, name, **keys), None, app, retry_first_s=0.05,
                       retry_max_s=0.2, idle_poll_s=0.02)


def update(ids: RecordIds, camera: str, at: datetime, tracks: dict[int, tuple[bool, float]],
           ) -> EngagementUpdate:
    """An engagement_update of ``camera`` at ``at``: tracks -> (engaged, seconds)."""
    people = tuple(EngagementPerson(track_id=t, engaged=e, engagement_seconds=s,
                                    last_seen=at - timedelta(seconds=0.1 * i))
                   for i, (t, (e, s)) in enumerate(sorted(tracks.items())))
    engaged = tuple(t for t, (e, _) in sorted(tracks.items()) if e)
    return EngagementUpdate(
        id=ids(), source="camera", source_id=camera, timestamp=at,
        window_from=at - timedelta(seconds=5), unique_people=len(tracks),
        engaged_people=len(engaged), engagement_seconds=1.5, person_ids=tuple(sorted(tracks)),
        engaged_ids=engaged, detected_people=len(tracks) + 3, total_engaged_people=2,
        total_engagement_seconds=12.25, observed_seconds=60.0, people=people)


def wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_section_registers_as_camera_sink_and_output() -> None:
    assert SOURCE_LOGGERS.get(NAME) is RedisLogger and OUTPUTS.get(NAME) is RedisLogger
    assert RedisLogger.on_bus and RedisConfig.RESTARTS is Restarts.NO_CAMERA
    with pytest.raises(ValueError, match="redis://"):
        RedisConfig.model_validate({"Name": NAME, "Url": "http://x"})
    with pytest.raises(ValueError, match=r"\{track\}"):
        RedisConfig.model_validate({"Name": NAME, "PersonId": "{camera}"})
    with pytest.raises(ValueError, match="may be used"):
        RedisConfig.model_validate({"Name": NAME, "HeatmapKeyName": "heat:{cam}"})
    # no key holds a credential (they come from the environment): viewers see them all
    assert not [f.alias for f in RedisConfig.model_fields.values()
                if f.alias and is_secret_key(f.alias)]


def test_person_keys_content_and_expiry(app: LookoutConfig, server: Redis) -> None:
    sink = make_sink(app, server.url, "SourceLogger_k", KeyPrefix="k:", MessageExpiration="30",
                     Stream="updates")
    client = redis.Redis.from_url(server.url, decode_responses=True)
    ids = RecordIds()
    try:
        lobby = update(ids, "lobby", T0, {12: (True, 9.2), 15: (False, 0.0)})
        door = update(ids, "door", T0, {12: (False, 1.0)})  # the same track id elsewhere
        other = FrameSummary(id=ids(), source="camera", source_id="lobby", timestamp=T0,
                             frame=1, detected_objects=0, violating_objects=0,
                             violating_pairs=0, occupancy=0, occupancy_threshold=0,
                             environment_score=1.0)
        sink.take([lobby, other, door])
        wait(lambda: client.xlen("k:updates") == 2, 5, "two updates written")
        assert json.loads(client.get("k:lobby-12:engagement")) == {
            "engaged": 1, "engagement": 9.2, "last-seen": "2026-12-05T10:00:00.000+00:00"}
        assert client.get("k:lobby-15:engagement") == \
            '{"engaged":0,"engagement":0.0,"last-seen":"2026-12-05T09:59:59.900+00:00"}'
        assert json.loads(client.get("k:door-12:engagement"))["engaged"] == 0
        assert sorted(client.keys("k:*:engagement")) == [
            "k:door-12:engagement", "k:lobby-12:engagement", "k:lobby-15:engagement"]
        assert 29_000 < client.pttl("k:lobby-12:engagement") <= 30_000
        entries = client.xrange("k:updates")
        assert [e[1] for e in entries] == [
            {"id": lobby.id, "kind": "engagement_update", "camera": "lobby",
             "timestamp": "2026-12-05T10:00:00.000+00:00", "keys": "2"},
            {"id": door.id, "kind": "engagement_update", "camera": "door",
             "timestamp": "2026-12-05T10:00:00.000+00:00", "keys": "1"}]
        st = sink.state()
        assert st["connected"] is True and st["delivered"] == 2 and st["queued"] == 0
    finally:
        sink.close()
    # MessageExpiration: a person no longer updated disappears
    quick = make_sink(app, server.url, "SourceLogger_x", KeyPrefix="x:",
                      MessageExpiration="0.3", Stream="updates")
    try:
        quick.take([update(ids, "lobby", T0, {3: (True, 1.0)})])
        wait(lambda: client.xlen("x:updates") == 1, 5, "the update")
        assert client.exists("x:lobby-3:engagement") == 1
        assert 0 < client.pttl("x:lobby-3:engagement") <= 300
        wait(lambda: client.exists("x:lobby-3:engagement") == 0, 3, "the key to expire")
    finally:
        quick.close()
        client.close()


def test_heatmap_message_key_and_channel(app: LookoutConfig, server: Redis) -> None:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    pubsub = client.pubsub()
    pubsub.subscribe("h:heatmap:lobby", "h:heatmap:hall")
    wait(lambda: pubsub.get_message(timeout=0.05) is None and
         client.pubsub_numsub("h:heatmap:lobby")[0][1] == 1, 5, "the subscription")
    sink = make_sink(app, server.url, "Output_h", KeyPrefix="h:")
    ids = RecordIds()
    image = Clusters(id=ids(), source="camera", source_id="lobby", timestamp=T0, frame=50,
                     space="image", eps=40.0, min_samples=2, window_seconds=3600.0,
                     clusters=(Cluster(position=(603.4, 388.6), intensity=183.25,
                                       radius=41.7, samples=12),
                               Cluster(position=(100.0, 200.0), intensity=2.5, radius=12.2,
                                       samples=3)))
    floor = Clusters(id=ids(), source="camera", source_id="hall", timestamp=T0, frame=50,
                     space="floor", eps=0.5, min_samples=5, window_seconds=300.0,
                     clusters=(Cluster(position=(2.41, 5.07), intensity=10.0, radius=0.62,
                                       samples=40, image_position=(603.5, 388.0)),))
    try:
        sink.take([image, floor])
        got: list[tuple[str, str]] = []
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            msg = pubsub.get_message(timeout=0.1)
            if msg and msg["type"] == "message":
                got.append((msg["channel"], msg["data"]))
        lobby = ('{"heatmap":[{"position":{"x":603,"y":389},"intensity":183.25,"radius":42},'
                 '{"position":{"x":100,"y":200},"intensity":2.5,"radius":12}]}')
        hall = '{"heatmap":[{"position":{"x":241,"y":507},"intensity":10.0,"radius":62}]}'
        assert got == [("h:heatmap:lobby", lobby), ("h:heatmap:hall", hall)]
        assert client.get("h:heatmap:lobby") == lobby and client.get("h:heatmap:hall") == hall
        assert client.ttl("h:heatmap:lobby") == -1  # the latest heatmap stays
    finally:
        sink.close()
        pubsub.close()
        client.close()


def test_password_from_the_environment_and_send_test(
        app: LookoutConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running(PasswordRedis(tmp_path / "pw")) as srv:
        assert isinstance(srv, Redis)
        cfg = section(srv.url, "Output_pw", PasswordEnv="SHOP_REDIS_PASSWORD")
        monkeypatch.delenv("SHOP_REDIS_PASSWORD", raising=False)
        with pytest.raises(SendTestError, match="authentication failed") as no_pw:
            RedisLogger.send_test(cfg, app)
        monkeypatch.setenv("SHOP_REDIS_PASSWORD", "wrong-" + PASSWORD)
        with pytest.raises(SendTestError, match="authentication failed") as wrong:
            RedisLogger.send_test(cfg, app)
        for exc in (no_pw, wrong):
            assert PASSWORD not in str(exc.value) and "SHOP_REDIS_PASSWORD" in str(exc.value)
        monkeypatch.setenv("SHOP_REDIS_PASSWORD", PASSWORD)
        answer = RedisLogger.send_test(cfg, app)
        assert "answered PING" in answer and PASSWORD not in answer
        client = redis.Redis.from_url(srv.url, password=PASSWORD, decode_responses=True)
        assert json.loads(client.get("lookout:test"))["message"].startswith("a test message")
        sink = make_sink(app, srv.url, "Output_pw", PasswordEnv="SHOP_REDIS_PASSWORD",
                         Stream="s")
        try:
            sink.take([update(RecordIds(), "lobby", T0, {1: (True, 2.0)})])
            wait(lambda: client.xlen("s") == 1, 5, "the authenticated write")
            assert client.exists("lobby-1:engagement") == 1
        finally:
            sink.close()
            client.close()
    # a password in the URL is never shown
    shown = make_sink(app, f"redis://:{PASSWORD}@127.0.0.1:{srv.port}/0", "Output_pw2")
    try:
        assert PASSWORD not in json.dumps(shown.state())
    finally:
        shown.close()
    with pytest.raises(SendTestError, match="cannot connect"):
        RedisLogger.send_test(section(srv.url, "Output_down"), app)  # stopped now


def test_outage_every_message_made_while_redis_was_down_is_written(
        app: LookoutConfig, tmp_path: Path) -> None:
    """Updates every 10 ms; Redis is stopped after 0.3 s and restarted 1 s later: every
    update made (before, during and after the outage) ends up on the stream, and the last
    update's person keys hold its values.  ``take`` never waited for Redis."""
    with running(PersistentRedis(tmp_path / "r")) as srv:
        sink = make_sink(app, srv.url, "SourceLogger_out", MessageExpiration="120",
                         Stream="updates")
        ids = RecordIds()
        made: list[EngagementUpdate] = []
        during: list[str] = []
        slowest = [0.0]
        down = threading.Event()
        stop = threading.Event()

        def produce() -> None:
            i = 0
            while not stop.is_set():
                rec = update(ids, "lobby", T0 + timedelta(seconds=i),
                             {i: (i % 2 == 0, float(i)), 1000 + i % 3: (False, 0.5)})
                t = time.perf_counter()
                sink.take([rec])
                slowest[0] = max(slowest[0], time.perf_counter() - t)
                made.append(rec)
                if down.is_set():
                    during.append(rec.id)
                i += 1
                time.sleep(0.01)

        client = redis.Redis.from_url(srv.url, decode_responses=True)
        producer = threading.Thread(target=produce)
        producer.start()
        try:
            wait(lambda: len(made) >= 30 and client.xlen("updates") > 0, 10, "a first write")
            client.close()
            srv.stop()
            down.set()
            wait(lambda: len(during) >= 50, 10, "updates made during the outage")
            wait(lambda: sink.state()["connected"] is False, 5, "the sink to notice")
            srv.start()
            down.clear()
            time.sleep(0.3)
        finally:
            stop.set()
            producer.join()
        client = redis.Redis.from_url(srv.url, decode_responses=True)
        wait(lambda: sink.state()["queued"] == 0, 10, "the outbox to drain")
        entries = client.xrange("updates")
        written = [e[1]["id"] for e in entries]
        assert set(written) == {r.id for r in made}, "an update is missing"
        assert set(during) <= set(written) and len(during) >= 50
        # each id written once, in the order made (a batch that was executed but whose
        # answer was lost would appear twice; consumers deduplicate on id)
        first_seen = list(dict.fromkeys(written))
        assert first_seen == [r.id for r in made]
        last = made[-1]
        for person in last.people:
            assert json.loads(client.get(f"lobby-{person.track_id}:engagement")) == {
                "engaged": int(person.engaged), "engagement": person.engagement_seconds,
                "last-seen": person.last_seen.isoformat(timespec="milliseconds")}
        st = sink.state()
        assert st["delivered"] == len(made) and st["dropped"] == 0
        # a put is one write to the outbox file: never a wait for the server (timeout 1-2 s)
        assert slowest[0] < 0.25, f"take waited {slowest[0]:.3f} s"
        print(f"made {len(made)} updates, {len(during)} during the outage; written "
              f"{len(written)} stream entries ({len(written) - len(first_seen)} repeats); "
              f"slowest take {slowest[0] * 1000:.1f} ms")
        sink.close()
        client.close()


def test_close_while_redis_is_down_keeps_the_messages_for_the_next_run(
        app: LookoutConfig, tmp_path: Path) -> None:
    srv = Redis(tmp_path / "later")  # not started yet: nothing listens on its port
    sink = make_sink(app, srv.url, "SourceLogger_later", Stream="updates",
                     MessageExpiration="120")
    ids = RecordIds()
    made = [update(ids, "lobby", T0 + timedelta(seconds=i), {i: (True, float(i))})
            for i in range(25)]
    sink.take(made)
    wait(lambda: sink.state()["failures"] >= 1, 5, "a failed attempt")
    t = time.monotonic()
    sink.close()
    assert time.monotonic() - t < 4
    with running(srv):
        again = make_sink(app, srv.url, "SourceLogger_later", Stream="updates",
                          MessageExpiration="120")
        client = redis.Redis.from_url(srv.url, decode_responses=True)
        try:
            wait(lambda: again.state()["queued"] == 0, 5, "the next run to deliver")
            assert [e[1]["id"] for e in client.xrange("updates")] == [r.id for r in made]
            assert client.exists(*(f"lobby-{i}:engagement" for i in range(25))) == 25
        finally:
            again.close()
            client.close()
