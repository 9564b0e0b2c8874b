"""Status that tells the truth about each camera, read from a real `lookout run` (processor,
worker process, API) fed by real HTTP MJPEG cameras on loopback.

* A stream dropped for :data:`OUTAGE` seconds shows ``reconnecting`` with a reason within 2 s
  and ``running`` again within 5 s of its return; the other camera of the same worker keeps
  its fps.
* A camera that never answers (accepts the connection, sends nothing) and one that refuses
  show ``connecting`` with the reason, fps 0, never ``running``; opening them does not hold
  up the healthy camera started after them in the same worker.
* A recording with a corrupt stretch reports its undecodable frames (``degraded`` while it
  happens, ``skipped_frames`` after) and keeps the true time of every later frame.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from tests.conftest import PETS
from tests.test_api_server import Client, configure, free_port, start, stop, wait_healthy
from tests.test_live_http import Camera, SilentCamera, load_jpegs

# s: the outage of the acceptance criterion (20 s); the 2 s and 5 s bounds are what is
# asserted.  A shorter one for a quick local run: LOOKOUT_OUTAGE_SECONDS=8 pytest ...
OUTAGE = float(os.environ.get("LOOKOUT_OUTAGE_SECONDS", "20"))
INTERVAL = 0.125  # s between frames of the test cameras (8 fps, well under what one core does)


def live_config(config: Path, cameras: dict[str, str]) -> None:
    """``config`` with its cameras replaced by ``cameras`` (id -> video path)."""
    text = config.read_text()
    head, rest = text.split("[Source_0]", 1)
    tail = rest[rest.index("\n[", 1):]
    blocks = "".join(f"[Source_{i}]\nId = {cid}\nName = {cid}\nVideoPath = {path}\n"
                     "CountingLines = x320: 320,0 320,480\n\n"
                     for i, (cid, path) in enumerate(cameras.items()))
    tail = tail.replace("Cameras = pets-view1", f"Cameras = {next(iter(cameras))}")
    config.write_text(head + blocks + tail.lstrip("\n"))


@pytest.fixture
def jpegs(shared: Path) -> list[bytes]:
    return load_jpegs()


@pytest.fixture
def cameras(jpegs: list[bytes]) -> Iterator[tuple[Camera, Camera]]:
    a, b = Camera(free_port(), jpegs, INTERVAL), Camera(free_port(), jpegs, INTERVAL)
    a.start()
    b.start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/stream.mjpg"


def poll(client: Client, until: object, timeout: float, every: float = 0.1) -> tuple[float, dict]:
    """Seconds until ``until(status)`` held, and that status; fails after ``timeout``."""
    t0 = time.monotonic()
    while True:
        st = client.json("GET", "/status")["cameras"]
        assert isinstance(st, dict)
        if until(st):  # type: ignore[operator]
            return time.monotonic() - t0, st
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"condition not met within {timeout} s; last status {st}")
        time.sleep(every)


def sample_fps(client: Client, cam: str, seconds: float) -> list[dict]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(client.json("GET", "/status")["cameras"])
        time.sleep(0.25)
    return [st[cam] for st in out]


@pytest.mark.slow
def test_drop_and_return_of_a_live_stream(x86_config: Path,
                                          cameras: tuple[Camera, Camera]) -> None:
    cam_a, cam_b = cameras
    silent = SilentCamera()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        refused = s.getsockname()[1]
    port = free_port()
    # The dead cameras come first: the worker starts them before the healthy ones.
    live_config(x86_config, {"cam-0-silent": url(silent.port), "cam-1-refused": url(refused),
                             "cam-a": url(cam_a.port), "cam-b": url(cam_b.port)})
    configure(x86_config, port)
    proc = start(x86_config)
    client = Client(f"http://127.0.0.1:{port}")
    try:
        wait_healthy(client, proc)
        client.login("admin1")
        t_up = time.monotonic()

        def both_running(st: dict) -> bool:
            return st["cam-a"]["status"] == "running" and st["cam-b"]["status"] == "running"

        waited, st = poll(client, both_running, 30)
        # Old behaviour: FFmpeg's open of the silent camera held every open of the worker
        # for 30 s.  The healthy cameras are up long before the probe of the dead one ends.
        assert waited < 10, f"healthy cameras took {waited:.1f} s behind a dead one"
        for dead in ("cam-0-silent", "cam-1-refused"):
            assert st[dead]["status"] == "connecting", st[dead]
            assert st[dead]["fps"] == 0 and st[dead]["frames"] == 0
        # The silent camera's probe takes up to 3 s: its reason is there within 5 s.
        poll(client, lambda st: "no answer" in (st["cam-0-silent"]["reason"] or ""), 5)
        st = client.json("GET", "/status")["cameras"]
        assert "refused" in st["cam-1-refused"]["reason"].lower(), st["cam-1-refused"]
        assert st["cam-a"]["reason"] is None and st["cam-a"]["fps"] > 0

        before = sample_fps(client, "cam-b", 3.0)
        fps_before = statistics.mean(s["fps"] for s in before)
        assert fps_before > 0.6 / INTERVAL, before  # the camera's rate, not a trickle

        dropped = time.monotonic()
        cam_a.stop()  # closes the stream, then the listening socket (refused from then on)
        # The worker's own words ("stream lost ...", then the HTTP error), not the
        # supervisor's stand-in shown until its event is read.
        _, st = poll(client, lambda st: st["cam-a"]["status"] == "reconnecting"
                     and st["cam-a"]["reason"] not in (None, "source lost"), 2.0, every=0.05)
        took = time.monotonic() - dropped
        print(f"reconnecting after {took:.2f} s: {st['cam-a']['reason']}")
        assert took <= 2.0
        assert st["cam-a"]["fps"] == 0
        during = sample_fps(client, "cam-b", OUTAGE - (time.monotonic() - dropped) - 0.5)
        st = client.json("GET", "/status")["cameras"]
        assert st["cam-a"]["status"] == "reconnecting" and st["cam-a"]["fps"] == 0, st["cam-a"]
        print(f"cam-a during the outage: {st['cam-a']['status']}: {st['cam-a']['reason']}")
        assert "127.0.0.1" in st["cam-a"]["reason"], st["cam-a"]  # why: the HTTP error
        assert all(s["status"] == "running" for s in during), during
        fps_during = statistics.mean(s["fps"] for s in during)
        print(f"cam-b fps before {fps_before:.2f}, during the outage {fps_during:.2f}")
        assert abs(fps_during - fps_before) <= 0.15 * fps_before

        while time.monotonic() - dropped < OUTAGE:
            time.sleep(0.05)
        returned = time.monotonic()
        cam_a.start()
        _, st = poll(client, lambda st: st["cam-a"]["status"] == "running", 5.0, every=0.05)
        back = time.monotonic() - returned
        assert back <= 5.0
        print(f"running again {back:.2f} s after the return")
        frames = st["cam-a"]["frames"]
        _, st = poll(client, lambda st: st["cam-a"]["frames"] > frames + 5, 5.0)
        assert st["cam-a"]["reason"] is None and st["cam-a"]["last_error"]
        assert st["cam-0-silent"]["status"] == "connecting"  # still, never "running"
        assert time.monotonic() - t_up < 30 + OUTAGE
    finally:
        stop(proc)
        silent.close()


def corrupt_clip(path: Path, frames: int = 200, fps: float = 10.0) -> None:
    """The first ``frames`` of the PETS clip as MJPEG in AVI, with 30 % of its bytes (a
    stretch from 20 % to 50 %) zeroed, as a damaged disk or a torn copy leaves it."""
    cap = cv2.VideoCapture(str(PETS / "vtest.avi"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (768, 576))
    for _ in range(frames):
        ok, image = cap.read()
        assert ok
        writer.write(image)
    writer.release()
    cap.release()
    data = bytearray(path.read_bytes())
    a, b = int(len(data) * 0.2), int(len(data) * 0.5)
    data[a:b] = bytes(b - a)
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_corrupt_recording_reports_skipped_frames_and_true_times(x86_config: Path) -> None:
    clip = x86_config.parent / "data" / "videos" / "damaged.avi"  # inside DataDirectory
    clip.parent.mkdir(parents=True)
    corrupt_clip(clip)
    port = free_port()
    text = x86_config.read_text()
    text = text.replace("VideoPath = data/pets09_s2l1/vtest.avi", f"VideoPath = {clip}")
    text = text.replace("FrameRate = 7\n", "")
    x86_config.write_text(text)
    configure(x86_config, port)
    proc = start(x86_config)
    client = Client(f"http://127.0.0.1:{port}")
    try:
        wait_healthy(client, proc)
        client.login("admin1")
        _, st = poll(client, lambda st: st["pets-view1"]["status"] in ("degraded", "finished"),
                     60, every=0.05)
        cam = st["pets-view1"]
        assert cam["status"] == "degraded", cam  # seen while it happens, not only after
        assert "undecodable" in cam["reason"] and cam["skipped_frames"] == 60, cam
        _, st = poll(client, lambda st: st["pets-view1"]["status"] == "finished", 60)
        cam = st["pets-view1"]
    finally:
        out = stop(proc)
    assert cam["skipped_frames"] == 60 and cam["frames"] == 140, cam
    assert cam["next_index"] == 200
    # The last frame is stamped 19.9 s in (199 / 10 fps), not 13.9 s as counting decoded
    # frames would say.
    assert cam["last_frame_time"] == "2009-03-01T10:00:19.900000+00:00", cam
    assert "60 undecodable frame(s)" in cam["last_error"]
    assert "60 frame(s) could not be decoded" in out
