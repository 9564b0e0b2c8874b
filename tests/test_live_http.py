"""A live HTTP MJPEG camera (a real server on loopback) read through OpenCV: frames arrive,
the stream dies, the source reconnects when the camera comes back and says why meanwhile; a
camera that never answers does not hold up the others."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC

import cv2
import pytest

from processor.sources import LiveSource, probe_stream, redact
from tests.conftest import TUD

BOUNDARY = "lookoutframe"


def load_jpegs() -> list[bytes]:
    cap = cv2.VideoCapture(str(TUD / "tud_campus.mp4"))
    out = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        out.append(cv2.imencode(".jpg", image)[1].tobytes())
    cap.release()
    return out


class Camera:
    """An MJPEG-over-HTTP camera that can be switched off and on at the same port."""

    def __init__(self, port: int, jpegs: list[bytes], interval: float = 0.04) -> None:
        self.port = port
        self.jpegs = jpegs
        self.interval = interval
        self.server: http.server.ThreadingHTTPServer | None = None
        self.alive = threading.Event()
        self.paused = threading.Event()  # connections stay open, no frame is sent

    def start(self) -> None:
        jpegs, alive, interval, paused = self.jpegs, self.alive, self.interval, self.paused

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
                self.end_headers()
                i = 0
                try:
                    while alive.is_set():
                        if paused.is_set():
                            time.sleep(0.05)
                            continue
                        data = jpegs[i % len(jpegs)]
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n"
                        )
                        i += 1
                        time.sleep(interval)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.alive.set()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.alive.clear()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class SilentCamera:
    """A server that accepts connections and never answers (a hung camera)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def camera(shared) -> Iterator[Camera]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cam = Camera(port, load_jpegs())
    cam.start()
    try:
        yield cam
    finally:
        cam.stop()


def wait_state(src: LiveSource, state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while src.state != state and time.monotonic() < deadline:
        time.sleep(0.05)
    assert src.state == state


def wait_problem(src: LiveSource, state: str | None, timeout: float) -> float:
    """Seconds until ``src.problem()`` says ``state`` (``None``: no problem)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        problem = src.problem()
        if (problem and problem[0]) == state:
            return time.monotonic() - t0
        time.sleep(0.02)
    pytest.fail(f"not {state} within {timeout} s: {src.problem()}")


def test_http_camera_drop_and_reconnect(camera: Camera) -> None:
    url = f"http://127.0.0.1:{camera.port}/stream.mjpg"
    src = LiveSource(url, UTC, "http-cam")  # the shipped backoff (capped at 2 s)
    try:
        assert src.problem() == ("connecting", "opening the stream")
        first = src.read(timeout=15)
        assert first is not None and first.image.shape == (480, 640, 3)
        wait_state(src, "connected", 5)
        assert src.problem() is None
        camera.stop()
        assert wait_problem(src, "reconnecting", 1.0) < 1.0
        wait_state(src, "disconnected", 5)
        assert src.read(timeout=0.3) is None or src.state != "connected"
        time.sleep(6)  # long enough for an uncapped backoff to grow past 4 s
        problem = src.problem()
        assert problem is not None and problem[0] == "reconnecting"
        assert f"cannot connect to 127.0.0.1:{camera.port}" in problem[1]
        assert "refused" in problem[1].lower()
        camera.start()
        back = time.monotonic()
        again = src.read(timeout=10)
        took = time.monotonic() - back
        assert again is not None and again.index > first.index
        assert took < 3.0, f"return noticed after {took:.1f} s"
        assert src.problem() is None and src.reconnects >= 3
    finally:
        src.close()


def test_stalled_stream_is_reported_then_reconnected(camera: Camera) -> None:
    url = f"http://127.0.0.1:{camera.port}/stream.mjpg"
    src = LiveSource(url, UTC, "stalling-cam", read_timeout=3.0, open_timeout=2.0)
    try:
        assert src.read(timeout=15) is not None
        wait_problem(src, None, 5)
        camera.paused.set()  # the connection stays open, nothing comes
        took = wait_problem(src, "stalled", 4)
        assert 1.2 <= took <= 2.5, took
        problem = src.problem()
        assert problem is not None and problem[1].startswith("no frame for"), problem
        wait_problem(src, "reconnecting", 4)  # OpenCV's read timeout ends the connection
        camera.paused.clear()
        assert src.read(timeout=10) is not None
        wait_problem(src, None, 2)
    finally:
        src.close()


def test_silent_camera_does_not_hold_up_a_healthy_one(camera: Camera) -> None:
    """OpenCV opens FFmpeg captures under one lock: without the probe a camera that accepts
    and never answers held every other open of the process for 30 s."""
    silent = SilentCamera()
    dead = LiveSource(f"http://user:secret@127.0.0.1:{silent.port}/video", UTC, "silent-cam")
    healthy: LiveSource | None = None
    try:
        time.sleep(0.3)  # the silent camera's open is under way
        t0 = time.monotonic()
        healthy = LiveSource(f"http://127.0.0.1:{camera.port}/stream.mjpg", UTC, "healthy")
        assert healthy.read(timeout=15) is not None
        assert time.monotonic() - t0 < 2.0
        wait_problem(dead, "connecting", 1)
        deadline = time.monotonic() + 5
        while "no answer" not in (dead.problem() or ("", ""))[1]:
            assert time.monotonic() < deadline, dead.problem()
            time.sleep(0.05)
        state, reason = dead.problem() or ("", "")
        assert state == "connecting"
        assert reason.startswith(f"no answer from 127.0.0.1:{silent.port} within 3 s")
        assert "secret" not in reason
    finally:
        dead.close()
        if healthy is not None:
            healthy.close()
        silent.close()


def test_probe_reasons_and_redaction(camera: Camera) -> None:
    assert probe_stream(f"http://127.0.0.1:{camera.port}/stream.mjpg") is None
    refused = free_port()
    why = probe_stream(f"rtsp://127.0.0.1:{refused}/live")
    assert why is not None and why.startswith(f"cannot connect to 127.0.0.1:{refused}")

    class NotFound(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_error(404)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        why = probe_stream(f"http://admin:pw@127.0.0.1:{port}/nothing")
        assert why is not None and "404" in why and "pw" not in why
    finally:
        server.shutdown()
        server.server_close()
    assert redact("rtsp://admin:s3cret@10.0.0.5:554/h264") == \
        "rtsp://admin:***@10.0.0.5:554/h264"
    assert redact("http://cam.local/mjpg") == "http://cam.local/mjpg"
    assert redact(0) == "0"
