"""Credentials never reach a viewer: camera URLs with a password, credential keys and URLs in
any other value are masked in every GET a viewer can make, over the real app (auth on, real
users and tokens); admins see them in clear, and an admin who sends a masked value back keeps
the real secret in the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.config import load_config
from libs.config.secrets import MASK, mask_secrets, mask_text, unmask
from tests.test_api_config import OUR_PREFIXES, Api, make_api

PASSWORD = "pa55-w0rd-Zq"
URL = f"rtsp://cam-user:{PASSWORD}@127.0.0.1:8554/live/main"
MASKED_URL = "rtsp://cam-user:***@127.0.0.1:8554/live/main"
TOKEN = "tok-9f2c-SECRET"
DASHBOARD = f"https://ops:{PASSWORD}@dashboard.example/api?token={TOKEN}&x=1"


@pytest.fixture
def api(x86_config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from make_api(x86_config, monkeypatch)


@pytest.mark.parametrize("text, masked", [
    (URL, MASKED_URL),
    ("rtsp://admin:p@ss/w@10.0.0.5:554/s", "rtsp://admin:***@10.0.0.5:554/s"),
    ("http://user:secret@cam.local/mjpg", "http://user:***@cam.local/mjpg"),
    ("https://abcdef123456@hooks.example/x", "https://***@hooks.example/x"),
    ("http://cam.local/video?user=a&password=hunter2&fps=5",
     "http://cam.local/video?user=a&password=***&fps=5"),
    ("https://h/x?access_token=abc#frag", "https://h/x?access_token=***#frag"),
    ("camera x: cannot open rtsp://u:hunter2@h:554/x (timeout)",
     "camera x: cannot open rtsp://u:***@h:554/x (timeout)"),
    ("http://cam.local/a@b", "http://cam.local/a@b"),  # an @ in the path is not a user
    ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
    ("data/pets09_s2l1/vtest.avi", "data/pets09_s2l1/vtest.avi"),
])
def test_mask_text_table(text: str, masked: str) -> None:
    assert mask_text(text) == masked
    assert unmask(masked, text) == text  # sent back as shown, the real value stays
    assert unmask("rtsp://other/stream", text) == "rtsp://other/stream"


def test_mask_secrets_keys_and_nesting() -> None:
    tree = {"App": {"DashboardAuthorizationToken": TOKEN, "UseAuthToken": "True",
                    "DashboardURL": DASHBOARD},
            "sources": [{"VideoPath": URL, "status": {"last_error": f"lost {URL}"}}],
            "CORE": {"QueueAuthKey": ""}}
    out = mask_secrets(tree)
    text = repr(out)
    assert PASSWORD not in text and TOKEN not in text
    assert out["App"]["DashboardAuthorizationToken"] == MASK
    assert out["App"]["UseAuthToken"] == "True"
    assert out["sources"][0]["VideoPath"] == MASKED_URL
    assert out["sources"][0]["status"]["last_error"] == f"lost {MASKED_URL}"
    assert out["CORE"]["QueueAuthKey"] == ""  # nothing to hide


def add_secrets(api: Api) -> None:
    r = api.post("/cameras", {"Id": "door", "Name": "Door", "VideoPath": URL})
    assert r.status_code == 201, r.text
    assert r.json()["video_path"] == URL  # admins see it in clear
    r = api.put("/app", {"DashboardURL": DASHBOARD, "DashboardAuthorizationToken": TOKEN})
    assert r.status_code == 200, r.text


def viewer_get_urls(api: Api) -> list[str]:
    out = []
    for path, ops in api.app.openapi()["paths"].items():
        if "get" not in ops or not path.startswith(OUR_PREFIXES):
            continue
        if path.endswith(("/image", "/snapshot", "/stream", "/calibration_image")):
            continue  # JPEG frames
        out.append(path.replace("{camera_id}", "door").replace("{area_id}", "campus")
                   .replace("{name}", "video_logger"))
    return out


def test_no_viewer_get_shows_a_credential(api: Api) -> None:
    add_secrets(api)
    urls = viewer_get_urls(api)
    assert {"/cameras", "/cameras/{camera_id}", "/config", "/config/info", "/app"} <= {
        p for p in api.app.openapi()["paths"]}
    assert len(urls) >= 20
    seen_masked = 0
    for url in urls:
        r = api.client.get(url, headers=api.viewer)
        assert r.status_code in (200, 404), (url, r.status_code, r.text[:200])
        assert PASSWORD not in r.text, url
        assert TOKEN not in r.text, url
        seen_masked += MASKED_URL in r.text
    assert seen_masked >= 3  # /cameras, /cameras/door, /config
    cams = api.client.get("/cameras", headers=api.viewer).json()
    assert next(c for c in cams if c["id"] == "door")["video_path"] == MASKED_URL
    assert api.client.get("/cameras/door", headers=api.viewer).json()["video_path"] == MASKED_URL
    cfg = api.client.get("/config", headers=api.viewer).json()
    assert cfg["sections"]["Source_door"]["VideoPath"] == MASKED_URL
    assert cfg["sections"]["App"]["DashboardAuthorizationToken"] == MASK
    assert api.client.get("/config", params={"format": "ini"},
                          headers=api.viewer).status_code == 403
    # admins see everything in clear
    assert api.get("/cameras/door").json()["video_path"] == URL
    assert api.get("/config").json()["sections"]["Source_door"]["VideoPath"] == URL
    assert PASSWORD in api.get("/config", params={"format": "ini"}).text


def test_masked_values_sent_back_keep_the_secret(api: Api) -> None:
    add_secrets(api)
    # a camera PUT with the viewer's (masked) view of the camera
    shown = api.client.get("/cameras/door", headers=api.viewer).json()
    shown["name"] = "Front door"
    r = api.put("/cameras/door", {k: v for k, v in shown.items() if k != "id"})
    assert r.status_code == 200, r.text
    raw = api.sections()
    assert raw["Source_door"]["VideoPath"] == URL and raw["Source_door"]["Name"] == "Front door"
    # a section PUT with the viewer's values
    values = api.client.get("/app", headers=api.viewer).json()["values"]
    assert values["DashboardAuthorizationToken"] == MASK
    assert api.put("/app", values).status_code == 200
    raw = api.sections()["App"]
    assert (raw["DashboardAuthorizationToken"], raw["DashboardURL"]) == (TOKEN, DASHBOARD)
    # the whole file as JSON, as a viewer sees it
    sections = api.client.get("/config", headers=api.viewer).json()["sections"]
    assert api.put("/config", sections).status_code == 200
    assert api.sections()["Source_door"]["VideoPath"] == URL
    assert api.sections()["App"]["DashboardAuthorizationToken"] == TOKEN
    # and as INI text with the URL masked
    text = api.text().replace(URL, MASKED_URL).replace(TOKEN, MASK)
    r = api.client.put("/config", content=text.encode(),
                       headers={**api.admin, "Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    cfg = load_config(api.path, check_files=False)
    assert cfg.source("door").video_path == URL
    assert cfg.app.dashboard_authorization_token == TOKEN
    # a new value is a new value
    new = "rtsp://cam-user:other@127.0.0.1:8554/live/main"
    assert api.put("/cameras/door", {"VideoPath": new}).status_code == 200
    assert api.sections()["Source_door"]["VideoPath"] == new


def test_config_errors_never_quote_a_password(x86_config: Path) -> None:
    """Problems name the value they refuse (logs, 422 bodies): its URL credentials masked."""
    import os

    from libs.config import ConfigError

    text = x86_config.read_text().replace("FrameRate = 7", f"FrameRate = {URL}")
    x86_config.write_text(text)
    os.utime(x86_config, (1, 1))
    with pytest.raises(ConfigError) as info:
        load_config(x86_config)
    assert PASSWORD not in str(info.value)
    assert MASKED_URL in str(info.value)
