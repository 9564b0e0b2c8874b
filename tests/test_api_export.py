"""``/export`` over HTTP: the zip holds exactly the chosen files, and nothing else.

The data are those of ``tests/test_api_metrics.py``: written by the real loggers (raw logs,
line crossing events, screenshots) and the real report recomputation, in Asia/Kolkata.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from libs.loggers.file_system_logger import screenshots_root, source_log_root
from libs.metrics import area_dir, camera_dir
from tests.test_api_metrics import SCHEDULE, TZ, World, login, write_config, write_data

SUMMARIES = ("daily.csv", "weekly.csv", "live.csv")


@pytest.fixture(scope="module")
def world(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOOKOUT_DATA_DIR", raising=False)
        folder = tmp_path_factory.mktemp("export_api")
        yield write_data(write_config(folder, shared))


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOOKOUT_DATA_DIR", raising=False)
        app = create_app(world.config_path)
        with TestClient(app) as client:
            yield client, login(client)


def export(api: tuple[TestClient, dict[str, str]], body: dict[str, Any] | None = None,
           **params: str) -> tuple[zipfile.ZipFile, Any]:
    client, headers = api
    if body is not None:
        r = client.post("/export", json=body, headers=headers)
    else:
        r = client.get("/export", params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert zf.testzip() is None
    for name in zf.namelist():
        assert name.startswith(("cameras/", "areas/")), name
        assert ".." not in name.split("/") and not name.startswith("/")
    return zf, r


def refused(api: tuple[TestClient, dict[str, str]], status: int,
            body: dict[str, Any] | None = None, **params: str) -> Any:
    client, headers = api
    if body is not None:
        r = client.post("/export", json=body, headers=headers)
    else:
        r = client.get("/export", params=params, headers=headers)
    assert r.status_code == status, r.text
    return r.json()["detail"]


def shots(world: World, camera: str, day: int) -> set[str]:
    """Screenshot members of a schedule day (ScreenshotPeriod 1 min, a frame per 10 min)."""
    names = set()
    for slot in SCHEDULE:
        if slot.camera != camera or slot.day != day:
            continue
        for k in range(slot.count):
            ts = world.at(day, slot.start) + timedelta(minutes=10 * k)
            names.add(f"cameras/{camera}/screenshots/{ts.strftime('%Y%m%dT%H%M%S%z')}.jpg")
    return names


def test_raw_and_events_of_one_day(api, world: World) -> None:
    y = world.yday.isoformat()
    zf, r = export(api, cameras="pets-view1", areas="", from_date=y, to_date=y,
                   data_types="raw,events")
    assert sorted(zf.namelist()) == [
        f"cameras/pets-view1/line_crossings/{y}.csv",
        f"cameras/pets-view1/objects_log/{y}.csv",
    ]
    base = camera_dir(world.config, "pets-view1")
    assert zf.read(f"cameras/pets-view1/objects_log/{y}.csv") == (
        base / "objects_log" / f"{y}.csv").read_bytes()
    assert zf.read(f"cameras/pets-view1/line_crossings/{y}.csv") == (
        base / "line_crossings" / f"{y}.csv").read_bytes()
    assert r.headers["content-disposition"] == (
        f'attachment; filename="lookout-export_{y}_{y}.zip"')
    assert r.headers["x-export-members"] == "2"


def test_post_reports_of_a_camera_and_raw_and_reports_of_an_area(api, world: World) -> None:
    t = world.today.isoformat()
    zf, _ = export(api, {"cameras": ["cam2"], "areas": ["campus"], "from_date": t,
                         "to_date": t, "data_types": ["reports", "raw"]})
    # cam2 has no data today: no raw log, no hourly report, only its summaries
    expected = {
        *(f"cameras/cam2/reports/{kind}/{name}" for kind in ("social-distancing", "occupancy")
          for name in SUMMARIES),
        f"areas/campus/occupancy_log/{t}.csv",
        f"areas/campus/reports/occupancy/hourly_{t}.csv",
        *(f"areas/campus/reports/occupancy/{name}" for name in SUMMARIES),
    }
    assert set(zf.namelist()) == expected
    assert zf.namelist() == sorted(zf.namelist())  # deterministic order
    area = area_dir(world.config, "campus")
    assert zf.read("areas/campus/reports/occupancy/daily.csv") == (
        area / "reports" / "occupancy" / "daily.csv").read_bytes()


def test_default_data_types_and_reports_of_two_days(api, world: World) -> None:
    y, t = world.yday.isoformat(), world.today.isoformat()
    zf, _ = export(api, cameras="pets-view1", areas="", from_date=y, to_date=t)
    expected = {
        *(f"cameras/pets-view1/{folder}/{d}.csv" for folder in ("objects_log", "line_crossings")
          for d in (y, t)),
        *(f"cameras/pets-view1/reports/{kind}/{name}"
          for kind in ("social-distancing", "occupancy")
          for name in (f"hourly_{y}.csv", f"hourly_{t}.csv", *SUMMARIES)),
    }
    assert set(zf.namelist()) == expected  # no screenshots unless asked for


def test_screenshots_by_local_date(api, world: World) -> None:
    t = world.today.isoformat()
    zf, _ = export(api, cameras="pets-view1,cam2", areas="", from_date=t, to_date=t,
                   data_types="screenshots")
    assert set(zf.namelist()) == shots(world, "pets-view1", 1)  # cam2 took none today
    assert len(zf.namelist()) == 9
    name = min(zf.namelist())
    assert name.endswith("T100000+0530.jpg")
    on_disk = screenshots_root(world.config) / "pets-view1" / name.rsplit("/", 1)[1]
    assert zf.read(name) == on_disk.read_bytes()
    assert zf.getinfo(name).compress_type == zipfile.ZIP_STORED
    y = world.yday.isoformat()
    zf, _ = export(api, cameras="cam2", areas="", from_date=y, to_date=y,
                   data_types="screenshots")
    assert set(zf.namelist()) == shots(world, "cam2", 0)


def test_everything_by_default(api, world: World) -> None:
    before = datetime.now(TZ).date()
    zf, r = export(api)
    after = datetime.now(TZ).date()
    disposition = r.headers["content-disposition"]
    today = date.fromisoformat(disposition.rsplit("_", 1)[1][:10])
    assert today in (before, after)
    first = (today - timedelta(days=6)).isoformat()
    assert disposition == f'attachment; filename="lookout-export_{first}_{today}.zip"'
    names = set(zf.namelist())
    y, t = world.yday.isoformat(), world.today.isoformat()
    assert {f"cameras/pets-view1/objects_log/{y}.csv", f"cameras/cam2/objects_log/{y}.csv",
            f"areas/campus/occupancy_log/{t}.csv"} <= names
    assert not any("/screenshots/" in n for n in names)


def test_nothing_selected_is_an_empty_zip(api) -> None:
    zf, _ = export(api, cameras="", areas="")
    assert zf.namelist() == []
    zf, _ = export(api, {"cameras": [], "areas": ["campus"], "from_date": "2019-01-01",
                         "to_date": "2019-01-02", "data_types": ["raw"]})
    assert zf.namelist() == []


def test_links_and_stray_files_are_not_packed(api, world: World, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("not for export\n")
    day = "2019-05-05"
    raw = source_log_root(world.config) / "cam2" / "objects_log"
    link = raw / f"{day}.csv"
    shot_dir = screenshots_root(world.config) / "cam2"
    shot_link = shot_dir / "20190505T100000+0530.jpg"
    stray = shot_dir / "20190505T100000+0530.jpg.bak"
    inner = raw / f"{day}-inner.csv"
    link.symlink_to(secret)
    shot_link.symlink_to(secret)
    stray.write_bytes(b"x")
    inner.write_text("x\n")
    try:
        zf, _ = export(api, cameras="cam2", areas="", from_date=day, to_date=day,
                       data_types="raw,screenshots,events,reports")
        assert not any(day in n or "20190505" in n for n in zf.namelist())
        assert all(b"not for export" not in zf.read(n) for n in zf.namelist())
    finally:
        for p in (link, shot_link, stray, inner):
            p.unlink()


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"cameras": "ghost"}, 404, "ghost"),
        ({"areas": "pets-view1"}, 404, "pets-view1"),
        ({"cameras": "../../etc"}, 422, "cameras"),
        ({"cameras": "pets-view1/.."}, 422, "cameras"),
        ({"areas": "campus,.."}, 422, "areas"),
        ({"from_date": "../2024-01-01"}, 422, "from_date"),
        ({"to_date": "2024-01-01/../../x"}, 422, "to_date"),
        ({"from_date": "2024-01-02", "to_date": "2024-01-01"}, 422, "from_date"),
        ({"from_date": "2020-01-01", "to_date": "2024-01-01"}, 422, "to_date"),
        ({"data_types": "raw,passwords"}, 422, "data_types"),
    ],
)
def test_get_refuses_bad_values(api, params: dict[str, str], status: int, field: str) -> None:
    assert field in str(refused(api, status, **params))


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"cameras": ["../config.ini"]}, 422, "cameras"),
        ({"cameras": ["ghost"]}, 404, "ghost"),
        ({"from_date": "2024-02-30"}, 422, "from_date"),
        ({"data_types": ["screenshots", "../../x"]}, 422, "data_types"),
        ({"path": "/etc/passwd"}, 422, "path"),
        ({"cameras": "pets-view1"}, 422, "cameras"),
    ],
)
def test_post_refuses_bad_values(api, body: dict[str, Any], status: int, field: str) -> None:
    assert field in str(refused(api, status, body))


def test_a_token_is_needed(api) -> None:
    client, _ = api
    assert client.get("/export").status_code == 401
    assert client.post("/export", json={}).status_code == 401


def test_members_are_named_after_their_own_folders(api, world: World) -> None:
    """Every member maps back to the one file it was read from, inside the data dir."""
    y, t = world.yday.isoformat(), world.today.isoformat()
    zf, _ = export(api, from_date=y, to_date=t, data_types="raw,reports,events,screenshots")
    data = world.data_dir
    for name in zf.namelist():
        kind, entity_id, rest = name.split("/", 2)
        if rest.startswith("screenshots/"):
            src = screenshots_root(world.config) / entity_id / rest.split("/", 1)[1]
        elif kind == "cameras":
            src = camera_dir(world.config, entity_id) / rest
        else:
            src = area_dir(world.config, entity_id) / rest
        assert src.resolve().is_relative_to(data)
        assert zf.read(name) == src.read_bytes(), name
    screenshots = {n for n in zf.namelist() if "/screenshots/" in n}
    assert screenshots == (shots(world, "pets-view1", 0) | shots(world, "pets-view1", 1)
                           | shots(world, "cam2", 0))
