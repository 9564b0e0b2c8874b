"""``web_hook_logger`` against a real HTTP receiver (tests/webhook_receiver.py) on 127.0.0.1,
with real records, a real outbox on disk and a real child process killed with SIGKILL."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from libs.config import ConfigError, load_config
from libs.config.models import LookoutConfig
from libs.config.restarts import Restarts
from libs.config.secrets import MASK, mask_secrets
from libs.integrations import signing
from libs.integrations.outbox import MIN_MAX_BYTES
from libs.integrations.webhook import (
    CLOSE_TIMEOUT_S,
    NAME,
    WebHookConfig,
    WebHookLogger,
    masked_endpoint,
)
from libs.loggers import AREA_LOGGERS, OUTPUTS, SOURCE_LOGGERS
from libs.records import (
    DetectedObject,
    FrameSummary,
    LineCrossing,
    ObjectsSample,
    Record,
    RecordIds,
)
from tests.conftest import REPO
from tests.webhook_receiver import WebhookReceiver, genuine

SECRET = b"whsec-shared-between-lookout-and-the-receiver"
TOKEN = "Bearer tok-0123456789"
T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
REFERENCE_KEYS = {"version", "timestamp", "detected_objects", "violating_objects",
                  "environment_score", "detections", "violations_indexes"}


# ---------------------------------------------------------------------------------------
# Records and sinks
# ---------------------------------------------------------------------------------------

class Camera:
    """Makes a camera's records the way its pipeline does: a frame every 0.1 s of video."""

    def __init__(self, cam: str, ids: RecordIds | None = None) -> None:
        self.cam = cam
        self.ids = ids or RecordIds()
        self.frame = 0

    def step(self) -> list[Record]:
        i = self.frame
        self.frame += 1
        ts = T0 + timedelta(seconds=0.1 * i)
        env = dict(source="camera", source_id=self.cam, timestamp=ts)
        out: list[Record] = [
            FrameSummary(id=self.ids(), frame=i, detected_objects=2, violating_objects=2,
                         violating_pairs=1, occupancy=2, occupancy_threshold=0,
                         environment_score=0.0, **env),
            ObjectsSample(id=self.ids(), frame=i, detected_objects=2, violating_objects=2,
                          violating_pairs=1, occupancy=2, environment_score=0.0,
                          detections=(DetectedObject(id=7, bbox=(10, 20, 50, 120), score=0.9,
                                                     violating=True),
                                      DetectedObject(id=8, bbox=(60, 20, 99, 130), score=0.8,
                                                     violating=True)),
                          violations_indexes=((0, 1),), **env),
        ]
        if i % 3 == 0:
            out.append(LineCrossing(id=self.ids(), frame=i, line="door", track_id=i,
                                    direction="in", **env))
        return out


def sent(records: list[Record]) -> list[Record]:
    """What the sink sends of ``records`` with a TimeInterval of 0.1 s: no frame summary."""
    return [r for r in records if not isinstance(r, FrameSummary)]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> LookoutConfig:
    folder = tmp_path_factory.mktemp("webhook")
    text = (REPO / "config-x86.ini").read_text()
    text = text.replace("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}")
    (folder / "config.ini").write_text(text)
    return load_config(folder / "config.ini")


def section(endpoint: str, name: str = "Output_1", **keys: str) -> WebHookConfig:
    values = {"Name": NAME, "Endpoint": endpoint, "Secret": SECRET.decode(),
              "Authorization": TOKEN, "TimeInterval": "0.1", "SendingInterval": "0.2",
              "Timeout": "2", **keys}
    cfg = WebHookConfig.model_validate(values)
    cfg._section = name
    return cfg


def make_sink(app: LookoutConfig, endpoint: str, name: str = "Output_1",
              **keys: str) -> WebHookLogger:
    return WebHookLogger(section(endpoint, name, **keys), None, app, retry_first_s=0.1,
                         retry_max_s=0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

REFERENCE_SECTION = """
[SourceLogger_3]
Name = web_hook_logger
Endpoint =
Authorization =
TimeInterval = 0.5
Enabled = False
SendingInterval = 5
"""


def test_registered_as_a_bus_sink_of_every_section_kind() -> None:
    for registry in (SOURCE_LOGGERS, AREA_LOGGERS, OUTPUTS):
        assert registry.get(NAME) is WebHookLogger
    assert WebHookLogger.on_bus
    assert WebHookConfig.RESTARTS is Restarts.NO_CAMERA  # editing it restarts no camera
    fields = {f.alias for f in WebHookConfig.model_fields.values()}
    assert {"Endpoint", "Authorization", "TimeInterval", "SendingInterval", "Secret",
            "Timeout", "OutboxMaxBytes", "Kinds"} <= fields
    assert all(f.description for f in WebHookConfig.model_fields.values())


def test_the_reference_section_loads_and_an_enabled_one_needs_an_endpoint(
        x86_config: Path) -> None:
    base = x86_config.read_text()
    x86_config.write_text(base + REFERENCE_SECTION)
    cfg = load_config(x86_config)
    hook = next(s for s in cfg.source_loggers if s.name == NAME)
    assert isinstance(hook, WebHookConfig) and not hook.enabled and hook.sending_interval == 5

    x86_config.write_text(base + REFERENCE_SECTION.replace("Enabled = False", "Enabled = True"))
    with pytest.raises(ConfigError) as err:
        load_config(x86_config)
    assert "[SourceLogger_3] Endpoint" in str(err.value) and "is empty" in str(err.value)
    x86_config.write_text(base + REFERENCE_SECTION.replace("Endpoint =", "Endpoint = ftp://x/"))
    with pytest.raises(ConfigError, match="http:// or https://"):
        load_config(x86_config)
    x86_config.write_text(base + REFERENCE_SECTION + "Kinds = objects_log, line_crosing\n")
    with pytest.raises(ConfigError, match="line_crosing"):
        load_config(x86_config)


def test_viewers_and_status_never_see_a_credential(app: LookoutConfig) -> None:
    endpoint = "http://user:pw-9876@127.0.0.1:9/hook?token=tq-5432&site=1"
    sink = make_sink(app, endpoint, name="Output_masked")
    try:
        shown = json.dumps(sink.state())
        for secret in ("pw-9876", "tq-5432", "site=1", "tok-0123456789", SECRET.decode()):
            assert secret not in shown
        assert sink.state()["endpoint"] == "http://***@127.0.0.1:9/hook?***"
        assert sink.state()["signed"] is True
        # the section as the configuration API shows it to a viewer
        masked = mask_secrets(sink.config.model_dump(by_alias=True))
        assert masked["Authorization"] == MASK and masked["Secret"] == MASK
        assert "pw-9876" not in masked["Endpoint"] and "tq-5432" not in masked["Endpoint"]
    finally:
        sink.close()
    assert masked_endpoint("https://[::1]:8443/a/b") == "https://[::1]:8443/a/b"


# ---------------------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------------------

def test_batches_every_sending_interval_signed_with_the_reference_payload(
        app: LookoutConfig) -> None:
    cams = [Camera("cam-a"), Camera("cam-b")]
    produced: list[Record] = []
    with WebhookReceiver(secret=SECRET) as rx:
        sink = make_sink(app, rx.url, name="Output_batches", SendingInterval="0.5")
        try:
            t_end = time.monotonic() + 2.6
            while time.monotonic() < t_end:  # 10 frames a second per camera
                for cam in cams:
                    batch = cam.step()
                    produced += batch
                    sink.take(batch)
                time.sleep(0.1)
            want = {r.id for r in sent(produced)}
            rx.wait_for(lambda r: r.ids() >= want, 10, "every record")
            wait(lambda: sink.state()["queued"] == 0, 5, "an empty outbox")
            state = sink.state()
        finally:
            sink.close()
    requests = rx.accepted()
    assert rx.ids() == want  # frame summaries are not sent by default
    assert state["delivered"] == len(want) and state["dropped"] == 0 and state["connected"]
    # one PUT per SendingInterval: at least 0.5 s apart (the clock of the receiver)
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(requests)]
    assert 4 <= len(requests) <= 8, len(requests)
    assert min(gaps) >= 0.45, gaps
    for req in requests:
        assert req.method == "PUT" and req.path == "/hook"
        assert req.headers["Authorization"] == TOKEN
        assert req.headers["Content-Type"] == "application/json"
        assert genuine(SECRET, req.headers, req.body)
        assert not genuine(b"another secret", req.headers, req.body)
        assert signing.verify(SECRET, req.headers["X-Lookout-Timestamp"], req.body,
                              req.headers["X-Lookout-Signature"], time.time())
        assert req.doc is not None and req.doc["version"] == 1
        assert datetime.fromisoformat(req.doc["sent_at"]).tzinfo is not None
    by_id = {r.id: r for r in produced}
    for rec in rx.records():
        original = by_id[rec["id"]]
        if rec["kind"] == "objects_log":
            assert REFERENCE_KEYS | {"violating_pairs", "occupancy", "id", "kind", "source",
                                     "source_id"} <= set(rec)
            assert rec["version"] == original.schema
            assert rec["detections"][0] == {"id": 7, "bbox": [10.0, 20.0, 50.0, 120.0],
                                            "score": 0.9, "violating": True}
            rec = {k: v for k, v in rec.items() if k != "version"}
        assert Record.from_dict(rec) == original  # every record is its JSON form
    # records of one camera arrive in the order they were made
    stamps = [rec["timestamp"] for rec in rx.records() if rec["source_id"] == "cam-a"]
    assert stamps == sorted(stamps)


def test_time_interval_thins_samples_per_camera_on_the_epoch_grid(app: LookoutConfig) -> None:
    cams = [Camera("cam-a"), Camera("cam-b")]
    produced: list[Record] = []
    with WebhookReceiver(secret=SECRET) as rx:
        sink = make_sink(app, rx.url, name="Output_thin", TimeInterval="0.5",
                         SendingInterval="0.1")
        try:
            for _ in range(20):  # 2 s of video per camera, in one go
                for cam in cams:
                    batch = cam.step()
                    produced += batch
                    sink.take(batch)
            crossings = {r.id for r in produced if isinstance(r, LineCrossing)}
            rx.wait_for(lambda r: r.ids() >= crossings, 10, "every crossing")
            wait(lambda: sink.state()["queued"] == 0, 5, "an empty outbox")
        finally:
            sink.close()
    got = rx.records()
    for cam in ("cam-a", "cam-b"):
        frames = [r["frame"] for r in got if r["kind"] == "objects_log" and r["source_id"] == cam]
        assert frames == [0, 5, 10, 15]  # T0 is on the grid: one sample per 0.5 s slot
    assert {r["id"] for r in got if r["kind"] == "line_crossing"} == crossings  # not thinned


def test_receiver_down_then_up_every_record_arrives_by_id(
        app: LookoutConfig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cam = Camera("cam-a")
    produced: list[Record] = []
    with WebhookReceiver(secret=SECRET) as rx:
        sink = make_sink(app, rx.url, name="Output_outage")
        try:
            changes: list[bool | None] = []

            def note() -> None:
                c = sink.state()["connected"]
                if not changes or changes[-1] != c:
                    changes.append(c)

            outage_s = 3.0
            for i in range(60):  # 6 s at 10 frames a second; the receiver is down 3 s of it
                if i == 10:
                    restart = rx.down_for(outage_s)
                batch = cam.step()
                produced += batch
                sink.take(batch)
                note()
                time.sleep(0.1)
            restart.join()
            want = {r.id for r in sent(produced)}
            deadline = time.monotonic() + 15
            while not rx.ids() >= want and time.monotonic() < deadline:
                note()
                time.sleep(0.05)
            wait(lambda: sink.state()["queued"] == 0, 5, "an empty outbox")
            note()
            state = sink.state()
        finally:
            sink.close()
    assert rx.ids() == want
    records = rx.records()
    assert len(records) >= len(want)  # a retried record may come twice...
    seen: dict[str, str] = {}
    for rec in records:  # ...with its id and its content unchanged
        assert seen.setdefault(rec["id"], json.dumps(rec, sort_keys=True)) == \
            json.dumps(rec, sort_keys=True)
    assert all(r.signature_ok for r in rx.requests)
    assert state["delivered"] >= len(want) and state["dropped"] == 0
    assert state["connected"] is True
    assert False in changes and changes[-1] is True  # it noticed the outage and recovered
    # the log says so once each way, not once per retry
    lines = [r.getMessage() for r in caplog.records if "Output_outage" in r.getMessage()]
    assert sum("delivery failing" in m for m in lines) == 1, lines
    assert sum("delivering to its sink" in m for m in lines) == 2, lines  # start, recovery
    print(f"receiver down {outage_s} s: {len(want)} records produced, {len(records)} "
          f"received ({len(records) - len(want)} duplicates), {len(rx.requests)} requests")


def test_a_refused_request_is_kept_and_retried(
        app: LookoutConfig, caplog: pytest.LogCaptureFixture) -> None:
    cam = Camera("cam-a")
    with WebhookReceiver(secret=b"not the sink's secret") as rx:
        sink = make_sink(app, rx.url, name="Output_refused")
        try:
            batch = cam.step()
            sink.take(batch)
            wait(lambda: len(rx.requests) >= 3, 10, "three refused attempts")
            state = sink.state()
            assert state["connected"] is False and state["last_error"].startswith(
                "DeliveryError: HTTP 401")
            assert state["queued"] == len(sent(batch)) and not rx.accepted()
            refusals = [r for r in caplog.records if "refuses the records" in r.getMessage()]
            assert len(refusals) == 1 and refusals[0].levelno == logging.ERROR
            assert "HTTP 401" in refusals[0].getMessage()
            rx.secret = SECRET  # the receiver is fixed: the kept records go through
            rx.wait_for(lambda r: r.ids() == {x.id for x in sent(batch)}, 10, "the records")
        finally:
            sink.close()


def test_close_delivers_what_waits_for_the_sending_interval(app: LookoutConfig) -> None:
    """A recording's run ends: its last records go at close, not at the next start (they
    would wait for SendingInterval); a receiver that is down is not waited for."""
    cam = Camera("cam-a")
    with WebhookReceiver(secret=SECRET) as rx:
        sink = make_sink(app, rx.url, name="Output_drain", SendingInterval="60")
        first = cam.step()
        sink.take(first)
        rx.wait_for(lambda r: r.ids() >= {x.id for x in sent(first)}, 5, "the first batch")
        rest = [rec for _ in range(5) for rec in cam.step()]
        sink.take(rest)  # the interval holds these back
        time.sleep(0.3)
        assert sink.state()["queued"] == len(sent(rest))
        t0 = time.monotonic()
        sink.close()
        took = time.monotonic() - t0
        assert rx.ids() == {x.id for x in sent(first + rest)}
    assert took < CLOSE_TIMEOUT_S, took
    down = make_sink(app, rx.url, name="Output_drain")  # the receiver is gone now
    more = cam.step()
    down.take(more)
    t0 = time.monotonic()
    down.close()
    assert time.monotonic() - t0 < 1.0  # never connected: nothing to wait for
    again = make_sink(app, rx.url, name="Output_drain")
    try:
        assert again.state()["queued"] == len(sent(more))
    finally:
        again.close()


def test_close_is_bounded_while_a_receiver_hangs_and_keeps_the_records(
        app: LookoutConfig) -> None:
    cam = Camera("cam-a")
    with socket.socket() as hang:  # accepts connections, never answers
        hang.bind(("127.0.0.1", 0))
        hang.listen(16)
        url = f"http://127.0.0.1:{hang.getsockname()[1]}/hook"
        sink = make_sink(app, url, name="Output_hang", Timeout="60")
        batch = cam.step()
        sink.take(batch)
        time.sleep(0.3)  # the request is on its way and waits for an answer
        t0 = time.monotonic()
        sink.close()
        took = time.monotonic() - t0
    assert took < CLOSE_TIMEOUT_S + 1.0, took
    again = make_sink(app, url, name="Output_hang")
    try:
        assert again.state()["queued"] == len(sent(batch))
    finally:
        again.close()


CHILD = """
import sys, time
from libs.config import load_config
from libs.records import RecordIds
from tests.test_webhook import Camera, make_sink
app = load_config(sys.argv[1])
sink = make_sink(app, sys.argv[2], name="Output_killed")
cam = Camera("cam-k")
ids = []
for _ in range(int(sys.argv[3])):
    batch = cam.step()
    sink.take(batch)
    ids += [r.id for r in batch if r.kind != "frame_summary"]
print(" ".join(ids), flush=True)
time.sleep(600)
"""


def test_a_new_sink_delivers_what_a_killed_process_left_in_the_outbox(
        app: LookoutConfig) -> None:
    port = free_port()  # nothing listens there while the child runs
    url = f"http://127.0.0.1:{port}/hook"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(app.path), url, "40"], cwd=REPO,
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        left = set(line.split())
        assert len(left) == 40 + 14  # 40 samples and 14 crossings, none delivered
    finally:
        child.send_signal(signal.SIGKILL)  # no close, no flush: the outbox stays as it is
        child.wait()
    with WebhookReceiver(secret=SECRET, port=port) as rx:
        sink = make_sink(app, url, name="Output_killed")
        try:
            rx.wait_for(lambda r: r.ids() >= left, 10, "what the killed process left")
            wait(lambda: sink.state()["queued"] == 0, 5, "an empty outbox")
            assert sink.state()["delivered"] >= len(left)
        finally:
            sink.close()
    assert rx.ids() == left and all(r.signature_ok for r in rx.requests)


def test_a_tiny_outbox_stays_under_its_limit_and_counts_what_it_drops(
        app: LookoutConfig) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    limit = MIN_MAX_BYTES
    sink = make_sink(app, url, name="Output_tiny", OutboxMaxBytes=str(limit))
    cam = Camera("cam-a")
    order: list[str] = []
    try:
        largest = 0
        for _ in range(600):  # the receiver is down the whole time
            batch = cam.step()
            sink.take(batch)
            order += [r.id for r in sent(batch)]
            largest = max(largest, sink.outbox.disk_usage())
        state = sink.state()
        assert largest <= limit, largest
        assert state["delivered"] == 0 and state["dropped"] > 0
        assert state["dropped"] + state["queued"] == len(order)
        with WebhookReceiver(secret=SECRET, port=port) as rx:
            wait(lambda: sink.state()["queued"] == 0, 15, "an empty outbox")
            state = sink.state()
        received = rx.ids()
    finally:
        sink.close()
    produced = len(order)
    assert state["dropped"] == produced - state["delivered"]
    assert len(received) == state["delivered"]
    assert received == set(order[-len(received):])  # the oldest were dropped
    print(f"outbox of {limit} bytes, receiver down: {produced} records produced, largest "
          f"disk use {largest} bytes, {state['dropped']} dropped, {state['delivered']} "
          f"delivered once it came back")


# ---------------------------------------------------------------------------------------
# The README's receiver check
# ---------------------------------------------------------------------------------------

def readme_receiver_snippet() -> str:
    text = (REPO / "README.md").read_text()
    webhook = re.split(r"\n#{2,3} ", text.split("\n### Webhook\n", 1)[1], maxsplit=1)[0]
    blocks = re.findall(r"```python\n(.*?)```", webhook, re.S)
    assert len(blocks) == 1, "the README's Webhook section has one Python block"
    return str(blocks[0])


def docstring_receiver_snippet() -> str:
    doc = signing.__doc__ or ""
    snippet = doc.split("set ``SECRET``)::\n", 1)[1].split("\nA retried delivery", 1)[0]
    return textwrap.dedent(snippet).strip() + "\n"


def test_the_readme_receiver_check_is_the_documented_one_and_verifies_a_real_request(
        app: LookoutConfig) -> None:
    snippet = readme_receiver_snippet()
    assert snippet.strip() == docstring_receiver_snippet().strip()  # one source of truth
    namespace: dict[str, Any] = {}
    exec(snippet.replace('SECRET = b"the shared secret from the webhook\'s configuration"',
                         f"SECRET = {SECRET!r}"), namespace)
    check = namespace["lookout_request_is_genuine"]
    with WebhookReceiver(secret=SECRET) as rx:
        sink = make_sink(app, rx.url, name="Output_readme")
        try:
            sink.take(Camera("cam-a").step())
            rx.wait_for(lambda r: bool(r.accepted()), 10, "a request")
        finally:
            sink.close()
    req = rx.accepted()[0]
    assert check(req.headers, req.body)
    assert not check(req.headers, req.body.replace(b'"cam-a"', b'"cam-b"'))
