"""HMAC-SHA256 signatures of the requests Lookout sends to a receiver (webhooks).

Every request carries two headers::

    X-Lookout-Timestamp: 1700000000                 (Unix seconds, when it was sent)
    X-Lookout-Signature: sha256=<hex digest>

The digest is ``HMAC-SHA256(secret, f"{timestamp}.".encode() + body)`` in lower-case hex,
over the raw body bytes exactly as received (before any JSON parsing). Signing the
timestamp with the body lets a receiver reject a replayed request: a captured request
cannot be sent again later with a fresh timestamp without the secret.

Receiver-side check, standard library only (copy, paste, set ``SECRET``)::

    import hashlib, hmac, time

    SECRET = b"the shared secret from the webhook's configuration"

    def lookout_request_is_genuine(headers, body: bytes, tolerance_s: int = 300) -> bool:
        timestamp = headers.get("X-Lookout-Timestamp", "")
        signature = headers.get("X-Lookout-Signature", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_s:
            return False  # missing, malformed or stale: a replay outside the window
        expected = hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256)
        return hmac.compare_digest("sha256=" + expected.hexdigest(), signature)

A retried delivery is signed again with the time of the retry, so it passes this check
even when the receiver was down for longer than the window; records keep their ``id``,
which is what a receiver should deduplicate on.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Lookout-Timestamp"
SIGNATURE_HEADER = "X-Lookout-Signature"
SIGNATURE_PREFIX = "sha256="
DEFAULT_TOLERANCE_S = 300


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body`` under ``secret``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER`: ``sha256=<hex>``."""
    return SIGNATURE_PREFIX + sign(secret, timestamp, body)


def signed_headers(secret: bytes, body: bytes, now: float) -> dict[str, str]:
    """Both headers for a request sent at ``now`` (Unix seconds)."""
    timestamp = str(int(now))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature_header(secret, timestamp, body),
    }


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """Whether ``signature`` (with or without the ``sha256=`` prefix) signs ``body`` at
    ``timestamp``, and the timestamp lies within ``tolerance_s`` of ``now``.

    The comparison takes constant time whatever the signature; a malformed timestamp or
    signature is simply not genuine.
    """
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    given = signature.removeprefix(SIGNATURE_PREFIX)
    if not given.isascii():
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), given.lower())
