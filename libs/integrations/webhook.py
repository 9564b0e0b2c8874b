"""``web_hook_logger``: every record worth sending, PUT as signed JSON batches to a receiver.

The reference system's webhook, kept key for key (``Endpoint``, ``Authorization``,
``TimeInterval``, ``SendingInterval``) and made reliable: the sink runs in the supervisor on
the event bus (:attr:`on_bus`), never beside a frame loop; :meth:`WebHookLogger.take` only
filters, converts and appends to a durable, bounded outbox on disk
(:mod:`libs.integrations.outbox`), and a delivery thread sends what the outbox holds.

Sections (one class, three section kinds)::

    [SourceLogger_3]          every camera's records
    Name = web_hook_logger
    Endpoint = https://example.com/lookout
    Authorization = Bearer 0123456789abcdef
    TimeInterval = 0.5
    SendingInterval = 5
    Secret = a long random string shared with the receiver
    Enabled = True

``[AreaLogger_N]`` sends every area's records instead, ``[Output_N]`` every record.

Request. ``PUT <Endpoint>`` with ``Content-Type: application/json``, the ``Authorization``
header when one is configured, and the signature headers of :mod:`libs.integrations.signing`
(``X-Lookout-Timestamp``, ``X-Lookout-Signature``: HMAC-SHA256 of ``"<timestamp>." + body``)
when ``Secret`` is set. The body::

    {"version": 1, "sent_at": "2026-12-04T20:30:05.123+00:00", "records": [...]}

Each ``objects_log`` sample carries the reference payload's keys (``version``,
``timestamp``, ``detected_objects``, ``violating_objects``, ``environment_score``,
``detections``, ``violations_indexes``) plus ``violating_pairs``, ``occupancy``, ``frame``
and the record envelope (``id``, ``kind``, ``source``, ``source_id``, ``schema``); its
``version`` is the record's schema version. Every other record is its JSON form
(:meth:`libs.records.Record.to_dict`, see docs/events.md). A receiver deduplicates on
``id``: a batch whose answer was lost is sent again, with the same ids.

Timing. ``TimeInterval`` thins the samples (``objects_log`` of cameras, ``occupancy_log``
of areas) per camera or area to one per slot of that many seconds of the video clock,
slots aligned to the Unix epoch. The samples themselves are made at the camera's
``file_system_logger`` ``TimeInterval`` (the pipeline's one sample clock), so a smaller value
here sends every sample. Events are never thinned. ``SendingInterval`` is the least time
between two requests: records wait in the outbox and go as one batch, or sooner when
:data:`BATCH_MAX_RECORDS` are waiting.

Failures. A request that times out (``Timeout``), cannot connect or gets any answer but 2xx
is a failed delivery: the batch stays in the outbox and is tried again after an
exponential backoff with full jitter (at most :data:`RETRY_MAX_S` apart). A 4xx other than
408 and 429 means the receiver refuses the request (a wrong ``Authorization`` or
``Secret``): it is retried like any other failure, since the records are kept until the
receiver is fixed, and logged as an error once per distinct answer. When the outbox holds
``OutboxMaxBytes`` the oldest records are dropped and counted (``dropped`` in
``GET /status``). ``close`` returns within :data:`CLOSE_TIMEOUT_S` and leaves what was not
delivered in the outbox, which the next run delivers.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import SplitResult, urlsplit, urlunsplit

from pydantic import Field, ValidationInfo, field_validator

from libs.clock import IntervalGate
from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.config.secrets import URL_MASK
from libs.integrations.base import (
    CLOSE_TIMEOUT_S as CLOSE_TIMEOUT_S,  # close() waits this long (tests read it here)
)
from libs.integrations.base import (
    EVENT_KINDS,
    SAMPLE_KINDS,
    KindsConfig,
    OutboxSink,
    kinds_field,
    outbox_max_bytes_field,
    timeout_field,
)
from libs.integrations.outbox import Outbox
from libs.integrations.signing import signed_headers
from libs.loggers import (
    AREA_LOGGERS,
    OUTPUTS,
    SOURCE_LOGGERS,
    AreaLogger,
    SendTestError,
    SourceLogger,
)
from libs.records import ObjectsSample, Record, format_time
from libs.storage import DEFAULT_TIME_INTERVAL

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

log = logging.getLogger(__name__)

NAME = "web_hook_logger"
PAYLOAD_VERSION = 1  # the version of the request body's layout
BATCH_MAX_RECORDS = 500  # a batch this big goes without waiting for SendingInterval
BATCH_MAX_BYTES = 4 * 1024 * 1024
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
MAX_ANSWER_BYTES = 64 * 1024  # read (and ignored) of a receiver's answer
# Sent when Kinds is empty: the reference's objects samples, the areas' occupancy samples
# and every event.  Frame summaries (one per frame) only when asked for.
DEFAULT_KINDS = frozenset({"objects_log", "occupancy_log"}) | EVENT_KINDS
RETRIED_4XX = frozenset({408, 429})  # ordinary "try later" answers


class WebHookConfig(KindsConfig):
    default_kinds: ClassVar[frozenset[str]] = DEFAULT_KINDS

    endpoint: str = Field(
        "",
        alias="Endpoint",
        validate_default=True,
        description="URL the records are PUT to (http:// or https://). Required when the "
        "section is enabled.",
        json_schema_extra=form("an http:// or https:// URL"),
    )
    authorization: str = Field(
        "",
        alias="Authorization",
        description="Value of the Authorization header of every request (for example "
        "'Bearer <token>'); empty sends none. A secret: viewers see it masked.",
    )
    time_interval: float = Field(
        DEFAULT_TIME_INTERVAL,
        alias="TimeInterval",
        gt=0,
        description="Seconds of the video clock between two samples sent per camera or area "
        "(objects_log, occupancy_log). Samples are made at the file_system_logger's "
        "TimeInterval, so a smaller value sends every one. Events are never thinned.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    sending_interval: float = Field(
        5.0,
        alias="SendingInterval",
        gt=0,
        description="Least seconds between two requests; the records made meanwhile go as "
        f"one batch (sooner when {BATCH_MAX_RECORDS} are waiting).",
        json_schema_extra=form("a number of seconds > 0"),
    )
    secret: str = Field(
        "",
        alias="Secret",
        description="Shared key of the HMAC-SHA256 signature (X-Lookout-Signature header) the "
        "receiver checks; empty sends unsigned requests (logged at start). A secret.",
    )
    timeout: float = timeout_field(
        10.0,
        "Seconds to wait for the receiver (connecting, and each read or write) before the "
        "attempt counts as failed and is retried.")
    outbox_max_bytes: int = outbox_max_bytes_field("records", "the receiver")
    kinds: str = kinds_field(
        "Comma-separated record kinds to send (see docs/events.md); empty sends "
        "objects_log and occupancy_log samples and every event (never frame_summary, which "
        "is one per frame, unless listed).")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not value:
            if info.data.get("enabled", True):
                raise ValueError(
                    "Endpoint is empty: set the receiver's http:// or https:// URL, or "
                    "Enabled = False")
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("Endpoint must be an http:// or https:// URL with a host")
        if any(c.isspace() or ord(c) < 32 for c in value):
            raise ValueError("Endpoint must not contain spaces or control characters")
        return value

    @field_validator("authorization", "secret")
    @classmethod
    def _header_safe(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("must not contain control characters")
        return value



def masked_endpoint(url: str) -> str:
    """``url`` without its user information and query values (what status pages show)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port is not None else "")
    if parts.username is not None or parts.password is not None:
        netloc = f"{URL_MASK}@{netloc}"
    query = URL_MASK if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def payload(record: Record) -> dict[str, Any]:
    """The JSON object a record is sent as (module docstring)."""
    out = record.to_dict()
    if isinstance(record, ObjectsSample):
        out["version"] = record.schema  # the reference payload's key
    return out


class DeliveryError(Exception):
    """The receiver did not take the batch."""


class _PacedOutbox(Outbox):
    """An :class:`Outbox` that starts a batch at most once per ``interval`` seconds, or
    sooner once ``burst`` records wait (the outbox's delivery thread asks for the next
    batch under its lock; saying "nothing yet" makes it wait and ask again)."""

    def __init__(self, *args: Any, interval: float, burst: int, **kwargs: Any) -> None:
        self._interval = interval
        self._burst = burst
        self._last_start = float("-inf")
        super().__init__(*args, **kwargs)

    def _read_batch(self) -> Any:
        now = time.monotonic()
        if (now - self._last_start < self._interval and self._queued < self._burst
                and not self._draining):
            return None
        batch = super()._read_batch()
        if batch is not None:
            self._last_start = now
        return batch


class WebHookLogger(OutboxSink, SourceLogger, AreaLogger):
    """Sends the records of every camera (``[SourceLogger_N]``), every area
    (``[AreaLogger_N]``) or both (``[Output_N]``) to one HTTP receiver; see the module
    docstring."""

    Config: ClassVar[type[PluginConfig]] = WebHookConfig
    on_bus: ClassVar[bool] = True
    sink_name: ClassVar[str] = NAME
    sink_log: ClassVar[logging.Logger] = log

    def __init__(self, config: PluginConfig, scope: Any, app: LookoutConfig, *,
                 retry_first_s: float | None = None, retry_max_s: float | None = None,
                 idle_poll_s: float | None = None) -> None:
        self.config = config
        self.source = None  # type: ignore[assignment]  # a bus sink serves every camera
        self.area = None  # type: ignore[assignment]  # ...and every area
        self.app = app
        self.settings = plugin_settings(WebHookConfig, config)
        if not self.settings.endpoint:
            raise ValueError(f"{NAME}: Endpoint is empty")
        self.section = config.section or NAME
        self.endpoint = self.settings.endpoint
        self.shown_endpoint = masked_endpoint(self.endpoint)
        self._url = urlsplit(self.endpoint)
        self._secret = self.settings.secret.encode()
        self._kinds = self.settings.kind_set()
        self._step = self.settings.time_interval
        self._gates: dict[tuple[str, str, str], IntervalGate] = {}
        self._rejected = 0  # records too big for the outbox (counted as dropped)
        self._refusal: int | None = None  # the last 4xx answer logged
        self._ssl = ssl.create_default_context() if self._url.scheme == "https" else None
        if not self._secret:
            log.warning("%s [%s]: no Secret set: requests to %s are not signed", NAME,
                        self.section, self.shown_endpoint)
        poll = idle_poll_s if idle_poll_s is not None else \
            min(1.0, max(0.05, self.settings.sending_interval / 4))
        self._open_outbox(
            app, self._deliver, self.shown_endpoint, outbox_class=_PacedOutbox,
            retry=(retry_first_s, retry_max_s), retry_defaults=(RETRY_FIRST_S, RETRY_MAX_S),
            max_bytes=self.settings.outbox_max_bytes,
            batch_max_records=BATCH_MAX_RECORDS,
            batch_max_bytes=BATCH_MAX_BYTES,
            idle_poll_s=poll,
            interval=self.settings.sending_interval,
            burst=BATCH_MAX_RECORDS,
        )

    # ------------------------------------------------------------------ the bus side

    def take(self, records: Sequence[Record]) -> None:
        """Queue what is to be sent of ``records``; one write per record, no network."""
        for rec in records:
            kind = rec.kind
            if kind not in self._kinds:
                continue
            if kind in SAMPLE_KINDS:
                key = (rec.source, rec.source_id, kind)
                gate = self._gates.get(key)
                if gate is None:
                    gate = self._gates[key] = IntervalGate(self._step)
                if not gate.due(rec.timestamp):
                    continue
            if not self._put(payload(rec), kind):
                return  # closed: the bus has let go of this sink

    def state(self) -> dict[str, Any]:
        """What ``GET /status`` shows under ``outputs``: never a credential."""
        return {
            "endpoint": self.shown_endpoint,
            **self._outbox_status(self.settings.outbox_max_bytes),
            "signed": bool(self._secret),
        }

    def close(self) -> None:
        """Stop delivering within :data:`CLOSE_TIMEOUT_S`; undelivered records stay."""
        self._close_outbox("a request was still running at close; its batch stays queued")

    # ------------------------------------------------------------------ the delivery side

    def body(self, records: list[dict[str, Any]], now: float) -> bytes:
        return request_body(records, now)

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        status, reason = put_records(self.settings, self._url, self._ssl, records)
        if 200 <= status < 300:
            self._refusal = None
            return
        error = f"HTTP {status} {reason}".strip()
        if 400 <= status < 500 and status not in RETRIED_4XX and status != self._refusal:
            self._refusal = status
            log.error("%s [%s]: %s refuses the records with %s: check Endpoint, "
                      "Authorization and Secret; the records are kept and retried with "
                      "backoff", NAME, self.section, self.shown_endpoint, error)
        raise DeliveryError(error)

    @classmethod
    def send_test(cls, config: PluginConfig, app: LookoutConfig) -> str:
        """One ``test`` record, PUT now to the Endpoint exactly as a batch goes (same body
        layout, Authorization and signature), outside the outbox."""
        try:
            settings = plugin_settings(WebHookConfig, config)
        except ValueError as exc:
            raise SendTestError(f"the section is invalid: {exc}") from exc
        if not settings.endpoint:
            raise SendTestError("Endpoint is empty: set it first")
        url = urlsplit(settings.endpoint)
        shown = masked_endpoint(settings.endpoint)
        context = ssl.create_default_context() if url.scheme == "https" else None
        now = time.time()
        record = {"id": f"test-{int(now * 1000)}", "kind": "test", "source": "processor",
                  "source_id": config.section or NAME,
                  "timestamp": format_time(datetime.fromtimestamp(now, UTC)),
                  "message": "a test record from Lookout: the receiver works"}
        try:
            status, reason = put_records(settings, url, context, [record], now)
        except ConnectionRefusedError:
            raise SendTestError(f"{shown}: connection refused") from None
        except TimeoutError:
            raise SendTestError(f"{shown}: no answer within {settings.timeout:g} s") from None
        except ssl.SSLError as exc:
            raise SendTestError(f"{shown}: TLS failed: {exc.reason or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise SendTestError(f"{shown}: {exc.__class__.__name__}: {exc}") from None
        answer = f"HTTP {status} {reason}".strip()
        if not 200 <= status < 300:
            raise SendTestError(f"{shown} answered {answer}")
        signed = "signed" if settings.secret else "not signed (no Secret)"
        return f"{shown} answered {answer}; the request was {signed}"


def request_body(records: list[dict[str, Any]], now: float) -> bytes:
    """A request's body: the payload version, when it was sent, the records."""
    doc = {
        "version": PAYLOAD_VERSION,
        "sent_at": format_time(datetime.fromtimestamp(now, UTC)),
        "records": records,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def put_records(settings: WebHookConfig, url: SplitResult, context: ssl.SSLContext | None,
                records: list[dict[str, Any]], now: float | None = None) -> tuple[int, str]:
    """PUT ``records`` to ``url`` with the section's Authorization and signature; the
    answer's status and reason (its body is read, at most :data:`MAX_ANSWER_BYTES`, and
    dropped).  Network errors are raised."""
    now = time.time() if now is None else now
    body = request_body(records, now)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"lookout-{NAME}/{PAYLOAD_VERSION}",
    }
    if settings.authorization:
        headers["Authorization"] = settings.authorization
    if settings.secret:
        headers.update(signed_headers(settings.secret.encode(), body, now))
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    timeout = settings.timeout
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection(url.hostname or "", url.port, timeout=timeout,
                                           context=context)
    else:
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
    try:
        conn.request("PUT", path, body=body, headers=headers)
        answer = conn.getresponse()
        answer.read(MAX_ANSWER_BYTES)
    finally:
        conn.close()
    return answer.status, answer.reason


# One sink, three section kinds: [SourceLogger_N], [AreaLogger_N] and [Output_N].
SOURCE_LOGGERS.register(NAME)(WebHookLogger)
AREA_LOGGERS.register(NAME)(WebHookLogger)
OUTPUTS.register(NAME)(WebHookLogger)
