"""Editing one camera over the API reloads that camera only: the other keeps processing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from processor.supervisor import Supervisor

PASSWORD = "live-edit-password"
TUD_SECTION = """
[Source_tud]
Id = tud
Name = TUD campus
VideoPath = data/tud_campus/tud_campus.mp4
StartTime = 2009-03-01T12:00:00+00:00
"""


@pytest.fixture
def live(x86_config: Path) -> Iterator[tuple[TestClient, dict[str, str], Supervisor]]:
    x86_config.write_text(x86_config.read_text() + TUD_SECTION)
    sup = Supervisor(x86_config, show_progress=False, exit_when_done=False)
    app = create_app(x86_config, sup)
    app.state.context.users.add("admin1", PASSWORD, "admin")
    sup.run_in_thread()
    try:
        with TestClient(app) as client:
            token = client.post("/auth/token", data={"username": "admin1",
                                                     "password": PASSWORD}).json()
            yield client, {"Authorization": f"Bearer {token['access_token']}"}, sup
    finally:
        sup.request_stop()
        if sup._loop_thread is not None:
            sup._loop_thread.join(60)


def frames(client: TestClient, headers: dict[str, str], camera: str) -> int:
    r = client.get(f"/status/{camera}", headers=headers)
    assert r.status_code == 200, r.text
    return int(r.json()["frames"])


def test_other_camera_keeps_counting_across_an_edit(live) -> None:
    client, headers, sup = live
    deadline = time.monotonic() + 60
    while frames(client, headers, "pets-view1") < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    pets_pid = next(w.process.pid for w in sup.workers if "pets-view1" in w.cameras)

    samples = [frames(client, headers, "pets-view1")]
    r = client.put("/cameras/tud", headers=headers, json={"ROI": "0,0; 640,0; 640,480; 0,480"})
    assert r.status_code == 200, r.text
    for _ in range(8):
        samples.append(frames(client, headers, "pets-view1"))
        time.sleep(0.15)
    # Strictly rising across the edit: never reset, never stalled for the whole window.
    assert samples == sorted(samples) and samples[-1] > samples[0] + 5, samples
    status = client.get("/status", headers=headers).json()["cameras"]
    assert status["pets-view1"]["restarts"] == 0
    assert status["tud"]["status"] in ("running", "finished", "idle")
    assert next(w.process.pid for w in sup.workers if "pets-view1" in w.cameras) == pets_pid
    # The file holds the edit, with the user's comments.
    text = Path(sup.config_path).read_text()
    assert "0,0; 640,0; 640,480; 0,480" in text and "# Four floor points clicked" in text
