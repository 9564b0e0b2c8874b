"""``/areas`` over HTTP: CRUD with stable ids, camera membership, occupancy threshold and
structured occupancy rules stored as the INI OccupancyRules string."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from libs.config import load_config
from libs.config.occupancy_rules import occupancy_limit, parse_occupancy_rules
from tests.test_api_cameras import TUD, section_text
from tests.test_api_config import Api, keys_named, make_api

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]


@pytest.fixture
def api(x86_config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from make_api(x86_config, monkeypatch)


def add_camera(api: Api, camera_id: str) -> None:
    r = api.post("/cameras", {"Id": camera_id, "VideoPath": TUD})
    assert r.status_code == 201, r.text


def test_crud_round_trip_with_stable_ids(api: Api) -> None:
    add_camera(api, "tud")
    r = api.post("/areas", {"Name": "Front Lobby", "Cameras": ["pets-view1", "tud"],
                            "occupancy_threshold": 12, "Emails": "a@example.com"})
    assert r.status_code == 201, r.text
    area = r.json()
    assert (area["id"], area["section"]) == ("front-lobby", "Area_front-lobby")
    assert area["cameras"] == ["pets-view1", "tud"] and area["occupancy_threshold"] == 12
    assert api.sections()["Area_front-lobby"] == {
        "Id": "front-lobby", "Name": "Front Lobby", "Cameras": "pets-view1,tud",
        "OccupancyThreshold": "12", "Emails": "a@example.com"}
    listed = api.client.get("/areas", headers=api.viewer).json()
    assert [a["id"] for a in listed] == ["campus", "front-lobby"]

    r = api.put("/areas/front-lobby", {"Name": "Lobby", "OccupancyThreshold": 20,
                                       "rules": "ignored", "section": "ignored"})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["occupancy_threshold"]) == ("Lobby", 20)
    assert r.json()["cameras"] == ["pets-view1", "tud"]
    assert api.get("/areas/front-lobby").json()["name"] == "Lobby"

    before = api.text()
    r = api.delete("/areas/front-lobby")
    assert r.status_code == 200 and r.json()["section"] == "Area_front-lobby"
    assert api.get("/areas/front-lobby").status_code == 404
    assert section_text(api.text(), "Area_0") == section_text(before, "Area_0")
    assert api.delete("/areas/front-lobby").status_code == 404


def test_delete_never_renumbers_other_areas(api: Api) -> None:
    for name in ("North", "South", "East"):
        assert api.post("/areas", {"Name": name, "Cameras": "pets-view1"}).status_code == 201
    before = api.text()
    assert api.delete("/areas/south").status_code == 200
    ids = {a["id"]: a["section"] for a in api.get("/areas").json()}
    assert ids == {"campus": "Area_0", "north": "Area_north", "east": "Area_east"}
    for section in ("Area_0", "Area_north", "Area_east", "Source_0"):
        assert section_text(api.text(), section) == section_text(before, section)
    assert api.post("/areas", {"Id": "north", "Cameras": "pets-view1"}).status_code == 409
    assert api.post("/areas", {"Name": "North", "Cameras": "pets-view1"}).json()["id"] == \
        "north-2"


@pytest.mark.parametrize("body, key", [
    ({"Name": "x"}, "Cameras"),
    ({"Cameras": []}, "Cameras"),
    ({"Cameras": "nobody"}, "Cameras"),
    ({"Cameras": "pets-view1", "OccupancyThreshold": -1}, "OccupancyThreshold"),
    ({"Cameras": "pets-view1", "OccupancyRules": "Someday 09:00-10:00 5"}, "OccupancyRules"),
    ({"Cameras": "pets-view1", "DailyReportTime": "7pm"}, "DailyReportTime"),
    ({"Cameras": "pets-view1", "Id": "a/b"}, "Id"),
    ({"Cameras": "pets-view1", "Shape": "round"}, "Shape"),
])
def test_create_names_the_bad_field(api: Api, body: dict[str, Any], key: str) -> None:
    before = api.text()
    assert key in keys_named(api.post("/areas", body))
    assert api.text() == before


def test_update_names_the_bad_field_and_keeps_the_id(api: Api) -> None:
    before = api.text()
    assert keys_named(api.put("/areas/campus", {"OccupancyThreshold": "many"})) == {
        "OccupancyThreshold"}
    assert keys_named(api.put("/areas/campus", {"Id": "elsewhere"})) == {"Id"}
    assert api.put("/areas/nowhere", {"Name": "x"}).status_code == 404
    assert api.text() == before


def test_camera_membership(api: Api) -> None:
    add_camera(api, "tud")
    r = api.put("/areas/campus/cameras", {"cameras": ["tud", "pets-view1", "tud"]})
    assert r.status_code == 200, r.text
    assert r.json()["cameras"] == ["tud", "pets-view1"]
    assert api.sections()["Area_0"]["Cameras"] == "tud,pets-view1"
    before = api.text()
    r = api.put("/areas/campus/cameras", {"cameras": ["pets-view1", "ghost"]})
    detail = r.json()["detail"]
    assert r.status_code == 422 and detail[0]["key"] == "Cameras" and "ghost" in detail[0]["msg"]
    for bad in ({"cameras": []}, {"cameras": ["a b"]}, {"cameras": ["../x"]},
                {"cameras": "pets-view1"}, {}):
        assert api.put("/areas/campus/cameras", bad).status_code == 422, bad
    assert api.text() == before
    # the camera cannot go while the area holds it; it can once the area lets it go
    assert api.delete("/cameras/tud").status_code == 409
    assert api.put("/areas/campus/cameras", {"cameras": ["pets-view1"]}).status_code == 200
    assert api.delete("/cameras/tud").status_code == 200


def test_rules_read_as_structured_json(api: Api) -> None:
    r = api.client.get("/areas/campus/occupancy_rules", headers=api.viewer)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "area_id": "campus", "occupancy_threshold": 10,
        "occupancy_rules": "Mon-Fri 08:00-18:00 8; Sat,Sun 10:00-16:00 6",
        "rules": [{"days": WEEKDAYS, "start": "08:00", "end": "18:00", "limit": 8},
                  {"days": ["Sat", "Sun"], "start": "10:00", "end": "16:00", "limit": 6}]}


def test_rules_written_as_the_ini_string(api: Api) -> None:
    rules = [{"days": ["Tue", "Mon"], "start": "09:00", "end": "12:00", "limit": 5},
             {"days": ["Mon"], "start": "12:00", "end": "24:00", "limit": 3},
             {"days": ["Sun"], "start": "00:00", "end": "06:30", "limit": 0}]
    r = api.put("/areas/campus/occupancy_rules", rules)
    assert r.status_code == 200, r.text
    stored = "Mon,Tue 09:00-12:00 5; Mon 12:00-24:00 3; Sun 00:00-06:30 0"
    assert r.json()["occupancy_rules"] == stored
    assert api.sections()["Area_0"]["OccupancyRules"] == stored
    assert r.json()["rules"][0]["days"] == ["Mon", "Tue"]
    # the processor reads the same rules
    area = load_config(api.path).areas[0]
    parsed = parse_occupancy_rules(area.occupancy_rules)
    assert occupancy_limit(parsed, 10, datetime(2024, 3, 4, 10, 0)) == 5  # a Monday
    assert occupancy_limit(parsed, 10, datetime(2024, 3, 4, 23, 59)) == 3
    assert occupancy_limit(parsed, 10, datetime(2024, 3, 6, 10, 0)) == 10  # Wednesday
    assert api.get("/areas/campus/occupancy_rules").json()["rules"] == [
        {"days": ["Mon", "Tue"], "start": "09:00", "end": "12:00", "limit": 5}, *rules[1:]]
    # comments elsewhere survive
    assert "# Four floor points clicked in the image" in api.text()
    r = api.put("/areas/campus/occupancy_rules", [])
    assert r.json()["rules"] == [] and api.sections()["Area_0"]["OccupancyRules"] == ""


@pytest.mark.parametrize("rules, field", [
    ([{"days": ["Funday"], "start": "09:00", "end": "10:00", "limit": 1}], "days"),
    ([{"days": ["monday"], "start": "09:00", "end": "10:00", "limit": 1}], "days"),
    ([{"days": [], "start": "09:00", "end": "10:00", "limit": 1}], "days"),
    ([{"days": ["Mon", "Mon"], "start": "09:00", "end": "10:00", "limit": 1}], "days"),
    ([{"days": ["Mon"], "start": "25:00", "end": "26:00", "limit": 1}], "start"),
    ([{"days": ["Mon"], "start": "9:00", "end": "10:00", "limit": 1}], "start"),
    ([{"days": ["Mon"], "start": "09:00", "end": "09:60", "limit": 1}], "end"),
    ([{"days": ["Mon"], "start": "10:00", "end": "09:00", "limit": 1}], "end"),
    ([{"days": ["Mon"], "start": "10:00", "end": "10:00", "limit": 1}], "end"),
    ([{"days": ["Mon"], "start": "09:00", "end": "10:00", "limit": -1}], "limit"),
    ([{"days": ["Mon"], "start": "09:00", "end": "10:00", "limit": "x"}], "limit"),
    ([{"days": ["Mon"], "start": "09:00", "end": "10:00"}], "limit"),
    ([{"days": ["Mon"], "start": "09:00", "end": "10:00", "limit": 1, "extra": 1}], "extra"),
    ([{"days": ["Mon", "Tue"], "start": "09:00", "end": "12:00", "limit": 1},
      {"days": ["Tue"], "start": "11:00", "end": "13:00", "limit": 2}], "start"),
    ([{"days": ["Mon"], "start": "09:00\n[Source_9]", "end": "10:00", "limit": 1}], "start"),
])
def test_bad_rules_are_422_naming_the_field(api: Api, rules: list[dict[str, Any]],
                                            field: str) -> None:
    before = api.text()
    r = api.put("/areas/campus/occupancy_rules", rules)
    assert r.status_code == 422, r.text
    locs = [e["loc"] for e in r.json()["detail"]]
    assert any(field in loc for loc in locs), locs
    assert api.text() == before


def test_overlap_message_names_the_day(api: Api) -> None:
    r = api.put("/areas/campus/occupancy_rules", [
        {"days": ["Sat", "Sun"], "start": "10:00", "end": "16:00", "limit": 6},
        {"days": ["Sun"], "start": "15:59", "end": "18:00", "limit": 2}])
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", 1, "start"]
    assert "Sun" in error["msg"] and "rule 0" in error["msg"]
    # touching ranges do not overlap
    r = api.put("/areas/campus/occupancy_rules", [
        {"days": ["Sun"], "start": "10:00", "end": "16:00", "limit": 6},
        {"days": ["Sun"], "start": "16:00", "end": "18:00", "limit": 2}])
    assert r.status_code == 200, r.text


def test_threshold_through_put(api: Api) -> None:
    assert api.put("/areas/campus", {"OccupancyThreshold": 0}).json()["occupancy_threshold"] == 0
    assert api.sections()["Area_0"]["OccupancyThreshold"] == "0"
    assert keys_named(api.put("/areas/campus", {"occupancy_threshold": -5})) == {
        "OccupancyThreshold"}


def test_area_injection_refused(api: Api) -> None:
    before = api.text()
    for value in ("x\n[Area_9]\nId = evil", "x\rCameras = evil", "x\u2028[Area_9]"):
        assert api.put("/areas/campus", {"Name": value}).status_code == 422
        assert api.post("/areas", {"Name": value, "Cameras": "pets-view1"}).status_code == 422
        assert api.post("/areas", {"Id": value, "Cameras": "pets-view1"}).status_code == 422
    assert api.text() == before
