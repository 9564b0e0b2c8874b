"""Routes the dashboard's pages need: zones, the engagement target, the calibration preview
(and PUT /calibration with a square's side), "send a test" for sinks (against a real local
receiver), and changing a user's role or password."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from libs.config import load_config
from libs.post_processors.engagement import parse_camera_targets
from tests.conftest import TEST_PASSWORD, app_with_users
from tests.webhook_receiver import WebhookReceiver

PASSWORD = TEST_PASSWORD
CAMERA = "pets-view1"
SECRET = b"a-shared-secret-for-the-test-receiver"
# Four floor points on the PETS view1 frame (768x576), roughly a quadrilateral on the ground.
SQUARE_PX = [[250.0, 300.0], [520.0, 310.0], [600.0, 500.0], [180.0, 480.0]]


@pytest.fixture
def app(x86_config: Path):
    return app_with_users(x86_config)


def token(client: TestClient, user: str) -> dict[str, str]:
    r = client.post("/auth/token", data={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def client(app) -> TestClient:
    return TestClient(app)


@pytest.fixture
def admin(client) -> dict[str, str]:
    return token(client, "admin1")


@pytest.fixture
def viewer(client) -> dict[str, str]:
    return token(client, "viewer1")


# -- zones -------------------------------------------------------------------------------------


def test_zones_round_trip_into_the_camera_section(client, admin, viewer, x86_config) -> None:
    body = {"zones": [{"name": "till", "points": [[10, 10], [200, 10], [200, 150]]},
                      {"name": "door", "points": [[300, 300], [400, 300], [400, 400],
                                                  [300, 400]]}],
            "entry_zones": [{"name": "entrance", "points": [[0, 500], [100, 500], [50, 570]]}]}
    path = f"/cameras/{CAMERA}/zones"
    assert client.put(path, json=body, headers=viewer).status_code == 403
    r = client.put(path, json=body, headers=admin)
    assert r.status_code == 200, r.text
    assert set(r.json()) >= {"camera_id", "zones", "entry_zones", "reload"}
    got = client.get(path, headers=viewer).json()
    assert got["zones"] == [{"name": "till", "points": [[10, 10], [200, 10], [200, 150]]},
                            {"name": "door", "points": [[300, 300], [400, 300], [400, 400],
                                                        [300, 400]]}]
    assert got["entry_zones"][0]["name"] == "entrance"
    src = load_config(x86_config, check_files=False).source(CAMERA)
    assert [z.name for z in src.zones] == ["till", "door"]
    assert [z.name for z in src.entry_zones] == ["entrance"]
    # Clearing one list.
    r = client.put(path, json={"zones": [], "entry_zones": body["entry_zones"]}, headers=admin)
    assert r.status_code == 200 and r.json()["zones"] == []


@pytest.mark.parametrize("bad", [
    {"zones": [{"name": "a", "points": [[0, 0], [1, 1]]}]},  # two points
    {"zones": [{"name": "a", "points": [[0, 0], [9, 0], [9, 9]]},
               {"name": "a", "points": [[0, 0], [8, 0], [8, 8]]}]},  # repeated name
    {"zones": [{"name": "no spaces", "points": [[0, 0], [9, 0], [9, 9]]}]},
    {"zones": [{"name": "a", "points": [[0, 0], [9, 0], ["x", 9]]}]},
    {"zones": [], "extra": 1},
])
def test_bad_zones_are_refused_and_nothing_is_written(client, admin, x86_config, bad) -> None:
    before = x86_config.read_text()
    r = client.put(f"/cameras/{CAMERA}/zones", json=bad, headers=admin)
    assert r.status_code == 422, r.text
    assert x86_config.read_text() == before


# -- engagement target -----------------------------------------------------------------------


def test_without_an_engagement_section_the_target_cannot_be_set(client, admin) -> None:
    path = f"/cameras/{CAMERA}/engagement_target"
    got = client.get(path, headers=admin).json()
    assert got["section"] is None and got["effective"] == "bottom_edge"
    r = client.put(path, json={"points": [[1, 2]]}, headers=admin)
    assert r.status_code == 409 and "engagement" in r.json()["detail"]


def test_engagement_target_per_camera_over_the_processor_wide_default(shipped_config) -> None:
    app = create_app(shipped_config)
    app.state.context.users.add("admin1", PASSWORD, "admin")
    app.state.context.users.add("viewer1", PASSWORD, "viewer")
    client = TestClient(app)
    admin, viewer = token(client, "admin1"), token(client, "viewer1")
    x86_config = shipped_config
    path = f"/cameras/{CAMERA}/engagement_target"
    got = client.get(path, headers=viewer).json()
    assert got["section"] == "SourcePostProcessor_10" and got["enabled"] is True
    assert got["points"] is None and got["effective"] == "bottom_edge"
    assert client.put(path, json={"points": [[10, 20]]}, headers=viewer).status_code == 403
    r = client.put(path, json={"points": [[10.5, 20], [300, 20]]}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["points"] == [[10.5, 20], [300, 20]] and r.json()["effective"] == "camera"
    part = next(p for p in load_config(x86_config, check_files=False).source_post_processors
                if p.name == "engagement")
    targets = parse_camera_targets(part.camera_targets)  # type: ignore[attr-defined]
    assert targets[CAMERA].tolist() == [[10.5, 20.0], [300.0, 20.0]]
    # A processor-wide Target is the default; the camera's own still wins.
    x86_config.write_text(x86_config.read_text().replace("Target =\n", "Target = 5,6\n", 1))
    got = client.get(path, headers=viewer).json()
    assert got["default_points"] == [[5, 6]] and got["effective"] == "camera"
    r = client.put(path, json={"points": None}, headers=admin)
    assert r.status_code == 200 and r.json()["points"] is None
    assert r.json()["effective"] == "default"
    for bad in ({"points": [[1, 2], [3, 4], [5, 6]]}, {"points": []}, {"points": [[1e9, 1]]},
                {}):
        assert client.put(path, json=bad, headers=admin).status_code == 422, bad
    r = client.put(path, content=b'{"points": [[NaN, 1]]}',
                   headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422
    assert client.get("/cameras/nope/engagement_target", headers=viewer).status_code == 404


# -- calibration ---------------------------------------------------------------------------


def test_calibration_preview_with_a_square_gives_errors_and_a_birdseye_view(
        client, admin, viewer, x86_config) -> None:
    before = x86_config.read_text()
    path = f"/cameras/{CAMERA}/calibration/preview"
    body = {"image_points": SQUARE_PX, "square_side": 2.5}
    assert client.post(path, json=body, headers=viewer).status_code == 403
    r = client.post(path, json=body, headers=admin)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["floor_points"] == [[0, 0], [2.5, 0], [2.5, 2.5], [0, 2.5]]
    assert out["reprojection_error_px"] < 1e-6 and out["reprojection_error_m"] < 1e-6
    image = cv2.imdecode(np.frombuffer(base64.b64decode(out["birdseye_jpeg"]), np.uint8),
                         cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape[1] == out["birdseye_width"] and image.shape[0] == out["birdseye_height"]
    assert max(image.shape[:2]) == 800 and image.std() > 10  # a picture, not a blank
    assert out["metres_per_pixel"] == pytest.approx((2.5 + 2 * 0.625) / 800)
    assert x86_config.read_text() == before  # a preview writes nothing


def test_calibration_preview_with_floor_points_reports_the_pixel_error(client, admin) -> None:
    image = [*SQUARE_PX, [400.0, 400.0]]
    # A fifth point a little off the plane the first four define: a non-zero error.
    floor = [[0, 0], [2.5, 0], [2.5, 2.5], [0, 2.5], [1.0, 1.0]]
    r = client.post(f"/cameras/{CAMERA}/calibration/preview",
                    json={"image_points": image, "floor_points": floor}, headers=admin)
    assert r.status_code == 200, r.text
    out = r.json()
    assert 0.1 < out["reprojection_error_px"] < 200
    assert out["max_error_px"] >= out["reprojection_error_px"]
    assert out["floor_points"] == floor


@pytest.mark.parametrize("bad", [
    {"image_points": [[0, 0], [10, 0], [20, 0], [30, 0]], "square_side": 1},  # in a row
    {"image_points": SQUARE_PX, "square_side": 0},
    {"image_points": SQUARE_PX},  # neither floor points nor a side
    {"image_points": SQUARE_PX, "square_side": 1, "floor_points": [[0, 0]] * 4},  # both
    {"image_points": [*SQUARE_PX, [1, 1]], "square_side": 1},  # a square has 4 corners
    {"image_points": SQUARE_PX, "floor_points": [[0, 0], [1, 0], [1, 1]]},
])
def test_calibration_preview_refuses_what_put_refuses(client, admin, bad) -> None:
    r = client.post(f"/cameras/{CAMERA}/calibration/preview", json=bad, headers=admin)
    assert r.status_code == 422, r.text
    assert client.put(f"/cameras/{CAMERA}/calibration", json=bad,
                      headers=admin).status_code == 422


def test_put_calibration_accepts_a_square_side(client, admin, x86_config) -> None:
    r = client.put(f"/cameras/{CAMERA}/calibration",
                   json={"image_points": SQUARE_PX, "square_side": 3}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["floor_points_m"] == [[0, 0], [3, 0], [3, 3], [0, 3]]
    src = load_config(x86_config, check_files=False).source(CAMERA)
    assert src.calibration_floor_points == [(0, 0), (3, 0), (3, 3), (0, 3)]
    # The older body, floor_points_m, still works.
    r = client.put(f"/cameras/{CAMERA}/calibration", json={
        "image_points": SQUARE_PX, "floor_points_m": [[0, 0], [2, 0], [2, 2], [0, 2]]},
        headers=admin)
    assert r.status_code == 200, r.text


# -- send a test -----------------------------------------------------------------------------


def set_webhook(config: Path, endpoint: str, secret: str = "") -> None:
    text = config.read_text()
    old = "Name = web_hook_logger\nEndpoint =\n"
    assert old in text
    extra = f"Secret = {secret}\n" if secret else ""
    config.write_text(text.replace(old, f"Name = web_hook_logger\nEndpoint = {endpoint}\n{extra}"))


def test_send_test_posts_one_signed_record_to_the_webhook(client, admin, viewer,
                                                          x86_config) -> None:
    with WebhookReceiver(secret=SECRET) as receiver:
        set_webhook(x86_config, receiver.url, SECRET.decode())
        assert client.post("/source_loggers/SourceLogger_2/test",
                           headers=viewer).status_code == 403
        r = client.post("/source_loggers/SourceLogger_2/test", headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is True and "204" in r.json()["detail"]
        (req,) = receiver.requests
        assert req.method == "PUT" and req.path == "/hook" and req.signature_ok is True
        (record,) = req.records
        assert record["kind"] == "test" and req.doc and req.doc["version"] == 1
        # By Name as well as by section.
        assert client.post("/source_loggers/web_hook_logger/test",
                           headers=admin).status_code == 200
        assert len(receiver.requests) == 2


def test_send_test_reports_the_receivers_refusal_and_a_dead_endpoint(client, admin,
                                                                     x86_config) -> None:
    with WebhookReceiver(status=500) as receiver:
        set_webhook(x86_config, receiver.url)
        r = client.post("/source_loggers/SourceLogger_2/test", headers=admin)
        assert r.status_code == 502 and "HTTP 500" in r.json()["detail"]
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    x86_config.write_text(x86_config.read_text().replace(
        receiver.url, f"http://127.0.0.1:{dead}/hook"))
    r = client.post("/source_loggers/SourceLogger_2/test", headers=admin)
    assert r.status_code == 502 and "connection refused" in r.json()["detail"]


def test_file_loggers_have_no_test(client, admin) -> None:
    r = client.post("/source_loggers/file_system_logger/test", headers=admin)
    assert r.status_code == 400 and "has no test" in r.json()["detail"]
    r = client.post("/area_loggers/AreaLogger_0/test", headers=admin)
    assert r.status_code == 400 and "has no test" in r.json()["detail"]
    assert client.post("/outputs/nothing/test", headers=admin).status_code == 404


# -- users -----------------------------------------------------------------------------------


def test_admin_changes_roles_and_passwords(client, admin, viewer) -> None:
    r = client.put("/auth/users/viewer1", json={"role": "admin"}, headers=admin)
    assert r.status_code == 200 and r.json()["role"] == "admin"
    # A role change takes effect at once; the token stays valid.
    assert client.get("/auth/users", headers=viewer).status_code == 200
    r = client.put("/auth/users/viewer1", json={"role": "viewer", "password": "new password 1"},
                   headers=admin)
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert client.get("/auth/me", headers=viewer).status_code == 401  # password changed
    assert client.post("/auth/token", data={"username": "viewer1",
                                            "password": "new password 1"}).status_code == 200
    assert client.put("/auth/users/nobody", json={"role": "admin"},
                      headers=admin).status_code == 404
    assert client.put("/auth/users/viewer1", json={}, headers=admin).status_code == 422
    assert client.put("/auth/users/viewer1", json={"password": "short"},
                      headers=admin).status_code == 422
    assert client.put("/auth/users/admin1", json={"role": "viewer"},
                      headers=admin).status_code == 409
