"""Recordings mode and the rate cap of live cameras.

* ``[App] HistoricalDataMode = True``: a real ``lookout run`` (API on) processes the recording
  to its end and exits 0 by itself with complete logs and reports; a live source in that mode
  is refused at load (``check-config`` and start say which section), a disabled one is not.
* ``[Source_N] MaxFPS``: validated (> 0, live cameras only); a real MJPEG camera at 25 fps
  capped at 5 is handed on at about 5 fps, each frame the newest the camera sent (the capture
  keeps the camera's pace: the frames in between are dropped, never queued); the cap is in
  the camera's status and progress line.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from libs.config import ConfigError, load_config
from processor.cli import main as lookout
from processor.progress import describe
from processor.sources import LiveSource
from processor.supervisor import Supervisor
from tests.conftest import REPO
from tests.test_event_bus import TUD_FRAMES, tud_only
from tests.test_live_http import Camera, free_port
from tests.test_run_e2e import read_csv_strict

LIVE = """
[Source_2]
Id = door
Name = Door camera
VideoPath = {path}
{extra}
"""


def with_text(config: Path, historical: bool, extra: str = "") -> Path:
    text = config.read_text().replace(
        "HistoricalDataMode = False", f"HistoricalDataMode = {historical}")
    config.write_text(text + extra)
    return config


def problems(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(config)
    return [str(p) for p in err.value.problems]


def test_historical_mode_refuses_live_sources(x86_config: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with_text(x86_config, True, LIVE.format(path="rtsp://127.0.0.1:8554/door", extra=""))
    (problem,) = problems(x86_config)
    assert problem.startswith(f"{x86_config}: [Source_2] VideoPath: a live source never ends")
    assert "set HistoricalDataMode = False" in problem
    assert lookout(["check-config", "--config", str(x86_config)]) == 2
    err = capsys.readouterr().err
    assert "[Source_2] VideoPath: a live source never ends" in err and "Traceback" not in err

    # A capture device and a Redis source never end either; a disabled one is not run.
    text = x86_config.read_text()
    x86_config.write_text(text.replace("rtsp://127.0.0.1:8554/door", "/dev/video0"))
    assert [p.split(": ", 2)[1] for p in problems(x86_config)] == ["[Source_2] VideoPath"]
    x86_config.write_text(text.replace("rtsp://127.0.0.1:8554/door",
                                       "redis://127.0.0.1:6379/0?stream=detections"))
    assert len(problems(x86_config)) == 1
    x86_config.write_text(text + "Enabled = False\n")
    assert load_config(x86_config).app.historical_data_mode is True
    # The same file watches the camera with HistoricalDataMode = False.
    x86_config.write_text(text.replace("HistoricalDataMode = True", "HistoricalDataMode = False"))
    assert load_config(x86_config).source("door").video_kind == "stream"


def test_max_fps_is_checked(x86_config: Path) -> None:
    base = x86_config.read_text()
    x86_config.write_text(base + LIVE.format(path="rtsp://127.0.0.1:8554/door",
                                             extra="MaxFPS = 2.5"))
    assert load_config(x86_config).source("door").max_fps == 2.5
    x86_config.write_text(base + LIVE.format(path="rtsp://127.0.0.1:8554/door", extra="MaxFPS ="))
    assert load_config(x86_config).source("door").max_fps is None
    x86_config.write_text(base + LIVE.format(path="rtsp://127.0.0.1:8554/door",
                                             extra="MaxFPS = 0"))
    (problem,) = problems(x86_config)
    assert "[Source_2] MaxFPS: Input should be greater than 0" in problem
    # A recording (or a Redis source) processes every frame: a cap there is refused.
    x86_config.write_text(base.replace("FrameRate = 7", "FrameRate = 7\nMaxFPS = 5", 1))
    (problem,) = problems(x86_config)
    assert "[Source_0]: MaxFPS caps a live camera" in problem
    assert "VideoPath is a recording, whose every frame is processed" in problem


def test_live_camera_capped_drops_frames_and_stays_current(shared: Path) -> None:
    from tests.test_live_http import load_jpegs

    cam = Camera(free_port(), load_jpegs(), interval=0.04)  # 25 fps
    cam.start()
    src = LiveSource(f"http://127.0.0.1:{cam.port}/stream.mjpg", UTC, "capped", max_fps=5)
    try:
        first = src.read(timeout=15)
        assert first is not None
        t0, got, ages = time.monotonic(), [first], []
        while time.monotonic() - t0 < 2.0:
            sf = src.read(timeout=1)
            if sf is not None:
                got.append(sf)
                ages.append((datetime.now(UTC) - sf.timestamp).total_seconds())
        elapsed = time.monotonic() - t0
    finally:
        src.close()
        cam.stop()
    rate = (len(got) - 1) / elapsed
    assert 4.0 <= rate <= 5.6, f"{rate:.2f} fps handed on under MaxFPS = 5"
    # The camera's own pace went on: about 5 frames of its 25 a second between two handed on.
    camera_rate = (got[-1].index - got[0].index) / elapsed
    assert camera_rate > 12, f"the capture read only {camera_rate:.1f} fps"
    assert min(b.index - a.index for a, b in itertools.pairwise(got)) >= 2
    # Each frame handed on is the newest: a few camera frames old at most, not growing (a
    # queue of 25 frames a second taken 5 a second would be 1.6 s behind after 2 s).
    assert max(ages) < 0.5, ages


def test_cap_is_shown_in_status_and_progress(x86_config: Path) -> None:
    with_text(x86_config, False, LIVE.format(path="rtsp://127.0.0.1:8554/door",
                                             extra="MaxFPS = 5"))
    sup = Supervisor(x86_config, show_progress=False, exit_when_done=False)
    status = sup.camera_status()
    assert status["door"]["max_fps"] == 5.0 and status["pets-view1"]["max_fps"] is None
    # GET /status answers through this model: the cap must survive it.
    from api.routers.process import CameraStatus

    assert CameraStatus.model_validate(status["door"]).model_dump()["max_fps"] == 5.0
    assert describe("door", {**status["door"], "fps": 4.9}).endswith(" 4.9 fps (max 5)")
    assert "max" not in describe("pets-view1", status["pets-view1"])


@pytest.mark.slow
def test_historical_mode_processes_recordings_and_exits(x86_config: Path) -> None:
    """The API on, as `lookout run` starts by default: the run still ends by itself."""
    port = free_port()
    config = tud_only(with_text(x86_config, True))
    config.write_text(config.read_text().replace("Port = 8000", f"Port = {port}"))
    data = config.parent / "data"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "processor.cli", "run", "--config", str(config), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "every recording is processed (HistoricalDataMode = True); exiting" in out
    assert "the API is still serving" not in out
    assert f"API at http://127.0.0.1:{port}/docs" in out
    status = json.loads((data / "processor" / "status.json").read_text())
    cam = status["cameras"]["tud"]
    assert cam["status"] == "finished" and cam["frames"] == TUD_FRAMES, cam
    assert status["cameras"]["pets-view1"]["status"] == "disabled"
    # Complete logs: 71 frames at 25 fps is 2.84 s of video, one raw row every 0.5 s.
    tud = data / "processor/static/data/sources/tud"
    rows = read_csv_strict(tud / "objects_log" / "2009-03-01.csv")
    assert len(rows) == 6 and rows[0]["Timestamp"] == "2009-03-01T12:00:00.000+00:00"
    assert rows[-1]["Timestamp"].startswith("2009-03-01T12:00:02.5")  # frame 63 of 0..70
    # The final round of reports ran before the exit.
    assert [r["Date"] for r in read_csv_strict(
        tud / "reports" / "social-distancing" / "daily.csv")] == ["2009-03-01"]
    progress = json.loads((data / "processor" / "progress" / "tud.json").read_text())
    assert progress["finished"] is True
    assert took < 60, f"{took:.0f} s"
    # Run again: the recording is done, not redone, and the run exits at once.
    again = subprocess.run(
        [sys.executable, "-m", "processor.cli", "run", "--config", str(config), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r"camera tud: recording already processed \(71 frames\)",
                     again.stdout + again.stderr)
    assert len(read_csv_strict(tud / "objects_log" / "2009-03-01.csv")) == 6
