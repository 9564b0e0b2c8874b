"""Credentials in configuration values: the one place that masks them and puts them back.

Two kinds of value carry secrets:

* values of keys named like a credential (``DashboardAuthorizationToken``, ``QueueAuthKey``,
  any ``...Password``, ``...Secret``, ``...Token``, ``...Key``, ``...Authorization`` such as
  the webhook's ``Authorization`` header value): the whole value is replaced by :data:`MASK`;
* URLs anywhere in any text (``VideoPath = rtsp://user:pass@host/...``, a ``DashboardURL``,
  an error message that quotes a camera URL): the password of the user information becomes
  ``***`` (a user information without a password, often a token, becomes ``***`` whole), and
  query parameters named like a credential (``?token=...``) get ``***`` as their value.

:func:`mask_secrets` applies both to any JSON-like value (dicts, lists, strings).  An admin who
sends a masked value back (copied from a viewer's answer) does not overwrite the real secret:
:func:`unmask` returns the current value whenever the value sent is exactly the current value
masked.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "********"
URL_MASK = "***"

_SECRET_KEY = re.compile(
    r"(?i)(token|key|secret|password|passwd|credentials?|authorization)$")
_NOT_SECRET = frozenset({"UseAuthToken"})
# A URL inside any text: scheme, "://", then everything up to white space or a quote.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*")
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:[A-Za-z0-9_.-]*(?:token|key|secret|password|passwd|pass|pwd|auth|sig|"
    r"signature|credential|credentials))=)([^&#;\s]*)"
)


def is_secret_key(key: str) -> bool:
    """Whether the value of INI key ``key`` is a credential as a whole."""
    return key not in _NOT_SECRET and bool(_SECRET_KEY.search(key))


def _mask_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    end = len(rest)
    for stop in "?#":
        at = rest.find(stop)
        if at >= 0:
            end = min(end, at)
    at = rest.rfind("@", 0, end)
    if at >= 0:
        userinfo, host = rest[:at], rest[at + 1:]
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            rest = f"{user}:{URL_MASK}@{host}"
        elif "/" not in userinfo:  # "token@host": the user part is the secret
            rest = f"{URL_MASK}@{host}"
    rest = _SECRET_PARAM.sub(lambda m: m.group(1) + URL_MASK, rest)
    return f"{scheme}://{rest}"


def mask_text(text: str) -> str:
    """``text`` with the secrets of every URL in it masked."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: _mask_url(m.group(0)), text)


def mask_secrets(value: Any, key: str | None = None) -> Any:
    """``value`` (a JSON-like tree) with every credential masked: values of credential keys
    whole, and the secrets of URLs in every string."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, key) for v in value]
    if isinstance(value, tuple):
        return tuple(mask_secrets(v, key) for v in value)
    if key is not None and is_secret_key(key) and value not in ("", None):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    return value


def unmask(sent: str, current: str | None, key: str | None = None) -> str:
    """The value to store when ``sent`` replaces ``current``: ``current`` itself when ``sent``
    is ``current`` as a viewer sees it (masked), else ``sent``."""
    if current is None or sent == current:
        return sent
    masked = mask_secrets(current, key)
    if isinstance(masked, str) and masked == sent and masked != current:
        return current
    return sent


def unmask_values(sent: dict[str, str], current: dict[str, str] | None) -> dict[str, str]:
    """:func:`unmask` for every key of a section's values."""
    if not current:
        return dict(sent)
    return {k: unmask(v, current.get(k), k) for k, v in sent.items()}
