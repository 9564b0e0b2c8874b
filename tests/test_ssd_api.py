"""The API of Smart Social Distancing's README (the reference system), called as its users
call it: each endpoint with the reference's method and body, the answer's shape checked.

In process (the real app through ``TestClient``) over data written by the real loggers and
report recomputation of ``tests/test_api_metrics.py``, with the area ``campus`` made of both
cameras so that area sums add two cameras up.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import SECRET_VARIABLES, load_secret
from api.routers import metrics as metrics_router
from api.ssd import METRIC_ALIASES
from libs.config import load_config
from libs.integrations import slack
from tests.test_api_metrics import World, write_config, write_data

PASSWORD = "password123"
SD = "/metrics/cameras/social-distancing"


@pytest.fixture(scope="module")
def world(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOOKOUT_DATA_DIR", raising=False)
        path = write_config(tmp_path_factory.mktemp("ssd_api"), shared)
        text = path.read_text()
        assert "Cameras = pets-view1\n" in text
        path.write_text(text.replace("Cameras = pets-view1\n", "Cameras = pets-view1,cam2\n"))
        yield write_data(path)


class Api:
    def __init__(self, client: TestClient, world: World) -> None:
        self.client = client
        self.world = world
        users = client.app.state.context.users  # type: ignore[attr-defined]
        users.add("viewer1", PASSWORD, "viewer")
        users.add("admin1", PASSWORD, "admin")
        self.viewer = self.bearer("viewer1")
        self.admin = self.bearer("admin1")

    def bearer(self, user: str, password: str = PASSWORD) -> dict[str, str]:
        r = self.client.put("/auth/access_token", json={"user": user, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def get(self, url: str, status: int = 200, **params: Any) -> Any:
        r = self.client.get(url, params=params, headers=self.viewer)
        assert r.status_code == status, (url, r.text)
        return r.json()


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[Api]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOOKOUT_DATA_DIR", raising=False)
        for name in SECRET_VARIABLES:
            mp.delenv(name, raising=False)
        mp.delenv(slack.ENV_WEBHOOK_URL, raising=False)
        with TestClient(create_app(world.config_path)) as client:
            yield Api(client, world)


def entity(body: dict[str, Any], entity_id: str) -> dict[str, Any]:
    return next(e for e in body["entities"] if e["id"] == entity_id)


# ---------------------------------------------------------------------------------------
# /auth
# ---------------------------------------------------------------------------------------


def test_first_user_is_not_given_to_whoever_calls_first(x86_config: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with TestClient(create_app(x86_config)) as client:
        body = {"user": "owner", "password": PASSWORD}
        r = client.post("/auth/create_api_user", json=body)
        assert r.status_code == 401 and "lookout create-user" in r.json()["detail"]
        assert client.app.state.context.users.list() == []  # type: ignore[attr-defined]


def test_auth_calls_and_the_token_field(api: Api) -> None:
    client = api.client
    body = {"user": "ssd-user", "password": "another password"}
    assert client.post("/auth/create_api_user", json=body).status_code == 401
    assert client.post("/auth/create_api_user", json=body,
                       headers=api.viewer).status_code == 403
    r = client.post("/auth/create_api_user", json=body, headers=api.admin)
    assert r.status_code == 204, r.text
    r = client.post("/auth/create_api_user", json=body, headers=api.admin)
    assert r.status_code == 400 and "already exists" in r.json()["detail"]

    r = client.put("/auth/access_token", json=body)
    assert r.status_code == 200, r.text
    token = r.json()
    assert set(token) >= {"token", "access_token", "token_type", "expires_in"}
    assert token["token"] == token["access_token"]
    assert token["expires_in"] == load_config(api.world.config_path).api.token_expire_minutes * 60
    headers = {"Authorization": f"Bearer {token['token']}"}
    me = client.get("/auth/me", headers=headers).json()
    assert (me["username"], me["role"]) == ("ssd-user", "admin")  # the reference's only user
    wrong = client.put("/auth/access_token", json={**body, "password": "wrong password"})
    assert wrong.status_code == 401
    stored = (api.world.data_dir / "auth" / "users.json").read_text()
    assert "another password" not in stored and "scrypt$" in stored  # hashed


def test_token_lifetime_comes_from_the_config_without_a_restart(api: Api) -> None:
    path = api.world.config_path
    text = path.read_text()
    assert "[API]\n" in text and "TokenExpireMinutes" not in text
    try:
        path.write_text(text.replace("[API]\n", "[API]\nTokenExpireMinutes = 10080\n"))
        r = api.client.put("/auth/access_token", json={"user": "viewer1", "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert r.json()["expires_in"] == 7 * 24 * 3600  # the reference's week, when asked for
        claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 7 * 24 * 3600
    finally:
        path.write_text(text)
    r = api.client.put("/auth/access_token", json={"user": "viewer1", "password": PASSWORD})
    assert r.json()["expires_in"] == 60 * 60  # Lookout's default: an hour


def test_secret_access_key_is_the_fallback_signing_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own, reference = "L" * 40, "S" * 40
    monkeypatch.delenv("LOOKOUT_SECRET_KEY", raising=False)
    monkeypatch.setenv("SECRET_ACCESS_KEY", reference)
    assert load_secret(tmp_path / "secret.key") == reference.encode()
    assert not (tmp_path / "secret.key").exists()
    monkeypatch.setenv("LOOKOUT_SECRET_KEY", own)  # Lookout's own variable wins
    assert load_secret(tmp_path / "secret.key") == own.encode()
    monkeypatch.delenv("LOOKOUT_SECRET_KEY")
    monkeypatch.setenv("SECRET_ACCESS_KEY", "short")
    with pytest.raises(ValueError, match="SECRET_ACCESS_KEY must be at least 32"):
        load_secret(tmp_path / "secret.key")


def test_a_token_is_signed_with_secret_access_key(x86_config: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOKOUT_SECRET_KEY", raising=False)
    monkeypatch.setenv("SECRET_ACCESS_KEY", "k" * 32)
    with TestClient(create_app(x86_config)) as client:
        client.app.state.context.users.add("u1", PASSWORD, "viewer")  # type: ignore[attr-defined]
        r = client.put("/auth/access_token", json={"user": "u1", "password": PASSWORD})
        assert r.status_code == 200, r.text
        claims = jwt.decode(r.json()["token"], "k" * 32, algorithms=["HS256"], issuer="lookout")
        assert claims["sub"] == "u1"


# ---------------------------------------------------------------------------------------
# PUT /export
# ---------------------------------------------------------------------------------------


def put_export(api: Api, body: dict[str, Any], status: int = 200) -> Any:
    r = api.client.put("/export", json=body, headers=api.viewer)
    assert r.status_code == status, r.text
    if status != 200:
        return r.json()["detail"]
    assert r.headers["content-type"] == "application/zip"
    return sorted(zipfile.ZipFile(io.BytesIO(r.content)).namelist())


def test_put_export_takes_the_reference_body(api: Api) -> None:
    w = api.world
    dates = {"from_date": w.yday.isoformat(), "to_date": w.today.isoformat()}
    everything = put_export(api, {"all_cameras": True, "all_areas": True,
                                  "data_types": ["all_data"], **dates})
    r = api.client.post("/export", json=dates, headers=api.viewer)  # Lookout's own call
    assert everything == sorted(zipfile.ZipFile(io.BytesIO(r.content)).namelist())
    assert any("/objects_log/" in n for n in everything)
    assert any("/line_crossings/" in n for n in everything)

    occupancy = put_export(api, {"areas": ["campus"], "data_types": ["occupancy"], **dates})
    assert occupancy and all("/reports/occupancy/" in n for n in occupancy)
    # the cameras of the area come too, as in the reference
    assert {n.split("/")[1] for n in occupancy if n.startswith("cameras/")} == {
        "pets-view1", "cam2"}
    assert any(n.startswith("areas/campus/") for n in occupancy)

    in_out = put_export(api, {"cameras": ["pets-view1"], "data_types": ["in-out"], **dates})
    assert in_out and all(n.startswith("cameras/pets-view1/line_crossings/") for n in in_out)
    raw = put_export(api, {"cameras": ["cam2"], "data_types": ["raw_data"]})  # no dates: all
    assert raw == [f"cameras/cam2/objects_log/{w.yday.isoformat()}.csv"]

    assert put_export(api, {"data_types": ["all_data"]}, 422)[0]["loc"] == ["body", "cameras"]
    assert put_export(api, {"all_cameras": True, "data_types": ["raw_data"],
                            "from_date": w.yday.isoformat()}, 422)[0]["loc"][-1] == "from_date"
    put_export(api, {"all_cameras": True, "data_types": ["videos"]}, 422)
    assert "no camera" in put_export(api, {"cameras": ["nope"], "data_types": ["raw_data"]},
                                     404)


# ---------------------------------------------------------------------------------------
# POST /ml_model/{camera_id}
# ---------------------------------------------------------------------------------------


def test_post_ml_model_sets_the_camera_detector(api: Api) -> None:
    det = load_config(api.world.config_path).detector
    body = {"device": det.device.upper(), "name": det.name,
            "image_size": f"{det.image_size[0]},{det.image_size[1]},3", "min_score": 0.4}
    url = "/ml_model/cam2"
    assert api.client.post(url, json=body, headers=api.viewer).status_code == 403
    r = api.client.post(url, json=body, params={"reboot_processor": "true"},
                        headers=api.admin)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["camera_id"] == "cam2" and out["values"]["min_score"] == 0.4
    assert "min_score" in out["overrides"] and "class_id" not in out["overrides"]
    assert load_config(api.world.config_path).source("cam2").detector_min_score == 0.4
    r = api.client.post(url, json={**body, "device": "Jetson"}, headers=api.admin)
    assert r.status_code == 422 and "Device = x86" in r.json()["detail"][0]["msg"]
    r = api.client.post(url, json={**body, "name": "openpifpaf"}, headers=api.admin)
    assert r.status_code == 422 and r.json()["detail"][0]["key"] == "DetectorName"
    r = api.client.post(url, json={**body, "image_size": "300,300"}, headers=api.admin)
    assert r.status_code == 422
    assert api.client.delete(url, headers=api.admin).status_code == 200


# ---------------------------------------------------------------------------------------
# /slack
# ---------------------------------------------------------------------------------------


def test_slack_calls_with_the_reference_methods(api: Api) -> None:
    client, admin = api.client, api.admin
    assert api.get("/slack/is-enabled")["enabled"] is False
    r = client.post("/slack/enable", json={"user_token": "xoxp-1234"}, headers=admin)
    assert r.status_code == 422 and "incoming webhook" in r.json()["detail"][0]["msg"]
    assert r.json()["detail"][0]["loc"] == ["body", "user_token"]
    hook = {"webhook_url": "https://hooks.slack.com/services/T0/B0/secret", "channel": "ops"}
    assert client.post("/slack/enable", json=hook, headers=api.viewer).status_code == 403
    assert client.post("/slack/enable", json=hook, headers=admin).status_code == 204
    state = api.get("/slack/is-enabled")
    assert state["enabled"] is True and state["channel"] == "ops"
    r = client.post("/slack/add-channel", params={"channel": "alerts"}, headers=admin)
    assert r.status_code == 200 and r.json() == {"channel": "alerts"}
    assert client.post("/slack/add-channel", headers=admin).status_code == 422
    assert client.delete("/slack/revoke", headers=admin).status_code == 204
    assert api.get("/slack/is-enabled")["enabled"] is False


# ---------------------------------------------------------------------------------------
# Metrics: area sums, weeks, the reference names
# ---------------------------------------------------------------------------------------


def test_areas_have_every_camera_metric_that_adds_up(api: Api) -> None:
    kinds = api.get("/metrics/kinds")
    camera = {k["kind"] for k in kinds if k["entity_type"] == "camera"}
    area = {k["kind"] for k in kinds if k["entity_type"] == "area"}
    assert area == camera  # every camera metric adds up; occupancy is the area's own
    summed = [m for m in metrics_router.METRICS if isinstance(m, metrics_router.AreaSumMetric)]
    assert {m.name for m in summed} == camera - {
        m.name for m in metrics_router.METRICS
        if isinstance(m, metrics_router.ReportMetric) and m.entity.name == "area"}
    for metric in summed:
        for period in metric.periods:
            body = api.get(f"/metrics/areas/{metric.name}/{period}", areas="campus")
            assert body["columns"] == metric.columns(period)
            assert not any(c.startswith("Max") for c in body["columns"])
            assert all(list(row) == body["columns"] for row in entity(body, "campus")["rows"])


def test_area_sums_add_up_the_cameras(api: Api) -> None:
    w = api.world
    span = {"from_date": w.yday.isoformat(), "to_date": w.today.isoformat()}
    cams = api.get(f"{SD}/daily", **span)
    area = entity(api.get("/metrics/areas/social-distancing/daily", areas="campus", **span),
                  "campus")
    expected: dict[str, dict[str, Any]] = {}
    for cam in ("pets-view1", "cam2"):
        for row in entity(cams, cam)["rows"]:
            got = expected.setdefault(row["Date"], {"Cameras": 0, "SumPeople": 0,
                                                    "AvgPeople": 0.0, "Samples": 0})
            got["Cameras"] += 1
            for key in ("SumPeople", "AvgPeople", "Samples"):
                got[key] += row[key]
    assert {r["Date"]: {k: r[k] for k in ("Cameras", "SumPeople", "AvgPeople", "Samples")}
            for r in area["rows"]} == expected
    # yesterday both cameras had people at 09:00: 2 and 1 people, so the area's mean is 3
    assert expected[w.yday.isoformat()]["Cameras"] == 2
    assert area["totals"]["SumPeople"] == sum(e["SumPeople"] for e in expected.values())
    lines = entity(api.get("/metrics/areas/line-crossings/daily", areas="campus", **span),
                   "campus")
    assert {r["Line"] for r in lines["rows"]} == {"pets-view1/x384", "pets-view1/door"}
    assert lines["totals"]["In"] == 4 and lines["totals"]["Out"] == 2


def test_weeks_counts_back_from_yesterday(api: Api) -> None:
    w = api.world
    body = api.get(f"{SD}/weekly", cameras="pets-view1", weeks=1, from_date="2001-01-01")
    assert body["weeks"] == 1
    assert (body["from_date"], body["to_date"]) == (
        (w.yday - timedelta(days=6)).isoformat(), w.yday.isoformat())
    rows = entity(body, "pets-view1")["rows"]
    # yesterday's 12 samples (36 people) only: today is not in the span
    assert [(r["Week"], r["Samples"], r["SumPeople"]) for r in rows] == [
        ((w.yday - timedelta(days=6)).isoformat(), 12, 36)]
    two = api.get(f"{SD}/weekly", cameras="pets-view1", weeks=2)
    assert two["from_date"] == (w.yday - timedelta(days=13)).isoformat()
    assert [r["Week"] for r in entity(two, "pets-view1")["rows"]] == [
        (w.yday - timedelta(days=6)).isoformat()]
    area = entity(api.get("/metrics/areas/occupancy/weekly", weeks=1), "campus")["rows"]
    daily = entity(api.get("/metrics/areas/occupancy/daily", from_date=w.yday.isoformat(),
                           to_date=w.yday.isoformat()), "campus")["rows"]
    assert [(r["Samples"], r["SumOccupancy"], r["OverCapacitySamples"]) for r in area] == [
        (r["Samples"], r["SumOccupancy"], r["OverCapacitySamples"]) for r in daily]
    summed = entity(api.get("/metrics/areas/social-distancing/weekly", weeks=1), "campus")
    assert [(r["Week"], r["Cameras"], r["SumPeople"]) for r in summed["rows"]] == [
        ((w.yday - timedelta(days=6)).isoformat(), 2, 36 + 6)]  # cam2: 6 samples of 1
    calendar = api.get(f"{SD}/weekly", cameras="pets-view1", weeks=0)
    assert "weeks" not in calendar
    api.get(f"{SD}/weekly", 422, weeks=-1)
    api.get(f"{SD}/weekly", 422, weeks="many")


def test_reference_metric_names_answer_as_lookout_names(api: Api) -> None:
    w = api.world
    params = {"date": w.yday.isoformat(), "from_date": w.yday.isoformat(),
              "to_date": w.today.isoformat()}
    kinds = api.get("/metrics/kinds")
    served = 0
    for alias, target in METRIC_ALIASES.items():
        listed = [k for k in kinds if k["kind"] == target]
        assert listed, target
        for kind in listed:
            assert f"/metrics/{kind['path'].split('/')[2]}/{alias}" in kind["aliases"]
            for period in kind["periods"]:
                own = api.get(f"{kind['path']}/{period}", **params)
                assert api.get(f"/metrics/{kind['path'].split('/')[2]}/{alias}/{period}",
                               **params) == own
                served += 1
    assert served >= 2 * len(METRIC_ALIASES)
    hourly = api.get("/metrics/cameras/in-out/hourly", cameras="pets-view1",
                     date=w.yday.isoformat())
    assert hourly["kind"] == "line-crossings" and entity(hourly, "pets-view1")["rows"]


@pytest.mark.parametrize("path", ["/config", "/cameras", "/areas", "/app", "/api", "/core",
                                  "/detector", "/classifier", "/tracker",
                                  "/source_post_processors", "/source_loggers",
                                  "/area_loggers", "/periodic_tasks"])
def test_the_reference_sub_apis_answer(api: Api, path: str) -> None:
    r = api.client.get(path, headers=api.admin)
    assert r.status_code == 200, r.text
    assert isinstance(r.json(), dict | list)


def test_process_control_is_routed(api: Api) -> None:
    for path in ("/start-process-video", "/stop-process-video"):
        r = api.client.put(path, headers=api.admin)
        # no processor runs in this process: 503, said so; never 404/405
        assert r.status_code == 503 and "not running" in r.json()["detail"]
