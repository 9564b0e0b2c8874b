"""`lookout run` as a user runs it: the whole clip, a crash, a stop, a bad configuration."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from tests.conftest import REPO

TOTAL = 795


def start(config: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "run", "--config", str(config), "--no-api",
         *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def status(data: Path) -> dict | None:
    path = data / "processor" / "status.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_for_frames(proc: subprocess.Popen[str], data: Path, frames: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(data)
        if st and st["cameras"]["pets-view1"]["frames"] >= frames:
            return st
        if proc.poll() is not None:
            pytest.fail(f"lookout exited early ({proc.returncode}):\n{proc.stdout.read()}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail("timed out waiting for frames")


def read_csv_strict(path: Path) -> list[dict[str, str]]:
    """Every row complete: same number of fields as the header, file ends with a newline."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), f"{path} ends with a torn line"
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    for row in body:
        assert len(row) == len(header), f"{path}: torn row {row}"
    return [dict(zip(header, row, strict=True)) for row in body]


def objects_logs(data: Path) -> list[Path]:
    return sorted((data / "processor/static/data/sources/pets-view1/objects_log").glob("*.csv"))


@pytest.mark.slow
def test_run_processes_whole_clip_and_leaves_logs_and_reports(shipped_config: Path) -> None:
    x86_config = shipped_config  # the README's run command uses the file as shipped
    data = x86_config.parent / "data"
    proc = start(x86_config)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    st = status(data)
    assert st is not None
    cam = st["cameras"]["pets-view1"]
    assert cam["status"] == "finished"
    assert cam["frames"] == TOTAL and cam["next_index"] == TOTAL
    assert cam["last_frame_time"].startswith("2009-03-01T10:01:53")  # 794 / 7 fps

    # Raw log: one row every 0.5 s of video time, time-zone aware timestamps.
    (log_file,) = objects_logs(data)
    assert log_file.name == "2009-03-01.csv"
    rows = read_csv_strict(log_file)
    assert 220 <= len(rows) <= 230  # 113.4 s of video / 0.5 s
    assert rows[0]["Timestamp"] == "2009-03-01T10:00:00.000+00:00"
    assert max(int(r["DetectedObjects"]) for r in rows) >= 6
    assert any(int(r["ViolatingObjects"]) > 0 for r in rows)

    # Every line crossing is an event row.
    events = read_csv_strict(
        data / "processor/static/data/sources/pets-view1/line_crossings/2009-03-01.csv")
    assert len(events) >= 20
    assert {e["Line"] for e in events} == {"x384"}
    assert {e["Direction"] for e in events} == {"in", "out"}

    # The audience analytics of the shipped config: raw logs, events, reports, heatmaps.
    cam = data / "processor/static/data/sources/pets-view1"
    for folder in ("presence_log", "dwell_log", "engagement_log", "audience_log"):
        assert read_csv_strict(cam / folder / "2009-03-01.csv"), folder
    for kind in ("dwell", "audience", "engagement"):
        assert (cam / "reports" / kind / "daily.csv").exists(), kind
    assert read_csv_strict(cam / "events" / "dwell" / "2009-03-01.csv")
    assert [p.name for p in (cam / "heatmaps").glob("*.npz")] == ["2009-03-01T10.npz"]

    # Reports recomputed from the raw logs.
    reports = data / "processor/static/data/sources/pets-view1/reports"
    hourly = read_csv_strict(reports / "social-distancing" / "hourly_2009-03-01.csv")
    assert [r["Hour"] for r in hourly] == ["2009-03-01T10:00:00+00:00"]
    daily = read_csv_strict(reports / "social-distancing" / "daily.csv")
    assert [r["Date"] for r in daily] == ["2009-03-01"]
    assert (reports / "social-distancing" / "weekly.csv").exists()
    assert (reports / "occupancy" / "daily.csv").exists()

    # Areas sum their cameras.
    area_logs = sorted((data / "processor/static/data/areas/campus/occupancy_log").glob("*.csv"))
    assert [p.name for p in area_logs] == ["2009-03-01.csv"]
    area_rows = read_csv_strict(area_logs[0])
    assert len(area_rows) > 100
    assert (data / "processor/static/data/areas/campus/reports/occupancy/daily.csv").exists()

    # Screenshots every minute of video, a live preview, performance figures.
    shots = sorted((data / "processor/static/screenshots/pets-view1").glob("*.jpg"))
    assert len(shots) >= 2
    preview = cv2.imread(str(data / "processor/static/previews/pets-view1/live.jpg"))
    assert preview is not None and preview.shape[:2] == (576, 768)
    perf = read_csv_strict(data / "processor/static/data/performance-metrics/pets-view1.csv")
    assert len(perf) == TOTAL // 200 and float(perf[0]["FPS"]) > 0
    assert "fps | detector" in out


@pytest.mark.slow
def test_killed_worker_is_restarted_and_csv_stays_parseable(x86_config: Path) -> None:
    data = x86_config.parent / "data"
    proc = start(x86_config, "--no-progress")
    st = wait_for_frames(proc, data, 150, timeout=120)
    worker_pid = st["workers"][0]["pid"]
    os.kill(worker_pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    st = status(data)
    assert st["workers"][0]["restarts"] == 1
    assert st["workers"][0]["pid"] != worker_pid
    cam = st["cameras"]["pets-view1"]
    assert cam["status"] == "finished" and cam["next_index"] == TOTAL
    assert cam["restarts"] == 1 and "signal 9" in cam["last_error"]
    assert "restarting (1/5)" in out
    (log_file,) = objects_logs(data)
    rows = read_csv_strict(log_file)
    # The restarted worker resumed the clip where the killed one stopped: the log covers
    # the whole clip once, not twice.
    stamps = [r["Timestamp"] for r in rows]
    assert stamps == sorted(stamps)
    assert 215 <= len(set(stamps)) <= 230
    assert len(stamps) - len(set(stamps)) <= 2


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_logs_flushed(x86_config: Path) -> None:
    data = x86_config.parent / "data"
    proc = start(x86_config, "--no-progress")
    wait_for_frames(proc, data, 100, timeout=120)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    cam = status(data)["cameras"]["pets-view1"]
    assert cam["status"] == "stopped" and cam["frames"] < TOTAL
    (log_file,) = objects_logs(data)
    rows = read_csv_strict(log_file)
    # Every processed frame's interval was logged: nothing lost in the queue.
    last = rows[-1]
    assert int(last["Frame"]) >= cam["frames"] - 5
    daily = data / "processor/static/data/sources/pets-view1/reports/social-distancing/daily.csv"
    assert daily.exists()  # the final metrics round ran


def test_bad_config_stops_start_with_a_clear_message(x86_config: Path) -> None:
    text = x86_config.read_text().replace("MinScore = 0.1", "MinScore = high")
    x86_config.write_text(text)
    proc = start(x86_config)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert f"{x86_config}: [Detector] MinScore: Input should be a valid number" in out
    assert "(expected a number from 0 to 1)" in out
    assert not (x86_config.parent / "data").exists()


def test_check_config_command(x86_config: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "processor.cli", "check-config", "--config", str(x86_config)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "camera pets-view1: data/pets09_s2l1/vtest.avi" in res.stdout
    assert "calibration: 4 points, reprojection error 0.000 m RMS" in res.stdout
