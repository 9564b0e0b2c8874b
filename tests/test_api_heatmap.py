"""``/metrics/cameras/{id}/heatmap``, ``heatmap.png`` and ``engagement_clusters`` over HTTP,
on files written by the real ``heatmap`` post-processor and the real ``video_logger``.

The world (local time Asia/Kolkata, an 8x6 grid over 800x600 frames, 4 fps):

- camera ``scaled`` (calibrated: floor x = px / 100 - 4, y = 3 - py / 100 metres, so floor
  cells are 1 m and the image's 100 px cells): on DAY at 10:00 person A stands at foot
  (150, 450) for 20 s and person B, in violation, at (650, 150) for the first 4 s; on DAY + 1
  at 09:00 A stands there again for 8 s.  A's image cell is (row 4, column 1), B's (1, 6);
  on the floor A is at (-2.5, -1.5) m: cell (1, 1), B at (2.5, 1.5) m: cell (4, 6).
- camera ``hidden``: like ``scaled`` with a preview, but LiveFeedEnabled = False.
- camera ``flat``: nothing written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from libs.config import LookoutConfig, load_config
from libs.frame import Detections, Frame
from libs.loggers.video_logger import VideoLogger, preview_path
from libs.post_processors.heatmap import Heatmap
from tests.conftest import REPO, core_config_text

TZ_NAME = "Asia/Kolkata"
TZ = ZoneInfo(TZ_NAME)
DAY = date(2024, 3, 4)
DAY2 = DAY + timedelta(days=1)
PASSWORD = "password123"
A, B = (150.0, 450.0), (650.0, 150.0)
SCENE = (60, 140, 60)  # BGR of the preview's background

CAMERAS = """
[Source_flat]
Id = flat
VideoPath = data/pets09_s2l1/vtest.avi

[Source_scaled]
Id = scaled
VideoPath = data/pets09_s2l1/vtest.avi
CalibrationImagePoints = 0,0; 800,0; 800,600; 0,600
CalibrationFloorPoints = -4,3; 4,3; 4,-3; -4,-3

[Source_hidden]
Id = hidden
VideoPath = data/pets09_s2l1/vtest.avi
LiveFeedEnabled = False
CalibrationImagePoints = 0,0; 800,0; 800,600; 0,600
CalibrationFloorPoints = -4,3; 4,3; 4,-3; -4,-3

[SourcePostProcessor_heatmap]
Name = heatmap
FlushSeconds = 3600
MinSamples = 2
EpsMetres = 1
UpdatePeriod = 5
"""


def write_config(folder: Path, shared: Path) -> Path:
    text = core_config_text((REPO / "config-x86.ini").read_text())
    for old, new in (
        ("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}"),
        ("TimeZone = UTC", f"TimeZone = {TZ_NAME}"),
        ("HeatmapResolution = 150,150", "HeatmapResolution = 8,6"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "config.ini"
    path.write_text(text + CAMERAS)
    return path


def make_frame(camera: str, index: int, ts: datetime, feet: list[tuple[float, float]],
               violating: list[bool]) -> Frame:
    boxes = np.array([[x - 20, y - 120, x + 20, y] for x, y in feet], np.float32).reshape(-1, 4)
    det = Detections(boxes=boxes, scores=np.full(len(feet), 0.9),
                     track_ids=np.arange(len(feet)),
                     attributes={"in_violation": np.array(violating, bool)})
    image = np.full((600, 800, 3), SCENE, np.uint8)
    return Frame(camera, index, ts, image, det)


def section(sections: list[Any], name: str) -> Any:
    return next(s for s in sections if s.name == name)


def write_data(config: LookoutConfig) -> None:
    """The schedule of the module docstring, through the real post-processor and logger."""
    heat = section(config.source_post_processors, "heatmap")
    for camera in ("scaled", "hidden"):
        runs = ((datetime(2024, 3, 4, 10, tzinfo=TZ), 80, 16), (datetime(2024, 3, 5, 9,
                                                                          tzinfo=TZ), 32, 0))
        for start, frames, with_b in runs:
            proc = Heatmap(heat, config.source(camera), config)
            for k in range(frames):
                feet, flags = ([A, B], [False, True]) if k < with_b else ([A], [False])
                proc.process(make_frame(camera, k, start + timedelta(seconds=k / 4), feet,
                                        flags))
            proc.close()
        video = VideoLogger(section(config.source_loggers, "video_logger"),
                            config.source(camera), config)
        video.log(make_frame(camera, 0, datetime(2024, 3, 5, 9, 1, tzinfo=TZ), [], []))
        assert video.flush(10)
        video.close()


@dataclass(frozen=True)
class World:
    config: LookoutConfig
    client: TestClient
    headers: dict[str, str]

    def get(self, url: str, status: int = 200, **params: str) -> Any:
        r = self.client.get(url, params=params, headers=self.headers)
        assert r.status_code == status, r.text
        return r.json()

    def png(self, url: str, **params: str) -> np.ndarray:
        r = self.client.get(url, params=params, headers=self.headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        image = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        return image


@pytest.fixture(scope="module")
def world(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOOKOUT_DATA_DIR", raising=False)
        path = write_config(tmp_path_factory.mktemp("heatmap_api"), shared)
        config = load_config(path, check_files=False)
        write_data(config)
        app = create_app(path)
        with TestClient(app) as client:
            app.state.context.users.add("viewer1", PASSWORD, "viewer")
            r = client.post("/auth/token", data={"username": "viewer1", "password": PASSWORD})
            assert r.status_code == 200, r.text
            yield World(config, client,
                        {"Authorization": f"Bearer {r.json()['access_token']}"})


URL = "/metrics/cameras/scaled/heatmap"
BOTH: dict[str, Any] = {"from_date": DAY.isoformat(), "to_date": DAY2.isoformat()}


def cells(grid: list[list[float]]) -> dict[tuple[int, int], float]:
    return {(r, c): v for r, row in enumerate(grid) for c, v in enumerate(row) if v}


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def test_presence_summed_over_two_days(world: World) -> None:
    body = world.get(URL, **BOTH)
    assert (body["source"], body["unit"], body["space"], body["kind"]) == (
        "hourly", "person-seconds", "image", "presence")
    assert body["camera_id"] == "scaled" and body["time_zone"] == TZ_NAME
    assert body["shape"] == [6, 8] and (body["columns"], body["rows"]) == (8, 6)
    assert cells(body["grid"]) == {(4, 1): 28.0, (1, 6): 4.0}
    assert body["total"] == 32.0 and body["seconds"] == 28.0
    assert body["mean_people"] == pytest.approx(32 / 28, abs=1e-6)
    assert (body["frames"], body["samples"]) == (112, 128)
    assert body["image_size"] == {"width": 800, "height": 600}
    assert body["cell_size"] == {"width_fraction": 0.125, "height_fraction": 1 / 6,
                                 "width_px": 100.0, "height_px": 100.0}
    assert body["hours"] is None
    assert body["hours_covered"] == [
        {"hour": "2024-03-04T10", "seconds": 20.0, "total": 24.0},
        {"hour": "2024-03-05T09", "seconds": 8.0, "total": 8.0},
    ]
    assert body["days"] == [
        {"date": "2024-03-04", "hours": 1, "seconds": 20.0, "total": 24.0},
        {"date": "2024-03-05", "hours": 1, "seconds": 8.0, "total": 8.0},
    ]
    assert body["skipped_hours"] == []


def test_one_day_hours_and_violations(world: World) -> None:
    day2 = world.get(URL, from_date=DAY2.isoformat(), to_date=DAY2.isoformat())
    assert cells(day2["grid"]) == {(4, 1): 8.0}
    nine = world.get(URL, hours="9", **BOTH)
    assert nine["hours"] == [9] and cells(nine["grid"]) == {(4, 1): 8.0}
    morning = world.get(URL, hours="0-8,11-23", **BOTH)
    assert morning["hours_covered"] == [] and cells(morning["grid"]) == {}
    assert morning["source"] == "hourly"  # `hours` never falls back to the raw logs
    bad = world.get(URL, kind="violations", **BOTH)
    assert cells(bad["grid"]) == {(1, 6): 4.0} and bad["total"] == 4.0


def test_floor_space(world: World) -> None:
    body = world.get(URL, space="floor", **BOTH)
    assert body["space"] == "floor" and body["source"] == "hourly"
    assert cells(body["grid"]) == {(1, 1): 28.0, (4, 6): 4.0}
    assert body["cell_size"] == pytest.approx({"width_m": 1.0, "height_m": 1.0})
    assert body["floor"]["extent_m"] == pytest.approx(
        {"x_min": -4.0, "y_min": -3.0, "x_max": 4.0, "y_max": 3.0})
    assert np.asarray(body["floor"]["homography"]).shape == (3, 3)
    assert body["outside"] == 0.0
    bad = world.get(URL, space="floor", kind="violations", **BOTH)
    assert cells(bad["grid"]) == {(4, 6): 4.0}


def test_a_camera_without_hourly_files(world: World) -> None:
    url = "/metrics/cameras/flat/heatmap"
    raw = world.get(url, **BOTH)
    assert raw["source"] == "raw-log" and raw["unit"] == "people per raw-log row"
    assert raw["samples"] == 0 and cells(raw["grid"]) == {}
    floor = world.get(url, space="floor", **BOTH)
    assert floor["source"] == "hourly" and floor["floor"] is None
    assert floor["shape"] == [6, 8] and cells(floor["grid"]) == {}
    hourly = world.get(url, source="hourly", **BOTH)
    assert hourly["source"] == "hourly" and hourly["hours_covered"] == []


@pytest.mark.parametrize(
    ("url", "params", "status", "field"),
    [
        (URL, {"hours": "25"}, 422, "hours"),
        (URL, {"hours": "9-x"}, 422, "hours"),
        (URL, {"space": "sky"}, 422, "space"),
        (URL, {"kind": "everything"}, 422, "kind"),
        (URL, {"source": "raw", "space": "floor"}, 422, "source"),
        (URL, {"source": "raw", "hours": "9"}, 422, "source"),
        (URL, {"from_date": "2024-03-05", "to_date": "2024-03-04"}, 422, "from_date"),
        (URL, {"to_date": "2024-02-30"}, 422, "to_date"),
        (URL + ".png", {"alpha": "2"}, 422, "alpha"),
        (URL + ".png", {"hours": "-1"}, 422, "hours"),
        ("/metrics/cameras/ghost/heatmap", {}, 404, "ghost"),
        ("/metrics/cameras/ghost/heatmap.png", {}, 404, "ghost"),
        ("/metrics/cameras/ghost/engagement_clusters", {}, 404, "ghost"),
        ("/metrics/cameras/bad.id/engagement_clusters", {}, 422, "camera_id"),
    ],
)
def test_bad_requests(world: World, url: str, params: dict[str, str], status: int,
                      field: str) -> None:
    body = world.get(url, status, **params)
    assert field in str(body["detail"])


def test_a_token_is_needed(world: World) -> None:
    for url in (URL, URL + ".png", "/metrics/cameras/scaled/engagement_clusters"):
        assert world.client.get(url).status_code == 401


# ---------------------------------------------------------------------------------------
# PNG
# ---------------------------------------------------------------------------------------


def redness(pixel: np.ndarray) -> int:
    b, _, r = (int(v) for v in pixel)
    return r - b


@pytest.mark.parametrize("space", ["image", "floor"])
def test_png_over_the_snapshot(world: World, space: str) -> None:
    preview = cv2.imread(str(preview_path(world.config, "scaled")), cv2.IMREAD_COLOR)
    assert preview is not None and preview.shape == (600, 800, 3)
    image = world.png(URL + ".png", space=space, **BOTH)
    assert image.shape == preview.shape
    hot, cold = image[450, 150], image[150, 650]  # A's cell: 28 s; B's: 4 s
    assert redness(hot) > 50 and redness(cold) < -50
    assert redness(hot) > redness(cold) + 100
    # an empty cell is the snapshot itself; the lossless PNG keeps it exactly
    np.testing.assert_array_equal(image[350, 450], preview[350, 450])
    np.testing.assert_array_equal(image[300:400, 400:500], preview[300:400, 400:500])


def test_png_alpha_and_kind(world: World) -> None:
    preview = cv2.imread(str(preview_path(world.config, "scaled")), cv2.IMREAD_COLOR)
    assert preview is not None
    clear = world.png(URL + ".png", alpha="0", **BOTH)
    np.testing.assert_array_equal(clear, preview)
    bad = world.png(URL + ".png", kind="violations", **BOTH)
    assert redness(bad[150, 650]) > 50  # B's cell is the hottest of the violations
    np.testing.assert_array_equal(bad[450, 150], preview[450, 150])


def test_png_scales_and_blur(world: World) -> None:
    preview = cv2.imread(str(preview_path(world.config, "scaled")), cv2.IMREAD_COLOR)
    assert preview is not None
    # the cold cell has 4/28 of the hot one: linear colours it deeper blue than sqrt
    linear = world.png(URL + ".png", scale="linear", **BOTH)
    root = world.png(URL + ".png", scale="sqrt", **BOTH)
    log = world.png(URL + ".png", scale="log", **BOTH)
    assert redness(linear[150, 650]) < redness(root[150, 650])
    for image in (linear, root, log):
        assert redness(image[450, 150]) > redness(image[150, 650])
        np.testing.assert_array_equal(image[350, 450], preview[350, 450])
    blurred = world.png(URL + ".png", blur="1", **BOTH)
    assert redness(blurred[450, 150]) > redness(blurred[150, 650])
    # next to the hot cell, empty before, the blur puts colour
    np.testing.assert_array_equal(root[450, 250], preview[450, 250])
    assert (blurred[450, 250] != preview[450, 250]).any()
    assert world.get(URL + ".png", 422, scale="cubic")["detail"][0]["loc"][-1] == "scale"
    assert world.get(URL + ".png", 422, blur="11")["detail"][0]["loc"][-1] == "blur"


def test_png_without_a_live_feed_is_a_grey_canvas(world: World) -> None:
    assert preview_path(world.config, "hidden").exists()
    image = world.png("/metrics/cameras/hidden/heatmap.png", **BOTH)
    assert image.shape == (600, 800, 3)  # the frame size of the hourly files
    assert image[350, 450].tolist() == [128, 128, 128]
    assert redness(image[450, 150]) > redness(image[150, 650]) + 100


def test_png_of_a_camera_without_data(world: World) -> None:
    image = world.png("/metrics/cameras/flat/heatmap.png", space="floor", **BOTH)
    assert image.shape == (24, 32, 3) and (image == 128).all()  # 4 px per cell, all grey


# ---------------------------------------------------------------------------------------
# Clusters
# ---------------------------------------------------------------------------------------


def test_engagement_clusters(world: World) -> None:
    body = world.get("/metrics/cameras/scaled/engagement_clusters")
    assert body["camera_id"] == "scaled" and body["space"] == "floor"
    # the last update: DAY2 09:00:05 (frame 20); the run's window holds frames 0-20
    assert body["timestamp"] == "2024-03-05T09:00:05.000+05:30"
    assert body["clusters"] == [{"position": [-2.5, -1.5], "intensity": 5.25, "radius": 0.0,
                                 "samples": 21, "image_position": [150.0, 450.0]}]
    assert (body["eps"], body["min_samples"], body["window_seconds"]) == (1.0, 2, 3600.0)
    none = world.get("/metrics/cameras/flat/engagement_clusters")
    assert none == {"camera_id": "flat", "timestamp": None, "space": None, "clusters": []}
