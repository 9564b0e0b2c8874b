"""``/cameras`` over HTTP: CRUD with stable ids, calibration, ROI, lines, frames from the real
clips, the preview written by the real video_logger, the MJPEG stream, and path traversal."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import uvicorn

from api.routers.cameras import BOUNDARY, GRAB_TIMEOUT_S
from libs.config import load_config
from libs.frame import Detections, Frame
from libs.loggers.video_logger import VideoLogger, preview_path
from tests.conftest import PETS
from tests.test_api_config import Api, keys_named, make_api
from tests.test_live_http import SilentCamera

PETS_IMAGE = [[100, 220], [680, 190], [650, 430], [150, 440]]
PETS_FLOOR = [[-7.207, 3.425], [1.894, -9.392], [-13.597, -14.155], [-17.316, -7.817]]
TUD = "data/tud_campus/tud_campus.mp4"


@pytest.fixture
def api(x86_config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from make_api(x86_config, monkeypatch)


def section_text(text: str, name: str) -> str:
    """The lines of one section, header included, up to the next header."""
    start = text.index(f"[{name}]\n")
    end = text.find("\n[", start + 1)
    return text[start: end if end >= 0 else len(text)]


def write_real_preview(api: Api, camera_id: str = "pets-view1", index: int = 0) -> Path:
    """Run the real video_logger on a frame of vtest.avi, as the processor does."""
    config = load_config(api.path)
    src = config.source(camera_id)
    section = next(s for s in config.source_loggers if s.name == "video_logger")
    cap = cv2.VideoCapture(str(PETS / "vtest.avi"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = cap.read()
    cap.release()
    assert ok
    det = Detections(boxes=np.array([[100, 200, 140, 320], [300, 180, 340, 300]]),
                     scores=np.array([0.9, 0.8]), track_ids=np.array([1, 2]))
    logger = VideoLogger(section, src, config)
    logger.log(Frame(camera_id, index, datetime(2009, 3, 1, 10, tzinfo=UTC), image, det))
    assert logger.flush(10)
    logger.close()
    path = preview_path(config, camera_id)
    assert path.is_file()
    return path


# ---------------------------------------------------------------------------------------
# CRUD
# ---------------------------------------------------------------------------------------


def test_create_get_update_delete_round_trip(api: Api) -> None:
    r = api.post("/cameras", {"Name": "TUD Campus", "VideoPath": TUD, "Tags": ["a", "b"],
                              "occupancy_threshold": 4})
    assert r.status_code == 201, r.text
    cam = r.json()
    assert cam["id"] == "tud-campus"
    assert cam["section"] == "Source_tud-campus"
    assert (cam["name"], cam["tags"], cam["occupancy_threshold"]) == ("TUD Campus", ["a", "b"], 4)
    assert cam["reload"] == {"started": [], "restarted": [], "stopped": []}
    assert api.sections()["Source_tud-campus"] == {
        "Id": "tud-campus", "Name": "TUD Campus", "VideoPath": TUD, "Tags": "a,b",
        "OccupancyThreshold": "4"}

    listed = api.client.get("/cameras", headers=api.viewer).json()
    assert [c["id"] for c in listed] == ["pets-view1", "tud-campus"]
    assert listed[0]["calibration_image_points"][0] == [100.0, 220.0]
    assert listed[0]["status"] is None  # no processor in this process

    r = api.put("/cameras/tud-campus", {"Name": "Renamed", "FrameRate": 25, "section": "x"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["name"], got["frame_rate"], got["tags"]) == ("Renamed", 25, ["a", "b"])
    got = api.client.get("/cameras/tud-campus", headers=api.viewer).json()
    assert got["name"] == "Renamed"

    r = api.delete("/cameras/tud-campus")
    assert r.status_code == 200
    assert r.json()["section"] == "Source_tud-campus"
    assert api.get("/cameras/tud-campus").status_code == 404
    assert "Source_tud-campus" not in api.sections()


def test_given_ids_and_generated_ids_are_unique(api: Api) -> None:
    r = api.post("/cameras", {"Id": "door-1", "VideoPath": TUD})
    assert r.status_code == 201, r.text
    assert api.post("/cameras", {"Id": "door-1", "VideoPath": TUD}).status_code == 409
    assert api.post("/cameras", {"Id": "pets-view1", "VideoPath": TUD}).status_code == 409
    ids = [api.post("/cameras", {"Name": "Door", "VideoPath": TUD}).json()["id"]
           for _ in range(3)]
    assert ids == ["door", "door-2", "door-3"]
    assert api.post("/cameras", {"VideoPath": TUD}).json()["id"] == "camera"
    assert api.post("/cameras", {"Name": "!!!", "VideoPath": TUD}).json()["id"] == "camera-2"
    # A section named after an id that is free but whose section name is taken
    text = api.text() + "\n[Source_gate]\nId = other\nVideoPath = " + TUD + "\n"
    api.client.put("/config", content=text.encode(), headers={**api.admin,
                                                              "Content-Type": "text/plain"})
    r = api.post("/cameras", {"Id": "gate", "VideoPath": TUD})
    assert r.json()["section"] == "Source_gate_2"


def test_delete_never_renumbers_other_cameras(api: Api) -> None:
    for name in ("A", "B", "C"):
        assert api.post("/cameras", {"Name": name, "VideoPath": TUD}).status_code == 201
    before = api.text()
    assert api.delete("/cameras/b").status_code == 200
    after = api.text()
    for section in ("Source_0", "Source_a", "Source_c", "Area_0"):
        assert section_text(after, section) == section_text(before, section)
    cams = {c["id"]: c["section"] for c in api.get("/cameras").json()}
    assert cams == {"pets-view1": "Source_0", "a": "Source_a", "c": "Source_c"}
    # a camera added afterwards does not take the deleted one's place in anyone's identity
    assert api.post("/cameras", {"Name": "B", "VideoPath": TUD}).json()["section"] == "Source_b"


def test_delete_refused_while_an_area_uses_the_camera(api: Api) -> None:
    before = api.text()
    r = api.delete("/cameras/pets-view1")
    assert r.status_code == 409
    assert "campus" in r.json()["detail"]
    assert api.text() == before
    assert api.delete("/cameras/nobody").status_code == 404


@pytest.mark.parametrize("body, key", [
    ({"Name": "x"}, "VideoPath"),
    ({"VideoPath": "data/no_such_clip.mp4"}, "VideoPath"),
    ({"VideoPath": TUD, "OccupancyThreshold": -1}, "OccupancyThreshold"),
    ({"VideoPath": TUD, "DistMethod": "Magic"}, "DistMethod"),
    ({"VideoPath": TUD, "ROI": "1,2; 3,4"}, "ROI"),
    ({"VideoPath": TUD, "FrameRate": 0}, "FrameRate"),
    ({"VideoPath": TUD, "StartTime": "yesterday"}, "StartTime"),
    ({"VideoPath": TUD, "DailyReportTime": "25:00"}, "DailyReportTime"),
    ({"VideoPath": TUD, "CountingLines": "door 1,2 3,4"}, "CountingLines"),
    ({"VideoPath": TUD, "Id": "bad id"}, "Id"),
    ({"VideoPath": TUD, "Id": "../../etc"}, "Id"),
    ({"VideoPath": TUD, "Colour": "red"}, "Colour"),
])
def test_create_names_the_bad_field(api: Api, body: dict[str, Any], key: str) -> None:
    before = api.text()
    r = api.post("/cameras", body)
    assert key in keys_named(r), r.text
    assert api.text() == before


def test_video_paths_accepted_like_start_up(api: Api) -> None:
    for path in ("rtsp://127.0.0.1:9/stream", "http://cam.local/mjpg", "/dev/video0", "0",
                 "data/pets09_s2l1"):
        r = api.post("/cameras", {"VideoPath": path})
        assert r.status_code == 201, (path, r.text)


def test_update_cannot_change_id_and_names_bad_fields(api: Api) -> None:
    before = api.text()
    assert keys_named(api.put("/cameras/pets-view1", {"Id": "other"})) == {"Id"}
    assert keys_named(api.put("/cameras/pets-view1", {"VideoPath": "nope.avi"})) == {"VideoPath"}
    assert keys_named(api.put("/cameras/pets-view1", {"Enabled": "maybe"})) == {"Enabled"}
    r = api.put("/cameras/pets-view1", {"CalibrationImagePoints": "1,2; 3,4; 5,6; 7,8"})
    assert r.status_code == 422
    assert api.put("/cameras/nobody", {"Name": "x"}).status_code == 404
    assert api.put("/cameras/pets-view1", ["a"]).status_code == 422
    assert api.text() == before
    assert api.put("/cameras/pets-view1", {"Id": "pets-view1", "Name": "same"}).status_code == 200


def test_comments_kept_after_camera_writes(api: Api) -> None:
    assert api.put("/cameras/pets-view1", {"Name": "New name", "OccupancyThreshold": 9,
                                           "ROI": [[0, 100], [768, 100], [768, 576]]}
                   ).status_code == 200
    text = api.text()
    for comment in ("# The PETS 2009 S2.L1 sample (OpenCV's vtest.avi), from ../shared.",
                    "# The container says 10 fps but the clip was captured at 7 fps.",
                    "# Four floor points clicked in the image, and where they are on the "
                    "ground (metres).",
                    "# is outside the area the PETS ground truth annotates."):
        assert comment in text
    raw = api.sections()["Source_0"]
    assert (raw["Name"], raw["OccupancyThreshold"], raw["ROI"]) == (
        "New name", "9", "0,100; 768,100; 768,576")


def test_enable_disable_and_live_feed_are_persisted(api: Api) -> None:
    # the only camera with CountingLines may stop (line_crossing counts disabled ones too)
    r = api.put("/cameras/pets-view1/disable")
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert api.put("/cameras/pets-view1/enable").json()["enabled"] is True
    assert api.post("/cameras", {"Id": "tud", "VideoPath": TUD}).status_code == 201
    r = api.put("/cameras/tud/disable")
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert api.sections()["Source_tud"]["Enabled"] == "False"
    assert api.put("/cameras/tud/enable").json()["enabled"] is True
    assert api.sections()["Source_tud"]["Enabled"] == "True"
    r = api.put("/cameras/pets-view1/live_feed", {"enabled": False})
    assert r.json()["live_feed_enabled"] is False
    assert api.sections()["Source_0"]["LiveFeedEnabled"] == "False"
    for url in ("snapshot", "stream", "image"):
        r = api.client.get(f"/cameras/pets-view1/{url}", headers=api.viewer)
        assert r.status_code == 403, url
    assert api.put("/cameras/pets-view1/live_feed", {"enabled": "perhaps"}).status_code == 422


# ---------------------------------------------------------------------------------------
# Calibration, ROI, lines
# ---------------------------------------------------------------------------------------


def test_calibration_round_trip(api: Api) -> None:
    r = api.client.get("/cameras/pets-view1/calibration", headers=api.viewer)
    assert r.status_code == 200, r.text
    assert r.json()["reprojection_error_m"] < 1e-6  # four points: exact
    image = [*PETS_IMAGE, [400, 300]]
    h = np.array(r.json()["homography"])
    p = h @ np.array([400, 300, 1.0])
    floor = [*PETS_FLOOR, [p[0] / p[2] + 0.5, p[1] / p[2]]]  # half a metre off
    r = api.put("/cameras/pets-view1/calibration", {"image_points": image,
                                                    "floor_points_m": floor})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0.05 < body["reprojection_error_m"] < 0.5
    assert 0.2 < body["max_error_m"] < 0.5
    assert body["image_points"][4] == [400.0, 300.0]
    raw = api.sections()["Source_0"]
    assert raw["CalibrationImagePoints"] == "100,220; 680,190; 650,430; 150,440; 400,300"
    again = api.get("/cameras/pets-view1/calibration").json()
    assert again["reprojection_error_m"] == pytest.approx(body["reprojection_error_m"])


@pytest.mark.parametrize("image, floor, key, words", [
    ([[0, 0], [100, 100], [200, 200], [300, 300]], [[0, 0], [1, 0], [1, 1], [0, 1]],
     "CalibrationImagePoints", "one line"),
    ([[0, 0], [0, 0], [200, 10], [10, 200]], [[0, 0], [1, 0], [1, 1], [0, 1]],
     "CalibrationImagePoints", "same point"),
    (PETS_IMAGE, [[0, 0], [1, 0], [2, 0], [3, 0]], "CalibrationFloorPoints", "one line"),
    (PETS_IMAGE, PETS_FLOOR[::-1][:2] + PETS_FLOOR[:2], "CalibrationImagePoints", "order"),
    ([*PETS_IMAGE, [1, 1]], PETS_FLOOR, "CalibrationImagePoints", "5 points"),
])
def test_degenerate_calibration_refused_with_reason(api: Api, image: Any, floor: Any,
                                                   key: str, words: str) -> None:
    before = api.text()
    r = api.put("/cameras/pets-view1/calibration", {"image_points": image,
                                                    "floor_points_m": floor})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["key"] == key
    assert words in detail["msg"]
    assert api.text() == before


def test_calibration_input_shapes_are_422(api: Api) -> None:
    before = api.text()
    for body in ({"image_points": PETS_IMAGE[:3], "floor_points_m": PETS_FLOOR[:3]},
                 {"image_points": PETS_IMAGE},
                 {"image_points": [[1, "x"]] * 4, "floor_points_m": PETS_FLOOR},
                 {"image_points": [[1e300, 1]] * 4, "floor_points_m": PETS_FLOOR}):
        assert api.put("/cameras/pets-view1/calibration", body).status_code == 422
    r = api.client.put("/cameras/pets-view1/calibration", headers={**api.admin, "Content-Type":
                       "application/json"}, content=b'{"image_points": [[NaN, 1], [1, 2], '
                       b'[3, 4], [5, 6]], "floor_points_m": [[0, 0], [1, 0], [1, 1], [0, 1]]}')
    assert r.status_code == 422
    assert api.text() == before
    # without calibration, and removing it while CalibratedDistance needs it
    assert keys_named(api.delete("/cameras/pets-view1/calibration")) == {
        "CalibrationImagePoints"}
    assert api.put("/cameras/pets-view1", {"DistMethod": ""}).status_code == 200
    assert api.delete("/cameras/pets-view1/calibration").status_code == 200
    assert api.get("/cameras/pets-view1/calibration").status_code == 404


def test_roi_put_get_delete(api: Api) -> None:
    r = api.put("/cameras/pets-view1/roi", {"points": [[0, 0], [100, 0], [100, 50.5]]})
    assert r.status_code == 200, r.text
    assert api.sections()["Source_0"]["ROI"] == "0,0; 100,0; 100,50.5"
    got = api.client.get("/cameras/pets-view1/roi", headers=api.viewer).json()
    assert got["points"] == [[0, 0], [100, 0], [100, 50.5]]
    assert api.put("/cameras/pets-view1/roi", {"points": [[0, 0], [1, 1]]}).status_code == 422
    assert api.delete("/cameras/pets-view1/roi").json()["points"] == []
    assert api.sections()["Source_0"]["ROI"] == ""


def test_lines_put_get(api: Api) -> None:
    r = api.client.get("/cameras/pets-view1/lines", headers=api.viewer)
    assert r.json()["lines"] == [{"name": "x384", "start": [384, 0], "end": [384, 576]}]
    lines = [{"name": "door", "start": [10, 20], "end": [30, 40]},
             {"name": "exit-2", "start": [0, 0], "end": [0, 100]}]
    r = api.put("/cameras/pets-view1/lines", {"lines": lines})
    assert r.status_code == 200, r.text
    assert r.json()["lines"] == lines
    assert api.sections()["Source_0"]["CountingLines"] == "door: 10,20 30,40; exit-2: 0,0 0,100"
    before = api.text()
    for bad in ([{**lines[0]}, {**lines[0]}],
                [{"name": "zero", "start": [1, 1], "end": [1, 1]}],
                [{"name": "has space", "start": [0, 0], "end": [1, 1]}],
                [{"name": "a:b; c", "start": [0, 0], "end": [1, 1]}]):
        r = api.put("/cameras/pets-view1/lines", {"lines": bad})
        assert r.status_code == 422, r.text
    assert api.text() == before
    # line_crossing needs some camera with lines
    assert keys_named(api.put("/cameras/pets-view1/lines", {"lines": []})) == {"Name"}
    assert api.put("/source_post_processors/line_crossing", {"Enabled": False}).status_code == 200
    assert api.put("/cameras/pets-view1/lines", {"lines": []}).json()["lines"] == []
    assert api.sections()["Source_0"]["CountingLines"] == ""


# ---------------------------------------------------------------------------------------
# Frames, preview, stream
# ---------------------------------------------------------------------------------------


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_camera_image_is_a_frame_of_the_clip(api: Api) -> None:
    r = api.client.get("/cameras/pets-view1/image", headers=api.viewer)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    image = decode(r.content)
    assert image.shape == (576, 768, 3)
    cap = cv2.VideoCapture(str(PETS / "vtest.avi"))
    ok, first = cap.read()
    cap.release()
    assert ok and float(np.abs(image.astype(int) - first.astype(int)).mean()) < 4
    r = api.get("/cameras/pets-view1/calibration_image")
    assert decode(r.content).shape == (576, 768, 3)
    assert api.client.get("/cameras/pets-view1/calibration_image",
                          headers=api.viewer).status_code == 403
    api.post("/cameras", {"Id": "folder", "VideoPath": "data/tud_campus"})
    assert decode(api.get("/cameras/folder/image").content).shape[2] == 3


def test_snapshot_404_then_the_real_preview(api: Api) -> None:
    r = api.client.get("/cameras/pets-view1/snapshot", headers=api.viewer)
    assert r.status_code == 404
    assert "no preview of camera pets-view1 yet" in r.json()["detail"]
    path = write_real_preview(api)
    r = api.client.get("/cameras/pets-view1/snapshot", headers=api.viewer)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert r.content == path.read_bytes()
    assert decode(r.content).shape == (576, 768, 3)
    assert api.get("/cameras/nobody/snapshot").status_code == 404


def test_snapshot_says_when_video_logger_is_off(api: Api) -> None:
    assert api.put("/source_loggers/video_logger", {"Enabled": False}).status_code == 200
    r = api.get("/cameras/pets-view1/snapshot")
    assert r.status_code == 404
    assert "video_logger" in r.json()["detail"] and "not enabled" in r.json()["detail"]


def read_parts(chunks: Iterator[bytes], count: int) -> list[bytes]:
    buf = b""
    parts: list[bytes] = []
    marker = f"--{BOUNDARY}\r\n".encode()
    for chunk in chunks:
        buf += chunk
        while True:
            start = buf.find(marker)
            head_end = buf.find(b"\r\n\r\n", start)
            if start < 0 or head_end < 0:
                break
            headers = buf[start + len(marker): head_end].decode()
            assert "Content-Type: image/jpeg" in headers
            length = int(headers.split("Content-Length: ")[1].split("\r\n")[0])
            body_start = head_end + 4
            if len(buf) < body_start + length + 2:
                break
            parts.append(buf[body_start: body_start + length])
            buf = buf[body_start + length + 2:]
        if len(parts) >= count:
            return parts
    return parts


def test_stream_sends_each_new_preview(api: Api) -> None:
    path = write_real_preview(api, index=0)
    first = path.read_bytes()
    with api.client.stream("GET", "/cameras/pets-view1/stream", headers=api.viewer,
                           params={"max_fps": 20}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        chunks = r.iter_bytes()
        (part,) = read_parts(chunks, 1)
        assert part == first
        time.sleep(0.05)
        write_real_preview(api, index=50)
        (part,) = read_parts(chunks, 1)
        assert part == path.read_bytes() != first
        assert decode(part).shape == (576, 768, 3)


class Server:
    """The app on a real uvicorn server on a free loopback port."""

    def __init__(self, api: Api) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        config = uvicorn.Config(api.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def test_stream_ends_when_the_client_disconnects(api: Api) -> None:
    write_real_preview(api)
    streams = api.app.state.live_streams
    with Server(api) as server:
        token = api.viewer["Authorization"]
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(f"GET /cameras/pets-view1/stream HTTP/1.1\r\nHost: x\r\n"
                         f"Authorization: {token}\r\n\r\n".encode())
            received = b""
            while b"\xff\xd9" not in received:  # the end of the first JPEG
                received += conn.recv(65536)
            assert received.startswith(b"HTTP/1.1 200")
            assert streams.used == 1
        deadline = time.monotonic() + 10
        while streams.used and time.monotonic() < deadline:
            time.sleep(0.05)
        assert streams.used == 0


def test_stream_stops_when_live_feed_is_disabled(api: Api) -> None:
    write_real_preview(api)
    with api.client.stream("GET", "/cameras/pets-view1/stream", headers=api.viewer) as r:
        chunks = r.iter_bytes()
        assert len(read_parts(chunks, 1)) == 1
        assert api.put("/cameras/pets-view1/live_feed", {"enabled": False}).status_code == 200
        t0 = time.monotonic()
        for _ in chunks:  # the server ends the stream by itself
            pass
        assert time.monotonic() - t0 < 10
    assert api.app.state.live_streams.used == 0


# ---------------------------------------------------------------------------------------
# check_stream
# ---------------------------------------------------------------------------------------


def test_check_stream_reads_a_real_clip(api: Api) -> None:
    r = api.post("/cameras/check_stream", {"video_path": "data/pets09_s2l1/vtest.avi"})
    assert r.json() == {"ok": True, "width": 768, "height": 576, "fps": 10.0, "error": None}
    r = api.post("/cameras/check_stream", {"video_path": "data/tud_campus"})
    assert r.json()["ok"] is True
    r = api.post("/cameras/check_stream", {"video_path": str(PETS / "vtest.avi")})
    assert r.json()["ok"] is True


@pytest.mark.parametrize("video_path", [
    "data/no_such.avi", "../../../../etc/passwd", "/etc/passwd", "/etc/hostname",
    "file:///etc/passwd", "/dev/sda", "/dev/video0/../../etc/passwd", "data/DATA.md",
    "models", "a\nb", "",
])
def test_check_stream_refuses_paths_outside_or_not_video(api: Api, video_path: str) -> None:
    r = api.post("/cameras/check_stream", {"video_path": video_path})
    assert r.status_code == 422, r.text


def test_check_stream_never_blocks_the_api(api: Api) -> None:
    """A camera that accepts the connection and then says nothing."""
    camera = SilentCamera()
    port = camera.port
    result: dict[str, Any] = {}

    def probe() -> None:
        t0 = time.monotonic()
        r = api.post("/cameras/check_stream", {"video_path": f"http://127.0.0.1:{port}/video"})
        result.update(status=r.status_code, body=r.json(), seconds=time.monotonic() - t0)

    try:
        thread = threading.Thread(target=probe)
        thread.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        assert api.client.get("/config/info", headers=api.viewer).status_code == 200
        assert time.monotonic() - t0 < 2.0  # answered while the probe hangs
        thread.join(GRAB_TIMEOUT_S + 10)
        assert result["status"] == 200
        assert result["body"]["ok"] is False and result["body"]["error"]
        assert result["seconds"] < GRAB_TIMEOUT_S + 3
    finally:
        camera.close()


def test_check_stream_dead_url_is_ok_false(api: Api) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    r = api.post("/cameras/check_stream", {"video_path": f"rtsp://127.0.0.1:{port}/x"})
    assert r.status_code == 200
    assert r.json()["ok"] is False


# ---------------------------------------------------------------------------------------
# Path traversal through URLs
# ---------------------------------------------------------------------------------------

# Plain "." and ".." segments are removed by the HTTP client before sending; the raw-socket
# test below sends them as they are.
EVIL_IDS = ["..%2F..%2Fetc%2Fpasswd", "..%2f..%2fsecret", "%2e%2e", "%2E%2E%2F",
            "../secret", "a%2Fb", "%2Fetc%2Fpasswd", ".hidden", "-dash", "a%00b", "pets-view1%0A",
            "a%20b", "x" * 65, "%252e%252e", "pets-view1%2F..%2F..%2F..%2Fsecret"]
SUFFIXES = ["", "/snapshot", "/stream", "/image", "/calibration", "/roi", "/lines"]


def test_traversal_through_ids_is_refused(api: Api, tmp_path: Path) -> None:
    secret = write_real_preview(api).read_bytes()
    # The same JPEG planted where a traversal would look for it.
    for place in (tmp_path / "secret", tmp_path / "secret.jpg", tmp_path / "live.jpg",
                  tmp_path / "data" / "live.jpg", tmp_path / "data/processor/static/live.jpg"):
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_bytes(secret)
    before = api.text()
    for evil in EVIL_IDS:
        for suffix in SUFFIXES:
            url = f"/cameras/{evil}{suffix}"
            for method in ("GET", "PUT", "DELETE"):
                r = api.client.request(method, url, headers=api.admin, json={})
                # "/cameras/../" is redirected to "/cameras/..", which the client makes "/":
                # the dashboard's page.
                home = r.url.path == "/dashboard/"
                assert r.status_code in (404, 405, 422) or home, (method, url, r.status_code)
                assert secret not in r.content
        for url in (f"/areas/{evil}", f"/ml_model/{evil}", f"/source_loggers/{evil}",
                    f"/areas/{evil}/occupancy_rules"):
            r = api.client.get(url, headers=api.admin)
            home = r.url.path == "/dashboard/"  # as above
            assert r.status_code in (404, 422) or home, (url, r.status_code)
            assert secret not in r.content
    assert api.text() == before


def test_ids_with_slashes_never_reach_a_handler(api: Api) -> None:
    """Raw, undecoded paths sent on a socket to a real server (no client-side
    normalisation)."""
    write_real_preview(api)
    with Server(api) as server:
        token = api.admin["Authorization"]
        for raw in ("/cameras/../../etc/passwd/snapshot", "/cameras/..%2F..%2Fetc/snapshot",
                    "/cameras/%2e%2e/snapshot", "/cameras//etc/passwd/snapshot",
                    "/cameras/pets-view1/../../../secret/snapshot",
                    "/cameras/pets-view1%2F..%2F..%2Fx/snapshot"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
                conn.sendall(f"GET {raw} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
                             "Connection: close\r\n\r\n".encode())
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
            status = int(data.split(b" ", 2)[1])
            assert status in (400, 404, 422), (raw, data[:200])
            assert b"\xff\xd8" not in data


def test_no_probe_thread_pile_up(api: Api) -> None:
    """The probe limit answers 503 instead of starting more threads."""
    slots = api.app.state.camera_probes
    slots.used = slots.limit
    try:
        r = api.post("/cameras/check_stream", {"video_path": "data/pets09_s2l1/vtest.avi"})
        assert r.status_code == 503
        assert api.client.get("/cameras/pets-view1/image", headers=api.viewer).status_code == 503
    finally:
        slots.used = 0
