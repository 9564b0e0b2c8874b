"""``redis_logger``: the engagement service's Redis messages, written from the event bus.

Lookout replaces the reference engagement service (``000_…``): this sink writes what that
service posted to Redis, from the records of the ``engagement`` and ``heatmap`` stages.

* **Engagement**, per person, from each ``engagement_update`` record (every ``UpdatePeriod``
  of the camera clock): key ``<KeyPrefix><personid>:engagement``, a JSON string
  ``{"engaged": 0|1, "engagement": <seconds>, "last-seen": "<ISO 8601 time>"}`` written with
  an expiry of ``MessageExpiration`` seconds (the reference's ``message_expiration``), so a
  person no longer seen disappears.  ``<personid>`` is ``PersonId`` with ``{camera}`` and
  ``{track}`` filled in (default ``{camera}-{track}``): track ids are per camera, so the
  camera keeps two cameras' people apart.  Keep ``MessageExpiration`` above the engagement
  stage's ``UpdatePeriod`` or a person's key lapses between two updates.
* **Heatmap**, per camera, from each ``clusters`` record: the reference's message
  ``{"heatmap": [{"position": {"x": int, "y": int}, "intensity": float, "radius": int},
  ...]}``, ``SET`` at ``<KeyPrefix>`` + ``HeatmapKeyName`` and ``PUBLISH``-ed on
  ``<KeyPrefix>`` + ``HeatmapChannel`` (``{camera}`` filled in; an empty template writes
  none).  Positions and radii are image pixels for an uncalibrated camera and centimetres on
  the floor plan for a calibrated one (clusters in floor space), rounded to integers.
* **Stream** (optional, ``Stream``): each message written is also appended (``XADD``, capped
  near ``StreamMaxLen`` entries) to that stream with the fields ``id`` (the record id),
  ``kind``, ``camera``, ``timestamp`` and ``keys`` (how many keys the message set), so a
  consumer that was away can catch up, and the tests can count deliveries.  A batch retried
  after its answer was lost appends its entries again: consumers deduplicate on ``id``.

Connection: ``Url`` (``redis://host:port/db`` or ``rediss://`` for TLS); the password is read
from the environment variable named by ``PasswordEnv`` (default ``LOOKOUT_REDIS_PASSWORD``),
the ACL user name from ``UsernameEnv`` (default ``LOOKOUT_REDIS_USERNAME``), never from the
file.  A password written into ``Url`` works too but is shown masked.

Reliability: :meth:`RedisLogger.take` only converts and appends to the section's durable
outbox (``DataDirectory/processor/outbox/<section>``); a delivery thread writes each batch
in one ``MULTI``/``EXEC`` transaction, so a batch is written whole or not at all, and
retries with backoff while Redis is down.  Messages made during an outage are written, in
order, once Redis is back (each person key then lives ``MessageExpiration`` seconds from
that write).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import redis
from pydantic import Field, field_validator
from redis.backoff import NoBackoff
from redis.retry import Retry

from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.integrations.base import (
    CLOSE_TIMEOUT_S as CLOSE_TIMEOUT_S,  # close() waits this long (tests read it here)
)
from libs.integrations.base import (
    OutboxSink,
    outbox_max_bytes_field,
    timeout_field,
)
from libs.integrations.webhook import masked_endpoint
from libs.loggers import OUTPUTS, SOURCE_LOGGERS, SendTestError, SourceLogger
from libs.records import Clusters, EngagementUpdate, Record, format_time

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

log = logging.getLogger(__name__)

NAME = "redis_logger"
BATCH_MAX_RECORDS = 200
BATCH_MAX_BYTES = 4 * 1024 * 1024
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
TEST_KEY = "lookout:test"


def _template_ok(value: str, needed: tuple[str, ...], allowed: tuple[str, ...]) -> str:
    try:
        value.format(**{k: "x" for k in allowed})
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"only {', '.join('{' + k + '}' for k in allowed)} may be used "
                         f"({exc})") from None
    missing = [k for k in needed if "{" + k + "}" not in value]
    if missing:
        raise ValueError(f"must contain {', '.join('{' + k + '}' for k in missing)}")
    return value


class RedisConfig(PluginConfig):
    url: str = Field(
        "redis://127.0.0.1:6379/0",
        alias="Url",
        description="Redis server: redis://host:port/db, or rediss:// for TLS. The password "
        "comes from the environment (PasswordEnv).",
        json_schema_extra=form("a redis:// or rediss:// URL"),
    )
    password_env: str = Field(
        "LOOKOUT_REDIS_PASSWORD",
        alias="PasswordEnv",
        description="Name of the environment variable holding the Redis password (unset or "
        "empty: no password).",
        json_schema_extra=form("an environment variable name"),
    )
    username_env: str = Field(
        "LOOKOUT_REDIS_USERNAME",
        alias="UsernameEnv",
        description="Name of the environment variable holding the Redis ACL user name (unset "
        "or empty: the default user).",
        json_schema_extra=form("an environment variable name"),
    )
    key_prefix: str = Field(
        "",
        alias="KeyPrefix",
        description="Put before every key, channel and stream name this section writes "
        "(for example 'store12:' when boxes share one Redis).",
    )
    person_id: str = Field(
        "{camera}-{track}",
        alias="PersonId",
        description="How a person's id is made from the camera id and the track id; the key "
        "is <KeyPrefix><PersonId>:engagement. Must contain {track} (and {camera} when "
        "several cameras share the Redis).",
        json_schema_extra=form("a template with {track} and optionally {camera}"),
    )
    message_expiration: float = Field(
        5.0,
        alias="MessageExpiration",
        gt=0,
        description="Seconds a person's engagement key lives after it is written "
        "(message_expiration of the reference service); keep it above the engagement "
        "stage's UpdatePeriod.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    heatmap_key: str = Field(
        "heatmap:{camera}",
        alias="HeatmapKeyName",
        description="Key the camera's latest heatmap message is SET at; empty sets none.",
        json_schema_extra=form("a template with {camera}, or empty"),
    )
    heatmap_channel: str = Field(
        "heatmap:{camera}",
        alias="HeatmapChannel",
        description="Pub/sub channel each heatmap message is PUBLISHed on; empty publishes "
        "none.",
        json_schema_extra=form("a template with {camera}, or empty"),
    )
    stream: str = Field(
        "",
        alias="Stream",
        description="Stream every message written is also appended to (XADD: id, kind, "
        "camera, timestamp, keys); empty appends none.",
    )
    stream_max_len: int = Field(
        10000,
        alias="StreamMaxLen",
        ge=1,
        description="About this many entries are kept in Stream (older ones trimmed).",
        json_schema_extra=form("an integer >= 1"),
    )
    timeout: float = timeout_field(
        5.0,
        "Seconds to wait for Redis (connecting, each command) before the attempt counts as "
        "failed and is retried.")
    outbox_max_bytes: int = outbox_max_bytes_field("messages", "Redis")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError("Url must be a redis:// or rediss:// URL with a host")
        return value

    @field_validator("person_id")
    @classmethod
    def _person(cls, value: str) -> str:
        return _template_ok(value, ("track",), ("camera", "track"))

    @field_validator("heatmap_key", "heatmap_channel")
    @classmethod
    def _camera_template(cls, value: str) -> str:
        return _template_ok(value, (), ("camera",)) if value else value


def client_of(settings: RedisConfig) -> redis.Redis:
    """A client of ``settings`` (credentials from the environment), no retries of its own:
    the outbox retries."""
    password = os.environ.get(settings.password_env, "") if settings.password_env else ""
    username = os.environ.get(settings.username_env, "") if settings.username_env else ""
    extra: dict[str, Any] = {}
    if password:
        extra["password"] = password
    if username:
        extra["username"] = username
    return redis.Redis.from_url(
        settings.url, socket_timeout=settings.timeout,
        socket_connect_timeout=settings.timeout, retry=Retry(NoBackoff(), 0),
        health_check_interval=0, **extra)


def engagement_value(engaged: bool, seconds: float, last_seen: datetime) -> str:
    """The reference's per-person message."""
    return json.dumps({"engaged": int(engaged), "engagement": round(seconds, 3),
                       "last-seen": format_time(last_seen)}, separators=(",", ":"))


def heatmap_message(rec: Clusters) -> str:
    """The reference's heatmap message of a ``clusters`` record (module docstring)."""
    scale = 100.0 if rec.space == "floor" else 1.0  # floor: metres -> centimetres
    items = [{"position": {"x": round(c.position[0] * scale), "y": round(c.position[1] * scale)},
              "intensity": round(c.intensity, 3), "radius": round(c.radius * scale)}
             for c in rec.clusters]
    return json.dumps({"heatmap": items}, separators=(",", ":"))


class RedisLogger(OutboxSink, SourceLogger):
    """Writes the engagement service's Redis messages (module docstring); one section serves
    every camera (``[SourceLogger_N]`` or ``[Output_N]``)."""

    Config: ClassVar[type[PluginConfig]] = RedisConfig
    on_bus: ClassVar[bool] = True
    sink_name: ClassVar[str] = NAME
    sink_log: ClassVar[logging.Logger] = log

    def __init__(self, config: PluginConfig, scope: Any, app: LookoutConfig, *,
                 retry_first_s: float | None = None, retry_max_s: float | None = None,
                 idle_poll_s: float = 0.2) -> None:
        self.config = config
        self.source = None  # type: ignore[assignment]  # a bus sink serves every camera
        self.app = app
        self.settings = plugin_settings(RedisConfig, config)
        self.section = config.section or NAME
        self.shown_url = masked_endpoint(self.settings.url)
        self._client = client_of(self.settings)
        self._rejected = 0
        self._refusal: str | None = None
        self._open_outbox(
            app, self._deliver, self.shown_url,
            retry=(retry_first_s, retry_max_s), retry_defaults=(RETRY_FIRST_S, RETRY_MAX_S),
            max_bytes=self.settings.outbox_max_bytes,
            batch_max_records=BATCH_MAX_RECORDS,
            batch_max_bytes=BATCH_MAX_BYTES,
            idle_poll_s=idle_poll_s,
        )

    # ------------------------------------------------------------------ names

    def person_key(self, camera: str, track: int) -> str:
        person = self.settings.person_id.format(camera=camera, track=track)
        return f"{self.settings.key_prefix}{person}:engagement"

    def _named(self, template: str, camera: str) -> str | None:
        return f"{self.settings.key_prefix}{template.format(camera=camera)}" if template \
            else None

    # ------------------------------------------------------------------ the bus side

    def message(self, rec: Record) -> dict[str, Any] | None:
        """What the outbox holds for ``rec``: the keys and values to write, or None."""
        base = {"id": rec.id, "kind": rec.kind, "camera": rec.source_id,
                "timestamp": format_time(rec.timestamp)}
        if isinstance(rec, EngagementUpdate):
            return {**base, "set": [[self.person_key(rec.source_id, p.track_id),
                                     engagement_value(p.engaged, p.engagement_seconds,
                                                      p.last_seen)]
                                    for p in rec.people]}
        if isinstance(rec, Clusters):
            msg = heatmap_message(rec)
            key = self._named(self.settings.heatmap_key, rec.source_id)
            channel = self._named(self.settings.heatmap_channel, rec.source_id)
            return {**base, "heatmap": msg, "key": key, "channel": channel}
        return None

    def take(self, records: Sequence[Record]) -> None:
        """Queue the messages of ``records``; no network."""
        for rec in records:
            if rec.source != "camera":
                continue
            msg = self.message(rec)
            if msg is None:
                continue
            if not self._put(msg, rec.kind, "message"):
                return  # closed

    def state(self) -> dict[str, Any]:
        """What ``GET /status`` shows under ``outputs``: never a credential."""
        return {
            "endpoint": self.shown_url,
            **self._outbox_status(self.settings.outbox_max_bytes),
        }

    def close(self) -> None:
        """Stop within :data:`CLOSE_TIMEOUT_S`; what was not written stays in the outbox."""
        self._close_outbox("a write was still running at close; its batch stays queued")
        self._client.close()

    # ------------------------------------------------------------------ the delivery side

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        expire_ms = max(1, round(self.settings.message_expiration * 1000))
        pipe = self._client.pipeline(transaction=True)
        for msg in messages:
            written = 0
            if "set" in msg:
                for key, value in msg["set"]:
                    pipe.set(key, value, px=expire_ms)
                    written += 1
            else:
                if msg.get("key"):
                    pipe.set(msg["key"], msg["heatmap"])
                    written += 1
                if msg.get("channel"):
                    pipe.publish(msg["channel"], msg["heatmap"])
            if self.settings.stream:
                pipe.xadd(f"{self.settings.key_prefix}{self.settings.stream}",
                          {"id": msg["id"], "kind": msg["kind"], "camera": msg["camera"],
                           "timestamp": msg["timestamp"], "keys": written},
                          maxlen=self.settings.stream_max_len, approximate=True)
        try:
            pipe.execute()
        except redis.AuthenticationError as exc:
            reason = (f"authentication failed ({exc.__class__.__name__}): check "
                      f"${self.settings.password_env}")
            if reason != self._refusal:
                self._refusal = reason
                log.error("%s [%s]: %s refuses the connection: %s; messages are kept and "
                          "retried", NAME, self.section, self.shown_url, reason)
            raise
        finally:
            pipe.reset()
        self._refusal = None

    @classmethod
    def send_test(cls, config: PluginConfig, app: LookoutConfig) -> str:
        """PING the server and SET ``<KeyPrefix>lookout:test`` (expiring after 60 s) with
        the credentials of the section."""
        try:
            settings = plugin_settings(RedisConfig, config)
        except ValueError as exc:
            raise SendTestError(f"the section is invalid: {exc}") from exc
        shown = masked_endpoint(settings.url)
        client = client_of(settings)
        now = datetime.now(UTC)
        key = f"{settings.key_prefix}{TEST_KEY}"
        try:
            client.ping()
            client.set(key, json.dumps({"message": "a test message from Lookout",
                                        "sent_at": format_time(now)}), ex=60)
        except redis.AuthenticationError:
            raise SendTestError(f"{shown}: authentication failed: check the password in "
                                f"${settings.password_env}") from None
        except redis.ResponseError as exc:
            text = str(exc)
            if "NOAUTH" in text or "WRONGPASS" in text:
                raise SendTestError(f"{shown}: authentication failed: check the password "
                                    f"in ${settings.password_env}") from None
            raise SendTestError(f"{shown}: {text}") from None
        except redis.TimeoutError:
            raise SendTestError(f"{shown}: no answer within {settings.timeout:g} s") from None
        except redis.ConnectionError as exc:
            raise SendTestError(f"{shown}: cannot connect: {exc}") from None
        finally:
            client.close()
        return f"{shown} answered PING; wrote {key} (expires in 60 s)"


SOURCE_LOGGERS.register(NAME)(RedisLogger)
OUTPUTS.register(NAME)(RedisLogger)
