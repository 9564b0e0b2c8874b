"""A camera reading the engagement service's detection/direction messages from a real Redis
(``VideoPath = redis://...``, :mod:`processor.redis_source`).

- The real processor (a :class:`Supervisor`, its worker process and pipeline) reads a Redis
  stream holding the messages of two cameras: only its own camera's messages become frames
  (each one exactly: the frame summaries carry exactly the published timestamps), and the
  engagement records are what the messages imply: a person facing the target (the image's
  bottom edge) for 10 s of message time has 10 s of engagement, one facing away none, a
  person of the other camera does not count.  The engagement service's outputs come out:
  ``redis_logger`` writes each person's ``<personid>:engagement`` key with those figures.
- Redis is stopped mid-run (the camera shows ``reconnecting`` with the reason), messages are
  added right after it comes back: every message arrives, none twice.
- An invalid message is counted (the camera's skipped frames) and skipped.
- The processor is stopped and started again: it resumes after the last message it handled
  (nothing read twice, nothing lost).
- In-process: messages added while the source waits in its backoff after Redis came back
  are all read, in order, once.
- A pub/sub channel source, a password from the environment, an unreachable server, the
  VideoPath checks, and the image/snapshot/stream API answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from libs.config import load_config
from libs.config.models import LookoutConfig
from libs.config.secrets import mask_text
from libs.config.video_source import VideoPathError, check_redis_url, check_video_path
from libs.loggers.video_logger import preview_path
from libs.records import EngagementSample, EngagementSession, FrameSummary, Record
from processor import redis_source
from processor.redis_source import RedisSource, parse_message, track_id
from processor.sources import open_source
from tests.servers import Redis, running
from tests.test_api_config import make_api
from tests.test_event_bus import Collector, camera, supervisor_with
from tests.test_supervisor import wait_until

CAMERA = "shop"
T0 = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
STEP = 0.5  # s of message time between two messages
W, H = 1280, 720
FACING = {"x": 0.0, "y": 2.0}  # down the image: at the bottom edge, the default target
AWAY = {"x": 0.6, "y": -0.8}  # up and to the right: more than 30 degrees off


class PersistentRedis(Redis):
    """Redis with its append-only file on: the stream survives a stop and a start."""

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("--appendonly")
        cmd[at + 1] = "yes"
        return [*cmd, "--appendfsync", "always"]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PersistentRedis]:
    with running(PersistentRedis(tmp_path_factory.mktemp("redis"))) as srv:
        yield srv  # type: ignore[misc]


def client(srv: Redis) -> redis.Redis:
    return redis.Redis(host=srv.host, port=srv.port, db=0, socket_timeout=5)


def message(k: int, cameraid: str, people: list[tuple[str | int, float, float, dict]]) -> str:
    return json.dumps({
        "id": k, "cameraid": cameraid, "timestamp": stamp(k).isoformat().replace("+00:00", "Z"),
        "width": W, "height": H,
        "detections": [{"objectid": oid, "position": {"x": x, "y": y}, "direction": d}
                       for oid, x, y, d in people]})


def stamp(k: int) -> datetime:
    return T0 + timedelta(seconds=k * STEP)


def redis_config(x86_config: Path, url: str, out_url: str) -> Path:
    """The x86 configuration with its camera reading ``url`` and the engagement stage on
    (faces and head_pose too, which need images: they must be left out, not fail), and the
    engagement service's Redis outputs (``redis_logger``) written to ``out_url``."""
    text = x86_config.read_text()
    text = text.replace("Id = pets-view1", f"Id = {CAMERA}")
    text = text.replace("Cameras = pets-view1", f"Cameras = {CAMERA}")
    text = text.replace("VideoPath = data/pets09_s2l1/vtest.avi", f"VideoPath = {url}")
    text = text.replace("HistoricalDataMode = True", "HistoricalDataMode = False")
    text += f"""
[SourcePostProcessor_7]
Name = faces
Enabled = True

[SourcePostProcessor_8]
Name = head_pose
Enabled = True

[SourcePostProcessor_9]
Name = engagement
Enabled = True
Target =
AngleTolerance = 30
EndAfterSeconds = 3

[Output_7]
Name = redis_logger
Enabled = True
Url = {out_url}
KeyPrefix = out:
PersonId = {{track}}
MessageExpiration = 600
"""
    x86_config.write_text(text)
    return x86_config


R = TypeVar("R", bound=Record)


def of(bus: Collector, cls: type[R], source_id: str = CAMERA) -> list[R]:
    return [r for r in bus.of(cls, source_id) if isinstance(r, cls)]


def summaries(bus: Collector) -> list[datetime]:
    return [r.timestamp for r in of(bus, FrameSummary)]


def test_stream_engagement_outage_invalid_message_and_restart(
        x86_config: Path, redis_server: PersistentRedis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_source, "SAVE_EVERY", 0.2)
    stream = "detections-e2e"
    url = f"redis://127.0.0.1:{redis_server.port}/0?stream={stream}&start=0"
    config = redis_config(x86_config, url, f"redis://127.0.0.1:{redis_server.port}/1")
    db = client(redis_server)
    db.delete(stream)
    mine: list[datetime] = []

    def add(k: int, cameraid: str, people: list[tuple[str | int, float, float, dict]]) -> None:
        db.xadd(stream, {"message": message(k, cameraid, people)})
        if cameraid == CAMERA:
            mine.append(stamp(k))

    # 10 s: alice faces the target, bob (whole-number id 7) faces away; carol, of the other
    # camera, faces it too (not counted).
    for k in range(21):
        add(k, CAMERA, [("alice", 400, 300, FACING), (7, 800, 300, AWAY)])
        add(k, "other", [("carol", 400, 300, FACING)])
    db.xadd(stream, {"message": "{not json"})  # counted and skipped
    bus = Collector()
    with supervisor_with(config, bus) as sup:
        wait_until(lambda: len(summaries(bus)) == 21, 30, "the first 21 messages")
        wait_until(lambda: camera(sup, CAMERA)["skipped_frames"] == 1, 5,
                   "the invalid message counted")
        redis_server.stop()
        wait_until(lambda: camera(sup, CAMERA)["status"] == "reconnecting", 10,
                   "the camera to show the lost Redis")
        assert "Redis 127.0.0.1" in (camera(sup, CAMERA)["reason"] or "")
        redis_server.start()
        db = client(redis_server)
        # Nobody in view for 5 s: alice's and bob's sessions end (EndAfterSeconds = 3).
        for k in range(21, 31):
            add(k, CAMERA, [])
        wait_until(lambda: len(summaries(bus)) == 31, 30, "every message after the outage")
        wait_until(lambda: camera(sup, CAMERA)["status"] == "running", 10, "running again")
        assert camera(sup, CAMERA)["reconnects"] >= 1
        wait_until(lambda: len(bus.of(EngagementSession, CAMERA)) == 2, 10, "two sessions")
        assert camera(sup, CAMERA)["skipped_frames"] == 1  # that one only
        # The engagement service's per-person keys, by the redis_logger sink: the update at
        # 10 s (UpdatePeriod 5) is alice's last, with her 10 s.
        out = redis.Redis(host=redis_server.host, port=redis_server.port, db=1)
        key = f"out:{track_id('alice')}:engagement"
        wait_until(lambda: out.exists(key) == 1, 15, "alice's engagement key")
        assert json.loads(out.get(key)) == {  # type: ignore[arg-type]
            "engaged": 1, "engagement": 10.0, "last-seen": stamp(20).isoformat(
                timespec="milliseconds")}
        assert json.loads(out.get("out:7:engagement"))["engaged"] == 0  # type: ignore[arg-type]
        time.sleep(0.5)  # the position saved (SAVE_EVERY) before the stop
    assert sorted(summaries(bus)) == mine  # each message once, none lost
    sessions = {r.track_id: r for r in of(bus, EngagementSession)}
    assert set(sessions) == {track_id("alice"), 7}
    alice, bob = sessions[track_id("alice")], sessions[7]
    assert (alice.engaged_seconds, alice.observed_seconds) == (10.0, 10.0)
    assert (bob.engaged_seconds, bob.observed_seconds) == (0.0, 10.0)
    assert alice.first_seen == stamp(0) and alice.last_seen == stamp(20)
    samples = of(bus, EngagementSample)
    assert sum(s.people for s in samples) == 2
    assert sum(s.engaged_people for s in samples) == 1
    assert sum(s.engagement_ms for s in samples) == 10_000
    assert not bus.of(EngagementSession, "other")

    # Stopped; 4.5 s more of dave facing the target while walking across the counting line
    # x = 384; started again: only those messages are read.
    first_run = len(mine)
    for j, k in enumerate(range(31, 41)):
        add(k, CAMERA, [("dave", 300 + 20 * j, 500, FACING)])
    bus2 = Collector()
    with supervisor_with(config, bus2) as sup:
        wait_until(lambda: len(summaries(bus2)) == 10, 30, "the messages added while stopped")
        time.sleep(0.3)
        assert len(summaries(bus2)) == 10
    assert sorted(summaries(bus2)) == mine[first_run:]
    dave = of(bus2, EngagementSession)
    assert [(r.track_id, r.engaged_seconds) for r in dave] == [(track_id("dave"), 4.5)]
    last = max(of(bus2, FrameSummary), key=lambda r: r.timestamp)
    crossing = last.line_counts["x384"]
    assert (crossing.in_count + crossing.out_count) == 1  # the line stage works on positions


def test_api_has_no_image_of_a_redis_camera(x86_config: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for api in make_api(x86_config, monkeypatch):
        url = "redis://127.0.0.1:6379/0?stream=dets&password_env=SHOP_REDIS_PW"
        assert api.put("/cameras/pets-view1", {"VideoPath": url}).status_code == 200
        stale = preview_path(load_config(x86_config), "pets-view1")  # of the old source
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_bytes(b"\xff\xd8 a preview of the video the camera showed before")
        for path in ("image", "snapshot", "calibration_image", "stream"):
            r = api.client.get(f"/cameras/pets-view1/{path}", headers=api.admin)
            assert r.status_code == 404 and "Redis" in r.json()["detail"], (path, r.text)
        r = api.post("/cameras/check_stream", {"video_path": url})
        assert r.status_code == 200 and r.json()["ok"] is False
        r = api.put("/cameras/pets-view1", {"VideoPath": "redis://:hunter2@h/0?stream=d"})
        assert r.status_code == 422 and "hunter2" not in r.text


def test_stream_messages_added_while_disconnected_all_arrive(
        redis_server: PersistentRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The source in its backoff after Redis came back: the messages added meanwhile are read
    once it reconnects, in order, none lost or repeated."""
    monkeypatch.setattr(redis_source, "BACKOFF_INITIAL", 1.5)
    stream = "dets-outage"
    db = client(redis_server)
    db.delete(stream)
    target = check_redis_url(f"redis://127.0.0.1:{redis_server.port}/0?stream={stream}")
    src = RedisSource(target, CAMERA, UTC, "outage")  # start=$: new messages only
    got: list[datetime] = []

    def take(n: int) -> None:
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            frame = src.read(timeout=0.2)
            if frame is not None:
                got.append(frame.timestamp)
        assert len(got) == n

    try:
        wait_until(lambda: src.state == "connected", 10, "the connection")
        time.sleep(0.1)  # the newest id is taken before reading
        for k in range(5):
            db.xadd(stream, {"message": message(k, CAMERA, [("a", 1, 2, FACING)])})
        take(5)
        redis_server.stop()
        wait_until(lambda: src.state == "disconnected", 10, "the loss")
        redis_server.start()
        db = client(redis_server)
        for k in range(5, 12):
            db.xadd(stream, {"message": message(k, CAMERA, [("a", 1, 2, FACING)])})
        assert src.state == "disconnected"  # still in its backoff: these were added meanwhile
        take(12)
        assert src.read(timeout=0.3) is None
        assert got == [stamp(k) for k in range(12)] and src.reconnects >= 1
    finally:
        src.close()


def test_channel_source_keeps_its_camera_and_skips_invalid(redis_server: PersistentRedis,
                                                           tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0?channel=dets-pubsub&camera=cam1"
    target = check_redis_url(url)
    src = RedisSource(target, "ignored-id", UTC, "pubsub", state_path=tmp_path / "s.json")
    try:
        db = client(redis_server)
        wait_until(lambda: db.pubsub_numsub("dets-pubsub")[0][1] == 1, 10, "the subscription")
        assert src.problem() is None
        db.publish("dets-pubsub", message(0, "cam2", [("x", 1, 2, FACING)]))
        db.publish("dets-pubsub", json.dumps({"cameraid": "cam1", "width": W}))  # invalid
        db.publish("dets-pubsub", message(1, "cam1", [("p1", 100, 200, {"x": 3, "y": 4}),
                                                       ("p2", 10, 20, {"x": 0, "y": 0})]))
        frame = src.read(timeout=5)
        assert frame is not None and frame.detections is not None
        assert frame.timestamp == stamp(1) and frame.index == 0
        assert (frame.image.shape, frame.image.size) == ((H, W, 0), 0)
        dets = frame.detections
        assert dets.track_ids.tolist() == [track_id("p1"), track_id("p2")]
        assert dets.foot_points().tolist() == [[100, 200], [10, 20]]
        direction = dets.attributes["input_direction"]
        assert direction[0].tolist() == pytest.approx([0.6, 0.8])
        assert all(v != v for v in direction[1])  # (0, 0): no direction
        assert (src.invalid, src.other_cameras, src.skipped_frames) == (1, 1, 1)
        assert src.problem() is not None and src.problem()[0] == "degraded"  # type: ignore[index]
        assert src.read(timeout=0.2) is None
    finally:
        src.close()


class PasswordRedis(Redis):
    def command(self) -> list[str]:
        return [*super().command(), "--requirepass", "s3cret-redis-pw"]


def test_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable named by password_env holds the password; a wrong one is reported naming
    the variable, never the password, and retried."""
    with running(PasswordRedis(tmp_path / "r")) as srv:
        url = f"redis://127.0.0.1:{srv.port}/0?channel=c&password_env=SHOP_REDIS_PW"
        monkeypatch.setenv("SHOP_REDIS_PW", "wrong-password")
        config = load_config_with(tmp_path, url)
        src = open_source(config, config.sources[0])
        try:
            wait_until(lambda: src.problem() is not None and "credentials" in
                       src.problem()[1], 10, "the refusal")  # type: ignore[index]
            assert "SHOP_REDIS_PW" in src.problem()[1]  # type: ignore[index]
            assert "wrong-password" not in src.problem()[1]  # type: ignore[index]
        finally:
            src.close()
        monkeypatch.setenv("SHOP_REDIS_PW", "s3cret-redis-pw")
        src = open_source(config, config.sources[0])
        try:
            wait_until(lambda: src.problem() is None, 10, "the connection")
            db = redis.Redis(host=srv.host, port=srv.port, password="s3cret-redis-pw")
            wait_until(lambda: db.pubsub_numsub("c")[0][1] == 1, 10, "the subscription")
            db.publish("c", message(0, CAMERA, [("a", 1, 2, FACING)]))
            frame = src.read(timeout=5)
            assert frame is not None and frame.timestamp == stamp(0)
        finally:
            src.close()


def load_config_with(tmp_path: Path, url: str) -> LookoutConfig:
    path = tmp_path / "config.ini"
    path.write_text(f"[App]\nDataDirectory = {tmp_path / 'data'}\n\n"
                    f"[Source_0]\nId = {CAMERA}\nVideoPath = {url}\n")
    return load_config(path)


def test_unreachable_redis_is_reported_and_retried(tmp_path: Path) -> None:
    from tests.servers import free_port

    target = check_redis_url(f"redis://127.0.0.1:{free_port()}/0?stream=s")
    src = RedisSource(target, "cam", UTC, "down")
    try:
        wait_until(lambda: src.reconnects >= 2, 10, "two retries")
        state, reason = src.problem()  # type: ignore[misc]
        assert state == "connecting" and "Redis 127.0.0.1" in reason
        assert src.read(timeout=0.1) is None
    finally:
        src.close()
    assert not src._thread.is_alive()


def test_messages_checked() -> None:
    good = message(3, "cam1", [("a", 1.5, 2, FACING), ("a", 9, 9, AWAY)])
    camera_id, ts, width, height, dets = parse_message(good)
    assert (camera_id, ts, width, height, len(dets)) == ("cam1", stamp(3), W, H, 1)  # "a" once
    assert track_id(12) == 12 and track_id("12") == 12
    assert track_id("object1") == track_id("object1") >= redis_source.HASHED_IDS
    bad = [
        "[]", '{"cameraid": "c"}',
        message(0, "c", [])[:-1],
        json.dumps({"cameraid": "c", "timestamp": "yesterday", "width": 1, "height": 1,
                    "detections": []}),
        json.dumps({"cameraid": "c", "timestamp": 0, "width": 0, "height": 1,
                    "detections": []}),
        json.dumps({"cameraid": "c", "timestamp": 0, "width": 1, "height": 1,
                    "detections": [{"objectid": None, "position": {"x": 1, "y": 1}}]}),
        json.dumps({"cameraid": "c", "timestamp": 0, "width": 1, "height": 1,
                    "detections": [{"objectid": "a", "position": {"x": "1", "y": 1}}]}),
    ]
    for text in bad:
        with pytest.raises(redis_source.InvalidMessage):
            parse_message(text)


def test_video_path_rules(tmp_path: Path) -> None:
    ok = check_redis_url("redis://cache.local:6380/2?stream=dets&camera=cam0&password_env=R_PW")
    assert (ok.host, ok.port, ok.db, ok.stream, ok.channel, ok.camera, ok.password_env,
            ok.start) == ("cache.local", 6380, 2, "dets", None, "cam0", "R_PW", "$")
    assert check_video_path("redis://h/0?channel=c", tmp_path, tmp_path).kind == "redis"
    refused = {
        "redis://user:pw@h/0?stream=s": "password",
        "redis://h/0": "either a stream",
        "redis://h/0?stream=s&channel=c": "either a stream",
        "redis://h/x?stream=s": "database",
        "redis://h/0?stream=s&host=x": "unknown",
        "redis:///0?stream=s": "no host",
        "redis://h:99999/0?stream=s": "not a valid URL",
        "redis://h/0?channel=c&start=0": "start=",
        "redis://h/0?stream=s&start=yesterday": "start=",
        "redis://h/0?stream=s&password_env=1X": "password_env",
    }
    for url, why in refused.items():
        with pytest.raises(VideoPathError, match=why):
            check_video_path(url, tmp_path, tmp_path)
    # The variable's name may show; a password never is in the URL to be shown.
    assert mask_text("redis://h/0?stream=s&password_env=R_PW") == \
        "redis://h/0?stream=s&password_env=R_PW"
