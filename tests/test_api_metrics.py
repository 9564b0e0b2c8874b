"""``/metrics`` over HTTP, on data written by the real loggers and the real report task.

The raw logs come from SourceFileSystemLogger / AreaFileSystemLogger fed synthetic frames on
two local days (yesterday and today in Asia/Kolkata, UTC+05:30), the reports from
``libs.metrics.recompute_all``; nothing here writes CSV by hand.  The numbers checked below
are worked out from the frame schedule in :data:`SCHEDULE`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from libs.clock import IntervalGate
from libs.config import LookoutConfig, load_config
from libs.frame import Detections, Frame
from libs.loggers.file_system_logger import AreaFileSystemLogger, SourceFileSystemLogger
from libs.loggers.video_logger import VideoLogger, preview_path
from libs.metrics import recompute_all
from libs.records import LineCrossing
from tests.area_helpers import AreaFeed
from tests.conftest import REPO
from tests.record_helpers import as_pipeline_would

TZ_NAME = "Asia/Kolkata"
TZ = ZoneInfo(TZ_NAME)
IMAGE = np.zeros((600, 800, 3), np.uint8)
PASSWORD = "password123"


@dataclass(frozen=True)
class Slot:
    """Frames every 10 minutes from ``start`` (local time), ``count`` of them."""

    camera: str
    day: int  # 0 = yesterday, 1 = today
    start: time
    count: int
    people: int
    violating: int


SCHEDULE = (
    Slot("pets-view1", 0, time(9, 0), 6, 2, 0),
    Slot("pets-view1", 0, time(10, 0), 6, 4, 2),
    Slot("pets-view1", 1, time(10, 0), 6, 3, 2),
    Slot("pets-view1", 1, time(11, 0), 3, 1, 0),
    Slot("cam2", 0, time(9, 0), 6, 1, 0),
)
# (day, local time, line, track, direction, local times of the frames that carry it):
# the event of today 10:00 is logged twice (as a restarted worker would) and counts once.
EVENTS = (
    (0, time(9, 10), "x384", 1, "in", (time(9, 10),)),
    (0, time(9, 20), "x384", 1, "out", (time(9, 20),)),
    (0, time(10, 30), "x384", 2, "in", (time(10, 30),)),
    (0, time(10, 30), "door", 3, "in", (time(10, 30),)),
    (1, time(10, 0), "x384", 5, "in", (time(10, 0), time(10, 10))),
    (1, time(11, 20), "x384", 5, "out", (time(11, 20),)),
)


def write_config(folder: Path, shared: Path, tz: str = TZ_NAME) -> Path:
    """config-x86.ini with a second camera, a 8x6 heatmap grid, area capacity 3 and
    two counting lines (as the conftest ``x86_config`` fixture does it, plus these)."""
    text = (REPO / "config-x86.ini").read_text()
    for old, new in (
        ("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}"),
        ("TimeZone = UTC", f"TimeZone = {tz}"),
        ("HeatmapResolution = 150,150", "HeatmapResolution = 8,6"),
        ("CountingLines = x384: 384,0 384,576",
         "CountingLines = x384: 384,0 384,576; door: 0,300 768,300"),
        ("OccupancyThreshold = 10", "OccupancyThreshold = 3"),
        ("OccupancyRules = Mon-Fri 08:00-18:00 8; Sat,Sun 10:00-16:00 6", "OccupancyRules ="),
    ):
        assert old in text, old
        text = text.replace(old, new)
    text += (
        "\n[Source_1]\nId = cam2\nName = Second camera\n"
        "VideoPath = data/pets09_s2l1/vtest.avi\n"
    )
    path = folder / "config.ini"
    path.write_text(text)
    return path


def person_boxes(people: int) -> np.ndarray:
    """Person k stands (foot point) at (100k + 50, 100k + 50): cell (k, k) of the 8x6 grid
    over an 800x600 image."""
    return np.array(
        [[100 * k + 20, 100 * k + 10, 100 * k + 80, 100 * k + 50] for k in range(people)],
        np.float32,
    ).reshape(-1, 4)


def make_frame(camera: str, index: int, ts: datetime, people: int, violating: int,
               events: list[dict[str, Any]]) -> Frame:
    pairs = [(k, k + 1) for k in range(0, violating - 1, 2)]
    det = Detections(
        boxes=person_boxes(people),
        scores=np.full(people, 0.9),
        track_ids=np.arange(1, people + 1),
        attributes={"in_violation": np.array([k < violating for k in range(people)], bool)},
    )
    metrics = {
        "people": people,
        "violating_people": violating,
        "violating_pairs": len(pairs),
        "violating_pair_indexes": pairs,
    }
    frame = Frame(camera, index, ts, IMAGE, det, metrics)
    for event in events:  # what line_crossing emits
        frame.emit(LineCrossing, timestamp=event["timestamp"], frame=event["frame"],
                   line=event["line"], track_id=event["track_id"],
                   direction=event["direction"])
    return frame


def section(config: LookoutConfig, sections: list[Any], name: str) -> Any:
    return next(s for s in sections if s.name == name)


@dataclass(frozen=True)
class World:
    config_path: Path
    config: LookoutConfig
    yday: date
    today: date

    def at(self, day: int, t: time) -> datetime:
        return datetime.combine(self.yday + timedelta(days=day), t, tzinfo=TZ)

    def hour(self, day: int, h: int) -> str:
        return self.at(day, time(h)).isoformat()

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir


def write_data(config_path: Path) -> World:
    """Run the real loggers over the schedule, then the real report recomputation."""
    config = load_config(config_path, check_files=False)
    today = datetime.now(TZ).date()
    world = World(config_path, config, today - timedelta(days=1), today)
    fs = section(config, config.source_loggers, "file_system_logger")
    loggers = {
        cam: SourceFileSystemLogger(fs, config.source(cam), config)
        for cam in ("pets-view1", "cam2")
    }
    clocks = {cam: IntervalGate(fs.time_interval) for cam in loggers}
    area = AreaFeed(config, config.areas[0], AreaFileSystemLogger(
        section(config, config.area_loggers, "file_system_logger"), config.areas[0], config
    ))
    index = 0
    for slot in SCHEDULE:
        for k in range(slot.count):
            ts = world.at(slot.day, slot.start) + timedelta(minutes=10 * k)
            events = [
                {"line": line, "track_id": track, "direction": direction,
                 "timestamp": world.at(day, t), "frame": index}
                for day, t, line, track, direction, carriers in EVENTS
                if slot.camera == "pets-view1" and any(world.at(day, c) == ts for c in carriers)
            ]
            frame = make_frame(slot.camera, index, ts, slot.people, slot.violating, events)
            loggers[slot.camera].log(as_pipeline_would(frame, clocks[slot.camera]))
            if slot.camera in config.areas[0].cameras:
                area.update(slot.camera, ts, slot.people)
            index += 1
    for logger in loggers.values():
        logger.close()
    area.close()
    results = recompute_all(config)
    assert results and all(r.error is None for r in results)
    return world


def login(client: TestClient, username: str = "viewer1") -> dict[str, str]:
    client.app.state.context.users.add(username, PASSWORD, "viewer")  # type: ignore[attr-defined]
    r = client.post("/auth/token", data={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture(scope="module")
def world(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOOKOUT_DATA_DIR", raising=False)
        folder = tmp_path_factory.mktemp("metrics_api")
        yield write_data(write_config(folder, shared))


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOOKOUT_DATA_DIR", raising=False)
        app = create_app(world.config_path)
        with TestClient(app) as client:
            yield client, login(client)


def get(api: tuple[TestClient, dict[str, str]], url: str, status: int = 200,
        **params: str) -> Any:
    client, headers = api
    r = client.get(url, params=params, headers=headers)
    assert r.status_code == status, r.text
    return r.json()


def entity(body: dict[str, Any], entity_id: str) -> dict[str, Any]:
    return next(e for e in body["entities"] if e["id"] == entity_id)


SD = "/metrics/cameras/social-distancing"


# ---------------------------------------------------------------------------------------
# Report kinds
# ---------------------------------------------------------------------------------------


def test_hourly_social_distancing_has_explicit_hours_and_numbers(api, world: World) -> None:
    body = get(api, f"{SD}/hourly", cameras="pets-view1", date=world.today.isoformat())
    assert body["time_zone"] == TZ_NAME
    assert body["date"] == world.today.isoformat()
    assert body["columns"][0] == "Hour"
    rows = entity(body, "pets-view1")["rows"]
    assert [r["Hour"] for r in rows] == [world.hour(1, 10), world.hour(1, 11)]
    assert rows[0]["Hour"].endswith("T10:00:00+05:30")
    assert rows[0] == {
        "Hour": world.hour(1, 10), "Samples": 6, "AvgPeople": 3.0, "MaxPeople": 3,
        "AvgViolatingPeople": 2.0, "MaxViolatingPeople": 2, "AvgViolatingPairs": 1.0,
        "MaxViolatingPairs": 1, "ViolationSamples": 6, "SumPeople": 18,
        "SumViolatingPeople": 12, "SumViolatingPairs": 6,
    }
    assert rows[1]["Samples"] == 3 and rows[1]["AvgPeople"] == 1.0
    assert rows[1]["ViolationSamples"] == 0
    totals = entity(body, "pets-view1")["totals"]
    assert totals["Samples"] == 9 and totals["SumPeople"] == 21 and totals["MaxPeople"] == 3
    assert totals["AvgPeople"] == pytest.approx(21 / 9, abs=1e-3)
    assert totals["ViolationSamples"] == 6
    assert isinstance(totals["Samples"], int) and isinstance(totals["AvgPeople"], float)


def test_daily_over_two_days_and_totals(api, world: World) -> None:
    body = get(api, f"{SD}/daily", from_date=world.yday.isoformat(),
               to_date=world.today.isoformat())
    assert (body["from_date"], body["to_date"]) == (world.yday.isoformat(),
                                                    world.today.isoformat())
    assert [e["id"] for e in body["entities"]] == ["pets-view1", "cam2"]  # config order
    rows = entity(body, "pets-view1")["rows"]
    assert [r["Date"] for r in rows] == [world.yday.isoformat(), world.today.isoformat()]
    y, t = rows
    assert (y["Samples"], y["SumPeople"], y["MaxPeople"], y["ViolationSamples"]) == (12, 36, 4, 6)
    assert (y["AvgPeople"], y["AvgViolatingPeople"], y["AvgViolatingPairs"]) == (3.0, 1.0, 0.5)
    assert (t["Samples"], t["SumPeople"], t["SumViolatingPeople"]) == (9, 21, 12)
    totals = entity(body, "pets-view1")["totals"]
    assert (totals["Samples"], totals["SumPeople"], totals["MaxPeople"]) == (21, 57, 4)
    assert totals["AvgPeople"] == pytest.approx(57 / 21, abs=1e-3)
    assert totals["ViolationSamples"] == 12 and totals["SumViolatingPairs"] == 12
    cam2 = entity(body, "cam2")
    assert [(r["Date"], r["Samples"], r["AvgPeople"]) for r in cam2["rows"]] == [
        (world.yday.isoformat(), 6, 1.0)
    ]


def test_camera_and_area_occupancy(api, world: World) -> None:
    span = {"from_date": world.yday.isoformat(), "to_date": world.today.isoformat()}
    cam = entity(get(api, "/metrics/cameras/occupancy/daily", cameras="pets-view1", **span),
                 "pets-view1")
    assert [(r["Samples"], r["SumOccupancy"], r["MaxOccupancy"]) for r in cam["rows"]] == [
        (12, 36, 4), (9, 21, 3)
    ]
    body = get(api, "/metrics/areas/occupancy/daily", **span)
    assert body["entity_type"] == "area" and [e["id"] for e in body["entities"]] == ["campus"]
    rows = entity(body, "campus")["rows"]
    # capacity 3: the 6 samples of 4 people yesterday 10:00-10:50 are over it
    assert [(r["Date"], r["Samples"], r["AvgOccupancy"], r["OverCapacitySamples"])
            for r in rows] == [(world.yday.isoformat(), 12, 3.0, 6),
                               (world.today.isoformat(), 9, pytest.approx(2.333), 0)]
    assert entity(body, "campus")["totals"]["OverCapacitySamples"] == 6
    hourly = get(api, "/metrics/areas/occupancy/hourly", areas="campus",
                 date=world.yday.isoformat())
    assert [(r["Hour"], r["OverCapacitySamples"]) for r in entity(hourly, "campus")["rows"]] == [
        (world.hour(0, 9), 0), (world.hour(0, 10), 6)
    ]


def test_weekly_groups_by_monday(api, world: World) -> None:
    body = get(api, f"{SD}/weekly", cameras="pets-view1", from_date=world.yday.isoformat(),
               to_date=world.today.isoformat())
    expected: dict[str, list[int]] = {}
    for d, samples, people in ((world.yday, 12, 36), (world.today, 9, 21)):
        monday = (d - timedelta(days=d.weekday())).isoformat()
        got = expected.setdefault(monday, [0, 0])
        got[0] += samples
        got[1] += people
    rows = entity(body, "pets-view1")["rows"]
    assert {r["Week"]: [r["Samples"], r["SumPeople"]] for r in rows} == expected
    assert entity(body, "pets-view1")["totals"]["Samples"] == 21


def test_live_reports(api, world: World) -> None:
    body = get(api, f"{SD}/live")
    assert body["period"] == "live" and body["columns"][:2] == ["From", "To"]
    row, = entity(body, "pets-view1")["rows"]
    # LiveInterval 10 minutes before the newest row (today 11:20): that row alone
    assert row["To"] == world.at(1, time(11, 20)).isoformat(timespec="milliseconds")
    assert row["From"] == world.at(1, time(11, 10)).isoformat(timespec="milliseconds")
    assert (row["Samples"], row["AvgPeople"]) == (1, 1.0)
    assert entity(body, "pets-view1")["totals"] is None
    area = entity(get(api, "/metrics/areas/occupancy/live"), "campus")["rows"]
    assert [(r["Samples"], r["AvgOccupancy"]) for r in area] == [(1, 1.0)]


def test_day_without_data_is_empty_not_an_error(api) -> None:
    body = get(api, f"{SD}/hourly", cameras="cam2", date="2020-02-29")
    assert entity(body, "cam2")["rows"] == []
    assert entity(body, "cam2")["totals"]["Samples"] == 0
    body = get(api, "/metrics/areas/occupancy/daily", from_date="2019-01-01",
               to_date="2019-12-31")
    assert entity(body, "campus")["rows"] == []


def test_ids_select_and_order_entities(api) -> None:
    body = get(api, "/metrics/cameras/occupancy/live", cameras="cam2,pets-view1,cam2")
    assert [e["id"] for e in body["entities"]] == ["cam2", "pets-view1"]
    assert get(api, "/metrics/cameras/occupancy/live", cameras="")["entities"] == []


def test_kinds_lists_the_table(api) -> None:
    kinds = {(k["entity_type"], k["kind"]): k for k in get(api, "/metrics/kinds")}
    # The built-in kinds; analytics add theirs to the same table.
    assert set(kinds) >= {("camera", "social-distancing"), ("camera", "occupancy"),
                          ("area", "occupancy"), ("camera", "line-crossings")}
    assert kinds[("camera", "line-crossings")]["periods"] == ["hourly", "daily"]


# ---------------------------------------------------------------------------------------
# Default dates: "today" in the app time zone, per request
# ---------------------------------------------------------------------------------------


def test_default_dates_are_today_in_the_app_zone(api) -> None:
    before = datetime.now(TZ).date()
    hourly = get(api, f"{SD}/hourly")
    daily = get(api, f"{SD}/daily")
    weekly = get(api, f"{SD}/weekly")
    after = datetime.now(TZ).date()
    today = date.fromisoformat(hourly["date"])
    assert today in (before, after)
    assert hourly == get(api, f"{SD}/hourly", date=today.isoformat())
    assert (daily["from_date"], daily["to_date"]) == (
        (today - timedelta(days=6)).isoformat(), today.isoformat())
    assert daily == get(api, f"{SD}/daily", from_date=daily["from_date"],
                        to_date=daily["to_date"])
    monday = today - timedelta(days=today.weekday())
    assert (weekly["from_date"], weekly["to_date"]) == (
        (monday - timedelta(weeks=3)).isoformat(), today.isoformat())
    # only to_date given: the 7 days ending there
    assert get(api, f"{SD}/daily", to_date="2024-03-10")["from_date"] == "2024-03-04"


def test_default_date_follows_the_configured_zone_per_request(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UTC+14 and UTC-11 are 25 hours apart: their dates always differ.  The same app
    answers with each zone's today once the file says so (nothing is fixed at import)."""
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    path = write_config(tmp_path, shared, tz="Pacific/Kiritimati")
    app = create_app(path)
    with TestClient(app) as client:
        headers = login(client)
        dates = {}
        for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
            text = path.read_text()
            text = text.replace("Pacific/Kiritimati", zone)
            path.write_text(text)
            later = path.stat().st_mtime_ns + 10**9  # a new mtime even on coarse clocks
            os.utime(path, ns=(later, later))
            before = datetime.now(ZoneInfo(zone)).date()
            body = client.get(f"{SD}/hourly", headers=headers).json()
            after = datetime.now(ZoneInfo(zone)).date()
            assert body["time_zone"] == zone
            assert date.fromisoformat(body["date"]) in (before, after)
            dates[zone] = body["date"]
        assert dates["Pacific/Kiritimati"] != dates["Pacific/Pago_Pago"]


# ---------------------------------------------------------------------------------------
# Line crossings
# ---------------------------------------------------------------------------------------


def test_line_crossings_hourly(api, world: World) -> None:
    body = get(api, "/metrics/cameras/line-crossings/hourly", cameras="pets-view1",
               date=world.today.isoformat())
    assert body["columns"] == ["Hour", "Line", "In", "Out"]
    cam = entity(body, "pets-view1")
    assert cam["rows"] == [  # the event logged twice at 10:00 counts once
        {"Hour": world.hour(1, 10), "Line": "x384", "In": 1, "Out": 0},
        {"Hour": world.hour(1, 11), "Line": "x384", "In": 0, "Out": 1},
    ]
    assert cam["totals"] == {"In": 1, "Out": 1,
                             "Lines": {"door": {"In": 0, "Out": 0},
                                       "x384": {"In": 1, "Out": 1}}}
    yday = entity(get(api, "/metrics/cameras/line-crossings/hourly", cameras="pets-view1",
                      date=world.yday.isoformat()), "pets-view1")
    assert yday["rows"] == [
        {"Hour": world.hour(0, 9), "Line": "x384", "In": 1, "Out": 1},
        {"Hour": world.hour(0, 10), "Line": "door", "In": 1, "Out": 0},
        {"Hour": world.hour(0, 10), "Line": "x384", "In": 1, "Out": 0},
    ]


def test_line_crossings_daily(api, world: World) -> None:
    body = get(api, "/metrics/cameras/line-crossings/daily", from_date=world.yday.isoformat(),
               to_date=world.today.isoformat())
    y, t = world.yday.isoformat(), world.today.isoformat()
    assert entity(body, "pets-view1")["rows"] == [
        {"Date": y, "Line": "door", "In": 1, "Out": 0},
        {"Date": y, "Line": "x384", "In": 2, "Out": 1},
        {"Date": t, "Line": "x384", "In": 1, "Out": 1},
    ]
    assert entity(body, "pets-view1")["totals"]["Lines"]["x384"] == {"In": 3, "Out": 2}
    assert entity(body, "cam2") == {"id": "cam2", "rows": [],
                                    "totals": {"In": 0, "Out": 0, "Lines": {}}}
    today_only = get(api, "/metrics/cameras/line-crossings/daily", cameras="pets-view1",
                     from_date=t, to_date=t)
    assert entity(today_only, "pets-view1")["totals"]["In"] == 1


# ---------------------------------------------------------------------------------------
# Heatmaps
# ---------------------------------------------------------------------------------------


def grid_with(cells: dict[tuple[int, int], int], rows: int = 6, cols: int = 8) -> list:
    out = [[0] * cols for _ in range(rows)]
    for (r, c), v in cells.items():
        out[r][c] = v
    return out


def test_heatmap_from_box_extents_then_from_the_preview(api, world: World) -> None:
    url = "/metrics/cameras/pets-view1/heatmap"
    span = {"from_date": world.yday.isoformat(), "to_date": world.today.isoformat()}
    preview = preview_path(world.config, "pets-view1")
    assert not preview.exists()
    body = get(api, url, **span)
    # no preview, no Resolution: the largest box reaches x2=380, y2=350 (4 people)
    assert body["image_size"] == {"width": 380, "height": 350}
    assert body["image_size_source"] == "bbox-extents"
    assert body["shape"] == [6, 8] and (body["columns"], body["rows"]) == (8, 6)
    assert (body["samples"], body["detections"], body["violating_detections"]) == (21, 57, 24)
    # foot x 50/150/250/350 -> columns 1/3/5/7; foot y 50/150/250/350 -> rows 0/2/4/5
    assert body["heatmap"] == grid_with({(0, 1): 21, (2, 3): 18, (4, 5): 12, (5, 7): 6})
    assert body["violations"] == grid_with({(0, 1): 12, (2, 3): 12})

    video = VideoLogger(section(world.config, world.config.source_loggers, "video_logger"),
                        world.config.source("pets-view1"), world.config)
    video.log(make_frame("pets-view1", 0, world.at(1, time(12)), 1, 0, []))
    assert video.flush(10)
    video.close()
    try:
        assert preview.exists()
        body = get(api, url, **span)
        assert body["image_size"] == {"width": 800, "height": 600}
        assert body["image_size_source"] == "preview"
        # 100x100 pixel cells: person k is in cell (k, k)
        assert body["heatmap"] == grid_with({(0, 0): 21, (1, 1): 18, (2, 2): 12, (3, 3): 6})
        assert body["violations"] == grid_with({(0, 0): 12, (1, 1): 12})
        today = get(api, url, from_date=world.today.isoformat(),
                    to_date=world.today.isoformat())
        assert today["samples"] == 9
        assert today["heatmap"] == grid_with({(0, 0): 9, (1, 1): 6, (2, 2): 6})
        assert today["violations"] == grid_with({(0, 0): 6, (1, 1): 6})
        cam2 = get(api, "/metrics/cameras/cam2/heatmap", **span)
        assert cam2["image_size_source"] == "bbox-extents"
        assert cam2["samples"] == 6 and cam2["detections"] == 6
    finally:
        preview.unlink()


def test_heatmap_without_data(api) -> None:
    body = get(api, "/metrics/cameras/cam2/heatmap", from_date="2020-01-01",
               to_date="2020-01-02")
    assert body["image_size"] is None and body["image_size_source"] is None
    assert body["samples"] == 0
    assert body["heatmap"] == grid_with({}) and body["violations"] == grid_with({})


def test_heatmap_sees_new_rows(shared: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsed files are cached by size and mtime: rows logged later are counted."""
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    path = write_config(tmp_path, shared)
    config = load_config(path, check_files=False)
    fs = section(config, config.source_loggers, "file_system_logger")
    day = date(2024, 3, 4)
    app = create_app(path)
    with TestClient(app) as client:
        headers = login(client)
        url = f"/metrics/cameras/cam2/heatmap?from_date={day}&to_date={day}"
        counts = []
        for k in range(2):
            logger = SourceFileSystemLogger(fs, config.source("cam2"), config)
            ts = datetime.combine(day, time(12, k), tzinfo=TZ)
            clock = IntervalGate(fs.time_interval)
            logger.log(as_pipeline_would(make_frame("cam2", k, ts, 2, 0, []), clock))
            logger.close()
            counts.append(client.get(url, headers=headers).json()["detections"])
        assert counts == [2, 4]


# ---------------------------------------------------------------------------------------
# Refused requests
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "params", "status", "field"),
    [
        (f"{SD}/hourly", {"cameras": "nope"}, 404, "nope"),
        (f"{SD}/hourly", {"cameras": "pets-view1,ghost"}, 404, "ghost"),
        ("/metrics/areas/occupancy/hourly", {"areas": "pets-view1"}, 404, "pets-view1"),
        (f"{SD}/hourly", {"cameras": "../etc"}, 422, "cameras"),
        (f"{SD}/hourly", {"cameras": "pets-view1/../../x"}, 422, "cameras"),
        (f"{SD}/hourly", {"cameras": "a" * 65}, 422, "cameras"),
        (f"{SD}/hourly", {"date": "2024-02-30"}, 422, "date"),
        (f"{SD}/hourly", {"date": "../../../etc/passwd"}, 422, "date"),
        (f"{SD}/hourly", {"date": "20240304"}, 422, "date"),
        (f"{SD}/hourly", {"date": "2024-03-04/../x"}, 422, "date"),
        (f"{SD}/daily", {"from_date": "yesterday"}, 422, "from_date"),
        (f"{SD}/daily", {"to_date": "2024-13-01"}, 422, "to_date"),
        (f"{SD}/daily", {"from_date": "2024-03-05", "to_date": "2024-03-04"}, 422, "from_date"),
        (f"{SD}/weekly", {"from_date": "2020-01-01", "to_date": "2024-01-01"}, 422, "to_date"),
        ("/metrics/cameras/line-crossings/daily", {"from_date": "2023-01-01",
                                                   "to_date": "2024-01-02"}, 422, "to_date"),
        ("/metrics/cameras/ghost/heatmap", {}, 404, "ghost"),
        ("/metrics/cameras/bad.id/heatmap", {}, 422, "camera_id"),
        ("/metrics/cameras/pets-view1/heatmap", {"from_date": "x"}, 422, "from_date"),
    ],
)
def test_bad_requests_are_refused(api, url: str, params: dict[str, str], status: int,
                                  field: str) -> None:
    body = get(api, url, status, **params)
    assert field in str(body["detail"])


def test_the_longest_range_is_allowed(api) -> None:
    body = get(api, f"{SD}/daily", from_date="2024-01-01", to_date="2024-12-31")
    assert body["from_date"] == "2024-01-01"
    get(api, f"{SD}/daily", 200, from_date="0001-01-01", to_date="0001-01-01")
    get(api, f"{SD}/weekly", 200, to_date="0001-01-02")
    get(api, "/metrics/cameras/pets-view1/heatmap", 200, from_date="9999-12-31",
        to_date="9999-12-31")


@pytest.mark.parametrize("path", ["/metrics/cameras/%2E%2E/heatmap",
                                  "/metrics/cameras/..%2F..%2Fetc/heatmap",
                                  "/metrics/cameras/%2e%2e%2fconfig.ini/heatmap"])
def test_traversal_in_the_path_is_refused(api, path: str) -> None:
    client, headers = api
    r = client.get(path, headers=headers)
    assert r.status_code in (404, 422), r.text


def test_a_token_is_needed(api) -> None:
    client, _ = api
    assert client.get(f"{SD}/hourly").status_code == 401
    assert client.get("/metrics/cameras/pets-view1/heatmap").status_code == 401
    bad = {"Authorization": "Bearer nonsense"}
    assert client.get("/metrics/kinds", headers=bad).status_code == 401
