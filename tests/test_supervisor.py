"""The supervisor applies configuration changes to the cameras they affect, and only those."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from libs.config import ConfigChange, save_config_changes
from processor.supervisor import Supervisor

TUD_SECTION = """
[Source_1]
Id = tud
Name = TUD campus
VideoPath = data/tud_campus/tud_campus.mp4
StartTime = 2009-03-01T12:00:00+00:00
"""


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@contextmanager
def running_supervisor(config: Path) -> Iterator[Supervisor]:
    """A supervisor looping on its own thread, stopped and joined at the end."""
    sup = Supervisor(config, show_progress=False, exit_when_done=False)
    sup.run_in_thread()
    try:
        yield sup
    finally:
        sup.request_stop()
        if sup._loop_thread is not None:
            sup._loop_thread.join(60)


@pytest.fixture
def two_cameras(x86_config: Path) -> Iterator[tuple[Supervisor, Path]]:
    x86_config.write_text(x86_config.read_text() + TUD_SECTION)
    with running_supervisor(x86_config) as sup:
        yield sup, x86_config


def status(sup: Supervisor) -> dict:
    return sup.submit(sup.camera_status).result(10)


def test_editing_one_camera_leaves_the_other_running(two_cameras) -> None:
    sup, path = two_cameras
    wait_until(lambda: status(sup)["pets-view1"]["frames"] > 20, 60, "PETS frames")
    wait_until(lambda: status(sup)["tud"]["status"] == "finished", 60, "TUD to finish")
    pets_worker = [w.process.pid for w in sup.workers if "pets-view1" in w.cameras]

    save_config_changes(path, [ConfigChange("Source_1", {"ROI": "0,0; 640,0; 640,480"})])
    before = status(sup)["pets-view1"]["frames"]
    result = sup.submit(sup.reload).result(30)
    assert result == {"started": [], "restarted": ["tud"], "stopped": []}

    # The edited camera runs again (its clip resumes where it was: it had finished)...
    wait_until(lambda: status(sup)["tud"]["status"] in ("running", "finished"), 30, "TUD")
    # ...while the other camera kept going without a gap.
    samples = []
    for _ in range(5):
        samples.append(status(sup)["pets-view1"]["frames"])
        time.sleep(0.2)
    assert samples[0] >= before and samples == sorted(samples) and samples[-1] > samples[0]
    assert status(sup)["pets-view1"]["restarts"] == 0
    assert [w.process.pid for w in sup.workers if "pets-view1" in w.cameras] == pets_worker


def test_adding_pausing_and_removing_cameras(two_cameras) -> None:
    sup, path = two_cameras
    wait_until(lambda: status(sup)["pets-view1"]["frames"] > 5, 60, "PETS frames")
    sup.submit(lambda: sup.pause_camera("pets-view1")).result(10)
    wait_until(lambda: status(sup)["pets-view1"]["status"] == "paused", 10, "pause")
    paused_at = status(sup)["pets-view1"]["frames"]
    time.sleep(0.5)
    assert status(sup)["pets-view1"]["frames"] <= paused_at + 2
    sup.submit(lambda: sup.resume_camera("pets-view1")).result(10)
    wait_until(lambda: status(sup)["pets-view1"]["frames"] > paused_at + 5, 30, "resume")

    save_config_changes(path, [ConfigChange("Source_1", remove=True)])
    result = sup.submit(sup.reload).result(30)
    assert result["stopped"] == ["tud"] and "tud" not in status(sup)
    save_config_changes(path, [ConfigChange("Source_2", {
        "Id": "tud2", "VideoPath": "data/tud_campus/tud_campus.mp4"})])
    result = sup.submit(sup.reload).result(30)
    assert result["started"] == ["tud2"]
    wait_until(lambda: status(sup)["tud2"]["frames"] == 71, 60, "the new camera's clip")
    with pytest.raises(KeyError):
        sup.submit(lambda: sup.pause_camera("nope")).result(10)
