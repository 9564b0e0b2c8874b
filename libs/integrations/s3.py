"""S3: the connection both S3 parts share, and ``s3_logger`` (violation screenshots).

The reference system's ``s3_logger`` (``[SourceLogger_N]``, keys ``ScreenshotPeriod`` in
minutes and ``ScreenshotS3Bucket``) kept key for key, and its ``s3_backup`` periodic task
(:mod:`libs.integrations.s3_backup`). Both speak to AWS S3 or to any S3-compatible server
(MinIO, Ceph, moto) through boto3.

Credentials and endpoint (never in the INI file)::

    AWS_ACCESS_KEY_ID       the access key id       (AccessKeyIdVariable names another one)
    AWS_SECRET_ACCESS_KEY   the secret access key   (SecretAccessKeyVariable names another)
    AWS_BUCKET_REGION       the bucket's region, as the reference documents
                            (else boto3's own AWS_DEFAULT_REGION, else us-east-1)
    AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL
                            an S3-compatible server's URL when the section's ``Endpoint``
                            is empty (boto3 reads them itself)

When neither variable of the key pair is set, boto3's usual chain applies (its shared
credentials file, an instance role). With an endpoint other than AWS, buckets are
addressed by path (``http://host:9000/bucket/key``), which every S3-compatible server
understands.

``s3_logger`` runs in the camera's worker, because it needs the frame's image; nothing slow
happens on the frame loop. When the camera's frame has distancing violations (``Trigger =
violations``, the default) or at every period (``Trigger = period``, the reference's
behaviour), and at least ``ScreenshotPeriod`` minutes of the camera's clock have passed since
the last screenshot, :meth:`S3Logger.log` copies the image (after every post-processor: the
``anonymizer``'s blurred pixels when it ran) into a small bounded queue and returns. An
encoder thread makes the JPEG and appends it (base64, with its key) to the camera's durable,
bounded outbox on disk (:mod:`libs.integrations.outbox`,
``DataDirectory/processor/outbox/<section>/<camera>``), whose delivery thread uploads each
screenshot with ``PutObject`` and retries with backoff while S3 cannot be reached, so the
screenshots taken during an outage arrive afterwards, oldest first. The object's key::

    <processor>/<camera>/<YYYY-MM-DD>/<HH-MM-SS.mmm>.jpg

in the App ``TimeZone`` (the frame's local date and time, milliseconds included), with
metadata ``camera``, ``timestamp`` (ISO 8601 with offset) and ``violations``.
``<processor>`` is ``[App] ProcessorName`` or, empty, the host name made safe
(:mod:`libs.identity`). An upload that is retried
writes the same key again (idempotent).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import cv2
import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from libs.clock import aware
from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.frame import Frame
from libs.integrations.base import OutboxSink, env_name_ok, outbox_max_bytes_field
from libs.loggers import SOURCE_LOGGERS, SendTestError, SourceLogger
from libs.records import FrameSummary, Record
from processor.summary import frame_figures

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig

log = logging.getLogger(__name__)

NAME = "s3_logger"
ENV_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
ENV_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
ENV_REGION = "AWS_BUCKET_REGION"
ENV_ENDPOINTS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # read by boto3 itself
DEFAULT_REGION = "us-east-1"
ENCODE_QUEUE = 4  # screenshots waiting for the encoder; more are dropped and counted
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
CLOSE_TIMEOUT_S = 3.0
DEFAULT_OUTBOX_MAX_BYTES = 256 * 1024 * 1024
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


# ---------------------------------------------------------------------------------------
# The connection
# ---------------------------------------------------------------------------------------


class S3ConnectionConfig(PluginConfig):
    """Keys both S3 parts understand (where S3 is; the processor's name, the first part of
    every key, is ``[App] ProcessorName``)."""

    endpoint: str = Field(
        "",
        alias="Endpoint",
        description="URL of an S3-compatible server (MinIO: http://host:9000); empty uses "
        "AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL from the environment when set, else AWS "
        "S3 in the AWS_BUCKET_REGION region.",
        json_schema_extra=form("an http:// or https:// URL, or empty"),
    )
    access_key_id_variable: str = Field(
        ENV_ACCESS_KEY_ID,
        alias="AccessKeyIdVariable",
        description="Name of the environment variable holding the access key id (the value "
        "is never written in this file).",
        json_schema_extra=form("an environment variable name"),
    )
    secret_access_key_variable: str = Field(
        ENV_SECRET_ACCESS_KEY,
        alias="SecretAccessKeyVariable",
        description="Name of the environment variable holding the secret access key.",
        json_schema_extra=form("an environment variable name"),
    )
    timeout: float = Field(
        10.0,
        alias="Timeout",
        gt=0,
        description="Seconds to wait for S3 (connecting, and each read) before an attempt "
        "counts as failed and is retried.",
        json_schema_extra=form("a number of seconds > 0"),
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("Endpoint must be an http:// or https:// URL with a host, or "
                             "empty")
        return value

    @field_validator("access_key_id_variable", "secret_access_key_variable")
    @classmethod
    def _variable(cls, value: str) -> str:
        if not env_name_ok(value):
            raise ValueError("must be an environment variable name (letters, digits, _)")
        return value



def check_bucket(value: str, info: ValidationInfo, key: str) -> str:
    """A bucket name S3 accepts; empty only when the section is disabled."""
    value = value.strip()
    if not value:
        if info.data.get("enabled", True):
            raise ValueError(f"{key} is empty: name the bucket, or Enabled = False")
        return value
    if not BUCKET_RE.fullmatch(value) or ".." in value:
        raise ValueError("not a valid bucket name (3 to 63 lowercase letters, digits, '.' "
                         "and '-', starting and ending with a letter or digit)")
    return value


def endpoint_of(settings: S3ConnectionConfig) -> str | None:
    """The S3-compatible server's URL, or None for AWS (where the objects go)."""
    if settings.endpoint:
        return settings.endpoint
    for name in ENV_ENDPOINTS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def shown_endpoint(settings: S3ConnectionConfig) -> str:
    """Where S3 is, for logs and status (no user information or query, ever)."""
    url = endpoint_of(settings)
    if url is None:
        return f"AWS S3 ({os.environ.get(ENV_REGION) or 'default region'})"
    match = re.match(r"^(https?://)(?:[^@/]*@)?([^/?#]*)", url)
    return f"{match.group(1)}{match.group(2)}" if match else "the configured endpoint"


def make_client(settings: S3ConnectionConfig) -> Any:
    """A boto3 S3 client for ``settings``: credentials and region from the environment,
    one attempt per call (the outbox or the task retries), ``Timeout`` on every socket."""
    import boto3
    from botocore.config import Config

    endpoint = endpoint_of(settings)
    region = os.environ.get(ENV_REGION) or os.environ.get("AWS_DEFAULT_REGION") or \
        DEFAULT_REGION
    extra: dict[str, Any] = {}
    key_id = os.environ.get(settings.access_key_id_variable)
    secret = os.environ.get(settings.secret_access_key_variable)
    if key_id and secret:
        extra["aws_access_key_id"] = key_id
        extra["aws_secret_access_key"] = secret
    config = Config(
        connect_timeout=settings.timeout,
        read_timeout=settings.timeout,
        retries={"total_max_attempts": 1},
        s3={"addressing_style": "path"} if endpoint else {},
        user_agent_extra="lookout",
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint, region_name=region, config=config,
                          **extra)


def describe_error(exc: BaseException, settings: S3ConnectionConfig, bucket: str) -> str:
    """Why an S3 call failed, in words for a person; never a credential."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    where = shown_endpoint(settings)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "")) or str(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        reasons = {
            "NoSuchBucket": f"bucket {bucket!r} does not exist at {where}",
            "AccessDenied": f"access denied to bucket {bucket!r}: the credentials may not "
                            "write there",
            "InvalidAccessKeyId": f"{where} does not know the access key id (check "
                                  f"{settings.access_key_id_variable})",
            "SignatureDoesNotMatch": f"{where} refuses the signature: the secret access key "
                                     f"is wrong (check {settings.secret_access_key_variable})",
            "PermanentRedirect": f"bucket {bucket!r} is in another region (set "
                                 f"{ENV_REGION})",
            "AuthorizationHeaderMalformed": f"bucket {bucket!r} is in another region (set "
                                            f"{ENV_REGION})",
        }
        if code in reasons:
            return f"{reasons[code]} ({code})"
        message = str(error.get("Message", "")).strip()
        return f"{where} answered {code}" + (f": {message}" if message else "")
    if isinstance(exc, EndpointConnectionError):
        cause = str(exc.kwargs.get("error", ""))
        if "refused" in cause.lower():
            return f"{where}: connection refused"
        return f"cannot connect to {where}"
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return f"{where}: no answer within {settings.timeout:g} s"
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (f"no S3 credentials: set {settings.access_key_id_variable} and "
                f"{settings.secret_access_key_variable}")
    return f"{where}: {type(exc).__name__}: {exc}"


def put_and_delete_test_object(settings: S3ConnectionConfig, bucket: str,
                               processor: str) -> str:
    """Write a small object under ``<processor>/lookout-test/`` and delete it: proof that
    the bucket exists and the credentials may write there. :class:`SendTestError` with
    the reason otherwise."""
    key = f"{processor}/lookout-test/{int(time.time() * 1000)}.txt"
    try:
        client = make_client(settings)
        client.put_object(Bucket=bucket, Key=key, ContentType="text/plain",
                          Body=b"a test object from Lookout: the bucket is writable\n")
        client.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise SendTestError(describe_error(exc, settings, bucket)) from None
    return (f"wrote and deleted s3://{bucket}/{key} at {shown_endpoint(settings)}: the "
            "bucket exists and the credentials may write to it")


# ---------------------------------------------------------------------------------------
# s3_logger
# ---------------------------------------------------------------------------------------


class S3LoggerConfig(S3ConnectionConfig):
    screenshot_period: float = Field(
        0,
        alias="ScreenshotPeriod",
        ge=0,
        description="Least minutes of the camera's clock between two screenshots; 0 takes "
        "none.",
        json_schema_extra=form("a number of minutes >= 0"),
    )
    screenshot_s3_bucket: str = Field(
        "",
        alias="ScreenshotS3Bucket",
        validate_default=True,
        description="Bucket the screenshots are uploaded to. Required when enabled.",
        json_schema_extra=form("an S3 bucket name"),
    )
    trigger: Literal["violations", "period"] = Field(
        "violations",
        alias="Trigger",
        description="'violations': a screenshot when the frame has distancing violations, "
        "at most one per ScreenshotPeriod; 'period': one every ScreenshotPeriod whatever "
        "the frame shows (the reference's behaviour).",
        json_schema_extra=form("violations or period"),
    )
    jpeg_quality: int = Field(
        90,
        alias="JpegQuality",
        ge=1,
        le=100,
        description="JPEG quality of the screenshots.",
        json_schema_extra=form("an integer from 1 to 100"),
    )
    outbox_max_bytes: int = outbox_max_bytes_field(
        "screenshots", "S3", DEFAULT_OUTBOX_MAX_BYTES, minimum=4 * 1024 * 1024,
        folder="<section>/<camera>", kept="kept on disk per camera")

    @field_validator("screenshot_s3_bucket")
    @classmethod
    def _bucket(cls, value: str, info: ValidationInfo) -> str:
        return check_bucket(value, info, "ScreenshotS3Bucket")


def screenshot_key(processor: str, camera: str, ts: datetime) -> str:
    """``<processor>/<camera>/<YYYY-MM-DD>/<HH-MM-SS.mmm>.jpg`` (``ts`` already local)."""
    return (f"{processor}/{camera}/{ts.date().isoformat()}/"
            f"{ts.strftime('%H-%M-%S')}.{ts.microsecond // 1000:03d}.jpg")


class S3Logger(OutboxSink, SourceLogger):
    """Uploads a camera's violation screenshots to S3; see the module docstring."""

    Config: ClassVar[type[PluginConfig]] = S3LoggerConfig
    sink_name: ClassVar[str] = NAME
    sink_log: ClassVar[logging.Logger] = log
    needs_image: ClassVar[bool] = True  # uploads pixels: nothing to do for a camera without

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig, *,
                 retry_first_s: float | None = None,
                 retry_max_s: float | None = None) -> None:
        super().__init__(config, source, app)
        self.settings = plugin_settings(S3LoggerConfig, config)
        if not self.settings.screenshot_s3_bucket:
            raise ValueError(f"{NAME}: ScreenshotS3Bucket is empty")
        self.section = config.section or NAME
        self.camera = source.id
        self.bucket = self.settings.screenshot_s3_bucket
        self.processor = app.app.processor_name_or_host  # first part of every key
        self.shown = shown_endpoint(self.settings)
        self.tz = app.app.tzinfo
        minutes = self.settings.screenshot_period
        self._period = timedelta(minutes=minutes) if minutes > 0 else None
        self._last: datetime | None = None
        self._closed = False
        self.taken = 0  # screenshots handed to the encoder
        self._rejected = 0  # dropped before the outbox: encoder busy, too big, failed
        self._skipped = 0  # of which: the encoder's queue was full (never queued)
        self._handled = 0  # screenshots the encoder is done with (queued or dropped)
        self._count_lock = threading.Lock()  # the frame loop and the encoder both count
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._refusal: str | None = None
        self._open_outbox(
            app, self._deliver, f"s3://{self.bucket}", folder=f"{self.section}/{self.camera}",
            retry=(retry_first_s, retry_max_s), retry_defaults=(RETRY_FIRST_S, RETRY_MAX_S),
            max_bytes=self.settings.outbox_max_bytes,
            batch_max_records=1,
            idle_poll_s=1.0,
        )
        self._jobs: queue.Queue[tuple[datetime, np.ndarray, int] | None] = \
            queue.Queue(ENCODE_QUEUE)
        self._encoder = threading.Thread(target=self._encode_loop, daemon=True,
                                         name=f"s3-encode-{self.camera}")
        self._encoder.start()

    # ------------------------------------------------------------------ the frame loop

    def take(self, records: Sequence[Record]) -> None:
        """Nothing to store: this sink uploads the frames :meth:`log` gets."""

    def finish(self, end: Frame) -> None:
        """The end-of-stream frame has no image worth uploading."""

    def log(self, frame: Frame) -> None:
        """Queue a screenshot of ``frame`` when one is due (a copy of the image; no encoding,
        no disk, no network here)."""
        if self._closed or self._period is None or frame.replay or not frame.has_image:
            return
        ts = aware(frame.timestamp, self.tz)
        if self._last is not None and self._last <= ts < self._last + self._period:
            return
        violations = self._violations(frame)
        if self.settings.trigger == "violations" and violations <= 0:
            return
        self._last = ts
        self.taken += 1
        try:
            self._jobs.put_nowait((ts, frame.image.copy(), violations))
        except queue.Full:
            with self._count_lock:
                self._skipped += 1
            self._count_drop("the encoder is behind")

    @staticmethod
    def _violations(frame: Frame) -> int:
        for rec in reversed(frame.records):
            if isinstance(rec, FrameSummary):
                return rec.violating_objects
        return frame_figures(frame).violating_people

    def _count_drop(self, why: str) -> None:
        with self._count_lock:
            self._rejected += 1
            count = self._rejected
        if count == 1 or count % 100 == 0:
            log.warning("%s [%s] %s: a screenshot was dropped (%s); %d so far", NAME,
                        self.section, self.camera, why, count)

    # ------------------------------------------------------------------ the encoder

    def _encode_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            ts, image, violations = job
            try:
                self._encode(ts, image, violations)
            except Exception:
                log.exception("%s [%s] %s: a screenshot could not be queued", NAME,
                              self.section, self.camera)
                self._count_drop("encoding or writing failed")
            finally:
                self._handled += 1

    def _encode(self, ts: datetime, image: np.ndarray, violations: int) -> None:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY,
                                               self.settings.jpeg_quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        local = ts.astimezone(self.tz)
        key = screenshot_key(self.processor, self.camera, local)
        record = {
            "id": key,
            "key": key,
            "camera": self.camera,
            "timestamp": local.isoformat(timespec="milliseconds"),
            "violations": violations,
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "jpeg": base64.b64encode(buf.tobytes()).decode("ascii"),
        }
        try:
            self.outbox.put(record)
        except ValueError:  # bigger than the whole outbox
            self._count_drop("bigger than OutboxMaxBytes")
        except RuntimeError:  # closed meanwhile
            return

    # ------------------------------------------------------------------ delivery

    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = make_client(self.settings)
            return self._client

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        for rec in records:
            try:
                self.client().put_object(
                    Bucket=self.bucket,
                    Key=rec["key"],
                    Body=base64.b64decode(rec["jpeg"]),
                    ContentType="image/jpeg",
                    Metadata={"camera": rec["camera"], "timestamp": rec["timestamp"],
                              "violations": str(rec["violations"])},
                )
            except Exception as exc:
                reason = describe_error(exc, self.settings, self.bucket)
                if reason != self._refusal:
                    self._refusal = reason
                    log.warning("%s [%s] %s: %s; the screenshots are kept and retried",
                                NAME, self.section, self.camera, reason)
                raise UploadError(reason) from None
        self._refusal = None

    # ------------------------------------------------------------------ the rest

    def state(self) -> dict[str, Any]:
        """The camera's uploads: never a credential."""
        out = {
            "endpoint": self.shown,
            "bucket": self.bucket,
            "camera": self.camera,
            "taken": self.taken,
            **self._outbox_status(self.settings.outbox_max_bytes),
        }
        out["queued"] += self._jobs.qsize()  # screenshots still waiting for the encoder
        return out

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every screenshot taken so far is in the outbox (tests)."""
        deadline = time.monotonic() + timeout
        while self._handled + self._skipped < self.taken:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Encode what waits (into the outbox, for the next run), then stop uploading within
        :data:`CLOSE_TIMEOUT_S`; what was not uploaded stays on disk."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(queue.Full):
            self._jobs.put(None, timeout=CLOSE_TIMEOUT_S)
        self._encoder.join(CLOSE_TIMEOUT_S)
        if not self.outbox.close(timeout=CLOSE_TIMEOUT_S):
            log.warning("%s [%s] %s: an upload was still running at close; it stays queued",
                        NAME, self.section, self.camera)

    @classmethod
    def send_test(cls, config: PluginConfig, app: LookoutConfig) -> str:
        """Put a small object into ``ScreenshotS3Bucket`` and delete it."""
        try:
            settings = plugin_settings(S3LoggerConfig, config)
        except ValueError as exc:
            raise SendTestError(f"the section is invalid: {exc}") from exc
        if not settings.screenshot_s3_bucket:
            raise SendTestError("ScreenshotS3Bucket is empty: set it first")
        return put_and_delete_test_object(settings, settings.screenshot_s3_bucket,
                                          app.app.processor_name_or_host)


class UploadError(Exception):
    """S3 did not take an object (the reason, in words)."""


SOURCE_LOGGERS.register(NAME)(S3Logger)
