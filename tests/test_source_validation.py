"""One VideoPath check wherever a source is set: the INI loader, POST /cameras,
PUT /cameras/{id}, POST /cameras/check_stream and PUT /config (JSON and INI) all refuse the
same values with a 422 naming the field, accept the same values, and a viewer never gets a
frame of a refused file from /cameras/{id}/image."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.config import ConfigError, load_config
from libs.config.video_source import VideoPathError, check_video_path
from tests.conftest import PETS
from tests.test_api_config import Api, make_api

OUTSIDE = "@outside"  # placeholder: a real clip copied outside the allowed folders
LINKED_OUT = "@linked-out"  # placeholder: a link inside DataDirectory to that clip

REFUSED = [
    "/etc/passwd", "../../../../etc/passwd", "file:///etc/passwd", "file:/etc/passwd",
    "gopher://127.0.0.1:70/_x", "ftp://127.0.0.1/clip.avi", "rtmp://127.0.0.1/live",
    "concat:data/pets09_s2l1/vtest.avi|/etc/passwd", "data:video/avi;base64,AAAA",
    "/dev/zero", "/dev/sda", "/dev/video0/../../etc/passwd", "1234",
    "rtsp://127.0.0.1/x\nId = evil", "rtsp://127.0.0.1/x\ry", "rtsp://127.0.0.1/x\x00y",
    "http://127.0.0.1/a b",
    "http:///nohost", "rtsp://127.0.0.1:99999/x", "data/DATA.md", "models",
    "x" * 3000, OUTSIDE, LINKED_OUT, "redis://u:pw@127.0.0.1/0?stream=d",
]
ACCEPTED = ["rtsp://127.0.0.1:9/stream", "rtsps://cam.local/s", "http://cam.local/mjpg",
            "https://cam.local/v.mjpg", "/dev/video0", "0", "data/pets09_s2l1",
            "data/pets09_s2l1/vtest.avi", str(PETS / "vtest.avi"), "@in-data",
            "redis://127.0.0.1:6379/0?stream=dets"]


@pytest.fixture
def api(x86_config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from make_api(x86_config, monkeypatch)


def real_value(api: Api, value: str) -> str:
    """Placeholders -> real files made for the test."""
    base = api.path.parent
    if value == OUTSIDE:
        target = base / "outside" / "vtest.avi"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(PETS / "vtest.avi", target)
        return str(target)
    if value == LINKED_OUT:
        outside = Path(real_value(api, OUTSIDE))
        link = base / "data" / "linked.avi"
        link.parent.mkdir(exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(outside)
        return str(link)
    if value == "@in-data":
        inside = base / "data" / "recordings" / "clip.avi"
        inside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PETS / "vtest.avi", inside)
        return str(inside)
    return value


def keys(r: object) -> set[str | None]:
    status = getattr(r, "status_code")  # noqa: B009
    body = getattr(r, "json")()  # noqa: B009
    assert status == 422, (status, body)
    return {p.get("key") for p in body["detail"]}


@pytest.mark.parametrize("value", REFUSED, ids=lambda v: repr(v)[:40])
def test_every_entry_point_refuses_the_same_sources(api: Api, value: str) -> None:
    value = real_value(api, value)
    before = api.text()
    assert "VideoPath" in keys(api.post("/cameras", {"Id": "new", "VideoPath": value}))
    assert "VideoPath" in keys(api.put("/cameras/pets-view1", {"VideoPath": value}))
    assert "video_path" in keys(api.post("/cameras/check_stream", {"video_path": value})) \
        or len(value) > 2048  # the body model says it first (loc names video_path)
    sections = api.get("/config").json()["sections"]
    sections["Source_0"]["VideoPath"] = value
    assert "VideoPath" in keys(api.put("/config", sections))
    if not re.search(r"[\x00-\x1f]", value):  # else the INI text is refused as a whole
        text = re.sub(r"(?m)^VideoPath = .*$", lambda _: f"VideoPath = {value}", before)
        r = api.client.put("/config", content=text.encode(),
                           headers={**api.admin, "Content-Type": "text/plain"})
        assert "VideoPath" in keys(r)
        # the loader (start-up, processor reload) refuses it the same way
        hand = api.path.with_name("hand.ini")
        hand.write_text(text)
        os.utime(hand, (1, 1))
        with pytest.raises(ConfigError) as info:
            load_config(hand, check_files=True)
        assert {p.key for p in info.value.problems} == {"VideoPath"}
    assert api.text() == before


@pytest.mark.parametrize("value", ACCEPTED)
def test_every_entry_point_accepts_the_same_sources(api: Api, value: str) -> None:
    value = real_value(api, value)
    r = api.post("/cameras", {"Id": "new", "VideoPath": value})
    assert r.status_code == 201, r.text
    assert api.put("/cameras/new", {"VideoPath": value}).status_code == 200
    assert api.delete("/cameras/new").status_code == 200
    r = api.post("/cameras/check_stream", {"video_path": value})
    assert r.status_code == 200, r.text  # ok or not depends on the source being there
    config = load_config(api.path)
    check_video_path(value, config.assets_dir, config.data_dir, check_files=True)


def test_viewer_never_gets_a_frame_of_a_refused_file(api: Api) -> None:
    """A link inside DataDirectory accepted while it points at a clip there, then pointed at a
    clip outside: /image checks the source again and opens nothing."""
    inside = Path(real_value(api, "@in-data"))
    outside = Path(real_value(api, OUTSIDE))
    link = api.path.parent / "data" / "cam.avi"
    link.symlink_to(inside)
    assert api.put("/cameras/pets-view1", {"VideoPath": str(link)}).status_code == 200
    r = api.client.get("/cameras/pets-view1/image", headers=api.viewer)
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"  # a JPEG of the clip
    link.unlink()
    link.symlink_to(outside)
    r = api.client.get("/cameras/pets-view1/image", headers=api.viewer)
    assert r.status_code == 422, r.status_code
    assert b"\xff\xd8" not in r.content
    assert {p["key"] for p in r.json()["detail"]} == {"VideoPath"}
    # a hand edit to a refused file: the file is refused as a whole, no frame either
    text = re.sub(r"(?m)^VideoPath = .*$", "VideoPath = /etc/passwd", api.text())
    api.path.write_text(text)
    r = api.client.get("/cameras/pets-view1/image", headers=api.viewer)
    assert r.status_code in (404, 422) and b"\xff\xd8" not in r.content


def test_check_names_what_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VideoPathError, match="scheme 'gopher' is not allowed"):
        check_video_path("gopher://h/x", tmp_path, tmp_path)
    with pytest.raises(VideoPathError, match="not a video capture device"):
        check_video_path("/dev/zero", tmp_path, tmp_path)
    with pytest.raises(VideoPathError, match="outside AssetsDirectory"):
        check_video_path("/etc/passwd", tmp_path / "a", tmp_path / "d", check_files=False)
    with pytest.raises(VideoPathError, match="control character"):
        check_video_path("rtsp://h/x\u2028y", tmp_path, tmp_path)
    assert check_video_path("7", tmp_path, tmp_path).target == 7


def test_the_processor_checks_again_when_a_source_opens(x86_config: Path,
                                                         tmp_path: Path) -> None:
    """A link in DataDirectory pointed outside after the file was loaded: no frame read."""
    from processor.sources import SourceError, open_source

    data = x86_config.parent / "data"
    data.mkdir(exist_ok=True)
    link = data / "clip.avi"
    link.symlink_to(PETS / "vtest.avi")
    x86_config.write_text(x86_config.read_text().replace(
        "VideoPath = data/pets09_s2l1/vtest.avi", f"VideoPath = {link}"))
    cfg = load_config(x86_config)
    open_source(cfg, cfg.sources[0]).close()  # inside: opens
    outside = tmp_path / "outside.avi"
    shutil.copy(PETS / "vtest.avi", outside)
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(SourceError, match="outside AssetsDirectory"):
        open_source(cfg, cfg.sources[0])


def test_ffmpeg_may_use_only_the_source_protocols() -> None:
    """Even past the VideoPath rule (a redirect, a playlist), FFmpeg refuses other
    protocols: concat: would read local files, gopher:// another host's service."""
    import cv2

    import processor.sources  # noqa: F401  (sets FFmpeg's options)

    assert cv2.VideoCapture(str(PETS / "vtest.avi")).isOpened()
    assert not cv2.VideoCapture(f"concat:{PETS / 'vtest.avi'}").isOpened()
