"""``/config`` and the section sub-APIs over HTTP, against config-x86.ini in a temporary folder.

Every write goes through the real app (auth on, real users and tokens), the real writer and
the start-up validation; the file is read back from disk.
"""

from __future__ import annotations

import configparser
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.context import ApiContext
from api.routers.config import ml_model_supported
from libs.config import ConfigChange, load_config

ADMIN_PASSWORD = "admin-password-1"
VIEWER_PASSWORD = "viewer-password-1"
# Prefixes of the routes the config, camera and area routers add.
OUR_PREFIXES = (
    "/config", "/app", "/api", "/core", "/detector", "/classifier", "/tracker",
    "/source_post_processors", "/source_loggers", "/area_loggers", "/periodic_tasks",
    "/ml_model", "/cameras", "/areas",
)


@dataclass
class Api:
    app: FastAPI
    client: TestClient
    admin: dict[str, str]
    viewer: dict[str, str]
    path: Path

    @property
    def ctx(self) -> ApiContext:
        ctx: ApiContext = self.app.state.context
        return ctx

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def sections(self) -> dict[str, dict[str, str]]:
        parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(self.text())
        return {s: dict(parser.items(s)) for s in parser.sections()}

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, headers=self.admin, **kw)

    def put(self, url: str, body: Any = None, **kw: Any) -> Any:
        return self.client.put(url, json=body, headers=self.admin, **kw)

    def post(self, url: str, body: Any = None, **kw: Any) -> Any:
        return self.client.post(url, json=body, headers=self.admin, **kw)

    def delete(self, url: str, **kw: Any) -> Any:
        return self.client.delete(url, headers=self.admin, **kw)


def login(client: TestClient, user: str, password: str) -> dict[str, str]:
    r = client.post("/auth/token", data={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def make_api(x86_config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """The app on ``x86_config`` with an admin and a viewer logged in (for ``api`` fixtures)."""
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    app = create_app(x86_config)
    app.state.context.users.add("admin", ADMIN_PASSWORD, "admin")
    app.state.context.users.add("viewer", VIEWER_PASSWORD, "viewer")
    with TestClient(app) as client:
        yield Api(app, client, login(client, "admin", ADMIN_PASSWORD),
                  login(client, "viewer", VIEWER_PASSWORD), x86_config)


@pytest.fixture
def api(x86_config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from make_api(x86_config, monkeypatch)


def with_min_score(text: str, value: str) -> str:
    """``text`` with [Detector] MinScore set to ``value`` (whatever the bundled file says)."""
    new, n = re.subn(r"^MinScore = .*$", f"MinScore = {value}", text, count=1, flags=re.M)
    assert n == 1
    return new


def problems(r: Any) -> list[dict[str, Any]]:
    assert r.status_code == 422, (r.status_code, r.text)
    detail: list[dict[str, Any]] = r.json()["detail"]
    return detail


def keys_named(r: Any) -> set[str | None]:
    return {p.get("key") for p in problems(r)}


# ---------------------------------------------------------------------------------------
# Auth on every route
# ---------------------------------------------------------------------------------------


def our_routes(app: FastAPI) -> list[tuple[str, str]]:
    out = []
    for path, ops in app.openapi()["paths"].items():
        if path.startswith(OUR_PREFIXES):
            url = (path.replace("{camera_id}", "pets-view1").replace("{area_id}", "campus")
                   .replace("{name}", "social_distance"))
            out.extend((method.upper(), url) for method in ops)
    return out


def test_every_route_needs_a_token_and_writes_need_admin(api: Api) -> None:
    routes = our_routes(api.app)
    assert len(routes) >= 60
    before = api.text()
    for method, url in routes:
        r = api.client.request(method, url)
        assert r.status_code == 401, (method, url, r.status_code)
        if method != "GET":
            r = api.client.request(method, url, headers=api.viewer, json={})
            assert r.status_code == 403, (method, url, r.status_code, r.text)
    assert api.text() == before


# ---------------------------------------------------------------------------------------
# /config
# ---------------------------------------------------------------------------------------


def test_get_config_raw_sections_and_parsed_view(api: Api) -> None:
    r = api.get("/config")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sections"] == api.sections()
    assert body["sections"]["Source_0"]["Id"] == "pets-view1"
    parsed = body["parsed"]
    assert parsed["detector"]["MinScore"] == load_config(api.path).detector.min_score
    assert parsed["sources"][0]["CalibrationImagePoints"][0] == [100.0, 220.0]
    # plugin sections keep their own keys in the parsed view
    assert parsed["source_post_processors"][1]["DistThreshold"] == 200.0

    r = api.get("/config", params={"format": "ini"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == api.text()


def test_viewers_see_credentials_masked(api: Api) -> None:
    r = api.put("/app", {**api.get("/app").json()["values"],
                         "DashboardAuthorizationToken": "s3cr3t-token"})
    assert r.status_code == 200, r.text
    assert r.json()["values"]["DashboardAuthorizationToken"] == "s3cr3t-token"
    for url in ("/config", "/app"):
        text = api.client.get(url, headers=api.viewer).text
        assert "s3cr3t-token" not in text
        assert "********" in text
    assert api.client.get("/api", headers=api.viewer).json()["values"]["UseAuthToken"] == "True"
    r = api.client.get("/config", params={"format": "ini"}, headers=api.viewer)
    assert r.status_code == 403


def test_put_config_json_round_trip_keeps_comments(api: Api) -> None:
    sections = api.get("/config").json()["sections"]
    sections["Detector"]["MinScore"] = "0.5"
    sections["App"]["HasBeenConfigured"] = True
    del sections["PeriodicTask_0"]
    r = api.put("/config", {"sections": sections, "parsed": {}})
    assert r.status_code == 200, r.text
    assert "PeriodicTask_0" not in r.json()["sections"]
    text = api.text()
    assert "# x86 = ONNX Runtime on the CPU" in text
    assert "# The container says 10 fps but the clip was captured at 7 fps." in text
    assert "# Lookout configuration for a plain x86 CPU" in text
    assert "[PeriodicTask_0]" not in text
    cfg = load_config(api.path)
    assert cfg.detector.min_score == 0.5
    assert cfg.app.has_been_configured is True
    assert cfg.periodic_tasks == []


def test_put_config_text_replaces_the_file(api: Api) -> None:
    text = with_min_score(api.text(), "0.4") + "\n# added by a test\n"
    r = api.client.put("/config", content=text.encode(),
                       headers={**api.admin, "Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert api.text() == text


def test_put_config_refuses_invalid_and_leaves_file_untouched(api: Api) -> None:
    before = api.text()
    bad = with_min_score(before, "lots")
    r = api.client.put("/config", content=bad.encode(),
                       headers={**api.admin, "Content-Type": "text/plain"})
    assert {(p["section"], p["key"]) for p in problems(r)} == {("Detector", "MinScore")}
    r = api.put("/config", {"Detector": {"MinScore": "lots"}, "Source_0": {"Id": "x"}})
    assert r.status_code == 422
    r = api.put("/config", {"App": {"Nonsense": "1"}})
    assert keys_named(r) == {"Nonsense"}
    r = api.put("/config", ["not", "sections"])
    assert r.status_code == 422
    r = api.put("/config", {"App": {"Resolution": {"w": 1}}})
    assert keys_named(r) == {"Resolution"}
    r = api.client.put("/config", content=b"\xff\xfe", headers={**api.admin,
                                                                "Content-Type": "text/plain"})
    assert r.status_code == 422
    r = api.client.put("/config", content=b"{", headers={**api.admin,
                                                         "Content-Type": "application/json"})
    assert r.status_code == 422
    r = api.client.put("/config", content=b"x", headers={**api.admin,
                                                         "Content-Type": "image/png"})
    assert r.status_code == 415
    assert api.text() == before


def test_config_info(api: Api) -> None:
    r = api.client.get("/config/info", headers=api.viewer)
    assert r.status_code == 200
    info = r.json()
    assert info["version"] == api.app.version
    assert info["device"] == "x86"
    assert info["has_been_configured"] is False
    assert (info["cameras"], info["areas"]) == (1, 1)
    assert info["enabled_features"]["source_post_processors"] == [
        "objects_filtering", "social_distance", "occupancy", "line_crossing"]
    assert info["enabled_features"]["periodic_tasks"] == ["metrics"]
    assert info["processor_running"] is False


# ---------------------------------------------------------------------------------------
# Fixed sections
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, section", [
    ("app", "App"), ("api", "API"), ("core", "CORE"), ("detector", "Detector"),
    ("tracker", "Tracker"),
])
def test_section_get_put_round_trip(api: Api, path: str, section: str) -> None:
    r = api.client.get(f"/{path}", headers=api.viewer)
    assert r.status_code == 200, r.text
    values = r.json()["values"]
    r = api.put(f"/{path}", values)
    assert r.status_code == 200, r.text
    assert r.json()["section"] == section
    assert r.json()["values"] == values
    assert r.json()["reload"] == {"started": [], "restarted": [], "stopped": []}
    assert api.get(f"/{path}").json()["values"] == values


def test_detector_put_sets_and_removes_keys_and_keeps_comments(api: Api) -> None:
    values = api.get("/detector").json()["values"]
    values["MinScore"] = 0.5
    values["DeviceId"] = None  # null removes a key (its default applies)
    r = api.put("/detector", values)
    assert r.status_code == 200, r.text
    assert r.json()["values"]["MinScore"] == "0.5"
    raw = api.sections()["Detector"]
    assert raw["MinScore"] == "0.5" and "DeviceId" not in raw
    text = api.text()
    assert "# x86 = ONNX Runtime on the CPU; see README" in text
    assert ("# logged at start (x86, tflite, openvino: a one-thread session per core; "
            "others: one).\nSessions = 0\nThreads = 0") in text


@pytest.mark.parametrize("path, body, key", [
    ("detector", {"MinScore": 2}, "MinScore"),
    ("detector", {"MinScore": "high"}, "MinScore"),
    ("detector", {"ImageSize": "416"}, "ImageSize"),
    ("detector", {"ModelPath": "models/missing.onnx"}, "ModelPath"),
    ("app", {"MaxProcesses": 0}, "MaxProcesses"),
    ("app", {"TimeZone": "Mars/Olympus"}, "TimeZone"),
    ("api", {"Port": 70000}, "Port"),
    ("api", {"CorsOrigins": "*"}, "CorsOrigins"),
    ("tracker", {"Name": "IOUTracker", "MaxLost": -1}, "MaxLost"),
    ("tracker", {"Name": "NoSuchTracker"}, "Name"),
    ("core", {"QueuePort": "x"}, "QueuePort"),
    ("app", {"Bogus": "1"}, "Bogus"),
    ("app", {"Bad Key": "1"}, "Bad Key"),
])
def test_section_put_names_the_bad_key(api: Api, path: str, body: dict[str, Any],
                                       key: str) -> None:
    before = api.text()
    r = api.put(f"/{path}", body)
    assert key in keys_named(r), r.text
    assert api.text() == before


def test_classifier_absent_then_created(api: Api) -> None:
    r = api.get("/classifier")
    assert r.json() == {"section": None, "values": {}}
    r = api.put("/classifier", {"MinScore": 0.7})
    assert r.status_code == 200, r.text
    assert r.json()["section"] == "Classifier"
    assert r.json()["values"]["MinScore"] == "0.7"
    assert api.sections()["Classifier"] == {"MinScore": "0.7"}
    assert "\n\n[Classifier]\n" in api.text()


# ---------------------------------------------------------------------------------------
# Numbered sections, by Name
# ---------------------------------------------------------------------------------------


def test_parts_listed_with_sections_and_fields(api: Api) -> None:
    r = api.client.get("/source_post_processors", headers=api.viewer)
    parts = r.json()
    assert [(p["section"], p["name"]) for p in parts] == [
        ("SourcePostProcessor_0", "objects_filtering"),
        ("SourcePostProcessor_1", "social_distance"),
        ("SourcePostProcessor_2", "occupancy"),
        ("SourcePostProcessor_3", "line_crossing")]
    assert parts[1]["values"]["DistThreshold"] == "200"
    assert [p["name"] for p in api.get("/source_loggers").json()] == [
        "video_logger", "file_system_logger", "web_hook_logger"]
    assert [p["name"] for p in api.get("/area_loggers").json()] == ["file_system_logger"]
    assert api.get("/periodic_tasks/metrics").json()["values"]["LiveInterval"] == "10"


def test_part_put_by_name(api: Api) -> None:
    r = api.put("/source_post_processors/social_distance",
                {"DefaultDistMethod": "CalibratedDistance", "DistThreshold": 150})
    assert r.status_code == 200, r.text
    assert r.json()["section"] == "SourcePostProcessor_1"
    # keys not sent keep their value (Enabled was not sent)
    assert api.sections()["SourcePostProcessor_1"] == {
        "Name": "social_distance", "Enabled": "True", "DefaultDistMethod": "CalibratedDistance",
        "DistThreshold": "150"}
    assert "# Centimetres\nDistThreshold = 150" in api.text()

    before = api.text()
    r = api.put("/source_post_processors/social_distance", {"DistThreshold": "far"})
    assert keys_named(r) == {"DistThreshold"}
    r = api.put("/source_post_processors/social_distance", {"Name": "occupancy"})
    assert keys_named(r) == {"Name"}
    r = api.put("/source_post_processors/no_such_part", {})
    assert r.status_code == 404
    r = api.put("/source_loggers/social_distance", {})
    assert r.status_code == 404
    assert api.text() == before


def test_part_delete_and_add_never_renumbers(api: Api) -> None:
    r = api.delete("/source_post_processors/occupancy")
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == "SourcePostProcessor_2"
    assert api.get("/source_post_processors/occupancy").status_code == 404
    names = [(p["section"], p["name"]) for p in api.get("/source_post_processors").json()]
    assert names == [("SourcePostProcessor_0", "objects_filtering"),
                     ("SourcePostProcessor_1", "social_distance"),
                     ("SourcePostProcessor_3", "line_crossing")]
    r = api.post("/source_post_processors", {"Name": "occupancy", "Enabled": False})
    assert r.status_code == 201, r.text
    assert r.json()["section"] == "SourcePostProcessor_4"
    assert r.json()["enabled"] is False
    r = api.post("/source_post_processors", {"Name": "occupancy"})
    assert r.status_code == 409
    r = api.post("/source_post_processors", {"Name": "no_such_part"})
    assert keys_named(r) == {"Name"}
    r = api.post("/source_post_processors", {"Enabled": True})
    assert keys_named(r) == {"Name"}


def test_duplicate_part_names_are_ambiguous(api: Api) -> None:
    text = api.text() + "\n[SourceLogger_9]\nName = video_logger\nEnabled = False\n"
    assert api.client.put("/config", content=text.encode(), headers={
        **api.admin, "Content-Type": "text/plain"}).status_code == 200
    r = api.put("/source_loggers/video_logger", {"Enabled": True})
    assert r.status_code == 409
    assert "SourceLogger_0" in r.json()["detail"] and "SourceLogger_9" in r.json()["detail"]


# ---------------------------------------------------------------------------------------
# /ml_model
# ---------------------------------------------------------------------------------------


def test_ml_model_defaults_and_overrides(api: Api) -> None:
    r = api.client.get("/ml_model/pets-view1", headers=api.viewer)
    assert r.status_code == 200, r.text
    body = r.json()
    det = load_config(api.path).detector
    assert body["values"] == {"name": det.name, "model_path": det.model_path,
                              "image_size": list(det.image_size), "class_id": det.class_id,
                              "min_score": det.min_score, "nms_threshold": det.nms_threshold}
    assert body["overrides"] == [] and body["device"] == "x86"
    assert api.get("/ml_model/nobody").status_code == 404
    assert [m["camera_id"] for m in api.get("/ml_model").json()] == ["pets-view1"]
    before = api.text()
    r = api.put("/ml_model/pets-view1", {"min_score": 0.6})
    if not ml_model_supported():
        assert r.status_code == 501
        assert "DetectorMinScore" in r.json()["detail"]
        assert api.text() == before
        return
    assert r.status_code == 200, r.text
    assert r.json()["overrides"] == ["min_score"]
    assert r.json()["values"]["min_score"] == 0.6
    assert api.sections()["Source_0"]["DetectorMinScore"] == "0.6"
    r = api.put("/ml_model/pets-view1", {"min_score": 1.5})
    assert keys_named(r) == {"DetectorMinScore"}
    r = api.put("/ml_model/pets-view1", {"model_path": "models/missing.onnx"})
    assert keys_named(r) == {"DetectorModelPath"}
    r = api.delete("/ml_model/pets-view1")
    assert r.json()["overrides"] == []
    assert "DetectorMinScore" not in api.sections()["Source_0"]


# ---------------------------------------------------------------------------------------
# INI injection
# ---------------------------------------------------------------------------------------

INJECTIONS = [
    "x\n[Source_9]\nId = evil",
    "x\r[Source_9]\rId = evil",
    "x\r\nId = evil",
    "x\rId = evil",
    "evil\x00",
    "a\x1b[2J",
    "x\u2028[Source_9]\u2028Id = evil",
    "x\x85Id = evil",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_injected_values_are_refused_byte_identical(api: Api, value: str) -> None:
    before = api.text()
    attempts = [
        api.put("/app", {"DashboardURL": value}),
        api.put("/source_post_processors/social_distance", {"DefaultDistMethod": value}),
        api.put("/config", {**api.get("/config").json()["sections"], "App": {"Encoder": value}}),
        api.put("/cameras/pets-view1", {"Name": value}),
        api.put("/cameras/pets-view1", {"Tags": [value]}),
        api.post("/cameras", {"Name": value, "VideoPath": "data/pets09_s2l1/vtest.avi"}),
        api.post("/cameras", {"Id": value, "VideoPath": "data/pets09_s2l1/vtest.avi"}),
        api.put("/areas/campus", {"Name": value}),
        api.post("/areas", {"Name": "ok", "Cameras": ["pets-view1"], "Emails": value}),
    ]
    for r in attempts:
        assert r.status_code == 422, (r.status_code, r.text)
    assert api.text() == before


@pytest.mark.parametrize("body", [
    {"Evil\n[Source_9]": {"Id": "evil"}},
    {"App]\n[Source_9": {"Id": "evil"}},
    {"App": {"Key\nId": "evil"}},
    {"App": {"Key = x\nId": "evil"}},
    {"App": {"[Source_9]": "x"}},
])
def test_injected_section_and_key_names_are_refused(api: Api, body: dict[str, Any]) -> None:
    before = api.text()
    sections = api.get("/config").json()["sections"]
    r = api.put("/config", {**sections, **body})
    assert r.status_code == 422, r.text
    r = api.put("/app", next(iter(body.values())))
    assert r.status_code == 422, r.text
    assert api.text() == before


def test_header_looking_values_stay_values(api: Api) -> None:
    sections_before = set(api.sections())
    r = api.put("/cameras/pets-view1", {"Name": "[Source_9] Id = evil"})
    assert r.status_code == 200, r.text
    r = api.put("/app", {**api.get("/app").json()["values"], "DashboardURL": "[Source_9]"})
    assert r.status_code == 200, r.text
    raw = api.sections()
    assert set(raw) == sections_before
    assert raw["Source_0"]["Name"] == "[Source_9] Id = evil"
    assert raw["App"]["DashboardURL"] == "[Source_9]"
    assert [s.id for s in load_config(api.path).sources] == ["pets-view1"]


# ---------------------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------------------


def run_threads(n: int, fn: Any) -> list[Any]:
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_100_concurrent_whole_file_writes_leave_one_of_them(api: Api) -> None:
    base = api.text()
    texts = [with_min_score(base, f"0.{i + 100}") + f"# write {i}\n"
             for i in range(100)]

    def write(i: int) -> int:
        r = api.client.put("/config", content=texts[i].encode(),
                           headers={**api.admin, "Content-Type": "text/plain"})
        return int(r.status_code)

    assert run_threads(100, write) == [200] * 100
    final = api.text()
    assert final in texts
    load_config(api.path)


def test_100_concurrent_writes_to_different_keys_all_land(api: Api) -> None:
    keys = ["Name", "Tags", "OccupancyThreshold", "NotifyEveryMinutes", "ViolationThreshold",
            "DailyReportTime", "FrameRate", "Emails", "EnableSlackNotifications", "DailyReport"]

    def value(i: int) -> Any:
        key = keys[i % len(keys)]
        return {"Name": f"name {i}", "Tags": f"t{i}", "OccupancyThreshold": i,
                "NotifyEveryMinutes": i, "ViolationThreshold": i,
                "DailyReportTime": f"{i % 24:02d}:{i % 60:02d}", "FrameRate": i + 1,
                "Emails": f"u{i}@example.com", "EnableSlackNotifications": i % 2 == 0,
                "DailyReport": i % 2 == 1}[key]

    def write(i: int) -> int:
        r = api.put("/cameras/pets-view1", {keys[i % len(keys)]: value(i)})
        return int(r.status_code)

    before = api.sections()["Source_0"]
    assert run_threads(100, write) == [200] * 100
    raw = api.sections()["Source_0"]
    from libs.config.models import ini_value

    for k, key in enumerate(keys):
        written = {v if isinstance(v := value(i), str) else ini_value(v)
                   for i in range(k, 100, len(keys))}
        assert raw[key] in written, key
    untouched = {k: v for k, v in before.items() if k not in keys}
    assert {k: raw[k] for k in untouched} == untouched
    assert "# Four floor points clicked in the image" in api.text()
    load_config(api.path)


def test_concurrent_saves_through_the_context(api: Api) -> None:
    """ctx.save from many threads: every change lands (the writer serialises them)."""
    import asyncio

    def save(i: int) -> None:
        asyncio.run(api.ctx.save([ConfigChange("App", {"SlackChannel": f"c{i}"}),
                                  ConfigChange(f"SourceLogger_x{i}", {"Name": "video_logger",
                                                                      "Enabled": "False"})]))

    run_threads(40, save)
    raw = api.sections()
    assert {f"SourceLogger_x{i}" for i in range(40)} <= set(raw)
    assert raw["App"]["SlackChannel"] in {f"c{i}" for i in range(40)}
    load_config(api.path)


# ---------------------------------------------------------------------------------------
# Bad input is 4xx, never 500
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, url, body", [
    ("PUT", "/app", "not an object"),
    ("PUT", "/app", {"MaxProcesses": [1, {"a": 2}]}),
    ("PUT", "/detector", {"ImageSize": [[1, 2], [3]]}),
    ("PUT", "/ml_model/pets-view1", {"min_score": "x", "unknown": 1}),
    ("PUT", "/source_post_processors/social_distance", None),
    ("POST", "/periodic_tasks", {"Name": 5}),
    ("PUT", "/config", None),
    ("PUT", "/config", {"App": "x"}),
    ("PUT", "/config", {"App": {"K": [{"a": 1}]}}),
])
def test_bad_bodies_are_422(api: Api, method: str, url: str, body: Any) -> None:
    before = api.text()
    r = api.client.request(method, url, json=body, headers=api.admin)
    assert r.status_code in (422, 501), (r.status_code, r.text)
    assert api.text() == before
