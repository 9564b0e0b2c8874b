"""``web_hook_logger`` with the real processor on a real clip (PETS09 S2L1, the bundled
camera: 795 frames, 113 s of video), against the real receiver of tests/webhook_receiver.py:

- the receiver is stopped for :data:`OUTAGE_S` (30 s) mid-run and started again: every record
  the run produced (every camera record the event bus carried that the sink sends) arrives,
  counted by id, each signature verifies, and the records match the file logger's rows;
- the processor is SIGKILLed while the receiver is down, then started again: what its outbox
  held is delivered.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from libs.integrations import webhook
from libs.integrations.outbox import SEGMENT_SUFFIX, STATE_FILE
from libs.records import CameraState, FrameSummary, ObjectsSample, Record
from processor.supervisor import Supervisor
from tests.conftest import REPO
from tests.test_event_bus import Collector, camera
from tests.test_supervisor import wait_until
from tests.webhook_receiver import WebhookReceiver

OUTAGE_S = 30.0  # how long the receiver is down mid-run (the acceptance test's figure)
SECRET = "e2e-shared-secret-0f3a"
TOKEN = "Bearer e2e-token"
SECTION = "SourceLogger_9"
CAMERA = "pets-view1"
RETRY_MAX_S = 4.0  # the sink's backoff cap in these tests: the run does not wait a minute


def add_webhook(config: Path, endpoint: str) -> Path:
    config.write_text(config.read_text() + f"""
[{SECTION}]
Name = web_hook_logger
Endpoint = {endpoint}
Authorization = {TOKEN}
Secret = {SECRET}
TimeInterval = 0.5
SendingInterval = 0.5
Enabled = True
""")
    return config


@pytest.fixture
def registering_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Quick retries here; the environment for processes started from here."""
    monkeypatch.setattr(webhook, "RETRY_MAX_S", RETRY_MAX_S)
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def supervisor(config: Path, collector: Collector | None = None) -> Iterator[Supervisor]:
    sup = Supervisor(config, show_progress=False, exit_when_done=False)
    if collector is not None:
        sup.bus.subscribe("test", collector)
    sup.run_in_thread()
    try:
        yield sup
    finally:
        sup.request_stop()
        if sup._loop_thread is not None:
            sup._loop_thread.join(60)


def output(sup: Supervisor) -> dict:
    return sup.submit(sup.outputs_status).result(10)[SECTION]


def csv_rows(data: Path, folder: str) -> list[dict[str, str]]:
    base = data / "processor/static/data/sources" / CAMERA / folder
    return [r for p in sorted(base.glob("*.csv")) for r in csv.DictReader(p.open())]


def instants(values: list[str]) -> list[datetime]:
    """Sorted instants, to the millisecond (the raw logs' precision)."""
    out = [datetime.fromisoformat(v) for v in values]
    return sorted(t.replace(microsecond=t.microsecond // 1000 * 1000) for t in out)


def sendable(records: list[Record]) -> list[Record]:
    """Camera records the sink sends with its defaults (TimeInterval equal to the file
    logger's, so every objects_log sample; never frame summaries)."""
    return [r for r in records if r.source == "camera" and not isinstance(r, FrameSummary)
            and r.kind in webhook.DEFAULT_KINDS]


@pytest.mark.slow
def test_receiver_down_30s_mid_run_every_record_arrives_signed(
        x86_config: Path, registering_env: dict[str, str]) -> None:
    bus = Collector()
    with WebhookReceiver(secret=SECRET.encode()) as rx:
        config = add_webhook(x86_config, rx.url)
        with supervisor(config, bus) as sup:
            rx.wait_for(lambda r: bool(r.accepted()), 120, "the first delivery")
            assert camera(sup, CAMERA)["status"] != "finished"
            outage_started = time.monotonic()
            rx.down_for(OUTAGE_S)
            wait_until(lambda: output(sup)["queued"] > 0, 60, "records queued while down")
            wait_until(lambda: camera(sup, CAMERA)["status"] == "finished", 180,
                       "the clip to finish")
            wait_until(lambda: any(r.state == "finished" for r in bus.of(CameraState, CAMERA)),
                       30, "the camera's last record on the bus")
            produced_during_outage = time.monotonic() - outage_started < OUTAGE_S
            want = {r.id for r in sendable(bus.records)}
            rx.wait_for(lambda r: r.ids() >= want, OUTAGE_S + 90, "every record of the run")
            wait_until(lambda: output(sup)["queued"] == 0, 30, "an empty outbox")
            state = output(sup)
    data = config.parent / "data"
    got = rx.records()
    assert rx.ids() == want  # counted by id: every record, nothing else
    assert all(r.signature_ok for r in rx.requests), "a signature did not verify"
    assert all(r.headers["Authorization"] == TOKEN for r in rx.requests)
    assert state["connected"] is True and state["dropped"] == 0
    assert state["delivered"] >= len(want) and "e2e-token" not in json.dumps(state)
    # What the file logger wrote, record for record.
    objects = {r["id"]: r for r in got if r["kind"] == "objects_log"}
    rows = csv_rows(data, "objects_log")
    assert len(objects) == len(rows) > 0
    assert instants([o["timestamp"] for o in objects.values()]) == \
        instants([r["Timestamp"] for r in rows])
    assert sorted(int(o["frame"]) for o in objects.values()) == \
        sorted(int(r["Frame"]) for r in rows)
    crossings = {r["id"]: r for r in got if r["kind"] == "line_crossing"}
    crossing_rows = csv_rows(data, "line_crossings")
    assert len(crossings) == len(crossing_rows) > 0
    assert instants([c["timestamp"] for c in crossings.values()]) == \
        instants([r["Timestamp"] for r in crossing_rows])
    kinds: dict[str, int] = {}
    for r in {r["id"]: r for r in got}.values():
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    bus_objects = [r for r in bus.records if isinstance(r, ObjectsSample)]
    assert kinds["objects_log"] == len(bus_objects)
    print(f"receiver down {OUTAGE_S:.0f} s mid-run (the clip "
          f"{'ended during' if produced_during_outage else 'outlasted'} the outage): "
          f"{len(want)} records produced, {len(got)} received ({len(got) - len(want)} "
          f"duplicates) in {len(rx.requests)} requests; by kind {kinds}")


def outbox_ids(folder: Path) -> set[str]:
    """Ids of the records an outbox folder holds undelivered (read like the outbox does)."""
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except FileNotFoundError:
        state = {}
    head, offset = int(state.get("segment", 0)), int(state.get("offset", 0))
    ids: set[str] = set()
    for path in sorted(folder.glob("*" + SEGMENT_SUFFIX)):
        seg = int(path.stem)
        if seg < head:
            continue
        data = path.read_bytes()
        data = data[: data.rfind(b"\n") + 1]
        if seg == head:
            data = data[offset:]
        ids |= {json.loads(line)["id"] for line in data.splitlines() if line.strip()}
    return ids


@pytest.mark.slow
def test_processor_killed_while_receiver_down_delivers_its_outbox_after_restart(
        x86_config: Path, registering_env: dict[str, str]) -> None:
    from tests.test_outbox import free_port
    from tests.test_restart_exact import kill_and_wait_for_children, status

    port = free_port()  # nothing listens there until the processor has been killed
    rx = WebhookReceiver(secret=SECRET.encode(), port=port)
    config = add_webhook(x86_config, rx.url)
    data = config.parent / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "run", "--config", str(config), "--no-api",
         "--no-progress"], cwd=REPO, env=registering_env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            st = status(data)
            out = (st or {}).get("outputs", {}).get(SECTION, {})
            if st and out.get("queued", 0) >= 20 and st["cameras"][CAMERA]["frames"] >= 100:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"no records queued before the end ({proc.returncode}):\n"
                            f"{proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.05)
        assert out["connected"] is False and out["delivered"] == 0
    finally:
        if proc.poll() is None:
            kill_and_wait_for_children(proc)
    left = outbox_ids(data / "processor/outbox" / SECTION)
    assert len(left) >= 20
    with rx, supervisor(config) as sup:  # the receiver is back, the processor restarts
        rx.wait_for(lambda r: r.ids() >= left, 90, "what the killed processor left queued")
        wait_until(lambda: camera(sup, CAMERA)["status"] == "finished", 180, "the clip to finish")
        wait_until(lambda: output(sup)["queued"] == 0, 60, "an empty outbox")
        state = output(sup)
    assert all(r.signature_ok for r in rx.requests)
    got = {r["id"]: r for r in rx.records()}
    assert state["dropped"] == 0 and state["delivered"] >= len(got)
    # After the restart ran the clip to its end, the receiver has an objects sample for
    # every raw-log row and none for an instant without one: the killed run's records came
    # from its outbox, the resumed run's from the bus.  (A record made again keeps its id;
    # one that came out differently after the resume point has another, and then the
    # receiver has both versions of that instant.)
    objects = [r for r in got.values() if r["kind"] == "objects_log"]
    rows = csv_rows(data, "objects_log")
    assert set(instants([o["timestamp"] for o in objects])) == \
        set(instants([r["Timestamp"] for r in rows]))
    print(f"killed with {len(left)} records in its outbox; after the restart the receiver "
          f"has {len(got)} records ({len(objects)} objects samples for {len(rows)} raw-log "
          f"rows)")
