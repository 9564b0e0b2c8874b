"""Slack for the notifications: an incoming webhook, its URL kept out of sight.

Where the URL comes from, first found wins:

1. ``DataDirectory/processor/notifications/slack.json`` (mode 0600), written by ``PUT
   /slack/enable`` and removed by ``PUT /slack/revoke``: ``{"webhook_url": "..."}``;
2. the environment variable ``LOOKOUT_SLACK_WEBHOOK_URL``.

The URL is a credential (whoever has it can post to the channel): it is never logged, never
answered by the API and status pages show only its host. It must be ``https://``; ``http://``
is accepted for a loopback host only (a local relay, the tests).

A message is one POST of ``{"text": ..., "channel": <SlackChannel>}`` (``channel`` left out
when SlackChannel is empty; Slack's newer webhooks post to the channel they were made for
and ignore it). Incoming webhooks cannot upload files, so reports go to Slack as numbers
without their chart (the e-mail carries the chart).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

ENV_WEBHOOK_URL = "LOOKOUT_SLACK_WEBHOOK_URL"
STORE_FILE = "processor/notifications/slack.json"  # inside DataDirectory
MAX_ANSWER_BYTES = 16 * 1024
TIMEOUT_S = 15.0
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{8,}$")  # a channel's id, not its name


class SlackConfigError(ValueError):
    """No usable webhook URL (the message says why, never the URL)."""


class SlackError(Exception):
    """Slack did not take the message."""


def store_path(config: LookoutConfig) -> Path:
    return config.data_path(STORE_FILE)


def check_webhook_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if any(c.isspace() or ord(c) < 32 for c in url) or not parts.hostname:
        raise SlackConfigError("the webhook URL must be an https:// URL with a host")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and _loopback(parts.hostname):
        return url
    raise SlackConfigError("the webhook URL must be https:// (http:// only for a loopback "
                           "host)")


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def save_webhook_url(config: LookoutConfig, url: str) -> None:
    """Keep ``url`` for the notifier (owner-only file, written atomically)."""
    url = check_webhook_url(url)
    path = store_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps({"webhook_url": url}).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def forget_webhook_url(config: LookoutConfig) -> bool:
    """Remove the stored URL; whether there was one."""
    path = store_path(config)
    existed = path.exists()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return existed


def stored_webhook_url(config: LookoutConfig) -> str:
    try:
        doc = json.loads(store_path(config).read_text())
    except (OSError, ValueError):
        return ""
    url = doc.get("webhook_url") if isinstance(doc, dict) else None
    return url if isinstance(url, str) else ""


def webhook_source(config: LookoutConfig) -> str | None:
    """``"api"``, ``"environment"`` or None: where the URL in use comes from."""
    if stored_webhook_url(config):
        return "api"
    if os.environ.get(ENV_WEBHOOK_URL, "").strip():
        return "environment"
    return None


def webhook_url(config: LookoutConfig) -> str:
    """The URL in use; :class:`SlackConfigError` when there is none or it is unusable."""
    url = stored_webhook_url(config) or os.environ.get(ENV_WEBHOOK_URL, "").strip()
    if not url:
        raise SlackConfigError(f"no Slack webhook: set it with PUT /slack/enable or "
                               f"{ENV_WEBHOOK_URL}")
    return check_webhook_url(url)


def shown_url(url: str) -> str:
    """What may be shown of a webhook URL: its scheme and host."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}"


def message_payload(text: str, channel: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text}
    if channel:
        keep = channel.startswith(("#", "@")) or CHANNEL_ID.match(channel)
        payload["channel"] = channel if keep else f"#{channel}"
    return payload


def post_message(url: str, payload: dict[str, Any], timeout: float = TIMEOUT_S) -> None:
    """POST ``payload`` to the webhook; :class:`SlackError` unless it answers 2xx."""
    parts = urlsplit(url)
    body = json.dumps(payload, ensure_ascii=False).encode()
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "lookout-notifications/1"})
        answer = conn.getresponse()
        text = answer.read(MAX_ANSWER_BYTES).decode("utf-8", "replace").strip()
    finally:
        conn.close()
    if not 200 <= answer.status < 300:
        detail = f": {text[:200]}" if text and len(text) < 200 else ""
        raise SlackError(f"{shown_url(url)} answered HTTP {answer.status}{detail}")


def describe_error(exc: BaseException, url: str | None = None) -> str:
    where = shown_url(url) if url else "Slack"
    if isinstance(exc, (SlackConfigError, SlackError)):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: connection refused"
    if isinstance(exc, TimeoutError):
        return f"{where}: no answer in time"
    if isinstance(exc, ssl.SSLError):
        return f"{where}: TLS failed: {exc.reason or exc.__class__.__name__}"
    return f"{where}: {exc.__class__.__name__}"
