"""A full disk never stops Lookout for good.

Real small tmpfs mounts (the tests run as root, as CI does; without the right to mount they
are skipped with the reason): the log writer keeps every line it accepted while the disk is
full and writes them, in order and whole, once space is back; a real ``lookout run`` with its
API on the PETS clip survives its data directory filling up, says so in its status and in
``/health``, and resumes processing and writing within 10 s of the space being freed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from libs.loggers.writer import BackgroundWriter
from tests.conftest import REPO
from tests.live_api import terminate
from tests.test_api_server import Client, configure, free_port, wait_healthy
from tests.test_run_e2e import read_csv_strict

MB = 1024 * 1024


@contextlib.contextmanager
def tmpfs(size: str, at: Path | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` (``64k``, ``8m``) mounted on ``at`` (made if missing) or on a new
    temporary folder; always unmounted."""
    folder = at if at is not None else Path(tempfile.mkdtemp(prefix="lookout-tmpfs-"))
    folder.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                          str(folder)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {(res.stderr or res.stdout).strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        if at is None:
            with contextlib.suppress(OSError):
                folder.rmdir()


def fill(path: Path, chunk: int = 64 * 1024) -> int:
    """Write ``path`` until the file system is full; returns the bytes it took."""
    written = 0
    block = b"\0" * chunk
    with open(path, "wb", buffering=0) as fh:
        while chunk:
            try:
                written += fh.write(block[:chunk])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                chunk //= 2
    return written


def wait_until(predicate, timeout: float, step: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


# ---------------------------------------------------------------------------------------
# The writer on a tiny tmpfs
# ---------------------------------------------------------------------------------------


def test_writer_keeps_every_line_while_full_and_writes_them_in_order() -> None:
    with tmpfs("64k") as root:
        log = root / "logs" / "a.csv"
        other = root / "logs" / "b.csv"
        changes: list[str | None] = []
        writer = BackgroundWriter(name="disk-full-test", on_change=changes.append)
        try:
            writer.append_line(log, "0,first", header="K,V")
            assert writer.flush(5)
            filler = root / "filler"
            fill(filler)
            lines = [f"{k},{'x' * 40}" for k in range(1, 301)]  # ~13 KB: 3 pages and more
            for k, line in enumerate(lines):
                writer.append_line(log if k % 3 else other, line, header="K,V")
            assert not writer.flush(0.5), "flush must wait while lines are kept back"
            health = writer.health()
            assert health.error is not None
            assert health.error.startswith("disk full: writing ")
            assert "[Errno 28] No space left on device" in health.error
            assert health.backlog_lines >= 250  # a few may fit in the file's last page
            assert health.dropped_lines == 0
            assert changes == [health.error]  # one state change, not one per line
            # Never a torn line, even while full.
            assert log.read_bytes().endswith(b"\n")

            t0 = time.monotonic()
            filler.unlink()
            assert writer.flush(5)
            recovered_in = time.monotonic() - t0
            assert recovered_in < 2.0, recovered_in
            health = writer.health()
            assert health.ok and health.backlog_lines == 0 and health.dropped_lines == 0
            assert changes[-1] is None and len(changes) == 2
        finally:
            writer.close()
        want_a = ["K,V", "0,first"] + [ln for k, ln in enumerate(lines) if k % 3]
        want_b = ["K,V"] + [ln for k, ln in enumerate(lines) if not k % 3]
        assert log.read_text().splitlines() == want_a
        assert other.read_text().splitlines() == want_b


def test_a_write_cut_short_by_a_full_disk_leaves_no_torn_line() -> None:
    with tmpfs("64k") as root:
        log = root / "a.csv"
        with BackgroundWriter(name="torn-test") as writer:
            writer.append_line(log, "H", header=None)
            assert writer.flush(5)
            fill(root / "filler")
            # Longer than the room left in the file's last page: os.write writes part of it.
            long_line = "L" + "y" * 9000
            writer.append_line(log, long_line)
            assert wait_until(lambda: writer.health().error is not None, 5)
            assert log.read_bytes() == b"H\n", "a partial write must be cut back"
            (root / "filler").unlink()
            assert writer.flush(5)
        assert log.read_text().splitlines() == ["H", long_line]


def test_backlog_over_its_bound_drops_the_oldest_and_counts_them() -> None:
    with tmpfs("64k") as root:
        fill(root / "filler")
        log = root / "a.csv"
        with BackgroundWriter(name="bound-test", max_backlog_bytes=1000) as writer:
            for k in range(100):
                writer.append_line(log, f"{k:09d}")  # 10 bytes a line: 100 kept at most
            for k in range(100, 150):
                writer.append_line(log, f"{k:09d}")
            assert wait_until(lambda: writer.health().dropped_lines == 50, 5)
            assert writer.health().backlog_lines == 100
            (root / "filler").unlink()
            assert writer.flush(5)
        assert log.read_text().splitlines() == [f"{k:09d}" for k in range(50, 150)]


def test_close_while_full_returns_after_its_grace_and_the_lines_follow() -> None:
    with tmpfs("64k") as root:
        fill(root / "filler")
        log = root / "a.csv"
        writer = BackgroundWriter(name="close-test", close_grace=0.3)
        for k in range(50):
            writer.append_line(log, str(k))
        t0 = time.monotonic()
        writer.close()
        assert time.monotonic() - t0 < 3.0, "close must not wait for the disk forever"
        assert writer.health().backlog_lines == 50 and writer.health().dropped_lines == 0
        (root / "filler").unlink()
        assert wait_until(lambda: writer.health().backlog_lines == 0, 5)
        assert log.read_text().splitlines() == [str(k) for k in range(50)]


def test_skippable_work_is_skipped_and_counted_while_full() -> None:
    with tmpfs("64k") as root:
        fill(root / "filler")
        shot = root / "shot.jpg"
        with BackgroundWriter(name="skip-test") as writer:
            writer.append_line(root / "a.csv", "1")  # kept back
            writer.submit(lambda: shot.write_bytes(b"j" * 10_000), skippable=True)
            writer.append_line(root / "a.csv", "2")
            assert wait_until(lambda: writer.health().skipped_files == 1, 5)
            (root / "filler").unlink()
            assert writer.flush(5)
        assert (root / "a.csv").read_text() == "1\n2\n"
        assert not shot.exists()


# ---------------------------------------------------------------------------------------
# A real `lookout run` (processor and API) whose data directory fills up
# ---------------------------------------------------------------------------------------

CAMERA = "pets-view1"
FPS = 7  # the clip's FrameRate in the config
ROW_INTERVAL_US = 500_000  # the raw log's TimeInterval (0.5 s)
START = datetime(2009, 3, 1, 10, 0, tzinfo=UTC)
RESUME_LIMIT_S = 10.0


def expected_rows(last_frame: int) -> list[tuple[str, int]]:
    """(Timestamp, Frame) of every raw-log row of frames 0..last_frame: the first frame of
    each 0.5 s slot of video time, stamped as the source and the logger stamp it."""
    rows: list[tuple[str, int]] = []
    previous = None
    for index in range(last_frame + 1):
        ts = START + timedelta(seconds=index / FPS)
        slot = ((ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)) \
            // ROW_INTERVAL_US
        if slot != previous:
            rows.append((ts.isoformat(timespec="milliseconds"), index))
            previous = slot
    return rows


def status_file(data: Path) -> dict | None:
    try:
        return json.loads((data / "processor" / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def health(client: Client) -> tuple[int, dict]:
    code, body = client.request("GET", "/health")
    return code, json.loads(body)


@pytest.mark.slow
def test_lookout_run_survives_a_full_data_directory_and_resumes(
        x86_config: Path, tmp_path: Path) -> None:
    with tmpfs("8m", x86_config.parent / "data") as data:
        _run_and_fill(x86_config, data, tmp_path)


def _run_and_fill(x86_config: Path, data: Path, tmp_path: Path) -> None:
    port = free_port()
    # One detector thread: the clip lasts long enough on a many-core machine too.
    x86_config.write_text(x86_config.read_text().replace("Threads = 0", "Threads = 1"))
    configure(x86_config, port)
    out_path = tmp_path / "lookout.out"  # beside the mount: its own writes never fail
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "processor.cli", "run", "--config", str(x86_config),
             "--no-progress"], cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out, stderr=subprocess.STDOUT, text=True)
    client = Client(f"http://127.0.0.1:{port}")
    log_file = data / f"processor/static/data/sources/{CAMERA}/objects_log/2009-03-01.csv"
    filler = data / "filler"
    try:
        wait_healthy(client, proc)
        client.login("admin1")

        def camera() -> dict:
            return client.json("GET", "/status")["cameras"][CAMERA]  # type: ignore[index]

        assert wait_until(lambda: camera()["frames"] >= 40 and log_file.exists(), 60, 0.1)
        assert health(client) == (200, {"status": "ok"})

        # -- the disk fills up while the clip is processed --------------------------------
        filled = fill(filler)
        assert filled > 1 * MB
        assert wait_until(lambda: health(client)[0] == 503, 5, 0.1), health(client)
        _, body = health(client)
        assert body["status"] == "failing"
        assert any("disk full: writing " in r and "[Errno 28] No space left on device" in r
                   for r in body["reasons"]), body
        assert len(json.dumps(body)) < 5000  # bounded
        assert wait_until(lambda: "disk full" in (camera()["last_error"] or ""), 5, 0.1)
        cam = camera()
        assert cam["last_error"].startswith("disk full: writing "), cam
        assert str(data) in cam["last_error"], cam
        assert (cam["write_error"] or "").startswith("disk full: writing "), cam
        assert proc.poll() is None
        # The API still answers what needs the processor, config writes included (the
        # configuration file is outside the full mount).
        assert client.request("GET", "/cameras")[0] == 200
        code, answer = client.request("PUT", "/areas/campus", b'{"Name": "Campus junction"}',
                                      {"Content-Type": "application/json"})
        assert code == 200, answer
        # Still running: status answers, frames go on, status.json stays behind.
        full_since = time.time()
        frames_full = cam["frames"]
        time.sleep(1.5)
        assert proc.poll() is None
        assert health(client)[0] == 503
        assert camera()["frames"] > frames_full, "processing must go on while the disk is full"
        st = status_file(data)
        assert st is None or datetime.fromisoformat(st["updated"]).timestamp() < full_since
        size_full = log_file.stat().st_size
        frames_before_free = camera()["frames"]

        # -- space comes back --------------------------------------------------------------
        filler.unlink()
        freed, freed_wall = time.monotonic(), time.time()
        resumed: dict[str, float] = {}
        while time.monotonic() - freed < RESUME_LIMIT_S + 5 and len(resumed) < 4:
            now = time.monotonic() - freed
            cam = camera()
            st = status_file(data)
            checks = {
                "health ok": health(client) == (200, {"status": "ok"}),
                "status.json": st is not None
                and datetime.fromisoformat(st["updated"]).timestamp() > freed_wall,
                "raw log": log_file.stat().st_size > size_full,
                "frames": cam["frames"] > frames_before_free or cam["status"] == "finished",
            }
            for name, ok in checks.items():
                if ok and name not in resumed:
                    resumed[name] = round(now, 2)
            time.sleep(0.1)
        print("resumed after (s):", resumed)
        assert set(resumed) == {"health ok", "status.json", "raw log", "frames"}, resumed
        assert max(resumed.values()) <= RESUME_LIMIT_S, resumed

        # -- the clip ends; nothing accepted was lost or torn ----------------------------
        assert wait_until(lambda: camera()["status"] == "finished", 120, 0.5), camera()
        st = status_file(data)
        assert st is not None and st["health"] == {"status": "ok"}, st
        assert st["cameras"][CAMERA]["write_error"] is None
    finally:
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()
        if proc.poll() is None:
            terminate(proc, 90)
    output = out_path.read_text()
    assert proc.returncode == 0, output[-5000:]
    # Logged once per change of state, not once per round or per line.
    assert output.count("cannot write the status") == 1, output[-5000:]
    assert output.count("status written again") == 1
    rows = read_csv_strict(log_file)
    got = [(r["Timestamp"], int(r["Frame"])) for r in rows]
    assert got == expected_rows(got[-1][1]), "raw log rows lost, repeated or out of order"
    assert got[-1][1] >= 790  # to the end of the clip (795 frames)
    for csv_path in data.rglob("*.csv"):
        read_csv_strict(csv_path)  # every file whole: no torn line anywhere


# ---------------------------------------------------------------------------------------
# The supervisor's loop: a failing part is logged and reported, never the end of the loop
# ---------------------------------------------------------------------------------------


def test_supervisor_loop_survives_a_bad_event_and_an_unwritable_status(
        x86_config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from processor.supervisor import Supervisor

    caplog.set_level("INFO")
    sup = Supervisor(x86_config, show_progress=False, exit_when_done=False)
    thread = sup.run_in_thread()
    good_path = sup.status_path
    try:
        assert wait_until(lambda: good_path.exists() and sup.health() == {"status": "ok"}, 30)
        # A malformed event (a bug in a worker) raises inside the loop's round.
        sup.workers[0].events.put(("records",))
        assert wait_until(lambda: "worker 0 events failed; going on" in caplog.text, 5)
        time.sleep(0.3)
        assert thread.is_alive()

        # status.json cannot be written (its folder is a file): reported, retried, recovered.
        blocker = tmp_path / "blocker"
        blocker.write_text("x")
        sup.status_path = blocker / "status.json"
        assert wait_until(lambda: sup.health()["status"] == "failing", 5)
        reasons = sup.health()["reasons"]
        assert reasons[0].startswith(f"status: write failed: writing {blocker}/status.json: "
                                     "[Errno "), reasons
        # The loop goes on: commands are still answered.
        assert "pets-view1" in sup.submit(sup.camera_status).result(5)
        before = good_path.stat().st_mtime_ns
        sup.status_path = good_path
        assert wait_until(lambda: sup.health() == {"status": "ok"}, 5), sup.health()
        assert good_path.stat().st_mtime_ns > before
        assert caplog.text.count("cannot write the status") == 1
        assert thread.is_alive()
    finally:
        sup.request_stop()
        thread.join(60)
    assert not thread.is_alive()


def test_metrics_reports_fail_while_full_and_succeed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from libs.periodic_tasks.metrics import MetricsTask
    from processor.supervisor import TASK_RETRY_SECONDS, TaskRunner
    from tests.test_metrics_reports import log_frames, make_config, reports_of, week_of_frames

    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    section = MetricsTask.Config.model_validate({"Name": "metrics", "LiveInterval": "5"})
    config = make_config(tmp_path, periodic_tasks=[section])
    with tmpfs("1m", tmp_path / "data") as data:
        log_frames(config, week_of_frames())  # raw logs written by the real logger
        filler = data / "filler"
        fill(filler)
        runner = TaskRunner(MetricsTask(section, config), "metrics")
        runner.run_once()
        assert runner.error is not None and "No space left on device" in runner.error
        assert runner.retry_seconds(runner.error) == TASK_RETRY_SECONDS  # not 5 minutes
        filler.unlink()
        runner.run_once()
        assert runner.error is None
        assert runner.retry_seconds(runner.error) == 300.0
        daily = reports_of(config) / "social-distancing" / "daily.csv"
        assert daily.read_text().count("\n") == 4  # header + 3 days
