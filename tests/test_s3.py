"""``s3_logger`` and ``s3_backup`` against a real S3-compatible HTTP server: moto in server
mode (``moto_server``, a separate process on a free port of 127.0.0.1; one per module),
reached through boto3 with credentials from the environment, as in production.

moto keeps its buckets in memory: when the outage test restarts it, the bucket is gone,
which a real S3 would still have, so the test creates it again right after the restart
(what was uploaded before the outage is checked before the server stops)."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import cv2
import numpy as np
import pytest
from botocore.exceptions import ClientError

from libs.config import ConfigError, load_config
from libs.config.models import LookoutConfig, PluginConfig
from libs.config.secrets import is_secret_key
from libs.detectors import Detector
from libs.frame import Detections, Frame
from libs.integrations.s3 import (
    NAME,
    S3Logger,
    S3LoggerConfig,
    describe_error,
    screenshot_key,
)
from libs.integrations.s3_backup import S3Backup, S3BackupConfig
from libs.loggers import SOURCE_LOGGERS, SendTestError
from libs.periodic_tasks import PERIODIC_TASKS
from libs.post_processors.faces import head_regions
from libs.records import FrameSummary, RecordIds
from processor.pipeline import CameraPipeline
from tests.conftest import REPO
from tests.servers import ServerProcess, binary, free_port

CAMERA = "pets-view1"
PROCESSOR = "box-7"
T0 = datetime(2026, 12, 4, 11, 0, 0, tzinfo=UTC)  # 12:00 in Europe/Paris (the TimeZone below)
W, H = 320, 240
ENV = {"AWS_ACCESS_KEY_ID": "lookout-test-key-id",
       "AWS_SECRET_ACCESS_KEY": "lookout-test-secret",
       "AWS_BUCKET_REGION": "us-east-1"}


class MotoS3(ServerProcess):
    """moto's S3-compatible server (PyPI ``moto[server]``); its data lives in memory."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        super().__init__("moto", folder, port)

    def command(self) -> list[str]:
        program = binary("moto_server", str(Path(sys.executable).parent / "moto_server"))
        return [program, "-H", self.host, "-p", str(self.port)]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture(scope="module")
def env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in ENV.items():
            mp.setenv(name, value)
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
                     "AWS_DEFAULT_REGION"):
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory, env: None) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path_factory.mktemp("moto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def s3(server: MotoS3) -> Any:
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"])


_buckets = itertools.count()


def new_bucket(server: MotoS3, name: str | None = None) -> str:
    name = name or f"lookout-test-{next(_buckets)}"
    s3(server).create_bucket(Bucket=name)
    return name


def keys(server: MotoS3, bucket: str, prefix: str = "") -> list[str]:
    out: list[str] = []
    for page in s3(server).get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)


@pytest.fixture
def app(tmp_path: Path, shared: Path) -> LookoutConfig:
    text = (REPO / "config-x86.ini").read_text()
    text = text.replace("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}")
    text = text.replace("DataDirectory = data", f"DataDirectory = {tmp_path / 'data'}")
    # the box's one name, the first part of every key ([App] ProcessorName)
    text = text.replace("[App]\n", f"[App]\nProcessorName = {PROCESSOR}\n", 1)
    (tmp_path / "config.ini").write_text(text)
    cfg = load_config(tmp_path / "config.ini")
    assert cfg.app.processor_name_or_host == PROCESSOR
    cfg.app.time_zone = "Europe/Paris"
    return cfg


def section(model: type[PluginConfig], name: str, **keys: Any) -> PluginConfig:
    cfg = model.model_validate({"Name": name, **keys})
    cfg._section = f"{'SourceLogger' if name == NAME else 'PeriodicTask'}_7"
    return cfg


def logger(app: LookoutConfig, server: MotoS3, bucket: str, **keys: Any) -> S3Logger:
    cfg = section(S3LoggerConfig, NAME, ScreenshotS3Bucket=bucket, Endpoint=server.url,
                  **{"ScreenshotPeriod": 0.01, **keys})
    return S3Logger(cfg, app.source(CAMERA), app, retry_first_s=0.05, retry_max_s=0.3)


def image(i: int) -> np.ndarray:
    """A frame with smooth content (survives JPEG), different per index."""
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([(x + 3 * i) % 256, (y + 5 * i) % 256, ((x + y) // 2) % 256], axis=-1)
    return img.astype(np.uint8)


def frame(i: int, violations: int, ids: RecordIds, img: np.ndarray | None = None) -> Frame:
    """Frame ``i`` of the camera, 0.1 s of video clock apart, with its summary record."""
    ts = T0 + timedelta(milliseconds=100 * i)
    summary = FrameSummary(id=ids(), source="camera", source_id=CAMERA, timestamp=ts,
                           frame=i, detected_objects=3, violating_objects=violations,
                           violating_pairs=1 if violations else 0, occupancy=3,
                           occupancy_threshold=0,
                           environment_score=1.0 - violations / 3)
    return Frame(camera_id=CAMERA, index=i, timestamp=ts,
                 image=image(i) if img is None else img, records=[summary])


def wait_delivered(sink: S3Logger, count: int, timeout: float = 15.0) -> None:
    assert sink.flush(timeout)
    deadline = time.monotonic() + timeout
    while sink.outbox.state().delivered < count:
        assert time.monotonic() < deadline, sink.state()
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

REFERENCE = """
[SourceLogger_7]
Name = s3_logger
ScreenshotPeriod = 0
ScreenshotS3Bucket = my-screenshot-bucket
Enabled = False

[PeriodicTask_7]
Name = s3_backup
Enabled = False
BackupInterval = 30
BackupS3Bucket = your-s3-bucket
"""


def test_reference_sections_load_and_bad_buckets_are_refused(app: LookoutConfig) -> None:
    assert SOURCE_LOGGERS.get(NAME) is S3Logger and not S3Logger.on_bus  # needs frames
    assert PERIODIC_TASKS.get("s3_backup") is S3Backup
    for model in (S3LoggerConfig, S3BackupConfig):  # credentials come from the environment
        assert [f.alias for f in model.model_fields.values()
                if f.alias and is_secret_key(f.alias)] == []
    path = app.path
    base = path.read_text()
    path.write_text(base + REFERENCE)
    cfg = load_config(path)
    shot = next(s for s in cfg.source_loggers if s.name == NAME)
    task = next(s for s in cfg.periodic_tasks if s.name == "s3_backup")
    assert isinstance(shot, S3LoggerConfig) and shot.screenshot_s3_bucket == \
        "my-screenshot-bucket"
    assert isinstance(task, S3BackupConfig) and task.backup_interval == 30
    for bad in ("ScreenshotS3Bucket = Not_A_Bucket", "ScreenshotS3Bucket =",
                "Endpoint = ftp://x"):
        text = REFERENCE.replace("ScreenshotS3Bucket = my-screenshot-bucket", bad)
        path.write_text(base + text.replace("Enabled = False", "Enabled = True", 1))
        with pytest.raises(ConfigError):
            load_config(path)


# ---------------------------------------------------------------------------------------
# s3_logger
# ---------------------------------------------------------------------------------------


def test_violation_screenshots_at_most_one_per_period(app: LookoutConfig,
                                                      moto: MotoS3) -> None:
    bucket = new_bucket(moto)
    sink = logger(app, moto, bucket)  # ScreenshotPeriod 0.01 min = 0.6 s of video clock
    ids = RecordIds()
    sent: dict[int, np.ndarray] = {}
    try:
        for i in range(60):  # 6 s: violations for 3 s, none for 1 s, violations again
            violations = 2 if i < 30 or i >= 40 else 0
            f = frame(i, violations, ids)
            before = sink.taken
            sink.log(f)
            if sink.taken > before:
                sent[i] = f.image
        # the first violating frame, then one per 0.6 s while they persist; none while
        # nobody violates; the next violation at once
        assert sorted(sent) == [0, 6, 12, 18, 24, 40, 46, 52, 58]
        imageless = frame(60, 2, ids, img=np.zeros((H, W, 0), np.uint8))  # a size, no pixels
        sink.log(imageless)
        assert sink.taken == len(sent)
        wait_delivered(sink, len(sent))
        assert sink.state()["dropped"] == 0
    finally:
        sink.close()
    want = {screenshot_key(PROCESSOR, CAMERA, (T0 + timedelta(milliseconds=100 * i))
                           .astimezone(app.app.tzinfo)): i for i in sent}
    assert keys(moto, bucket) == sorted(want)
    assert next(iter(want)) == f"{PROCESSOR}/{CAMERA}/2026-12-04/12-00-00.000.jpg"
    assert f"{PROCESSOR}/{CAMERA}/2026-12-04/12-00-05.800.jpg" in want
    for key, i in want.items():
        obj = s3(moto).get_object(Bucket=bucket, Key=key)
        data = obj["Body"].read()
        assert data[:3] == b"\xff\xd8\xff" and obj["ContentType"] == "image/jpeg"
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (H, W, 3)  # the frame's own size
        # the frame's pixels (as the pipeline left them: anonymized when it ran)
        assert np.abs(decoded.astype(int) - sent[i].astype(int)).mean() < 3
        assert obj["Metadata"]["camera"] == CAMERA and obj["Metadata"]["violations"] == "2"


def test_period_trigger_shoots_without_violations(app: LookoutConfig, moto: MotoS3) -> None:
    bucket = new_bucket(moto)
    sink = logger(app, moto, bucket, Trigger="period", ScreenshotPeriod=0.02)  # 1.2 s
    ids = RecordIds()
    try:
        for i in range(30):
            sink.log(frame(i, 0, ids))
        assert sink.taken == 3  # 0, 1.2 and 2.4 s
        wait_delivered(sink, 3)
    finally:
        sink.close()
    assert [k.rsplit("/", 1)[1] for k in keys(moto, bucket)] == \
        ["12-00-00.000.jpg", "12-00-01.200.jpg", "12-00-02.400.jpg"]


class NoDetector(Detector):
    """The people are given with the frame (:meth:`CameraPipeline.process_detections`)."""

    def detect(self, image: np.ndarray) -> Detections:
        return Detections()


def test_the_screenshot_is_the_anonymized_frame(app: LookoutConfig, moto: MotoS3) -> None:
    """In a camera's pipeline the logger runs after every step: with the anonymizer on, the
    uploaded pixels are blurred where the heads are and untouched elsewhere."""
    bucket = new_bucket(moto)
    text = app.path.read_text() + f"""
[SourceLogger_7]
Name = s3_logger
Enabled = True
ScreenshotPeriod = 1
Trigger = period
ScreenshotS3Bucket = {bucket}
Endpoint = {moto.url}
"""
    app.path.write_text(text)
    cfg = load_config(app.path)
    # the shipped configuration's last step
    assert [p.name for p in cfg.source_post_processors if p.enabled][-1] == "anonymizer"
    pipe = CameraPipeline(cfg, cfg.source(CAMERA), detector=NoDetector(cfg.detector, Path()))
    original = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    person = np.array([[250, 100, 350, 450]], np.float32)
    f = Frame(camera_id=CAMERA, index=0, timestamp=T0, image=original.copy(),
              detections=Detections(person, np.ones(1, np.float32)))
    try:
        pipe.process_detections(f)
        sink = next(lg for name, lg in pipe.loggers if name == NAME)
        assert isinstance(sink, S3Logger)
        wait_delivered(sink, 1)
    finally:
        pipe.close()
    (key,) = keys(moto, bucket)
    data = s3(moto).get_object(Bucket=bucket, Key=key)["Body"].read()
    shot = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).astype(int)
    x1, y1, x2, y2 = (int(v) for v in head_regions(person)[0])
    head = (slice(max(y1, 0), y2), slice(max(x1, 0), x2))
    # JPEG noise aside, the blurred head is what was uploaded, not the original's pixels
    assert np.abs(shot[head] - f.image[head].astype(int)).mean() < 6
    assert np.abs(shot[head] - original[head].astype(int)).mean() > 40
    assert not np.array_equal(f.image[head], original[head])


def test_send_test_puts_and_deletes_and_says_why_it_fails(app: LookoutConfig,
                                                          moto: MotoS3) -> None:
    bucket = new_bucket(moto)
    ok = section(S3LoggerConfig, NAME, ScreenshotS3Bucket=bucket, Endpoint=moto.url,
                 ScreenshotPeriod=1)
    answer = S3Logger.send_test(ok, app)
    assert f"s3://{bucket}/{PROCESSOR}/lookout-test/" in answer and moto.url in answer
    assert keys(moto, bucket) == []  # deleted again
    missing = section(S3LoggerConfig, NAME, ScreenshotS3Bucket="no-such-bucket-here",
                      Endpoint=moto.url, ScreenshotPeriod=1)
    with pytest.raises(SendTestError, match=r"bucket 'no-such-bucket-here' does not exist.*"
                                            r"NoSuchBucket"):
        S3Logger.send_test(missing, app)
    closed = section(S3LoggerConfig, NAME, ScreenshotS3Bucket=bucket, ScreenshotPeriod=1,
                     Endpoint=f"http://127.0.0.1:{free_port()}", Timeout=2)
    with pytest.raises(SendTestError, match="connection refused") as err:
        S3Logger.send_test(closed, app)
    backup = section(S3BackupConfig, "s3_backup", BackupS3Bucket=bucket, Endpoint=moto.url)
    assert "wrote and deleted" in S3Backup.send_test(backup, app)
    for message in (str(err.value), answer):
        assert ENV["AWS_SECRET_ACCESS_KEY"] not in message
        assert ENV["AWS_ACCESS_KEY_ID"] not in message


def test_access_denied_is_explained() -> None:
    """moto does not check permissions unless told to: the reason for S3's AccessDenied
    answer (its documented error body) is checked on the error boto3 raises for it."""
    error = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                         "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject")
    settings = S3LoggerConfig.model_validate({"Name": NAME, "ScreenshotS3Bucket": "b-1"})
    assert describe_error(error, settings, "b-1").startswith(
        "access denied to bucket 'b-1': the credentials may not write there")


# ---------------------------------------------------------------------------------------
# s3_backup
# ---------------------------------------------------------------------------------------

DATA_FILES = {
    # camera raw logs, events and reports (libs/storage.py, libs/metrics/reports.py)
    "sources/{cam}/objects_log/2026-12-02.csv": "Timestamp,Frame\n1,1\n",
    "sources/{cam}/objects_log/2026-12-03.csv": "Timestamp,Frame\n2,2\n",
    "sources/{cam}/objects_log/2026-12-04.csv": "Timestamp,Frame\n3,3\n",  # today: not yet
    "sources/{cam}/line_crossings/2026-12-03.csv": "Timestamp,Line\n4,door\n",
    "sources/{cam}/events/dwell/2026-12-03.csv": "Timestamp,Dwell\n5,12.5\n",
    "sources/{cam}/reports/social-distancing/hourly_2026-12-03.csv": "Hour,People\n0,3\n",
    "sources/{cam}/reports/social-distancing/hourly_2026-12-04.csv": "Hour,People\n0,1\n",
    "sources/{cam}/reports/social-distancing/daily.csv": "Date,People\n2026-12-03,3\n",
    "sources/{cam}/reports/social-distancing/weekly.csv": "Week,People\n49,3\n",
    "sources/{cam}/reports/social-distancing/live.csv": "Time,People\n1,1\n",
    "sources/{cam}/reports/.state.json": "{}",
    "areas/hall/occupancy_log/2026-12-03.csv": "Timestamp,Occupancy\n6,2\n",
    "areas/hall/reports/occupancy/daily.csv": "Date,Occupancy\n2026-12-03,2\n",
}
NOW = datetime(2026, 12, 4, 0, 20, tzinfo=UTC)  # 01:20 on the 4th in Paris


def prepare(app: LookoutConfig) -> dict[str, Path]:
    roots = {"sources": app.data_path("processor/static/data/sources"),
             "areas": app.data_path("processor/static/data/areas")}
    out = {}
    for rel, text in DATA_FILES.items():
        label, rest = rel.format(cam=CAMERA).split("/", 1)
        path = roots[label] / rest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out[f"{label}/{rest}"] = path
    return out


def backup_task(app: LookoutConfig, server: MotoS3, bucket: str) -> S3Backup:
    cfg = section(S3BackupConfig, "s3_backup", BackupS3Bucket=bucket, Endpoint=server.url,
                  BackupInterval=0.1)
    return S3Backup(cfg, app, now=lambda: NOW)


def test_backup_copies_finished_days_once_and_changed_files_again(app: LookoutConfig,
                                                                  moto: MotoS3) -> None:
    files = prepare(app)
    bucket = new_bucket(moto)
    task = backup_task(app, moto, bucket)
    assert task.interval_seconds == 6.0
    task.run()
    assert task.last_error is None
    c = f"sources/{CAMERA}"
    want = sorted([
        f"{PROCESSOR}/2026-12-02/{c}/objects_log/2026-12-02.csv",
        f"{PROCESSOR}/2026-12-03/{c}/objects_log/2026-12-03.csv",
        f"{PROCESSOR}/2026-12-03/{c}/line_crossings/2026-12-03.csv",
        f"{PROCESSOR}/2026-12-03/{c}/events/dwell/2026-12-03.csv",
        f"{PROCESSOR}/2026-12-03/{c}/reports/social-distancing/hourly_2026-12-03.csv",
        f"{PROCESSOR}/2026-12-03/{c}/reports/social-distancing/daily.csv",
        f"{PROCESSOR}/2026-12-03/{c}/reports/social-distancing/weekly.csv",
        f"{PROCESSOR}/2026-12-03/areas/hall/occupancy_log/2026-12-03.csv",
        f"{PROCESSOR}/2026-12-03/areas/hall/reports/occupancy/daily.csv",
    ])
    assert keys(moto, bucket) == want
    assert sorted(task.last_uploaded) == want
    body = s3(moto).get_object(Bucket=bucket, Key=want[0])["Body"].read()
    assert body == files[f"{c}/objects_log/2026-12-02.csv"].read_bytes()

    task.run()  # nothing changed: nothing uploaded
    assert task.last_uploaded == [] and task.last_error is None

    # a row added to yesterday's log after midnight: uploaded again, over the same key;
    # a file rewritten with the same content is not; a cumulative report's snapshot for
    # yesterday is taken once
    late = files[f"{c}/objects_log/2026-12-03.csv"]
    late.write_text(late.read_text() + "2b,2b\n")
    same = files[f"{c}/line_crossings/2026-12-03.csv"]
    same.write_text(same.read_text())
    files[f"{c}/reports/social-distancing/daily.csv"].write_text("Date,People\nchanged\n")
    task.run()
    assert task.last_uploaded == [f"{PROCESSOR}/2026-12-03/{c}/objects_log/2026-12-03.csv"]
    body = s3(moto).get_object(Bucket=bucket, Key=task.last_uploaded[0])["Body"].read()
    assert body == b"Timestamp,Frame\n2,2\n2b,2b\n"

    # a restart (a new task, the state on disk) uploads nothing again
    again = backup_task(app, moto, bucket)
    again.run()
    assert again.last_uploaded == [] and again.last_error is None
    assert keys(moto, bucket) == want


# ---------------------------------------------------------------------------------------
# Outage
# ---------------------------------------------------------------------------------------


def test_outage_every_screenshot_and_backup_arrives_after_restart(
        app: LookoutConfig, moto: MotoS3) -> None:
    bucket = new_bucket(moto)
    prepare(app)
    task = backup_task(app, moto, bucket)
    sink = logger(app, moto, bucket)
    ids = RecordIds()
    counter = itertools.count()
    slowest = 0.0

    def produce(n: int) -> list[str]:
        """n frames with violations, in real time (20 ms apart); the keys shot."""
        nonlocal slowest
        shot: list[str] = []
        for _ in range(n):
            i = next(counter)
            f = frame(i, 1, ids, img=image(0))
            before = sink.taken
            t0 = time.perf_counter()
            sink.log(f)
            slowest = max(slowest, time.perf_counter() - t0)
            if sink.taken > before:
                shot.append(screenshot_key(PROCESSOR, CAMERA,
                                           f.timestamp.astimezone(app.app.tzinfo)))
            time.sleep(0.02)
        return shot

    try:
        before = produce(20)
        wait_delivered(sink, len(before))
        assert keys(moto, bucket, f"{PROCESSOR}/{CAMERA}/") == sorted(before)

        moto.stop()  # S3 down: screenshots keep being taken, the frame loop never waits
        during = produce(60)
        task.run()  # the day's backup fails, and says why
        assert task.last_error is not None and "connection refused" in task.last_error
        assert task.last_uploaded == []
        state = sink.state()
        assert state["connected"] is False and state["delivered"] == len(before)

        moto.start()  # the same port; moto forgot the bucket, a real S3 would not have
        new_bucket(moto, bucket)
        after = produce(24)
        wait_delivered(sink, len(before) + len(during) + len(after), timeout=20)
        task.run()
    finally:
        sink.close()
    assert len(before) == 4 and len(during) == 10 and len(after) == 4  # one per 0.6 s
    shots = keys(moto, bucket, f"{PROCESSOR}/{CAMERA}/")
    assert shots == sorted(during + after)  # every screenshot of the outage arrived, once
    state = sink.state()
    assert state["dropped"] == 0 and state["queued"] == 0 and state["connected"] is True
    assert task.last_error is None and len(task.last_uploaded) == 9
    assert slowest < 0.05, f"log() took {slowest * 1000:.1f} ms on the frame loop"
