"""Restarts never double-count: the PETS clip run through a clean stop, a SIGKILLed worker
and a SIGKILLed processor leaves exactly what one uninterrupted run leaves.

Also: a killed processor takes its workers with it (nothing keeps writing), and a second
processor on the same data directory refuses to start.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, date
from pathlib import Path

import numpy as np
import pytest

from api.params import DateRange
from api.routers.metrics import LineCrossingMetric, MetricQuery
from libs.config import load_config
from libs.metrics.heatmap import HourGrids, read_hour
from tests.conftest import REPO

CAMERA = "pets-view1"
DAY = date(2009, 3, 1)


def start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "run", "--config", str(config), "--no-api",
         "--no-progress"],
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def status(data: Path) -> dict | None:
    try:
        return json.loads((data / "processor" / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_until(proc: subprocess.Popen[str], data: Path, pred, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(data)
        if st and pred(st):
            return st
        if proc.poll() is not None:
            pytest.fail(f"lookout exited early ({proc.returncode}):\n{proc.stdout.read()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"timed out; last status {status(data)}")


def next_index(st: dict) -> int:
    return int(st["cameras"][CAMERA]["next_index"])


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def log_rows(data: Path, folder: str) -> list[list[str]]:
    rows: list[list[str]] = []
    base = data / "processor/static/data/sources" / CAMERA / folder
    for path in sorted(base.glob("*.csv")):
        raw = path.read_bytes()
        assert raw.endswith(b"\n"), f"{path} ends with a torn line"
        with open(path, newline="") as fh:
            body = list(csv.reader(fh))
        header, body = body[0], body[1:]
        assert all(len(r) == len(header) for r in body), f"{path}: torn row"
        rows.extend(body)
    return rows


def all_logs(data: Path) -> dict[str, bytes]:
    """Every CSV file of the camera and of the areas (logs and reports), by path."""
    base = data / "processor/static/data"
    return {str(p.relative_to(base)): p.read_bytes()
            for folder in (base / "sources" / CAMERA, base / "areas")
            for p in sorted(folder.rglob("*.csv"))}


def hour_grids(data: Path) -> dict[str, HourGrids]:
    """The camera's heatmap hour files, by name."""
    folder = data / "processor/static/data/sources" / CAMERA / "heatmaps"
    return {p.name: read_hour(p) for p in sorted(folder.glob("*.npz"))}


def daily_crossings(config: Path) -> int:
    cfg = load_config(config)
    report = LineCrossingMetric().read(cfg, CAMERA, MetricQuery("daily", DateRange(DAY, DAY),
                                                                UTC))
    return int(report["totals"]["In"] + report["totals"]["Out"])


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (through /proc/<pid>/task/*/children)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for k in map(int, kids):
                if k not in found:
                    found.add(k)
                    todo.append(k)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_and_wait_for_children(proc: subprocess.Popen[str], limit: float = 2.0) -> float:
    """SIGKILL ``proc``; every process below it must be gone within ``limit`` seconds.
    Returns how long they took."""
    kids = descendants(proc.pid)
    assert kids, "the processor has no child processes"
    proc.kill()
    proc.wait()
    t0 = time.monotonic()
    while any(alive(k) for k in kids) and time.monotonic() - t0 < limit:
        time.sleep(0.02)
    assert not [k for k in kids if alive(k)], "processes outlived the killed processor"
    return time.monotonic() - t0


@pytest.fixture
def two_copies(tmp_path: Path, shipped_config: Path) -> tuple[Path, Path]:
    """The shipped configuration twice, each with its own data directory; the heatmap
    merges its hour grid into its file every 0.2 s instead of 10 s, so a kill almost surely
    comes after a merge newer than the last checkpoint (a restart once removed such a file)."""
    text = shipped_config.read_text()
    heatmap = "Name = heatmap\nEnabled = True\n"
    assert heatmap in text
    text = text.replace(heatmap, heatmap + "FlushSeconds = 0.2\n")
    out = []
    for name in ("reference", "restarted"):
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "config.ini"
        path.write_text(text)
        out.append(path)
    return out[0], out[1]


@pytest.mark.slow
def test_three_interrupted_runs_leave_exactly_one_runs_records(
        two_copies: tuple[Path, Path]) -> None:
    reference, restarted = two_copies
    ref_data, data = reference.parent / "data", restarted.parent / "data"
    finish(start(reference))
    ref_rows = log_rows(ref_data, "objects_log")
    ref_crossings = log_rows(ref_data, "line_crossings")
    total = int(status(ref_data)["cameras"][CAMERA]["total_frames"])
    assert len(ref_rows) > 200 and len(ref_crossings) >= 25

    # 1. A clean stop (SIGTERM) a quarter of the way in.
    proc = start(restarted)
    wait_until(proc, data, lambda st: next_index(st) >= total // 4)
    proc.send_signal(signal.SIGTERM)
    finish(proc)
    # 2. A worker killed at half way (the supervisor restarts it), then the processor
    #    itself killed at three quarters.
    proc = start(restarted)
    st = wait_until(proc, data, lambda st: next_index(st) >= total // 2)
    worker_pid = st["workers"][0]["pid"]
    os.kill(worker_pid, signal.SIGKILL)
    wait_until(proc, data, lambda st: st["workers"][0]["pid"] not in (None, worker_pid)
               and next_index(st) >= 3 * total // 4)
    kill_and_wait_for_children(proc)
    # 3. Run to the end, then once more: a finished recording is not processed again.
    finish(start(restarted))
    out = finish(start(restarted))
    assert "already processed" in out
    assert status(data)["cameras"][CAMERA]["frames"] == 0

    rows = log_rows(data, "objects_log")
    got_times = [r[0] for r in rows]
    want_times = [r[0] for r in ref_rows]
    assert len(got_times) == len(set(got_times)), "duplicate raw log rows"
    assert got_times == want_times  # exactly the single run's rows, in order
    crossings = log_rows(data, "line_crossings")
    assert len(crossings) == len(ref_crossings)
    assert daily_crossings(restarted) == daily_crossings(reference) == len(ref_crossings)
    # Every log of the camera, the per-person ones included (loitering, dwell, engagement,
    # audience: the tracker and the stages take back their state at each resume), the area's
    # occupancy log (no sample made twice), and the reports made from them.
    ref_logs, got_logs = all_logs(ref_data), all_logs(data)
    assert sorted(got_logs) == sorted(ref_logs)
    assert {f"sources/{CAMERA}/{name}" for name in (
        "events/loitering", "events/dwell", "engagement_log", "audience_log")} | \
        {"areas/campus/occupancy_log"} <= {str(Path(name).parent) for name in ref_logs}, \
        sorted(ref_logs)
    differ = [name for name in ref_logs if got_logs[name] != ref_logs[name]]
    assert not differ, f"these logs differ from one run's: {differ}"
    # The heatmap's hour grids: every checkpoint merges them first, so no frame is lost
    # (before: the frames since the last periodic flush were) and none is added twice.
    ref_hours, got_hours = hour_grids(ref_data), hour_grids(data)
    assert ref_hours and sorted(got_hours) == sorted(ref_hours)
    for name, ref in ref_hours.items():
        got = got_hours[name]
        assert (got.frames, got.samples) == (ref.frames, ref.samples), name
        assert got.seconds == pytest.approx(ref.seconds), name
        np.testing.assert_allclose(got.image_presence, ref.image_presence, err_msg=name)
    assert sum(h.frames for h in got_hours.values()) == total
    print(f"after a clean stop, a killed worker, a killed processor and a run to the end: "
          f"{len(rows)} raw log rows (one run: {len(ref_rows)}), {len(crossings)} crossings "
          f"(one run: {len(ref_crossings)}); {len(got_logs)} CSV logs and reports of the "
          f"camera and the area, each "
          f"byte for byte one run's")


@pytest.mark.slow
def test_killed_processor_leaves_no_process_and_a_second_one_is_refused(
        shipped_config: Path) -> None:
    data = shipped_config.parent / "data"
    proc = start(shipped_config)
    wait_until(proc, data, lambda st: next_index(st) >= 20)
    second = start(shipped_config)
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 2 and "another Lookout processor" in out, out
    took = kill_and_wait_for_children(proc)
    print(f"SIGKILL of the processor: its child processes gone after {took:.2f} s")
    # The data directory is free again at once.
    proc = start(shipped_config)
    wait_until(proc, data, lambda st: st["pid"] == proc.pid and next_index(st) > 0)
    proc.send_signal(signal.SIGTERM)
    finish(proc)


@pytest.mark.slow
def test_disable_then_enable_over_the_api_does_not_redo_a_finished_recording(
        x86_config: Path) -> None:
    from tests import test_api_server as server

    port = server.free_port()
    server.configure(x86_config, port)
    data = x86_config.parent / "data"
    proc = server.start(x86_config)
    client = server.Client(f"http://127.0.0.1:{port}")
    try:
        server.wait_healthy(client, proc)
        client.login("admin1")
        deadline = time.monotonic() + 300
        while client.json("GET", "/status")["cameras"][CAMERA]["status"] != "finished":
            assert time.monotonic() < deadline, "the clip did not finish"
            time.sleep(0.5)
        before = log_rows(data, "objects_log")
        for action in ("disable", "enable"):
            code, body = client.request("PUT", f"/cameras/{CAMERA}/{action}")
            assert code == 200, body
        deadline = time.monotonic() + 60
        while True:
            st = client.json("GET", "/status")["cameras"][CAMERA]
            if st["status"] == "finished":
                break
            assert time.monotonic() < deadline, st
            time.sleep(0.2)
        assert st["frames"] == 0  # nothing processed again
        time.sleep(1.0)
        assert log_rows(data, "objects_log") == before
    finally:
        server.stop(proc)


@pytest.mark.slow
def test_killed_processor_with_the_api_leaves_no_process(x86_config: Path) -> None:
    """The same with the API serving (its threads started the workers too)."""
    from tests import test_api_server as server

    port = server.free_port()
    server.configure(x86_config, port)
    data = x86_config.parent / "data"
    proc = server.start(x86_config)
    wait_until(proc, data, lambda st: st["pid"] == proc.pid and next_index(st) >= 20)
    kill_and_wait_for_children(proc)
    with socket.socket() as s:  # and nobody serves its port any more
        assert s.connect_ex(("127.0.0.1", port)) != 0
