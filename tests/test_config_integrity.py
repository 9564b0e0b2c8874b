"""Configuration writes that cannot lose data, over the real app and the real file:

* every section PUT sets the keys it sends and keeps the others (``PUT /app`` with one key
  used to reset ``DataDirectory`` and every other key); unknown keys are still 422;
* a hand edit saved slowly in place (truncate, then write a chunk at a time) while the API
  writes and the processor reloads: no read ever sees half a file, no section is ever lost;
* a write whose file was saved by someone else between its read and its rename applies its
  change again to the new text;
* size limits: a 2 MB camera name is refused, and the file stays small enough to be sent back
  with ``PUT /config``;
* one user holds at most half the camera probe slots and half the live stream slots (429
  with Retry-After), so other users still get theirs.
"""

from __future__ import annotations

import configparser
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.routers.entities import PROBE_LIMIT, Slots, Snapshot, edit_file
from libs.config import ConfigChange, load_config
from libs.config.io import MAX_CONFIG_BYTES, QUIET_S, ConfigBusy
from libs.config.models import LookoutConfig
from tests.test_api_cameras import Server, write_real_preview
from tests.test_api_config import Api, make_api
from tests.test_live_http import SilentCamera


@pytest.fixture
def api(x86_config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from make_api(x86_config, monkeypatch)


def raw_sections(text: str) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return {s: dict(parser.items(s)) for s in parser.sections()}


# ---------------------------------------------------------------------------------------
# Section writes keep the keys they do not send
# ---------------------------------------------------------------------------------------

ONE_KEY = [
    ("/app", "App", {"HasBeenConfigured": True}),
    ("/api", "API", {"TokenExpireMinutes": 90}),
    ("/detector", "Detector", {"MinScore": 0.4}),
    ("/tracker", "Tracker", {"MaxLost": 7}),
    ("/source_post_processors/social_distance", "SourcePostProcessor_1", {"DistThreshold": 170}),
    ("/source_loggers/video_logger", "SourceLogger_0", {"Enabled": False}),
    ("/area_loggers/file_system_logger", "AreaLogger_0", {"Enabled": False}),
    ("/periodic_tasks/metrics", "PeriodicTask_0", {"LiveInterval": 20}),
    ("/cameras/pets-view1", "Source_0", {"OccupancyThreshold": 11}),
    ("/areas/campus", "Area_0", {"OccupancyThreshold": 12}),
]


@pytest.mark.parametrize("url, section, body", ONE_KEY, ids=[u for u, _, _ in ONE_KEY])
def test_a_section_put_keeps_every_key_it_does_not_send(api: Api, url: str, section: str,
                                                        body: dict[str, Any]) -> None:
    before = api.sections()
    assert len(before[section]) >= 2
    r = api.put(url, body)
    assert r.status_code == 200, r.text
    after = api.sections()
    (key,) = body
    expected = {**before[section], key: api.sections()[section][key]}
    assert after[section] == expected  # every other key kept, in the file
    assert {s: v for s, v in after.items() if s != section} == {
        s: v for s, v in before.items() if s != section}
    assert after[section][key].lower() == str(body[key]).lower()


def test_put_app_with_one_key_keeps_data_directory(api: Api) -> None:
    data_dir = load_config(api.path).data_dir
    r = api.put("/app", {"HasBeenConfigured": True})
    assert r.status_code == 200, r.text
    assert r.json()["values"]["DataDirectory"] == api.sections()["App"]["DataDirectory"]
    assert load_config(api.path).data_dir == data_dir
    assert api.put("/app", {"Nonsense": 1}).status_code == 422  # unknown keys still refused
    r = api.put("/app", {"MaxProcesses": 2, "LogPerformanceMetricsEvery": None})
    assert r.status_code == 200, r.text
    raw = api.sections()["App"]
    assert raw["MaxProcesses"] == "2" and "LogPerformanceMetricsEvery" not in raw
    assert raw["DataDirectory"] and raw["HasBeenConfigured"] == "True"


def test_core_and_classifier_created_then_merged(api: Api) -> None:
    assert api.put("/core", {"QueuePort": 8011}).status_code == 200
    assert api.put("/core", {"Host": "127.0.0.2"}).status_code == 200
    assert api.sections()["CORE"] == {"QueuePort": "8011", "Host": "127.0.0.2"}
    assert api.put("/classifier", {"MinScore": 0.7, "MinImageSize": 8}).status_code == 200
    assert api.put("/classifier", {"MinScore": 0.6}).status_code == 200
    assert api.sections()["Classifier"] == {"MinScore": "0.6", "MinImageSize": "8"}


# ---------------------------------------------------------------------------------------
# A hand edit saved slowly, in place, while the API writes and the processor reloads
# ---------------------------------------------------------------------------------------


def slow_save(path: Path, text: str, chunk: int = 400, pause: float = 0.03) -> None:
    """Save ``text`` like a slow editor: truncate the file, then write a chunk at a time."""
    with open(path, "w", encoding="utf-8") as fh:  # truncates in place: same inode
        for i in range(0, len(text), chunk):
            fh.write(text[i:i + chunk])
            fh.flush()
            time.sleep(pause)


def test_slow_hand_edits_never_lose_sections(api: Api) -> None:
    path = api.path
    sections = set(api.sections())
    assert len(sections) >= 10
    assert len(api.text()) > 2500  # at least 7 chunks: the save takes > 0.2 s
    failures: list[str] = []
    stop = threading.Event()
    saves = [0]

    def editor() -> None:
        deadline = time.monotonic() + 12
        n = 0
        while n < 6 and time.monotonic() < deadline:
            text = path.read_text(encoding="utf-8")  # what the person opens
            missing = sections - set(raw_sections(text))
            if missing:
                failures.append(f"editor opened a file without {sorted(missing)}")
            n += 1
            slow_save(path, text.rstrip("\n") + f"\n# hand edit {n}\n")
            saves[0] = n
            time.sleep(0.45 + 0.1 * (n % 3))  # the person reads before the next save
        stop.set()

    loads = {"ok": 0, "busy": 0}

    def counts_of(config: LookoutConfig) -> tuple[int, ...]:
        return (len(config.sources), len(config.areas), len(config.source_loggers),
                len(config.periodic_tasks))

    whole = counts_of(load_config(path, check_files=False))  # the file before any edit

    def processor() -> None:  # the processor's reload reads the same file
        while not stop.is_set():
            try:
                config = load_config(path, check_files=False)
            except ConfigBusy:
                loads["busy"] += 1
                continue
            loads["ok"] += 1
            counts = counts_of(config)
            if counts != whole:
                failures.append(f"processor loaded a partial file: {counts}")

    threads = [threading.Thread(target=editor), threading.Thread(target=processor)]
    for t in threads:
        t.start()
    statuses: dict[int, int] = {}
    writes = 0
    try:
        while not stop.is_set() and writes < 200:
            writes += 1
            r = api.put("/app", {"LogPerformanceMetricsEvery": 100 + writes})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            r = api.put("/cameras/pets-view1", {"OccupancyThreshold": writes % 50})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    print(f"hand saves {saves[0]}, API writes {statuses}, processor loads {loads}")
    assert not failures, failures[:5]
    assert set(statuses) <= {200, 409}, statuses  # written whole, or refused while saving
    assert statuses.get(200, 0) >= 4, statuses
    assert saves[0] >= 4 and loads["ok"] >= 4, (saves, loads)
    final = raw_sections(path.read_text(encoding="utf-8"))
    assert set(final) == sections
    assert load_config(path).sources[0].id == "pets-view1"


def test_a_write_applies_again_on_a_file_saved_meanwhile(api: Api) -> None:
    """Someone saves the file between the write's read and its rename: the rename does not
    happen, the change is made again on what they saved, and both survive."""
    calls = [0]

    def build(snap: Snapshot) -> tuple[list[ConfigChange], None]:
        calls[0] += 1
        if calls[0] == 1:  # a hand save lands while this write is being made
            text = snap.text.replace("[Area_0]", "# saved by hand\n[Area_0]")
            api.path.write_text(text.replace("OccupancyThreshold = 8",
                                             "OccupancyThreshold = 9"), encoding="utf-8")
        return [ConfigChange("App", {"HasBeenConfigured": "True"})], None

    _, changed = edit_file(api.path, build)
    assert changed and calls[0] == 2
    text = api.text()
    assert "# saved by hand\n[Area_0]" in text
    raw = api.sections()
    assert raw["App"]["HasBeenConfigured"] == "True"
    assert raw["Source_0"]["OccupancyThreshold"] == "9"


def test_a_file_that_keeps_changing_is_refused_not_half_read(tmp_path: Path) -> None:
    from libs.config.io import read_settled

    path = tmp_path / "c.ini"
    path.write_text("[App]\n")
    stop = threading.Event()

    def touch() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            path.write_text(f"[App]\n# {n}\n")
            time.sleep(QUIET_S / 4)

    t = threading.Thread(target=touch)
    t.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(ConfigBusy, match="being written"):
            read_settled(path, timeout_s=1.0)
        assert time.monotonic() - t0 < 2.0
    finally:
        stop.set()
        t.join(5)
    os.utime(path, (1, 1))  # left alone: read at once
    t0 = time.monotonic()
    assert read_settled(path)[0].startswith("[App]")
    assert time.monotonic() - t0 < QUIET_S


# ---------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------


def test_a_2mb_camera_name_is_refused_and_the_file_can_be_put_back(api: Api) -> None:
    before = api.text()
    r = api.post("/cameras", {"Name": "n" * 2_000_000, "VideoPath": "data/tud_campus"})
    assert r.status_code in (413, 422), r.status_code
    if r.status_code == 422:
        assert {p.get("key") for p in r.json()["detail"]} == {"Name"}
    assert api.text() == before
    assert api.put("/cameras/pets-view1", {"Name": "n" * 257}).status_code == 422
    assert api.put("/cameras/pets-view1", {"Name": "n" * 256}).status_code == 200
    assert api.put("/cameras/pets-view1", {"ROI": [[i, i % 7] for i in range(1100)]}
                   ).status_code == 422
    r = api.put("/app", {"DashboardURL": "h" * 70_000})
    assert {p.get("key") for p in r.json()["detail"]} == {"DashboardURL"}
    # fill the file with the largest values allowed, until the size limit refuses a write
    refused = None
    for i in range(40):
        r = api.post("/cameras", {"Id": f"big{i}", "VideoPath": "data/tud_campus",
                                  "Tags": ["t" * 60_000], "Emails": ["e" * 60_000]})
        if r.status_code != 201:
            refused = r
            break
    assert refused is not None and refused.status_code == 422, refused
    assert len(api.text().encode()) <= MAX_CONFIG_BYTES
    text = api.get("/config", params={"format": "ini"}).text
    r = api.client.put("/config", content=text.encode(),
                       headers={**api.admin, "Content-Type": "text/plain"})
    assert r.status_code == 200, r.text[:300]
    r = api.client.put("/config", content=b"#" * (MAX_CONFIG_BYTES + 1),
                       headers={**api.admin, "Content-Type": "text/plain"})
    assert r.status_code == 413


# ---------------------------------------------------------------------------------------
# Shared slots: one user gets at most half
# ---------------------------------------------------------------------------------------


def test_one_viewer_cannot_take_every_probe_slot(api: Api) -> None:
    """Real probes held by a camera that accepts and says nothing."""
    camera = SilentCamera()
    r = api.post("/cameras", {"Id": "mute",
                              "VideoPath": f"http://127.0.0.1:{camera.port}/v"})
    assert r.status_code == 201, r.text
    probes: Slots = api.app.state.camera_probes
    share = max(1, PROBE_LIMIT // 2)
    results: list[int] = []

    def viewer_image() -> None:
        results.append(api.client.get("/cameras/mute/image", headers=api.viewer).status_code)

    threads = [threading.Thread(target=viewer_image) for _ in range(share)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while probes.held_by("viewer") < share and time.monotonic() < deadline:
            time.sleep(0.02)
        assert probes.held_by("viewer") == share
        t0 = time.monotonic()
        r = api.client.get("/cameras/mute/image", headers=api.viewer)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        assert time.monotonic() - t0 < 2
        # the admin still gets a slot, and the clip opens: the silent camera's probes wait
        # on the processor's lock-free probe, not inside OpenCV's open
        t0 = time.monotonic()
        r = api.post("/cameras/check_stream", {"video_path": "data/pets09_s2l1/vtest.avi"})
        assert r.status_code == 200 and r.json()["ok"] is True, r.text
        assert time.monotonic() - t0 < 3
        for t in threads:
            t.join(30)
        assert sorted(results) == [502] * share, results  # "no answer ... within 3 s"
        deadline = time.monotonic() + 15
        while probes.used and time.monotonic() < deadline:
            time.sleep(0.05)
        assert probes.used == 0 and probes.held_by("viewer") == 0
    finally:
        camera.close()


def open_stream(port: int, token: str) -> tuple[socket.socket, bytes]:
    """A live stream on a raw socket: the socket and what came before the first JPEG's end
    (or the whole answer when it is a refusal)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(f"GET /cameras/pets-view1/stream HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: {token}\r\n\r\n".encode())
    received = b""
    while b"\xff\xd9" not in received and not received.startswith(b"HTTP/1.1 4"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        received += chunk
    if received.startswith(b"HTTP/1.1 4"):
        while b"\r\n\r\n" not in received:
            received += conn.recv(65536)
    return conn, received


def test_one_viewer_cannot_take_every_stream_slot(api: Api) -> None:
    """Real streams on a real server: a viewer holds half the slots at most."""
    write_real_preview(api)
    api.app.state.live_streams = streams = Slots(4)  # 2 per user
    viewer, admin = api.viewer["Authorization"], api.admin["Authorization"]
    with Server(api) as server:
        a, got_a = open_stream(server.port, viewer)
        b, got_b = open_stream(server.port, viewer)
        try:
            assert got_a.startswith(b"HTTP/1.1 200") and got_b.startswith(b"HTTP/1.1 200")
            assert streams.held_by("viewer") == 2
            c, got_c = open_stream(server.port, viewer)
            c.close()
            assert got_c.startswith(b"HTTP/1.1 429"), got_c[:200]
            assert b"retry-after: 10" in got_c.lower()
            d, got_d = open_stream(server.port, admin)  # others still get a stream
            d.close()
            assert got_d.startswith(b"HTTP/1.1 200")
        finally:
            a.close()
            b.close()
        deadline = time.monotonic() + 10
        while streams.used and time.monotonic() < deadline:
            time.sleep(0.05)
        assert streams.used == 0 and streams.held_by("viewer") == 0
        e, got_e = open_stream(server.port, viewer)  # slots given back when streams end
        e.close()
        assert got_e.startswith(b"HTTP/1.1 200")
