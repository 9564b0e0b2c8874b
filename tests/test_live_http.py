"""A live HTTP MJPEG camera (a real server on loopback) read through OpenCV: frames arrive,
the stream dies, the source reconnects when the camera comes back."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC

import cv2
import pytest

from processor.sources import LiveSource
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

    def start(self) -> None:
        jpegs, alive, interval = self.jpegs, self.alive, self.interval

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


def test_http_camera_drop_and_reconnect(camera: Camera) -> None:
    url = f"http://127.0.0.1:{camera.port}/stream.mjpg"
    src = LiveSource(url, UTC, "http-cam", backoff_initial=0.2, backoff_max=0.5)
    try:
        first = src.read(timeout=15)
        assert first is not None and first.image.shape == (480, 640, 3)
        wait_state(src, "connected", 5)
        camera.stop()
        wait_state(src, "disconnected", 15)
        assert src.read(timeout=0.3) is None or src.state != "connected"
        camera.start()
        wait_state(src, "connected", 20)
        again = src.read(timeout=10)
        assert again is not None and again.index > first.index
        assert src.reconnects >= 1
    finally:
        src.close()
